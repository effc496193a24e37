use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use vpcgw_common::Addr;
use vpcgw_common::abi::{FAMILY_V4, FAMILY_V6, NONE};
use vpcgw_common::conntrack::DEFAULT_TIMEOUTS;
use vpcgw_common::policy::{Flow, Origin, decide_new};
use vpcgw_common::stats::Reason;
use vpcgw_common::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use super::*;
use crate::config::*;
use crate::hostmaps::HostPolicy;

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(crate) fn rule(
    dir: Direction,
    proto: Protocol,
    ports: Option<PortRange>,
    remote: Remote,
) -> Rule {
    Rule {
        direction: dir,
        ethertype: Ethertype::IPv4,
        protocol: proto,
        ports,
        remote,
        description: String::new(),
    }
}

pub(crate) fn tcp(min: u16, max: u16) -> Option<PortRange> {
    Some(PortRange::Ports { min, max })
}

/// A small VPC: group 0 "web", group 1 "db"; port 0 web (192.168.1.10),
/// port 1 db (192.168.2.10), port 2 both (192.168.1.20); one connection.
pub(crate) fn sample() -> Config {
    use Direction::*;
    let web = SecurityGroup {
        name: "web".into(),
        description: String::new(),
        rules: vec![
            rule(Ingress, Protocol::Tcp, tcp(80, 80), Remote::Any),
            rule(
                Ingress,
                Protocol::Tcp,
                tcp(22, 22),
                Remote::Prefix(net("10.0.0.0/8")),
            ),
            rule(Ingress, Protocol::Udp, tcp(1000, 2000), Remote::Group(1)),
            rule(
                Ingress,
                Protocol::Icmp,
                Some(PortRange::Icmp { ty: 8, code: None }),
                Remote::Any,
            ),
            rule(Egress, Protocol::Any, None, Remote::Any),
        ],
    };
    let db = SecurityGroup {
        name: "db".into(),
        description: String::new(),
        rules: vec![
            rule(Ingress, Protocol::Tcp, tcp(5432, 5432), Remote::Group(0)),
            rule(Egress, Protocol::Any, None, Remote::Any),
        ],
    };
    Config {
        path: PathBuf::from("/nonexistent/test.toml"),
        gateway: Gateway {
            name: "t".into(),
            public_ip: ip("198.51.100.1"),
            wan_interface: "wan0".into(),
            lan_interfaces: vec!["lan0".into()],
            xdp_mode: XdpMode::Auto,
            wan_default: WanDefault::Pass,
            control_socket: PathBuf::from("/nonexistent/sock"),
        },
        conntrack: ConntrackSettings {
            max_entries: 1024,
            timeouts: DEFAULT_TIMEOUTS,
            sweep_interval: Duration::from_secs(10),
        },
        vpc: Vpc {
            name: "v".into(),
            subnets: vec![
                Subnet {
                    name: "a".into(),
                    cidr: net("192.168.1.0/24"),
                },
                Subnet {
                    name: "b".into(),
                    cidr: net("192.168.2.0/24"),
                },
            ],
        },
        groups: vec![web, db],
        ports: vec![
            Port {
                name: "p-web".into(),
                addresses: vec![ip("192.168.1.10")],
                mac: Some([2, 0, 0, 0, 1, 10]),
                groups: vec![0],
            },
            Port {
                name: "p-db".into(),
                addresses: vec![ip("192.168.2.10")],
                mac: None,
                groups: vec![1],
            },
            Port {
                name: "p-both".into(),
                addresses: vec![ip("192.168.1.20")],
                mac: None,
                groups: vec![1, 0],
            },
        ],
        ike_policies: vec![],
        ipsec_policies: vec![],
        connections: vec![Connection {
            name: "dc1".into(),
            peer_address: ip("198.51.100.2"),
            peer_id: "198.51.100.2".into(),
            local_id: "198.51.100.1".into(),
            local_subnets: vec![net("192.168.1.0/24")],
            remote_subnets: vec![net("192.168.3.0/24"), net("192.168.4.0/24")],
            ike_policy: 0,
            ipsec_policy: 0,
            psk_file: PathBuf::from("/nonexistent/psk"),
            initiator: Initiator::BiDirectional,
            mtu: 1400,
            dpd: Dpd {
                action: DpdAction::Hold,
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(120),
            },
        }],
    }
}

fn flow(src: &str, dst: &str, proto: u8, port: u16) -> Flow {
    let s = ip(src);
    Flow {
        family: if s.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 },
        proto,
        src: Addr::from(s),
        dst: Addr::from(ip(dst)),
        port,
    }
}

fn decide(h: &HostPolicy, origin: Origin, f: Flow) -> (Reason, u32) {
    let d = decide_new(h, 0, origin, &f);
    (d.reason, d.rule())
}

#[test]
fn prefix_blocks_cover_exactly() {
    let mut seed = 0x2545_f491_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut cases: Vec<(u32, u32)> =
        vec![(0, 0xffff), (0, 0), (0xffff, 0xffff), (1, 0xfffe), (80, 80)];
    for _ in 0..300 {
        let a = next() & 0xffff;
        let b = next() & 0xffff;
        cases.push((a.min(b), a.max(b)));
    }
    for (lo, hi) in cases {
        let blocks = prefix_blocks(lo, hi);
        assert!(blocks.len() <= 30, "{lo}-{hi}: {} blocks", blocks.len());
        let mut covered = lo;
        for (v, plen) in blocks {
            let size = 1u32 << (16 - plen);
            assert_eq!(v as u32, covered, "blocks are contiguous");
            assert_eq!(v as u32 % size, 0, "block {v}/{plen} is aligned");
            covered += size;
        }
        assert_eq!(covered, hi + 1);
    }
}

#[test]
fn overlapping_ranges_belong_to_the_first_rule() {
    let got = owned_intervals(&[(10, 20, 5), (15, 30, 2), (25, 26, 1)]);
    assert_eq!(
        got,
        vec![(10, 14, 5), (15, 24, 2), (25, 26, 1), (27, 30, 2)]
    );
}

#[test]
fn sample_policy_decisions() {
    let cfg = sample();
    let c = compile(&cfg).unwrap();
    assert_eq!(c.sets.len(), 3, "web, db, and web+db");
    let h = HostPolicy::new(&c);
    let wan = Origin::Wan;
    let lan = Origin::Lan;
    // Any remote on tcp/80, rule 0.
    assert_eq!(
        decide(&h, wan, flow("1.2.3.4", "192.168.1.10", IPPROTO_TCP, 80)),
        (Reason::PassNew, 1)
    );
    assert_eq!(
        decide(&h, wan, flow("1.2.3.4", "192.168.1.10", IPPROTO_TCP, 22)).0,
        Reason::DropPolicyIngress
    );
    assert_eq!(
        decide(&h, wan, flow("10.9.8.7", "192.168.1.10", IPPROTO_TCP, 22)),
        (Reason::PassNew, 2)
    );
    // remote_group db: the db port may reach web on udp 1000-2000 only.
    assert_eq!(
        decide(
            &h,
            lan,
            flow("192.168.2.10", "192.168.1.10", IPPROTO_UDP, 1500)
        ),
        (Reason::PassNew, 3)
    );
    assert_eq!(
        decide(
            &h,
            lan,
            flow("192.168.2.10", "192.168.1.10", IPPROTO_UDP, 999)
        )
        .0,
        Reason::DropPolicyIngress
    );
    // ...and p-both is in db as well.
    assert_eq!(
        decide(
            &h,
            lan,
            flow("192.168.1.20", "192.168.1.10", IPPROTO_UDP, 2000)
        ),
        (Reason::PassNew, 3)
    );
    // remote_group web -> db:5432; a stranger may not.
    assert_eq!(
        decide(
            &h,
            lan,
            flow("192.168.1.10", "192.168.2.10", IPPROTO_TCP, 5432)
        )
        .0,
        Reason::PassNew
    );
    assert_eq!(
        decide(&h, wan, flow("1.2.3.4", "192.168.2.10", IPPROTO_TCP, 5432)).0,
        Reason::DropPolicyIngress
    );
    // ICMP type 8 any code is allowed in, type 0 is not.
    assert_eq!(
        decide(
            &h,
            wan,
            flow("1.2.3.4", "192.168.1.10", IPPROTO_ICMP, 8 << 8 | 3)
        )
        .0,
        Reason::PassNew
    );
    assert_eq!(
        decide(&h, wan, flow("1.2.3.4", "192.168.1.10", IPPROTO_ICMP, 0)).0,
        Reason::DropPolicyIngress
    );
    // VPN classification: web subnet to a DC subnet.
    let d = decide_new(
        &h,
        0,
        lan,
        &flow("192.168.1.10", "192.168.4.7", IPPROTO_TCP, 443),
    );
    assert_eq!((d.reason, d.conn), (Reason::VpnRedirect, 1));
    // The db subnet is not a local subnet of dc1: refused, not leaked in clear.
    let d = decide_new(
        &h,
        0,
        lan,
        &flow("192.168.2.10", "192.168.3.1", IPPROTO_TCP, 443),
    );
    assert_eq!(d.reason, Reason::DropVpnNotLocal);
    // Tunnel origin: decrypted traffic must match the connection's selectors.
    let t = Origin::Tunnel { conn: 0 };
    assert_eq!(
        decide(&h, t, flow("192.168.3.5", "192.168.1.10", IPPROTO_TCP, 80)).0,
        Reason::PassNew
    );
    assert_eq!(
        decide(
            &h,
            t,
            flow("192.168.3.5", "192.168.2.10", IPPROTO_TCP, 5432)
        )
        .0,
        Reason::DropVpnNotLocal
    );
}

/// The reference: the first rule, in file order, of the port's groups that
/// matches. Written as plainly as possible, to check the compiler against.
fn reference(cfg: &Config, c: &Compiled, port: usize, dir: Direction, f: &Flow) -> u32 {
    let remote = IpAddr::from(if dir == Direction::Ingress {
        f.src
    } else {
        f.dst
    });
    for (id, r) in c.rules.iter().enumerate() {
        if !cfg.ports[port].groups.contains(&r.group) {
            continue;
        }
        let rule = &cfg.groups[r.group].rules[r.index];
        let eth_ok = (rule.ethertype == Ethertype::IPv4) == (f.family == FAMILY_V4);
        let proto_ok = rule.protocol == Protocol::Any || proto_key(rule.protocol) == f.proto;
        let (lo, hi) = if rule.protocol == Protocol::Any {
            (0, 0xffff)
        } else {
            port_span(rule)
        };
        let port_ok = (lo..=hi).contains(&(f.port as u32));
        let remote_ok = match &rule.remote {
            Remote::Any => true,
            Remote::Prefix(n) => n.contains(&remote),
            Remote::Group(g) => cfg
                .ports
                .iter()
                .any(|p| p.groups.contains(g) && p.addresses.contains(&remote)),
        };
        if rule.direction == dir && eth_ok && proto_ok && port_ok && remote_ok {
            return id as u32 + 1;
        }
    }
    NONE
}

#[test]
fn compiled_lookups_agree_with_the_reference_on_random_policies() {
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let prefixes = [
        "0.0.0.0/0",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.1.2.3/32",
        "172.16.0.0/12",
        "192.168.2.0/24",
        "192.168.2.10/32",
    ];
    let protos = [
        Protocol::Any,
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Number(47),
    ];
    for round in 0..40 {
        let mut cfg = sample();
        for g in &mut cfg.groups {
            g.rules.clear();
            for _ in 0..(next() % 12) {
                let dir = if next() % 2 == 0 {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                let protocol = protos[(next() as usize) % protos.len()];
                let ports = match protocol {
                    Protocol::Tcp | Protocol::Udp if next() % 3 != 0 => {
                        let a = (next() % 3000) as u16 + 1;
                        let b = a + (next() % 600) as u16;
                        Some(PortRange::Ports { min: a, max: b })
                    }
                    Protocol::Icmp if next() % 2 == 0 => Some(PortRange::Icmp {
                        ty: (next() % 12) as u8,
                        code: if next() % 2 == 0 {
                            Some((next() % 4) as u8)
                        } else {
                            None
                        },
                    }),
                    _ => None,
                };
                let remote = match next() % 4 {
                    0 => Remote::Any,
                    1 => Remote::Group((next() % 2) as usize),
                    _ => {
                        let n = net(prefixes[(next() as usize) % prefixes.len()]);
                        if n.prefix_len() == 0 {
                            Remote::Any
                        } else {
                            Remote::Prefix(n)
                        }
                    }
                };
                g.rules.push(rule(dir, protocol, ports, remote));
            }
        }
        let c = compile(&cfg).unwrap();
        let h = HostPolicy::new(&c);
        let remotes = [
            "10.1.2.3",
            "10.1.2.4",
            "10.1.9.9",
            "10.200.0.1",
            "172.20.1.1",
            "8.8.8.8",
            "192.168.2.10",
            "192.168.1.20",
            "192.168.2.99",
        ];
        for _ in 0..400 {
            let port = (next() as usize) % cfg.ports.len();
            let local = cfg.ports[port].addresses[0].to_string();
            let remote = remotes[(next() as usize) % remotes.len()];
            let proto = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][(next() as usize) % 4];
            let pport = if proto == IPPROTO_ICMP {
                (((next() % 12) << 8) | (next() % 4)) as u16
            } else {
                (next() % 3700) as u16
            };
            for dir in [Direction::Ingress, Direction::Egress] {
                let f = if dir == Direction::Ingress {
                    flow(remote, &local, proto, pport)
                } else {
                    flow(&local, remote, proto, pport)
                };
                let set = c
                    .ports
                    .iter()
                    .find(|(a, _)| *a == Addr::from(ip(&local)))
                    .unwrap()
                    .1
                    .set;
                let q = vpcgw_common::abi::HdrKey {
                    set,
                    class: 0,
                    slot: 0,
                    dir: if dir == Direction::Ingress {
                        vpcgw_common::abi::DIR_INGRESS
                    } else {
                        vpcgw_common::abi::DIR_EGRESS
                    },
                    family: f.family,
                    proto: f.proto,
                };
                let remote_addr = if dir == Direction::Ingress {
                    f.src
                } else {
                    f.dst
                };
                let got = vpcgw_common::policy::match_rules(&h, &q, f.port, &remote_addr);
                let want = reference(&cfg, &c, port, dir, &f);
                assert_eq!(got, want, "round {round}: {dir:?} {f:?} port {port}");
            }
        }
    }
}
