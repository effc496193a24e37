//! Checks across objects: where connections' subnets sit relative to the
//! VPC and to each other, and whether security groups let the remote
//! subnets reach the servers a tunnel is for.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use super::names::quote;
use super::prefix::PrefixIndex;
use super::validate::{ConnectionNets, Problems};
use super::{Connection, Direction, Ethertype, Port, Remote, SecurityGroup, Vpc};

/// "a, b and c" for up to three items, then "and N more".
pub(super) fn listing(items: Vec<String>) -> String {
    const SHOWN: usize = 3;
    let n = items.len();
    let mut shown: Vec<String> = items.into_iter().take(SHOWN).collect();
    if n > SHOWN {
        shown.push(format!("{} more", n - SHOWN));
    }
    match shown.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, init)) => format!("{} and {last}", init.join(", ")),
    }
}

fn family(net: &IpNet) -> Ethertype {
    Ethertype::of_net(net)
}

/// Bit `j` of a 64-bit set (none past 63).
fn bit(j: usize) -> u64 {
    u32::try_from(j)
        .ok()
        .and_then(|j| 1u64.checked_shl(j))
        .unwrap_or(0)
}

/// Who owns a connection subnet: (connection index, position in its list).
type Owner = (usize, usize);

/// Connection subnets against the VPC and each other. (VPC subnets among
/// themselves are checked with the VPC.) Returns, per connection, whether
/// an error was reported about it.
pub(super) fn subnet_overlaps(
    p: &mut Problems,
    vpc: &Vpc,
    vpc_index: &PrefixIndex<usize>,
    conns: &[ConnectionNets],
) -> Vec<bool> {
    let mut reported = Vec::with_capacity(conns.len());
    let vpc_label = |i: usize| match vpc.subnets.get(i) {
        Some(s) if !s.name.is_empty() => format!("VPC subnet {} ({})", quote(&s.name), s.cidr),
        Some(s) => format!("VPC subnet vpc.subnets[{i}] ({})", s.cidr),
        None => format!("vpc.subnets[{i}]"),
    };
    let conn_label = |c: usize| conns.get(c).map_or("", |x| x.location.as_str());
    let all_local: PrefixIndex<Owner> = PrefixIndex::new(
        conns
            .iter()
            .enumerate()
            .flat_map(|(c, x)| x.local.iter().map(move |&(i, n)| (n, (c, i)))),
    );
    let all_remote: PrefixIndex<Owner> = PrefixIndex::new(
        conns
            .iter()
            .enumerate()
            .flat_map(|(c, x)| x.remote.iter().map(move |&(i, n)| (n, (c, i)))),
    );

    for (c, conn) in conns.iter().enumerate() {
        let loc = conn.location.as_str();
        let errors_before = p.error_count();

        // One IP version per connection: a CHILD_SA's traffic selectors and
        // the tunnel's MTU are per family.
        if let Some(&(i0, first)) = conn.local.first().or(conn.remote.first()) {
            let first_field = if conn.local.is_empty() {
                "remote_subnets"
            } else {
                "local_subnets"
            };
            for (field, list) in [
                ("local_subnets", &conn.local),
                ("remote_subnets", &conn.remote),
            ] {
                for &(i, n) in list.iter() {
                    if family(&n) != family(&first) {
                        p.error(
                            loc,
                            &format!("{field}[{i}]"),
                            format!(
                                "{n} is {} but {first_field}[{i0}] ({first}) is {}; a connection carries one IP version",
                                family(&n),
                                family(&first)
                            ),
                        );
                    }
                }
            }
        }

        for (field, list, what) in [
            ("local_subnets", &conn.local, "local subnets"),
            ("remote_subnets", &conn.remote, "remote subnets"),
        ] {
            for (k, &(j, b)) in list.iter().enumerate() {
                for &(i, a) in list.iter().take(k) {
                    if a.contains(&b) || b.contains(&a) {
                        p.error(
                            loc,
                            &format!("{field}[{j}]"),
                            format!("{b} overlaps {field}[{i}] ({a}); a connection's {what} must not overlap"),
                        );
                    }
                }
            }
        }

        // Local subnets: what the VPC side offers the tunnel.
        for &(i, l) in &conn.local {
            if !vpc_index.containing(&l).is_empty() {
                continue;
            }
            let partial: Vec<String> = vpc_index
                .overlapping(&l)
                .into_iter()
                .map(|(_, &j)| vpc_label(j))
                .collect();
            let message = if partial.is_empty() {
                format!("{l} is outside the VPC: no VPC subnet contains it")
            } else {
                format!(
                    "{l} is outside the VPC: no single VPC subnet contains it (it overlaps {}); \
                     list the VPC subnets themselves",
                    listing(partial)
                )
            };
            p.error(loc, &format!("local_subnets[{i}]"), message);
        }

        // Remote subnets: what the data center behind the peer holds. A
        // destination there must not also be somewhere else, or routing it
        // would be ambiguous.
        for &(j, r) in &conn.remote {
            let field = format!("remote_subnets[{j}]");
            let own_local: Vec<String> = conn
                .local
                .iter()
                .filter(|(_, l)| l.contains(&r) || r.contains(l))
                .map(|(i, l)| format!("local_subnets[{i}] ({l})"))
                .collect();
            if !own_local.is_empty() {
                p.error(
                    loc,
                    &field,
                    format!(
                        "{r} overlaps {}; local and remote subnets must be disjoint",
                        listing(own_local)
                    ),
                );
            } else {
                let in_vpc: Vec<String> = vpc_index
                    .overlapping(&r)
                    .into_iter()
                    .map(|(_, &i)| vpc_label(i))
                    .collect();
                if !in_vpc.is_empty() {
                    p.error(
                        loc,
                        &field,
                        format!(
                            "{r} overlaps {}; remote subnets must lie outside the VPC",
                            listing(in_vpc)
                        ),
                    );
                } else {
                    // Only reachable when another connection's local subnet is
                    // itself outside the VPC (reported above), but say so.
                    let others: Vec<String> = all_local
                        .overlapping(&r)
                        .into_iter()
                        .filter(|(_, (oc, _))| *oc != c)
                        .map(|(n, &(oc, oi))| {
                            format!("{} local_subnets[{oi}] ({n})", conn_label(oc))
                        })
                        .collect();
                    if !others.is_empty() {
                        p.error(
                            loc,
                            &field,
                            format!(
                                "{r} overlaps {}; remote subnets must not be local anywhere",
                                listing(others)
                            ),
                        );
                    }
                }
            }
            // Hub and spoke: each remote destination behind exactly one peer.
            let earlier: Vec<String> = all_remote
                .overlapping(&r)
                .into_iter()
                .filter(|(_, (oc, _))| *oc < c)
                .map(|(n, &(oc, oi))| format!("{} remote_subnets[{oi}] ({n})", conn_label(oc)))
                .collect();
            if !earlier.is_empty() {
                p.error(
                    loc,
                    &field,
                    format!(
                        "{r} overlaps {}; two connections cannot both lead to the same addresses",
                        listing(earlier)
                    ),
                );
            }
        }
        reported.push(p.error_count() != errors_before);
    }
    reported
}

/// Warnings about security groups that make a valid configuration useless:
/// a server behind a tunnel that no rule lets the remote side reach, and a
/// server that may open no connection at all.
pub(super) fn reachability(
    p: &mut Problems,
    groups: &[SecurityGroup],
    ports: &[Port],
    port_locations: &[String],
    connections: &[Connection],
    nets: &[ConnectionNets],
) {
    let group_names = |gs: &[usize]| {
        let names: Vec<String> = gs
            .iter()
            .filter_map(|&g| groups.get(g))
            .map(|g| quote(&g.name))
            .collect();
        listing(names)
    };

    for (port, loc) in ports.iter().zip(port_locations) {
        if port.groups.is_empty() {
            continue;
        }
        let any_egress = port
            .groups
            .iter()
            .filter_map(|&g| groups.get(g))
            .any(|g| g.rules.iter().any(|r| r.direction == Direction::Egress));
        if !any_egress {
            p.warning(
                loc,
                "security_groups",
                format!(
                    "none of its groups ({}) has an egress rule, so the server can open no \
                     connection: vpcgw allows only what rules allow, in both directions \
                     (replies to flows that ingress rules admit still pass)",
                    group_names(&port.groups)
                ),
            );
        }
    }

    // Which connections' local subnets hold each port's addresses.
    let local_index: PrefixIndex<usize> = PrefixIndex::new(
        nets.iter()
            .enumerate()
            .flat_map(|(c, x)| x.local.iter().map(move |&(_, n)| (n, c))),
    );
    // What each group's ingress rules admit, by family: any address, or the
    // prefixes of its rules. Remote groups never admit a remote subnet:
    // their members are VPC ports, and remote subnets lie outside the VPC.
    // Protocols and ports do not matter here: any admitted flow will do.
    struct Admits {
        any: [bool; 2],
        prefixes: PrefixIndex<()>,
    }
    let fam = |e: Ethertype| usize::from(e == Ethertype::IPv6);
    let admits: Vec<Admits> = groups
        .iter()
        .map(|g| {
            let ingress = || g.rules.iter().filter(|r| r.direction == Direction::Ingress);
            let mut any = [false; 2];
            for r in ingress().filter(|r| r.remote == Remote::Any) {
                any[fam(r.ethertype)] = true;
            }
            let prefixes = PrefixIndex::new(ingress().filter_map(|r| match r.remote {
                // The prefix's family is the rule's ethertype (validated).
                Remote::Prefix(p) => Some((p, ())),
                _ => None,
            }));
            Admits { any, prefixes }
        })
        .collect();
    // Per (group, connection): bit j set when the group admits something
    // from the connection's remote_subnets[j] (at most 64 of them).
    let mut admitted: HashMap<(usize, usize), u64> = HashMap::new();
    let mut mask_of = |g: usize, c: usize| -> u64 {
        *admitted.entry((g, c)).or_insert_with(|| {
            let (Some(a), Some(conn)) = (admits.get(g), connections.get(c)) else {
                return 0;
            };
            let mut bits = 0u64;
            for (j, r) in conn.remote_subnets.iter().enumerate() {
                let any = a.any.get(fam(family(r))).copied().unwrap_or(false);
                if any || a.prefixes.any_overlapping(r) {
                    bits |= bit(j);
                }
            }
            bits
        })
    };

    for (port, loc) in ports.iter().zip(port_locations) {
        if port.groups.is_empty() {
            continue;
        }
        for &addr in &port.addresses {
            let conns: BTreeSet<usize> = local_index
                .containing_addr(addr)
                .into_iter()
                .map(|(_, &c)| c)
                .collect();
            for c in conns {
                if !nets.get(c).is_some_and(|n| n.subnets_ok) {
                    continue;
                }
                let Some(conn) = connections.get(c) else {
                    continue;
                };
                let mask = port.groups.iter().fold(0u64, |m, &g| m | mask_of(g, c));
                for (j, r) in conn.remote_subnets.iter().enumerate() {
                    if family(r) != Ethertype::of(&addr) || mask & bit(j) != 0 {
                        continue;
                    }
                    p.warning_with(loc, "security_groups", || {
                        format!(
                            "no ingress rule of {} admits {} remote subnet {r}: the tunnel would \
                             come up but the server ({addr}) would be unreachable from that subnet",
                            group_names(&port.groups),
                            nets.get(c).map_or("", |x| x.location.as_str()),
                        )
                    });
                }
            }
        }
    }
}
