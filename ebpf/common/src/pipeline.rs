//! The per-packet pipeline, from raw frame to action. The XDP program is a thin
//! shell around [`process`]; host tests run the very same function over
//! in-memory maps.
//!
//! Order of checks (see docs/architecture.md):
//! 1. config loaded, interface known, frame parsed (ARP and ICMPv6 ND pass);
//! 2. LAN: the source must be a port's address (and MAC, when configured);
//!    WAN: inside sources are refused; traffic not for a port is IKE/ESP
//!    (peers only) or follows `wan_default`;
//! 3. later fragments follow their first fragment;
//! 4. ICMP errors quoting a tracked flow pass (related);
//! 5. tracked flows take the fast path; entries from an older policy
//!    generation are checked again;
//! 6. new flows are decided by the security groups, then VPN classification.

use crate::abi::{
    CT_FIN_BY_REPLY, CT_FROM_LAN, CT_ORIG_IS_A, CT_PICKED_UP, CT_REVOKED, CT_SEEN_REPLY, Config,
    CtKey, CtVal, FragKey, FragVal, NONE, PORT_HAS_MAC, ROLE_LAN, ROLE_WAN, WAN_DEFAULT_DROP,
    XSK_META_MAGIC, XskMeta,
};
use crate::conntrack::{
    REFRESH_NS, TcpState, Timeout, UDP_REPLIED, UDP_UNREPLIED, canonical_key_into, expired,
    is_reply, tcp_may_open, tcp_next, timeout_for,
};
use crate::maps::DataplaneMaps;
use crate::policy::{Flow, Origin, decide_new, is_peer, port_of, wan_source_spoofed};
use crate::stats::Reason;
use crate::wire::{
    Frag, HdrBuf, IPPROTO_ESP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Packet,
    ParseError, Parsed, Quoted, icmp_is_echo, icmp_is_echo_request, icmp_is_error,
    icmpv6_is_link_control, parse_into, parse_quoted_into,
};

pub const IKE_PORT: u16 = 500;
pub const IKE_NATT_PORT: u16 = 4500;

/// Per-packet working memory.
///
/// In the XDP program this is a per-CPU map value, not stack: the BPF stack is
/// 512 bytes for the whole call chain, and the BPF verifier does not track
/// what is stored in map memory. The second point matters as much as the
/// first: every path through the header parser (VLAN tags, IPv4 options,
/// IPv6 extension headers) would otherwise reach the rest of the program with
/// different exact values, and the verifier would check the rest once per
/// path, far past its budget. Read back from here, they all look alike.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Header bytes as read from the frame.
    pub buf: HdrBuf,
    pub p: Parsed,
    pub q: Quoted,
    pub flow: Flow,
    pub key: CtKey,
    pub val: CtVal,
    pub frag_key: FragKey,
    pub frag_val: FragVal,
    /// The origin the policy is asked about (see [`Work::then`]).
    pub ask: Origin,
    pub then: Then,
    /// The packet's source is `key.a`.
    pub src_is_a: bool,
    /// The outcome's reason, for the program's debug log (read back from
    /// here, it is one value to the verifier rather than one per path).
    pub reason: u32,
}

impl Default for Work {
    fn default() -> Self {
        Self {
            buf: [0; 40],
            p: Parsed::default(),
            q: Quoted::default(),
            flow: Flow::default(),
            key: CtKey::default(),
            val: CtVal::default(),
            frag_key: FragKey::default(),
            frag_val: FragVal::default(),
            ask: Origin::default(),
            then: Then::default(),
            src_is_a: false,
            reason: 0,
        }
    }
}

/// What to do with conntrack once the policy has decided a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Then {
    /// Decide alone, keep no state: ICMP other than echo, a SYN-ACK, RST or
    /// echo reply without a flow, an ICMP error that quotes no tracked flow.
    #[default]
    Nothing,
    /// Open a flow in state `Work::val.state` if allowed.
    Open,
    /// An entry admitted under an older policy generation: re-admit it
    /// (keeping its TCP state) if its first packet is still allowed, else
    /// forget it.
    Readmit,
}

/// What to do with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Pass,
    Drop,
    /// Hand to the AF_XDP socket at `XSKS[Outcome::xsk_index]`, with
    /// [`Outcome::meta`] in front.
    Redirect,
}

/// The outcome: the action, the reason it is counted under, and for a
/// redirect where to and for which connection.
///
/// Plain fields, all always set, rather than data inside `Action::Redirect`:
/// LLVM reads an enum's payload speculatively on paths where it is
/// undefined, and the verifier refuses to touch an undefined register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub reason: Reason,
    /// Connection id (not +1), meaningful for `Redirect`.
    pub conn: u32,
    pub xsk_index: u32,
}

impl Outcome {
    #[inline(always)]
    const fn pass(reason: Reason) -> Self {
        Self {
            action: Action::Pass,
            reason,
            conn: 0,
            xsk_index: 0,
        }
    }
    #[inline(always)]
    const fn drop(reason: Reason) -> Self {
        Self {
            action: Action::Drop,
            reason,
            conn: 0,
            xsk_index: 0,
        }
    }

    /// The metadata the program puts in front of a redirected frame.
    #[inline(always)]
    pub const fn meta(&self, cfg: &Config) -> XskMeta {
        XskMeta {
            magic: XSK_META_MAGIC,
            conn: self.conn,
            generation: cfg.generation,
            slot: cfg.slot as u32,
        }
    }
}

/// Where the packet came in and what it may become.
#[derive(Clone, Copy)]
struct Ingress {
    origin: Origin,
    xsk_index: u32,
    bytes: u64,
    now: u64,
}

/// Run the pipeline for one frame under `cfg` (the `CONFIG` entry). Counts
/// nothing itself except rule hits and per-connection bytes; the caller counts
/// `Outcome::reason` once the action is carried out (a redirect can still
/// fail there).
#[inline(always)]
pub fn process<M: DataplaneMaps, P: Packet + ?Sized>(
    m: &mut M,
    cfg: &Config,
    w: &mut Work,
    pkt: &P,
    ifindex: u32,
    rx_queue: u32,
    now: u64,
) -> Outcome {
    let parsed = parse_frame(pkt, w);
    process_parsed(m, cfg, w, parsed, pkt, ifindex, rx_queue, now)
}

/// The first step of [`process`]: the frame's headers into `w.p`.
///
/// Separate so the XDP program can parse from its one-call copy of the
/// frame's head and, only when that view runs short, from the frame itself:
/// choosing per frame rather than per read keeps the verifier's paths from
/// doubling at every header read.
#[inline(always)]
pub fn parse_frame<P: Packet + ?Sized>(pkt: &P, w: &mut Work) -> Result<(), ParseError> {
    parse_into(pkt, &mut w.p, &mut w.buf)
}

/// The rest of [`process`], given what [`parse_frame`] returned. `pkt` is the
/// whole frame (an ICMP error's quote is read from it).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn process_parsed<M: DataplaneMaps, P: Packet + ?Sized>(
    m: &mut M,
    cfg: &Config,
    w: &mut Work,
    parsed: Result<(), ParseError>,
    pkt: &P,
    ifindex: u32,
    rx_queue: u32,
    now: u64,
) -> Outcome {
    if cfg.generation == 0 {
        return Outcome::drop(Reason::DropNotReady);
    }
    let Some(&iface) = m.iface(ifindex) else {
        return Outcome::drop(Reason::DropUnknownIface);
    };
    match parsed {
        Ok(()) => {}
        Err(ParseError::Arp) => return Outcome::pass(Reason::PassArp),
        Err(e) => return Outcome::drop(Reason::from(e)),
    }
    let p = &w.p;
    if p.proto == IPPROTO_ICMPV6 && p.frag == Frag::None && icmpv6_is_link_control(p.icmp_type) {
        return Outcome::pass(Reason::PassNdp);
    }
    let slot = cfg.slot;
    let origin = if iface.role == ROLE_LAN {
        match port_of(m, slot, &p.src) {
            Some(pv) if pv.flags & PORT_HAS_MAC == 0 || pv.mac == p.src_mac => {}
            _ => return Outcome::drop(Reason::DropSpoofed),
        }
        Origin::Lan
    } else if iface.role == ROLE_WAN {
        if wan_source_spoofed(m, slot, p.family, &p.src) {
            return Outcome::drop(Reason::DropWanSpoofed);
        }
        if port_of(m, slot, &p.dst).is_none() {
            return to_gateway(m, cfg, w, now);
        }
        Origin::Wan
    } else {
        return Outcome::drop(Reason::DropUnknownIface);
    };
    let ing = Ingress {
        origin,
        xsk_index: iface.xsk_base + rx_queue,
        bytes: p.ip_len() as u64,
        now,
    };

    if let Frag::Later { id } = p.frag {
        w.frag_key = frag_key(p, id);
        let admitted = match m.frag_get(&w.frag_key) {
            Some(f) if !expired(now, f.created, timeout(cfg, Timeout::Fragment)) => Some(f.conn),
            _ => None,
        };
        return match admitted {
            Some(conn) => {
                if conn != NONE && origin == Origin::Lan {
                    redirect(m, cfg, ing, conn)
                } else {
                    Outcome::pass(Reason::PassFragment)
                }
            }
            _ => Outcome::drop(Reason::DropFragmentNoFirst),
        };
    }

    let outcome = track(m, cfg, w, pkt, ing);

    if let Frag::First { id } = w.p.frag
        && outcome.action != Action::Drop
    {
        w.frag_key = frag_key(&w.p, id);
        w.frag_val = FragVal {
            created: now,
            conn: if outcome.action == Action::Redirect {
                outcome.conn + 1
            } else {
                NONE
            },
            _pad: 0,
        };
        m.frag_insert(&w.frag_key, &w.frag_val);
    }
    outcome
}

/// WAN traffic for the gateway itself. A later fragment follows its first
/// fragment when that was admitted as IKE or ESP from a peer, whatever
/// `wan_default` says (later fragments carry no ports to recognise IKE by);
/// everything else is decided by [`wan_to_gateway`].
#[inline(always)]
fn to_gateway<M: DataplaneMaps>(m: &mut M, cfg: &Config, w: &mut Work, now: u64) -> Outcome {
    if let Frag::Later { id } = w.p.frag {
        w.frag_key = frag_key(&w.p, id);
        if let Some(f) = m.frag_get(&w.frag_key)
            && !expired(now, f.created, timeout(cfg, Timeout::Fragment))
        {
            return Outcome::pass(Reason::PassFragment);
        }
        return wan_to_gateway(m, cfg, &w.p);
    }
    let out = wan_to_gateway(m, cfg, &w.p);
    if let Frag::First { id } = w.p.frag
        && (out.reason == Reason::PassIke || out.reason == Reason::PassEsp)
    {
        w.frag_key = frag_key(&w.p, id);
        w.frag_val = FragVal {
            created: now,
            conn: NONE,
            _pad: 0,
        };
        m.frag_insert(&w.frag_key, &w.frag_val);
    }
    out
}

/// WAN traffic whose destination is not a port: IKE and ESP from peers, then
/// the configured default.
#[inline(always)]
fn wan_to_gateway<M: DataplaneMaps>(m: &M, cfg: &Config, p: &Parsed) -> Outcome {
    let ike = p.proto == IPPROTO_UDP
        && !matches!(p.frag, Frag::Later { .. })
        && (p.dport == IKE_PORT || p.dport == IKE_NATT_PORT);
    if ike {
        return if is_peer(m, cfg.slot, &p.src) {
            Outcome::pass(Reason::PassIke)
        } else {
            Outcome::drop(Reason::DropIkeNotPeer)
        };
    }
    if p.proto == IPPROTO_ESP {
        return if is_peer(m, cfg.slot, &p.src) {
            Outcome::pass(Reason::PassEsp)
        } else {
            Outcome::drop(Reason::DropEspNotPeer)
        };
    }
    if cfg.wan_default == WAN_DEFAULT_DROP {
        Outcome::drop(Reason::DropWanDefault)
    } else {
        Outcome::pass(Reason::PassWanDefault)
    }
}

#[inline(always)]
fn frag_key(p: &Parsed, id: u32) -> FragKey {
    FragKey {
        src: p.src,
        dst: p.dst,
        id,
        // IPv6 reassembles by source, destination and identification alone
        // (RFC 8200 4.5): the fragment header of a later fragment names the
        // first header of the fragmentable part (destination options, say),
        // where the first fragment was parsed through to the transport.
        proto: if p.family == crate::abi::FAMILY_V6 {
            0
        } else {
            p.proto
        },
        family: p.family,
        _pad: 0,
    }
}

#[inline(always)]
fn timeout(cfg: &Config, t: Timeout) -> u32 {
    match cfg.timeouts.get(t as usize) {
        Some(v) => *v,
        None => 0,
    }
}

#[inline(always)]
fn redirect<M: DataplaneMaps>(m: &mut M, cfg: &Config, ing: Ingress, conn_plus1: u32) -> Outcome {
    let conn = conn_plus1 - 1;
    m.conn_bytes(cfg.slot, conn, ing.bytes);
    Outcome {
        action: Action::Redirect,
        reason: Reason::VpnRedirect,
        conn,
        xsk_index: ing.xsk_index,
    }
}

/// Pass a packet of a known flow, through the VPN when the flow is carried by
/// one and the packet comes from the VPC side.
#[inline(always)]
fn forward<M: DataplaneMaps>(
    m: &mut M,
    cfg: &Config,
    ing: Ingress,
    conn: u32,
    reason: Reason,
) -> Outcome {
    if conn != NONE && ing.origin == Origin::Lan {
        redirect(m, cfg, ing, conn)
    } else {
        Outcome::pass(reason)
    }
}

/// Conntrack, and the policy for what conntrack does not know. The policy is
/// consulted from exactly one place, which keeps the program small enough
/// for the verifier to walk quickly.
#[inline(always)]
fn track<M: DataplaneMaps, P: Packet + ?Sized>(
    m: &mut M,
    cfg: &Config,
    w: &mut Work,
    pkt: &P,
    ing: Ingress,
) -> Outcome {
    let p = &w.p;
    let icmp = p.proto == IPPROTO_ICMP || p.proto == IPPROTO_ICMPV6;
    w.flow = Flow {
        family: p.family,
        proto: p.proto,
        src: p.src,
        dst: p.dst,
        port: p.policy_port(),
    };
    w.ask = ing.origin;
    w.then = Then::Nothing;

    if icmp && icmp_is_error(p.proto, p.icmp_type) {
        if let Err(e) = parse_quoted_into(pkt, &w.p, &mut w.q, &mut w.buf) {
            return Outcome::drop(Reason::from(e));
        }
        // Only toward the quoted packet's sender: an error cannot be used
        // to reach anyone else.
        if w.q.src == w.p.dst {
            let q = &w.q;
            canonical_key_into(
                &mut w.key, w.p.family, q.proto, &q.src, &q.dst, q.sport, q.dport,
            );
            if let Some(v) = m.ct_get(&w.key) {
                let t = timeout(cfg, timeout_for(w.q.proto, v.state));
                // A revoked flow has no related traffic either.
                if !expired(ing.now, v.last_seen, t)
                    && v.generation == cfg.generation
                    && v.flags & CT_REVOKED == 0
                {
                    let conn = v.conn;
                    return forward(m, cfg, ing, conn, Reason::PassRelated);
                }
            }
        }
    } else if !icmp || icmp_is_echo(p.proto, p.icmp_type) {
        let src_is_a = canonical_key_into(
            &mut w.key, p.family, p.proto, &p.src, &p.dst, p.sport, p.dport,
        );
        w.src_is_a = src_is_a;
        if let Some(v) = m.ct_get(&w.key)
            && !expired(
                ing.now,
                v.last_seen,
                timeout(cfg, timeout_for(w.p.proto, v.state)),
            )
        {
            if v.generation != cfg.generation {
                // Admitted (or revoked) under an older policy: ask again
                // about the flow's first packet, keeping its state if it is
                // allowed now.
                let (src, dst) = if v.flags & CT_ORIG_IS_A != 0 {
                    (w.key.a, w.key.b)
                } else {
                    (w.key.b, w.key.a)
                };
                w.flow.src = src;
                w.flow.dst = dst;
                w.flow.port = v.orig_l4;
                w.ask = if v.flags & CT_FROM_LAN != 0 {
                    Origin::Lan
                } else {
                    Origin::Wan
                };
                w.then = Then::Readmit;
            } else if v.flags & CT_REVOKED == 0 {
                let conn = established(v, &w.p, src_is_a, ing.now);
                return forward(m, cfg, ing, conn, Reason::PassEstablished);
            } else if !(p.proto == IPPROTO_TCP
                && tcp_may_open(p.tcp_flags) == Some(TcpState::SynSent))
            {
                // A flow the current policy revoked stays dropped both ways
                // while it keeps trying: without the entry, a retransmission
                // from the inside would be picked up mid-stream as a new flow
                // and pass its egress rule. Only a new connection attempt
                // (a SYN) is decided again, below.
                if ing.now.saturating_sub(v.last_seen) > REFRESH_NS {
                    v.last_seen = ing.now;
                }
                return Outcome::drop(Reason::DropRevoked);
            }
        }
        if w.then != Then::Readmit {
            // A new flow (or an expired entry, which the insert replaces).
            let p = &w.p;
            let state = match p.proto {
                IPPROTO_TCP => tcp_may_open(p.tcp_flags).map(|s| s as u8),
                // An echo reply opens nothing.
                _ if icmp && !icmp_is_echo_request(p.proto, p.icmp_type) => None,
                _ => Some(UDP_UNREPLIED),
            };
            if let Some(state) = state {
                let mut flags = if src_is_a { CT_ORIG_IS_A } else { 0 };
                if ing.origin == Origin::Lan {
                    flags |= CT_FROM_LAN;
                }
                if p.proto == IPPROTO_TCP && state == TcpState::Established as u8 {
                    flags |= CT_PICKED_UP;
                }
                w.val = CtVal {
                    last_seen: ing.now,
                    generation: cfg.generation,
                    conn: NONE,
                    rule: NONE,
                    state,
                    flags,
                    orig_l4: w.flow.port,
                };
                w.then = Then::Open;
            }
        }
    }

    let d = decide_new(m, cfg.slot, w.ask, &w.flow);
    if !d.allowed() {
        if w.then == Then::Readmit
            && let Some(v) = m.ct_get(&w.key)
        {
            // Revoked: kept as a marker that drops the flow (see above)
            // until it falls silent for its timeout.
            v.flags |= CT_REVOKED;
            v.generation = cfg.generation;
            v.last_seen = ing.now;
            v.state = if w.p.proto == IPPROTO_TCP {
                TcpState::Close as u8
            } else {
                UDP_UNREPLIED
            };
        }
        return Outcome::drop(d.reason);
    }
    match w.then {
        Then::Nothing => {}
        Then::Open => {
            w.val.conn = d.conn;
            w.val.rule = d.rule();
            m.ct_insert(&w.key, &w.val);
        }
        Then::Readmit => {
            let mut conn = d.conn;
            if let Some(v) = m.ct_get(&w.key) {
                v.generation = cfg.generation;
                v.conn = conn;
                v.rule = d.rule();
                v.flags &= !CT_REVOKED;
                conn = established(v, &w.p, w.src_is_a, ing.now);
            }
            return forward(m, cfg, ing, conn, Reason::PassEstablished);
        }
    }
    if d.egress_rule != NONE {
        m.rule_hit(cfg.slot, d.egress_rule - 1);
    }
    if d.ingress_rule != NONE {
        m.rule_hit(cfg.slot, d.ingress_rule - 1);
    }
    forward(m, cfg, ing, d.conn, Reason::PassNew)
}

/// Fast path: update the entry in place and return its connection (+1).
#[inline(always)]
fn established(v: &mut CtVal, p: &Parsed, src_is_a: bool, now: u64) -> u32 {
    let reply = is_reply(v, src_is_a);
    let mut flags = v.flags;
    if reply {
        flags |= CT_SEEN_REPLY;
    }
    let mut state = v.state;
    if p.proto == IPPROTO_TCP {
        if let Some(s) = TcpState::from_u8(state) {
            let next = tcp_next(s, reply, p.tcp_flags, flags & CT_FIN_BY_REPLY != 0);
            if next == TcpState::FinWait && s != TcpState::FinWait && reply {
                flags |= CT_FIN_BY_REPLY;
            }
            state = next as u8;
        }
    } else if reply {
        state = UDP_REPLIED;
    }
    // Write only what changed, and the clock only once a second.
    if state != v.state {
        v.state = state;
    }
    if flags != v.flags {
        v.flags = flags;
    }
    if now.saturating_sub(v.last_seen) > REFRESH_NS {
        v.last_seen = now;
    }
    v.conn
}
