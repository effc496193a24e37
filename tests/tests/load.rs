//! The program loads, with and without its debug logging, and stays well
//! inside the verifier's budget. Needs root.

use std::time::{Duration, Instant};

use vpcgw::dataplane::{Dataplane, LoadOptions};
use vpcgw_tests::{Netns, is_root};

/// Far below the kernel's 1M limit: a change that needs more than this has
/// probably brought back a path explosion (docs/architecture.md).
const BUDGET: u32 = 250_000;

#[test]
fn loads_within_the_verifier_budget_at_every_log_level() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Netns::new("load").unwrap();
    for level in [0u8, 4] {
        let (verified, took) = ns
            .enter(move || {
                let t = Instant::now();
                let dp = Dataplane::load(&LoadOptions {
                    log_level: level,
                    ..LoadOptions::default()
                })
                .unwrap();
                (dp.verified_instructions().unwrap(), t.elapsed())
            })
            .unwrap();
        eprintln!("log level {level}: {verified:?} instructions verified, loaded in {took:?}");
        let verified = verified.expect("kernel reports verified instructions (5.16+)");
        assert!(
            verified < BUDGET,
            "log level {level}: {verified} instructions verified"
        );
        assert!(
            took < Duration::from_secs(5),
            "log level {level}: load took {took:?}"
        );
    }
}
