//! The XDP program, loaded in the kernel, fed crafted frames with
//! BPF_PROG_TEST_RUN; every frame also runs through the same pipeline on
//! in-memory maps, and the two must agree. Needs root.
//!
//! Every case checks three things: the action, the reason it was counted
//! under (`STATS` in the kernel, the outcome on the host), and that kernel
//! and host did the same ([`Sent::agree`]). Tests are grouped by concern;
//! each loads its own program in its own namespace, so they run in parallel
//! and share no conntrack state.

use std::collections::HashMap;
use std::net::IpAddr;

use vpcgw::frame::{
    Ext, FragSpec, FrameSpec, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TPID_8021AD, TPID_8021Q,
};
use vpcgw_common::Addr;
use vpcgw_common::abi::{
    CT_FIN_BY_REPLY, CT_FROM_LAN, CT_PICKED_UP, CT_REVOKED, CT_SEEN_REPLY, CtVal, FAMILY_V4,
    FAMILY_V6, FragKey, FragVal, MAX_QUEUES, XSK_META_MAGIC, XskMeta, map_names,
};
use vpcgw_common::conntrack::{TcpState, UDP_REPLIED, UDP_UNREPLIED, canonical_key};
use vpcgw_common::pipeline::Action;
use vpcgw_common::stats::Reason;
use vpcgw_common::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use vpcgw_tests::is_root;
use vpcgw_tests::xdp::{If, Loaded, Rig, Sent, XDP_DROP, XDP_PASS, XDP_REDIRECT, parse_config};

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

/// The general test bed: a web port (with a MAC), a database port (without),
/// one VPN connection from the web subnet to two data-center subnets.
const CONFIG: &str = r#"
[gateway]
name = "gw-test"
public_ip = "198.51.100.1"
wan_interface = "wan0"
lan_interfaces = ["lan0", "lan1"]

[vpc]
name = "vpc"
[[vpc.subnets]]
name = "a"
cidr = "192.168.1.0/24"
[[vpc.subnets]]
name = "b"
cidr = "192.168.2.0/24"
[[vpc.subnets]]
name = "a6"
cidr = "fd00:1::/64"

[[security_groups]]
name = "web"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 80
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 22
remote_ip_prefix = "192.168.3.0/24"
[[security_groups.rules]]
direction = "ingress"
protocol = "udp"
port_range_min = 1000
port_range_max = 2000
remote_group = "db"
[[security_groups.rules]]
direction = "ingress"
protocol = "icmp"
port_range_min = 8
[[security_groups.rules]]
direction = "egress"
[[security_groups.rules]]
direction = "ingress"
ethertype = "IPv6"
protocol = "tcp"
port_range_min = 443
[[security_groups.rules]]
direction = "egress"
ethertype = "IPv6"

[[security_groups]]
name = "db"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 5432
remote_group = "web"
[[security_groups.rules]]
direction = "egress"

[[ports]]
name = "web1"
addresses = ["192.168.1.10", "fd00:1::10"]
mac = "02:00:00:00:01:0a"
security_groups = ["web"]
[[ports]]
name = "db1"
addresses = ["192.168.2.10"]
security_groups = ["db"]

[[ike_policies]]
name = "ike"
encryption = "aes-128-gcm-16"
dh_group = 14
[[ipsec_policies]]
name = "esp"
encryption = "aes-128-gcm-16"

[[connections]]
name = "dc1"
peer_address = "198.51.100.2"
local_subnets = ["192.168.1.0/24"]
remote_subnets = ["192.168.3.0/24", "192.168.4.0/24"]
ike_policy = "ike"
ipsec_policy = "esp"
psk_file = "dc1.psk"
"#;

const WEB_MAC: [u8; 6] = [2, 0, 0, 0, 1, 10];

/// One security-group rule field at a time. Rule numbers in the comments are
/// indexes within their group (what [`rule_id`] takes).
const RULES: &str = r#"
[gateway]
name = "gw-rules"
public_ip = "198.51.100.1"
wan_interface = "wan0"
lan_interfaces = ["lan0", "lan1"]

[vpc]
name = "vpc"
[[vpc.subnets]]
name = "a"
cidr = "192.168.1.0/24"
[[vpc.subnets]]
name = "a6"
cidr = "fd00:1::/64"

[[security_groups]]
name = "fields"
# 0: one TCP port
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 80
# 1: a UDP range
[[security_groups.rules]]
direction = "ingress"
protocol = "udp"
port_range_min = 1000
port_range_max = 2000
# 2, 3: overlapping ranges; 3 is covered by 2 and never credited
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 8000
port_range_max = 8100
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 8050
# 4: ICMP type 13 (timestamp), any code
[[security_groups.rules]]
direction = "ingress"
protocol = "icmp"
port_range_min = 13
# 5: ICMP type 3 code 4 (fragmentation needed) only
[[security_groups.rules]]
direction = "ingress"
protocol = "icmp"
port_range_min = 3
port_range_max = 4
# 6: GRE, by number
[[security_groups.rules]]
direction = "ingress"
protocol = 47
# 7: ICMPv6 echo request
[[security_groups.rules]]
direction = "ingress"
ethertype = "IPv6"
protocol = "icmpv6"
port_range_min = 128
# 8: IPv6 TCP 443
[[security_groups.rules]]
direction = "ingress"
ethertype = "IPv6"
protocol = "tcp"
port_range_min = 443
# 9, 10, 11: nested prefixes, each admitting one more port
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 3000
remote_ip_prefix = "10.0.0.0/8"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 3000
port_range_max = 3001
remote_ip_prefix = "10.1.0.0/16"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 3000
port_range_max = 3002
remote_ip_prefix = "10.1.2.0/24"
# 12, 13: remote groups
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 5432
remote_group = "clients"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 5433
remote_group = "g2"
# 14: any protocol from one prefix
[[security_groups.rules]]
direction = "ingress"
protocol = "any"
remote_ip_prefix = "203.0.113.128/25"
# 15: egress, IPv4 TCP 7001 only
[[security_groups.rules]]
direction = "egress"
protocol = "tcp"
port_range_min = 7001
# 16: egress, IPv6 UDP 53 only
[[security_groups.rules]]
direction = "egress"
ethertype = "IPv6"
protocol = "udp"
port_range_min = 53

# No ingress rule at all: admits nothing.
[[security_groups]]
name = "clients"
[[security_groups.rules]]
direction = "egress"

[[security_groups]]
name = "g1"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 1111
[[security_groups.rules]]
direction = "egress"

[[security_groups]]
name = "g2"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 2222

[[ports]]
name = "alpha"
addresses = ["192.168.1.10", "fd00:1::10"]
mac = "02:00:00:00:01:0a"
security_groups = ["fields"]
[[ports]]
name = "client"
addresses = ["192.168.1.20"]
mac = "02:00:00:00:01:14"
security_groups = ["clients"]
[[ports]]
name = "multi"
addresses = ["192.168.1.30"]
mac = "02:00:00:00:01:1e"
security_groups = ["g1", "g2"]
"#;

const ALPHA_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x0a];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x14];
const MULTI_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x1e];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// TCP PSH (data segments).
const TCP_PSH: u8 = 0x08;

const PASS: Action = Action::Pass;
const DROP: Action = Action::Drop;
const VPN: Action = Action::Redirect;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (BPF and network namespaces)");
        return true;
    }
    false
}

/// Load `config` in a fresh namespace and run `f` there (skipped without root).
fn run(config: &str, f: impl FnOnce(&mut Loaded) -> anyhow::Result<()> + Send + 'static) {
    if skip() {
        return;
    }
    let rig = Rig::new().unwrap();
    rig.with(config, f).unwrap();
}

/// What a frame did, without its bytes (for assertion messages).
fn show(s: &Sent) -> String {
    format!(
        "kernel {} {:?}, host {:?} {:?} (conn {}, xsk {}), {} bytes back",
        match s.kernel_action {
            XDP_DROP => "DROP",
            XDP_REDIRECT => "REDIRECT",
            XDP_PASS => "PASS",
            _ => "?",
        },
        s.kernel_reason,
        s.host,
        s.host_reason,
        s.host_outcome.conn,
        s.host_outcome.xsk_index,
        s.data.len()
    )
}

/// Send and check kernel == host == expected.
#[track_caller]
fn expect(l: &mut Loaded, on: If, frame: &[u8], action: Action, reason: Reason) -> Sent {
    let s = l.send(on, frame).unwrap();
    assert!(s.agree(), "kernel and host disagree: {}", show(&s));
    assert_eq!(s.host_reason, reason, "{}", show(&s));
    assert_eq!(s.host, action, "{}", show(&s));
    s
}

/// [`expect`] with a label, for table-driven cases.
#[track_caller]
fn expect_case(l: &mut Loaded, what: &str, on: If, frame: &[u8], action: Action, reason: Reason) {
    let s = l.send(on, frame).unwrap();
    assert!(s.agree(), "{what}: kernel and host disagree: {}", show(&s));
    assert_eq!(
        (s.host, s.host_reason),
        (action, reason),
        "{what}: {}",
        show(&s)
    );
}

/// The expected outcome of a drop, for tables.
fn dropped(r: Reason) -> (Action, Reason) {
    (DROP, r)
}

/// Rule id (as in `RULE_HITS`) of rule `index` of group `group`.
fn rule_id(l: &Loaded, group: &str, index: usize) -> u32 {
    let g = l
        .cfg
        .groups
        .iter()
        .position(|g| g.name == group)
        .unwrap_or_else(|| panic!("no group {group}"));
    l.compiled
        .rules
        .iter()
        .position(|r| r.group == g && r.index == index)
        .unwrap_or_else(|| panic!("no rule {group}[{index}]")) as u32
}

/// Rule hits, kernel and host, as (rule id -> flows).
fn hits(l: &Loaded) -> (HashMap<u32, u64>, HashMap<u32, u64>) {
    let kernel =
        l.dp.counters()
            .unwrap()
            .rule_hits
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(i, n)| (i as u32, *n))
            .collect();
    (kernel, l.host.rule_hits.clone())
}

/// Rules whose count moved between two snapshots.
fn moved(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> Vec<(u32, u64)> {
    let mut v: Vec<(u32, u64)> = after
        .iter()
        .filter_map(|(r, n)| {
            let d = n - before.get(r).copied().unwrap_or(0);
            (d != 0).then_some((*r, d))
        })
        .collect();
    v.sort_unstable();
    v
}

/// Send, check the outcome, and check that exactly the rules `credited`
/// each counted one more flow, in the kernel and on the host.
#[track_caller]
fn expect_credit(
    l: &mut Loaded,
    what: &str,
    on: If,
    frame: &[u8],
    want: (Action, Reason),
    credited: &[u32],
) {
    let (kb, hb) = hits(l);
    expect_case(l, what, on, frame, want.0, want.1);
    let (ka, ha) = hits(l);
    let mut want_hits: Vec<(u32, u64)> = credited.iter().map(|r| (*r, 1)).collect();
    want_hits.sort_unstable();
    assert_eq!(moved(&kb, &ka), want_hits, "{what}: kernel rule hits");
    assert_eq!(moved(&hb, &ha), want_hits, "{what}: host rule hits");
}

/// The conntrack entry of a flow (given by any of its packets), from the
/// kernel; the host must hold the same entry (clock aside), or neither.
#[track_caller]
fn ct(l: &Loaded, proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<CtVal> {
    let family = if src.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 };
    let (key, _) = canonical_key(
        family,
        proto,
        Addr::from(src),
        Addr::from(dst),
        sport,
        dport,
    );
    let kernel =
        l.dp.ct_entries()
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v);
    let host = l.host.ct.get(&key).copied();
    let strip = |v: Option<CtVal>| v.map(|v| CtVal { last_seen: 0, ..v });
    assert_eq!(
        strip(kernel),
        strip(host),
        "conntrack entry {src}:{sport} -> {dst}:{dport} (proto {proto}): kernel vs host"
    );
    kernel
}

/// LAN frames from a port carry its MAC.
fn from_port(spec: FrameSpec, mac: [u8; 6]) -> Vec<u8> {
    spec.with_src_mac(mac).build()
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> FrameSpec {
    FrameSpec::tcp(ip(src), ip(dst), sport, dport, flags)
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> FrameSpec {
    FrameSpec::udp(ip(src), ip(dst), sport, dport)
}

fn icmp(src: &str, dst: &str, ty: u8, code: u8) -> FrameSpec {
    FrameSpec::new(
        ip(src),
        ip(dst),
        L4::Icmp {
            ty,
            code,
            rest: [0; 4],
            quote: Vec::new(),
        },
    )
}

fn echo(src: &str, dst: &str, request: bool, id: u16) -> FrameSpec {
    let v6 = ip(src).is_ipv6();
    FrameSpec::new(ip(src), ip(dst), L4::icmp_echo(request, v6, id))
}

fn raw(src: &str, dst: &str, proto: u8) -> FrameSpec {
    FrameSpec::new(ip(src), ip(dst), L4::Raw { proto }).with_payload(16)
}

/// An ICMP error from `src` to `dst` quoting `quoted`'s IP packet. `rest`
/// is the word after the checksum (the MTU for frag-needed/packet-too-big).
fn icmp_error(src: &str, dst: &str, ty: u8, code: u8, mtu: u32, quoted: &FrameSpec) -> FrameSpec {
    FrameSpec::new(
        ip(src),
        ip(dst),
        L4::Icmp {
            ty,
            code,
            rest: mtu.to_be_bytes(),
            quote: quoted.ip_packet(),
        },
    )
}

fn frag(id: u32, offset: u16, more: bool) -> FragSpec {
    FragSpec { id, offset, more }
}

// ---------------------------------------------------------------------------
// 0. Smoke: the basics across the board
// ---------------------------------------------------------------------------

#[test]
fn stateful_policy_spoofing_vpn_and_wan() {
    run(CONFIG, |l| {
        let web = ip("192.168.1.10");
        let inet = ip("203.0.113.5");
        // New flow in, allowed by rule 0; its next packet and the reply are established.
        let syn = FrameSpec::tcp(inet, web, 40000, 80, TCP_SYN).build();
        expect(l, If::Wan, &syn, PASS, Reason::PassNew);
        expect(l, If::Wan, &syn, PASS, Reason::PassEstablished);
        let synack = FrameSpec::tcp(web, inet, 80, 40000, TCP_SYN | TCP_ACK)
            .with_src_mac(WEB_MAC)
            .build();
        expect(l, If::Lan0, &synack, PASS, Reason::PassEstablished);
        // Port 22 only from the DC subnet (which can never arrive in clear on the WAN).
        let ssh = FrameSpec::tcp(inet, web, 40001, 22, TCP_SYN).build();
        expect(l, If::Wan, &ssh, DROP, Reason::DropPolicyIngress);
        let ssh_dc = FrameSpec::tcp(ip("192.168.3.7"), web, 40001, 22, TCP_SYN).build();
        expect(l, If::Wan, &ssh_dc, DROP, Reason::DropWanSpoofed);
        // Anti-spoofing on the LAN: unknown source, and a known source with another MAC.
        let spoof = FrameSpec::tcp(ip("192.168.1.99"), inet, 1, 80, TCP_SYN).build();
        expect(l, If::Lan0, &spoof, DROP, Reason::DropSpoofed);
        let wrong_mac = FrameSpec::tcp(web, inet, 1, 80, TCP_SYN).build();
        expect(l, If::Lan0, &wrong_mac, DROP, Reason::DropSpoofed);
        // VPN classification: web subnet to a DC subnet goes to the crypto path.
        let to_dc = FrameSpec::tcp(web, ip("192.168.4.20"), 41000, 443, TCP_SYN)
            .with_src_mac(WEB_MAC)
            .build();
        expect(l, If::Lan0, &to_dc, VPN, Reason::VpnRedirect);
        // The db subnet is not in dc1's local subnets: never leaves in clear.
        let db_to_dc =
            FrameSpec::tcp(ip("192.168.2.10"), ip("192.168.3.1"), 1, 443, TCP_SYN).build();
        expect(l, If::Lan1, &db_to_dc, DROP, Reason::DropVpnNotLocal);
        // remote_group: web may reach db:5432.
        let pg = FrameSpec::tcp(web, ip("192.168.2.10"), 42000, 5432, TCP_SYN)
            .with_src_mac(WEB_MAC)
            .build();
        expect(l, If::Lan0, &pg, PASS, Reason::PassNew);
        // WAN peer filtering.
        let ike_peer = FrameSpec::udp(ip("198.51.100.2"), ip("198.51.100.1"), 500, 500).build();
        expect(l, If::Wan, &ike_peer, PASS, Reason::PassIke);
        let ike_other = FrameSpec::udp(ip("198.51.100.7"), ip("198.51.100.1"), 500, 4500).build();
        expect(l, If::Wan, &ike_other, DROP, Reason::DropIkeNotPeer);
        let esp = FrameSpec::new(
            ip("198.51.100.9"),
            ip("198.51.100.1"),
            L4::Raw { proto: 50 },
        )
        .with_payload(40)
        .build();
        expect(l, If::Wan, &esp, DROP, Reason::DropEspNotPeer);
        // VLAN tags and IPv6 extension headers reach the same decision.
        let tagged = FrameSpec::tcp(inet, web, 40100, 80, TCP_SYN)
            .with_vlan(TPID_8021AD, 100)
            .with_vlan(TPID_8021Q, 200)
            .build();
        expect(l, If::Wan, &tagged, PASS, Reason::PassNew);
        let v6 = FrameSpec::tcp(ip("2001:db8::5"), ip("fd00:1::10"), 40200, 443, TCP_SYN)
            .with_ext(Ext::HopByHop)
            .with_ext(Ext::DestOpts)
            .build();
        expect(l, If::Wan, &v6, PASS, Reason::PassNew);
        // Fragments: the first is decided, the rest follow; orphans are dropped.
        let first = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(frag(77, 0, true))
            .with_payload(64)
            .build();
        expect(l, If::Lan1, &first, PASS, Reason::PassNew);
        let later = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(frag(77, 9, false))
            .build();
        expect(l, If::Lan1, &later, PASS, Reason::PassFragment);
        let orphan = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(frag(78, 9, false))
            .build();
        expect(l, If::Lan1, &orphan, DROP, Reason::DropFragmentNoFirst);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 1. Rule fields
// ---------------------------------------------------------------------------

const ALPHA: &str = "192.168.1.10";
const ALPHA6: &str = "fd00:1::10";
const CLIENT: &str = "192.168.1.20";
const MULTI: &str = "192.168.1.30";
const INET: &str = "203.0.113.5";
const INET6: &str = "2001:db8::5";

/// Direction is seen from the port: ingress rules admit flows to it, egress
/// rules flows from it; between two ports both must agree.
#[test]
fn rule_direction_ingress_egress_and_port_to_port() {
    run(RULES, |l| {
        let r_http = rule_id(l, "fields", 0);
        let r_egress = rule_id(l, "fields", 15);
        let r_client_egress = rule_id(l, "clients", 0);
        let r_multi_1111 = rule_id(l, "g1", 0);
        let r_multi_egress = rule_id(l, "g1", 1);
        let ingress_denied = dropped(Reason::DropPolicyIngress);
        let egress_denied = dropped(Reason::DropPolicyEgress);
        let new = (PASS, Reason::PassNew);

        // From the WAN: ingress rules only.
        let f = tcp(INET, 40000, ALPHA, 80, TCP_SYN).build();
        expect_credit(
            l,
            "WAN -> alpha:80 (ingress rule)",
            If::Wan,
            &f,
            new,
            &[r_http],
        );
        let f = tcp(INET, 40001, ALPHA, 7001, TCP_SYN).build();
        expect_credit(
            l,
            "WAN -> alpha:7001 (only an egress rule)",
            If::Wan,
            &f,
            ingress_denied,
            &[],
        );

        // From the port: egress rules only (the WAN side has no rules).
        let f = from_port(tcp(ALPHA, 40002, INET, 7001, TCP_SYN), ALPHA_MAC);
        expect_credit(
            l,
            "alpha -> WAN:7001 (egress rule)",
            If::Lan0,
            &f,
            new,
            &[r_egress],
        );
        let f = from_port(tcp(ALPHA, 40003, INET, 80, TCP_SYN), ALPHA_MAC);
        expect_credit(
            l,
            "alpha -> WAN:80 (only an ingress rule)",
            If::Lan0,
            &f,
            egress_denied,
            &[],
        );

        // Port to port: the source's egress, then the destination's ingress;
        // both rules are credited with the flow.
        let f = from_port(tcp(CLIENT, 40004, ALPHA, 80, TCP_SYN), CLIENT_MAC);
        expect_credit(
            l,
            "client -> alpha:80",
            If::Lan1,
            &f,
            new,
            &[r_client_egress, r_http],
        );
        let f = from_port(tcp(ALPHA, 40005, CLIENT, 7001, TCP_SYN), ALPHA_MAC);
        expect_credit(
            l,
            "alpha -> client:7001 (client admits nothing)",
            If::Lan0,
            &f,
            ingress_denied,
            &[],
        );
        let f = from_port(tcp(ALPHA, 40006, MULTI, 1111, TCP_SYN), ALPHA_MAC);
        expect_credit(
            l,
            "alpha -> multi:1111 (alpha's egress)",
            If::Lan0,
            &f,
            egress_denied,
            &[],
        );
        let f = from_port(tcp(MULTI, 40007, ALPHA, 7001, TCP_SYN), MULTI_MAC);
        expect_credit(
            l,
            "multi -> alpha:7001 (alpha's ingress)",
            If::Lan1,
            &f,
            ingress_denied,
            &[],
        );
        let f = from_port(tcp(CLIENT, 40008, MULTI, 1111, TCP_SYN), CLIENT_MAC);
        expect_credit(
            l,
            "client -> multi:1111",
            If::Lan1,
            &f,
            new,
            &[r_client_egress, r_multi_1111],
        );
        let f = from_port(tcp(MULTI, 40009, INET, 9, TCP_SYN), MULTI_MAC);
        expect_credit(
            l,
            "multi -> WAN (g1 egress)",
            If::Lan1,
            &f,
            new,
            &[r_multi_egress],
        );
        Ok(())
    });
}

/// An IPv4 rule admits no IPv6 and the other way round, in both directions.
#[test]
fn rule_ethertype_separates_ipv4_and_ipv6() {
    run(RULES, |l| {
        let r_http = rule_id(l, "fields", 0);
        let r_https6 = rule_id(l, "fields", 8);
        let r_egress = rule_id(l, "fields", 15);
        let r_dns6 = rule_id(l, "fields", 16);
        let cases = [
            (
                "v4 -> alpha:80",
                If::Wan,
                tcp(INET, 1, ALPHA, 80, TCP_SYN).build(),
                (PASS, Reason::PassNew),
                Some(r_http),
            ),
            (
                "v6 -> alpha:80 (IPv4 rule)",
                If::Wan,
                tcp(INET6, 2, ALPHA6, 80, TCP_SYN).build(),
                dropped(Reason::DropPolicyIngress),
                None,
            ),
            (
                "v6 -> alpha:443",
                If::Wan,
                tcp(INET6, 3, ALPHA6, 443, TCP_SYN).build(),
                (PASS, Reason::PassNew),
                Some(r_https6),
            ),
            (
                "v4 -> alpha:443 (IPv6 rule)",
                If::Wan,
                tcp(INET, 4, ALPHA, 443, TCP_SYN).build(),
                dropped(Reason::DropPolicyIngress),
                None,
            ),
            (
                "alpha v4 -> :7001",
                If::Lan0,
                from_port(tcp(ALPHA, 5, INET, 7001, TCP_SYN), ALPHA_MAC),
                (PASS, Reason::PassNew),
                Some(r_egress),
            ),
            (
                "alpha v6 -> :7001 (IPv4 rule)",
                If::Lan0,
                from_port(tcp(ALPHA6, 6, INET6, 7001, TCP_SYN), ALPHA_MAC),
                dropped(Reason::DropPolicyEgress),
                None,
            ),
            (
                "alpha v6 -> udp 53",
                If::Lan0,
                from_port(udp(ALPHA6, 7, INET6, 53), ALPHA_MAC),
                (PASS, Reason::PassNew),
                Some(r_dns6),
            ),
            (
                "alpha v4 -> udp 53 (IPv6 rule)",
                If::Lan0,
                from_port(udp(ALPHA, 8, INET, 53), ALPHA_MAC),
                dropped(Reason::DropPolicyEgress),
                None,
            ),
            // "any protocol" (rule 14) is IPv4 too.
            (
                "v6 GRE from anywhere (no IPv6 rule)",
                If::Wan,
                raw("2001:db8::99", ALPHA6, 47).build(),
                dropped(Reason::DropPolicyIngress),
                None,
            ),
        ];
        for (what, on, frame, want, credit) in cases {
            let credited: Vec<u32> = credit.into_iter().collect();
            expect_credit(l, what, on, &frame, want, &credited);
        }
        Ok(())
    });
}

/// Protocol: tcp, udp, icmp, icmpv6, a number, and "any" (which folds into
/// every protocol but still loses to an earlier specific rule).
#[test]
fn rule_protocols() {
    run(RULES, |l| {
        let r = |l: &Loaded, i| rule_id(l, "fields", i);
        let (r_tcp, r_udp, r_icmp, r_gre, r_icmp6, r_any) =
            (r(l, 0), r(l, 1), r(l, 4), r(l, 6), r(l, 7), r(l, 14));
        let new = (PASS, Reason::PassNew);
        let denied = dropped(Reason::DropPolicyIngress);
        let any_src = "203.0.113.200"; // inside rule 14's 203.0.113.128/25
        let cases = [
            ("tcp 80", tcp(INET, 1, ALPHA, 80, TCP_SYN), new, Some(r_tcp)),
            ("udp 80 (tcp rule)", udp(INET, 2, ALPHA, 80), denied, None),
            ("udp 1500", udp(INET, 3, ALPHA, 1500), new, Some(r_udp)),
            (
                "tcp 1500 (udp rule)",
                tcp(INET, 4, ALPHA, 1500, TCP_SYN),
                denied,
                None,
            ),
            ("icmp 13", icmp(INET, ALPHA, 13, 0), new, Some(r_icmp)),
            (
                "icmpv6 128",
                echo(INET6, ALPHA6, true, 5),
                new,
                Some(r_icmp6),
            ),
            ("gre (47)", raw(INET, ALPHA, 47), new, Some(r_gre)),
            ("proto 48", raw(INET, ALPHA, 48), denied, None),
            ("sctp (132)", raw(INET, ALPHA, 132), denied, None),
            // Rule 14: any protocol from 203.0.113.128/25.
            ("any: sctp", raw(any_src, ALPHA, 132), new, Some(r_any)),
            ("any: udp 9", udp(any_src, 6, ALPHA, 9), new, Some(r_any)),
            (
                "any: icmp echo",
                echo(any_src, ALPHA, true, 7),
                new,
                Some(r_any),
            ),
            // Rules earlier in the file own what they cover.
            (
                "any: tcp 80 (rule 0 first)",
                tcp(any_src, 8, ALPHA, 80, TCP_SYN),
                new,
                Some(r_tcp),
            ),
            (
                "any: udp 1000 (rule 1 first)",
                udp(any_src, 9, ALPHA, 1000),
                new,
                Some(r_udp),
            ),
            (
                "any: gre (rule 6 first)",
                raw(any_src, ALPHA, 47),
                new,
                Some(r_gre),
            ),
        ];
        for (what, spec, want, credit) in cases {
            let credited: Vec<u32> = credit.into_iter().collect();
            expect_credit(l, what, If::Wan, &spec.build(), want, &credited);
        }
        Ok(())
    });
}

/// Port ranges at their edges: min-1, min, max, max+1; overlapping ranges
/// credit the first rule in file order.
#[test]
fn rule_port_range_edges() {
    run(RULES, |l| {
        let (r_http, r_udp, r_8000) = (
            rule_id(l, "fields", 0),
            rule_id(l, "fields", 1),
            rule_id(l, "fields", 2),
        );
        let cases: &[(u8, u16, Option<u32>)] = &[
            (IPPROTO_TCP, 79, None),
            (IPPROTO_TCP, 80, Some(r_http)),
            (IPPROTO_TCP, 81, None),
            (IPPROTO_UDP, 999, None),
            (IPPROTO_UDP, 1000, Some(r_udp)),
            (IPPROTO_UDP, 2000, Some(r_udp)),
            (IPPROTO_UDP, 2001, None),
            (IPPROTO_TCP, 7999, None),
            (IPPROTO_TCP, 8000, Some(r_8000)),
            // Rule 3 admits 8050 too, but rule 2 comes first.
            (IPPROTO_TCP, 8050, Some(r_8000)),
            (IPPROTO_TCP, 8100, Some(r_8000)),
            (IPPROTO_TCP, 8101, None),
            (IPPROTO_TCP, 1, None),
            (IPPROTO_TCP, 65535, None),
            (IPPROTO_UDP, 0, None),
        ];
        for (i, &(proto, port, credit)) in cases.iter().enumerate() {
            let sport = 20000 + i as u16;
            let spec = if proto == IPPROTO_TCP {
                tcp(INET, sport, ALPHA, port, TCP_SYN)
            } else {
                udp(INET, sport, ALPHA, port)
            };
            let want = match credit {
                Some(_) => (PASS, Reason::PassNew),
                None => dropped(Reason::DropPolicyIngress),
            };
            let credited: Vec<u32> = credit.into_iter().collect();
            let what = format!("proto {proto} port {port}");
            expect_credit(l, &what, If::Wan, &spec.build(), want, &credited);
        }
        Ok(())
    });
}

/// For ICMP, port_range_min is the type and port_range_max the code.
#[test]
fn rule_icmp_type_and_code() {
    run(RULES, |l| {
        let (r_ts, r_fragneeded, r_echo6) = (
            rule_id(l, "fields", 4),
            rule_id(l, "fields", 5),
            rule_id(l, "fields", 7),
        );
        // An error quoting a packet of no tracked flow is decided by the
        // policy like any ICMP message.
        let quoted = tcp(ALPHA, 33000, INET, 443, TCP_ACK);
        let unreach = |code| icmp_error("203.0.113.1", ALPHA, 3, code, 1400, &quoted);
        let new = (PASS, Reason::PassNew);
        let denied = dropped(Reason::DropPolicyIngress);
        let cases = [
            ("type 13 code 0", icmp(INET, ALPHA, 13, 0), new, Some(r_ts)),
            (
                "type 13 code 7 (any code)",
                icmp(INET, ALPHA, 13, 7),
                new,
                Some(r_ts),
            ),
            ("type 14", icmp(INET, ALPHA, 14, 0), denied, None),
            ("type 8 (no rule)", echo(INET, ALPHA, true, 1), denied, None),
            ("type 3 code 4", unreach(4), new, Some(r_fragneeded)),
            ("type 3 code 3", unreach(3), denied, None),
            ("type 3 code 5", unreach(5), denied, None),
            (
                "icmpv6 128 code 0",
                echo(INET6, ALPHA6, true, 2),
                new,
                Some(r_echo6),
            ),
            (
                "icmpv6 128 code 1 (any code)",
                icmp(INET6, ALPHA6, 128, 1),
                new,
                Some(r_echo6),
            ),
            (
                "icmpv6 129 (echo reply)",
                echo(INET6, ALPHA6, false, 3),
                denied,
                None,
            ),
            // Type 13 is an ICMP type number, not an ICMPv6 one.
            ("icmpv6 13", icmp(INET6, ALPHA6, 13, 0), denied, None),
        ];
        for (what, spec, want, credit) in cases {
            let credited: Vec<u32> = credit.into_iter().collect();
            expect_credit(l, what, If::Wan, &spec.build(), want, &credited);
        }
        Ok(())
    });
}

/// remote_ip_prefix: inside and outside, at the edges, and nested prefixes
/// (10/8 admits 3000, 10.1/16 also 3001, 10.1.2/24 also 3002).
#[test]
fn rule_remote_ip_prefix_nested() {
    run(RULES, |l| {
        let (r8, r16, r24) = (
            rule_id(l, "fields", 9),
            rule_id(l, "fields", 10),
            rule_id(l, "fields", 11),
        );
        let cases: &[(&str, u16, Option<u32>)] = &[
            ("10.1.2.5", 3000, Some(r8)),
            ("10.1.2.5", 3001, Some(r16)),
            ("10.1.2.5", 3002, Some(r24)),
            ("10.1.2.5", 3003, None),
            ("10.1.2.0", 3002, Some(r24)),
            ("10.1.2.255", 3002, Some(r24)),
            ("10.1.1.255", 3002, None),
            ("10.1.3.0", 3002, None),
            ("10.1.3.5", 3000, Some(r8)),
            ("10.1.3.5", 3001, Some(r16)),
            ("10.1.255.255", 3001, Some(r16)),
            ("10.2.0.0", 3001, None),
            ("10.0.255.255", 3001, None),
            ("10.2.0.5", 3000, Some(r8)),
            ("10.255.255.255", 3000, Some(r8)),
            ("10.0.0.0", 3000, Some(r8)),
            ("9.255.255.255", 3000, None),
            ("11.0.0.0", 3000, None),
            (INET, 3000, None),
        ];
        for (i, &(src, port, credit)) in cases.iter().enumerate() {
            let spec = tcp(src, 21000 + i as u16, ALPHA, port, TCP_SYN);
            let want = match credit {
                Some(_) => (PASS, Reason::PassNew),
                None => dropped(Reason::DropPolicyIngress),
            };
            let credited: Vec<u32> = credit.into_iter().collect();
            let what = format!("{src} -> :{port}");
            expect_credit(l, &what, If::Wan, &spec.build(), want, &credited);
        }
        Ok(())
    });
}

/// remote_group matches the addresses of the group's ports (a port in two
/// groups is in both); a port in two groups gets the union of their rules.
#[test]
fn rule_remote_group_and_group_union() {
    run(RULES, |l| {
        let r_clients = rule_id(l, "fields", 12);
        let r_g2 = rule_id(l, "fields", 13);
        let r_client_egress = rule_id(l, "clients", 0);
        let r_g1_egress = rule_id(l, "g1", 1);
        let r_g1_1111 = rule_id(l, "g1", 0);
        let r_g2_2222 = rule_id(l, "g2", 0);
        let new = (PASS, Reason::PassNew);
        let denied = dropped(Reason::DropPolicyIngress);
        let cases = [
            (
                "client (clients) -> alpha:5432",
                If::Lan1,
                from_port(tcp(CLIENT, 1, ALPHA, 5432, TCP_SYN), CLIENT_MAC),
                new,
                vec![r_client_egress, r_clients],
            ),
            (
                "client (clients) -> alpha:5433 (needs g2)",
                If::Lan1,
                from_port(tcp(CLIENT, 2, ALPHA, 5433, TCP_SYN), CLIENT_MAC),
                denied,
                vec![],
            ),
            (
                "multi (g1+g2) -> alpha:5433",
                If::Lan1,
                from_port(tcp(MULTI, 3, ALPHA, 5433, TCP_SYN), MULTI_MAC),
                new,
                vec![r_g1_egress, r_g2],
            ),
            (
                "multi (g1+g2) -> alpha:5432 (needs clients)",
                If::Lan1,
                from_port(tcp(MULTI, 4, ALPHA, 5432, TCP_SYN), MULTI_MAC),
                denied,
                vec![],
            ),
            (
                "WAN -> alpha:5432 (no group)",
                If::Wan,
                tcp(INET, 5, ALPHA, 5432, TCP_SYN).build(),
                denied,
                vec![],
            ),
            // A spoofed source with a member's address is stopped before the policy.
            (
                "WAN claiming client's address -> alpha:5432",
                If::Wan,
                tcp(CLIENT, 6, ALPHA, 5432, TCP_SYN).build(),
                dropped(Reason::DropWanSpoofed),
                vec![],
            ),
            // Union: g1 admits 1111, g2 admits 2222.
            (
                "WAN -> multi:1111 (g1)",
                If::Wan,
                tcp(INET, 7, MULTI, 1111, TCP_SYN).build(),
                new,
                vec![r_g1_1111],
            ),
            (
                "WAN -> multi:2222 (g2)",
                If::Wan,
                tcp(INET, 8, MULTI, 2222, TCP_SYN).build(),
                new,
                vec![r_g2_2222],
            ),
            (
                "WAN -> multi:3333 (neither)",
                If::Wan,
                tcp(INET, 9, MULTI, 3333, TCP_SYN).build(),
                denied,
                vec![],
            ),
        ];
        for (what, on, frame, want, credited) in cases {
            expect_credit(l, what, on, &frame, want, &credited);
        }
        Ok(())
    });
}

/// A group without ingress rules admits nothing in, whatever the protocol;
/// its ports still open flows and get their replies.
#[test]
fn rule_group_without_ingress_rules_admits_nothing() {
    run(RULES, |l| {
        let denied = dropped(Reason::DropPolicyIngress);
        let cases = [
            ("tcp 80", If::Wan, tcp(INET, 1, CLIENT, 80, TCP_SYN).build()),
            (
                "tcp ack (pickup)",
                If::Wan,
                tcp(INET, 2, CLIENT, 80, TCP_ACK).build(),
            ),
            ("udp 53", If::Wan, udp(INET, 3, CLIENT, 53).build()),
            ("icmp echo", If::Wan, echo(INET, CLIENT, true, 4).build()),
            ("gre", If::Wan, raw(INET, CLIENT, 47).build()),
            (
                "sctp from rule 14's prefix",
                If::Wan,
                raw("203.0.113.200", CLIENT, 132).build(),
            ),
            (
                "from alpha (egress ok)",
                If::Lan0,
                from_port(tcp(ALPHA, 5, CLIENT, 7001, TCP_SYN), ALPHA_MAC),
            ),
        ];
        for (what, on, frame) in cases {
            expect_credit(l, what, on, &frame, denied, &[]);
        }
        let out = from_port(tcp(CLIENT, 6, INET, 80, TCP_SYN), CLIENT_MAC);
        expect(l, If::Lan1, &out, PASS, Reason::PassNew);
        let reply = tcp(INET, 80, CLIENT, 6, TCP_SYN | TCP_ACK).build();
        expect(l, If::Wan, &reply, PASS, Reason::PassEstablished);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 2, 3. Stateful replies and TCP state
// ---------------------------------------------------------------------------

const WEB: &str = "192.168.1.10";
const WEB6: &str = "fd00:1::10";
const DB: &str = "192.168.2.10";
const GW: &str = "198.51.100.1";
const PEER: &str = "198.51.100.2";

/// The TCP state of a flow's entry (kernel and host agree), or None.
#[track_caller]
fn tcp_state(l: &Loaded, src: &str, sport: u16, dst: &str, dport: u16) -> Option<TcpState> {
    ct(l, IPPROTO_TCP, ip(src), sport, ip(dst), dport)
        .map(|v| TcpState::from_u8(v.state).unwrap_or_else(|| panic!("bad TCP state {}", v.state)))
}

/// One TCP segment of the flow INET:40000 <-> WEB:80, from either side.
fn http(from_client: bool, flags: u8, payload: usize) -> (If, Vec<u8>) {
    if from_client {
        (
            If::Wan,
            tcp(INET, 40000, WEB, 80, flags)
                .with_payload(payload)
                .build(),
        )
    } else {
        let f = tcp(WEB, 80, INET, 40000, flags).with_payload(payload);
        (If::Lan0, from_port(f, WEB_MAC))
    }
}

/// SYN in, SYN-ACK out, ACK in, data both ways: the first packet is decided
/// by the policy, the rest take the established fast path.
#[test]
fn stateful_tcp_handshake_and_data() {
    run(CONFIG, |l| {
        let state = |l: &Loaded| tcp_state(l, INET, 40000, WEB, 80);
        assert_eq!(state(l), None);
        let steps: &[(bool, u8, usize, Reason, TcpState)] = &[
            (true, TCP_SYN, 0, Reason::PassNew, TcpState::SynSent),
            (
                false,
                TCP_SYN | TCP_ACK,
                0,
                Reason::PassEstablished,
                TcpState::SynRecv,
            ),
            (
                true,
                TCP_ACK,
                0,
                Reason::PassEstablished,
                TcpState::Established,
            ),
            (
                true,
                TCP_ACK | TCP_PSH,
                100,
                Reason::PassEstablished,
                TcpState::Established,
            ),
            (
                false,
                TCP_ACK | TCP_PSH,
                1000,
                Reason::PassEstablished,
                TcpState::Established,
            ),
            (
                false,
                TCP_ACK,
                0,
                Reason::PassEstablished,
                TcpState::Established,
            ),
        ];
        for (i, &(client, flags, payload, reason, want)) in steps.iter().enumerate() {
            let (on, f) = http(client, flags, payload);
            expect_case(l, &format!("step {i}"), on, &f, PASS, reason);
            assert_eq!(state(l), Some(want), "step {i}");
        }
        let v = ct(l, IPPROTO_TCP, ip(INET), 40000, ip(WEB), 80).unwrap();
        assert_eq!(v.generation, l.dp.generation());
        assert_eq!(v.rule, rule_id(l, "web", 0) + 1, "credited rule (+1)");
        assert_eq!(v.conn, 0, "not a VPN flow");
        assert_eq!(v.orig_l4, 80);
        assert_ne!(v.flags & CT_SEEN_REPLY, 0);
        assert_eq!(v.flags & (CT_FROM_LAN | CT_PICKED_UP), 0);
        // The same ports toward another destination port are another flow.
        let other = tcp(INET, 40000, WEB, 81, TCP_ACK).build();
        expect(l, If::Wan, &other, DROP, Reason::DropPolicyIngress);
        // A segment without SYN may pick a flow up mid-stream (as Linux
        // does), subject to the same rules.
        let pickup = tcp(INET, 40001, WEB, 80, TCP_ACK).build();
        expect(l, If::Wan, &pickup, PASS, Reason::PassNew);
        let v = ct(l, IPPROTO_TCP, ip(INET), 40001, ip(WEB), 80).unwrap();
        assert_eq!(v.state, TcpState::Established as u8);
        assert_ne!(v.flags & CT_PICKED_UP, 0);
        // A flow opened from the LAN is marked so.
        let out = from_port(tcp(WEB, 50000, INET, 443, TCP_SYN), WEB_MAC);
        expect(l, If::Lan0, &out, PASS, Reason::PassNew);
        let v = ct(l, IPPROTO_TCP, ip(WEB), 50000, ip(INET), 443).unwrap();
        assert_ne!(v.flags & CT_FROM_LAN, 0);
        assert_eq!(v.rule, rule_id(l, "web", 4) + 1, "web's egress rule");
        let back = tcp(INET, 443, WEB, 50000, TCP_SYN | TCP_ACK).build();
        expect(l, If::Wan, &back, PASS, Reason::PassEstablished);
        Ok(())
    });
}

/// UDP replies pass only once the first packet has opened the flow.
#[test]
fn stateful_udp_reply_only_after_first_packet() {
    run(CONFIG, |l| {
        let reply = udp(INET, 53, WEB, 5353).build();
        expect(l, If::Wan, &reply, DROP, Reason::DropPolicyIngress);
        assert!(ct(l, IPPROTO_UDP, ip(INET), 53, ip(WEB), 5353).is_none());
        let query = from_port(udp(WEB, 5353, INET, 53), WEB_MAC);
        expect(l, If::Lan0, &query, PASS, Reason::PassNew);
        let v = ct(l, IPPROTO_UDP, ip(WEB), 5353, ip(INET), 53).unwrap();
        assert_eq!(v.state, UDP_UNREPLIED);
        expect(l, If::Wan, &reply, PASS, Reason::PassEstablished);
        let v = ct(l, IPPROTO_UDP, ip(WEB), 5353, ip(INET), 53).unwrap();
        assert_eq!(v.state, UDP_REPLIED);
        expect(l, If::Lan0, &query, PASS, Reason::PassEstablished);
        // Another source port, or another server, is not the reply.
        let other_port = udp(INET, 54, WEB, 5353).build();
        expect(l, If::Wan, &other_port, DROP, Reason::DropPolicyIngress);
        let other_host = udp("203.0.113.6", 53, WEB, 5353).build();
        expect(l, If::Wan, &other_host, DROP, Reason::DropPolicyIngress);
        // IPv6 alike.
        let reply6 = udp(INET6, 53, WEB6, 5353).build();
        expect(l, If::Wan, &reply6, DROP, Reason::DropPolicyIngress);
        let query6 = from_port(udp(WEB6, 5353, INET6, 53), WEB_MAC);
        expect(l, If::Lan0, &query6, PASS, Reason::PassNew);
        expect(l, If::Wan, &reply6, PASS, Reason::PassEstablished);
        Ok(())
    });
}

/// An echo request opens a flow its reply belongs to (same identifier); an
/// echo reply without a request is decided by the policy (web admits only
/// type 8) and opens nothing.
#[test]
fn stateful_icmp_echo() {
    run(CONFIG, |l| {
        let req = from_port(echo(WEB, INET, true, 7), WEB_MAC);
        let rep = echo(INET, WEB, false, 7).build();
        expect(l, If::Lan0, &req, PASS, Reason::PassNew);
        let v = ct(l, IPPROTO_ICMP, ip(WEB), 7, ip(INET), 7).unwrap();
        assert_eq!((v.state, v.orig_l4), (UDP_UNREPLIED, 8 << 8));
        expect(l, If::Wan, &rep, PASS, Reason::PassEstablished);
        assert_eq!(
            ct(l, IPPROTO_ICMP, ip(WEB), 7, ip(INET), 7).unwrap().state,
            UDP_REPLIED
        );
        // Another identifier is another flow: unsolicited.
        let stray = echo(INET, WEB, false, 8).build();
        expect(l, If::Wan, &stray, DROP, Reason::DropPolicyIngress);
        assert!(ct(l, IPPROTO_ICMP, ip(INET), 8, ip(WEB), 8).is_none());
        // Pings in are admitted by rule 3 (type 8); the reply goes out established.
        let ping_in = echo(INET, WEB, true, 9).build();
        expect(l, If::Wan, &ping_in, PASS, Reason::PassNew);
        expect(l, If::Wan, &ping_in, PASS, Reason::PassEstablished);
        let pong = from_port(echo(WEB, INET, false, 9), WEB_MAC);
        expect(l, If::Lan0, &pong, PASS, Reason::PassEstablished);
        // ICMPv6 echo.
        let req6 = from_port(echo(WEB6, INET6, true, 10), WEB_MAC);
        let rep6 = echo(INET6, WEB6, false, 10).build();
        expect(l, If::Wan, &rep6, DROP, Reason::DropPolicyIngress);
        expect(l, If::Lan0, &req6, PASS, Reason::PassNew);
        expect(l, If::Wan, &rep6, PASS, Reason::PassEstablished);
        assert!(ct(l, IPPROTO_ICMPV6, ip(WEB6), 10, ip(INET6), 10).is_some());
        Ok(())
    });
}

/// Where the policy admits echo replies (rule 14 of RULES: any protocol from
/// 203.0.113.128/25), an unsolicited one passes, each time as new: a reply
/// opens no flow.
#[test]
fn stateful_unsolicited_echo_reply_admitted_by_policy_opens_nothing() {
    run(RULES, |l| {
        let r_any = rule_id(l, "fields", 14);
        let rep = echo("203.0.113.200", ALPHA, false, 3).build();
        for i in 0..2 {
            let what = format!("unsolicited reply #{i}");
            expect_credit(l, &what, If::Wan, &rep, (PASS, Reason::PassNew), &[r_any]);
            assert!(ct(l, IPPROTO_ICMP, ip("203.0.113.200"), 3, ip(ALPHA), 3).is_none());
        }
        let outside = echo(INET, ALPHA, false, 3).build();
        expect(l, If::Wan, &outside, DROP, Reason::DropPolicyIngress);
        Ok(())
    });
}

/// RST closes a flow from any state; the tuple reopens with a new SYN.
#[test]
fn tcp_rst_closes() {
    run(CONFIG, |l| {
        let handshake = [
            (true, TCP_SYN, Reason::PassNew),
            (false, TCP_SYN | TCP_ACK, Reason::PassEstablished),
            (true, TCP_ACK, Reason::PassEstablished),
        ];
        for (from_client, flags, reason) in handshake {
            let (on, f) = http(from_client, flags, 0);
            expect(l, on, &f, PASS, reason);
        }
        assert_eq!(
            tcp_state(l, INET, 40000, WEB, 80),
            Some(TcpState::Established)
        );
        let (on, rst) = http(false, TCP_RST | TCP_ACK, 0);
        expect(l, on, &rst, PASS, Reason::PassEstablished);
        assert_eq!(tcp_state(l, INET, 40000, WEB, 80), Some(TcpState::Close));
        // Port reuse: a new SYN from the original side starts over.
        let (on, syn) = http(true, TCP_SYN, 0);
        expect(l, on, &syn, PASS, Reason::PassEstablished);
        assert_eq!(tcp_state(l, INET, 40000, WEB, 80), Some(TcpState::SynSent));
        // A RST in SYN_SENT (connection refused) closes too.
        let (on, rst) = http(false, TCP_RST | TCP_ACK, 0);
        expect(l, on, &rst, PASS, Reason::PassEstablished);
        assert_eq!(tcp_state(l, INET, 40000, WEB, 80), Some(TcpState::Close));
        Ok(())
    });
}

/// Orderly closes reach TIME_WAIT: FINs crossing, a half-close, and the
/// server closing first.
#[test]
fn tcp_fin_fin_ack_reaches_time_wait() {
    use TcpState::*;
    run(CONFIG, |l| {
        // (from the client, TCP flags, state after it)
        type Step = (bool, u8, TcpState);
        let closes: &[(&str, &[Step])] = &[
            (
                "client closes, server closes, client acks",
                &[
                    (true, TCP_FIN | TCP_ACK, FinWait),
                    (false, TCP_FIN | TCP_ACK, LastAck),
                    (true, TCP_ACK, TimeWait),
                ],
            ),
            (
                "half-close: client FIN acked, server sends, then closes",
                &[
                    (true, TCP_FIN | TCP_ACK, FinWait),
                    (false, TCP_ACK, CloseWait),
                    (false, TCP_ACK | TCP_PSH, CloseWait),
                    (false, TCP_FIN | TCP_ACK, LastAck),
                    (true, TCP_ACK, TimeWait),
                ],
            ),
            (
                "server closes first",
                &[
                    (false, TCP_FIN | TCP_ACK, FinWait),
                    (true, TCP_ACK, CloseWait),
                    (true, TCP_FIN | TCP_ACK, LastAck),
                    (false, TCP_ACK, TimeWait),
                ],
            ),
        ];
        for (n, (what, steps)) in closes.iter().enumerate() {
            let sport = 41000 + n as u16;
            let seg = |client: bool, flags: u8| -> (If, Vec<u8>) {
                if client {
                    (If::Wan, tcp(INET, sport, WEB, 80, flags).build())
                } else {
                    (
                        If::Lan0,
                        from_port(tcp(WEB, 80, INET, sport, flags), WEB_MAC),
                    )
                }
            };
            let (on, f) = seg(true, TCP_SYN);
            expect_case(l, what, on, &f, PASS, Reason::PassNew);
            for (client, flags) in [(false, TCP_SYN | TCP_ACK), (true, TCP_ACK)] {
                let (on, f) = seg(client, flags);
                expect_case(l, what, on, &f, PASS, Reason::PassEstablished);
            }
            for (i, &(client, flags, want)) in steps.iter().enumerate() {
                let (on, f) = seg(client, flags);
                expect_case(
                    l,
                    &format!("{what}, step {i}"),
                    on,
                    &f,
                    PASS,
                    Reason::PassEstablished,
                );
                assert_eq!(
                    tcp_state(l, INET, sport, WEB, 80),
                    Some(want),
                    "{what}, step {i}"
                );
            }
        }
        // The server closing first is remembered on the entry.
        let v = ct(l, IPPROTO_TCP, ip(INET), 41002, ip(WEB), 80).unwrap();
        assert_ne!(v.flags & CT_FIN_BY_REPLY, 0);
        Ok(())
    });
}

/// A SYN-ACK or a RST that belongs to no flow is decided by the policy and
/// opens nothing: the next one is decided again.
#[test]
fn tcp_synack_or_rst_without_flow_opens_nothing() {
    run(CONFIG, |l| {
        let cases = [
            // To web's open port 80: the policy admits them, but only as
            // single packets.
            (
                "SYN-ACK in to :80",
                If::Wan,
                tcp(INET, 5555, WEB, 80, TCP_SYN | TCP_ACK).build(),
                PASS,
                Reason::PassNew,
            ),
            (
                "RST in to :80",
                If::Wan,
                tcp(INET, 5556, WEB, 80, TCP_RST).build(),
                PASS,
                Reason::PassNew,
            ),
            (
                "RST-ACK in to :80",
                If::Wan,
                tcp(INET, 5557, WEB, 80, TCP_RST | TCP_ACK).build(),
                PASS,
                Reason::PassNew,
            ),
            // To a closed port: denied.
            (
                "SYN-ACK in to :44444",
                If::Wan,
                tcp(INET, 80, WEB, 44444, TCP_SYN | TCP_ACK).build(),
                DROP,
                Reason::DropPolicyIngress,
            ),
            (
                "RST in to :44444",
                If::Wan,
                tcp(INET, 80, WEB, 44444, TCP_RST).build(),
                DROP,
                Reason::DropPolicyIngress,
            ),
            // Out, under web's egress rule.
            (
                "SYN-ACK out",
                If::Lan0,
                from_port(tcp(WEB, 80, INET, 5558, TCP_SYN | TCP_ACK), WEB_MAC),
                PASS,
                Reason::PassNew,
            ),
            (
                "RST out",
                If::Lan0,
                from_port(tcp(WEB, 80, INET, 5559, TCP_RST), WEB_MAC),
                PASS,
                Reason::PassNew,
            ),
        ];
        for (what, on, frame, action, reason) in cases {
            for round in 0..2 {
                expect_case(l, &format!("{what} #{round}"), on, &frame, action, reason);
            }
        }
        assert!(
            l.dp.ct_entries().unwrap().is_empty(),
            "kernel conntrack: {:?}",
            l.dp.ct_entries()
        );
        assert!(l.host.ct.is_empty(), "host conntrack: {:?}", l.host.ct);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 4. Spoofed sources
// ---------------------------------------------------------------------------

/// On the LAN a source must be a port's address, with the port's MAC when
/// one is configured (RULES: every port has one).
#[test]
fn spoofed_sources_on_the_lan() {
    run(RULES, |l| {
        let spoofed = Reason::DropSpoofed;
        let other_mac = [2, 0, 0, 0, 0x99, 0x99];
        let cases = [
            (
                "unknown address in a VPC subnet",
                tcp("192.168.1.99", 1, INET, 7001, TCP_SYN).with_src_mac(ALPHA_MAC),
            ),
            (
                "address outside the VPC",
                tcp("8.8.8.8", 1, INET, 7001, TCP_SYN).with_src_mac(ALPHA_MAC),
            ),
            (
                "unspecified address",
                udp("0.0.0.0", 68, "255.255.255.255", 67).with_src_mac(ALPHA_MAC),
            ),
            (
                "alpha's address, unknown MAC",
                tcp(ALPHA, 1, INET, 7001, TCP_SYN).with_src_mac(other_mac),
            ),
            (
                "alpha's address, client's MAC",
                tcp(ALPHA, 1, INET, 7001, TCP_SYN).with_src_mac(CLIENT_MAC),
            ),
            (
                "client's address, alpha's MAC",
                tcp(CLIENT, 1, INET, 80, TCP_SYN).with_src_mac(ALPHA_MAC),
            ),
            (
                "client's address to alpha, alpha's MAC",
                tcp(CLIENT, 1, ALPHA, 80, TCP_SYN).with_src_mac(ALPHA_MAC),
            ),
            (
                "alpha's IPv6 address, unknown MAC",
                udp(ALPHA6, 1, INET6, 53).with_src_mac(other_mac),
            ),
            (
                "unknown IPv6 address",
                udp("fd00:1::99", 1, INET6, 53).with_src_mac(ALPHA_MAC),
            ),
            (
                "link-local IPv6 address",
                udp("fe80::1", 1, INET6, 53).with_src_mac(ALPHA_MAC),
            ),
        ];
        for (what, spec) in cases {
            for on in [If::Lan0, If::Lan1] {
                expect_case(l, what, on, &spec.build(), DROP, spoofed);
            }
        }
        // An IPv4-mapped IPv6 address is the IPv4 address in map keys: as a
        // source it would pass for the port. Such addresses never belong on
        // the wire (RFC 4942 2.2), so the parser refuses them, either way.
        let mapped = from_port(udp("::ffff:192.168.1.10", 1, INET6, 53), ALPHA_MAC);
        expect(l, If::Lan0, &mapped, DROP, Reason::DropBadIpHeader);
        let mapped = tcp(INET6, 1, "::ffff:192.168.1.10", 443, TCP_SYN).build();
        expect(l, If::Wan, &mapped, DROP, Reason::DropBadIpHeader);
        // The genuine article, on either LAN interface.
        let ok = from_port(tcp(ALPHA, 2, INET, 7001, TCP_SYN), ALPHA_MAC);
        expect(l, If::Lan0, &ok, PASS, Reason::PassNew);
        let ok = from_port(udp(ALPHA6, 2, INET6, 53), ALPHA_MAC);
        expect(l, If::Lan1, &ok, PASS, Reason::PassNew);
        Ok(())
    });
}

/// A port without a configured MAC is checked by address only.
#[test]
fn lan_port_without_mac_is_checked_by_address_only() {
    run(CONFIG, |l| {
        let any_mac = udp(DB, 1, INET, 53)
            .with_src_mac([2, 0, 0, 0, 0x77, 0x77])
            .build();
        expect(l, If::Lan1, &any_mac, PASS, Reason::PassNew);
        let spoof = udp("192.168.2.11", 1, INET, 53).build();
        expect(l, If::Lan1, &spoof, DROP, Reason::DropSpoofed);
        Ok(())
    });
}

/// On the WAN, inside addresses (ports, and VPN remote subnets, which only
/// arrive through the tunnel) are spoofed, whatever they are sent to.
#[test]
fn spoofed_sources_on_the_wan() {
    run(CONFIG, |l| {
        let cases = [
            ("web's address to db", tcp(WEB, 1, DB, 5432, TCP_SYN)),
            ("web's address to web", tcp(WEB, 1, WEB, 80, TCP_SYN)),
            ("web's IPv6 address", tcp(WEB6, 1, WEB6, 443, TCP_SYN)),
            ("db's address to the gateway", udp(DB, 1, GW, 53)),
            ("DC subnet to web", tcp("192.168.3.7", 1, WEB, 22, TCP_SYN)),
            (
                "other DC subnet to web",
                tcp("192.168.4.255", 1, WEB, 80, TCP_SYN),
            ),
            (
                "DC subnet: IKE to the gateway",
                udp("192.168.3.1", 500, GW, 500),
            ),
            ("DC subnet: ESP to the gateway", raw("192.168.4.1", GW, 50)),
            (
                "DC subnet: to the Internet",
                udp("192.168.3.1", 1, "8.8.8.8", 53),
            ),
        ];
        for (what, spec) in cases {
            expect_case(
                l,
                what,
                If::Wan,
                &spec.build(),
                DROP,
                Reason::DropWanSpoofed,
            );
        }
        // Just outside the VPN remote subnets and the ports: not spoofed.
        let near = tcp("192.168.5.1", 1, WEB, 80, TCP_SYN).build();
        expect(l, If::Wan, &near, PASS, Reason::PassNew);
        let unused = tcp("192.168.1.99", 1, WEB, 80, TCP_SYN).build();
        expect(l, If::Wan, &unused, PASS, Reason::PassNew);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 5. VLAN tags and EtherTypes
// ---------------------------------------------------------------------------

/// `frame` with the EtherType after its VLAN tags replaced (ARP, LLDP ...).
fn with_ethertype(spec: &FrameSpec, ethertype: u16) -> Vec<u8> {
    let mut f = spec.build();
    let at = spec.link_len() - 2;
    f[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
    f
}

/// One tag or two (802.1Q, 802.1ad, in either order) reach the same
/// decision as none; a third is refused. ARP passes, other EtherTypes not.
#[test]
fn vlan_tags() {
    run(CONFIG, |l| {
        const Q: u16 = TPID_8021Q;
        const AD: u16 = TPID_8021AD;
        let tagged: &[&[(u16, u16)]] = &[
            &[],
            &[(Q, 100)],
            &[(AD, 100)],
            &[(Q, 0)],
            &[(AD, 100), (Q, 200)],
            &[(Q, 100), (Q, 200)],
            &[(AD, 4095), (AD, 1)],
        ];
        for (i, tags) in tagged.iter().enumerate() {
            let sport = 30000 + i as u16;
            let mut spec = tcp(INET, sport, WEB, 80, TCP_SYN);
            let mut out = tcp(WEB, sport, INET, 443, TCP_SYN).with_src_mac(WEB_MAC);
            let mut arp = udp(WEB, 1, INET, 1).with_payload(8);
            let mut lldp = udp(INET, 1, WEB, 1);
            for &(tpid, id) in *tags {
                spec = spec.with_vlan(tpid, id);
                out = out.with_vlan(tpid, id);
                arp = arp.with_vlan(tpid, id);
                lldp = lldp.with_vlan(tpid, id);
            }
            let what = format!("tags {tags:x?}");
            expect_case(l, &what, If::Wan, &spec.build(), PASS, Reason::PassNew);
            expect_case(
                l,
                &what,
                If::Wan,
                &spec.build(),
                PASS,
                Reason::PassEstablished,
            );
            expect_case(l, &what, If::Lan0, &out.build(), PASS, Reason::PassNew);
            let f = with_ethertype(&arp, 0x0806);
            expect_case(l, &what, If::Lan0, &f, PASS, Reason::PassArp);
            let f = with_ethertype(&lldp, 0x88cc);
            expect_case(
                l,
                &what,
                If::Wan,
                &f,
                DROP,
                Reason::DropUnsupportedEthertype,
            );
        }
        let three: &[[u16; 3]] = &[[Q, Q, Q], [AD, Q, Q], [AD, AD, Q], [Q, AD, AD]];
        for (i, tpids) in three.iter().enumerate() {
            let mut spec = tcp(INET, 31000 + i as u16, WEB, 80, TCP_SYN);
            let mut arp = udp(WEB, 1, INET, 1).with_payload(8);
            for (n, tpid) in tpids.iter().enumerate() {
                spec = spec.with_vlan(*tpid, 10 + n as u16);
                arp = arp.with_vlan(*tpid, 10 + n as u16);
            }
            let what = format!("three tags {tpids:x?}");
            expect_case(
                l,
                &what,
                If::Wan,
                &spec.build(),
                DROP,
                Reason::DropTooManyVlans,
            );
            let f = with_ethertype(&arp, 0x0806);
            expect_case(l, &what, If::Lan0, &f, DROP, Reason::DropTooManyVlans);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 6. IPv6 extension headers, atomic fragments, ND/MLD
// ---------------------------------------------------------------------------

/// Fragment entries, kernel and host (which must hold the same keys).
fn frag_keys(l: &Loaded) -> Vec<FragKey> {
    use aya::maps::{HashMap as BpfHashMap, MapData};
    let m: BpfHashMap<&MapData, FragKey, FragVal> = l.dp.map(map_names::FRAGS).unwrap();
    let mut kernel: Vec<FragKey> = m.keys().map(|k| k.unwrap()).collect();
    let mut host: Vec<FragKey> = l.host.frags.keys().copied().collect();
    let order = |k: &FragKey| (k.src, k.dst, k.id, k.proto, k.family);
    kernel.sort_by_key(order);
    host.sort_by_key(order);
    assert_eq!(kernel, host, "FRAGS: kernel vs host");
    kernel
}

/// Extension headers are walked to the transport header; routing type 0
/// (RFC 5095) and chains too long or too deep are refused.
#[test]
fn ipv6_extension_headers() {
    run(CONFIG, |l| {
        let dopts = |len8| Ext::Raw { proto: 60, len8 };
        let pass = (PASS, Reason::PassNew);
        let cases: Vec<(&str, Vec<Ext>, (Action, Reason))> = vec![
            ("hop-by-hop", vec![Ext::HopByHop], pass),
            ("destination options", vec![Ext::DestOpts], pass),
            ("routing type 2", vec![Ext::Routing { ty: 2 }], pass),
            ("routing type 4 (SRH)", vec![Ext::Routing { ty: 4 }], pass),
            ("routing type 3 (RPL)", vec![Ext::Routing { ty: 3 }], pass),
            (
                "routing type 0",
                vec![Ext::Routing { ty: 0 }],
                dropped(Reason::DropRoutingHeader0),
            ),
            (
                "routing type 0 deep in the chain",
                vec![Ext::HopByHop, Ext::DestOpts, Ext::Routing { ty: 0 }],
                dropped(Reason::DropRoutingHeader0),
            ),
            ("AH", vec![Ext::Ah], pass),
            (
                "mobility, HIP, shim6 headers",
                vec![
                    Ext::Raw {
                        proto: 135,
                        len8: 0,
                    },
                    Ext::Raw {
                        proto: 139,
                        len8: 1,
                    },
                    Ext::Raw {
                        proto: 140,
                        len8: 0,
                    },
                ],
                pass,
            ),
            (
                "the usual order",
                vec![
                    Ext::HopByHop,
                    Ext::DestOpts,
                    Ext::Routing { ty: 2 },
                    Ext::Ah,
                    Ext::DestOpts,
                ],
                pass,
            ),
            ("seven headers", vec![Ext::DestOpts; 7], pass),
            // MAX_EXT_HEADERS (the parser once stopped one step short of the 8th's
            // transport header).
            ("eight headers", vec![Ext::DestOpts; 8], pass),
            (
                "nine headers",
                vec![Ext::DestOpts; 9],
                dropped(Reason::DropExtHeaderLimit),
            ),
            (
                "twenty headers",
                vec![Ext::HopByHop; 20],
                dropped(Reason::DropExtHeaderLimit),
            ),
            // The transport header may start at most 512 bytes into the frame.
            ("256 bytes of options", vec![dopts(31)], pass),
            (
                "512 bytes of options",
                vec![dopts(63)],
                dropped(Reason::DropExtHeaderLimit),
            ),
            (
                "2 KiB of options",
                vec![dopts(255)],
                dropped(Reason::DropExtHeaderLimit),
            ),
            (
                "three 160-byte headers",
                vec![dopts(19), dopts(19), dopts(19)],
                dropped(Reason::DropExtHeaderLimit),
            ),
            (
                "atomic fragment",
                vec![Ext::Fragment(frag(5, 0, false))],
                pass,
            ),
            (
                "atomic fragment after AH",
                vec![Ext::Ah, Ext::Fragment(frag(6, 0, false)), Ext::DestOpts],
                pass,
            ),
        ];
        for (i, (what, exts, want)) in cases.into_iter().enumerate() {
            let sport = 32000 + i as u16;
            let mut spec = tcp(INET6, sport, WEB6, 443, TCP_SYN);
            let mut out = tcp(WEB6, sport, INET6, 443, TCP_SYN).with_src_mac(WEB_MAC);
            for e in exts {
                spec = spec.with_ext(e.clone());
                out = out.with_ext(e);
            }
            expect_case(l, what, If::Wan, &spec.build(), want.0, want.1);
            expect_case(l, what, If::Lan0, &out.build(), want.0, want.1);
        }
        // An atomic fragment is a whole packet (RFC 6946): it leaves no
        // fragment state, and a later fragment with its id has no first.
        assert!(frag_keys(l).is_empty());
        let later = tcp(INET6, 32017, WEB6, 443, TCP_SYN)
            .with_frag(frag(5, 8, false))
            .build();
        expect(l, If::Wan, &later, DROP, Reason::DropFragmentNoFirst);
        Ok(())
    });
}

/// Neighbour discovery and multicast listener messages pass before any
/// address check (link-local sources are no port's); other ICMPv6 does not.
#[test]
fn ipv6_nd_and_mld_pass() {
    run(CONFIG, |l| {
        let ll = "fe80::1";
        let nd = [133u8, 134, 135, 136, 137];
        let mld = [130u8, 131, 132, 143];
        for ty in nd {
            let f = icmp(ll, "ff02::1", ty, 0).with_payload(16).build();
            expect_case(
                l,
                &format!("ND {ty} on the LAN"),
                If::Lan0,
                &f,
                PASS,
                Reason::PassNdp,
            );
            expect_case(
                l,
                &format!("ND {ty} on the WAN"),
                If::Wan,
                &f,
                PASS,
                Reason::PassNdp,
            );
            let f = icmp(WEB6, "ff02::1:ff00:1", ty, 0)
                .with_vlan(TPID_8021Q, 5)
                .build();
            expect_case(
                l,
                &format!("ND {ty} tagged"),
                If::Lan1,
                &f,
                PASS,
                Reason::PassNdp,
            );
        }
        for ty in mld {
            // MLD carries a hop-by-hop header (router alert).
            let f = icmp(ll, "ff02::16", ty, 0)
                .with_ext(Ext::HopByHop)
                .with_payload(20)
                .build();
            expect_case(
                l,
                &format!("MLD {ty} on the LAN"),
                If::Lan0,
                &f,
                PASS,
                Reason::PassNdp,
            );
            expect_case(
                l,
                &format!("MLD {ty} on the WAN"),
                If::Wan,
                &f,
                PASS,
                Reason::PassNdp,
            );
        }
        // Not ND: decided like anything else (a link-local source is no port).
        for ty in [128u8, 129, 138, 139, 144] {
            let f = icmp(ll, "ff02::1", ty, 0).build();
            expect_case(
                l,
                &format!("ICMPv6 {ty}"),
                If::Lan0,
                &f,
                DROP,
                Reason::DropSpoofed,
            );
        }
        // ND in a fragment is not ND (RFC 6980): decided by the policy.
        let f = icmp(ll, "ff02::1", 135, 0)
            .with_frag(frag(9, 0, true))
            .with_payload(16)
            .build();
        expect(l, If::Lan0, &f, DROP, Reason::DropSpoofed);
        // Truncated ND is still truncated.
        let f = icmp(ll, "ff02::1", 135, 0).build();
        let cut = &f[..f.len() - 1];
        expect(l, If::Lan0, cut, DROP, Reason::DropTruncatedIp);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 7. Truncations and bad header fields
// ---------------------------------------------------------------------------

/// A frame that passes whole, and where its headers are: `regions` lists,
/// in order, the end of each header region (bytes into the IP packet) and
/// the reason a packet whose IP length stops inside it is dropped for.
struct Layered {
    what: &'static str,
    on: If,
    spec: FrameSpec,
    whole: Reason,
    regions: Vec<(usize, Reason)>,
}

impl Layered {
    fn expected(&self, n: usize) -> Option<Reason> {
        self.regions
            .iter()
            .find(|(end, _)| n < *end)
            .map(|(_, r)| *r)
    }
}

/// The first `n` bytes of the IP packet in `frame`, with the IP length
/// field rewritten to say so (where the field is still there): a packet
/// whose IP header is consistent, cut inside a later header.
fn cut_ip(frame: &[u8], l3: usize, v6: bool, n: usize) -> Vec<u8> {
    let mut f = frame[..l3 + n].to_vec();
    if !v6 && n >= 4 {
        f[l3 + 2..l3 + 4].copy_from_slice(&(n as u16).to_be_bytes());
    }
    if v6 && n >= 40 {
        f[l3 + 4..l3 + 6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
    }
    f
}

/// Every header kind, cut at every length, two ways:
/// - the frame cut short (every prefix): the IP length no longer fits,
///   so below the link header it is a truncated Ethernet header, above it a
///   truncated IP packet;
/// - the IP packet cut short with its length field rewritten: the reason
///   names the header that was cut (IP, extension header, L4, the quote of
///   an ICMP error); the same with zero padding up to the original length
///   (Ethernet padding is not packet data) is dropped too.
///
/// The whole frame is not dropped.
#[test]
fn every_truncation_of_every_header_is_dropped() {
    use Reason::{
        DropBadIpHeader as BadIp, DropBadL4Header as BadL4, DropTruncatedIp as TruncIp,
        DropTruncatedL4 as TruncL4,
    };
    run(CONFIG, |l| {
        // Flows the ICMP errors below are related to.
        let v4_flow = tcp(WEB, 50000, INET, 443, TCP_SYN).with_src_mac(WEB_MAC);
        let v6_flow = tcp(WEB6, 50001, INET6, 443, TCP_SYN).with_src_mac(WEB_MAC);
        expect(l, If::Lan0, &v4_flow.build(), PASS, Reason::PassNew);
        expect(l, If::Lan0, &v6_flow.build(), PASS, Reason::PassNew);

        let v6_exts = [
            Ext::HopByHop,
            Ext::DestOpts,
            Ext::Routing { ty: 2 },
            Ext::Ah,
            Ext::Fragment(frag(1, 0, false)),
        ];
        let mut v6_chain = tcp(INET6, 40001, WEB6, 443, TCP_SYN);
        for e in v6_exts {
            v6_chain = v6_chain.with_ext(e);
        }
        let frames = vec![
            Layered {
                what: "IPv4 TCP",
                on: If::Wan,
                spec: tcp(INET, 40000, WEB, 80, TCP_SYN),
                whole: Reason::PassNew,
                regions: vec![(20, TruncIp), (40, TruncL4)],
            },
            Layered {
                what: "IPv4 with options, TCP with options",
                on: If::Wan,
                spec: tcp(INET, 40002, WEB, 80, TCP_SYN)
                    .with_ip_options(&[0x94, 4, 0, 0, 1, 1, 1, 0])
                    .with_tcp_options(&[2, 4, 5, 0xb4, 1, 3, 3, 7]),
                whole: Reason::PassNew,
                regions: vec![(20, TruncIp), (28, BadIp), (56, TruncL4)],
            },
            Layered {
                what: "two VLAN tags, IPv4 UDP with data",
                on: If::Lan1,
                spec: udp(DB, 40003, WEB, 1500)
                    .with_vlan(TPID_8021AD, 10)
                    .with_vlan(TPID_8021Q, 20)
                    .with_payload(10),
                whole: Reason::PassNew,
                // Cut in the data, the UDP length runs past the IP packet.
                regions: vec![(20, TruncIp), (28, TruncL4), (38, BadL4)],
            },
            Layered {
                what: "IPv4 ICMP echo",
                on: If::Wan,
                spec: echo(INET, WEB, true, 40004),
                whole: Reason::PassNew,
                regions: vec![(20, TruncIp), (28, TruncL4)],
            },
            Layered {
                what: "ICMP frag-needed quoting web's flow",
                on: If::Wan,
                spec: icmp_error("203.0.113.1", WEB, 3, 4, 1400, &v4_flow),
                whole: Reason::PassRelated,
                // The quote: an IP header and 8 bytes of its L4 header.
                regions: vec![(20, TruncIp), (28, TruncL4), (56, TruncL4)],
            },
            Layered {
                what: "IPv6, five extension headers, TCP",
                on: If::Wan,
                spec: v6_chain,
                whole: Reason::PassNew,
                // Payload length 0 is a jumbogram: refused as such.
                regions: vec![(40, TruncIp), (41, BadIp), (96, TruncIp), (116, TruncL4)],
            },
            Layered {
                what: "VLAN, IPv6 UDP",
                on: If::Lan0,
                spec: udp(WEB6, 40005, INET6, 53)
                    .with_src_mac(WEB_MAC)
                    .with_vlan(TPID_8021Q, 7),
                whole: Reason::PassNew,
                regions: vec![(40, TruncIp), (41, BadIp), (48, TruncL4)],
            },
            Layered {
                what: "ICMPv6 echo",
                on: If::Lan0,
                spec: echo(WEB6, INET6, true, 40006).with_src_mac(WEB_MAC),
                whole: Reason::PassNew,
                regions: vec![(40, TruncIp), (41, BadIp), (48, TruncL4)],
            },
            Layered {
                what: "ICMPv6 packet-too-big quoting web's flow",
                on: If::Wan,
                spec: icmp_error("2001:db8::1", WEB6, 2, 0, 1280, &v6_flow),
                whole: Reason::PassRelated,
                regions: vec![(40, TruncIp), (41, BadIp), (48, TruncL4), (96, TruncL4)],
            },
        ];
        let mut cases = 0;
        for fr in &frames {
            let frame = fr.spec.build();
            let l3 = fr.spec.link_len();
            let v6 = fr.spec.src.is_ipv6();
            // 1. Every prefix of the frame.
            for cut in 0..frame.len() {
                let what = format!("{}: frame cut at {cut}", fr.what);
                let want = if cut < l3 {
                    Reason::DropTruncatedEthernet
                } else {
                    TruncIp
                };
                if cut < 14 {
                    let o = l.host_only(fr.on, &frame[..cut]);
                    assert_eq!((o.action, o.reason), (DROP, want), "{what}");
                } else {
                    expect_case(l, &what, fr.on, &frame[..cut], DROP, want);
                }
                cases += 1;
            }
            // 2. The IP packet cut inside each header, its length consistent.
            let headers_end = fr.regions.last().unwrap().0;
            for n in 0..headers_end {
                let what = format!("{}: IP packet cut at {n}", fr.what);
                let f = cut_ip(&frame, l3, v6, n);
                let want = fr.expected(n).unwrap();
                if f.len() < 14 {
                    let o = l.host_only(fr.on, &f);
                    assert_eq!((o.action, o.reason), (DROP, want), "{what}");
                } else {
                    expect_case(l, &what, fr.on, &f, DROP, want);
                }
                // Padded back to its length, once the IP length is rewritten.
                if n >= if v6 { 40 } else { 20 } {
                    let mut padded = f.clone();
                    padded.resize(frame.len(), 0);
                    let s = l.send(fr.on, &padded).unwrap();
                    assert!(s.agree(), "{what}, padded: {}", show(&s));
                    assert!(
                        s.host == DROP && s.host_reason.is_drop(),
                        "{what}, padded: {}",
                        show(&s)
                    );
                    cases += 1;
                }
                cases += 1;
            }
            // 3. The whole frame, and with padding after it.
            expect_case(l, fr.what, fr.on, &frame, PASS, fr.whole);
            let mut padded = frame.clone();
            padded.extend_from_slice(&[0; 24]);
            let again = if fr.whole == Reason::PassNew {
                Reason::PassEstablished
            } else {
                fr.whole
            };
            // An echo request (or TCP SYN) sent twice is established; a UDP
            // datagram too. ICMP errors stay related.
            expect_case(l, fr.what, fr.on, &padded, PASS, again);
            cases += 2;
        }
        eprintln!("truncations: {cases} cases");
        Ok(())
    });
}

/// Header fields that cannot be right, one at a time.
#[test]
fn bad_header_fields_are_dropped() {
    run(CONFIG, |l| {
        let set = |mut f: Vec<u8>, at: usize, bytes: &[u8]| {
            f[at..at + bytes.len()].copy_from_slice(bytes);
            f
        };
        // IPv4 at 14, TCP/UDP/ICMP at 34; IPv6 at 14, L4 at 54.
        let v4_tcp = tcp(INET, 1, WEB, 80, TCP_SYN).build();
        let v4_opts = tcp(INET, 1, WEB, 80, TCP_SYN)
            .with_ip_options(&[1, 1, 1, 1, 1, 1, 1, 1])
            .build();
        let v4_udp = udp(DB, 1, WEB, 1500).with_payload(10).build();
        let v6_tcp = tcp(INET6, 1, WEB6, 443, TCP_SYN).build();
        let v6_udp = udp(INET6, 1, WEB6, 1500).with_payload(10).build();
        let quoted = tcp(WEB, 50000, INET, 443, TCP_SYN);
        let err = icmp_error("203.0.113.1", WEB, 3, 4, 1400, &quoted).build();
        let quoted6 = tcp(WEB6, 50000, INET6, 443, TCP_SYN);
        let err6 = icmp_error("2001:db8::1", WEB6, 2, 0, 1280, &quoted6).build();
        let bad_ip = Reason::DropBadIpHeader;
        let bad_l4 = Reason::DropBadL4Header;
        let cases: Vec<(&str, If, Vec<u8>, Reason)> = vec![
            (
                "IPv4 IHL 4",
                If::Wan,
                set(v4_tcp.clone(), 14, &[0x44]),
                bad_ip,
            ),
            (
                "IPv4 IHL 0",
                If::Wan,
                set(v4_tcp.clone(), 14, &[0x40]),
                bad_ip,
            ),
            (
                "IPv4 total length 19",
                If::Wan,
                set(v4_tcp.clone(), 16, &[0, 19]),
                bad_ip,
            ),
            (
                "IPv4 total length 0",
                If::Wan,
                set(v4_tcp.clone(), 16, &[0, 0]),
                bad_ip,
            ),
            (
                "IPv4 total length below IHL 7",
                If::Wan,
                set(v4_opts.clone(), 16, &[0, 24]),
                bad_ip,
            ),
            (
                "IPv4 total length past the frame",
                If::Wan,
                set(v4_tcp.clone(), 16, &[0, 41]),
                Reason::DropTruncatedIp,
            ),
            (
                "IPv4 IHL 15 above total length",
                If::Wan,
                set(v4_tcp.clone(), 14, &[0x4f]),
                bad_ip,
            ),
            (
                "IPv4 IHL 15 past the frame",
                If::Wan,
                set(set(v4_tcp.clone(), 14, &[0x4f]), 16, &[0, 60]),
                Reason::DropTruncatedIp,
            ),
            (
                "IPv4 EtherType, version 6",
                If::Wan,
                set(v4_tcp.clone(), 14, &[0x65]),
                bad_ip,
            ),
            (
                "IPv4 EtherType, version 5",
                If::Wan,
                set(v4_tcp.clone(), 14, &[0x55]),
                bad_ip,
            ),
            (
                "IPv6 EtherType, version 4",
                If::Wan,
                set(v6_tcp.clone(), 14, &[0x40]),
                bad_ip,
            ),
            (
                "IPv6 EtherType, version 0",
                If::Wan,
                set(v6_tcp.clone(), 14, &[0x00]),
                bad_ip,
            ),
            (
                "IPv6 payload length 0 (jumbogram)",
                If::Wan,
                set(v6_tcp.clone(), 18, &[0, 0]),
                bad_ip,
            ),
            (
                "IPv6 payload length past the frame",
                If::Wan,
                set(v6_tcp.clone(), 18, &[0, 21]),
                Reason::DropTruncatedIp,
            ),
            (
                "TCP data offset 4",
                If::Wan,
                set(v4_tcp.clone(), 46, &[0x40]),
                bad_l4,
            ),
            (
                "TCP data offset 0",
                If::Wan,
                set(v4_tcp.clone(), 46, &[0x00]),
                bad_l4,
            ),
            (
                "IPv6 TCP data offset 4",
                If::Wan,
                set(v6_tcp.clone(), 66, &[0x40]),
                bad_l4,
            ),
            (
                "TCP data offset 6 past the packet",
                If::Wan,
                set(v4_tcp.clone(), 46, &[0x60]),
                Reason::DropTruncatedL4,
            ),
            (
                "TCP data offset 15 past the packet",
                If::Wan,
                set(v4_tcp.clone(), 46, &[0xf0]),
                Reason::DropTruncatedL4,
            ),
            (
                "UDP length 7",
                If::Lan1,
                set(v4_udp.clone(), 38, &[0, 7]),
                bad_l4,
            ),
            (
                "UDP length 0",
                If::Lan1,
                set(v4_udp.clone(), 38, &[0, 0]),
                bad_l4,
            ),
            (
                "UDP length past the IP payload",
                If::Lan1,
                set(v4_udp.clone(), 38, &[0, 19]),
                bad_l4,
            ),
            (
                "UDP length 65535",
                If::Lan1,
                set(v4_udp.clone(), 38, &[0xff, 0xff]),
                bad_l4,
            ),
            (
                "IPv6 UDP length 7",
                If::Wan,
                set(v6_udp.clone(), 58, &[0, 7]),
                bad_l4,
            ),
            (
                "IPv6 UDP length past the IP payload",
                If::Wan,
                set(v6_udp.clone(), 58, &[0, 19]),
                bad_l4,
            ),
            (
                "quoted IPv4 header, version 6",
                If::Wan,
                set(err.clone(), 42, &[0x65]),
                bad_l4,
            ),
            (
                "quoted IPv4 header, IHL 4",
                If::Wan,
                set(err.clone(), 42, &[0x44]),
                bad_l4,
            ),
            (
                "quoted IPv4 header, IHL 15 past the quote",
                If::Wan,
                set(err.clone(), 42, &[0x4f]),
                Reason::DropTruncatedL4,
            ),
            (
                "quoted IPv6 header, version 4",
                If::Wan,
                set(err6.clone(), 62, &[0x40]),
                bad_l4,
            ),
        ];
        for (what, on, frame, reason) in cases {
            expect_case(l, what, on, &frame, DROP, reason);
        }
        // Not defects: a UDP length short of the IP payload (trailing
        // bytes), Ethernet padding after the IP packet.
        let short_udp = set(v4_udp.clone(), 38, &[0, 8]);
        expect(l, If::Lan1, &short_udp, PASS, Reason::PassNew);
        let mut padded = tcp(INET, 2, WEB, 80, TCP_SYN).build();
        padded.extend_from_slice(&[0xee; 6]);
        expect(l, If::Wan, &padded, PASS, Reason::PassNew);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 8. Fragments
// ---------------------------------------------------------------------------

/// IPv4 fragments: the first is decided like any packet, later ones follow
/// its verdict; later ones without an admitted first are dropped (also when
/// they arrive before it); RFC 1858 and tiny first fragments are attacks.
#[test]
fn fragments_ipv4() {
    run(CONFIG, |l| {
        let f = |spec: FrameSpec, id, offset, more| spec.with_frag(frag(id, offset, more));
        let db_udp = || udp(DB, 3000, WEB, 1500).with_payload(40);
        let inet_udp = || udp(INET, 3000, WEB, 1500).with_payload(40);
        let steps: Vec<(&str, If, FrameSpec, Action, Reason)> = vec![
            // Admitted: web admits UDP 1000-2000 from db.
            (
                "admitted: first",
                If::Lan1,
                f(db_udp(), 100, 0, true),
                PASS,
                Reason::PassNew,
            ),
            (
                "admitted: middle",
                If::Lan1,
                f(db_udp(), 100, 6, true),
                PASS,
                Reason::PassFragment,
            ),
            (
                "admitted: last",
                If::Lan1,
                f(db_udp(), 100, 12, false),
                PASS,
                Reason::PassFragment,
            ),
            // The verdict belongs to (src, dst, id, protocol).
            (
                "same id, other source",
                If::Lan0,
                f(udp(WEB, 3000, DB, 1500), 100, 6, false).with_src_mac(WEB_MAC),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "same id, other protocol",
                If::Lan1,
                f(tcp(DB, 3000, WEB, 1500, TCP_ACK), 100, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            // Denied: web does not admit UDP from the Internet.
            (
                "denied: first",
                If::Wan,
                f(inet_udp(), 101, 0, true),
                DROP,
                Reason::DropPolicyIngress,
            ),
            (
                "denied: later",
                If::Wan,
                f(inet_udp(), 101, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "never seen: later",
                If::Wan,
                f(inet_udp(), 102, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            // Out of order: a later fragment before its first is dropped
            // (its verdict is not known yet); the rest follow the first.
            (
                "out of order: later first",
                If::Lan1,
                f(db_udp(), 103, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "out of order: then the first",
                If::Lan1,
                f(db_udp(), 103, 0, true),
                PASS,
                Reason::PassEstablished,
            ),
            (
                "out of order: later again",
                If::Lan1,
                f(db_udp(), 103, 6, false),
                PASS,
                Reason::PassFragment,
            ),
            // TCP, into web:80 from the Internet; RFC 1858: offset 1 would
            // rewrite the first fragment's TCP flags.
            (
                "tcp: first",
                If::Wan,
                f(
                    tcp(INET, 4000, WEB, 80, TCP_SYN).with_payload(40),
                    104,
                    0,
                    true,
                ),
                PASS,
                Reason::PassNew,
            ),
            (
                "tcp: offset 1",
                If::Wan,
                f(tcp(INET, 4000, WEB, 80, TCP_SYN), 104, 1, true),
                DROP,
                Reason::DropTinyFragment,
            ),
            (
                "tcp: offset 2",
                If::Wan,
                f(tcp(INET, 4000, WEB, 80, TCP_SYN), 104, 2, true),
                PASS,
                Reason::PassFragment,
            ),
            (
                "tcp: offset 1, never seen",
                If::Wan,
                f(tcp(INET, 4001, WEB, 80, TCP_SYN), 105, 1, false),
                DROP,
                Reason::DropTinyFragment,
            ),
            // Offset 1 is only an attack on TCP.
            (
                "udp: offset 1",
                If::Lan1,
                f(db_udp(), 100, 1, true),
                PASS,
                Reason::PassFragment,
            ),
            // Out to the Internet under web's egress rule.
            (
                "egress: first",
                If::Lan0,
                f(udp(WEB, 5000, INET, 53).with_payload(40), 106, 0, true).with_src_mac(WEB_MAC),
                PASS,
                Reason::PassNew,
            ),
            (
                "egress: later",
                If::Lan0,
                f(udp(WEB, 5000, INET, 53), 106, 6, false).with_src_mac(WEB_MAC),
                PASS,
                Reason::PassFragment,
            ),
            // Later fragments are still checked for spoofing first.
            (
                "later from a spoofed LAN source",
                If::Lan1,
                f(udp("192.168.2.99", 3000, WEB, 1500), 100, 6, false),
                DROP,
                Reason::DropSpoofed,
            ),
            (
                "later from a port's address on the WAN",
                If::Wan,
                f(db_udp(), 100, 6, false),
                DROP,
                Reason::DropWanSpoofed,
            ),
        ];
        for (what, on, spec, action, reason) in steps {
            expect_case(l, what, on, &spec.build(), action, reason);
        }
        // First fragments too short for their L4 header.
        let tiny = |spec: FrameSpec, l4: usize| {
            let spec = spec.with_frag(frag(107, 0, true)).with_payload(40);
            cut_ip(&spec.build(), 14, false, 20 + l4)
        };
        let cases = [
            (
                "tcp, 16 bytes",
                If::Wan,
                tiny(tcp(INET, 4002, WEB, 80, TCP_SYN), 16),
            ),
            (
                "tcp, no L4 byte",
                If::Wan,
                tiny(tcp(INET, 4003, WEB, 80, TCP_SYN), 0),
            ),
            ("udp, 4 bytes", If::Lan1, tiny(udp(DB, 3001, WEB, 1500), 4)),
            ("icmp, 4 bytes", If::Wan, tiny(echo(INET, WEB, true, 9), 4)),
        ];
        for (what, on, frame) in cases {
            expect_case(l, what, on, &frame, DROP, Reason::DropTinyFragment);
        }
        // A TCP header cut by its options in a first fragment is tiny too.
        let opts = tcp(INET, 4004, WEB, 80, TCP_SYN)
            .with_tcp_options(&[2, 4, 5, 0xb4])
            .with_frag(frag(108, 0, true));
        let f = cut_ip(&opts.build(), 14, false, 20 + 20);
        expect(l, If::Wan, &f, DROP, Reason::DropTinyFragment);
        Ok(())
    });
}

/// IPv6 alike, with the fragment header; the fragmentable part may start
/// with destination options (RFC 8200 4.5), in every fragment.
#[test]
fn fragments_ipv6() {
    run(CONFIG, |l| {
        let f = |spec: FrameSpec, id, offset, more| spec.with_frag(frag(id, offset, more));
        let out = || {
            udp(WEB6, 3000, INET6, 53)
                .with_src_mac(WEB_MAC)
                .with_payload(40)
        };
        let inbound = || udp(INET6, 3000, WEB6, 1500).with_payload(40);
        let steps: Vec<(&str, If, FrameSpec, Action, Reason)> = vec![
            (
                "admitted: first",
                If::Lan0,
                f(out(), 200, 0, true),
                PASS,
                Reason::PassNew,
            ),
            (
                "admitted: middle",
                If::Lan0,
                f(out(), 200, 6, true),
                PASS,
                Reason::PassFragment,
            ),
            (
                "admitted: last",
                If::Lan0,
                f(out(), 200, 12, false),
                PASS,
                Reason::PassFragment,
            ),
            (
                "denied: first",
                If::Wan,
                f(inbound(), 201, 0, true),
                DROP,
                Reason::DropPolicyIngress,
            ),
            (
                "denied: later",
                If::Wan,
                f(inbound(), 201, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "never seen: later",
                If::Wan,
                f(inbound(), 202, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "out of order: later first",
                If::Lan0,
                f(out(), 203, 6, false),
                DROP,
                Reason::DropFragmentNoFirst,
            ),
            (
                "out of order: then the first",
                If::Lan0,
                f(out(), 203, 0, true),
                PASS,
                Reason::PassEstablished,
            ),
            (
                "out of order: later again",
                If::Lan0,
                f(out(), 203, 6, false),
                PASS,
                Reason::PassFragment,
            ),
            (
                "tcp: first",
                If::Wan,
                f(
                    tcp(INET6, 4000, WEB6, 443, TCP_SYN).with_payload(40),
                    204,
                    0,
                    true,
                ),
                PASS,
                Reason::PassNew,
            ),
            (
                "tcp: later",
                If::Wan,
                f(tcp(INET6, 4000, WEB6, 443, TCP_SYN), 204, 5, false),
                PASS,
                Reason::PassFragment,
            ),
            // Extension headers before the fragment header (unfragmentable part).
            (
                "after hop-by-hop: first",
                If::Lan0,
                f(out().with_ext(Ext::HopByHop), 205, 0, true),
                PASS,
                Reason::PassEstablished,
            ),
            (
                "after hop-by-hop: later",
                If::Lan0,
                f(out().with_ext(Ext::HopByHop), 205, 6, false),
                PASS,
                Reason::PassFragment,
            ),
        ];
        for (what, on, spec, action, reason) in steps {
            expect_case(l, what, on, &spec.build(), action, reason);
        }
        // First fragments too short for their L4 header.
        let tiny = |spec: FrameSpec, l4: usize| {
            let spec = spec.with_frag(frag(206, 0, true)).with_payload(40);
            cut_ip(&spec.build(), 14, true, 40 + 8 + l4)
        };
        let cases = [
            (
                "tcp, 10 bytes",
                If::Wan,
                tiny(tcp(INET6, 4001, WEB6, 443, TCP_SYN), 10),
            ),
            ("udp, 4 bytes", If::Lan0, tiny(out(), 4)),
            (
                "icmpv6, no L4 byte",
                If::Lan0,
                tiny(echo(WEB6, INET6, true, 1).with_src_mac(WEB_MAC), 0),
            ),
        ];
        for (what, on, frame) in cases {
            expect_case(l, what, on, &frame, DROP, Reason::DropTinyFragment);
        }
        Ok(())
    });
}

/// RFC 8200 4.5: the fragmentable part of every fragment starts with the
/// same header; when it is a destination options header, later fragments
/// name it (60) in their fragment header, while the first fragment is keyed
/// by the transport protocol found behind it.
#[test]
fn fragments_ipv6_with_destination_options_in_the_fragmentable_part() {
    run(CONFIG, |l| {
        let spec = |offset, more| {
            udp(WEB6, 3000, INET6, 53)
                .with_src_mac(WEB_MAC)
                .with_ext(Ext::Fragment(frag(300, offset, more)))
                .with_ext(Ext::DestOpts)
                .with_payload(40)
        };
        expect(l, If::Lan0, &spec(0, true).build(), PASS, Reason::PassNew);
        // The later fragment's bytes after the fragment header are data; the
        // builder's destination options stand in for them.
        expect(
            l,
            If::Lan0,
            &spec(7, false).build(),
            PASS,
            Reason::PassFragment,
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 9. ICMP errors
// ---------------------------------------------------------------------------

/// ICMP errors quoting a tracked flow, sent to the quoted packet's sender,
/// are related: they pass although web admits no ICMP error. Quoting no
/// flow, or sent to anyone else, they are decided by the policy.
#[test]
fn icmp_errors_related_to_tracked_flows() {
    run(CONFIG, |l| {
        const ROUTER: &str = "203.0.113.1";
        const ROUTER6: &str = "2001:db8::1";
        // Flows from web, and into web.
        let tcp_out = tcp(WEB, 50000, INET, 443, TCP_SYN).with_src_mac(WEB_MAC);
        let udp_out = udp(WEB, 50001, INET, 53).with_src_mac(WEB_MAC);
        let ping_out = echo(WEB, INET, true, 77).with_src_mac(WEB_MAC);
        let tcp6_out = tcp(WEB6, 50002, INET6, 443, TCP_SYN).with_src_mac(WEB_MAC);
        let tcp_in = tcp(INET, 40000, WEB, 80, TCP_SYN);
        for spec in [&tcp_out, &udp_out, &ping_out, &tcp6_out] {
            expect(l, If::Lan0, &spec.build(), PASS, Reason::PassNew);
        }
        expect(l, If::Wan, &tcp_in.build(), PASS, Reason::PassNew);

        let unknown = tcp(WEB, 50099, INET, 443, TCP_SYN);
        let unknown6 = tcp(WEB6, 50099, INET6, 443, TCP_SYN);
        let related = (PASS, Reason::PassRelated);
        let denied = dropped(Reason::DropPolicyIngress);
        let cases: Vec<(&str, If, FrameSpec, (Action, Reason))> = vec![
            (
                "frag-needed about web's TCP flow",
                If::Wan,
                icmp_error(ROUTER, WEB, 3, 4, 1400, &tcp_out),
                related,
            ),
            (
                "port unreachable about web's UDP flow",
                If::Wan,
                icmp_error(INET, WEB, 3, 3, 0, &udp_out),
                related,
            ),
            (
                "time exceeded about web's ping",
                If::Wan,
                icmp_error(ROUTER, WEB, 11, 0, 0, &ping_out),
                related,
            ),
            (
                "parameter problem about web's TCP flow",
                If::Wan,
                icmp_error(ROUTER, WEB, 12, 0, 0, &tcp_out),
                related,
            ),
            (
                "packet-too-big about web's IPv6 flow",
                If::Wan,
                icmp_error(ROUTER6, WEB6, 2, 0, 1280, &tcp6_out),
                related,
            ),
            (
                "ICMPv6 unreachable about web's IPv6 flow",
                If::Wan,
                icmp_error(ROUTER6, WEB6, 1, 4, 0, &tcp6_out),
                related,
            ),
            (
                "ICMPv6 time exceeded about web's IPv6 flow",
                If::Wan,
                icmp_error(ROUTER6, WEB6, 3, 0, 0, &tcp6_out),
                related,
            ),
            // From web, about a flow into it: to the quoted packet's sender.
            (
                "web's frag-needed to a client",
                If::Lan0,
                icmp_error(WEB, INET, 3, 4, 1400, &tcp_in).with_src_mac(WEB_MAC),
                related,
            ),
            // No such flow: web admits no ICMP error.
            (
                "frag-needed about no flow",
                If::Wan,
                icmp_error(ROUTER, WEB, 3, 4, 1400, &unknown),
                denied,
            ),
            (
                "packet-too-big about no flow",
                If::Wan,
                icmp_error(ROUTER6, WEB6, 2, 0, 1280, &unknown6),
                denied,
            ),
            // Sent to someone other than the quoted packet's sender.
            (
                "frag-needed about web's flow, to db",
                If::Wan,
                icmp_error(ROUTER, DB, 3, 4, 1400, &tcp_out),
                denied,
            ),
            (
                "frag-needed about a client's flow, to web",
                If::Wan,
                icmp_error(ROUTER, WEB, 3, 4, 1400, &tcp_in),
                denied,
            ),
            (
                "packet-too-big about a client's flow, to web",
                If::Wan,
                icmp_error(
                    ROUTER6,
                    WEB6,
                    2,
                    0,
                    1280,
                    &tcp(INET6, 1, WEB6, 443, TCP_SYN),
                ),
                denied,
            ),
        ];
        for (what, on, spec, want) in cases {
            // Twice: an error opens no flow of its own.
            for round in 0..2 {
                expect_case(
                    l,
                    &format!("{what} #{round}"),
                    on,
                    &spec.build(),
                    want.0,
                    want.1,
                );
            }
        }
        // The quote must hold the IP header and 8 bytes of the L4 header
        // (RFC 792); less is truncated, that much is enough.
        let quote = tcp_out.ip_packet();
        for n in [0, 19, 20, 27] {
            let spec = FrameSpec::new(
                ip(ROUTER),
                ip(WEB),
                L4::Icmp {
                    ty: 3,
                    code: 4,
                    rest: [0, 0, 5, 0x78],
                    quote: quote[..n].to_vec(),
                },
            );
            let what = format!("quote of {n} bytes");
            expect_case(
                l,
                &what,
                If::Wan,
                &spec.build(),
                DROP,
                Reason::DropTruncatedL4,
            );
        }
        let spec = FrameSpec::new(
            ip(ROUTER),
            ip(WEB),
            L4::Icmp {
                ty: 3,
                code: 4,
                rest: [0, 0, 5, 0x78],
                quote: quote[..28].to_vec(),
            },
        );
        expect(l, If::Wan, &spec.build(), PASS, Reason::PassRelated);
        let quote6 = tcp6_out.ip_packet();
        for n in [0, 39, 40, 47] {
            let spec = FrameSpec::new(
                ip(ROUTER6),
                ip(WEB6),
                L4::Icmp {
                    ty: 2,
                    code: 0,
                    rest: [0, 0, 5, 0],
                    quote: quote6[..n].to_vec(),
                },
            );
            let what = format!("IPv6 quote of {n} bytes");
            expect_case(
                l,
                &what,
                If::Wan,
                &spec.build(),
                DROP,
                Reason::DropTruncatedL4,
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 10. VPN classification
// ---------------------------------------------------------------------------

/// Hub and spoke: two data centers, each remote subnet behind its own
/// connection; both VPC subnets are local to both.
const HUB: &str = r#"
[gateway]
name = "gw-hub"
public_ip = "198.51.100.1"
wan_interface = "wan0"
lan_interfaces = ["lan0", "lan1"]

[vpc]
name = "vpc-prod"
[[vpc.subnets]]
name = "subnet-a"
cidr = "192.168.1.0/24"
[[vpc.subnets]]
name = "subnet-b"
cidr = "192.168.2.0/24"

[[security_groups]]
name = "sg-web"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 80
[[security_groups.rules]]
direction = "egress"

[[security_groups]]
name = "sg-db"
[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 5432
remote_group = "sg-web"
[[security_groups.rules]]
direction = "egress"
protocol = "udp"
port_range_min = 53

[[ports]]
name = "ecs-a1"
addresses = ["192.168.1.10"]
mac = "02:00:00:00:01:0a"
security_groups = ["sg-web"]
[[ports]]
name = "ecs-b1"
addresses = ["192.168.2.10"]
mac = "02:00:00:00:02:0a"
security_groups = ["sg-db"]

[[ike_policies]]
name = "ike"
encryption = "aes-256-gcm-16"
dh_group = "ecp384"
[[ipsec_policies]]
name = "esp"
encryption = "aes-256-gcm-16"

[[connections]]
name = "dc-east"
peer_address = "198.51.100.2"
local_subnets = ["192.168.1.0/24", "192.168.2.0/24"]
remote_subnets = ["192.168.3.0/24"]
ike_policy = "ike"
ipsec_policy = "esp"
psk_file = "east.psk"

[[connections]]
name = "dc-west"
peer_address = "198.51.100.3"
local_subnets = ["192.168.1.0/24", "192.168.2.0/24"]
remote_subnets = ["192.168.4.0/24"]
ike_policy = "ike"
ipsec_policy = "esp"
psk_file = "west.psk"
"#;

const DB_MAC_HUB: [u8; 6] = [2, 0, 0, 0, 2, 0x0a];

/// The metadata the program put in front of a redirected frame.
fn meta_of(data: &[u8]) -> XskMeta {
    let word = |i: usize| u32::from_ne_bytes(data[i * 4..i * 4 + 4].try_into().unwrap());
    XskMeta {
        magic: word(0),
        conn: word(1),
        generation: word(2),
        slot: word(3),
    }
}

/// Send a VPN-bound frame: the host redirects it for connection `conn` to
/// XSKS index `xsk`; the kernel redirects it with its metadata in front
/// when a socket is there (`socket`), else drops it as `drop_vpn_no_socket`.
#[track_caller]
fn expect_vpn(l: &mut Loaded, what: &str, on: If, frame: &[u8], conn: u32, xsk: u32, socket: bool) {
    let s = l.send(on, frame).unwrap();
    assert!(s.agree(), "{what}: kernel and host disagree: {}", show(&s));
    let o = s.host_outcome;
    assert_eq!(
        (o.action, o.reason),
        (VPN, Reason::VpnRedirect),
        "{what}: {}",
        show(&s)
    );
    assert_eq!(
        (o.conn, o.xsk_index),
        (conn, xsk),
        "{what}: host connection, XSKS index"
    );
    if socket {
        assert_eq!(
            (s.kernel_action, s.kernel_reason),
            (XDP_REDIRECT, Reason::VpnRedirect),
            "{what}"
        );
        let meta_len = std::mem::size_of::<XskMeta>();
        assert_eq!(
            s.data.len(),
            meta_len + frame.len(),
            "{what}: metadata in front"
        );
        let want = XskMeta {
            magic: XSK_META_MAGIC,
            conn,
            generation: l.dp.generation(),
            slot: l.dp.slot() as u32,
        };
        assert_eq!(meta_of(&s.data), want, "{what}: metadata");
        assert_eq!(
            &s.data[meta_len..],
            frame,
            "{what}: the frame itself is untouched"
        );
    } else {
        assert_eq!(
            (s.kernel_action, s.kernel_reason),
            (XDP_DROP, Reason::VpnNoSocket),
            "{what}"
        );
    }
}

/// Per-connection counters: kernel and host agree; returns packets per connection.
#[track_caller]
fn conn_packets(l: &Loaded) -> Vec<u64> {
    let kernel = l.dp.counters().unwrap().conns;
    let mut out = Vec::new();
    for (c, k) in kernel.iter().enumerate() {
        let h = l
            .host
            .conn_stats
            .get(&(c as u32))
            .copied()
            .unwrap_or_default();
        assert_eq!(
            (k.packets, k.bytes),
            h,
            "connection {c}: kernel vs host (packets, bytes)"
        );
        out.push(k.packets);
    }
    out
}

/// Local subnet to a remote subnet goes to the crypto path (with metadata
/// when an AF_XDP socket is there); from outside the connection's local
/// subnets it is dropped rather than sent in clear; fragments follow.
#[test]
fn vpn_local_to_remote_goes_to_the_crypto_path() {
    run(CONFIG, |l| {
        const DC: &str = "192.168.4.20";
        let syn = from_port(tcp(WEB, 41000, DC, 443, TCP_SYN), WEB_MAC);
        let ack = from_port(tcp(WEB, 41000, DC, 443, TCP_ACK), WEB_MAC);
        // No socket yet: the kernel cannot hand it over, and says so.
        expect_vpn(l, "SYN, no socket", If::Lan0, &syn, 0, 0, false);
        let v = ct(l, IPPROTO_TCP, ip(WEB), 41000, ip(DC), 443).unwrap();
        assert_eq!(v.conn, 1, "connection 0 (+1) on the entry");
        assert_ne!(v.flags & CT_FROM_LAN, 0);
        l.open_xsk(If::Lan0).unwrap();
        expect_vpn(l, "ACK, established", If::Lan0, &ack, 0, 0, true);
        let udp_dc = from_port(udp(WEB, 41001, "192.168.3.5", 5000), WEB_MAC);
        expect_vpn(
            l,
            "UDP to the other remote subnet",
            If::Lan0,
            &udp_dc,
            0,
            0,
            true,
        );
        let ping_dc = from_port(echo(WEB, "192.168.3.5", true, 41002), WEB_MAC);
        expect_vpn(l, "ping", If::Lan0, &ping_dc, 0, 0, true);
        // Through lan1 (no socket there): XSKS index 64 (lan slot 1).
        expect_vpn(l, "via lan1", If::Lan1, &ack, 0, MAX_QUEUES, false);
        // Fragments: the first is classified, the rest follow it to the crypto path.
        let f = |offset, more| {
            from_port(
                udp(WEB, 41003, DC, 5001)
                    .with_payload(40)
                    .with_frag(frag(400, offset, more)),
                WEB_MAC,
            )
        };
        expect_vpn(l, "first fragment", If::Lan0, &f(0, true), 0, 0, true);
        expect_vpn(l, "middle fragment", If::Lan0, &f(6, true), 0, 0, true);
        expect_vpn(l, "last fragment", If::Lan0, &f(12, false), 0, 0, true);
        let orphan = from_port(
            udp(WEB, 41003, DC, 5001).with_frag(frag(401, 6, false)),
            WEB_MAC,
        );
        expect(l, If::Lan0, &orphan, DROP, Reason::DropFragmentNoFirst);
        // Every VPN-bound packet counted under its connection (also the
        // ones the kernel could not hand over).
        assert_eq!(conn_packets(l), vec![8]);
        // Not a local subnet of dc1: never leaves, in clear or otherwise.
        for dst in ["192.168.3.1", "192.168.4.255"] {
            let f = tcp(DB, 1, dst, 443, TCP_SYN).build();
            expect_case(l, dst, If::Lan1, &f, DROP, Reason::DropVpnNotLocal);
        }
        let f = udp(DB, 1, DC, 53)
            .with_frag(frag(402, 0, true))
            .with_payload(40)
            .build();
        expect(l, If::Lan1, &f, DROP, Reason::DropVpnNotLocal);
        // Elsewhere: in clear.
        let f = from_port(tcp(WEB, 41004, "192.168.5.1", 443, TCP_SYN), WEB_MAC);
        expect(l, If::Lan0, &f, PASS, Reason::PassNew);
        assert_eq!(conn_packets(l), vec![8]);
        Ok(())
    });
}

/// Hub and spoke: each remote subnet maps to its own connection; the
/// security groups still apply first.
#[test]
fn vpn_hub_and_spoke_maps_each_remote_subnet_to_its_connection() {
    run(HUB, |l| {
        l.open_xsk(If::Lan0).unwrap();
        l.open_xsk(If::Lan1).unwrap();
        let cases = [
            (
                "web -> east",
                If::Lan0,
                from_port(tcp(WEB, 1, "192.168.3.5", 443, TCP_SYN), WEB_MAC),
                0,
                0,
            ),
            (
                "web -> west",
                If::Lan0,
                from_port(tcp(WEB, 2, "192.168.4.5", 443, TCP_SYN), WEB_MAC),
                1,
                0,
            ),
            (
                "db -> east",
                If::Lan1,
                from_port(udp(DB, 3, "192.168.3.5", 53), DB_MAC_HUB),
                0,
                MAX_QUEUES,
            ),
            (
                "db -> west",
                If::Lan1,
                from_port(udp(DB, 4, "192.168.4.5", 53), DB_MAC_HUB),
                1,
                MAX_QUEUES,
            ),
            (
                "db -> west, edge of the subnet",
                If::Lan1,
                from_port(udp(DB, 5, "192.168.4.255", 53), DB_MAC_HUB),
                1,
                MAX_QUEUES,
            ),
        ];
        let mut want = vec![0u64, 0];
        for (what, on, frame, conn, xsk) in cases {
            expect_vpn(l, what, on, &frame, conn, xsk, true);
            want[conn as usize] += 1;
            assert_eq!(conn_packets(l), want, "{what}");
        }
        // db's egress admits only DNS: policy before classification.
        let f = from_port(tcp(DB, 6, "192.168.3.5", 5432, TCP_SYN), DB_MAC_HUB);
        expect(l, If::Lan1, &f, DROP, Reason::DropPolicyEgress);
        // Neither remote subnet.
        let f = from_port(tcp(WEB, 7, "192.168.5.5", 443, TCP_SYN), WEB_MAC);
        expect(l, If::Lan0, &f, PASS, Reason::PassNew);
        assert_eq!(conn_packets(l), want);
        // Both peers may talk IKE and ESP.
        for peer in ["198.51.100.2", "198.51.100.3"] {
            expect_case(
                l,
                peer,
                If::Wan,
                &udp(peer, 500, GW, 500).build(),
                PASS,
                Reason::PassIke,
            );
            expect_case(
                l,
                peer,
                If::Wan,
                &raw(peer, GW, 50).build(),
                PASS,
                Reason::PassEsp,
            );
        }
        let f = udp("198.51.100.4", 500, GW, 500).build();
        expect(l, If::Wan, &f, DROP, Reason::DropIkeNotPeer);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 11. WAN
// ---------------------------------------------------------------------------

/// CONFIG with WAN traffic for the gateway itself dropped by default.
fn wan_drop_config() -> String {
    let at = "lan_interfaces = [\"lan0\", \"lan1\"]\n";
    assert!(CONFIG.contains(at));
    CONFIG.replacen(at, &format!("{at}wan_default = \"drop\"\n"), 1)
}

/// IKE and ESP from configured peers pass, from anyone else not; other
/// traffic not for a port follows wan_default; traffic for a port follows
/// its ingress rules.
fn wan_cases(l: &mut Loaded, default: (Action, Reason)) {
    let ike = (PASS, Reason::PassIke);
    let esp = (PASS, Reason::PassEsp);
    let cases: Vec<(&str, FrameSpec, (Action, Reason))> = vec![
        ("IKE 500 from the peer", udp(PEER, 500, GW, 500), ike),
        ("IKE 4500 from the peer", udp(PEER, 4500, GW, 4500), ike),
        (
            "IKE 4500 from the peer behind NAT",
            udp(PEER, 31337, GW, 4500),
            ike,
        ),
        (
            "IKE 500 from a stranger",
            udp(INET, 500, GW, 500),
            dropped(Reason::DropIkeNotPeer),
        ),
        (
            "IKE 4500 from a stranger",
            udp(INET, 4500, GW, 4500),
            dropped(Reason::DropIkeNotPeer),
        ),
        ("ESP from the peer", raw(PEER, GW, 50), esp),
        (
            "ESP from the peer, later fragment",
            raw(PEER, GW, 50).with_frag(frag(9, 20, false)),
            esp,
        ),
        (
            "ESP from a stranger",
            raw(INET, GW, 50),
            dropped(Reason::DropEspNotPeer),
        ),
        // Not IKE or ESP, even from the peer.
        ("UDP from port 500 to 53", udp(PEER, 500, GW, 53), default),
        ("AH from the peer", raw(PEER, GW, 51), default),
        ("TCP from the peer", tcp(PEER, 1, GW, 179, TCP_SYN), default),
        ("SSH to the gateway", tcp(INET, 2, GW, 22, TCP_SYN), default),
        ("ping to the gateway", echo(INET, GW, true, 3), default),
        ("DNS to the gateway", udp(INET, 4, GW, 53), default),
        (
            "to another outside address",
            tcp(INET, 5, "198.51.100.77", 80, TCP_SYN),
            default,
        ),
        (
            "IPv6 to a non-port address",
            tcp(INET6, 6, "2001:db8::1", 22, TCP_SYN),
            default,
        ),
        // Traffic for a port: its ingress rules, whoever sends it.
        (
            "to web:80",
            tcp(INET, 7, WEB, 80, TCP_SYN),
            (PASS, Reason::PassNew),
        ),
        (
            "to web:81",
            tcp(INET, 8, WEB, 81, TCP_SYN),
            dropped(Reason::DropPolicyIngress),
        ),
        (
            "IKE from the peer to web",
            udp(PEER, 500, WEB, 500),
            dropped(Reason::DropPolicyIngress),
        ),
        (
            "ESP from the peer to web",
            raw(PEER, WEB, 50),
            dropped(Reason::DropPolicyIngress),
        ),
        (
            "to web6:443",
            tcp(INET6, 9, WEB6, 443, TCP_SYN),
            (PASS, Reason::PassNew),
        ),
        (
            "to db:5432 (web's group only)",
            tcp(INET, 10, DB, 5432, TCP_SYN),
            dropped(Reason::DropPolicyIngress),
        ),
    ];
    for (what, spec, want) in cases {
        expect_case(l, what, If::Wan, &spec.build(), want.0, want.1);
    }
    // Replies to flows from the inside pass whatever wan_default says.
    let out = from_port(tcp(WEB, 11, INET, 443, TCP_SYN), WEB_MAC);
    expect(l, If::Lan0, &out, PASS, Reason::PassNew);
    let back = tcp(INET, 443, WEB, 11, TCP_SYN | TCP_ACK).build();
    expect(l, If::Wan, &back, PASS, Reason::PassEstablished);
}

#[test]
fn wan_peers_and_default_pass() {
    run(CONFIG, |l| {
        wan_cases(l, (PASS, Reason::PassWanDefault));
        Ok(())
    });
}

#[test]
fn wan_peers_and_default_drop() {
    run(&wan_drop_config(), |l| {
        wan_cases(l, dropped(Reason::DropWanDefault));
        Ok(())
    });
}

/// An IKE message too big for one packet arrives as IP fragments; only the
/// first carries the UDP header. The later ones follow the first (admitted
/// as IKE from a peer) even with wan_default = "drop"; later fragments whose
/// first was not admitted still fall to the default.
#[test]
fn wan_fragmented_ike_from_a_peer_passes_with_default_drop() {
    run(&wan_drop_config(), |l| {
        let f = |id, offset, more| {
            udp(PEER, 500, GW, 500)
                .with_payload(1600)
                .with_frag(frag(id, offset, more))
        };
        expect(l, If::Wan, &f(11, 0, true).build(), PASS, Reason::PassIke);
        expect(
            l,
            If::Wan,
            &f(11, 185, false).build(),
            PASS,
            Reason::PassFragment,
        );
        // No first fragment of datagram 12 was seen.
        expect(
            l,
            If::Wan,
            &f(12, 185, false).build(),
            DROP,
            Reason::DropWanDefault,
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 12. Reloads
// ---------------------------------------------------------------------------

/// CONFIG after a reload: web's HTTP rule moved from 80 to 8080, and a new
/// first rule opens 9090 (so every web rule id moves up by one).
fn parse(text: &str) -> vpcgw::config::Config {
    parse_config(text).unwrap()
}

fn reload_config() -> String {
    let http = "[[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"tcp\"\n\
                port_range_min = 80\n";
    assert!(CONFIG.contains(http));
    let new = "[[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"tcp\"\n\
               port_range_min = 9090\n\
               [[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"tcp\"\n\
               port_range_min = 8080\n";
    CONFIG.replacen(http, new, 1)
}

/// Segments of three flows: HTTP into web (no longer admitted after the
/// reload), web out to 443 and db's UDP into web (still admitted).
fn seg(flow: u8, client: bool, flags: u8) -> (If, Vec<u8>) {
    match (flow, client) {
        (0, true) => (If::Wan, tcp(INET, 40000, WEB, 80, flags).build()),
        (0, false) => (
            If::Lan0,
            from_port(tcp(WEB, 80, INET, 40000, flags), WEB_MAC),
        ),
        (1, true) => (
            If::Lan0,
            from_port(tcp(WEB, 50000, INET, 443, flags), WEB_MAC),
        ),
        (1, false) => (If::Wan, tcp(INET, 443, WEB, 50000, flags).build()),
        (_, true) => (If::Lan1, udp(DB, 3000, WEB, 1500).build()),
        (_, false) => (If::Lan0, from_port(udp(WEB, 1500, DB, 3000), WEB_MAC)),
    }
}

fn handshake(l: &mut Loaded, flow: u8) {
    let steps = [
        (true, TCP_SYN, Reason::PassNew),
        (false, TCP_SYN | TCP_ACK, Reason::PassEstablished),
        (true, TCP_ACK, Reason::PassEstablished),
    ];
    for (client, flags, reason) in steps {
        let (on, f) = seg(flow, client, flags);
        expect_case(l, &format!("flow {flow} handshake"), on, &f, PASS, reason);
    }
}

/// A reload keeps admitted flows (with their TCP state, under the new
/// generation and rule ids), cuts the others (the policy's reason, then a
/// revoked marker that drops both ways), and new rules apply at once.
#[test]
fn reload_keeps_cuts_and_opens_flows() {
    run(CONFIG, |l| {
        handshake(l, 0);
        handshake(l, 1);
        let (on, f) = seg(2, true, 0);
        expect(l, on, &f, PASS, Reason::PassNew);
        // Flow 1 half-closed by web before the reload.
        let (on, f) = seg(1, true, TCP_FIN | TCP_ACK);
        expect(l, on, &f, PASS, Reason::PassEstablished);
        assert_eq!(tcp_state(l, WEB, 50000, INET, 443), Some(TcpState::FinWait));
        let f = tcp(INET, 1, WEB, 9090, TCP_SYN).build();
        expect(l, If::Wan, &f, DROP, Reason::DropPolicyIngress);
        let g1 = l.dp.generation();
        let slot1 = l.dp.slot();

        l.reload(parse(&reload_config())).unwrap();
        let g2 = l.dp.generation();
        assert!(g2 > g1);
        assert_ne!(
            l.dp.slot(),
            slot1,
            "the new policy went into the other slot"
        );

        // (a) Still admitted: established, state kept and moved on.
        let (on, f) = seg(1, false, TCP_ACK);
        expect(l, on, &f, PASS, Reason::PassEstablished);
        let v = ct(l, IPPROTO_TCP, ip(WEB), 50000, ip(INET), 443).unwrap();
        assert_eq!(
            TcpState::from_u8(v.state),
            Some(TcpState::CloseWait),
            "FIN_WAIT + ACK"
        );
        assert_eq!(v.generation, g2);
        assert_eq!(
            v.rule,
            rule_id(l, "web", 5) + 1,
            "web's egress rule, new id"
        );
        let (on, f) = seg(2, false, 0);
        expect(l, on, &f, PASS, Reason::PassEstablished);
        let v = ct(l, IPPROTO_UDP, ip(DB), 3000, ip(WEB), 1500).unwrap();
        assert_eq!((v.generation, v.state), (g2, UDP_REPLIED));
        assert_eq!(v.rule, rule_id(l, "web", 3) + 1, "web's UDP rule, new id");
        // Re-admitted flows are not counted again.
        let (k, h) = hits(l);
        assert!(
            k.is_empty() && h.is_empty(),
            "rule hits after re-admission: {k:?} {h:?}"
        );

        // (b) No longer admitted: the policy's reason, then a marker.
        let (on, f) = seg(0, true, TCP_ACK | TCP_PSH);
        expect(l, on, &f, DROP, Reason::DropPolicyIngress);
        let v = ct(l, IPPROTO_TCP, ip(INET), 40000, ip(WEB), 80).unwrap();
        assert_ne!(v.flags & CT_REVOKED, 0, "revoked marker");
        assert_eq!(v.generation, g2);
        for (client, flags) in [
            (true, TCP_ACK),
            (false, TCP_ACK | TCP_PSH),
            (false, TCP_FIN | TCP_ACK),
        ] {
            let (on, f) = seg(0, client, flags);
            expect_case(l, "revoked flow", on, &f, DROP, Reason::DropRevoked);
        }
        // A new SYN on the tuple is decided again: port 80 is closed now.
        let (on, f) = seg(0, true, TCP_SYN);
        expect(l, on, &f, DROP, Reason::DropPolicyIngress);

        // (c) New rules apply to new flows at once.
        let f = tcp(INET, 1, WEB, 9090, TCP_SYN).build();
        expect_credit(
            l,
            "new rule 9090",
            If::Wan,
            &f,
            (PASS, Reason::PassNew),
            &[rule_id(l, "web", 0)],
        );
        let f = tcp(INET, 2, WEB, 8080, TCP_SYN).build();
        expect_credit(
            l,
            "moved rule 8080",
            If::Wan,
            &f,
            (PASS, Reason::PassNew),
            &[rule_id(l, "web", 1)],
        );
        let f = tcp(INET, 3, WEB, 80, TCP_SYN).build();
        expect(l, If::Wan, &f, DROP, Reason::DropPolicyIngress);

        // Back to the first policy: the marker is re-decided like any entry.
        l.reload(parse(CONFIG)).unwrap();
        let (on, f) = seg(0, false, TCP_ACK);
        expect(l, on, &f, PASS, Reason::PassEstablished);
        let v = ct(l, IPPROTO_TCP, ip(INET), 40000, ip(WEB), 80).unwrap();
        assert_eq!(v.flags & CT_REVOKED, 0);
        assert_eq!(v.generation, l.dp.generation());
        Ok(())
    });
}

/// A flow's first packet after a reload may come from either side: the
/// decision is always about the flow's original direction.
#[test]
fn reload_re_decides_the_original_direction() {
    run(CONFIG, |l| {
        handshake(l, 0);
        handshake(l, 1);
        l.reload(parse(&reload_config())).unwrap();
        // Web's answer on the HTTP flow: web's egress would admit it, but
        // the flow began as ingress to port 80, which is closed now.
        let (on, f) = seg(0, false, TCP_ACK);
        expect(l, on, &f, DROP, Reason::DropPolicyIngress);
        let (on, f) = seg(0, true, TCP_ACK);
        expect(l, on, &f, DROP, Reason::DropRevoked);
        // The client's side of web's outbound flow: admitted by web's egress.
        let (on, f) = seg(1, false, TCP_ACK);
        expect(l, on, &f, PASS, Reason::PassEstablished);
        Ok(())
    });
}

/// A VPN flow carried across a reload: the crypto path gets the new
/// generation and slot in the metadata.
#[test]
fn reload_keeps_vpn_flows_under_the_new_generation() {
    run(CONFIG, |l| {
        l.open_xsk(If::Lan0).unwrap();
        let f = |flags| from_port(tcp(WEB, 41000, "192.168.4.20", 443, flags), WEB_MAC);
        expect_vpn(l, "before", If::Lan0, &f(TCP_SYN), 0, 0, true);
        // A second connection before dc1 changes dc1's id to 1.
        let at = "[[connections]]\nname = \"dc1\"";
        assert!(CONFIG.contains(at));
        let two = CONFIG.replacen(
            at,
            "[[connections]]\nname = \"dc0\"\npeer_address = \"198.51.100.9\"\n\
             local_subnets = [\"192.168.1.0/24\"]\nremote_subnets = [\"192.168.9.0/24\"]\n\
             ike_policy = \"ike\"\nipsec_policy = \"esp\"\npsk_file = \"dc0.psk\"\n\n\
             [[connections]]\nname = \"dc1\"",
            1,
        );
        l.reload(parse(&two)).unwrap();
        expect_vpn(l, "after", If::Lan0, &f(TCP_ACK), 1, 0, true);
        assert_eq!(
            conn_packets(l),
            vec![0, 1],
            "counted under the new connection id"
        );
        let v = ct(l, IPPROTO_TCP, ip(WEB), 41000, ip("192.168.4.20"), 443).unwrap();
        assert_eq!((v.conn, v.generation), (2, l.dp.generation()));
        Ok(())
    });
}

/// An ICMP error about a revoked flow is about a flow the policy no longer
/// admits: it does not pass as related (it did before the related check
/// looked at `CT_REVOKED`).
#[test]
fn reload_revoked_flow_has_no_related_errors() {
    run(CONFIG, |l| {
        handshake(l, 0);
        l.reload(parse(&reload_config())).unwrap();
        let (on, f) = seg(0, true, TCP_ACK);
        expect(l, on, &f, DROP, Reason::DropPolicyIngress);
        // Frag-needed to web about its answers on the revoked flow.
        let quoted = tcp(WEB, 80, INET, 40000, TCP_ACK);
        let err = icmp_error("203.0.113.1", WEB, 3, 4, 1400, &quoted).build();
        expect(l, If::Wan, &err, DROP, Reason::DropPolicyIngress);
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// 13. Robustness
// ---------------------------------------------------------------------------

/// CONFIG with idle timeouts far beyond the test's run time: the kernel's
/// clock is real and the host's advances 1 ms per frame, so an entry must
/// not expire on one side only.
fn fuzz_config() -> String {
    let timeouts = [
        "tcp_syn_sent",
        "tcp_syn_recv",
        "tcp_established",
        "tcp_fin_wait",
        "tcp_close_wait",
        "tcp_last_ack",
        "tcp_time_wait",
        "tcp_close",
        "udp_unreplied",
        "udp_replied",
        "icmp",
        "other",
        "fragment",
    ];
    let mut c = String::from(CONFIG);
    c.push_str("\n[conntrack]\n");
    for t in timeouts {
        c.push_str(&format!("{t} = 86400\n"));
    }
    c
}

/// xorshift64*: deterministic, so a failure names a case that can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A position, mostly in the first 96 bytes, where the headers are.
    fn pos(&mut self, len: usize) -> usize {
        if self.below(4) == 0 {
            self.below(len)
        } else {
            self.below(len.min(96))
        }
    }
}

/// Valid frames of every kind the pipeline knows, with where they arrive.
fn seed_frames() -> Vec<(If, Vec<u8>)> {
    let web_flow = tcp(WEB, 50000, INET, 443, TCP_SYN).with_src_mac(WEB_MAC);
    let web6_flow = tcp(WEB6, 50001, INET6, 443, TCP_SYN).with_src_mac(WEB_MAC);
    let mut v6_chain = tcp(INET6, 40001, WEB6, 443, TCP_SYN);
    for e in [
        Ext::HopByHop,
        Ext::DestOpts,
        Ext::Routing { ty: 2 },
        Ext::Ah,
    ] {
        v6_chain = v6_chain.with_ext(e);
    }
    let arp = with_ethertype(&udp(WEB, 1, INET, 1).with_payload(8), 0x0806);
    vec![
        (If::Lan0, web_flow.build()),
        (If::Lan0, web6_flow.build()),
        (If::Wan, tcp(INET, 40000, WEB, 80, TCP_SYN).build()),
        (
            If::Wan,
            tcp(INET, 40000, WEB, 80, TCP_ACK).with_payload(20).build(),
        ),
        (
            If::Lan0,
            from_port(tcp(WEB, 80, INET, 40000, TCP_SYN | TCP_ACK), WEB_MAC),
        ),
        (
            If::Lan0,
            from_port(tcp(WEB, 80, INET, 40000, TCP_FIN | TCP_ACK), WEB_MAC),
        ),
        (If::Wan, tcp(INET, 40000, WEB, 80, TCP_RST).build()),
        (
            If::Wan,
            tcp(INET, 40002, WEB, 80, TCP_SYN)
                .with_ip_options(&[0x94, 4, 0, 0])
                .with_tcp_options(&[2, 4, 5, 0xb4, 1, 3, 3, 7])
                .build(),
        ),
        (If::Lan1, udp(DB, 3000, WEB, 1500).with_payload(10).build()),
        (
            If::Lan1,
            udp(DB, 3000, WEB, 1500)
                .with_vlan(TPID_8021AD, 10)
                .with_vlan(TPID_8021Q, 20)
                .build(),
        ),
        (If::Wan, echo(INET, WEB, true, 7).build()),
        (If::Lan0, from_port(echo(WEB, INET, false, 7), WEB_MAC)),
        (
            If::Wan,
            icmp_error("203.0.113.1", WEB, 3, 4, 1400, &web_flow).build(),
        ),
        (
            If::Wan,
            icmp_error("2001:db8::1", WEB6, 2, 0, 1280, &web6_flow).build(),
        ),
        (If::Wan, v6_chain.build()),
        (If::Lan0, from_port(echo(WEB6, INET6, true, 8), WEB_MAC)),
        (
            If::Lan0,
            icmp("fe80::1", "ff02::1", 135, 0).with_payload(16).build(),
        ),
        (
            If::Lan0,
            icmp("fe80::1", "ff02::16", 143, 0)
                .with_ext(Ext::HopByHop)
                .build(),
        ),
        (
            If::Lan1,
            udp(DB, 3001, WEB, 1500)
                .with_payload(40)
                .with_frag(frag(500, 0, true))
                .build(),
        ),
        (
            If::Lan1,
            udp(DB, 3001, WEB, 1500)
                .with_frag(frag(500, 6, false))
                .build(),
        ),
        (
            If::Lan0,
            from_port(
                udp(WEB6, 3002, INET6, 53)
                    .with_payload(40)
                    .with_frag(frag(501, 0, true)),
                WEB_MAC,
            ),
        ),
        (
            If::Lan0,
            from_port(
                udp(WEB6, 3002, INET6, 53).with_frag(frag(501, 6, false)),
                WEB_MAC,
            ),
        ),
        (
            If::Lan0,
            from_port(tcp(WEB, 41000, "192.168.4.20", 443, TCP_SYN), WEB_MAC),
        ),
        (
            If::Lan0,
            from_port(
                udp(WEB, 41001, "192.168.3.5", 53)
                    .with_payload(40)
                    .with_frag(frag(502, 0, true)),
                WEB_MAC,
            ),
        ),
        (If::Lan1, tcp(DB, 1, "192.168.3.1", 443, TCP_SYN).build()),
        (If::Wan, udp(PEER, 500, GW, 500).with_payload(20).build()),
        (If::Wan, udp(PEER, 4500, GW, 4500).with_payload(20).build()),
        (If::Wan, raw(PEER, GW, 50).build()),
        (If::Wan, tcp(INET, 1, GW, 22, TCP_SYN).build()),
        (If::Wan, tcp("192.168.3.7", 1, WEB, 22, TCP_SYN).build()),
        (If::Lan0, arp),
        (If::Lan0, tcp(WEB, 1, INET, 80, TCP_SYN).build()),
    ]
}

/// One mutation of `f`: bit flips, byte writes, 16-bit field writes,
/// truncations, appended junk, or several of these.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if f.is_empty() {
            f.push(rng.next() as u8);
        }
        match rng.below(6) {
            0 => {
                let at = rng.pos(f.len());
                f[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.pos(f.len());
                f[at] = rng.next() as u8;
            }
            2 if f.len() >= 2 => {
                let at = rng.pos(f.len() - 1);
                let interesting = [0u16, 1, 4, 5, 8, 19, 20, 40, 0x00ff, 0x0fff, 0x8000, 0xffff];
                let v = interesting[rng.below(interesting.len())];
                f[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            3 => {
                let len = rng.below(f.len() + 1);
                f.truncate(len);
            }
            4 => {
                for _ in 0..1 + rng.below(64) {
                    f.push(rng.next() as u8);
                }
            }
            _ => {
                let at = rng.pos(f.len());
                f[at] = f[at].wrapping_add(1 + rng.below(3) as u8);
            }
        }
    }
}

/// Conntrack, kernel vs host, clock aside.
fn ct_tables_agree(l: &Loaded) -> usize {
    let norm = |v: &CtVal| CtVal { last_seen: 0, ..*v };
    let mut kernel: Vec<_> =
        l.dp.ct_entries()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, norm(v)))
            .collect();
    let mut host: Vec<_> = l.host.ct.iter().map(|(k, v)| (*k, norm(v))).collect();
    let order = |e: &(vpcgw_common::abi::CtKey, CtVal)| {
        (e.0.a, e.0.b, e.0.port_a, e.0.port_b, e.0.proto, e.0.family)
    };
    kernel.sort_by_key(order);
    host.sort_by_key(order);
    assert_eq!(kernel, host, "conntrack tables differ");
    kernel.len()
}

/// A few thousand deterministic mutations of valid frames of every kind:
/// kernel and host always do the same, nothing errors or panics, and the
/// state left behind (conntrack, fragments, counters) is the same.
#[test]
fn mutated_frames_agree() {
    const MUTATIONS: usize = 10_000;
    run(&fuzz_config(), |l| {
        l.open_xsk(If::Lan0).unwrap();
        let seeds = seed_frames();
        // The seeds themselves first, so the mutations meet live flows.
        for (i, (on, f)) in seeds.iter().enumerate() {
            let s = l.send(*on, f).unwrap();
            assert!(s.agree(), "seed {i}: {}", show(&s));
        }
        let mut rng = Rng(0x7670_6377_5eed_0001);
        let mut outcomes = vec![0usize; Reason::ALL.len()];
        for case in 0..MUTATIONS {
            let (on, base) = &seeds[rng.below(seeds.len())];
            let mut f = base.clone();
            mutate(&mut rng, &mut f);
            let reason = if f.len() < 14 {
                let o = l.host_only(*on, &f);
                assert_eq!(
                    o.reason,
                    Reason::DropTruncatedEthernet,
                    "case {case}: {f:02x?}"
                );
                o.reason
            } else {
                let s = l
                    .send(*on, &f)
                    .unwrap_or_else(|e| panic!("case {case}: {e:#}: {f:02x?}"));
                assert!(s.agree(), "case {case}: {}: {f:02x?}", show(&s));
                assert_eq!(
                    s.host == DROP,
                    s.host_reason.is_drop(),
                    "case {case}: {}",
                    show(&s)
                );
                s.host_reason
            };
            outcomes[reason as usize] += 1;
        }
        let entries = ct_tables_agree(l);
        frag_keys(l);
        let (k, h) = hits(l);
        assert_eq!(k, h, "rule hits");
        conn_packets(l);
        let seen: Vec<(Reason, usize)> = Reason::ALL
            .iter()
            .zip(outcomes)
            .filter(|(_, n)| *n != 0)
            .map(|(r, n)| (*r, n))
            .collect();
        eprintln!("{MUTATIONS} mutations, {entries} conntrack entries; reasons: {seen:?}");
        // The mutations reach deep: passes, parse errors and policy drops.
        let reached = |r: Reason| seen.iter().any(|(x, _)| *x == r);
        for r in [
            Reason::PassNew,
            Reason::PassEstablished,
            Reason::DropTruncatedIp,
            Reason::DropBadIpHeader,
            Reason::DropTruncatedL4,
            Reason::DropSpoofed,
            Reason::DropPolicyIngress,
        ] {
            assert!(reached(r), "no mutation reached {r:?}");
        }
        Ok(())
    });
}
