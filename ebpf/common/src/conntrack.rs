//! Connection tracking: canonical keys, the TCP state machine and timeouts.
//!
//! The tracker is deliberately liberal about TCP sequence numbers (like
//! Linux's `nf_conntrack_tcp_be_liberal=1`): it follows flags to pick the right
//! idle timeout and to forget closed flows, it does not validate windows.

use crate::abi::{CT_ORIG_IS_A, CtKey, CtVal};
use crate::addr::Addr;

/// Timeout slots in [`crate::abi::Config::timeouts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Timeout {
    TcpSynSent = 0,
    TcpSynRecv = 1,
    TcpEstablished = 2,
    TcpFinWait = 3,
    TcpCloseWait = 4,
    TcpLastAck = 5,
    TcpTimeWait = 6,
    TcpClose = 7,
    UdpUnreplied = 8,
    UdpReplied = 9,
    Icmp = 10,
    Other = 11,
    Fragment = 12,
}

pub const TIMEOUT_COUNT: usize = 13;

/// Defaults in seconds: Linux nf_conntrack's, except fragments (ipfrag_time).
pub const DEFAULT_TIMEOUTS: [u32; TIMEOUT_COUNT] = [
    120,     // tcp syn_sent
    60,      // tcp syn_recv
    432_000, // tcp established (5 days)
    120,     // tcp fin_wait
    60,      // tcp close_wait
    30,      // tcp last_ack
    120,     // tcp time_wait
    10,      // tcp close
    30,      // udp unreplied
    120,     // udp replied (stream)
    30,      // icmp
    600,     // other protocols
    30,      // fragments
];

/// `last_seen` is rewritten at most this often: a write on every packet
/// would bounce the entry's cache line between CPUs for nothing.
pub const REFRESH_NS: u64 = 1_000_000_000;

/// TCP states (values of `CtVal::state` for TCP flows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    /// One side sent FIN.
    FinWait = 4,
    /// FIN acknowledged, the other side still sends (half-close).
    CloseWait = 5,
    /// Both sides sent FIN, waiting for the last ACK.
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
}

impl TcpState {
    #[inline(always)]
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::SynSent,
            2 => Self::SynRecv,
            3 => Self::Established,
            4 => Self::FinWait,
            5 => Self::CloseWait,
            6 => Self::LastAck,
            7 => Self::TimeWait,
            8 => Self::Close,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
        }
    }

    #[inline(always)]
    pub const fn timeout(self) -> Timeout {
        match self {
            Self::SynSent => Timeout::TcpSynSent,
            Self::SynRecv => Timeout::TcpSynRecv,
            Self::Established => Timeout::TcpEstablished,
            Self::FinWait => Timeout::TcpFinWait,
            Self::CloseWait => Timeout::TcpCloseWait,
            Self::LastAck => Timeout::TcpLastAck,
            Self::TimeWait => Timeout::TcpTimeWait,
            Self::Close => Timeout::TcpClose,
        }
    }
}

/// States of non-TCP flows.
pub const UDP_UNREPLIED: u8 = 1;
pub const UDP_REPLIED: u8 = 2;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Whether a TCP packet may open a new tracked flow. A bare SYN opens one; so
/// does any other non-RST segment (mid-stream pickup, as Linux does by
/// default), which lets established flows survive an agent restart. RST never
/// creates state.
#[inline(always)]
pub const fn tcp_may_open(flags: u8) -> Option<TcpState> {
    if flags & TCP_RST != 0 {
        None
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
        Some(TcpState::SynSent)
    } else if flags & TCP_SYN != 0 {
        // A SYN-ACK for a flow we never saw: the opener is the other side.
        None
    } else {
        Some(TcpState::Established)
    }
}

/// Next TCP state for a packet of an existing flow; `reply` is true when the
/// packet travels opposite to the flow's original direction.
#[inline(always)]
pub const fn tcp_next(state: TcpState, reply: bool, flags: u8, fin_by_reply: bool) -> TcpState {
    use TcpState::*;
    if flags & TCP_RST != 0 {
        return Close;
    }
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    let fin = flags & TCP_FIN != 0;
    match state {
        SynSent => {
            if reply && syn && ack {
                SynRecv
            } else {
                SynSent
            }
        }
        SynRecv => {
            if !reply && ack && !syn {
                if fin { FinWait } else { Established }
            } else {
                SynRecv
            }
        }
        Established => {
            if fin {
                FinWait
            } else {
                Established
            }
        }
        FinWait => {
            // A FIN from the side that had not closed yet ends both halves.
            if fin && reply != fin_by_reply {
                LastAck
            } else if ack && reply != fin_by_reply {
                CloseWait
            } else {
                FinWait
            }
        }
        CloseWait => {
            if fin && reply != fin_by_reply {
                LastAck
            } else {
                CloseWait
            }
        }
        LastAck => {
            if ack && !fin {
                TimeWait
            } else {
                LastAck
            }
        }
        TimeWait | Close => {
            // A new SYN on the same 4-tuple reopens it (port reuse).
            if syn && !ack && !reply {
                SynSent
            } else {
                state
            }
        }
    }
}

/// Flow key in canonical order, and whether the packet's source is `a`.
#[inline(always)]
pub fn canonical_key(
    family: u8,
    proto: u8,
    src: Addr,
    dst: Addr,
    sport: u16,
    dport: u16,
) -> (CtKey, bool) {
    let mut key = CtKey::default();
    let src_is_a = canonical_key_into(&mut key, family, proto, &src, &dst, sport, dport);
    (key, src_is_a)
}

/// [`canonical_key`] into caller-provided memory (a per-CPU map value in the
/// XDP program: a 40-byte key per call site does not fit the BPF stack).
#[inline(always)]
pub fn canonical_key_into(
    key: &mut CtKey,
    family: u8,
    proto: u8,
    src: &Addr,
    dst: &Addr,
    sport: u16,
    dport: u16,
) -> bool {
    let src_is_a = match cmp_addr(src, dst) {
        core::cmp::Ordering::Less => true,
        core::cmp::Ordering::Greater => false,
        core::cmp::Ordering::Equal => sport <= dport,
    };
    if src_is_a {
        key.a = *src;
        key.b = *dst;
        key.port_a = sport;
        key.port_b = dport;
    } else {
        key.a = *dst;
        key.b = *src;
        key.port_a = dport;
        key.port_b = sport;
    }
    key.proto = proto;
    key.family = family;
    key._pad = 0;
    src_is_a
}

// Written out by hand: derived Ord on arrays compiles to a loop with calls
// the BPF verifier dislikes.
#[inline(always)]
fn cmp_addr(x: &Addr, y: &Addr) -> core::cmp::Ordering {
    use core::cmp::Ordering::*;
    let (x, y) = (&x.0, &y.0);
    if x[0] != y[0] {
        return if x[0] < y[0] { Less } else { Greater };
    }
    if x[1] != y[1] {
        return if x[1] < y[1] { Less } else { Greater };
    }
    if x[2] != y[2] {
        return if x[2] < y[2] { Less } else { Greater };
    }
    if x[3] != y[3] {
        return if x[3] < y[3] { Less } else { Greater };
    }
    Equal
}

/// Whether a packet whose source is `a` (`src_is_a`) travels in the reply
/// direction of the flow `val` describes.
#[inline(always)]
pub const fn is_reply(val: &CtVal, src_is_a: bool) -> bool {
    (val.flags & CT_ORIG_IS_A != 0) != src_is_a
}

/// The timeout slot that applies to an entry.
#[inline(always)]
pub fn timeout_for(proto: u8, state: u8) -> Timeout {
    match proto {
        crate::wire::IPPROTO_TCP => match TcpState::from_u8(state) {
            Some(s) => s.timeout(),
            None => Timeout::TcpClose,
        },
        crate::wire::IPPROTO_UDP => {
            if state == UDP_REPLIED {
                Timeout::UdpReplied
            } else {
                Timeout::UdpUnreplied
            }
        }
        crate::wire::IPPROTO_ICMP | crate::wire::IPPROTO_ICMPV6 => Timeout::Icmp,
        _ => Timeout::Other,
    }
}

/// Whether an entry last seen at `last_seen` has outlived `timeout_s` at `now`.
#[inline(always)]
pub const fn expired(now: u64, last_seen: u64, timeout_s: u32) -> bool {
    now.saturating_sub(last_seen) > (timeout_s as u64) * 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::TcpState::*;
    use super::*;

    fn run(steps: &[(bool, u8)]) -> TcpState {
        let (first_reply, first_flags) = steps[0];
        assert!(!first_reply);
        let mut s = tcp_may_open(first_flags).unwrap();
        let mut fin_by_reply = false;
        for &(reply, flags) in &steps[1..] {
            let next = tcp_next(s, reply, flags, fin_by_reply);
            if next == FinWait && s != FinWait {
                fin_by_reply = reply;
            }
            s = next;
        }
        s
    }

    #[test]
    fn handshake_data_and_orderly_close() {
        let syn = (false, TCP_SYN);
        let synack = (true, TCP_SYN | TCP_ACK);
        let ack = (false, TCP_ACK);
        assert_eq!(run(&[syn]), SynSent);
        assert_eq!(run(&[syn, synack]), SynRecv);
        assert_eq!(run(&[syn, synack, ack]), Established);
        let fin_o = (false, TCP_FIN | TCP_ACK);
        let ack_r = (true, TCP_ACK);
        let fin_r = (true, TCP_FIN | TCP_ACK);
        let ack_o = (false, TCP_ACK);
        assert_eq!(run(&[syn, synack, ack, fin_o]), FinWait);
        assert_eq!(run(&[syn, synack, ack, fin_o, ack_r]), CloseWait);
        assert_eq!(run(&[syn, synack, ack, fin_o, ack_r, fin_r]), LastAck);
        assert_eq!(
            run(&[syn, synack, ack, fin_o, ack_r, fin_r, ack_o]),
            TimeWait
        );
        // Simultaneous close: FINs cross.
        assert_eq!(run(&[syn, synack, ack, fin_o, fin_r, ack_o]), TimeWait);
    }

    #[test]
    fn same_side_fin_twice_does_not_close_both_halves() {
        let s = tcp_next(FinWait, false, TCP_FIN | TCP_ACK, false);
        assert_eq!(s, FinWait);
    }

    #[test]
    fn rst_closes_from_any_state() {
        for s in [
            SynSent,
            SynRecv,
            Established,
            FinWait,
            CloseWait,
            LastAck,
            TimeWait,
        ] {
            assert_eq!(tcp_next(s, true, TCP_RST, false), Close);
            assert_eq!(tcp_next(s, false, TCP_RST | TCP_ACK, false), Close);
        }
    }

    #[test]
    fn new_flows() {
        assert_eq!(tcp_may_open(TCP_SYN), Some(SynSent));
        assert_eq!(tcp_may_open(TCP_ACK), Some(Established));
        assert_eq!(tcp_may_open(TCP_SYN | TCP_ACK), None);
        assert_eq!(tcp_may_open(TCP_RST), None);
        assert_eq!(tcp_may_open(TCP_RST | TCP_ACK), None);
    }

    #[test]
    fn time_wait_reopens_on_syn() {
        assert_eq!(tcp_next(TimeWait, false, TCP_SYN, false), SynSent);
        assert_eq!(tcp_next(Close, false, TCP_SYN, false), SynSent);
        assert_eq!(tcp_next(TimeWait, true, TCP_SYN, false), TimeWait);
    }

    #[test]
    fn canonical_key_is_direction_free() {
        let x = Addr::from_v4_octets([10, 0, 0, 1]);
        let y = Addr::from_v4_octets([10, 0, 0, 2]);
        let (k1, s1) = canonical_key(4, 6, x, y, 1000, 80);
        let (k2, s2) = canonical_key(4, 6, y, x, 80, 1000);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        // Same address both ends: ports decide.
        let (k3, s3) = canonical_key(4, 17, x, x, 5, 7);
        let (k4, s4) = canonical_key(4, 17, x, x, 7, 5);
        assert_eq!(k3, k4);
        assert_ne!(s3, s4);
    }

    #[test]
    fn expiry() {
        assert!(!expired(10_000_000_000, 5_000_000_000, 5));
        assert!(expired(10_000_000_001, 5_000_000_000, 5));
        // A clock that went backwards never expires an entry.
        assert!(!expired(1, 5_000_000_000, 5));
    }
}
