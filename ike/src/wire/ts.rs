//! Traffic selectors (RFC 7296 3.13).
//!
//! ```text
//! TS payload body:
//! | Number of TSs |                 RESERVED                      |
//! ~                       <Traffic Selectors>                     ~
//! Traffic selector:
//! |   TS Type     |IP Protocol ID*|       Selector Length         |
//! |           Start Port*         |           End Port*           |
//! ~                         Starting Address*                     ~
//! ~                         Ending Address*                       ~
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::encode::Enc;
use super::reader::Reader;
use super::{WireError, ts_type};

/// Selector length of a TS_IPV4_ADDR_RANGE and a TS_IPV6_ADDR_RANGE.
const V4_LEN: u16 = 16;
const V6_LEN: u16 = 40;

/// One traffic selector: an address range, an IP protocol (0: any) and a
/// port range (0-65535: any; 65535-0: OPAQUE, RFC 4301 4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// [`ts_type`]: 7 IPv4, 8 IPv6.
    pub ts_type: u8,
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl TrafficSelector {
    /// All of `addr/prefix_len` (host bits of `addr` ignored; a prefix
    /// longer than the address is taken as a host route), any protocol, any
    /// port.
    pub fn from_subnet(addr: IpAddr, prefix_len: u8) -> TrafficSelector {
        let (ts_type, start, end) = match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(prefix_len.into()))
                    .unwrap_or(0);
                (
                    ts_type::IPV4_ADDR_RANGE,
                    IpAddr::V4(Ipv4Addr::from(bits & mask)),
                    IpAddr::V4(Ipv4Addr::from(bits | !mask)),
                )
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(prefix_len.into()))
                    .unwrap_or(0);
                (
                    ts_type::IPV6_ADDR_RANGE,
                    IpAddr::V6(Ipv6Addr::from(bits & mask)),
                    IpAddr::V6(Ipv6Addr::from(bits | !mask)),
                )
            }
        };
        TrafficSelector {
            ts_type,
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start,
            end,
        }
    }

    /// The same selector limited to `protocol` and the ports
    /// `start_port..=end_port`.
    pub fn with_ports(self, protocol: u8, start_port: u16, end_port: u16) -> TrafficSelector {
        TrafficSelector {
            ip_protocol: protocol,
            start_port,
            end_port,
            ..self
        }
    }

    /// The type agrees with both addresses, and the address range is not
    /// empty.
    pub fn is_well_formed(&self) -> bool {
        self.family_ok() && self.start <= self.end
    }

    /// The type agrees with both addresses.
    fn family_ok(&self) -> bool {
        matches!(
            (self.ts_type, self.start, self.end),
            (ts_type::IPV4_ADDR_RANGE, IpAddr::V4(_), IpAddr::V4(_))
                | (ts_type::IPV6_ADDR_RANGE, IpAddr::V6(_), IpAddr::V6(_))
        )
    }

    /// The port range is OPAQUE (start 65535, end 0; more generally any
    /// start above the end).
    pub fn is_opaque_ports(&self) -> bool {
        self.start_port > self.end_port
    }

    fn is_any_port(&self) -> bool {
        self.start_port == 0 && self.end_port == u16::MAX
    }

    /// Everything `other` selects is selected by `self`: same family, a
    /// protocol equal to ours unless ours is 0, ports and addresses inside
    /// ours. An OPAQUE port range is covered only by "any port" (RFC 4301
    /// 4.4.1); a selector that is not [well formed](Self::is_well_formed)
    /// covers nothing and is covered by nothing.
    pub fn covers(&self, other: &TrafficSelector) -> bool {
        if !self.is_well_formed() || !other.is_well_formed() || self.ts_type != other.ts_type {
            return false;
        }
        let protocol = self.ip_protocol == 0 || self.ip_protocol == other.ip_protocol;
        let ports = if other.is_opaque_ports() || self.is_opaque_ports() {
            self.is_any_port()
                || (self.start_port, self.end_port) == (other.start_port, other.end_port)
        } else {
            self.start_port <= other.start_port && other.end_port <= self.end_port
        };
        protocol && ports && self.start <= other.start && other.end <= self.end
    }

    /// What both select, if anything (the narrowing of RFC 7296 2.9). The
    /// protocol is the more specific of the two, OPAQUE ports stay OPAQUE
    /// against "any port" and meet nothing else.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        if !self.is_well_formed() || !other.is_well_formed() || self.ts_type != other.ts_type {
            return None;
        }
        let ip_protocol = match (self.ip_protocol, other.ip_protocol) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let (start_port, end_port) = match (self.is_opaque_ports(), other.is_opaque_ports()) {
            (false, false) => {
                let s = self.start_port.max(other.start_port);
                let e = self.end_port.min(other.end_port);
                if s > e {
                    return None;
                }
                (s, e)
            }
            (true, true)
                if (self.start_port, self.end_port) == (other.start_port, other.end_port) =>
            {
                (self.start_port, self.end_port)
            }
            (true, false) if other.is_any_port() => (self.start_port, self.end_port),
            (false, true) if self.is_any_port() => (other.start_port, other.end_port),
            _ => return None,
        };
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        if start > end {
            return None;
        }
        Some(TrafficSelector {
            ts_type: self.ts_type,
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        })
    }
}

/// A TS payload body: at least one selector, as many as announced, nothing
/// after them. Types other than 7 and 8 are refused (a selector that cannot
/// be understood must not be taken as wider than it is).
pub(crate) fn decode_ts(ty: u8, body: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    let mut r = Reader::new(body);
    let [count, _, _, _] = r.array::<4>().ok_or(WireError::PayloadTooShort {
        ty,
        len: body.len(),
        min: 4,
    })?;
    let count = usize::from(count);
    if count == 0 {
        return Err(WireError::MalformedTs("no traffic selectors"));
    }
    if count.saturating_mul(V4_LEN.into()) > r.remaining() {
        return Err(WireError::MalformedTs(
            "more selectors announced than fit the payload",
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(decode_one(&mut r)?);
    }
    if !r.is_empty() {
        return Err(WireError::MalformedTs("bytes after the last selector"));
    }
    Ok(out)
}

fn decode_one(r: &mut Reader<'_>) -> Result<TrafficSelector, WireError> {
    let [ts_type, ip_protocol, l0, l1] = r
        .array::<4>()
        .ok_or(WireError::MalformedTs("truncated selector header"))?;
    let length = u16::from_be_bytes([l0, l1]);
    let expected = match ts_type {
        ts_type::IPV4_ADDR_RANGE => V4_LEN,
        ts_type::IPV6_ADDR_RANGE => V6_LEN,
        _ => return Err(WireError::UnsupportedTsType { ts_type }),
    };
    if length != expected {
        return Err(WireError::BadSelectorLength {
            ts_type,
            length,
            expected,
        });
    }
    let overrun = WireError::MalformedTs("selector overruns the payload");
    let (Some(start_port), Some(end_port)) = (r.u16(), r.u16()) else {
        return Err(overrun);
    };
    let (start, end) = if ts_type == ts_type::IPV4_ADDR_RANGE {
        let (Some(s), Some(e)) = (r.array::<4>(), r.array::<4>()) else {
            return Err(overrun);
        };
        (IpAddr::from(s), IpAddr::from(e))
    } else {
        let (Some(s), Some(e)) = (r.array::<16>(), r.array::<16>()) else {
            return Err(overrun);
        };
        (IpAddr::from(s), IpAddr::from(e))
    };
    Ok(TrafficSelector {
        ts_type,
        ip_protocol,
        start_port,
        end_port,
        start,
        end,
    })
}

pub(crate) fn encode_ts(selectors: &[TrafficSelector], e: &mut Enc) {
    if selectors.is_empty() {
        e.fail(WireError::Unencodable("TS payload without selectors"));
    }
    let count = e.count8(selectors.len(), "traffic selectors");
    e.bytes(&[count, 0, 0, 0]);
    for ts in selectors {
        if !ts.family_ok() {
            e.fail(WireError::Unencodable(
                "traffic selector type disagrees with its addresses",
            ));
        }
        let addr_len = |a: IpAddr| if a.is_ipv4() { 4u16 } else { 16 };
        e.u8(ts.ts_type);
        e.u8(ts.ip_protocol);
        e.u16(8 + addr_len(ts.start) + addr_len(ts.end));
        e.u16(ts.start_port);
        e.u16(ts.end_port);
        for a in [ts.start, ts.end] {
            match a {
                IpAddr::V4(a) => e.bytes(&a.octets()),
                IpAddr::V6(a) => e.bytes(&a.octets()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload::TSI;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn net(s: &str, p: u8) -> TrafficSelector {
        TrafficSelector::from_subnet(v4(s), p)
    }

    fn encode(ts: &[TrafficSelector]) -> Vec<u8> {
        let mut e = Enc::default();
        encode_ts(ts, &mut e);
        assert_eq!(e.err, None);
        e.out
    }

    #[test]
    fn from_subnet() {
        let ts = net("10.1.2.3", 16);
        assert_eq!(ts.start, v4("10.1.0.0"));
        assert_eq!(ts.end, v4("10.1.255.255"));
        assert_eq!((ts.ts_type, ts.ip_protocol), (7, 0));
        assert_eq!((ts.start_port, ts.end_port), (0, 65535));
        let all = net("1.2.3.4", 0);
        assert_eq!((all.start, all.end), (v4("0.0.0.0"), v4("255.255.255.255")));
        let host = net("1.2.3.4", 40);
        assert_eq!((host.start, host.end), (v4("1.2.3.4"), v4("1.2.3.4")));
        let v6 = TrafficSelector::from_subnet(v4("fd00::1:2"), 64);
        assert_eq!(v6.ts_type, 8);
        assert_eq!(v6.start, v4("fd00::"));
        assert_eq!(v6.end, v4("fd00::ffff:ffff:ffff:ffff"));
        let all6 = TrafficSelector::from_subnet(v4("fd00::1"), 0);
        assert_eq!(all6.end, v4("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn covers() {
        let wide = net("10.0.0.0", 8);
        let narrow = net("10.1.0.0", 16);
        assert!(wide.covers(&narrow));
        assert!(wide.covers(&wide));
        assert!(!narrow.covers(&wide));
        assert!(!wide.covers(&net("11.0.0.0", 8)));
        let tcp80 = narrow.with_ports(6, 80, 80);
        assert!(wide.covers(&tcp80));
        assert!(!tcp80.covers(&narrow));
        assert!(!tcp80.covers(&narrow.with_ports(17, 80, 80)));
        assert!(tcp80.covers(&narrow.with_ports(6, 80, 80)));
        let opaque = narrow.with_ports(6, 65535, 0);
        assert!(wide.covers(&opaque));
        assert!(!tcp80.covers(&opaque));
        assert!(!opaque.covers(&tcp80));
        assert!(opaque.covers(&opaque));
        let v6 = TrafficSelector::from_subnet(v4("::"), 0);
        assert!(!v6.covers(&wide));
        assert!(!wide.covers(&v6));
        let mut bad = wide;
        bad.ts_type = 8;
        assert!(!bad.covers(&bad));
    }

    #[test]
    fn intersect() {
        let a = net("10.0.0.0", 8);
        let b = net("10.1.0.0", 16).with_ports(6, 1000, 2000);
        assert_eq!(a.intersect(&b), Some(b));
        assert_eq!(b.intersect(&a), Some(b));
        let c = net("10.1.0.0", 16).with_ports(0, 1500, 3000);
        assert_eq!(
            b.intersect(&c),
            Some(net("10.1.0.0", 16).with_ports(6, 1500, 2000))
        );
        assert_eq!(b.intersect(&c.with_ports(17, 0, 65535)), None);
        assert_eq!(b.intersect(&c.with_ports(0, 3000, 4000)), None);
        assert_eq!(a.intersect(&net("11.0.0.0", 8)), None);
        let opaque = a.with_ports(0, 65535, 0);
        assert_eq!(a.intersect(&opaque), Some(opaque));
        assert_eq!(b.intersect(&opaque), None);
        // Partly overlapping address ranges.
        let mut x = a;
        x.start = v4("9.0.0.0");
        x.end = v4("10.0.0.10");
        let got = a.intersect(&x).map(|t| (t.start, t.end));
        assert_eq!(got, Some((v4("10.0.0.0"), v4("10.0.0.10"))));
        let v6 = TrafficSelector::from_subnet(v4("::"), 0);
        assert_eq!(a.intersect(&v6), None);
    }

    /// 10.0.0.0-10.255.255.255 TCP 80, and fd00::/64 any.
    fn sample() -> Vec<TrafficSelector> {
        vec![
            net("10.0.0.0", 8).with_ports(6, 80, 80),
            TrafficSelector::from_subnet(v4("fd00::"), 64),
        ]
    }

    #[test]
    fn round_trip() -> Result<(), WireError> {
        let b = encode(&sample());
        assert_eq!(b.len(), 4 + 16 + 40);
        assert_eq!(
            b[..20],
            [
                2, 0, 0, 0, 7, 6, 0, 16, 0, 80, 0, 80, 10, 0, 0, 0, 10, 255, 255, 255
            ]
        );
        assert_eq!(decode_ts(TSI, &b)?, sample());
        Ok(())
    }

    #[test]
    fn malformed() {
        let good = encode(&sample());
        assert_eq!(
            decode_ts(TSI, &good[..3]),
            Err(WireError::PayloadTooShort {
                ty: TSI,
                len: 3,
                min: 4
            })
        );
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::MalformedTs("no traffic selectors"))
        );
        b[0] = 4;
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::MalformedTs(
                "more selectors announced than fit the payload"
            ))
        );
        b[0] = 1;
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::MalformedTs("bytes after the last selector"))
        );
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::UnsupportedTsType { ts_type: 9 })
        );
        let mut b = good.clone();
        b[4] = 8; // IPv6 type with IPv4 length
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::BadSelectorLength {
                ts_type: 8,
                length: 16,
                expected: 40
            })
        );
        let mut b = good.clone();
        b[20] = 7; // the IPv6 selector claims to be IPv4
        assert_eq!(
            decode_ts(TSI, &b),
            Err(WireError::BadSelectorLength {
                ts_type: 7,
                length: 40,
                expected: 16
            })
        );
        assert_eq!(
            decode_ts(TSI, &good[..good.len() - 1]),
            Err(WireError::MalformedTs("selector overruns the payload"))
        );
        let v6_first = encode(&[sample()[1], sample()[0]]);
        assert_eq!(
            decode_ts(TSI, &v6_first[..4 + 40 + 2]),
            Err(WireError::MalformedTs("truncated selector header"))
        );
    }

    #[test]
    fn encoding_refuses_what_does_not_fit() {
        let mut e = Enc::default();
        encode_ts(&[], &mut e);
        assert_eq!(
            e.err,
            Some(WireError::Unencodable("TS payload without selectors"))
        );
        let mut bad = net("10.0.0.0", 8);
        bad.ts_type = 8;
        let mut e = Enc::default();
        encode_ts(&[bad], &mut e);
        assert_eq!(
            e.err,
            Some(WireError::Unencodable(
                "traffic selector type disagrees with its addresses"
            ))
        );
        let mut e = Enc::default();
        encode_ts(&vec![bad; 256], &mut e);
        assert!(e.err.is_some());
    }
}
