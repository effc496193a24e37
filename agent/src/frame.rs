//! Building Ethernet frames: what `vpcgw explain` feeds the pipeline, and
//! what tests feed the loaded program. Checksums are filled in, so a frame is
//! valid on a wire too.

use std::net::IpAddr;

use vpcgw_common::wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_FRAGMENT, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

pub use vpcgw_common::conntrack::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// The transport part of a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (by the address family). `rest` is the 4 bytes after
    /// the checksum (echo id and sequence); `quote` is appended (for errors).
    Icmp {
        ty: u8,
        code: u8,
        rest: [u8; 4],
        quote: Vec<u8>,
    },
    /// Any other protocol, with a raw payload.
    Raw {
        proto: u8,
    },
}

impl L4 {
    pub fn icmp_echo(request: bool, v6: bool, id: u16) -> Self {
        let ty = match (request, v6) {
            (true, false) => 8,
            (false, false) => 0,
            (true, true) => 128,
            (false, true) => 129,
        };
        let [a, b] = id.to_be_bytes();
        L4::Icmp {
            ty,
            code: 0,
            rest: [a, b, 0, 1],
            quote: Vec::new(),
        }
    }
}

/// An IPv6 extension header to put before the transport header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    DestOpts,
    /// Routing header of this type, segments left 0.
    Routing {
        ty: u8,
    },
    /// A raw extension header: (protocol number, length in 8-octet units - 1).
    Raw {
        proto: u8,
        len8: u8,
    },
    /// Authentication header (RFC 4302): 24 bytes, with a 12-byte ICV.
    Ah,
    /// A fragment header at this point of the chain (`with_frag` puts one
    /// after all the other extension headers; this one may be followed by
    /// more, e.g. destination options in the fragmentable part).
    Fragment(FragSpec),
}

/// Fragmentation of the IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragSpec {
    pub id: u32,
    /// Offset in 8-octet units.
    pub offset: u16,
    pub more: bool,
}

#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub ext: Vec<Ext>,
    pub frag: Option<FragSpec>,
    pub payload: usize,
    pub ttl: u8,
    /// IPv4 options (padded with zeros to a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// TCP options (padded with zeros to a multiple of 4 bytes).
    pub tcp_options: Vec<u8>,
}

impl FrameSpec {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        FrameSpec {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlans: Vec::new(),
            src,
            dst,
            l4,
            ext: Vec::new(),
            frag: None,
            payload: 0,
            ttl: 64,
            ip_options: Vec::new(),
            tcp_options: Vec::new(),
        }
    }

    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                sport,
                dport,
                flags,
            },
        )
    }

    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    pub fn with_src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    pub fn with_vlan(mut self, tpid: u16, id: u16) -> Self {
        self.vlans.push((tpid, id));
        self
    }

    pub fn with_ext(mut self, e: Ext) -> Self {
        self.ext.push(e);
        self
    }

    pub fn with_frag(mut self, f: FragSpec) -> Self {
        self.frag = Some(f);
        self
    }

    pub fn with_payload(mut self, n: usize) -> Self {
        self.payload = n;
        self
    }

    /// IPv4 options (at most 40 bytes once padded; ignored for IPv6).
    pub fn with_ip_options(mut self, opts: &[u8]) -> Self {
        self.ip_options = padded(opts);
        self
    }

    /// TCP options (at most 40 bytes once padded).
    pub fn with_tcp_options(mut self, opts: &[u8]) -> Self {
        self.tcp_options = padded(opts);
        self
    }

    /// Length of the link header: Ethernet and VLAN tags.
    pub fn link_len(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// The IP packet alone (what an ICMP error quotes).
    pub fn ip_packet(&self) -> Vec<u8> {
        let mut f = self.build();
        f.drain(..self.link_len().min(f.len()));
        f
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let v6 = self.src.is_ipv6();
        let (proto, l4) = self.transport(v6);
        let mut f = Vec::with_capacity(128 + l4.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, id) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&(if v6 { ETH_P_IPV6 } else { ETH_P_IP }).to_be_bytes());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let hlen = 20 + self.ip_options.len();
                let total = hlen + l4.len();
                let (id, frag) = match self.frag {
                    Some(fs) => (
                        fs.id as u16,
                        (fs.offset & 0x1fff) | if fs.more { 0x2000 } else { 0 },
                    ),
                    None => (0x1234, 0x4000), // DF
                };
                let mut h = vec![0u8; hlen];
                h[0] = 0x40 | (hlen / 4) as u8;
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = self.ttl;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h[20..].copy_from_slice(&self.ip_options);
                let c = checksum(&[&h]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut exts: Vec<u8> = Vec::new();
                let mut kinds: Vec<u8> = self.ext.iter().map(ext_proto).collect();
                if self.frag.is_some() {
                    kinds.push(IPPROTO_FRAGMENT);
                }
                let first = kinds.first().copied().unwrap_or(proto);
                for (i, e) in self.ext.iter().enumerate() {
                    let next = kinds.get(i + 1).copied().unwrap_or(proto);
                    exts.extend_from_slice(&ext_bytes(e, next));
                }
                if let Some(fs) = self.frag {
                    exts.extend_from_slice(&frag_bytes(&fs, proto));
                }
                let payload = exts.len() + l4.len();
                let mut h = [0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
                h[6] = first;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&h);
                f.extend_from_slice(&exts);
            }
            // Mixed families are a caller error; an empty IP part makes it obvious.
            _ => {}
        }
        f.extend_from_slice(&l4);
        f
    }

    /// Protocol number and transport bytes (header, payload), checksummed.
    fn transport(&self, v6: bool) -> (u8, Vec<u8>) {
        let pad = vec![0xabu8; self.payload];
        let (proto, mut b, csum_at) = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let doff = 20 + self.tcp_options.len();
                let mut h = vec![0u8; doff];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = ((doff / 4) as u8) << 4;
                h[20..].copy_from_slice(&self.tcp_options);
                h[13] = *flags;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                (IPPROTO_TCP, h, Some(16))
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload) as u16).to_be_bytes());
                (IPPROTO_UDP, h, Some(6))
            }
            L4::Icmp {
                ty,
                code,
                rest,
                quote,
            } => {
                let mut h = vec![*ty, *code, 0, 0];
                h.extend_from_slice(rest);
                h.extend_from_slice(quote);
                (if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP }, h, Some(2))
            }
            L4::Raw { proto } => (*proto, Vec::new(), None),
        };
        b.extend_from_slice(&pad);
        if let Some(at) = csum_at {
            let c = match (proto, self.src, self.dst) {
                (IPPROTO_ICMP, _, _) => checksum(&[&b]),
                (_, IpAddr::V4(s), IpAddr::V4(d)) => {
                    let mut ph = Vec::with_capacity(12);
                    ph.extend_from_slice(&s.octets());
                    ph.extend_from_slice(&d.octets());
                    ph.extend_from_slice(&[0, proto]);
                    ph.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    checksum(&[&ph, &b])
                }
                (_, IpAddr::V6(s), IpAddr::V6(d)) => {
                    let mut ph = Vec::with_capacity(40);
                    ph.extend_from_slice(&s.octets());
                    ph.extend_from_slice(&d.octets());
                    ph.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    ph.extend_from_slice(&[0, 0, 0, proto]);
                    checksum(&[&ph, &b])
                }
                _ => 0,
            };
            if let Some(slot) = b.get_mut(at..at + 2) {
                slot.copy_from_slice(&c.to_be_bytes());
            }
        }
        (proto, b)
    }
}

fn ext_proto(e: &Ext) -> u8 {
    match e {
        Ext::HopByHop => 0,
        Ext::DestOpts => 60,
        Ext::Routing { .. } => 43,
        Ext::Raw { proto, .. } => *proto,
        Ext::Ah => 51,
        Ext::Fragment(_) => IPPROTO_FRAGMENT,
    }
}

/// Options padded with zeros (end of options) to a multiple of 4 bytes.
fn padded(opts: &[u8]) -> Vec<u8> {
    let mut v = opts.to_vec();
    v.resize(opts.len().div_ceil(4) * 4, 0);
    v
}

/// A fragment header (RFC 8200 section 4.5).
fn frag_bytes(fs: &FragSpec, next: u8) -> Vec<u8> {
    let fo = (fs.offset << 3) | u16::from(fs.more);
    let mut v = vec![next, 0];
    v.extend_from_slice(&fo.to_be_bytes());
    v.extend_from_slice(&fs.id.to_be_bytes());
    v
}

fn ext_bytes(e: &Ext, next: u8) -> Vec<u8> {
    match e {
        // PadN option filling the 8 bytes.
        Ext::HopByHop | Ext::DestOpts => vec![next, 0, 1, 4, 0, 0, 0, 0],
        Ext::Routing { ty } => vec![next, 0, *ty, 0, 0, 0, 0, 0],
        Ext::Raw { len8, .. } => {
            let mut v = vec![0u8; (*len8 as usize + 1) * 8];
            v[0] = next;
            v[1] = *len8;
            v
        }
        // Payload length in 4-octet units minus 2: (24 / 4) - 2 = 4; SPI 256,
        // sequence number 1, then a zero ICV.
        Ext::Ah => {
            let mut v = vec![next, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
            v.resize(24, 0);
            v
        }
        Ext::Fragment(fs) => frag_bytes(fs, next),
    }
}

/// The Internet checksum over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &byte in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// 802.1Q and 802.1ad TPIDs, re-exported for tests.
pub const TPID_8021Q: u16 = ETH_P_8021Q;
pub const TPID_8021AD: u16 = ETH_P_8021AD;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use vpcgw_common::wire::{Frag, parse};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_tcp_parses_back() {
        let f = FrameSpec::tcp(ip("192.168.1.10"), ip("192.168.3.10"), 40000, 22, TCP_SYN).build();
        let p = parse(&f[..]).unwrap();
        assert_eq!(
            (p.sport, p.dport, p.tcp_flags, p.proto),
            (40000, 22, TCP_SYN, 6)
        );
        assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 header checksum");
    }

    #[test]
    fn ipv6_with_extensions_and_fragment() {
        let f = FrameSpec::udp(ip("fd00::1"), ip("fd00::2"), 1, 2)
            .with_vlan(TPID_8021AD, 10)
            .with_vlan(TPID_8021Q, 20)
            .with_ext(Ext::HopByHop)
            .with_ext(Ext::DestOpts)
            .with_frag(FragSpec {
                id: 7,
                offset: 0,
                more: true,
            })
            .build();
        let p = parse(&f[..]).unwrap();
        assert_eq!(p.vlans, 2);
        assert_eq!(p.frag, Frag::First { id: 7 });
        assert_eq!((p.sport, p.dport), (1, 2));
    }

    #[test]
    fn ipv4_and_tcp_options() {
        let f = FrameSpec::tcp(ip("192.168.1.10"), ip("192.168.3.10"), 1, 2, TCP_SYN)
            .with_ip_options(&[0x94, 4, 0, 0, 1])
            .with_tcp_options(&[2, 4, 5, 0xb4, 1])
            .build();
        assert_eq!(f[14], 0x47, "IHL 7: 8 option bytes after padding");
        assert_eq!(
            checksum(&[&f[14..42]]),
            0,
            "IPv4 header checksum over the options"
        );
        assert_eq!(f[42 + 12] >> 4, 7, "TCP data offset 7");
        let p = parse(&f[..]).unwrap();
        assert_eq!((p.l4_off, p.sport, p.dport), (42, 1, 2));
        assert_eq!(p.ip_len() as usize, f.len() - 14);
    }

    #[test]
    fn ah_and_a_fragment_header_inside_the_chain() {
        let frag = FragSpec {
            id: 9,
            offset: 0,
            more: true,
        };
        let f = FrameSpec::tcp(ip("fd00::1"), ip("fd00::2"), 1, 2, TCP_SYN)
            .with_ext(Ext::Fragment(frag))
            .with_ext(Ext::Ah)
            .with_ext(Ext::DestOpts)
            .build();
        let p = parse(&f[..]).unwrap();
        assert_eq!(p.frag, Frag::First { id: 9 });
        assert_eq!(p.l4_off as usize, 14 + 40 + 8 + 24 + 8);
        assert_eq!((p.proto, p.sport, p.dport), (IPPROTO_TCP, 1, 2));
        let q = FrameSpec::udp(ip("10.0.0.1"), ip("10.0.0.2"), 1, 2).with_vlan(TPID_8021Q, 5);
        assert_eq!(q.ip_packet(), q.build()[18..].to_vec());
    }
}
