//! The standard test bed: a gateway between two server subnets, a WAN
//! segment with a data-center router and an "internet" host. Used by the
//! demo and by the end-to-end tests.
//!
//! ```text
//!   srv1 192.168.1.10 ─eth0──lan0─┐                       ┌─wan0 dc ─lan0──eth0─ dchost
//!   (02:00:00:00:01:0a)  192.168.1.1│                       │ 198.51.100.2    192.168.3.1   192.168.3.10
//!                               gw ├─wan0── sw: br0 ───────┤    (lan0 also 192.168.4.1)
//!   srv2 192.168.2.10 ─eth0──lan1─┘ 198.51.100.1           └─wan0 inet 198.51.100.100
//!   (02:00:00:00:02:0a)  192.168.2.1
//! ```
//!
//! - `gw` forwards IPv4 (rp_filter off, no redirects) and, until IPsec
//!   exists, routes 192.168.3.0/24 and 192.168.4.0/24 via dc in clear, so a
//!   test can tell that VPN-bound traffic is *not* forwarded in clear once
//!   the agent runs; dc routes 192.168.1.0/24 and 192.168.2.0/24 back via gw.
//! - `inet` routes 192.168.0.0/16 via gw; the server subnets' default route
//!   is the gateway.
//! - The end hosts (srv1, srv2, dchost, inet) send fully checksummed
//!   packets (tx checksum offload off), as real NICs put them on the wire;
//!   otherwise veth would hand the gateway packets with partial checksums.
//! - Every namespace of one bed shares a unique prefix ([`Bed::prefix`]);
//!   dropping the bed removes them all (killing what runs inside).

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context as _, Result};

use crate::netns::{Netns, unique_prefix};

/// The gateway's WAN interface (in `gw`).
pub const GW_WAN: &str = "wan0";
/// The gateway's LAN interfaces (in `gw`): lan0 to srv1, lan1 to srv2.
pub const GW_LAN0: &str = "lan0";
pub const GW_LAN1: &str = "lan1";
pub const GW_LANS: [&str; 2] = [GW_LAN0, GW_LAN1];

pub const GW_WAN_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const GW_LAN0_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub const GW_LAN1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 1);
pub const SRV1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
pub const SRV2_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);
pub const DC_WAN_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const DC_LAN0_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 1);
pub const DC_LAN1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 1);
pub const DCHOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 10);
pub const INET_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);

pub const GW_WAN_MAC: &str = "02:00:00:00:00:01";
pub const DC_WAN_MAC: &str = "02:00:00:00:00:02";
pub const INET_MAC: &str = "02:00:00:00:00:64";
pub const GW_LAN0_MAC: &str = "02:00:00:00:01:01";
pub const SRV1_MAC: &str = "02:00:00:00:01:0a";
pub const GW_LAN1_MAC: &str = "02:00:00:00:02:01";
pub const SRV2_MAC: &str = "02:00:00:00:02:0a";
pub const DC_LAN0_MAC: &str = "02:00:00:00:03:01";
pub const DCHOST_MAC: &str = "02:00:00:00:03:0a";

/// `SocketAddr` for `ip:port`.
pub fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// The test bed; see the module documentation.
pub struct Bed {
    prefix: String,
    /// The gateway: wan0 198.51.100.1/24, lan0 192.168.1.1/24, lan1 192.168.2.1/24.
    pub gw: Netns,
    /// A server: eth0 192.168.1.10/24, default via 192.168.1.1.
    pub srv1: Netns,
    /// A server: eth0 192.168.2.10/24, default via 192.168.2.1.
    pub srv2: Netns,
    /// The data-center router: wan0 198.51.100.2/24, lan0 192.168.3.1/24 and 192.168.4.1/24.
    pub dc: Netns,
    /// A data-center host: eth0 192.168.3.10/24, default via 192.168.3.1.
    pub dchost: Netns,
    /// An internet host on the WAN segment: wan0 198.51.100.100/24.
    pub inet: Netns,
    /// The WAN switch: bridge br0 with ports to-gw, to-dc, to-inet.
    pub sw: Netns,
}

impl Bed {
    /// Builds the bed: 7 namespaces, set up with one `ip -batch` each.
    pub fn new() -> Result<Bed> {
        let prefix = unique_prefix()?;
        let ns = |tag: &str| {
            Netns::create(format!("{prefix}{tag}"))
                .with_context(|| format!("creating namespace {prefix}{tag}"))
        };
        // Each one is removed on drop if a later step fails.
        let bed = Bed {
            gw: ns("gw")?,
            srv1: ns("srv1")?,
            srv2: ns("srv2")?,
            dc: ns("dc")?,
            dchost: ns("dchost")?,
            inet: ns("inet")?,
            sw: ns("sw")?,
            prefix,
        };
        bed.wire().context("setting up the test bed")?;
        Ok(bed)
    }

    fn wire(&self) -> Result<()> {
        // Routers: set before the interfaces exist so they inherit "default".
        let router = [
            ("net/ipv4/conf/all/rp_filter", "0"),
            ("net/ipv4/conf/default/rp_filter", "0"),
            ("net/ipv4/conf/all/send_redirects", "0"),
            ("net/ipv4/conf/default/send_redirects", "0"),
            ("net/ipv4/ip_forward", "1"),
        ];
        self.gw.sysctl(&router)?;
        self.dc.sysctl(&router)?;

        let mut sw = vec![
            "link add br0 type bridge".to_string(),
            "link set br0 up".to_string(),
        ];
        for (port, peer, peer_if, mac) in [
            ("to-gw", &self.gw, GW_WAN, GW_WAN_MAC),
            ("to-dc", &self.dc, "wan0", DC_WAN_MAC),
            ("to-inet", &self.inet, "wan0", INET_MAC),
        ] {
            sw.push(format!(
                "link add {port} type veth peer name {peer_if} address {mac} netns {}",
                peer.name()
            ));
            sw.push(format!("link set {port} master br0"));
            sw.push(format!("link set {port} up"));
        }
        self.sw.ip_batch(&sw)?;

        let v = |l: &str| l.to_string();
        self.gw.ip_batch(&[
            format!(
                "link add {GW_LAN0} address {GW_LAN0_MAC} type veth peer name eth0 address {SRV1_MAC} netns {}",
                self.srv1.name()
            ),
            format!(
                "link add {GW_LAN1} address {GW_LAN1_MAC} type veth peer name eth0 address {SRV2_MAC} netns {}",
                self.srv2.name()
            ),
            format!("addr add {GW_WAN_IP}/24 dev {GW_WAN}"),
            format!("addr add {GW_LAN0_IP}/24 dev {GW_LAN0}"),
            format!("addr add {GW_LAN1_IP}/24 dev {GW_LAN1}"),
            format!("link set {GW_WAN} up"),
            format!("link set {GW_LAN0} up"),
            format!("link set {GW_LAN1} up"),
            format!("route add 192.168.3.0/24 via {DC_WAN_IP}"),
            format!("route add 192.168.4.0/24 via {DC_WAN_IP}"),
        ])?;
        self.dc.ip_batch(&[
            format!(
                "link add lan0 address {DC_LAN0_MAC} type veth peer name eth0 address {DCHOST_MAC} netns {}",
                self.dchost.name()
            ),
            format!("addr add {DC_WAN_IP}/24 dev wan0"),
            format!("addr add {DC_LAN0_IP}/24 dev lan0"),
            format!("addr add {DC_LAN1_IP}/24 dev lan0"),
            v("link set wan0 up"),
            v("link set lan0 up"),
            format!("route add 192.168.1.0/24 via {GW_WAN_IP}"),
            format!("route add 192.168.2.0/24 via {GW_WAN_IP}"),
        ])?;
        for (host, ifname, ip, gw_route) in [
            (
                &self.srv1,
                "eth0",
                SRV1_IP,
                format!("default via {GW_LAN0_IP}"),
            ),
            (
                &self.srv2,
                "eth0",
                SRV2_IP,
                format!("default via {GW_LAN1_IP}"),
            ),
            (
                &self.dchost,
                "eth0",
                DCHOST_IP,
                format!("default via {DC_LAN0_IP}"),
            ),
            (
                &self.inet,
                "wan0",
                INET_IP,
                format!("192.168.0.0/16 via {GW_WAN_IP}"),
            ),
        ] {
            host.ip_batch(&[
                format!("addr add {ip}/24 dev {ifname}"),
                format!("link set {ifname} up"),
                format!("route add {gw_route}"),
            ])?;
            host.sh(&["ethtool", "-K", ifname, "tx", "off"])
                .context("ethtool (run `cargo xtask setup`)")?;
        }
        Ok(())
    }

    /// The prefix every namespace name of this bed starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// All namespaces, gateway first.
    pub fn namespaces(&self) -> [&Netns; 7] {
        [
            &self.gw,
            &self.srv1,
            &self.srv2,
            &self.dc,
            &self.dchost,
            &self.inet,
            &self.sw,
        ]
    }
}
