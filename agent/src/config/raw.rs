//! The file as written: serde structures mirroring the TOML.
//!
//! Deliberately loose: every key the file may omit is an `Option`, numbers
//! are `i64` and keywords, addresses and prefixes are strings. Typing them
//! here would turn a bad value into a serde error that stops at the first
//! one; `validate` instead checks each value itself, names the object and
//! field, and reports every problem at once. Only the shape (tables, arrays,
//! strings vs numbers) and unknown keys are enforced by serde.
//!
//! The same structures serialise a validated [`Config`] back to TOML
//! ([`to_toml`]).

use serde::{Deserialize, Serialize};
use toml::Value;

use super::{Config, PortRange, Protocol, Remote};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<RawGateway>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<RawConntrack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<RawVpc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<RawGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<RawPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ike_policies: Vec<RawIkePolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipsec_policies: Vec<RawIpsecPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<RawConnection>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_interfaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan_default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn_sent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn_recv: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fin_wait: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_close_wait: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_last_ack: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_time_wait: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_close: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_unreplied: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_replied: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<i64>,
}

impl RawConntrack {
    /// The timeout keys in `vpcgw_common::conntrack::Timeout` order.
    pub fn timeouts(
        &self,
    ) -> [(&'static str, Option<i64>); vpcgw_common::conntrack::TIMEOUT_COUNT] {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("udp_unreplied", self.udp_unreplied),
            ("udp_replied", self.udp_replied),
            ("icmp", self.icmp),
            ("other", self.other),
            ("fragment", self.fragment),
        ]
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<RawSubnet>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<String>,
    /// A name or a number: checked by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIkePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prf: Option<String>,
    /// A group number or name: checked by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh_group: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIpsecPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encapsulation_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    /// A group number or name, or "none": checked by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subnets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_subnets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpd: Option<RawDpd>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// A validated configuration as TOML, every default written out and every
/// path absolute; reading it back (with the same `Config::path`) gives the
/// same [`Config`]. PSK contents are never part of a `Config`, so never here.
pub fn to_toml(cfg: &Config) -> Result<String, toml::ser::Error> {
    toml::to_string(&RawConfig::from(cfg))
}

fn secs(d: std::time::Duration) -> Option<i64> {
    Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn path_text(p: &std::path::Path) -> Option<String> {
    Some(p.to_string_lossy().into_owned())
}

impl From<&Config> for RawConfig {
    fn from(cfg: &Config) -> Self {
        let group_name = |i: usize| {
            cfg.groups
                .get(i)
                .map(|g| g.name.clone())
                .unwrap_or_default()
        };
        let g = &cfg.gateway;
        let ct = &cfg.conntrack;
        let t = |slot: usize| ct.timeouts.get(slot).map(|&v| i64::from(v));
        RawConfig {
            gateway: Some(RawGateway {
                name: Some(g.name.clone()),
                public_ip: Some(g.public_ip.to_string()),
                wan_interface: Some(g.wan_interface.clone()),
                lan_interfaces: Some(g.lan_interfaces.clone()),
                xdp_mode: Some(g.xdp_mode.keyword().into()),
                wan_default: Some(g.wan_default.keyword().into()),
                control_socket: path_text(&g.control_socket),
            }),
            conntrack: Some(RawConntrack {
                max_entries: Some(i64::from(ct.max_entries)),
                sweep_interval: secs(ct.sweep_interval),
                tcp_syn_sent: t(0),
                tcp_syn_recv: t(1),
                tcp_established: t(2),
                tcp_fin_wait: t(3),
                tcp_close_wait: t(4),
                tcp_last_ack: t(5),
                tcp_time_wait: t(6),
                tcp_close: t(7),
                udp_unreplied: t(8),
                udp_replied: t(9),
                icmp: t(10),
                other: t(11),
                fragment: t(12),
            }),
            vpc: Some(RawVpc {
                name: Some(cfg.vpc.name.clone()),
                subnets: cfg
                    .vpc
                    .subnets
                    .iter()
                    .map(|s| RawSubnet {
                        name: Some(s.name.clone()),
                        cidr: Some(s.cidr.to_string()),
                    })
                    .collect(),
            }),
            security_groups: cfg
                .groups
                .iter()
                .map(|grp| RawGroup {
                    name: Some(grp.name.clone()),
                    description: Some(grp.description.clone()),
                    rules: grp
                        .rules
                        .iter()
                        .map(|r| {
                            let (min, max) = match r.ports {
                                None => (None, None),
                                Some(PortRange::Ports { min, max }) => {
                                    (Some(i64::from(min)), Some(i64::from(max)))
                                }
                                Some(PortRange::Icmp { ty, code }) => {
                                    (Some(i64::from(ty)), code.map(i64::from))
                                }
                            };
                            let (prefix, group) = match &r.remote {
                                Remote::Any => (None, None),
                                Remote::Prefix(p) => (Some(p.to_string()), None),
                                Remote::Group(i) => (None, Some(group_name(*i))),
                            };
                            RawRule {
                                direction: Some(r.direction.keyword().into()),
                                ethertype: Some(r.ethertype.keyword().into()),
                                protocol: Some(match r.protocol {
                                    Protocol::Number(n) => Value::Integer(i64::from(n)),
                                    p => Value::String(p.to_string()),
                                }),
                                port_range_min: min,
                                port_range_max: max,
                                remote_ip_prefix: prefix,
                                remote_group: group,
                                description: Some(r.description.clone()),
                            }
                        })
                        .collect(),
                })
                .collect(),
            ports: cfg
                .ports
                .iter()
                .map(|p| RawPort {
                    name: Some(p.name.clone()),
                    addresses: Some(p.addresses.iter().map(|a| a.to_string()).collect()),
                    mac: p.mac.map(|m| super::names::mac_text(&m)),
                    security_groups: Some(p.groups.iter().map(|&i| group_name(i)).collect()),
                })
                .collect(),
            ike_policies: cfg
                .ike_policies
                .iter()
                .map(|p| RawIkePolicy {
                    name: Some(p.name.clone()),
                    ike_version: Some("v2".into()),
                    encryption: Some(p.encryption.keyword().into()),
                    integrity: p.integrity.map(|i| i.keyword().into()),
                    prf: Some(p.prf.keyword().into()),
                    dh_group: Some(Value::Integer(i64::from(p.dh_group.number()))),
                    lifetime: secs(p.lifetime),
                })
                .collect(),
            ipsec_policies: cfg
                .ipsec_policies
                .iter()
                .map(|p| RawIpsecPolicy {
                    name: Some(p.name.clone()),
                    transform_protocol: Some("esp".into()),
                    encapsulation_mode: Some("tunnel".into()),
                    encryption: Some(p.encryption.keyword().into()),
                    integrity: p.integrity.map(|i| i.keyword().into()),
                    pfs: Some(match p.pfs {
                        Some(g) => Value::Integer(i64::from(g.number())),
                        None => Value::String("none".into()),
                    }),
                    lifetime: secs(p.lifetime),
                })
                .collect(),
            connections: cfg
                .connections
                .iter()
                .map(|c| RawConnection {
                    name: Some(c.name.clone()),
                    peer_address: Some(c.peer_address.to_string()),
                    peer_id: Some(c.peer_id.clone()),
                    local_id: Some(c.local_id.clone()),
                    local_subnets: Some(c.local_subnets.iter().map(|n| n.to_string()).collect()),
                    remote_subnets: Some(c.remote_subnets.iter().map(|n| n.to_string()).collect()),
                    ike_policy: cfg.ike_policies.get(c.ike_policy).map(|p| p.name.clone()),
                    ipsec_policy: cfg
                        .ipsec_policies
                        .get(c.ipsec_policy)
                        .map(|p| p.name.clone()),
                    psk_file: path_text(&c.psk_file),
                    initiator: Some(c.initiator.keyword().into()),
                    mtu: Some(i64::from(c.mtu)),
                    dpd: Some(RawDpd {
                        action: Some(c.dpd.action.keyword().into()),
                        interval: secs(c.dpd.interval),
                        timeout: secs(c.dpd.timeout),
                    }),
                })
                .collect(),
        }
    }
}
