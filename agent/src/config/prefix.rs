//! Addresses and prefixes: parsing with helpful messages, and an index that
//! finds overlapping prefixes without comparing every pair (a configuration
//! may hold thousands of subnets; pairwise checks would be quadratic).

use std::net::IpAddr;

use ipnet::IpNet;

use super::names::quote;

/// Parse an address.
pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| {
        if s.contains('/') {
            format!("{} is a prefix; give a single address", quote(s))
        } else {
            format!("{} is not an IPv4 or IPv6 address", quote(s))
        }
    })
}

/// A parsed prefix; `host_bits` when the text had bits set past the prefix
/// length (the prefix itself is then the corrected one).
pub(super) struct Cidr {
    pub net: IpNet,
    pub host_bits: bool,
}

/// Parse `addr/len`, saying what is wrong when it is not one.
pub(super) fn parse_cidr(s: &str) -> Result<Cidr, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        let fixed = net.trunc();
        return Ok(Cidr {
            net: fixed,
            host_bits: fixed != net,
        });
    }
    let Some((addr, len)) = s.split_once('/') else {
        return Err(match s.parse::<IpAddr>() {
            Ok(a) => format!(
                "{} has no prefix length; write {a}/{} for a single address",
                quote(s),
                if a.is_ipv4() { 32 } else { 128 }
            ),
            Err(_) => format!(
                "{} is not a CIDR prefix (like 192.168.1.0/24 or 2001:db8::/64)",
                quote(s)
            ),
        });
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return Err(format!(
            "{} is not a CIDR prefix: {} is not an IPv4 or IPv6 address",
            quote(s),
            quote(addr)
        ));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
    Err(match len.parse::<u64>() {
        Ok(n) if n > max => format!(
            "{}: prefix length /{n} is too long for {family} (at most /{max})",
            quote(s)
        ),
        _ => format!(
            "{} is not a CIDR prefix: the prefix length must be a number from 0 to {max}",
            quote(s)
        ),
    })
}

/// A prefix as an inclusive range of integers, with its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    v6: bool,
    start: u128,
    len: u8,
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn key(net: &IpNet) -> Key {
    Key {
        v6: net.addr().is_ipv6(),
        start: addr_bits(net.network()),
        len: net.prefix_len(),
    }
}

fn end(net: &IpNet) -> u128 {
    addr_bits(net.broadcast())
}

/// `start` with all but the first `len` bits cleared.
fn mask(start: u128, len: u8, v6: bool) -> u128 {
    let bits: u32 = if v6 { 128 } else { 32 };
    let host = bits.saturating_sub(u32::from(len));
    match u128::MAX.checked_shl(host) {
        Some(m) => start & m,
        None => 0,
    }
}

/// Prefixes with a value each (who owns them), searchable by overlap.
pub(super) struct PrefixIndex<T> {
    entries: Vec<(Key, IpNet, T)>,
    /// Prefix lengths present, per family (IPv4, IPv6): supernet probes
    /// skip the lengths nothing has.
    lens: [[bool; 129]; 2],
}

impl<T> PrefixIndex<T> {
    pub fn new(items: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut entries: Vec<_> = items
            .into_iter()
            .map(|(net, v)| {
                let net = net.trunc();
                (key(&net), net, v)
            })
            .collect();
        entries.sort_by_key(|e| e.0);
        let mut lens = [[false; 129]; 2];
        for (k, _, _) in &entries {
            if let Some(slot) = lens
                .get_mut(usize::from(k.v6))
                .and_then(|l| l.get_mut(usize::from(k.len)))
            {
                *slot = true;
            }
        }
        Self { entries, lens }
    }

    /// The lengths below `len` that some entry of the family has.
    fn shorter_lens(&self, v6: bool, len: u8) -> impl Iterator<Item = u8> + '_ {
        let present = self.lens.get(usize::from(v6));
        (0..len).filter(move |&l| {
            present
                .and_then(|p| p.get(usize::from(l)))
                .copied()
                .unwrap_or(false)
        })
    }

    /// Every entry sharing at least one address with `q`, in index order.
    /// Two prefixes either nest or are disjoint, so these are the entries
    /// inside `q` (their start falls in `q`) and those containing it (one of
    /// `q`'s supernets exactly).
    pub fn overlapping(&self, q: &IpNet) -> Vec<(&IpNet, &T)> {
        let q = q.trunc();
        let k = key(&q);
        let q_end = end(&q);
        let mut out = Vec::new();
        // Strict supernets, which start before q.
        for len in self.shorter_lens(k.v6, k.len) {
            let start = mask(k.start, len, k.v6);
            if start == k.start {
                continue; // found by the scan below
            }
            let probe = Key {
                v6: k.v6,
                start,
                len,
            };
            let lo = self.entries.partition_point(|e| e.0 < probe);
            let hi = self.entries.partition_point(|e| e.0 <= probe);
            out.extend(
                self.entries
                    .get(lo..hi)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| (&e.1, &e.2)),
            );
        }
        // Everything starting inside q (including supernets starting where q does).
        let lo = self
            .entries
            .partition_point(|e| (e.0.v6, e.0.start) < (k.v6, k.start));
        out.extend(
            self.entries
                .get(lo..)
                .unwrap_or_default()
                .iter()
                .take_while(|e| e.0.v6 == k.v6 && e.0.start <= q_end)
                .map(|e| (&e.1, &e.2)),
        );
        out
    }

    /// Whether any entry shares an address with `q`: [`Self::overlapping`]
    /// without collecting, for hot loops.
    pub fn any_overlapping(&self, q: &IpNet) -> bool {
        let q = q.trunc();
        let k = key(&q);
        let q_end = end(&q);
        let lo = self
            .entries
            .partition_point(|e| (e.0.v6, e.0.start) < (k.v6, k.start));
        if self
            .entries
            .get(lo)
            .is_some_and(|e| e.0.v6 == k.v6 && e.0.start <= q_end)
        {
            return true;
        }
        self.shorter_lens(k.v6, k.len).any(|len| {
            let probe = Key {
                v6: k.v6,
                start: mask(k.start, len, k.v6),
                len,
            };
            self.entries.binary_search_by(|e| e.0.cmp(&probe)).is_ok()
        })
    }

    /// Entries containing all of `q`.
    pub fn containing(&self, q: &IpNet) -> Vec<(&IpNet, &T)> {
        let mut found = self.overlapping(q);
        found.retain(|(net, _)| net.prefix_len() <= q.prefix_len());
        found
    }

    /// Entries containing the address.
    pub fn containing_addr(&self, a: IpAddr) -> Vec<(&IpNet, &T)> {
        self.overlapping(&IpNet::from(a))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn overlap_finds_sub_and_supernets_only() {
        let idx = PrefixIndex::new(
            [
                "10.0.0.0/8",
                "10.1.0.0/16",
                "10.1.2.0/24",
                "10.2.0.0/16",
                "11.0.0.0/8",
                "0.0.0.0/0",
                "::/0",
                "10.1.2.128/25",
            ]
            .iter()
            .enumerate()
            .map(|(i, s)| (net(s), i)),
        );
        let mut hits: Vec<usize> = idx
            .overlapping(&net("10.1.0.0/16"))
            .iter()
            .map(|h| *h.1)
            .collect();
        hits.sort();
        assert_eq!(hits, vec![0, 1, 2, 5, 7]);
        let mut hits: Vec<usize> = idx
            .overlapping(&net("2001:db8::/32"))
            .iter()
            .map(|h| *h.1)
            .collect();
        hits.sort();
        assert_eq!(hits, vec![6]);
        let mut hits: Vec<usize> = idx
            .containing(&net("10.1.2.0/24"))
            .iter()
            .map(|h| *h.1)
            .collect();
        hits.sort();
        assert_eq!(hits, vec![0, 1, 2, 5]);
        let mut hits: Vec<usize> = idx
            .containing_addr("10.1.2.200".parse().unwrap())
            .iter()
            .map(|h| *h.1)
            .collect();
        hits.sort();
        assert_eq!(hits, vec![0, 1, 2, 5, 7]);
        assert!(
            PrefixIndex::<()>::new([])
                .overlapping(&net("0.0.0.0/0"))
                .is_empty()
        );
    }

    #[test]
    fn overlap_matches_brute_force() {
        // A deterministic spread of nested, adjacent and disjoint prefixes.
        let mut nets = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 12 + 20) as u8;
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (x & 0x00ff_ffff));
            nets.push(IpNet::new(IpAddr::V4(addr), len).unwrap().trunc());
        }
        let idx = PrefixIndex::new(nets.iter().copied().enumerate().map(|(i, n)| (n, i)));
        for q in &nets {
            let mut got: Vec<usize> = idx.overlapping(q).iter().map(|h| *h.1).collect();
            got.sort();
            let want: Vec<usize> = (0..nets.len())
                .filter(|&i| nets[i].contains(q) || q.contains(&nets[i]))
                .collect();
            assert_eq!(got, want, "{q}");
            let others = PrefixIndex::new(nets.iter().copied().filter(|n| n != q).map(|n| (n, ())));
            let want_any = nets
                .iter()
                .any(|n| n != q && (n.contains(q) || q.contains(n)));
            assert_eq!(others.any_overlapping(q), want_any, "{q}");
        }
    }

    #[test]
    fn cidr_messages() {
        assert!(parse_cidr("192.168.1.5/24").unwrap().host_bits);
        assert_eq!(
            parse_cidr("192.168.1.5/24").unwrap().net,
            net("192.168.1.0/24")
        );
        assert!(
            parse_cidr("192.168.1.5")
                .err()
                .unwrap()
                .contains("192.168.1.5/32")
        );
        assert!(
            parse_cidr("192.168.1.0/33")
                .err()
                .unwrap()
                .contains("at most /32")
        );
        assert!(
            parse_cidr("2001:db8::/129")
                .err()
                .unwrap()
                .contains("at most /128")
        );
        assert!(
            parse_cidr("banana/8")
                .err()
                .unwrap()
                .contains("not an IPv4 or IPv6")
        );
        assert!(
            parse_cidr("10.0.0.0/x")
                .err()
                .unwrap()
                .contains("must be a number")
        );
        assert!(parse_cidr("").is_err());
    }
}
