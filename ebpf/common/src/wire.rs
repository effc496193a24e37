//! Packet parsing: Ethernet (up to two VLAN tags), IPv4, IPv6 with extension
//! headers, TCP, UDP, ICMP and ICMPv6.
//!
//! The parser reads through the [`Packet`] trait, so the same code runs in the
//! XDP program (bounds checked against `data_end`) and on the host over a
//! byte slice (unit tests, and the agent's own checks). Every read is checked;
//! a frame that ends before a header does is an error, never a partial parse.

use crate::addr::Addr;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const MAX_VLANS: usize = 2;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_MH: u8 = 135;
pub const IPPROTO_HIP: u8 = 139;
pub const IPPROTO_SHIM6: u8 = 140;

/// IPv6 extension headers a packet may carry; one more is refused.
pub const MAX_EXT_HEADERS: usize = 8;
/// Furthest offset at which an L4 header may start. Bounds every packet read
/// (the verifier needs a bound) and is far beyond any sane header chain.
pub const MAX_L4_OFFSET: usize = 512;

/// Read access to a frame.
pub trait Packet {
    fn len(&self) -> usize;
    /// Copy the `N` bytes at `off` into `buf`; false if they are not all in
    /// the frame (then `buf` holds nothing useful).
    fn load<const N: usize>(&self, off: usize, buf: &mut [u8; N]) -> bool;

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A few bytes by value (header-sized reads go through [`Packet::load`]
    /// into a [`HdrBuf`], which in the XDP program is not on the stack).
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        if self.load(off, &mut b) {
            Some(b)
        } else {
            None
        }
    }
    #[inline(always)]
    fn be16_at(&self, off: usize) -> Option<u16> {
        Some(u16::from_be_bytes(self.bytes::<2>(off)?))
    }
}

impl Packet for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize, buf: &mut [u8; N]) -> bool {
        let Some(end) = off.checked_add(N) else {
            return false;
        };
        match self.get(off..end) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

/// Room for the largest header read at once (the IPv6 fixed header).
pub type HdrBuf = [u8; 40];

/// Load `N` header bytes at `off` into the start of `buf`, or fail with `e`.
#[inline(always)]
fn load_hdr<'b, const N: usize, P: Packet + ?Sized>(
    pkt: &P,
    off: usize,
    buf: &'b mut HdrBuf,
    e: ParseError,
) -> Result<&'b [u8; N], ParseError> {
    const { assert!(N <= 40) };
    let Some(h) = buf.first_chunk_mut::<N>() else {
        return Err(e);
    };
    if pkt.load(off, h) { Ok(h) } else { Err(e) }
}

/// Why a frame was not parsed. Each maps to a drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than an Ethernet header or a VLAN tag.
    TruncatedEthernet,
    /// More than [`MAX_VLANS`] VLAN tags.
    TooManyVlans,
    /// ARP: not parsed further, passed.
    Arp,
    /// Any other non-IP EtherType.
    UnsupportedEthertype,
    /// IP header shorter than its minimum, or cut by the end of the frame.
    TruncatedIp,
    /// Header fields that cannot be right: wrong version, IHL < 5, total
    /// length below the header length, jumbograms, IPv4-mapped IPv6 addresses.
    BadIpHeader,
    /// IPv6 extension header chain too long or too deep.
    ExtHeaderLimit,
    /// IPv6 routing header type 0 (deprecated by RFC 5095).
    RoutingHeader0,
    /// L4 header missing or cut short (in an unfragmented packet or a first fragment).
    TruncatedL4,
    /// Header fields of the L4 header that cannot be right (TCP data offset < 5,
    /// UDP length out of range).
    BadL4Header,
    /// A fragment that overlaps the transport header (RFC 1858), or a first
    /// fragment too short to hold it.
    TinyFragment,
}

/// Fragmentation state of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Frag {
    #[default]
    None,
    /// Offset 0 with more fragments: carries the L4 header.
    First { id: u32 },
    /// Offset > 0: no L4 header; follows the first fragment's verdict.
    Later { id: u32 },
}

/// What the data plane needs from one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Parsed {
    pub src_mac: [u8; 6],
    pub vlans: u8,
    pub family: u8,
    pub l3_off: u16,
    /// End of the IP packet (start + total length); bytes after it are padding.
    pub ip_end: u16,
    pub src: Addr,
    pub dst: Addr,
    /// Final protocol after IPv6 extension headers.
    pub proto: u8,
    pub frag: Frag,
    /// Offset of the L4 header (meaningless for `Frag::Later`).
    pub l4_off: u16,
    /// TCP/UDP ports; for ICMP echo both hold the identifier; else 0.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl Parsed {
    /// The value security-group port ranges are matched against: the
    /// destination port, or ICMP type<<8|code (Neutron's meaning of
    /// port_range_min/max for ICMP).
    #[inline(always)]
    pub const fn policy_port(&self) -> u16 {
        match self.proto {
            IPPROTO_ICMP | IPPROTO_ICMPV6 => ((self.icmp_type as u16) << 8) | self.icmp_code as u16,
            _ => self.dport,
        }
    }

    /// Length on the wire of the IP packet (without link header or padding).
    #[inline(always)]
    pub const fn ip_len(&self) -> u16 {
        self.ip_end - self.l3_off
    }
}

/// Parse a frame starting at its Ethernet header.
#[inline(always)]
pub fn parse<P: Packet + ?Sized>(pkt: &P) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    parse_into(pkt, &mut out, &mut [0; 40])?;
    Ok(out)
}

/// [`parse`] into caller-provided memory (in the XDP program: a per-CPU map
/// value, see `pipeline::Work`), reading headers through `buf`. `out` is
/// meaningful only on success.
#[inline(never)]
pub fn parse_into<P: Packet + ?Sized>(
    pkt: &P,
    out: &mut Parsed,
    buf: &mut HdrBuf,
) -> Result<(), ParseError> {
    *out = Parsed::default();
    out.src_mac = pkt.bytes::<6>(6).ok_or(ParseError::TruncatedEthernet)?;
    let mut ethertype = pkt.be16_at(12).ok_or(ParseError::TruncatedEthernet)?;
    let mut off = ETH_HLEN;
    let mut vlans = 0u8;
    // Unrolled by the bound: two tags at most, a third is refused.
    for _ in 0..=MAX_VLANS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        if vlans as usize == MAX_VLANS {
            return Err(ParseError::TooManyVlans);
        }
        ethertype = pkt.be16_at(off + 2).ok_or(ParseError::TruncatedEthernet)?;
        off += 4;
        vlans += 1;
    }
    out.vlans = vlans;
    out.l3_off = off as u16;
    match ethertype {
        ETH_P_IP => parse_ipv4(pkt, off, out, buf)?,
        ETH_P_IPV6 => parse_ipv6(pkt, off, out, buf)?,
        ETH_P_ARP => return Err(ParseError::Arp),
        _ => return Err(ParseError::UnsupportedEthertype),
    }
    if !matches!(out.frag, Frag::Later { .. }) {
        parse_l4(pkt, out, buf)?;
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv4<P: Packet + ?Sized>(
    pkt: &P,
    off: usize,
    out: &mut Parsed,
    buf: &mut HdrBuf,
) -> Result<(), ParseError> {
    let hdr = load_hdr::<20, _>(pkt, off, buf, ParseError::TruncatedIp)?;
    if hdr[0] >> 4 != 4 {
        return Err(ParseError::BadIpHeader);
    }
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(ParseError::BadIpHeader);
    }
    let total = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if total < ihl {
        return Err(ParseError::BadIpHeader);
    }
    // Options must be in the frame too.
    if off + ihl > pkt.len() {
        return Err(ParseError::TruncatedIp);
    }
    if off + total > pkt.len() {
        return Err(ParseError::TruncatedIp);
    }
    out.family = crate::abi::FAMILY_V4;
    out.ip_end = (off + total) as u16;
    out.src = Addr::from_v4_octets([hdr[12], hdr[13], hdr[14], hdr[15]]);
    out.dst = Addr::from_v4_octets([hdr[16], hdr[17], hdr[18], hdr[19]]);
    out.proto = hdr[9];
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    let id = u16::from_be_bytes([hdr[4], hdr[5]]) as u32;
    out.frag = if offset != 0 {
        // RFC 1858: offset 1 (8 bytes) rewrites TCP flags of the first fragment.
        if offset == 1 && out.proto == IPPROTO_TCP {
            return Err(ParseError::TinyFragment);
        }
        Frag::Later { id }
    } else if more {
        Frag::First { id }
    } else {
        Frag::None
    };
    out.l4_off = (off + ihl) as u16;
    Ok(())
}

#[inline(always)]
fn parse_ipv6<P: Packet + ?Sized>(
    pkt: &P,
    off: usize,
    out: &mut Parsed,
    buf: &mut HdrBuf,
) -> Result<(), ParseError> {
    let h = load_hdr::<40, _>(pkt, off, buf, ParseError::TruncatedIp)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpHeader);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    if payload == 0 {
        // Jumbogram (RFC 2675) or nonsense: neither is valid on these links.
        return Err(ParseError::BadIpHeader);
    }
    let end = off + 40 + payload;
    if end > pkt.len() {
        return Err(ParseError::TruncatedIp);
    }
    out.family = crate::abi::FAMILY_V6;
    out.ip_end = end as u16;
    out.src = Addr::from_v6_octets(sub16(h, 8));
    out.dst = Addr::from_v6_octets(sub16(h, 24));
    // IPv4-mapped addresses (::ffff:a.b.c.d) never belong on the wire (RFC
    // 4942 section 2.2), and in map keys they are the IPv4 address itself:
    // accepted, `::ffff:<port's IPv4>` would pass as the port.
    if out.src.is_v4() || out.dst.is_v4() {
        return Err(ParseError::BadIpHeader);
    }
    let mut next = h[6];
    let mut cur = off + 40;
    // One step per extension header, and one more for the header after them.
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS | IPPROTO_ROUTING | IPPROTO_MH | IPPROTO_HIP
            | IPPROTO_SHIM6 => {
                let h = load_hdr::<4, _>(pkt, cur, buf, ParseError::TruncatedIp)?;
                if next == IPPROTO_ROUTING && h[2] == 0 {
                    return Err(ParseError::RoutingHeader0);
                }
                let len = (h[1] as usize + 1) * 8;
                if cur + len > end {
                    return Err(ParseError::TruncatedIp);
                }
                next = h[0];
                cur = ext_end(cur + len)?;
            }
            IPPROTO_AH => {
                let h = load_hdr::<2, _>(pkt, cur, buf, ParseError::TruncatedIp)?;
                let len = (h[1] as usize + 2) * 4;
                if cur + len > end {
                    return Err(ParseError::TruncatedIp);
                }
                next = h[0];
                cur = ext_end(cur + len)?;
            }
            IPPROTO_FRAGMENT => {
                let h = load_hdr::<8, _>(pkt, cur, buf, ParseError::TruncatedIp)?;
                if cur + 8 > end {
                    return Err(ParseError::TruncatedIp);
                }
                let fo = u16::from_be_bytes([h[2], h[3]]);
                let offset = fo >> 3;
                let more = fo & 1 != 0;
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                next = h[0];
                cur = ext_end(cur + 8)?;
                if offset != 0 {
                    out.proto = next;
                    out.frag = Frag::Later { id };
                    out.l4_off = cur as u16;
                    return Ok(());
                }
                if more {
                    out.frag = Frag::First { id };
                }
                // An atomic fragment (offset 0, no more) is a whole packet (RFC 6946).
            }
            _ => {
                out.proto = next;
                out.l4_off = cur as u16;
                return Ok(());
            }
        }
    }
    Err(ParseError::ExtHeaderLimit)
}

/// The 16 bytes of `h` at `at` (an address inside a header already read).
#[inline(always)]
fn sub16<const N: usize>(h: &[u8; N], at: usize) -> [u8; 16] {
    match h.get(at..).and_then(|s| s.first_chunk::<16>()) {
        Some(a) => *a,
        None => [0; 16],
    }
}

#[inline(always)]
fn ext_end(off: usize) -> Result<usize, ParseError> {
    if off > MAX_L4_OFFSET {
        return Err(ParseError::ExtHeaderLimit);
    }
    Ok(off)
}

/// In a first fragment a missing L4 header is an attack, not a truncation.
#[inline(always)]
const fn l4_missing(frag: Frag) -> ParseError {
    match frag {
        Frag::First { .. } => ParseError::TinyFragment,
        _ => ParseError::TruncatedL4,
    }
}

#[inline(always)]
fn parse_l4<P: Packet + ?Sized>(
    pkt: &P,
    out: &mut Parsed,
    buf: &mut HdrBuf,
) -> Result<(), ParseError> {
    let off = out.l4_off as usize;
    let end = out.ip_end as usize;
    if off > MAX_L4_OFFSET {
        return Err(ParseError::ExtHeaderLimit);
    }
    match out.proto {
        IPPROTO_TCP => {
            let h = load_hdr::<20, _>(pkt, off, buf, l4_missing(out.frag))?;
            if off + 20 > end {
                return Err(l4_missing(out.frag));
            }
            let doff = ((h[12] >> 4) as usize) * 4;
            if doff < 20 {
                return Err(ParseError::BadL4Header);
            }
            if off + doff > end {
                return Err(l4_missing(out.frag));
            }
            out.sport = u16::from_be_bytes([h[0], h[1]]);
            out.dport = u16::from_be_bytes([h[2], h[3]]);
            out.tcp_flags = h[13];
        }
        IPPROTO_UDP => {
            let h = load_hdr::<8, _>(pkt, off, buf, l4_missing(out.frag))?;
            if off + 8 > end {
                return Err(l4_missing(out.frag));
            }
            let ulen = u16::from_be_bytes([h[4], h[5]]) as usize;
            // In a first fragment the UDP length covers the whole datagram.
            if out.frag == Frag::None && (ulen < 8 || off + ulen > end) {
                return Err(ParseError::BadL4Header);
            }
            out.sport = u16::from_be_bytes([h[0], h[1]]);
            out.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let h = load_hdr::<8, _>(pkt, off, buf, l4_missing(out.frag))?;
            if off + 8 > end {
                return Err(l4_missing(out.frag));
            }
            out.icmp_type = h[0];
            out.icmp_code = h[1];
            if icmp_is_echo(out.proto, h[0]) {
                let id = u16::from_be_bytes([h[4], h[5]]);
                out.sport = id;
                out.dport = id;
            }
        }
        _ => {}
    }
    Ok(())
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
pub const ICMP_FRAG_NEEDED_CODE: u8 = 4;
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAM_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

#[inline(always)]
pub const fn icmp_is_echo(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_ICMP => ty == ICMP_ECHO_REQUEST || ty == ICMP_ECHO_REPLY,
        IPPROTO_ICMPV6 => ty == ICMPV6_ECHO_REQUEST || ty == ICMPV6_ECHO_REPLY,
        _ => false,
    }
}

#[inline(always)]
pub const fn icmp_is_echo_request(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_ICMP => ty == ICMP_ECHO_REQUEST,
        IPPROTO_ICMPV6 => ty == ICMPV6_ECHO_REQUEST,
        _ => false,
    }
}

/// ICMP messages that quote a packet of some flow (errors).
#[inline(always)]
pub const fn icmp_is_error(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_ICMP => matches!(
            ty,
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM
        ),
        IPPROTO_ICMPV6 => matches!(
            ty,
            ICMPV6_DEST_UNREACH
                | ICMPV6_PACKET_TOO_BIG
                | ICMPV6_TIME_EXCEEDED
                | ICMPV6_PARAM_PROBLEM
        ),
        _ => false,
    }
}

/// ICMPv6 neighbour discovery and multicast listener messages: link-local
/// control traffic that IPv6 cannot work without (Neutron allows it too).
#[inline(always)]
pub const fn icmpv6_is_link_control(ty: u8) -> bool {
    matches!(ty, 130..=137 | 143)
}

/// The flow an ICMP error quotes, seen from the quoted packet's sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Quoted {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// Parse the packet quoted by an ICMP error: its IP header and the first 8
/// bytes of its L4 header (all RFC 792 promises).
#[inline(always)]
pub fn parse_quoted<P: Packet + ?Sized>(pkt: &P, p: &Parsed) -> Result<Quoted, ParseError> {
    let mut q = Quoted::default();
    parse_quoted_into(pkt, p, &mut q, &mut [0; 40])?;
    Ok(q)
}

/// [`parse_quoted`] into caller-provided memory; not inlined, like [`parse_into`].
#[inline(never)]
pub fn parse_quoted_into<P: Packet + ?Sized>(
    pkt: &P,
    p: &Parsed,
    q: &mut Quoted,
    buf: &mut HdrBuf,
) -> Result<(), ParseError> {
    *q = Quoted::default();
    let off = p.l4_off as usize + 8;
    let end = p.ip_end as usize;
    let l4;
    if p.family == crate::abi::FAMILY_V4 {
        let h = load_hdr::<20, _>(pkt, off, buf, ParseError::TruncatedL4)?;
        if h[0] >> 4 != 4 {
            return Err(ParseError::BadL4Header);
        }
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if ihl < 20 {
            return Err(ParseError::BadL4Header);
        }
        q.src = Addr::from_v4_octets([h[12], h[13], h[14], h[15]]);
        q.dst = Addr::from_v4_octets([h[16], h[17], h[18], h[19]]);
        q.proto = h[9];
        l4 = off + ihl;
    } else {
        let h = load_hdr::<40, _>(pkt, off, buf, ParseError::TruncatedL4)?;
        if h[0] >> 4 != 6 {
            return Err(ParseError::BadL4Header);
        }
        q.src = Addr::from_v6_octets(sub16(h, 8));
        q.dst = Addr::from_v6_octets(sub16(h, 24));
        // Quoted extension headers are not walked: errors about such packets
        // are not matched to a flow and fall back to the policy.
        q.proto = h[6];
        l4 = off + 40;
    }
    if l4 > MAX_L4_OFFSET || l4 + 8 > end {
        return Err(ParseError::TruncatedL4);
    }
    let h = load_hdr::<8, _>(pkt, l4, buf, ParseError::TruncatedL4)?;
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            q.sport = u16::from_be_bytes([h[0], h[1]]);
            q.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if icmp_is_echo(q.proto, h[0]) => {
            let id = u16::from_be_bytes([h[4], h[5]]);
            q.sport = id;
            q.dport = id;
        }
        _ => {}
    }
    Ok(())
}
