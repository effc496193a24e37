//! `vpcgw explain`: what the data plane would do with the first packet of a
//! flow, and why.
//!
//! It does not re-implement the decision: it builds the packet, picks the
//! interface it would arrive on, and runs the XDP program's own pipeline
//! (`vpcgw_common::pipeline::process`) over the compiled maps held in memory.
//! Decrypted traffic from a connection (which reaches the security groups
//! through the crypto path, not through XDP) is decided by the same
//! `decide_new` the pipeline uses.

use std::fmt::Write as _;
use std::net::IpAddr;

use vpcgw_common::Addr;
use vpcgw_common::abi::{FAMILY_V4, FAMILY_V6, Iface, NONE, ROLE_LAN, ROLE_WAN};
use vpcgw_common::pipeline::{Action, Work, process};
use vpcgw_common::policy::{Flow, Origin, decide_new};
use vpcgw_common::stats::Reason;
use vpcgw_common::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::compile::{Compiled, RuleRef, compile};
use crate::config::{Config, Direction, Ethertype, PortRange, Protocol, Remote, Rule};
use crate::frame::{FrameSpec, L4, TCP_SYN};
use crate::hostmaps::{HostDataplane, runtime_config};

/// The flow to explain.
#[derive(Clone, Debug)]
pub struct Query {
    pub from: IpAddr,
    pub to: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// TCP/UDP destination port (ignored otherwise).
    pub port: u16,
    /// ICMP type and code (ignored otherwise).
    pub icmp: (u8, u8),
}

/// The verdict's first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Vpn(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allow => f.write_str("ALLOW"),
            Verdict::Deny => f.write_str("DENY"),
            Verdict::Vpn(c) => write!(f, "VPN {c}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Explanation {
    pub verdict: Verdict,
    pub reason: Reason,
    /// Human lines after the verdict: what decided, and on what grounds.
    pub lines: Vec<String>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.verdict)?;
        for l in &self.lines {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("--from {0} and --to {1} are not of the same IP version")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("{0}")]
    Compile(#[from] crate::compile::CompileError),
}

/// Interface indices used for the simulated arrival (any distinct numbers).
const LAN_IFINDEX: u32 = 1;
const WAN_IFINDEX: u32 = 2;

pub fn explain(cfg: &Config, q: &Query) -> Result<Explanation, ExplainError> {
    if q.from.is_ipv4() != q.to.is_ipv4() {
        return Err(ExplainError::MixedFamilies(q.from, q.to));
    }
    let compiled = compile(cfg)?;
    let mut dp = HostDataplane::new(&compiled);
    dp.ifaces.insert(
        LAN_IFINDEX,
        Iface {
            role: ROLE_LAN,
            xsk_base: 0,
        },
    );
    dp.ifaces.insert(
        WAN_IFINDEX,
        Iface {
            role: ROLE_WAN,
            xsk_base: 0,
        },
    );
    let family = if q.from.is_ipv4() {
        FAMILY_V4
    } else {
        FAMILY_V6
    };
    let from_port = port_named(cfg, q.from);
    let mut lines = Vec::new();

    // Decrypted from a connection: decided by the security groups on the
    // crypto path's side: the XDP program never sees them in clear.
    if let Some((ci, conn)) = cfg
        .connections
        .iter()
        .enumerate()
        .find(|(_, c)| c.remote_subnets.iter().any(|n| n.contains(&q.from)))
    {
        let flow = Flow {
            family,
            proto: q.proto,
            src: Addr::from(q.from),
            dst: Addr::from(q.to),
            port: policy_port(q),
        };
        let d = decide_new(&dp, 0, Origin::Tunnel { conn: ci as u32 }, &flow);
        lines.push(format!(
            "{} is in connection {}'s remote subnets: the packet arrives decrypted through the \
             tunnel",
            q.from, conn.name
        ));
        let verdict = if d.allowed() {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        describe(
            cfg,
            &compiled,
            &dp,
            q,
            d.reason,
            d.egress_rule,
            d.ingress_rule,
            &mut lines,
        );
        return Ok(Explanation {
            verdict,
            reason: d.reason,
            lines,
        });
    }

    // Otherwise: a real packet on the interface it would arrive on.
    let (ifindex, src_mac) = match from_port {
        Some(p) => (LAN_IFINDEX, p.mac.unwrap_or([2, 0, 0, 0, 0, 1])),
        None => (WAN_IFINDEX, [2, 0, 0, 0, 0, 1]),
    };
    lines.push(match from_port {
        Some(p) => format!(
            "arrives on a LAN interface from port {} ({})",
            p.name, q.from
        ),
        None => format!("arrives on the WAN interface from {}", q.from),
    });
    let frame = FrameSpec::new(q.from, q.to, l4(q))
        .with_src_mac(src_mac)
        .build();
    let rt = runtime_config(cfg, 1, 0);
    let mut work = Work::default();
    let out = process(&mut dp, &rt, &mut work, &frame[..], ifindex, 0, 1);
    let rules: Vec<u32> = {
        let mut r: Vec<u32> = dp.rule_hits.keys().copied().collect();
        r.sort_unstable();
        r
    };
    let verdict = match out.action {
        Action::Pass => Verdict::Allow,
        Action::Drop => Verdict::Deny,
        Action::Redirect => Verdict::Vpn(
            cfg.connections
                .get(out.conn as usize)
                .map_or_else(|| format!("#{}", out.conn), |c| c.name.clone()),
        ),
    };
    // The rules credited, split back into egress (source port) and ingress.
    let (mut egress, mut ingress) = (NONE, NONE);
    for id in rules {
        if let Some(r) = rule_at(cfg, &compiled, id) {
            if r.direction == Direction::Egress {
                egress = id + 1;
            } else {
                ingress = id + 1;
            }
        }
    }
    describe(
        cfg, &compiled, &dp, q, out.reason, egress, ingress, &mut lines,
    );
    Ok(Explanation {
        verdict,
        reason: out.reason,
        lines,
    })
}

fn l4(q: &Query) -> L4 {
    match q.proto {
        IPPROTO_TCP => L4::Tcp {
            sport: 40000,
            dport: q.port,
            flags: TCP_SYN,
        },
        IPPROTO_UDP => L4::Udp {
            sport: 40000,
            dport: q.port,
        },
        IPPROTO_ICMP | IPPROTO_ICMPV6 => L4::Icmp {
            ty: q.icmp.0,
            code: q.icmp.1,
            rest: [0x12, 0x34, 0, 1],
            quote: Vec::new(),
        },
        p => L4::Raw { proto: p },
    }
}

fn policy_port(q: &Query) -> u16 {
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => q.port,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (q.icmp.0 as u16) << 8 | q.icmp.1 as u16,
        _ => 0,
    }
}

fn port_named(cfg: &Config, ip: IpAddr) -> Option<&crate::config::Port> {
    cfg.ports.iter().find(|p| p.addresses.contains(&ip))
}

fn rule_at<'c>(cfg: &'c Config, c: &Compiled, id: u32) -> Option<&'c Rule> {
    let RuleRef { group, index } = *c.rules.get(id as usize)?;
    cfg.groups.get(group)?.rules.get(index)
}

/// "security group sg-web rule 2: ingress IPv4 tcp 80 from any" (rules
/// numbered from 1 within their group, as in configuration messages)
pub fn rule_line(cfg: &Config, c: &Compiled, id: u32) -> String {
    let Some(RuleRef { group, index }) = c.rules.get(id as usize).copied() else {
        return format!("rule #{id}");
    };
    let (Some(g), Some(r)) = (cfg.groups.get(group), rule_at(cfg, c, id)) else {
        return format!("rule #{id}");
    };
    format!(
        "security group {} rule {}: {}",
        g.name,
        index + 1,
        rule_text(cfg, r)
    )
}

/// A rule in one line, in the file's vocabulary.
pub fn rule_text(cfg: &Config, r: &Rule) -> String {
    let mut s = String::new();
    let dir = match r.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let eth = match r.ethertype {
        Ethertype::IPv4 => "IPv4",
        Ethertype::IPv6 => "IPv6",
    };
    let _ = write!(s, "{dir} {eth} ");
    let _ = match r.protocol {
        Protocol::Any => write!(s, "any"),
        Protocol::Tcp => write!(s, "tcp"),
        Protocol::Udp => write!(s, "udp"),
        Protocol::Icmp => write!(s, "icmp"),
        Protocol::Icmpv6 => write!(s, "icmpv6"),
        Protocol::Number(n) => write!(s, "protocol {n}"),
    };
    let _ = match r.ports {
        None => Ok(()),
        Some(PortRange::Ports { min, max }) if min == max => write!(s, " {min}"),
        Some(PortRange::Ports { min, max }) => write!(s, " {min}-{max}"),
        Some(PortRange::Icmp { ty, code: None }) => write!(s, " type {ty}"),
        Some(PortRange::Icmp { ty, code: Some(c) }) => write!(s, " type {ty} code {c}"),
    };
    let side = if r.direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    let _ = match &r.remote {
        Remote::Any => write!(s, " {side} any"),
        Remote::Prefix(n) => write!(s, " {side} {n}"),
        Remote::Group(g) => write!(
            s,
            " {side} group {}",
            cfg.groups.get(*g).map_or("?", |g| g.name.as_str())
        ),
    };
    s
}

fn groups_of(cfg: &Config, p: &crate::config::Port) -> String {
    p.groups
        .iter()
        .filter_map(|g| cfg.groups.get(*g).map(|g| g.name.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn flow_text(q: &Query) -> String {
    match q.proto {
        IPPROTO_TCP => format!("tcp/{}", q.port),
        IPPROTO_UDP => format!("udp/{}", q.port),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => format!("icmp type {} code {}", q.icmp.0, q.icmp.1),
        p => format!("protocol {p}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn describe(
    cfg: &Config,
    c: &Compiled,
    dp: &HostDataplane,
    q: &Query,
    reason: Reason,
    egress: u32,
    ingress: u32,
    lines: &mut Vec<String>,
) {
    let from_port = port_named(cfg, q.from);
    let to_port = port_named(cfg, q.to);
    if egress != NONE
        && let Some(p) = from_port
    {
        lines.push(format!(
            "egress from port {} allowed by {}",
            p.name,
            rule_line(cfg, c, egress - 1)
        ));
    }
    if ingress != NONE
        && let Some(p) = to_port
    {
        lines.push(format!(
            "ingress to port {} allowed by {}",
            p.name,
            rule_line(cfg, c, ingress - 1)
        ));
    }
    let flow = flow_text(q);
    let text = match reason {
        Reason::PassNew => match (from_port, to_port) {
            (_, None) if from_port.is_some() => {
                format!("{} is not a port: the gateway routes it on", q.to)
            }
            _ => "new flow admitted; conntrack lets its replies back".to_string(),
        },
        Reason::VpnRedirect => {
            let conn = cfg
                .connections
                .iter()
                .find(|cn| cn.remote_subnets.iter().any(|n| n.contains(&q.to)));
            match conn {
                Some(cn) => format!(
                    "{} is in connection {}'s remote subnets and {} in its local subnets: handed \
                     to the crypto path (AF_XDP) to leave encrypted",
                    q.to, cn.name, q.from
                ),
                None => "handed to the crypto path".to_string(),
            }
        }
        Reason::DropPolicyEgress => match from_port {
            Some(p) => format!(
                "no rule of port {}'s groups ({}) allows egress {flow} to {}",
                p.name,
                groups_of(cfg, p),
                q.to
            ),
            None => format!("no egress rule allows {flow}"),
        },
        Reason::DropPolicyIngress => match to_port {
            Some(p) => {
                let mut t = format!(
                    "no rule of port {}'s groups ({}) allows ingress {flow} from {}",
                    p.name,
                    groups_of(cfg, p),
                    q.from
                );
                let fam = if q.from.is_ipv4() {
                    FAMILY_V4
                } else {
                    FAMILY_V6
                };
                if let Some((prefix, _)) = dp.policy.remote_match(fam, &Addr::from(q.from)) {
                    let _ = write!(t, " (the source falls in rule prefix {prefix})");
                }
                t
            }
            None => format!("no ingress rule allows {flow}"),
        },
        Reason::DropVpnNotLocal => format!(
            "{} is in a connection's remote subnets but {} is not in that connection's local \
             subnets: it would leave unencrypted, so it is dropped",
            q.to, q.from
        ),
        Reason::DropSpoofed => {
            format!("{} is not a port's address: anti-spoofing drops it", q.from)
        }
        Reason::DropWanSpoofed => format!(
            "{} is a VPC or VPN remote address and cannot arrive in clear on the WAN",
            q.from
        ),
        Reason::PassIke => format!("IKE from peer gateway {}", q.from),
        Reason::DropIkeNotPeer => format!("IKE from {}, which is not a configured peer", q.from),
        Reason::PassEsp => format!("ESP from peer gateway {}", q.from),
        Reason::DropEspNotPeer => format!("ESP from {}, which is not a configured peer", q.from),
        Reason::PassWanDefault => {
            "not for a port: handed to the gateway's own stack (wan_default = \"pass\")".into()
        }
        Reason::DropWanDefault => "not for a port: dropped (wan_default = \"drop\")".into(),
        other => format!("data-plane reason {}", other.name()),
    };
    lines.push(format!("{} ({})", text, reason.name()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::compile::tests::{ip, sample};

    fn q(from: &str, to: &str, proto: u8, port: u16) -> Query {
        Query {
            from: ip(from),
            to: ip(to),
            proto,
            port,
            icmp: (8, 0),
        }
    }

    #[test]
    fn verdicts() {
        let cfg = sample();
        let e = explain(&cfg, &q("1.2.3.4", "192.168.1.10", IPPROTO_TCP, 80)).unwrap();
        assert_eq!(e.verdict, Verdict::Allow);
        assert!(
            e.lines
                .iter()
                .any(|l| l.contains("security group web rule 1")),
            "{e}"
        );
        let e = explain(&cfg, &q("1.2.3.4", "192.168.1.10", IPPROTO_TCP, 22)).unwrap();
        assert_eq!(e.verdict, Verdict::Deny);
        assert!(
            e.to_string()
                .contains("no rule of port p-web's groups (web)"),
            "{e}"
        );
        let e = explain(&cfg, &q("192.168.1.10", "192.168.3.9", IPPROTO_TCP, 443)).unwrap();
        assert_eq!(e.verdict, Verdict::Vpn("dc1".into()));
        assert!(e.to_string().starts_with("VPN dc1\n"));
        let e = explain(&cfg, &q("192.168.3.9", "192.168.1.10", IPPROTO_TCP, 80)).unwrap();
        assert_eq!(e.verdict, Verdict::Allow, "{e}");
        let e = explain(&cfg, &q("198.51.100.7", "198.51.100.1", IPPROTO_UDP, 500)).unwrap();
        assert_eq!(
            (e.verdict, e.reason),
            (Verdict::Deny, Reason::DropIkeNotPeer)
        );
        let e = explain(&cfg, &q("198.51.100.2", "198.51.100.1", IPPROTO_UDP, 500)).unwrap();
        assert_eq!((e.verdict, e.reason), (Verdict::Allow, Reason::PassIke));
    }
}
