//! One IKE SA: its keys, its request/response windows, its CHILD_SAs, and the
//! exchanges (RFC 7296 1.2-1.5): IKE_SA_INIT, IKE_AUTH with a PSK,
//! CREATE_CHILD_SA (CHILD_SA and IKE SA rekeys), INFORMATIONAL (liveness,
//! deletes).
//!
//! Windows are of size 1 both ways: one request of ours outstanding at a
//! time (later ones queue), and the peer's requests answered in order, a
//! retransmitted request getting the stored response again.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::{
    self, ChildKeys, DhPrivate, IkeKeys, Secret, SkCrypto, dh_agree, dh_generate, nat_hash,
    psk_auth, signed_octets,
};
use crate::wire::{
    self, Delete, Exchange, Header, Identification, Message, Notify, Payload, Proposal,
    TrafficSelector, flags, notify, payload,
};

use super::proposal::{
    PROTO_ESP, PROTO_IKE, answer, check_answer, esp_proposal, ike_proposal, select,
};
use super::spec::{ConnSpec, DpdAction, EngineConfig, IkeAlgs};
use super::ts;
use super::{ChildSaInfo, ConnState, Event, Transmit};

pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;
/// Nonce length we send (RFC 7296 2.10: at least half the PRF key size).
const NONCE_LEN: usize = 32;
/// Shared Key Message Integrity Code (RFC 7296 3.8).
const AUTH_PSK: u8 = 2;

/// Where the SA stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaState {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent. Responder: IKE_SA_INIT answered (half-open).
    AuthPending,
    Established,
    /// Replaced by a rekey or being deleted; kept to answer and close.
    Closing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    Installed,
    /// Our rekey request is out.
    Rekeying,
    /// Replaced; the inbound SA lives until `until` for packets in flight.
    Replaced {
        until: Instant,
    },
}

pub struct Child {
    pub spi_in: u32,
    pub spi_out: u32,
    pub keys: ChildKeys,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub created: Instant,
    pub rekey_at: Instant,
    pub expire_at: Instant,
    pub state: ChildState,
    /// The peer started a rekey of this child while ours was out
    /// (RFC 7296 2.8.1): the CHILD_SA that exchange made, and its nonces.
    pub collision: Option<(u32, Vec<u8>, Vec<u8>)>,
}

/// What one of our requests is for.
pub enum ReqKind {
    Init,
    Auth {
        spi_in: u32,
    },
    ChildRekey {
        old_spi_in: u32,
        new_spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    IkeRekey {
        new_spi: [u8; 8],
        ni: Vec<u8>,
        dh: DhPrivate,
    },
    Dpd,
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
}

/// A request waiting in the window.
pub struct Queued {
    pub exchange: Exchange,
    pub payloads: Vec<Payload>,
    pub kind: ReqKind,
}

/// Our outstanding request.
pub struct Pending {
    pub msg_id: u32,
    /// As sent (with the non-ESP marker on port 4500).
    pub bytes: Vec<u8>,
    pub next_at: Instant,
    pub interval: Duration,
    pub give_up_at: Instant,
    pub kind: ReqKind,
}

/// Changes beyond this SA that the engine carries out.
pub enum Action {
    /// Drop this SA (its CHILD_SAs are reported down already).
    Remove,
    /// A new IKE SA (a rekey): insert it under `our_spi`.
    Insert(Box<IkeSa>),
    /// INITIAL_CONTACT: every other IKE SA of the connection is stale.
    DropOthers,
    /// The connection failed: negotiate again later (if it initiates).
    Retry,
    /// DPD `clear`: the connection waits for its peer; traffic does not
    /// bring it back (until the peer sets up an SA, or a reload).
    Park,
}

pub struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub tx: &'a mut VecDeque<Transmit>,
    pub ev: &'a mut VecDeque<Event>,
    pub now: Instant,
}

impl Ctx<'_> {
    fn spec(&self, conn: usize) -> Option<&ConnSpec> {
        self.cfg.connections.get(conn)
    }

    fn state(&mut self, conn: usize, state: ConnState, reason: Option<String>) {
        self.ev.push_back(Event::StateChanged {
            conn,
            state,
            reason,
        });
    }
}

pub struct IkeSa {
    pub conn: usize,
    /// We are the original initiator of this IKE SA.
    pub we_initiated: bool,
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub state: SaState,
    pub peer: SocketAddr,
    pub local_port: u16,
    /// We are behind a NAT (we send keepalives).
    pub nat_local: bool,
    /// The peer is behind a NAT, or pretends to be (strongSwan's
    /// kernel-libipsec forces UDP encapsulation that way).
    pub nat_remote: bool,
    pub algs: IkeAlgs,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    dh: Option<DhPrivate>,
    /// The IKE_SA_INIT request and response as sent (AUTH signs them).
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    cookie: Option<Vec<u8>>,
    keys: Option<IkeKeys>,
    sk: Option<SkCrypto>,
    next_req_id: u32,
    pub pending: Option<Pending>,
    queue: VecDeque<Queued>,
    next_peer_id: u32,
    last_resp: Option<(u32, Vec<u8>)>,
    pub children: Vec<Child>,
    pub created: Instant,
    pub established_at: Option<Instant>,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    pub last_recv: Instant,
    last_sent: Instant,
}

/// Random bytes; the engine cannot go on without randomness, so a failure
/// of the system's generator is treated as fatal for the exchange.
fn random(n: usize) -> Option<Vec<u8>> {
    let mut v = vec![0u8; n];
    crypto::random_bytes(&mut v).ok()?;
    Some(v)
}

fn random_spi8() -> Option<[u8; 8]> {
    loop {
        let v = random(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&v);
        if a != [0; 8] {
            return Some(a);
        }
    }
}

/// A CHILD_SA SPI: not 0..=255 (RFC 4303 reserves them).
fn random_spi4() -> Option<u32> {
    loop {
        let v = random(4)?;
        let s = u32::from_be_bytes(*v.first_chunk::<4>()?);
        if s > 255 {
            return Some(s);
        }
    }
}

/// Keeps the earliest of the instants pushed into it.
struct Earliest<'a>(&'a mut Option<Instant>);

impl Earliest<'_> {
    fn push(&mut self, t: Instant) {
        *self.0 = Some(self.0.map_or(t, |e| e.min(t)));
    }

    fn extend(&mut self, t: Option<Instant>) {
        if let Some(t) = t {
            self.push(t);
        }
    }
}

/// When to try a refused or failed rekey again: 2 to 10 s, drawn anew each
/// time, so two ends that collided (each answered TEMPORARY_FAILURE) do not
/// collide again in lockstep.
fn rekey_retry() -> Duration {
    let r = random(1).and_then(|v| v.first().copied()).unwrap_or(0) as u64;
    Duration::from_millis(2_000 + r * 8_000 / 255)
}

/// The proposals of the first SA payload.
fn sa_payload(p: &[Payload]) -> Option<Vec<Proposal>> {
    p.iter().find_map(|x| match x {
        Payload::Sa(v) => Some(v.clone()),
        _ => None,
    })
}

/// The nonce data.
pub(super) fn nonce_payload(p: &[Payload]) -> Option<Vec<u8>> {
    p.iter().find_map(|x| match x {
        Payload::Nonce(n) => Some(n.clone()),
        _ => None,
    })
}

/// The KE payload: (DH group, public value).
fn ke_payload(p: &[Payload]) -> Option<(u16, Vec<u8>)> {
    p.iter().find_map(|x| match x {
        Payload::Ke { group, data } => Some((*group, data.clone())),
        _ => None,
    })
}

/// TSi and TSr, when both are there.
fn ts_payloads(p: &[Payload]) -> Option<(Vec<TrafficSelector>, Vec<TrafficSelector>)> {
    let tsi = p.iter().find_map(|x| match x {
        Payload::TsI(v) => Some(v.clone()),
        _ => None,
    });
    let tsr = p.iter().find_map(|x| match x {
        Payload::TsR(v) => Some(v.clone()),
        _ => None,
    });
    tsi.zip(tsr)
}

/// The IKE_AUTH sender's identity (IDi from the original initiator, IDr
/// from the responder) and its AUTH payload (method, data).
fn id_and_auth(p: &[Payload], from_initiator: bool) -> Option<(Identification, u8, Vec<u8>)> {
    let id = p.iter().find_map(|x| match x {
        Payload::IdI(i) if from_initiator => Some(i.clone()),
        Payload::IdR(i) if !from_initiator => Some(i.clone()),
        _ => None,
    });
    let auth = p.iter().find_map(|x| match x {
        Payload::Auth { method, data } => Some((*method, data.clone())),
        _ => None,
    });
    id.zip(auth).map(|(id, (method, data))| (id, method, data))
}

/// Why `id` is not the identity the connection expects of its peer, if it
/// is not.
fn wrong_identity(spec: &ConnSpec, id: &Identification) -> Option<String> {
    (!spec.remote_id.matches(id.id_type, &id.data)).then(|| {
        format!(
            "authentication failed: the peer identifies as type {} {:?}, expected {}",
            id.id_type,
            String::from_utf8_lossy(&id.data),
            spec.remote_id
        )
    })
}

/// An IKE SPI as an SA payload carries it in a rekey: exactly 8 bytes.
fn ike_spi(spi: &[u8]) -> Option<[u8; 8]> {
    <[u8; 8]>::try_from(spi).ok()
}

/// An ESP SPI as an SA payload carries it: exactly 4 bytes.
fn esp_spi(spi: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(spi).ok().map(u32::from_be_bytes)
}

/// `lifetime` less 5-15%, so both ends rarely rekey at the same moment.
fn rekey_after(lifetime: Duration) -> Duration {
    let r = random(1).and_then(|v| v.first().copied()).unwrap_or(0) as u32;
    let permille = 850 + (r * 100) / 255;
    lifetime * permille / 1000
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn find_notify(p: &[Payload], ty: u16) -> Option<&Notify> {
    p.iter().find_map(|x| match x {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

/// The first error notify (types below 16384), if any.
fn error_notify(p: &[Payload]) -> Option<&Notify> {
    p.iter().find_map(|x| match x {
        Payload::Notify(n) if n.ty < 16384 => Some(n),
        _ => None,
    })
}

pub fn notify_name(ty: u16) -> &'static str {
    match ty {
        notify::UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
        notify::INVALID_IKE_SPI => "INVALID_IKE_SPI",
        notify::INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
        notify::INVALID_SYNTAX => "INVALID_SYNTAX",
        notify::INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
        notify::INVALID_SPI => "INVALID_SPI",
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
        notify::SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
        notify::NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
        notify::INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
        notify::FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
        notify::INVALID_SELECTORS => "INVALID_SELECTORS",
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
        notify::CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
        _ => "an error",
    }
}

fn notify_payload(protocol: u8, spi: Vec<u8>, ty: u16, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol,
        spi,
        ty,
        data,
    })
}

fn id_payload(initiator: bool, id: &super::spec::Identity) -> (Payload, Vec<u8>) {
    let ident = Identification {
        id_type: id.id_type(),
        data: id.data(),
    };
    let body = ident.body();
    (
        if initiator {
            Payload::IdI(ident)
        } else {
            Payload::IdR(ident)
        },
        body,
    )
}

impl IkeSa {
    fn blank(
        conn: usize,
        we_initiated: bool,
        peer: SocketAddr,
        algs: IkeAlgs,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            conn,
            we_initiated,
            spi_i: [0; 8],
            spi_r: [0; 8],
            state: SaState::InitSent,
            peer,
            local_port: IKE_PORT,
            nat_local: false,
            nat_remote: false,
            algs,
            ni: Vec::new(),
            nr: Vec::new(),
            dh: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            keys: None,
            sk: None,
            next_req_id: 0,
            pending: None,
            queue: VecDeque::new(),
            next_peer_id: 0,
            last_resp: None,
            children: Vec::new(),
            created: now,
            established_at: None,
            rekey_at: None,
            expire_at: None,
            last_recv: now,
            last_sent: now,
        }
    }

    /// The SPI the engine files this SA under.
    pub fn our_spi(&self) -> [u8; 8] {
        if self.we_initiated {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub fn is_half_open(&self) -> bool {
        !self.we_initiated && self.state == SaState::AuthPending
    }

    // ----------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------

    fn header(&self, exchange: Exchange, msg_id: u32, response: bool) -> Header {
        let mut f = 0;
        if self.we_initiated {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: payload::NONE,
            major: 2,
            minor: 0,
            exchange,
            flags: f,
            message_id: msg_id,
            length: 0,
        }
    }

    /// The bytes of a message: plain for IKE_SA_INIT, SK-protected otherwise.
    fn build(&self, h: &Header, payloads: &[Payload]) -> Option<Vec<u8>> {
        if h.exchange == Exchange::IkeSaInit {
            return Some(wire::encode_message(h, payloads));
        }
        let (first, inner) = wire::encode_chain(payloads);
        self.sk.as_ref()?.seal(h, first, &inner).ok()
    }

    /// On port 4500 IKE messages carry the non-ESP marker (RFC 3948).
    fn framed(&self, msg: Vec<u8>) -> Vec<u8> {
        if self.local_port == NATT_PORT {
            let mut v = Vec::with_capacity(msg.len() + 4);
            v.extend_from_slice(&wire::NON_ESP_MARKER);
            v.extend_from_slice(&msg);
            v
        } else {
            msg
        }
    }

    fn transmit(&mut self, cx: &mut Ctx<'_>, bytes: Vec<u8>) {
        self.last_sent = cx.now;
        cx.tx.push_back(Transmit {
            src_port: self.local_port,
            dst: self.peer,
            data: bytes,
        });
    }

    /// Send a request now, or queue it behind the one outstanding.
    fn request(
        &mut self,
        cx: &mut Ctx<'_>,
        exchange: Exchange,
        payloads: Vec<Payload>,
        kind: ReqKind,
    ) {
        if self.pending.is_some() {
            self.queue.push_back(Queued {
                exchange,
                payloads,
                kind,
            });
            return;
        }
        let msg_id = self.next_req_id;
        let h = self.header(exchange, msg_id, false);
        let Some(msg) = self.build(&h, &payloads) else {
            return;
        };
        let bytes = self.framed(msg);
        self.next_req_id = self.next_req_id.wrapping_add(1);
        let give_up = match (&kind, cx.spec(self.conn).and_then(|s| s.dpd)) {
            (ReqKind::Dpd, Some(d)) => d.timeout,
            _ => cx.cfg.request_timeout,
        };
        self.pending = Some(Pending {
            msg_id,
            bytes: bytes.clone(),
            next_at: cx.now + cx.cfg.retransmit_initial,
            interval: cx.cfg.retransmit_initial,
            give_up_at: cx.now + give_up,
            kind,
        });
        self.transmit(cx, bytes);
    }

    fn respond(&mut self, cx: &mut Ctx<'_>, exchange: Exchange, msg_id: u32, payloads: &[Payload]) {
        let h = self.header(exchange, msg_id, true);
        let Some(msg) = self.build(&h, payloads) else {
            return;
        };
        let bytes = self.framed(msg);
        self.last_resp = Some((msg_id, bytes.clone()));
        self.transmit(cx, bytes);
    }

    /// The outstanding request is answered: take its kind, start the next.
    fn complete(&mut self, cx: &mut Ctx<'_>) -> Option<ReqKind> {
        let done = self.pending.take().map(|p| p.kind);
        if let Some(q) = self.queue.pop_front() {
            self.request(cx, q.exchange, q.payloads, q.kind);
        }
        done
    }

    // ----------------------------------------------------------------------
    // IKE_SA_INIT
    // ----------------------------------------------------------------------

    /// A new IKE SA we initiate: its IKE_SA_INIT request goes out.
    pub fn initiate(cx: &mut Ctx<'_>, conn: usize) -> Option<IkeSa> {
        let spec = cx.spec(conn)?;
        let peer = SocketAddr::new(spec.peer, IKE_PORT);
        let mut sa = IkeSa::blank(conn, true, peer, spec.ike, cx.now);
        sa.spi_i = random_spi8()?;
        sa.ni = random(NONCE_LEN)?;
        let (dh, public) = dh_generate(spec.ike.dh).ok()?;
        sa.dh = Some(dh);
        let payloads = sa.init_payloads(cx, &public);
        let h = sa.header(Exchange::IkeSaInit, 0, false);
        sa.init_req = wire::encode_message(&h, &payloads);
        sa.next_req_id = 1;
        sa.send_init(cx);
        cx.state(conn, ConnState::Connecting, None);
        Some(sa)
    }

    fn init_payloads(&self, cx: &Ctx<'_>, public: &[u8]) -> Vec<Payload> {
        let mut p = Vec::new();
        if let Some(c) = &self.cookie {
            p.push(notify_payload(0, vec![], notify::COOKIE, c.clone()));
        }
        p.push(Payload::Sa(vec![ike_proposal(&self.algs, vec![])]));
        p.push(Payload::Ke {
            group: self.algs.dh.number(),
            data: public.to_vec(),
        });
        p.push(Payload::Nonce(self.ni.clone()));
        p.push(notify_payload(
            0,
            vec![],
            notify::NAT_DETECTION_SOURCE_IP,
            nat_hash(&self.spi_i, &[0; 8], cx.cfg.local_addr, self.local_port).to_vec(),
        ));
        p.push(notify_payload(
            0,
            vec![],
            notify::NAT_DETECTION_DESTINATION_IP,
            nat_hash(&self.spi_i, &[0; 8], self.peer.ip(), self.peer.port()).to_vec(),
        ));
        p
    }

    fn send_init(&mut self, cx: &mut Ctx<'_>) {
        let bytes = self.init_req.clone();
        self.pending = Some(Pending {
            msg_id: 0,
            bytes: bytes.clone(),
            next_at: cx.now + cx.cfg.retransmit_initial,
            interval: cx.cfg.retransmit_initial,
            give_up_at: cx.now + cx.cfg.request_timeout,
            kind: ReqKind::Init,
        });
        self.transmit(cx, bytes);
    }

    /// Responder: an IKE_SA_INIT request for connection `conn`. Returns the
    /// half-open SA, or None when answered with an error (or dropped).
    /// `quiet`: the connection is established already, and an
    /// unauthenticated message must not change what the operator sees.
    #[allow(clippy::too_many_arguments)]
    pub fn respond_init(
        cx: &mut Ctx<'_>,
        conn: usize,
        quiet: bool,
        from: SocketAddr,
        local_port: u16,
        raw: &[u8],
        h: &Header,
        p: &[Payload],
    ) -> Option<IkeSa> {
        let spec = cx.spec(conn)?;
        let algs = spec.ike;
        let mut sa = IkeSa::blank(conn, false, from, algs, cx.now);
        sa.local_port = local_port;
        sa.spi_i = h.spi_i;
        sa.state = SaState::AuthPending;
        let ours = ike_proposal(&algs, vec![]);
        let offered = sa_payload(p)?;
        let (ke_group, ke) = ke_payload(p)?;
        let ni = nonce_payload(p)?;
        if !(16..=256).contains(&ni.len()) {
            return None;
        }
        let number = match select(&offered, &ours, false) {
            Ok((n, _)) => n,
            Err(e) => {
                sa.error_init(cx, h, notify::NO_PROPOSAL_CHOSEN, vec![]);
                if !quiet {
                    cx.state(
                        conn,
                        ConnState::Down,
                        Some(format!("no proposal chosen: {}", e.0)),
                    );
                }
                return None;
            }
        };
        if ke_group != algs.dh.number() {
            // Our group was offered (select checked) but the KE is another's.
            let g = algs.dh.number().to_be_bytes().to_vec();
            sa.error_init(cx, h, notify::INVALID_KE_PAYLOAD, g);
            return None;
        }
        sa.spi_r = random_spi8()?;
        sa.ni = ni;
        sa.nr = random(NONCE_LEN)?;
        let (dh, public) = dh_generate(algs.dh).ok()?;
        let g_ir = dh_agree(dh, &ke).ok()?;
        // The request's NAT hashes were computed with SPIr = 0.
        sa.detect_nat(cx, p, &[0; 8], local_port);
        sa.derive(&g_ir)?;
        sa.init_req = raw.to_vec();
        let resp = vec![
            Payload::Sa(vec![answer(&ours, number, vec![], false)]),
            Payload::Ke {
                group: algs.dh.number(),
                data: public,
            },
            Payload::Nonce(sa.nr.clone()),
            notify_payload(
                0,
                vec![],
                notify::NAT_DETECTION_SOURCE_IP,
                nat_hash(&sa.spi_i, &sa.spi_r, cx.cfg.local_addr, local_port).to_vec(),
            ),
            notify_payload(
                0,
                vec![],
                notify::NAT_DETECTION_DESTINATION_IP,
                nat_hash(&sa.spi_i, &sa.spi_r, from.ip(), from.port()).to_vec(),
            ),
        ];
        let hh = sa.header(Exchange::IkeSaInit, 0, true);
        sa.init_resp = wire::encode_message(&hh, &resp);
        sa.next_peer_id = 1;
        let bytes = sa.framed(sa.init_resp.clone());
        sa.last_resp = Some((0, bytes.clone()));
        sa.transmit(cx, bytes);
        if !quiet {
            cx.state(conn, ConnState::Connecting, None);
        }
        Some(sa)
    }

    /// A plain IKE_SA_INIT error response (no state is kept).
    fn error_init(&mut self, cx: &mut Ctx<'_>, h: &Header, ty: u16, data: Vec<u8>) {
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
        let msg = wire::encode_message(&hh, &[notify_payload(0, vec![], ty, data)]);
        let bytes = self.framed(msg);
        self.transmit(cx, bytes);
    }

    /// NAT detection (RFC 7296 2.23). The peer's SOURCE hash not matching
    /// what we see means a NAT (or a peer forcing UDP encapsulation) on its
    /// side; its DESTINATION hash not matching our address means one on
    /// ours. Either way both move to port 4500.
    fn detect_nat(&mut self, cx: &Ctx<'_>, p: &[Payload], spi_r: &[u8; 8], local_port: u16) {
        let src = find_notify(p, notify::NAT_DETECTION_SOURCE_IP);
        let dst = find_notify(p, notify::NAT_DETECTION_DESTINATION_IP);
        let (Some(_), Some(dst)) = (src, dst) else {
            return;
        };
        let seen = nat_hash(&self.spi_i, spi_r, self.peer.ip(), self.peer.port());
        self.nat_remote = !p.iter().any(|x| {
            matches!(x, Payload::Notify(n) if n.ty == notify::NAT_DETECTION_SOURCE_IP && n.data == seen)
        });
        let me = nat_hash(&self.spi_i, spi_r, cx.cfg.local_addr, local_port);
        self.nat_local = dst.data != me;
    }

    fn derive(&mut self, g_ir: &Secret) -> Option<()> {
        let seed = crypto::skeyseed(self.algs.prf, &self.ni, &self.nr, g_ir.as_bytes());
        let keys = crypto::derive_ike_keys(
            self.algs.encr,
            self.algs.integ,
            self.algs.prf,
            &seed,
            &self.ni,
            &self.nr,
            &self.spi_i,
            &self.spi_r,
        )
        .ok()?;
        self.sk =
            Some(SkCrypto::new(self.algs.encr, self.algs.integ, &keys, self.we_initiated).ok()?);
        self.keys = Some(keys);
        Some(())
    }

    /// Initiator: the IKE_SA_INIT response.
    fn on_init_response(
        &mut self,
        cx: &mut Ctx<'_>,
        raw: &[u8],
        h: &Header,
        p: &[Payload],
    ) -> Vec<Action> {
        if let Some(c) = find_notify(p, notify::COOKIE) {
            // Ask again with the cookie (RFC 7296 2.6), bounded in size.
            if c.data.len() > 64 || self.cookie.is_some() {
                return vec![];
            }
            self.cookie = Some(c.data.clone());
            let Some(spec) = cx.spec(self.conn) else {
                return vec![];
            };
            let _ = spec;
            let Some((dh, public)) = dh_generate(self.algs.dh).ok() else {
                return vec![];
            };
            self.dh = Some(dh);
            let payloads = self.init_payloads(cx, &public);
            let hh = self.header(Exchange::IkeSaInit, 0, false);
            self.init_req = wire::encode_message(&hh, &payloads);
            self.send_init(cx);
            return vec![];
        }
        if let Some(n) = error_notify(p) {
            let reason = match n.ty {
                notify::NO_PROPOSAL_CHOSEN => {
                    "no proposal chosen: the peer accepts none of our IKE algorithms".to_string()
                }
                notify::INVALID_KE_PAYLOAD => {
                    let g = n.data.first_chunk::<2>().map(|b| u16::from_be_bytes(*b));
                    format!(
                        "no proposal chosen: the peer wants DH group {}",
                        g.map_or("?".into(), |g| g.to_string())
                    )
                }
                t => format!("the peer refused IKE_SA_INIT with {}", notify_name(t)),
            };
            cx.state(self.conn, ConnState::Down, Some(reason));
            self.pending = None;
            return vec![Action::Remove, Action::Retry];
        }
        let ours = ike_proposal(&self.algs, vec![]);
        let chosen = sa_payload(p);
        let ke = ke_payload(p);
        let nr = nonce_payload(p);
        let (Some(chosen), Some((group, ke)), Some(nr)) = (chosen, ke, nr) else {
            return vec![];
        };
        if let Err(e) = check_answer(&chosen, &ours, false) {
            cx.state(
                self.conn,
                ConnState::Down,
                Some(format!("no proposal chosen: {}", e.0)),
            );
            self.pending = None;
            return vec![Action::Remove, Action::Retry];
        }
        if group != self.algs.dh.number() || !(16..=256).contains(&nr.len()) || h.spi_r == [0; 8] {
            return vec![];
        }
        let Some(dh) = self.dh.take() else {
            return vec![];
        };
        let Ok(g_ir) = dh_agree(dh, &ke) else {
            return vec![];
        };
        self.spi_r = h.spi_r;
        self.nr = nr;
        let port = self.local_port;
        self.detect_nat(cx, p, &h.spi_r, port);
        if self.derive(&g_ir).is_none() {
            return vec![];
        }
        self.init_resp = raw.to_vec();
        self.pending = None;
        if self.nat_local || self.nat_remote {
            self.local_port = NATT_PORT;
            self.peer.set_port(NATT_PORT);
        }
        self.send_auth(cx);
        vec![]
    }

    // ----------------------------------------------------------------------
    // IKE_AUTH
    // ----------------------------------------------------------------------

    fn send_auth(&mut self, cx: &mut Ctx<'_>) {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return;
        };
        let (Some((idi, auth)), Some(spi_in)) = (self.our_id_and_auth(&spec), random_spi4()) else {
            return;
        };
        let (idr, _) = id_payload(false, &spec.remote_id);
        let payloads = vec![
            idi,
            notify_payload(0, vec![], notify::INITIAL_CONTACT, vec![]),
            idr,
            auth,
            Payload::Sa(vec![esp_proposal(&spec.esp, spi_in, false)]),
            Payload::TsI(ts::from_subnets(&spec.local_ts)),
            Payload::TsR(ts::from_subnets(&spec.remote_ts)),
        ];
        self.state = SaState::AuthPending;
        self.request(cx, Exchange::IkeAuth, payloads, ReqKind::Auth { spi_in });
    }

    /// Our ID payload and our AUTH (RFC 7296 2.15): over our first message,
    /// the peer's nonce and prf(our SK_p, our ID). None before the keys.
    fn our_id_and_auth(&self, spec: &ConnSpec) -> Option<(Payload, Payload)> {
        let keys = self.keys.as_ref()?;
        let (first, peer_nonce, sk_p) = if self.we_initiated {
            (&self.init_req, &self.nr, keys.sk_pi.as_bytes())
        } else {
            (&self.init_resp, &self.ni, keys.sk_pr.as_bytes())
        };
        let (id, id_body) = id_payload(self.we_initiated, &spec.local_id);
        let octets = signed_octets(self.algs.prf, first, peer_nonce, sk_p, &id_body);
        let data = psk_auth(self.algs.prf, spec.psk.as_bytes(), &octets);
        Some((
            id,
            Payload::Auth {
                method: AUTH_PSK,
                data,
            },
        ))
    }

    /// Whether the peer's AUTH `got` (for its ID payload body `id_body`) is
    /// right for our PSK: the mirror of [`IkeSa::our_id_and_auth`].
    fn peer_auth_ok(&self, spec: &ConnSpec, id_body: &[u8], got: &[u8]) -> bool {
        let Some(keys) = &self.keys else {
            return false;
        };
        let (peer_first, our_nonce, sk_p) = if self.we_initiated {
            (&self.init_resp, &self.ni, keys.sk_pr.as_bytes())
        } else {
            (&self.init_req, &self.nr, keys.sk_pi.as_bytes())
        };
        let octets = signed_octets(self.algs.prf, peer_first, our_nonce, sk_p, id_body);
        let want = psk_auth(self.algs.prf, spec.psk.as_bytes(), &octets);
        ct_eq(&want, got)
    }

    /// Initiator: the IKE_AUTH response.
    fn on_auth_response(&mut self, cx: &mut Ctx<'_>, spi_in: u32, p: &[Payload]) -> Vec<Action> {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![Action::Remove];
        };
        let Some((idr, method, auth)) = id_and_auth(p, false) else {
            let reason = match error_notify(p) {
                Some(n) if n.ty == notify::AUTHENTICATION_FAILED => {
                    "authentication failed: the peer refused our identity or pre-shared key"
                        .to_string()
                }
                Some(n) => format!("the peer refused IKE_AUTH with {}", notify_name(n.ty)),
                None => "IKE_AUTH response without the peer's identity and AUTH".to_string(),
            };
            cx.state(self.conn, ConnState::Down, Some(reason));
            return vec![Action::Remove, Action::Retry];
        };
        if let Some(reason) = wrong_identity(&spec, &idr) {
            cx.state(self.conn, ConnState::Down, Some(reason));
            self.send_delete_ike_once(cx);
            return vec![Action::Remove, Action::Retry];
        }
        if method != AUTH_PSK || !self.peer_auth_ok(&spec, &idr.body(), &auth) {
            cx.state(
                self.conn,
                ConnState::Down,
                Some(
                    "authentication failed: the peer's AUTH does not match our pre-shared key"
                        .into(),
                ),
            );
            self.send_delete_ike_once(cx);
            return vec![Action::Remove, Action::Retry];
        }
        self.established(cx, &spec);
        // The CHILD_SA: its own errors leave the IKE SA up (RFC 7296 1.2).
        if let Some(n) = error_notify(p) {
            cx.state(
                self.conn,
                ConnState::Established,
                Some(format!(
                    "CHILD_SA refused by the peer: {}",
                    notify_name(n.ty)
                )),
            );
            return vec![];
        }
        match self.child_from_answer(
            cx,
            &spec,
            spi_in,
            p,
            None,
            &self.ni.clone(),
            &self.nr.clone(),
            false,
        ) {
            Ok(child) => {
                self.emit_child_up(cx, &spec, &child, None);
                self.children.push(child);
                cx.state(self.conn, ConnState::Established, None);
            }
            Err(reason) => {
                cx.state(
                    self.conn,
                    ConnState::Established,
                    Some(format!("CHILD_SA: {reason}")),
                );
            }
        }
        vec![]
    }

    fn established(&mut self, cx: &mut Ctx<'_>, spec: &ConnSpec) {
        self.state = SaState::Established;
        self.established_at = Some(cx.now);
        self.rekey_at = Some(cx.now + rekey_after(spec.ike_lifetime));
        self.expire_at = Some(cx.now + spec.ike_lifetime);
        self.last_recv = cx.now;
    }

    /// Build a CHILD_SA from the responder's SA/TS answer (we initiated).
    #[allow(clippy::too_many_arguments)]
    fn child_from_answer(
        &self,
        cx: &Ctx<'_>,
        spec: &ConnSpec,
        spi_in: u32,
        p: &[Payload],
        g_ir: Option<&Secret>,
        ni: &[u8],
        nr: &[u8],
        with_dh: bool,
    ) -> Result<Child, String> {
        let chosen = sa_payload(p).ok_or("no SA payload")?;
        let ours = esp_proposal(&spec.esp, spi_in, with_dh);
        let spi = check_answer(&chosen, &ours, !with_dh)
            .map_err(|e| format!("no proposal chosen: {}", e.0))?;
        let spi_out = esp_spi(&spi).ok_or("the responder's ESP SPI is not 4 bytes")?;
        let Some((tsi, tsr)) = ts_payloads(p) else {
            return Err("no traffic selectors in the answer".into());
        };
        if !ts::within(&tsi, &ts::from_subnets(&spec.local_ts))
            || !ts::within(&tsr, &ts::from_subnets(&spec.remote_ts))
        {
            return Err("the peer's traffic selectors are not within ours".into());
        }
        let ck = self.child_keys(spec, g_ir, ni, nr)?;
        Ok(self.new_child(cx, spec, spi_in, spi_out, ck, tsi, tsr))
    }

    /// KEYMAT for a CHILD_SA of this IKE SA (RFC 7296 2.17), with the
    /// exchange's roles.
    fn child_keys(
        &self,
        spec: &ConnSpec,
        g_ir: Option<&Secret>,
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildKeys, String> {
        let keys = self.keys.as_ref().ok_or("no keys")?;
        crypto::derive_child_keys(
            self.algs.prf,
            keys.sk_d.as_bytes(),
            g_ir.map(|g| g.as_bytes()),
            ni,
            nr,
            spec.esp.encr,
            spec.esp.integ,
        )
        .map_err(|e| e.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn new_child(
        &self,
        cx: &Ctx<'_>,
        spec: &ConnSpec,
        spi_in: u32,
        spi_out: u32,
        keys: ChildKeys,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> Child {
        Child {
            spi_in,
            spi_out,
            keys,
            local_ts,
            remote_ts,
            created: cx.now,
            rekey_at: cx.now + rekey_after(spec.esp_lifetime),
            expire_at: cx.now + spec.esp_lifetime,
            state: ChildState::Installed,
            collision: None,
        }
    }

    fn emit_child_up(
        &self,
        cx: &mut Ctx<'_>,
        spec: &ConnSpec,
        c: &Child,
        rekeyed_from: Option<u32>,
    ) {
        // KEYMAT: initiator-to-responder keys first (RFC 7296 2.17). The
        // exchange's initiator is not necessarily the IKE SA's: `keys` was
        // derived with the exchange's roles and `c` holds them already
        // oriented (see `orient`).
        cx.ev.push_back(Event::ChildUp(Box::new(ChildSaInfo {
            conn: self.conn,
            conn_name: spec.name.clone(),
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            encr: spec.esp.encr,
            integ: spec.esp.integ,
            encr_key_in: c.keys.encr_r.clone(),
            integ_key_in: c.keys.integ_r.clone(),
            encr_key_out: c.keys.encr_i.clone(),
            integ_key_out: c.keys.integ_i.clone(),
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            peer: self.peer,
            local_port: self.local_port,
            encap: self.local_port == NATT_PORT,
            lifetime: spec.esp_lifetime,
            rekeyed_from,
        })));
    }

    /// Responder: the IKE_AUTH request.
    fn on_auth_request(&mut self, cx: &mut Ctx<'_>, msg_id: u32, p: &[Payload]) -> Vec<Action> {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![Action::Remove];
        };
        let Some((idi, method, auth)) = id_and_auth(p, true) else {
            self.respond(
                cx,
                Exchange::IkeAuth,
                msg_id,
                &[notify_payload(0, vec![], notify::INVALID_SYNTAX, vec![])],
            );
            return vec![Action::Remove];
        };
        let idr_ok = p.iter().all(|x| match x {
            Payload::IdR(i) => spec.local_id.matches(i.id_type, &i.data),
            _ => true,
        });
        let reason = if let Some(reason) = wrong_identity(&spec, &idi) {
            Some(reason)
        } else if !idr_ok {
            Some(format!(
                "authentication failed: the peer asks for another identity than ours ({})",
                spec.local_id
            ))
        } else if method != AUTH_PSK || !self.peer_auth_ok(&spec, &idi.body(), &auth) {
            Some("authentication failed: the peer's AUTH does not match our pre-shared key".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.respond(
                cx,
                Exchange::IkeAuth,
                msg_id,
                &[notify_payload(
                    0,
                    vec![],
                    notify::AUTHENTICATION_FAILED,
                    vec![],
                )],
            );
            cx.state(self.conn, ConnState::Down, Some(reason));
            return vec![Action::Remove];
        }
        let Some((idr, our_auth)) = self.our_id_and_auth(&spec) else {
            return vec![Action::Remove];
        };
        let mut resp = vec![idr, our_auth];
        self.established(cx, &spec);
        let mut actions = vec![];
        if find_notify(p, notify::INITIAL_CONTACT).is_some() {
            actions.push(Action::DropOthers);
        }
        let ni = self.ni.clone();
        let nr = self.nr.clone();
        match self.child_from_request(cx, &spec, p, None, &ni, &nr, false) {
            Ok((child, sa, tsi, tsr)) => {
                resp.extend([Payload::Sa(vec![sa]), Payload::TsI(tsi), Payload::TsR(tsr)]);
                self.respond(cx, Exchange::IkeAuth, msg_id, &resp);
                self.emit_child_up(cx, &spec, &child, None);
                self.children.push(child);
                cx.state(self.conn, ConnState::Established, None);
            }
            Err((ty, reason)) => {
                resp.push(notify_payload(0, vec![], ty, vec![]));
                self.respond(cx, Exchange::IkeAuth, msg_id, &resp);
                cx.state(
                    self.conn,
                    ConnState::Established,
                    Some(format!("CHILD_SA: {reason}")),
                );
            }
        }
        actions
    }

    /// Responder side of a CHILD_SA: select, narrow, derive. Returns the
    /// child (keys oriented for us), our SA answer, and the narrowed TS.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn child_from_request(
        &self,
        cx: &Ctx<'_>,
        spec: &ConnSpec,
        p: &[Payload],
        g_ir: Option<&Secret>,
        ni: &[u8],
        nr: &[u8],
        with_dh: bool,
    ) -> Result<(Child, Proposal, Vec<TrafficSelector>, Vec<TrafficSelector>), (u16, String)> {
        let offered = sa_payload(p).ok_or((notify::INVALID_SYNTAX, "no SA payload".to_string()))?;
        let spi_in =
            random_spi4().ok_or((notify::TEMPORARY_FAILURE, "no randomness".to_string()))?;
        let ours = esp_proposal(&spec.esp, spi_in, with_dh);
        let (number, spi) = select(&offered, &ours, !with_dh).map_err(|e| {
            (
                notify::NO_PROPOSAL_CHOSEN,
                format!("no proposal chosen: {}", e.0),
            )
        })?;
        let spi_out = esp_spi(&spi).ok_or((
            notify::INVALID_SYNTAX,
            "the peer's ESP SPI is not 4 bytes".to_string(),
        ))?;
        let Some((tsi, tsr)) = ts_payloads(p) else {
            return Err((notify::TS_UNACCEPTABLE, "no traffic selectors".into()));
        };
        // The initiator's TSi is its side: our remote subnets.
        let tsi_n = ts::narrow(&tsi, &ts::from_subnets(&spec.remote_ts));
        let tsr_n = ts::narrow(&tsr, &ts::from_subnets(&spec.local_ts));
        if tsi_n.is_empty() || tsr_n.is_empty() {
            let show =
                |v: &[TrafficSelector]| v.iter().map(ts::display).collect::<Vec<_>>().join(", ");
            return Err((
                notify::TS_UNACCEPTABLE,
                format!(
                    "traffic selectors unacceptable: the peer proposes {} -> {}",
                    show(&tsi),
                    show(&tsr)
                ),
            ));
        }
        let ck = self
            .child_keys(spec, g_ir, ni, nr)
            .map_err(|e| (notify::TEMPORARY_FAILURE, e))?;
        // We are the exchange's responder: what it calls "initiator to
        // responder" is our inbound.
        let child = self.new_child(
            cx,
            spec,
            spi_in,
            spi_out,
            orient(ck, false),
            tsr_n.clone(),
            tsi_n.clone(),
        );
        let sa = answer(&ours, number, spi_in.to_be_bytes().to_vec(), !with_dh);
        Ok((child, sa, tsi_n, tsr_n))
    }

    // ----------------------------------------------------------------------
    // Receiving
    // ----------------------------------------------------------------------

    /// Decrypt and decode the SK payload of `msg`. Anything wrong: None (the
    /// message is dropped; nothing unauthenticated changes state).
    fn open(&self, raw: &[u8], msg: &Message<'_>) -> Option<Vec<Payload>> {
        let sk = self.sk.as_ref()?;
        let skp = msg.payloads.iter().find(|r| r.ty == payload::SK)?;
        let inner = sk.open(raw, skp.offset).ok()?;
        let first = msg.sk_first_payload?;
        let chain = wire::parse_chain(first, &inner).ok()?;
        let mut out = Vec::with_capacity(chain.len());
        for r in &chain {
            let p = wire::decode(r).ok()?;
            if let Payload::Unknown { critical: true, .. } = p {
                // A critical payload we do not understand: the request is
                // refused by its handler (INVALID_SYNTAX-like); here we just
                // keep it visible.
            }
            out.push(p);
        }
        Some(out)
    }

    /// A message for this SA. `raw` is the IKE message (marker removed).
    pub fn on_message(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        local_port: u16,
        raw: &[u8],
        msg: &Message<'_>,
    ) -> Vec<Action> {
        let h = &msg.header;
        if h.is_response() {
            let Some(pend) = &self.pending else {
                return vec![];
            };
            if pend.msg_id != h.message_id {
                return vec![];
            }
            if h.exchange == Exchange::IkeSaInit {
                if self.state != SaState::InitSent || !self.we_initiated {
                    return vec![];
                }
                let mut p = Vec::new();
                for r in &msg.payloads {
                    match wire::decode(r) {
                        Ok(x) => p.push(x),
                        Err(_) => return vec![],
                    }
                }
                self.last_recv = cx.now;
                return self.on_init_response(cx, raw, h, &p);
            }
            let Some(p) = self.open(raw, msg) else {
                return vec![];
            };
            self.authenticated_from(cx, from, local_port);
            let Some(kind) = self.complete(cx) else {
                return vec![];
            };
            return self.on_response(cx, kind, &p);
        }
        // A request from the peer.
        if h.exchange == Exchange::IkeSaInit {
            // A retransmitted IKE_SA_INIT: answer it again.
            if let Some((0, bytes)) = &self.last_resp {
                let b = bytes.clone();
                self.transmit(cx, b);
            }
            return vec![];
        }
        if h.message_id.wrapping_add(1) == self.next_peer_id {
            if let Some((id, bytes)) = &self.last_resp
                && *id == h.message_id
            {
                let b = bytes.clone();
                self.transmit(cx, b);
            }
            return vec![];
        }
        if h.message_id != self.next_peer_id {
            return vec![];
        }
        let Some(p) = self.open(raw, msg) else {
            return vec![];
        };
        self.authenticated_from(cx, from, local_port);
        self.next_peer_id = self.next_peer_id.wrapping_add(1);
        if let Some(ty) = p.iter().find_map(|x| match x {
            Payload::Unknown {
                critical: true, ty, ..
            } => Some(*ty),
            _ => None,
        }) {
            self.respond(
                cx,
                h.exchange,
                h.message_id,
                &[notify_payload(
                    0,
                    vec![],
                    notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![ty],
                )],
            );
            return vec![];
        }
        match (h.exchange, self.state) {
            (Exchange::IkeAuth, SaState::AuthPending) if !self.we_initiated => {
                self.on_auth_request(cx, h.message_id, &p)
            }
            (Exchange::CreateChildSa, SaState::Established) => {
                self.on_create_child_request(cx, h.message_id, &p)
            }
            (Exchange::Informational, SaState::Established | SaState::Closing) => {
                self.on_informational_request(cx, h.message_id, &p)
            }
            (ex, _) => {
                // Not acceptable in this state (e.g. CREATE_CHILD_SA before
                // IKE_AUTH): refuse, keep the window moving.
                let ty = if ex == Exchange::CreateChildSa {
                    notify::NO_ADDITIONAL_SAS
                } else {
                    notify::INVALID_SYNTAX
                };
                self.respond(
                    cx,
                    ex,
                    h.message_id,
                    &[notify_payload(0, vec![], ty, vec![])],
                );
                vec![]
            }
        }
    }

    /// An authenticated message: the peer is alive, and its address is the
    /// one to use (a NAT mapping may have changed, RFC 7296 2.23).
    fn authenticated_from(&mut self, cx: &Ctx<'_>, from: SocketAddr, local_port: u16) {
        self.last_recv = cx.now;
        if self.nat_local || self.nat_remote {
            self.peer = from;
            self.local_port = local_port;
        }
    }

    fn on_response(&mut self, cx: &mut Ctx<'_>, kind: ReqKind, p: &[Payload]) -> Vec<Action> {
        match kind {
            ReqKind::Init => vec![],
            ReqKind::Auth { spi_in } => self.on_auth_response(cx, spi_in, p),
            ReqKind::ChildRekey {
                old_spi_in,
                new_spi_in,
                ni,
                dh,
            } => self.on_child_rekey_response(cx, old_spi_in, new_spi_in, &ni, dh, p),
            ReqKind::IkeRekey { new_spi, ni, dh } => {
                self.on_ike_rekey_response(cx, new_spi, &ni, dh, p)
            }
            ReqKind::Dpd | ReqKind::DeleteChild { .. } => vec![],
            ReqKind::DeleteIke => vec![Action::Remove],
        }
    }

    // ----------------------------------------------------------------------
    // CREATE_CHILD_SA
    // ----------------------------------------------------------------------

    /// Start rekeying the child with inbound SPI `spi_in`.
    pub fn rekey_child(&mut self, cx: &mut Ctx<'_>, spi_in: u32) {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return;
        };
        let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) else {
            return;
        };
        let (Some(new_spi_in), Some(ni)) = (random_spi4(), random(NONCE_LEN)) else {
            return;
        };
        let (dh, public) = match spec.esp.pfs {
            Some(g) => match dh_generate(g) {
                Ok((d, p)) => (Some(d), Some((g, p))),
                Err(_) => return,
            },
            None => (None, None),
        };
        let Some(c) = self.children.get_mut(i) else {
            return;
        };
        c.state = ChildState::Rekeying;
        let mut payloads = vec![
            notify_payload(
                PROTO_ESP,
                spi_in.to_be_bytes().to_vec(),
                notify::REKEY_SA,
                vec![],
            ),
            Payload::Sa(vec![esp_proposal(&spec.esp, new_spi_in, true)]),
            Payload::Nonce(ni.clone()),
        ];
        if let Some((g, pubv)) = public {
            payloads.push(Payload::Ke {
                group: g.number(),
                data: pubv,
            });
        }
        payloads.push(Payload::TsI(c.local_ts.clone()));
        payloads.push(Payload::TsR(c.remote_ts.clone()));
        self.request(
            cx,
            Exchange::CreateChildSa,
            payloads,
            ReqKind::ChildRekey {
                old_spi_in: spi_in,
                new_spi_in,
                ni,
                dh,
            },
        );
    }

    fn on_child_rekey_response(
        &mut self,
        cx: &mut Ctx<'_>,
        old_spi_in: u32,
        new_spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivate>,
        p: &[Payload],
    ) -> Vec<Action> {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![];
        };
        let retry = |sa: &mut IkeSa, cx: &mut Ctx<'_>| {
            if let Some(c) = sa.children.iter_mut().find(|c| c.spi_in == old_spi_in)
                && c.state == ChildState::Rekeying
            {
                c.state = ChildState::Installed;
                c.rekey_at = cx.now + rekey_retry();
            }
        };
        if let Some(n) = error_notify(p) {
            if n.ty == notify::CHILD_SA_NOT_FOUND {
                self.drop_child(cx, old_spi_in, "the peer no longer has it");
            } else {
                retry(self, cx);
            }
            return vec![];
        }
        let nr = nonce_payload(p);
        let Some(nr) = nr.filter(|n| (16..=256).contains(&n.len())) else {
            retry(self, cx);
            return vec![];
        };
        let g_ir = match (dh, ke_payload(p)) {
            (Some(d), Some((g, ke))) if spec.esp.pfs.map(|x| x.number()) == Some(g) => {
                match dh_agree(d, &ke) {
                    Ok(s) => Some(s),
                    Err(_) => {
                        retry(self, cx);
                        return vec![];
                    }
                }
            }
            (None, None) => None,
            _ => {
                retry(self, cx);
                return vec![];
            }
        };
        let child = match self.child_from_answer(
            cx,
            &spec,
            new_spi_in,
            p,
            g_ir.as_ref(),
            ni,
            &nr,
            spec.esp.pfs.is_some(),
        ) {
            Ok(c) => c,
            Err(_) => {
                retry(self, cx);
                return vec![];
            }
        };
        let collision = self
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .and_then(|c| c.collision.clone());
        self.emit_child_up(cx, &spec, &child, Some(old_spi_in));
        self.children.push(child);
        match collision {
            // RFC 7296 2.8.1: the CHILD_SA made with the lowest of the four
            // nonces is redundant; whoever made it deletes it. The old one
            // is deleted by the initiator of the exchange that survives.
            Some((their_new, their_ni, our_nr)) => {
                let lowest_ours = {
                    let mine = ni.min(nr.as_slice());
                    let theirs = their_ni.as_slice().min(our_nr.as_slice());
                    mine <= theirs
                };
                if lowest_ours {
                    self.replace_child(cx, old_spi_in, their_new);
                    self.delete_child(cx, new_spi_in);
                } else {
                    self.replace_child(cx, old_spi_in, new_spi_in);
                    self.delete_child(cx, old_spi_in);
                }
            }
            None => {
                self.replace_child(cx, old_spi_in, new_spi_in);
                self.delete_child(cx, old_spi_in);
            }
        }
        vec![]
    }

    /// The old child gives way to `new`: it stops sending now and is kept
    /// for inbound packets in flight until the grace period ends.
    fn replace_child(&mut self, cx: &Ctx<'_>, old_spi_in: u32, _new: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old_spi_in) {
            c.state = ChildState::Replaced {
                until: cx.now + cx.cfg.rekey_grace,
            };
        }
    }

    /// Ask the peer to delete our inbound SA `spi_in` (and its outbound twin).
    fn delete_child(&mut self, cx: &mut Ctx<'_>, spi_in: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in)
            && !matches!(c.state, ChildState::Replaced { .. })
        {
            c.state = ChildState::Replaced {
                until: cx.now + cx.cfg.rekey_grace,
            };
        }
        self.request(
            cx,
            Exchange::Informational,
            vec![Payload::Delete(Delete {
                protocol: PROTO_ESP,
                spi_size: 4,
                spis: vec![spi_in.to_be_bytes().to_vec()],
            })],
            ReqKind::DeleteChild { spi_in },
        );
    }

    /// Forget a child now (reported down).
    fn drop_child(&mut self, cx: &mut Ctx<'_>, spi_in: u32, why: &str) {
        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(i);
            cx.ev.push_back(Event::ChildDown {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: why.to_string(),
            });
        }
    }

    fn on_create_child_request(
        &mut self,
        cx: &mut Ctx<'_>,
        msg_id: u32,
        p: &[Payload],
    ) -> Vec<Action> {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![];
        };
        let is_ike = p.iter().any(
            |x| matches!(x, Payload::Sa(v) if v.first().is_some_and(|pp| pp.protocol == PROTO_IKE)),
        );
        if is_ike {
            return self.on_ike_rekey_request(cx, &spec, msg_id, p);
        }
        let refuse = |sa: &mut IkeSa, cx: &mut Ctx<'_>, ty: u16, data: Vec<u8>| {
            sa.respond(
                cx,
                Exchange::CreateChildSa,
                msg_id,
                &[notify_payload(0, vec![], ty, data)],
            );
        };
        let Some(rekey) = find_notify(p, notify::REKEY_SA) else {
            // A new CHILD_SA beside the one we have: vpcgw keeps one per
            // connection (all subnets in it), so it is declined.
            refuse(self, cx, notify::NO_ADDITIONAL_SAS, vec![]);
            return vec![];
        };
        // The SPI in REKEY_SA is the peer's inbound SPI: our outbound one.
        let old_out = rekey.spi.first_chunk::<4>().map(|b| u32::from_be_bytes(*b));
        let Some(old) = self
            .children
            .iter()
            .find(|c| Some(c.spi_out) == old_out && !matches!(c.state, ChildState::Replaced { .. }))
            .map(|c| c.spi_in)
        else {
            refuse(self, cx, notify::CHILD_SA_NOT_FOUND, vec![]);
            return vec![];
        };
        let ni = nonce_payload(p);
        let Some(ni) = ni.filter(|n| (16..=256).contains(&n.len())) else {
            refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
            return vec![];
        };
        let ke = ke_payload(p);
        let (g_ir, our_ke) = match (spec.esp.pfs, ke) {
            (Some(g), Some((kg, data))) if kg == g.number() => {
                let Ok((d, public)) = dh_generate(g) else {
                    refuse(self, cx, notify::TEMPORARY_FAILURE, vec![]);
                    return vec![];
                };
                let Ok(s) = dh_agree(d, &data) else {
                    refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
                    return vec![];
                };
                (Some(s), Some((g, public)))
            }
            (Some(g), _) => {
                refuse(
                    self,
                    cx,
                    notify::INVALID_KE_PAYLOAD,
                    g.number().to_be_bytes().to_vec(),
                );
                return vec![];
            }
            (None, Some(_)) => {
                refuse(self, cx, notify::NO_PROPOSAL_CHOSEN, vec![]);
                return vec![];
            }
            (None, None) => (None, None),
        };
        let Some(nr) = random(NONCE_LEN) else {
            refuse(self, cx, notify::TEMPORARY_FAILURE, vec![]);
            return vec![];
        };
        match self.child_from_request(
            cx,
            &spec,
            p,
            g_ir.as_ref(),
            &ni,
            &nr,
            spec.esp.pfs.is_some(),
        ) {
            Err((ty, _)) => {
                refuse(self, cx, ty, vec![]);
                vec![]
            }
            Ok((child, sa, tsi, tsr)) => {
                let mut resp = vec![Payload::Sa(vec![sa]), Payload::Nonce(nr.clone())];
                if let Some((g, public)) = our_ke {
                    resp.push(Payload::Ke {
                        group: g.number(),
                        data: public,
                    });
                }
                resp.push(Payload::TsI(tsi));
                resp.push(Payload::TsR(tsr));
                self.respond(cx, Exchange::CreateChildSa, msg_id, &resp);
                let new_in = child.spi_in;
                self.emit_child_up(cx, &spec, &child, Some(old));
                self.children.push(child);
                if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old) {
                    if c.state == ChildState::Rekeying {
                        // Both ends rekey it at once: settled when ours is answered.
                        c.collision = Some((new_in, ni, nr));
                    } else {
                        // The peer deletes the old one once done; stop using it now.
                        c.state = ChildState::Replaced {
                            until: c.expire_at.min(cx.now + cx.cfg.rekey_grace * 6),
                        };
                    }
                }
                vec![]
            }
        }
    }

    // ----------------------------------------------------------------------
    // IKE SA rekey (RFC 7296 2.18)
    // ----------------------------------------------------------------------

    pub fn rekey_ike(&mut self, cx: &mut Ctx<'_>) {
        let (Some(new_spi), Some(ni)) = (random_spi8(), random(NONCE_LEN)) else {
            return;
        };
        let Ok((dh, public)) = dh_generate(self.algs.dh) else {
            return;
        };
        self.rekey_at = None;
        let payloads = vec![
            Payload::Sa(vec![ike_proposal(&self.algs, new_spi.to_vec())]),
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: self.algs.dh.number(),
                data: public,
            },
        ];
        self.request(
            cx,
            Exchange::CreateChildSa,
            payloads,
            ReqKind::IkeRekey { new_spi, ni, dh },
        );
    }

    /// The new IKE SA that a rekey makes. `initiator`: we initiated the
    /// rekey exchange (and are the new SA's original initiator).
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        cx: &mut Ctx<'_>,
        spec: &ConnSpec,
        initiator: bool,
        spi_i: [u8; 8],
        spi_r: [u8; 8],
        ni: &[u8],
        nr: &[u8],
        g_ir: &Secret,
    ) -> Option<IkeSa> {
        let old_d = self.keys.as_ref()?.sk_d.clone();
        let seed = crypto::rekey_skeyseed(self.algs.prf, old_d.as_bytes(), g_ir.as_bytes(), ni, nr);
        let mut sa = IkeSa::blank(self.conn, initiator, self.peer, self.algs, cx.now);
        sa.spi_i = spi_i;
        sa.spi_r = spi_r;
        sa.ni = ni.to_vec();
        sa.nr = nr.to_vec();
        sa.local_port = self.local_port;
        sa.nat_local = self.nat_local;
        sa.nat_remote = self.nat_remote;
        let keys = crypto::derive_ike_keys(
            self.algs.encr,
            self.algs.integ,
            self.algs.prf,
            &seed,
            ni,
            nr,
            &spi_i,
            &spi_r,
        )
        .ok()?;
        sa.sk = Some(SkCrypto::new(self.algs.encr, self.algs.integ, &keys, initiator).ok()?);
        sa.keys = Some(keys);
        sa.established(cx, spec);
        // The CHILD_SAs move to the new IKE SA.
        sa.children = std::mem::take(&mut self.children);
        self.state = SaState::Closing;
        Some(sa)
    }

    fn on_ike_rekey_response(
        &mut self,
        cx: &mut Ctx<'_>,
        new_spi: [u8; 8],
        ni: &[u8],
        dh: DhPrivate,
        p: &[Payload],
    ) -> Vec<Action> {
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![];
        };
        let backoff = |sa: &mut IkeSa, cx: &Ctx<'_>| sa.rekey_at = Some(cx.now + rekey_retry());
        if error_notify(p).is_some() {
            backoff(self, cx);
            return vec![];
        }
        let chosen = sa_payload(p);
        let nr = nonce_payload(p);
        let ke = ke_payload(p);
        let (Some(chosen), Some(nr), Some((g, ke))) = (chosen, nr, ke) else {
            backoff(self, cx);
            return vec![];
        };
        let ours = ike_proposal(&self.algs, new_spi.to_vec());
        let Ok(peer_spi) = check_answer(&chosen, &ours, false) else {
            backoff(self, cx);
            return vec![];
        };
        let Some(peer_spi) = ike_spi(&peer_spi) else {
            backoff(self, cx);
            return vec![];
        };
        if g != self.algs.dh.number() || !(16..=256).contains(&nr.len()) {
            backoff(self, cx);
            return vec![];
        }
        let Ok(g_ir) = dh_agree(dh, &ke) else {
            backoff(self, cx);
            return vec![];
        };
        let Some(new) = self.successor(cx, &spec, true, new_spi, peer_spi, ni, &nr, &g_ir) else {
            backoff(self, cx);
            return vec![];
        };
        // The old IKE SA is deleted by us, the initiator of the rekey.
        self.request(
            cx,
            Exchange::Informational,
            vec![Payload::Delete(Delete {
                protocol: PROTO_IKE,
                spi_size: 0,
                spis: vec![],
            })],
            ReqKind::DeleteIke,
        );
        vec![Action::Insert(Box::new(new))]
    }

    fn on_ike_rekey_request(
        &mut self,
        cx: &mut Ctx<'_>,
        spec: &ConnSpec,
        msg_id: u32,
        p: &[Payload],
    ) -> Vec<Action> {
        let refuse = |sa: &mut IkeSa, cx: &mut Ctx<'_>, ty: u16, data: Vec<u8>| {
            sa.respond(
                cx,
                Exchange::CreateChildSa,
                msg_id,
                &[notify_payload(0, vec![], ty, data)],
            );
        };
        let offered = sa_payload(p);
        let ni = nonce_payload(p);
        let ke = ke_payload(p);
        let (Some(offered), Some(ni), Some((g, ke))) = (offered, ni, ke) else {
            refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
            return vec![];
        };
        // Both ends rekeying the IKE SA at once: ours goes on, theirs is
        // told to try again (RFC 7296 2.25); jittered rekey times make this
        // rare, and it keeps one successor with all the CHILD_SAs.
        if matches!(
            self.pending.as_ref().map(|p| &p.kind),
            Some(ReqKind::IkeRekey { .. })
        ) || self
            .queue
            .iter()
            .any(|q| matches!(q.kind, ReqKind::IkeRekey { .. }))
        {
            refuse(self, cx, notify::TEMPORARY_FAILURE, vec![]);
            return vec![];
        }
        let Some(our_spi) = random_spi8() else {
            refuse(self, cx, notify::TEMPORARY_FAILURE, vec![]);
            return vec![];
        };
        let ours = ike_proposal(&self.algs, our_spi.to_vec());
        let (number, peer_spi) = match select(&offered, &ours, false) {
            Ok(x) => x,
            Err(_) => {
                refuse(self, cx, notify::NO_PROPOSAL_CHOSEN, vec![]);
                return vec![];
            }
        };
        let Some(peer_spi) = ike_spi(&peer_spi) else {
            refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
            return vec![];
        };
        if g != self.algs.dh.number() {
            refuse(
                self,
                cx,
                notify::INVALID_KE_PAYLOAD,
                self.algs.dh.number().to_be_bytes().to_vec(),
            );
            return vec![];
        }
        if !(16..=256).contains(&ni.len()) {
            refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
            return vec![];
        }
        let (Some(nr), Ok((dh, public))) = (random(NONCE_LEN), dh_generate(self.algs.dh)) else {
            refuse(self, cx, notify::TEMPORARY_FAILURE, vec![]);
            return vec![];
        };
        let Ok(g_ir) = dh_agree(dh, &ke) else {
            refuse(self, cx, notify::INVALID_SYNTAX, vec![]);
            return vec![];
        };
        let resp = vec![
            Payload::Sa(vec![answer(&ours, number, our_spi.to_vec(), false)]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: self.algs.dh.number(),
                data: public,
            },
        ];
        self.respond(cx, Exchange::CreateChildSa, msg_id, &resp);
        // The peer initiated this rekey: it is the new SA's initiator.
        match self.successor(cx, spec, false, peer_spi, our_spi, &ni, &nr, &g_ir) {
            Some(new) => vec![Action::Insert(Box::new(new))],
            None => vec![],
        }
    }

    // ----------------------------------------------------------------------
    // INFORMATIONAL
    // ----------------------------------------------------------------------

    fn on_informational_request(
        &mut self,
        cx: &mut Ctx<'_>,
        msg_id: u32,
        p: &[Payload],
    ) -> Vec<Action> {
        let mut reply = Vec::new();
        let mut actions = Vec::new();
        for x in p {
            let Payload::Delete(d) = x else {
                continue;
            };
            if d.protocol == PROTO_IKE {
                self.respond(cx, Exchange::Informational, msg_id, &[]);
                let was_current = self.state == SaState::Established;
                for c in std::mem::take(&mut self.children) {
                    cx.ev.push_back(Event::ChildDown {
                        conn: self.conn,
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        reason: "IKE SA deleted by the peer".into(),
                    });
                }
                if was_current {
                    cx.state(
                        self.conn,
                        ConnState::Down,
                        Some("deleted by the peer".into()),
                    );
                    actions.push(Action::Retry);
                }
                actions.push(Action::Remove);
                return actions;
            }
            if d.protocol == PROTO_ESP {
                let mut ours = Vec::new();
                for spi in &d.spis {
                    let Some(out) = spi.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) else {
                        continue;
                    };
                    if let Some(c) = self.children.iter().find(|c| c.spi_out == out) {
                        let (spi_in, replaced) =
                            (c.spi_in, matches!(c.state, ChildState::Replaced { .. }));
                        if !replaced {
                            ours.push(spi_in.to_be_bytes().to_vec());
                        }
                        self.drop_child(cx, spi_in, "deleted by the peer");
                    }
                }
                if !ours.is_empty() {
                    reply.push(Payload::Delete(Delete {
                        protocol: PROTO_ESP,
                        spi_size: 4,
                        spis: ours,
                    }));
                }
            }
        }
        self.respond(cx, Exchange::Informational, msg_id, &reply);
        actions
    }

    /// Tell the peer this IKE SA is gone, without waiting for an answer.
    fn send_delete_ike_once(&mut self, cx: &mut Ctx<'_>) {
        let h = self.header(Exchange::Informational, self.next_req_id, false);
        let payloads = [Payload::Delete(Delete {
            protocol: PROTO_IKE,
            spi_size: 0,
            spis: vec![],
        })];
        if let Some(msg) = self.build(&h, &payloads) {
            let bytes = self.framed(msg);
            self.transmit(cx, bytes);
        }
    }

    /// Close this IKE SA: children down, a Delete to the peer.
    pub fn close(&mut self, cx: &mut Ctx<'_>, why: &str) {
        for c in std::mem::take(&mut self.children) {
            cx.ev.push_back(Event::ChildDown {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: why.to_string(),
            });
        }
        if self.sk.is_some() {
            self.send_delete_ike_once(cx);
        }
        self.state = SaState::Closing;
    }

    // ----------------------------------------------------------------------
    // Time
    // ----------------------------------------------------------------------

    /// Timers: retransmissions, liveness, lifetimes, keepalives.
    pub fn on_timeout(&mut self, cx: &mut Ctx<'_>) -> Vec<Action> {
        let now = cx.now;
        let Some(spec) = cx.spec(self.conn).cloned() else {
            return vec![Action::Remove];
        };
        if self.is_half_open() && now >= self.created + cx.cfg.half_open_timeout {
            cx.state(
                self.conn,
                ConnState::Down,
                Some("the peer did not complete IKE_AUTH".into()),
            );
            return vec![Action::Remove];
        }
        // Retransmission, or giving up.
        if let Some(p) = &mut self.pending
            && now >= p.next_at
        {
            if now >= p.give_up_at {
                let kind = self.pending.take().map(|p| p.kind);
                return self.gave_up(cx, &spec, kind);
            }
            p.interval = (p.interval * 2).min(cx.cfg.retransmit_max);
            // The last wait ends when the request is given up, not later.
            p.next_at = (now + p.interval).min(p.give_up_at);
            let bytes = p.bytes.clone();
            self.transmit(cx, bytes);
        }
        if self.state == SaState::Closing {
            // Answered or not, a closing SA does not outlive its last request.
            if self.pending.is_none() && self.queue.is_empty() {
                return vec![Action::Remove];
            }
            return vec![];
        }
        if self.state != SaState::Established {
            return vec![];
        }
        if let Some(t) = self.expire_at
            && now >= t
        {
            self.close(cx, "IKE SA lifetime expired");
            cx.state(
                self.conn,
                ConnState::Down,
                Some("IKE SA lifetime expired before a rekey".into()),
            );
            return vec![Action::Remove, Action::Retry];
        }
        if let Some(t) = self.rekey_at
            && now >= t
            && self.pending.is_none()
        {
            self.rekey_ike(cx);
        }
        // CHILD_SA lifetimes.
        let mut to_rekey = Vec::new();
        let mut to_drop = Vec::new();
        for c in &self.children {
            match c.state {
                ChildState::Replaced { until } if now >= until => to_drop.push(c.spi_in),
                ChildState::Installed if now >= c.expire_at => to_drop.push(c.spi_in),
                ChildState::Installed if now >= c.rekey_at => to_rekey.push(c.spi_in),
                _ => {}
            }
        }
        for spi in to_drop {
            self.drop_child(cx, spi, "replaced or expired");
        }
        if self.pending.is_none()
            && let Some(spi) = to_rekey.first()
        {
            self.rekey_child(cx, *spi);
        }
        // Liveness (DPD, RFC 7296 2.4).
        if let Some(d) = spec.dpd
            && self.pending.is_none()
            && now.saturating_duration_since(self.last_recv) >= d.interval
        {
            self.request(cx, Exchange::Informational, vec![], ReqKind::Dpd);
        }
        // NAT keepalives while we are behind a NAT (RFC 3948 4).
        if self.nat_local && now.saturating_duration_since(self.last_sent) >= cx.cfg.nat_keepalive {
            self.last_sent = now;
            cx.tx.push_back(Transmit {
                src_port: NATT_PORT,
                dst: self.peer,
                data: vec![0xff],
            });
        }
        vec![]
    }

    /// A request went unanswered for too long.
    fn gave_up(&mut self, cx: &mut Ctx<'_>, spec: &ConnSpec, kind: Option<ReqKind>) -> Vec<Action> {
        let action = match kind {
            Some(ReqKind::Dpd) => spec.dpd.map_or(DpdAction::Restart, |d| d.action),
            _ => DpdAction::Restart,
        };
        let reason = match kind {
            Some(ReqKind::Init) => "peer not responding (no answer to IKE_SA_INIT)",
            Some(ReqKind::Auth { .. }) => "peer not responding (no answer to IKE_AUTH)",
            Some(ReqKind::Dpd) => "peer not responding (dead peer detection)",
            _ => "peer not responding",
        };
        for c in std::mem::take(&mut self.children) {
            cx.ev.push_back(Event::ChildDown {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: reason.to_string(),
            });
        }
        cx.state(self.conn, ConnState::Down, Some(reason.to_string()));
        match action {
            DpdAction::Restart => vec![Action::Remove, Action::Retry],
            DpdAction::Hold => vec![Action::Remove],
            DpdAction::Clear => vec![Action::Remove, Action::Park],
        }
    }

    /// The earliest instant this SA needs `on_timeout`.
    pub fn next_deadline(&self, cfg: &EngineConfig, spec: Option<&ConnSpec>) -> Option<Instant> {
        // The earliest so far; no allocation, as the driver asks after
        // every batch of datagrams, for every SA.
        let mut earliest: Option<Instant> = None;
        let mut t = Earliest(&mut earliest);
        if let Some(p) = &self.pending {
            t.push(p.next_at);
        }
        if self.is_half_open() {
            t.push(self.created + cfg.half_open_timeout);
        }
        if self.state == SaState::Closing {
            // Checked with the retransmissions.
        }
        if self.state == SaState::Established {
            t.extend(self.expire_at);
            if self.pending.is_none() {
                t.extend(self.rekey_at);
            }
            // A rekey or a liveness check waits for a free window: counting
            // their deadlines while a request is out would spin the caller.
            let free = self.pending.is_none();
            for c in &self.children {
                match c.state {
                    ChildState::Replaced { until } => t.push(until),
                    ChildState::Installed => {
                        t.push(c.expire_at);
                        if free {
                            t.push(c.rekey_at);
                        }
                    }
                    ChildState::Rekeying => {}
                }
            }
            if let (true, Some(d)) = (free, spec.and_then(|s| s.dpd)) {
                t.push(self.last_recv + d.interval);
            }
            if self.nat_local {
                t.push(self.last_sent + cfg.nat_keepalive);
            }
        }
        earliest
    }

    pub fn peer_addr(&self) -> IpAddr {
        self.peer.ip()
    }
}

/// Child keys as "initiator to responder" / "responder to initiator"
/// (RFC 7296 2.17), turned into ours: `encr_i`/`integ_i` become our
/// outbound keys and `encr_r`/`integ_r` our inbound ones. `we_initiated`:
/// we initiated the exchange that made the child.
pub fn orient(k: ChildKeys, we_initiated: bool) -> ChildKeys {
    if we_initiated {
        ChildKeys {
            encr_i: k.encr_i,
            integ_i: k.integ_i,
            encr_r: k.encr_r,
            integ_r: k.integ_r,
        }
    } else {
        ChildKeys {
            encr_i: k.encr_r,
            integ_i: k.integ_r,
            encr_r: k.encr_i,
            integ_r: k.integ_i,
        }
    }
}
