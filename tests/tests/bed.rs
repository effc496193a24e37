//! The test bed routes correctly with no agent running, and leaves nothing
//! behind.

use std::time::Duration;

use anyhow::{Result, ensure};
use vpcgw_tests::bed::{self, Bed, sock};
use vpcgw_tests::{Connect, netns, require_root};

#[test]
fn bed_forwards_without_agent_and_cleans_up() -> Result<()> {
    require_root()?;
    let bed = Bed::new()?;
    let prefix = bed.prefix().to_string();
    let names: Vec<String> = bed
        .namespaces()
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    ensure!(names.iter().all(|n| n.starts_with(&prefix)), "{names:?}");
    let existing = netns::list_namespaces()?;
    ensure!(names.iter().all(|n| existing.contains(n)), "{existing:?}");

    // The interfaces the agent attaches to are in gw, not elsewhere.
    for ifname in [bed::GW_WAN, bed::GW_LAN0, bed::GW_LAN1] {
        bed.gw.ifindex(ifname)?;
    }
    ensure!(bed.srv1.ifindex(bed::GW_LAN0).is_err());

    // srv1 reaches srv2 (lan to lan), the internet host (lan to wan) and the
    // data-center host (routed in clear via dc, for now): every reply back.
    for dst in [bed::SRV2_IP, bed::INET_IP, bed::DCHOST_IP] {
        let got = bed.srv1.ping(&dst.to_string(), 2)?;
        ensure!(got == 2, "srv1 -> {dst}: {got}/2 replies");
    }
    let got = bed.dchost.ping(&bed::SRV2_IP.to_string(), 2)?;
    ensure!(got == 2, "dchost -> srv2: {got}/2 replies");

    // TCP through the gateway, as the demo and the end-to-end tests do it.
    let server = bed.srv1.tcp_serve(sock(bed::SRV1_IP, 80))?;
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV1_IP, 80), Duration::from_secs(2))?;
    ensure!(
        got == Connect::Connected(format!("vpcgw-test {}:80", bed::SRV1_IP)),
        "inet -> srv1:80: {got:?}"
    );
    ensure!(server.accepted() == 1);
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV2_IP, 5432), Duration::from_secs(2))?;
    ensure!(
        got == Connect::Refused,
        "inet -> srv2:5432 (no listener): {got:?}"
    );
    drop(server);

    // The root namespace got none of the test addresses.
    let root_addrs = std::process::Command::new("ip")
        .args(["-o", "addr"])
        .output()?;
    let root_addrs = String::from_utf8_lossy(&root_addrs.stdout);
    for a in ["198.51.100.", "192.168.1.", "192.168.2.", "192.168.3."] {
        ensure!(!root_addrs.contains(a), "root namespace has {a}x");
    }

    drop(bed);
    let left: Vec<String> = netns::list_namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

#[test]
fn two_beds_side_by_side() -> Result<()> {
    require_root()?;
    let a = Bed::new()?;
    let b = Bed::new()?;
    ensure!(a.prefix() != b.prefix());
    // Same addresses in both, no interference.
    ensure!(a.srv1.ping(&bed::SRV2_IP.to_string(), 1)? == 1);
    ensure!(b.srv1.ping(&bed::SRV2_IP.to_string(), 1)? == 1);
    Ok(())
}
