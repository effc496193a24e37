//! The gateway's configuration: one TOML file (docs/config.md).
//!
//! Text goes through two stages. `raw` mirrors the file (serde, every field
//! optional where the file may omit it); `validate` checks it against the
//! rules of a cloud VPN service and resolves it into the types below, where
//! names are already indices and every value is in range. Everything after
//! this module (policy compiler, data plane, IKE) sees only a valid [`Config`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use vpcgw_common::conntrack::TIMEOUT_COUNT;

mod algorithms;
mod cross;
pub mod limits;
mod names;
mod prefix;
mod psk;
mod raw;
mod summary;
mod validate;

#[cfg(test)]
mod tests;

pub use names::mac_text;
pub use psk::{PSK_MAX_BYTES, PSK_MIN_BYTES, PskError, read_psk};
pub use raw::to_toml;
pub use summary::summary;
pub use validate::{Checked, ConfigError, Problem, Severity, load, parse_str};

/// A validated gateway configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from (relative PSK paths are resolved against
    /// its directory).
    pub path: PathBuf,
    pub gateway: Gateway,
    pub conntrack: ConntrackSettings,
    pub vpc: Vpc,
    pub groups: Vec<SecurityGroup>,
    pub ports: Vec<Port>,
    pub ike_policies: Vec<IkePolicy>,
    pub ipsec_policies: Vec<IpsecPolicy>,
    pub connections: Vec<Connection>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gateway {
    pub name: String,
    /// The WAN address IKE and ESP use.
    pub public_ip: IpAddr,
    pub wan_interface: String,
    /// At least one; no name twice, none equal to the WAN interface.
    pub lan_interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub wan_default: WanDefault,
    /// Unix socket where `vpcgw run` answers `vpcgw status`/`stats`.
    pub control_socket: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode where the driver has it, else generic.
    Auto,
    Native,
    Generic,
}

/// Inbound WAN traffic that is neither IKE/ESP nor for a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanDefault {
    /// Hand it to the host's own stack (and its own firewall).
    Pass,
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConntrackSettings {
    pub max_entries: u32,
    /// Idle timeouts in seconds, indexed by `vpcgw_common::conntrack::Timeout`.
    pub timeouts: [u32; TIMEOUT_COUNT],
    /// How often the agent sweeps expired entries out of the map.
    pub sweep_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Vpc {
    pub name: String,
    pub subnets: Vec<Subnet>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Subnet {
    pub name: String,
    pub cidr: IpNet,
}

/// A Neutron-style security group: stateful, allow-only.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityGroup {
    pub name: String,
    pub description: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub direction: Direction,
    pub ethertype: Ethertype,
    pub protocol: Protocol,
    /// `None`: every port (or every ICMP type).
    pub ports: Option<PortRange>,
    pub remote: Remote,
    pub description: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the port.
    Ingress,
    /// From the port.
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ethertype {
    IPv4,
    IPv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol number (never 1, 6, 17, 58 or 255).
    Number(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRange {
    /// TCP/UDP ports, `1 <= min <= max <= 65535`.
    Ports { min: u16, max: u16 },
    /// ICMP/ICMPv6 type, and code (`None`: every code).
    Icmp { ty: u8, code: Option<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// Neither remote_ip_prefix nor remote_group: any address of the ethertype.
    Any,
    /// A prefix of the rule's ethertype, host bits clear. A /0 is `Any`.
    Prefix(IpNet),
    /// Addresses of the ports in this group (index into `Config::groups`).
    Group(usize),
}

/// A VPC server's network port.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub name: String,
    /// Inside a VPC subnet each; unique across ports.
    pub addresses: Vec<IpAddr>,
    /// When given, frames from the port must carry it (anti-spoofing).
    pub mac: Option<[u8; 6]>,
    /// Indices into `Config::groups`; at least one.
    pub groups: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IkePolicy {
    pub name: String,
    pub encryption: Encryption,
    /// `Some` for CBC, `None` for GCM (AEAD).
    pub integrity: Option<Integrity>,
    pub prf: Prf,
    pub dh_group: DhGroup,
    pub lifetime: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IpsecPolicy {
    pub name: String,
    pub encryption: Encryption,
    pub integrity: Option<Integrity>,
    /// `None`: no PFS on CHILD_SA rekeys.
    pub pfs: Option<DhGroup>,
    pub lifetime: Duration,
}

pub use vpcgw_ike::alg::{DhGroup, Encryption, Integrity, Prf};

#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub name: String,
    pub peer_address: IpAddr,
    pub peer_id: String,
    pub local_id: String,
    /// Inside VPC subnets, no overlaps, one IP version with `remote_subnets`.
    pub local_subnets: Vec<IpNet>,
    pub remote_subnets: Vec<IpNet>,
    /// Index into `Config::ike_policies`.
    pub ike_policy: usize,
    /// Index into `Config::ipsec_policies`.
    pub ipsec_policy: usize,
    /// Absolute path; the file was checked (exists, >= 8 bytes, mode 0600 or
    /// stricter) but its contents are not kept here.
    pub psk_file: PathBuf,
    pub initiator: Initiator,
    pub mtu: u16,
    pub dpd: Dpd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// Start negotiating at boot and on traffic, and answer.
    BiDirectional,
    /// Only answer the peer.
    ResponseOnly,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dpd {
    pub action: DpdAction,
    pub interval: Duration,
    /// Strictly greater than `interval`.
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    Hold,
    Clear,
    Restart,
    Disabled,
}

impl Config {
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }
}
