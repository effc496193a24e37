//! What the XDP program costs per packet. The program runs in the kernel
//! through BPF_PROG_TEST_RUN with `repeat`, which times the program alone (no driver, no syscall).
//!
//! Configurations: the tested port carries N rules (10, 1,000, 10,000), and
//! the policy always holds 1,000 remote prefixes (filler rules on another
//! port make up the difference for small N), so the LPM trie is the same
//! size in every row and only the rule count changes.
//!
//! Cases:
//! - floor: a frame on an interface the program does not know (config and
//!   interface lookups, nothing else);
//! - established: a packet of a tracked flow (the fast path), arriving on the
//!   WAN for a port, and leaving a port on the LAN (adds anti-spoofing);
//! - new flow decision: a SYN-ACK toward the port with no flow behind it. The
//!   program runs the whole policy walk and opens no state (a SYN-ACK cannot
//!   open a flow), so it can be repeated; allowed and denied;
//! - new flow with conntrack insert: distinct SYNs, one run each; the
//!   kernel's timer overhead for a single run (measured on the floor frame
//!   with repeat 1) is subtracted.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::{Context as _, Result};
use vpcgw::compile::compile;
use vpcgw::dataplane::test_run;
use vpcgw::frame::{FrameSpec, TCP_ACK, TCP_SYN};
use vpcgw_tests::xdp::{If, Loaded, Rig, XDP_DROP, XDP_PASS, parse_config};

use crate::quick;

const PREFIXES: usize = 1_000;
const SERVER: &str = "192.168.1.10";
const SERVER_MAC: &str = "02:00:00:00:01:0a";
const REPEAT: u32 = 1_000_000;
const RUNS: usize = 5;
const NEW_FLOWS: u16 = 20_000;

fn repeat() -> u32 {
    if quick() { 200_000 } else { REPEAT }
}

fn prefix(i: usize) -> String {
    format!("10.{}.{}.0/24", i / 256, i % 256)
}

fn host_in(i: usize) -> IpAddr {
    format!("10.{}.{}.5", i / 256, i % 256)
        .parse()
        .unwrap_or(IpAddr::from([10, 0, 0, 5]))
}

/// The rule `i` of the tested port: tcp, one port each, over the prefixes.
fn rule_port(i: usize) -> u16 {
    1_000 + (i % 20_000) as u16
}

fn config(rules: usize) -> String {
    let mut s = String::new();
    s.push_str(
        r#"[gateway]
name = "bench"
public_ip = "198.51.100.1"
wan_interface = "wan0"
lan_interfaces = ["lan0", "lan1"]

[vpc]
name = "bench"
[[vpc.subnets]]
name = "a"
cidr = "192.168.1.0/24"

[[security_groups]]
name = "tested"
[[security_groups.rules]]
direction = "egress"
"#,
    );
    for i in 0..rules {
        s.push_str(&format!(
            "[[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"tcp\"\n\
             port_range_min = {}\nremote_ip_prefix = \"{}\"\n",
            rule_port(i),
            prefix(i % PREFIXES)
        ));
    }
    // Filler: the prefixes the tested rules do not use, on another port, so
    // every configuration has the same remote table.
    s.push_str("[[security_groups]]\nname = \"filler\"\n");
    for i in rules.min(PREFIXES)..PREFIXES {
        s.push_str(&format!(
            "[[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"udp\"\n\
             port_range_min = 53\nremote_ip_prefix = \"{}\"\n",
            prefix(i)
        ));
    }
    s.push_str(&format!(
        r#"[[ports]]
name = "tested"
addresses = ["{SERVER}"]
mac = "{SERVER_MAC}"
security_groups = ["tested"]
[[ports]]
name = "filler"
addresses = ["192.168.1.20"]
security_groups = ["filler"]
"#
    ));
    s
}

/// Median ns per run of `frame` on `on`, repeated.
fn timed(l: &Loaded, on: If, frame: &[u8], want: u32) -> Result<u32> {
    let fd = l.dp.program_fd()?;
    let idx = match on {
        If::Lan0 => l.ifindex[0],
        If::Lan1 => l.ifindex[1],
        If::Wan => l.ifindex[2],
    };
    let mut v = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let r = test_run(fd, frame, idx, 0, repeat())?;
        anyhow::ensure!(
            r.retval == want,
            "expected XDP action {want}, got {}",
            r.retval
        );
        v.push(r.duration_ns);
    }
    v.sort_unstable();
    Ok(v[RUNS / 2])
}

struct Row {
    rules: usize,
    entries: (usize, usize),
    compile_ms: f64,
    install_ms: f64,
    established_wan: u32,
    established_lan: u32,
    new_allowed: u32,
    new_denied: u32,
    new_with_insert: f64,
    floor: u32,
}

fn measure(rig: &Rig, rules: usize) -> Result<Row> {
    let text = config(rules);
    let t = Instant::now();
    let cfg = parse_config(&text)?;
    let compiled = compile(&cfg)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let entries = (compiled.hdrs.len(), compiled.policy.len());
    rig.with(&text, move |l| -> Result<Row> {
        // Install time of this policy as a reload over itself.
        let t = Instant::now();
        l.reload(l.cfg.clone())?;
        let install_ms = t.elapsed().as_secs_f64() * 1e3;

        let server: IpAddr = SERVER.parse()?;
        let last = rules - 1;
        let remote = host_in(last % PREFIXES);
        let port = rule_port(last);
        let mac = [2, 0, 0, 0, 1, 10];

        // Floor: an interface the program was not told about.
        let floor_frame = FrameSpec::tcp(remote, server, 40000, port, TCP_SYN).build();
        let floor = {
            let fd = l.dp.program_fd()?;
            let mut v: Vec<u32> = (0..RUNS)
                .map(|_| test_run(fd, &floor_frame, 1, 0, repeat()).map(|r| r.duration_ns))
                .collect::<std::io::Result<_>>()?;
            v.sort_unstable();
            v[RUNS / 2]
        };

        // Established, inbound on the WAN and outbound on the LAN.
        let syn = FrameSpec::tcp(remote, server, 40000, port, TCP_SYN).build();
        anyhow::ensure!(
            l.send(If::Wan, &syn)?.kernel_action == XDP_PASS,
            "SYN refused"
        );
        let ack_in = FrameSpec::tcp(remote, server, 40000, port, TCP_ACK).build();
        let established_wan = timed(l, If::Wan, &ack_in, XDP_PASS)?;
        let ack_out = FrameSpec::tcp(server, remote, port, 40000, TCP_ACK)
            .with_src_mac(mac)
            .build();
        let established_lan = timed(l, If::Lan0, &ack_out, XDP_PASS)?;

        // New-flow decisions that open no state.
        let synack = FrameSpec::tcp(remote, server, 41000, port, TCP_SYN | TCP_ACK).build();
        let new_allowed = timed(l, If::Wan, &synack, XDP_PASS)?;
        let denied = FrameSpec::tcp(remote, server, 41000, 9, TCP_SYN | TCP_ACK).build();
        let new_denied = timed(l, If::Wan, &denied, XDP_DROP)?;

        // New flows with their conntrack insert: distinct source ports, one
        // run each, less the single-run timer overhead.
        let fd = l.dp.program_fd()?;
        let wan = l.ifindex[2];
        let overhead: u64 = (0..NEW_FLOWS)
            .map(|_| test_run(fd, &floor_frame, 1, 0, 1).map(|r| r.duration_ns as u64))
            .sum::<std::io::Result<u64>>()?;
        let floor1 = overhead as f64 / NEW_FLOWS as f64;
        let mut total = 0u64;
        for sport in 0..NEW_FLOWS {
            let f = FrameSpec::tcp(remote, server, 20_000 + sport, port, TCP_SYN).build();
            let r = test_run(fd, &f, wan, 0, 1)?;
            anyhow::ensure!(r.retval == XDP_PASS, "new SYN refused");
            total += r.duration_ns as u64;
        }
        let new_with_insert = total as f64 / NEW_FLOWS as f64 - floor1 + floor as f64;

        Ok(Row {
            rules,
            entries,
            compile_ms,
            install_ms,
            established_wan,
            established_lan,
            new_allowed,
            new_denied,
            new_with_insert,
            floor,
        })
    })
    .context("measuring")
}

pub fn run() -> Result<()> {
    let rig = Rig::new()?;
    println!(
        "XDP program cost per packet (BPF_PROG_TEST_RUN, median of {RUNS} runs of \
         {REPEAT} repetitions; {PREFIXES} remote prefixes in every policy)"
    );
    let mut rows = Vec::new();
    let sizes: &[usize] = if quick() {
        &[10, 10_000]
    } else {
        &[10, 1_000, 10_000]
    };
    for &rules in sizes {
        let r = measure(&rig, rules)?;
        rows.push(r);
    }
    println!();
    println!(
        "{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>11} {:>11} | {:>13} | {:>6} | {:>10} {:>10}",
        "rules",
        "hdr ents",
        "pol ents",
        "est. WAN",
        "est. LAN",
        "new allowed",
        "new denied",
        "new+ct insert",
        "floor",
        "compile ms",
        "install ms"
    );
    for r in &rows {
        println!(
            "{:>7} | {:>9} {:>9} | {:>7} ns {:>6} ns | {:>8} ns {:>8} ns | {:>10.0} ns | {:>3} ns | {:>10.1} {:>10.1}",
            r.rules,
            r.entries.0,
            r.entries.1,
            r.established_wan,
            r.established_lan,
            r.new_allowed,
            r.new_denied,
            r.new_with_insert,
            r.floor,
            r.compile_ms,
            r.install_ms
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!();
        println!(
            "ratio {} rules / {} rules: new flow allowed {:.2}, denied {:.2}, with insert {:.2}, \
             established {:.2}",
            last.rules,
            first.rules,
            ratio(last.new_allowed as f64, first.new_allowed as f64),
            ratio(last.new_denied as f64, first.new_denied as f64),
            ratio(last.new_with_insert, first.new_with_insert),
            ratio(last.established_wan as f64, first.established_wan as f64),
        );
        println!(
            "aims: established < 60 ns ({} ns), new flow < 200 ns at {} rules ({} ns allowed, \
             {:.0} ns with insert), ratio < 1.3 ({:.2})",
            last.established_wan,
            last.rules,
            last.new_allowed,
            last.new_with_insert,
            ratio(last.new_allowed as f64, first.new_allowed as f64)
        );
    }
    Ok(())
}
