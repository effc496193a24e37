//! `cargo xtask bench [-- xdp|ike]`: what the data plane and IKE cost.
//!
//! A harness, not a test: it prints figures and ratios against baselines
//! measured in the same run on this machine (see docs/bench.md).
//! - `xdp`: the XDP program's cost per packet ([`xdp`]);
//! - `ike`: time to a CHILD_SA against strongSwan beside strongSwan to
//!   strongSwan, and IKE_SA_INIT answers per second under a flood ([`ike`]).
//!
//! `BENCH_QUICK=1` runs fewer repetitions, for trying a change.

mod ike;
mod xdp;

use anyhow::{Result, bail};

/// `BENCH_QUICK=1`: fewer repetitions (and fewer XDP rows); noisier figures.
fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = ["xdp", "ike"];
    for a in &args {
        if !all.contains(&a.as_str()) {
            bail!("unknown bench {a:?}: expected any of {}", all.join(", "));
        }
    }
    let wanted = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    vpcgw_tests::require_root()?;
    println!("vpcgw bench on {}", machine());
    if wanted("xdp") {
        println!();
        xdp::run()?;
    }
    if wanted("ike") {
        println!();
        ike::run()?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cpus} CPUs, kernel {kernel}")
}
