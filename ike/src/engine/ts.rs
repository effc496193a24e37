//! Traffic selectors (RFC 7296 2.9, 3.13): built from the connection's
//! subnets (several subnets in one CHILD_SA), narrowed as responder.

use std::net::IpAddr;

use crate::wire::TrafficSelector;

use super::spec::Subnet;

pub const TS_IPV4_ADDR_RANGE: u8 = 7;
pub const TS_IPV6_ADDR_RANGE: u8 = 8;

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::from(x.to_be_bytes())
    } else {
        IpAddr::from((x as u32).to_be_bytes())
    }
}

/// The selector covering a whole subnet, any protocol, all ports.
pub fn from_subnet(s: &Subnet) -> TrafficSelector {
    let v6 = s.addr.is_ipv6();
    let bits: u32 = if v6 { 128 } else { 32 };
    let host_bits = bits.saturating_sub(s.prefix_len as u32);
    let mask: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let start = to_u128(s.addr) & !mask;
    TrafficSelector {
        ts_type: if v6 {
            TS_IPV6_ADDR_RANGE
        } else {
            TS_IPV4_ADDR_RANGE
        },
        ip_protocol: 0,
        start_port: 0,
        end_port: 0xffff,
        start: from_u128(v6, start),
        end: from_u128(v6, start | mask),
    }
}

pub fn from_subnets(s: &[Subnet]) -> Vec<TrafficSelector> {
    s.iter().map(from_subnet).collect()
}

/// The overlap of two selectors, if any.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if a.ts_type != b.ts_type {
        return None;
    }
    let proto = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    // An "opaque" range (start > end, RFC 7296 3.13.1) only meets itself.
    if start_port > end_port {
        return None;
    }
    let start = to_u128(a.start).max(to_u128(b.start));
    let end = to_u128(a.end).min(to_u128(b.end));
    if start > end {
        return None;
    }
    let v6 = a.ts_type == TS_IPV6_ADDR_RANGE;
    Some(TrafficSelector {
        ts_type: a.ts_type,
        ip_protocol: proto,
        start_port,
        end_port,
        start: from_u128(v6, start),
        end: from_u128(v6, end),
    })
}

/// Whether `inner` lies within `outer`.
pub fn covers(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    intersect(outer, inner).is_some_and(|i| &i == inner)
}

/// Responder narrowing: what of the peer's `proposed` selectors our
/// `config` selectors allow, in the peer's order, without duplicates.
pub fn narrow(proposed: &[TrafficSelector], config: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        for c in config {
            if let Some(i) = intersect(p, c)
                && !out.iter().any(|o| covers(o, &i))
            {
                out.push(i);
            }
        }
    }
    out
}

/// Initiator: every selector the responder answered must lie within what
/// we proposed (it may narrow, never widen).
pub fn within(answer: &[TrafficSelector], proposed: &[TrafficSelector]) -> bool {
    !answer.is_empty() && answer.iter().all(|a| proposed.iter().any(|p| covers(p, a)))
}

/// "192.168.1.0-192.168.1.255" or "192.168.1.0/24" when it is a subnet.
pub fn display(ts: &TrafficSelector) -> String {
    let (s, e) = (to_u128(ts.start), to_u128(ts.end));
    let bits = if ts.ts_type == TS_IPV6_ADDR_RANGE {
        128
    } else {
        32
    };
    let size = e.wrapping_sub(s).wrapping_add(1);
    let mut text = if size.is_power_of_two() && s & (size - 1) == 0 {
        format!("{}/{}", ts.start, bits - size.trailing_zeros())
    } else if s == 0 && e == u128::MAX {
        format!("{}/0", ts.start)
    } else {
        format!("{}-{}", ts.start, ts.end)
    };
    if ts.ip_protocol != 0 {
        text.push_str(&format!("[{}", ts.ip_protocol));
        if !(ts.start_port == 0 && ts.end_port == 0xffff) {
            text.push_str(&format!("/{}-{}", ts.start_port, ts.end_port));
        }
        text.push(']');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sn(s: &str) -> Subnet {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        Subnet {
            addr: a.parse().unwrap(),
            prefix_len: l.parse().unwrap(),
        }
    }

    #[test]
    fn subnets_become_ranges() {
        let t = from_subnet(&sn("192.168.1.0/24"));
        assert_eq!(t.start, "192.168.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(t.end, "192.168.1.255".parse::<IpAddr>().unwrap());
        assert_eq!(display(&t), "192.168.1.0/24");
        let t6 = from_subnet(&sn("fd00::/64"));
        assert_eq!(display(&t6), "fd00::/64");
    }

    #[test]
    fn narrowing_keeps_the_overlap() {
        let config = from_subnets(&[sn("192.168.1.0/24"), sn("192.168.2.0/24")]);
        // A trap-triggered initiator proposes the packet's host first, then a wide net.
        let proposed = vec![
            from_subnet(&sn("192.168.1.10/32")),
            from_subnet(&sn("192.168.0.0/16")),
        ];
        let got = narrow(&proposed, &config);
        assert_eq!(
            got.iter().map(display).collect::<Vec<_>>(),
            ["192.168.1.10/32", "192.168.1.0/24", "192.168.2.0/24"]
        );
        assert!(narrow(&[from_subnet(&sn("10.0.0.0/8"))], &config).is_empty());
        assert!(within(&got, &proposed));
        assert!(!within(&[from_subnet(&sn("10.0.0.0/8"))], &proposed));
    }
}
