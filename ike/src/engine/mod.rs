//! The IKEv2 engine, sans-IO: datagrams and time in, datagrams and events
//! out (quinn-proto's shape).
//!
//! ```text
//! driver ── handle_datagram(now, local_port, from, bytes) ──▶ Engine
//!        ── handle_timeout(now) / initiate(now, conn)      ──▶
//!        ◀── poll_transmit(): Transmit { src_port, dst, data }
//!        ◀── poll_event(): ChildUp / ChildDown / StateChanged
//!        ◀── poll_timeout(): when to call handle_timeout next
//! ```
//!
//! Nothing here touches a socket or a clock: tests run two engines against
//! each other, and against captured messages, deterministically.

pub mod proposal;
pub mod sa;
pub mod spec;
pub mod ts;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::alg::{Encryption, Integrity};
use crate::crypto::{CookieSecret, Secret};
use crate::wire::{
    self, Exchange, Header, Notify, Payload, TrafficSelector, flags, notify, payload,
};

use sa::{Action, Ctx, IkeSa, NATT_PORT, SaState};
pub use spec::*;

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Our UDP port: 500, or 4500 after NAT detection (then `data` starts
    /// with the non-ESP marker).
    pub src_port: u16,
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

/// A CHILD_SA for the crypto path. Its Debug never shows keys.
#[derive(Clone, Debug)]
pub struct ChildSaInfo {
    pub conn: usize,
    pub conn_name: String,
    /// SPI the peer sends to us with; SPI we send to the peer with.
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Encryption,
    pub integ: Option<Integrity>,
    /// AES-GCM keys include their 4-byte salt (RFC 4106).
    pub encr_key_in: Secret,
    pub integ_key_in: Secret,
    pub encr_key_out: Secret,
    pub integ_key_out: Secret,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// Where ESP goes, and from which of our ports.
    pub peer: SocketAddr,
    pub local_port: u16,
    /// ESP in UDP (RFC 3948), after NAT detection.
    pub encap: bool,
    pub lifetime: Duration,
    /// The CHILD_SA (inbound SPI) this one replaces, for a rekey.
    pub rekeyed_from: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Not negotiated (yet): a responder waiting, or after a failure.
    Down,
    Connecting,
    Established,
}

impl ConnState {
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Down => "down",
            ConnState::Connecting => "connecting",
            ConnState::Established => "established",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    ChildUp(Box<ChildSaInfo>),
    ChildDown {
        conn: usize,
        spi_in: u32,
        spi_out: u32,
        reason: String,
    },
    StateChanged {
        conn: usize,
        state: ConnState,
        /// Why, for the operator: "authentication failed: ...", "no proposal
        /// chosen: ...", "peer not responding ...". None when all is well.
        reason: Option<String>,
    },
}

/// A connection as the operator sees it (`vpcgw status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnStatus {
    pub name: String,
    pub state: ConnState,
    pub reason: Option<String>,
    pub ike: Option<IkeStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeStatus {
    /// Hex, as strongSwan prints them.
    pub spi_i: String,
    pub spi_r: String,
    pub initiator: bool,
    pub local_port: u16,
    pub peer: SocketAddr,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub established_secs: Option<u64>,
    pub children: Vec<ChildStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    /// Hex.
    pub spi_in: String,
    pub spi_out: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub state: &'static str,
}

/// Counters of what arrived and how it was handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams: u64,
    pub malformed: u64,
    pub unknown_sa: u64,
    pub no_connection: u64,
    pub cookies_sent: u64,
    pub half_open_refused: u64,
    pub init_requests: u64,
    pub keepalives: u64,
}

struct ConnRuntime {
    state: ConnState,
    reason: Option<String>,
    /// The current IKE SA (our SPI).
    sa: Option<[u8; 8]>,
    retry_at: Option<Instant>,
    /// After DPD `clear`: [`Engine::initiate`] does nothing until an SA is
    /// established again (by the peer).
    parked: bool,
    /// Half-open SAs with this connection's peer.
    half_open: usize,
}

pub struct Engine {
    cfg: EngineConfig,
    /// Every IKE SA by our SPI. Changed only through `insert_sa`,
    /// `remove_sa` and `on_sa`, which keep the two fields below true.
    sas: HashMap<[u8; 8], IkeSa>,
    /// How many of `sas` are half-open (the cookie and flood bounds).
    half_open: usize,
    /// SAs we answered, by (peer address, initiator SPI): finds the SA of a
    /// retransmitted IKE_SA_INIT without a scan. Entries can outlive their
    /// SA (checked on use, pruned as the index grows).
    by_init: HashMap<(IpAddr, [u8; 8]), [u8; 8]>,
    conns: Vec<ConnRuntime>,
    cookie: CookieSecret,
    cookie_since: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

/// Cookie secrets are replaced this often (RFC 7296 2.6 asks for it).
const COOKIE_ROTATION: Duration = Duration::from_secs(300);

impl Engine {
    pub fn new(cfg: EngineConfig, now: Instant) -> Result<Engine, crate::crypto::CryptoError> {
        let conns = cfg
            .connections
            .iter()
            .map(|_| ConnRuntime {
                state: ConnState::Down,
                reason: None,
                sa: None,
                retry_at: None,
                parked: false,
                half_open: 0,
            })
            .collect();
        Ok(Engine {
            cfg,
            sas: HashMap::new(),
            half_open: 0,
            by_init: HashMap::new(),
            conns,
            cookie: CookieSecret::new()?,
            cookie_since: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut HashMap<[u8; 8], IkeSa>) {
        (
            Ctx {
                cfg: &self.cfg,
                tx: &mut self.transmits,
                ev: &mut self.events,
                now,
            },
            &mut self.sas,
        )
    }

    /// One more (`up`) or one fewer half-open SA for connection `conn`.
    fn count_half_open(&mut self, conn: usize, up: bool) {
        let rt = self.conns.get_mut(conn);
        if up {
            self.half_open += 1;
            if let Some(rt) = rt {
                rt.half_open += 1;
            }
        } else {
            self.half_open = self.half_open.saturating_sub(1);
            if let Some(rt) = rt {
                rt.half_open = rt.half_open.saturating_sub(1);
            }
        }
    }

    fn insert_sa(&mut self, sa: IkeSa) -> [u8; 8] {
        let spi = sa.our_spi();
        if sa.is_half_open() {
            self.count_half_open(sa.conn, true);
        }
        if !sa.we_initiated {
            if self.by_init.len() >= 2 * self.sas.len() + 1024 {
                let sas = &self.sas;
                self.by_init.retain(|_, ours| sas.contains_key(ours));
            }
            self.by_init.insert((sa.peer_addr(), sa.spi_i), spi);
        }
        if let Some(old) = self.sas.insert(spi, sa)
            && old.is_half_open()
        {
            self.count_half_open(old.conn, false);
        }
        spi
    }

    fn remove_sa(&mut self, spi: &[u8; 8]) -> Option<IkeSa> {
        let sa = self.sas.remove(spi)?;
        if sa.is_half_open() {
            self.count_half_open(sa.conn, false);
        }
        Some(sa)
    }

    /// Runs `f` on SA `spi` with the context; None if there is no such SA.
    fn on_sa<R>(
        &mut self,
        now: Instant,
        spi: &[u8; 8],
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let (mut cx, sas) = self.ctx(now);
        let sa = sas.get_mut(spi)?;
        let before = sa.is_half_open();
        let r = f(sa, &mut cx);
        let (after, conn) = (sa.is_half_open(), sa.conn);
        if before != after {
            self.count_half_open(conn, after);
        }
        Some(r)
    }

    /// Start negotiating connection `conn` (at start, or on traffic). No-op
    /// when it has an IKE SA already, or when DPD `clear` parked it.
    pub fn initiate(&mut self, now: Instant, conn: usize) {
        let Some(rt) = self.conns.get(conn) else {
            return;
        };
        if rt.parked || rt.sa.is_some_and(|s| self.sas.contains_key(&s)) {
            return;
        }
        let (mut cx, _) = self.ctx(now);
        if let Some(sa) = IkeSa::initiate(&mut cx, conn) {
            let spi = self.insert_sa(sa);
            if let Some(rt) = self.conns.get_mut(conn) {
                rt.sa = Some(spi);
                rt.retry_at = None;
            }
        }
        self.fold_events();
    }

    /// A UDP datagram that arrived on our port `local_port` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local_port: u16,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.stats.datagrams += 1;
        let ike = if local_port == NATT_PORT {
            if data == [0xff] {
                self.stats.keepalives += 1;
                return;
            }
            match data.split_first_chunk::<4>() {
                Some((marker, rest)) if *marker == wire::NON_ESP_MARKER => rest,
                // ESP in UDP: not the engine's.
                _ => return,
            }
        } else {
            data
        };
        let msg = match wire::parse_message(ike) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let h = &msg.header;
        if h.exchange == Exchange::IkeSaInit && !h.is_response() && h.spi_r == [0; 8] {
            self.on_init_request(now, local_port, from, ike, &msg);
            self.fold_events();
            return;
        }
        // Our SPI: the responder's when the sender is the original initiator.
        let ours = if h.exchange == Exchange::IkeSaInit || !h.is_initiator() {
            h.spi_i
        } else {
            h.spi_r
        };
        let Some(actions) = self.on_sa(now, &ours, |sa, cx| {
            sa.on_message(cx, from, local_port, ike, &msg)
        }) else {
            self.stats.unknown_sa += 1;
            return;
        };
        self.apply(now, ours, actions);
        self.fold_events();
    }

    /// IKE_SA_INIT from a peer: cookie gate, half-open bound, then the SA.
    fn on_init_request(
        &mut self,
        now: Instant,
        local_port: u16,
        from: SocketAddr,
        raw: &[u8],
        msg: &wire::Message<'_>,
    ) {
        self.stats.init_requests += 1;
        let Some(conn) = self
            .cfg
            .connections
            .iter()
            .position(|c| c.peer == from.ip())
        else {
            // Nothing configured for this address: no answer at all.
            self.stats.no_connection += 1;
            return;
        };
        // A retransmission of a request we answered: the SA answers again.
        let h = &msg.header;
        if let Some(spi) = self
            .by_init
            .get(&(from.ip(), h.spi_i))
            .copied()
            .filter(|ours| {
                self.sas.get(ours).is_some_and(|s| {
                    !s.we_initiated && s.spi_i == h.spi_i && s.peer_addr() == from.ip()
                })
            })
        {
            if let Some(actions) = self.on_sa(now, &spi, |sa, cx| {
                sa.on_message(cx, from, local_port, raw, msg)
            }) {
                self.apply(now, spi, actions);
            }
            return;
        }
        let payloads: Vec<Payload> = match msg.payloads.iter().map(wire::decode).collect() {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let (all, peer) = (
            self.half_open,
            self.conns.get(conn).map_or(0, |r| r.half_open),
        );
        if all >= self.cfg.half_open_limit || peer >= self.cfg.peer_half_open_limit {
            self.stats.half_open_refused += 1;
            return;
        }
        if all >= self.cfg.cookie_threshold || peer >= self.cfg.peer_cookie_threshold {
            if now.saturating_duration_since(self.cookie_since) >= COOKIE_ROTATION {
                let _ = self.cookie.rotate();
                self.cookie_since = now;
            }
            let nonce = sa::nonce_payload(&payloads);
            let cookie = payloads.iter().find_map(|p| match p {
                Payload::Notify(n) if n.ty == notify::COOKIE => Some(n.data.clone()),
                _ => None,
            });
            let Some(nonce) = nonce else {
                self.stats.malformed += 1;
                return;
            };
            let valid = cookie.is_some_and(|c| self.cookie.verify(&c, &nonce, from.ip(), &h.spi_i));
            if !valid {
                // Stateless: nothing is kept for this request (RFC 7296 2.6).
                let c = self.cookie.cookie(&nonce, from.ip(), &h.spi_i);
                let hh = Header {
                    spi_i: h.spi_i,
                    spi_r: [0; 8],
                    next_payload: payload::NONE,
                    major: 2,
                    minor: 0,
                    exchange: Exchange::IkeSaInit,
                    flags: flags::RESPONSE,
                    message_id: 0,
                    length: 0,
                };
                let mut data = wire::encode_message(
                    &hh,
                    &[Payload::Notify(Notify {
                        protocol: 0,
                        spi: vec![],
                        ty: notify::COOKIE,
                        data: c,
                    })],
                );
                if local_port == NATT_PORT {
                    let mut v = wire::NON_ESP_MARKER.to_vec();
                    v.append(&mut data);
                    data = v;
                }
                self.stats.cookies_sent += 1;
                self.transmits.push_back(Transmit {
                    src_port: local_port,
                    dst: from,
                    data,
                });
                return;
            }
        }
        let quiet = self
            .conns
            .get(conn)
            .is_some_and(|r| r.state == ConnState::Established);
        let (mut cx, _) = self.ctx(now);
        if let Some(sa) =
            IkeSa::respond_init(&mut cx, conn, quiet, from, local_port, raw, h, &payloads)
        {
            self.insert_sa(sa);
        }
    }

    /// Carry out what an SA asked for.
    fn apply(&mut self, now: Instant, spi: [u8; 8], actions: Vec<Action>) {
        // Taken first: a Remove earlier in the list takes the SA away.
        let Some(conn) = self.sas.get(&spi).map(|s| s.conn) else {
            return;
        };
        for a in actions {
            match a {
                Action::Remove => {
                    self.remove_sa(&spi);
                    if let Some(rt) = self.conns.get_mut(conn)
                        && rt.sa == Some(spi)
                    {
                        rt.sa = None;
                    }
                }
                Action::Insert(new) => {
                    let new_spi = self.insert_sa(*new);
                    if let Some(rt) = self.conns.get_mut(conn) {
                        rt.sa = Some(new_spi);
                    }
                }
                Action::DropOthers => {
                    let others: Vec<[u8; 8]> = self
                        .sas
                        .iter()
                        .filter(|(k, s)| **k != spi && s.conn == conn)
                        .map(|(k, _)| *k)
                        .collect();
                    for k in others {
                        if let Some(mut sa) = self.remove_sa(&k) {
                            let (mut cx, _) = self.ctx(now);
                            sa.close(&mut cx, "replaced (the peer sent INITIAL_CONTACT)");
                        }
                    }
                    if let Some(rt) = self.conns.get_mut(conn) {
                        rt.sa = Some(spi);
                    }
                }
                Action::Park => {
                    if let Some(rt) = self.conns.get_mut(conn) {
                        rt.parked = true;
                        rt.retry_at = None;
                    }
                }
                Action::Retry => {
                    if let (Some(rt), Some(spec)) =
                        (self.conns.get_mut(conn), self.cfg.connections.get(conn))
                        && spec.initiator
                    {
                        rt.retry_at = Some(now + self.cfg.retry_delay);
                    }
                }
            }
        }
    }

    /// Timers: call at `poll_timeout()` (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let spis: Vec<[u8; 8]> = self.sas.keys().copied().collect();
        for spi in spis {
            if let Some(actions) = self.on_sa(now, &spi, |sa, cx| sa.on_timeout(cx)) {
                self.apply(now, spi, actions);
            }
        }
        let due: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, r)| r.retry_at.is_some_and(|t| now >= t))
            .map(|(i, _)| i)
            .collect();
        for conn in due {
            if let Some(rt) = self.conns.get_mut(conn) {
                rt.retry_at = None;
                rt.sa = None;
            }
            self.initiate(now, conn);
        }
        self.fold_events();
    }

    /// When `handle_timeout` is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sas = self
            .sas
            .values()
            .filter_map(|s| s.next_deadline(&self.cfg, self.cfg.connections.get(s.conn)));
        let retries = self.conns.iter().filter_map(|r| r.retry_at);
        sas.chain(retries).min()
    }

    /// Keep each connection's state and reason from the events.
    fn fold_events(&mut self) {
        for e in &self.events {
            if let Event::StateChanged {
                conn,
                state,
                reason,
            } = e
                && let Some(rt) = self.conns.get_mut(*conn)
            {
                rt.state = *state;
                if reason.is_some() || *state == ConnState::Established {
                    rt.reason = reason.clone();
                }
                if *state == ConnState::Established {
                    rt.parked = false;
                }
            }
        }
    }

    /// Every connection's state and reason, SPIs and selectors; never keys.
    pub fn status(&self, now: Instant) -> Vec<ConnStatus> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        self.cfg
            .connections
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let rt = self.conns.get(i);
                let sa = rt.and_then(|r| r.sa).and_then(|s| self.sas.get(&s));
                ConnStatus {
                    name: spec.name.clone(),
                    state: rt.map_or(ConnState::Down, |r| r.state),
                    reason: rt.and_then(|r| r.reason.clone()),
                    ike: sa
                        .filter(|s| s.state != SaState::Closing)
                        .map(|s| IkeStatus {
                            spi_i: hex(&s.spi_i),
                            spi_r: hex(&s.spi_r),
                            initiator: s.we_initiated,
                            local_port: s.local_port,
                            peer: s.peer,
                            nat_local: s.nat_local,
                            nat_remote: s.nat_remote,
                            established_secs: s
                                .established_at
                                .map(|t| now.saturating_duration_since(t).as_secs()),
                            children: s
                                .children
                                .iter()
                                .map(|c| ChildStatus {
                                    spi_in: format!("{:08x}", c.spi_in),
                                    spi_out: format!("{:08x}", c.spi_out),
                                    local_ts: c.local_ts.iter().map(ts::display).collect(),
                                    remote_ts: c.remote_ts.iter().map(ts::display).collect(),
                                    state: match c.state {
                                        sa::ChildState::Installed => "installed",
                                        sa::ChildState::Rekeying => "rekeying",
                                        sa::ChildState::Replaced { .. } => "replaced",
                                    },
                                })
                                .collect(),
                        }),
                }
            })
            .collect()
    }

    /// Close every IKE SA (the agent is stopping): Deletes go out.
    pub fn shutdown(&mut self, now: Instant) {
        let spis: Vec<[u8; 8]> = self.sas.keys().copied().collect();
        for spi in spis {
            if let Some(mut sa) = self.remove_sa(&spi) {
                let (mut cx, _) = self.ctx(now);
                sa.close(&mut cx, "shutting down");
            }
        }
        self.fold_events();
    }
}

#[cfg(test)]
impl Engine {
    /// The counters `insert_sa`, `remove_sa` and `on_sa` keep, recounted.
    fn check_counts(&self) {
        let half_open = self.sas.values().filter(|s| s.is_half_open()).count();
        assert_eq!(self.half_open, half_open, "half-open count drifted");
        for (i, rt) in self.conns.iter().enumerate() {
            let n = self
                .sas
                .values()
                .filter(|s| s.conn == i && s.is_half_open())
                .count();
            assert_eq!(rt.half_open, n, "half-open count of connection {i} drifted");
        }
        for s in self.sas.values().filter(|s| !s.we_initiated) {
            assert_eq!(
                self.by_init.get(&(s.peer_addr(), s.spi_i)),
                Some(&s.our_spi()),
                "responder SA missing from the index"
            );
        }
    }
}

#[cfg(test)]
mod tests;
