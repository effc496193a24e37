//! The short summary `vpcgw check` prints for a valid configuration. It
//! names files but never reads them: no key material can end up here.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::{Config, DpdAction, Problem};

/// A few lines: the gateway, the VPC, security counts, one line per
/// connection (proposals in strongSwan notation), then one line per warning.
pub fn summary(cfg: &Config, warnings: &[Problem]) -> String {
    let mut out = String::new();
    let g = &cfg.gateway;
    // Writing to a String cannot fail: the results are ignored on purpose.
    let _ = writeln!(
        out,
        "gateway '{}': public IP {} on {}; LAN {}; XDP {}; other WAN traffic: {}",
        g.name,
        g.public_ip,
        g.wan_interface,
        g.lan_interfaces.join(", "),
        g.xdp_mode,
        g.wan_default
    );
    let _ = writeln!(out, "control socket: {}", g.control_socket.display());
    let ct = &cfg.conntrack;
    let _ = writeln!(
        out,
        "conntrack: up to {} flows, swept every {} s",
        ct.max_entries,
        ct.sweep_interval.as_secs()
    );

    let subnets: Vec<String> = cfg
        .vpc
        .subnets
        .iter()
        .map(|s| format!("{} ({})", s.cidr, s.name))
        .collect();
    let _ = writeln!(
        out,
        "vpc '{}': {} subnet{}: {}",
        cfg.vpc.name,
        cfg.vpc.subnets.len(),
        plural(cfg.vpc.subnets.len()),
        shorten(subnets, 8)
    );
    let rules: usize = cfg.groups.iter().map(|grp| grp.rules.len()).sum();
    let _ = writeln!(
        out,
        "security: {} group{}, {} rule{}, {} port{}",
        cfg.groups.len(),
        plural(cfg.groups.len()),
        rules,
        plural(rules),
        cfg.ports.len(),
        plural(cfg.ports.len())
    );

    let _ = writeln!(out, "connections: {}", cfg.connections.len());
    for c in &cfg.connections {
        let ike = cfg
            .ike_policies
            .get(c.ike_policy)
            .map_or_else(|| "?".to_string(), |p| p.proposal());
        let esp = cfg
            .ipsec_policies
            .get(c.ipsec_policy)
            .map_or_else(|| "?".to_string(), |p| p.proposal());
        let dpd = match c.dpd.action {
            DpdAction::Disabled => "dpd disabled".to_string(),
            action => format!(
                "dpd {action} {}s/{}s",
                c.dpd.interval.as_secs(),
                c.dpd.timeout.as_secs()
            ),
        };
        let _ = writeln!(
            out,
            "  {}: peer {}; {} -> {}; ike {ike}; esp {esp}; {}; mtu {}; {dpd}",
            c.name,
            c.peer_address,
            nets(&c.local_subnets),
            nets(&c.remote_subnets),
            c.initiator,
            c.mtu
        );
    }

    // Each starts with "warning: ".
    for w in warnings {
        let _ = writeln!(out, "{w}");
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn nets(list: &[IpNet]) -> String {
    shorten(list.iter().map(IpNet::to_string).collect(), 8)
}

/// The first `shown` items, then how many more.
fn shorten(items: Vec<String>, shown: usize) -> String {
    let n = items.len();
    let mut parts: Vec<String> = items.into_iter().take(shown).collect();
    if n > shown {
        parts.push(format!("and {} more", n - shown));
    }
    parts.join(", ")
}
