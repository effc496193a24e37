//! The map ABI: names, sizes and `#[repr(C)]` key/value layouts shared by the
//! XDP program and the agent. Every struct here is plain old data with explicit
//! padding, so the kernel, the BPF program and userspace agree byte for byte.
//!
//! Policy state is double-buffered: every policy key carries a `slot` (0 or 1).
//! The agent writes a new policy into the inactive slot, then flips
//! [`Config::slot`] and bumps [`Config::generation`] with one array write, so a
//! packet always sees one whole policy, never half of two.

use crate::addr::Addr;

/// Map names as they appear in the object file (aya looks them up by name).
pub mod map_names {
    pub const CONFIG: &str = "CONFIG";
    pub const IFACES: &str = "IFACES";
    pub const PORTS: &str = "PORTS";
    pub const REMOTE_V4: &str = "REMOTE_V4";
    pub const REMOTE_V6: &str = "REMOTE_V6";
    pub const POLICY_HDR: &str = "POLICY_HDR";
    pub const POLICY: &str = "POLICY";
    pub const VPN_REMOTE_V4: &str = "VPN_REMOTE_V4";
    pub const VPN_REMOTE_V6: &str = "VPN_REMOTE_V6";
    pub const VPN_LOCAL_V4: &str = "VPN_LOCAL_V4";
    pub const VPN_LOCAL_V6: &str = "VPN_LOCAL_V6";
    pub const PEERS: &str = "PEERS";
    pub const CT: &str = "CT";
    pub const FRAGS: &str = "FRAGS";
    pub const XSKS: &str = "XSKS";
    pub const STATS: &str = "STATS";
    pub const RULE_HITS: &str = "RULE_HITS";
    pub const CONN_STATS: &str = "CONN_STATS";
}

/// Name of the XDP program function in the object file.
pub const XDP_PROGRAM: &str = "vpcgw_xdp";

/// Rules per policy slot; rule ids index [`map_names::RULE_HITS`] as
/// `slot * MAX_RULES + rule`.
pub const MAX_RULES: u32 = 65_536;
/// VPN connections per policy slot; `CONN_STATS` is indexed like `RULE_HITS`.
pub const MAX_CONNS: u32 = 256;
/// LAN interfaces the program can serve.
pub const MAX_LAN_IFACES: u32 = 16;
/// RX queues per LAN interface that can have an AF_XDP socket.
pub const MAX_QUEUES: u32 = 64;
/// XSKMAP size: `lan_slot * MAX_QUEUES + rx_queue`.
pub const XSK_ENTRIES: u32 = MAX_LAN_IFACES * MAX_QUEUES;

/// Default map capacities; the agent may override them at load time.
pub const DEFAULT_CT_ENTRIES: u32 = 262_144;
pub const DEFAULT_FRAG_ENTRIES: u32 = 8_192;
pub const PORT_ENTRIES: u32 = 2 * 16_384;
pub const REMOTE_ENTRIES: u32 = 2 * 65_536;
pub const POLICY_HDR_ENTRIES: u32 = 2 * 262_144;
pub const POLICY_ENTRIES: u32 = 2 * 1_048_576;
pub const VPN_ENTRIES: u32 = 2 * 4_096;
pub const PEER_ENTRIES: u32 = 2 * MAX_CONNS;
pub const IFACE_ENTRIES: u32 = 64;

/// Address family tags used in keys (not the AF_* numbers, which differ by OS).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Policy direction, from the point of view of the port (the VPC server):
/// ingress is traffic to the port, egress is traffic from it (Neutron's meaning).
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// Protocol number used in policy keys for rules with protocol "any".
/// IANA keeps 255 reserved, so no real packet carries it.
pub const PROTO_ANY: u8 = 255;

/// Value meaning "none" in rule and connection fields (ids are stored +1).
pub const NONE: u32 = 0;

/// Runtime configuration, one entry in the `CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Bumped by the agent on every policy swap; conntrack entries admitted
    /// under an older generation are checked again against the new policy.
    /// Zero means "no policy loaded yet": every packet is dropped.
    pub generation: u32,
    /// The active policy slot (0 or 1).
    pub slot: u8,
    /// What inbound WAN traffic that is neither IKE/ESP nor for a port gets.
    pub wan_default: u8,
    /// Bit flags, see `CFG_*`.
    pub flags: u16,
    /// Conntrack idle timeouts in seconds, indexed by [`crate::conntrack::Timeout`].
    pub timeouts: [u32; crate::conntrack::TIMEOUT_COUNT],
}

/// `Config::wan_default` values.
pub const WAN_DEFAULT_PASS: u8 = 0;
pub const WAN_DEFAULT_DROP: u8 = 1;

/// `Config::flags`: emit aya-log debug lines for decisions (costly; off by default).
pub const CFG_DEBUG_LOG: u16 = 1;

/// Role of an interface the program is attached to (`IFACES` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub role: u32,
    /// Base index into `XSKS` for this LAN interface (`lan_slot * MAX_QUEUES`).
    pub xsk_base: u32,
}

pub const ROLE_LAN: u32 = 1;
pub const ROLE_WAN: u32 = 2;

/// `PORTS` key: a port's address in one policy slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub addr: Addr,
    /// Policy slot, 0 or 1 (a whole word: byte arrays of padding make the
    /// compiler emit memset calls the verifier walks byte by byte).
    pub slot: u32,
}

/// `PORTS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortVal {
    /// Port index in the compiled policy (for counters and explain).
    pub port: u32,
    /// The port's group set: ports carrying the same groups share one set.
    pub set: u32,
    pub mac: [u8; 6],
    pub flags: u8,
    pub _pad: u8,
}

/// `PortVal::flags`: the port's MAC is known, so the source MAC is checked too.
pub const PORT_HAS_MAC: u8 = 1;

/// Data of an IPv4 LPM key: slot byte, then the address (network order).
pub type LpmV4 = [u8; 5];
/// Data of an IPv6 LPM key: slot byte, then the address.
pub type LpmV6 = [u8; 17];
/// Data of a VPN local-subnet key: slot, connection (big endian), address.
pub type VpnLocalV4 = [u8; 9];
pub type VpnLocalV6 = [u8; 21];

/// Bits that precede the address in the LPM keys above.
pub const LPM_SLOT_BITS: u32 = 8;
pub const LPM_CONN_BITS: u32 = 32;

/// `REMOTE_V4`/`REMOTE_V6` value: the remote class of an address, i.e. the
/// identity of the set of rule prefixes and remote groups that contain it.
/// Class 0 is "inside no rule prefix" (only rules open to any address apply).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteVal {
    pub class: u32,
}

/// `POLICY_HDR` key: one (local group set, direction, family, protocol,
/// remote class) cell of the compiled policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HdrKey {
    pub set: u32,
    pub class: u32,
    pub slot: u8,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
}

/// `POLICY_HDR` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdrVal {
    /// Bit `n` set: `POLICY` holds entries whose port prefix is `n` bits long
    /// (0..=16). The program probes only those lengths, longest first.
    pub plens: u32,
    /// First rule with protocol "any" for the same set/dir/family/class
    /// (+1, 0 = none): folded in so an "any" rule costs no extra probe.
    pub any_rule: u32,
}

/// `POLICY` key: a masked port (or ICMP type<<8|code) within one cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub set: u32,
    pub class: u32,
    pub slot: u8,
    pub dir: u8,
    pub family: u8,
    pub proto: u8,
    /// Port prefix length, 0..=16.
    pub plen: u8,
    pub _pad: u8,
    /// The port with its low `16 - plen` bits cleared.
    pub port: u16,
}

/// `POLICY` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyVal {
    /// Rule id + 1.
    pub rule: u32,
}

/// `VPN_REMOTE_*` value: which connection a remote subnet belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpnVal {
    /// Connection id + 1.
    pub conn: u32,
}

/// `PEERS` key: a configured peer gateway address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub addr: Addr,
    pub slot: u32,
}

/// `PEERS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerVal {
    /// Connection id + 1.
    pub conn: u32,
}

/// Conntrack key in canonical order: `(a, port_a) <= (b, port_b)`, so both
/// directions of a flow find the same entry with one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub a: Addr,
    pub b: Addr,
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: u16,
}

/// Conntrack value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtVal {
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC_COARSE) of the last refresh; refreshed
    /// at most every [`crate::conntrack::REFRESH_NS`] to spare cache lines.
    pub last_seen: u64,
    /// Policy generation that admitted (or last re-admitted) the flow.
    pub generation: u32,
    /// VPN connection id + 1 for packets in the original direction, or 0.
    pub conn: u32,
    /// Rule id + 1 that admitted the flow (ingress rule if both sides checked).
    pub rule: u32,
    /// [`crate::conntrack::TcpState`] for TCP, [`crate::conntrack::UDP_*`] otherwise.
    pub state: u8,
    /// `CT_*` flags.
    pub flags: u8,
    /// Policy port of the original packet: destination port, or ICMP
    /// type<<8|code of the request. Needed to re-check the flow after a reload.
    pub orig_l4: u16,
}

/// `CtVal::flags`: the original direction goes from `a` to `b`.
pub const CT_ORIG_IS_A: u8 = 1;
/// A packet in the reply direction has been seen.
pub const CT_SEEN_REPLY: u8 = 2;
/// TCP flow picked up mid-stream (no SYN seen).
pub const CT_PICKED_UP: u8 = 4;
/// The flow arrived on a LAN interface (its source is a port).
pub const CT_FROM_LAN: u8 = 8;
/// TCP: the first FIN came from the reply side (meaningful from FIN_WAIT on).
pub const CT_FIN_BY_REPLY: u8 = 16;
/// A reload's policy no longer admits the flow: its packets are dropped
/// (both ways) until it falls silent, so it cannot be revived mid-stream.
pub const CT_REVOKED: u8 = 32;

/// `FRAGS` key: one fragmented datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: u16,
}

/// `FRAGS` value: the verdict the first fragment got, applied to the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragVal {
    pub created: u64,
    /// VPN connection id + 1, or 0 for "pass to the stack".
    pub conn: u32,
    pub _pad: u32,
}

/// Packet and byte counter (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Metadata the program puts in front of a frame it hands to an AF_XDP socket.
/// Userspace finds it in the `size_of::<XskMeta>()` bytes before the frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskMeta {
    /// [`XSK_META_MAGIC`], so a frame without metadata is never misread.
    pub magic: u32,
    /// Connection id (not +1) within `slot`.
    pub conn: u32,
    pub generation: u32,
    pub slot: u32,
}

pub const XSK_META_MAGIC: u32 = 0x7670_6377; // "vpcw"

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all types are #[repr(C)], made only of integers and arrays of
    // integers, with explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Iface {}
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::PortVal {}
    unsafe impl aya::Pod for super::RemoteVal {}
    unsafe impl aya::Pod for super::HdrKey {}
    unsafe impl aya::Pod for super::HdrVal {}
    unsafe impl aya::Pod for super::PolicyKey {}
    unsafe impl aya::Pod for super::PolicyVal {}
    unsafe impl aya::Pod for super::VpnVal {}
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerVal {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtVal {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragVal {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::XskMeta {}
    unsafe impl aya::Pod for crate::addr::Addr {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    // The kernel sees these sizes; a change here is an ABI change.
    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<Config>(), 8 + 4 * crate::conntrack::TIMEOUT_COUNT);
        assert_eq!(size_of::<Iface>(), 8);
        assert_eq!(size_of::<PortKey>(), 20);
        assert_eq!(size_of::<PortVal>(), 16);
        assert_eq!(size_of::<HdrKey>(), 12);
        assert_eq!(size_of::<HdrVal>(), 8);
        assert_eq!(size_of::<PolicyKey>(), 16);
        assert_eq!(size_of::<PeerKey>(), 20);
        assert_eq!(size_of::<CtKey>(), 40);
        assert_eq!(size_of::<CtVal>(), 24);
        assert_eq!(size_of::<FragKey>(), 40);
        assert_eq!(size_of::<FragVal>(), 16);
        assert_eq!(size_of::<XskMeta>(), 16);
    }
}
