//! The XDP program, loaded in the kernel, fed crafted frames with
//! BPF_PROG_TEST_RUN; every frame also runs through the same pipeline on
//! in-memory maps, and the two must agree. Needs root.

use std::net::IpAddr;

use vpcgw::frame::{Ext, FragSpec, FrameSpec, L4, TCP_ACK, TCP_SYN, TPID_8021AD, TPID_8021Q};
use vpcgw_common::pipeline::Action;
use vpcgw_common::stats::Reason;
use vpcgw_tests::is_root;
use vpcgw_tests::xdp::{If, Loaded, Rig, XDP_DROP, XDP_PASS};

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

/// Send and check kernel == host == expected.
fn expect(l: &mut Loaded, on: If, frame: &[u8], action: Action, reason: Reason) {
    let s = l.send(on, frame).unwrap();
    assert!(s.agree(), "kernel and host disagree: {s:?}");
    assert_eq!(s.host_reason, reason, "{s:?}");
    assert_eq!(s.host, action, "{s:?}");
}

const PASS: Action = Action::Pass;
const DROP: Action = Action::Drop;
const VPN: Action = Action::Redirect;

#[test]
fn stateful_policy_spoofing_vpn_and_wan() {
    if skip() {
        return;
    }
    let rig = Rig::new().unwrap();
    rig.with(CONFIG, |l| {
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
        let f = FragSpec {
            id: 77,
            offset: 0,
            more: true,
        };
        let first = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(f)
            .with_payload(64)
            .build();
        expect(l, If::Lan1, &first, PASS, Reason::PassNew);
        let later = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(FragSpec {
                id: 77,
                offset: 9,
                more: false,
            })
            .build();
        expect(l, If::Lan1, &later, PASS, Reason::PassFragment);
        let orphan = FrameSpec::udp(ip("192.168.2.10"), web, 3000, 1500)
            .with_frag(FragSpec {
                id: 78,
                offset: 9,
                more: false,
            })
            .build();
        expect(l, If::Lan1, &orphan, DROP, Reason::DropFragmentNoFirst);
        Ok(())
    })
    .unwrap();
}

#[test]
fn every_truncation_of_every_header_is_dropped() {
    if skip() {
        return;
    }
    let rig = Rig::new().unwrap();
    rig.with(CONFIG, |l| {
        let inet = ip("203.0.113.5");
        // Each frame as a whole is allowed; every prefix of it is dropped.
        let frames = [
            (
                If::Wan,
                FrameSpec::tcp(inet, ip("192.168.1.10"), 40000, 80, TCP_SYN).build(),
            ),
            (
                If::Lan1,
                FrameSpec::udp(ip("192.168.2.10"), ip("192.168.1.10"), 40000, 1500).build(),
            ),
            (
                If::Wan,
                FrameSpec::tcp(ip("2001:db8::5"), ip("fd00:1::10"), 40200, 443, TCP_SYN)
                    .with_vlan(TPID_8021Q, 7)
                    .with_ext(Ext::HopByHop)
                    .build(),
            ),
        ];
        for (on, frame) in &frames {
            for cut in 0..frame.len() {
                if cut < 14 {
                    let o = l.host_only(*on, &frame[..cut]);
                    assert_eq!(o.reason, Reason::DropTruncatedEthernet, "cut at {cut}");
                    continue;
                }
                let s = l.send(*on, &frame[..cut]).unwrap();
                assert!(s.agree(), "cut at {cut}: {s:?}");
                assert_eq!(s.kernel_action, XDP_DROP, "cut at {cut}: {s:?}");
                assert!(s.kernel_reason.is_drop(), "cut at {cut}: {s:?}");
            }
            let s = l.send(*on, frame).unwrap();
            assert!(s.agree(), "whole frame: {s:?}");
            assert_eq!(s.kernel_action, XDP_PASS, "whole frame: {s:?}");
        }
        Ok(())
    })
    .unwrap();
}
