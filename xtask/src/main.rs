//! `cargo xtask`: the project's tasks (setup, build, run, test, fuzz, demo, bench).
//!
//! Deliberately independent of the agent and the eBPF crates: `setup` must
//! build and run before bpf-linker exists.

mod cmd;
mod setup;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::cmd::{
    cargo, cmd, echo, human, libfuzzer_runs, repo_root, run, run_counting_tests, run_status,
    run_watching_stderr, timed,
};
use crate::setup::{Verbosity, is_root};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "vpcgw project tasks. On a fresh machine: `cargo xtask demo`, `cargo xtask test`."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (Debian packages, nightly rust-src, bpf-linker, cargo-fuzz, bpffs); idempotent.
    Setup,
    /// Build the workspace (agent binary `vpcgw`, eBPF program included).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run target/{debug,release}/vpcgw with ARGS (as root for `run`).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for vpcgw, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Everything: rustfmt, clippy, unit and privileged integration tests (as root), then a 60 s fuzz run.
    Test,
    /// Fuzz the IKE message parser (cargo-fuzz, nightly) until interrupted,
    /// or as libFuzzer ARGS after `--` say (e.g. `-- -max_total_time=600`).
    Fuzz {
        /// libFuzzer arguments, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then show the gateway at work in network namespaces (as root).
    Demo {
        #[arg(long)]
        release: bool,
        /// Arguments for the demo binary, after `--` (e.g. `-- --verbose`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build in release, then run the benchmarks (as root).
    Bench {
        /// Arguments for the bench binary, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.task) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> Result<ExitCode> {
    match task {
        Task::Setup => setup::setup(Verbosity::Full).map(|()| ExitCode::SUCCESS),
        Task::Build { release } => {
            setup::ensure_build_tools()?;
            build(release).map(|()| ExitCode::SUCCESS)
        }
        Task::Run { release, args } => run_agent(release, &args),
        Task::Test => test(),
        Task::Fuzz { args } => {
            setup::ensure_fuzz_tools()?;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (status, _) = fuzz(&args)?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Task::Demo { release, args } => {
            require_root(
                "demo",
                "it creates network namespaces and attaches XDP programs",
            )?;
            setup::setup(Verbosity::Brief)?;
            build(release)?;
            run_test_bin("demo", release, &args)
        }
        Task::Bench { args } => {
            require_root(
                "bench",
                "it creates network namespaces and attaches XDP programs",
            )?;
            setup::setup(Verbosity::Brief)?;
            build(true)?;
            run_test_bin("bench", true, &args)
        }
    }
}

fn require_root(task: &str, why: &str) -> Result<()> {
    if !is_root() {
        bail!("`cargo xtask {task}` must run as root: {why}");
    }
    Ok(())
}

fn profile(release: bool) -> &'static str {
    if release { "release" } else { "debug" }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// target/{debug,release}/NAME
fn artifact(name: &str, release: bool) -> PathBuf {
    target_dir().join(profile(release)).join(name)
}

fn build(release: bool) -> Result<()> {
    eprintln!(
        "== build: workspace ({}; the first build also compiles the eBPF program)",
        profile(release)
    );
    let mut args = vec!["build", "--workspace"];
    if release {
        args.push("--release");
    }
    let (r, took) = timed(|| run(cargo(&args)));
    r?;
    eprintln!(
        "== build: done in {} -> {}",
        human(took),
        artifact("vpcgw", release).display()
    );
    Ok(())
}

fn run_agent(release: bool, args: &[String]) -> Result<ExitCode> {
    setup::setup(Verbosity::Brief)?;
    build(release)?;
    if !is_root() {
        eprintln!("xtask: note: not root; `vpcgw run` needs root to attach XDP programs");
    }
    let mut c = std::process::Command::new(artifact("vpcgw", release));
    c.args(args);
    echo(&c);
    // Only returns on failure.
    let err = c.exec();
    Err(err).context("cannot exec vpcgw")
}

/// Runs target/PROFILE/NAME (a binary of vpcgw-tests) with VPCGW_BIN set,
/// from the repository root; its exit code becomes ours.
fn run_test_bin(name: &str, release: bool, args: &[String]) -> Result<ExitCode> {
    let mut c = std::process::Command::new(artifact(name, release));
    c.args(args)
        .current_dir(repo_root())
        .env("VPCGW_BIN", artifact("vpcgw", release));
    let status = run_status(c)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("xtask: {name} was killed by a signal ({status})");
            ExitCode::FAILURE
        }
    })
}

/// The fuzz target (fuzz/fuzz_targets/) that `test` and `fuzz` run.
const FUZZ_TARGET: &str = "ike_message";
/// libFuzzer's memory limit: ASan's shadow memory counts in the RSS.
const FUZZ_RSS_LIMIT: &str = "-rss_limit_mb=2048";

/// `cargo +nightly fuzz run ike_message -- -rss_limit_mb=2048 ARGS` from
/// the repository root (later libFuzzer flags win). New inputs go to
/// fuzz/corpus/ike_message (only its seed-* files are tracked), crashes to
/// fuzz/artifacts/ike_message. Returns the status and the number of
/// executions libFuzzer reported.
fn fuzz(args: &[&str]) -> Result<(std::process::ExitStatus, Option<u64>)> {
    let mut c = cmd(
        "cargo",
        &["+nightly", "fuzz", "run", FUZZ_TARGET, "--", FUZZ_RSS_LIMIT],
    );
    c.args(args);
    let mut runs = None;
    let status = run_watching_stderr(c, |line| {
        if let Some(n) = libfuzzer_runs(line) {
            runs = Some(n);
        }
    })?;
    Ok((status, runs))
}

struct Step {
    name: &'static str,
    ok: bool,
    took: Duration,
    note: String,
}

impl Step {
    fn new(name: &'static str, ok: bool, took: Duration) -> Step {
        Step {
            name,
            ok,
            took,
            note: String::new(),
        }
    }
}

/// The README's test command: rustfmt, clippy and every test (unit tests and
/// the privileged tests of vpcgw-tests). All steps run even when one fails,
/// then a summary.
fn test() -> Result<ExitCode> {
    require_root(
        "test",
        "the integration tests create network namespaces and load XDP programs \
         (run `sudo -E cargo xtask test`, or as root)",
    )?;
    setup::setup(Verbosity::Brief)?;

    let mut steps = Vec::new();

    eprintln!("== test 1/5: formatting (cargo fmt --check)");
    let (r, took) = timed(|| run_status(cargo(&["fmt", "--all", "--check"])));
    steps.push(Step::new("rustfmt", r?.success(), took));

    eprintln!("== test 2/5: lints (cargo clippy, warnings are errors)");
    let (r, took) = timed(|| {
        run_status(cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    steps.push(Step::new("clippy", r?.success(), took));

    // The privileged tests run the agent binary (VPCGW_BIN), which
    // `cargo test` alone does not build.
    eprintln!("== test 3/5: build (cargo build --workspace)");
    let (r, took) = timed(|| run_status(cargo(&["build", "--workspace"])));
    steps.push(Step::new("build", r?.success(), took));

    eprintln!("== test 4/5: unit and privileged integration tests (cargo test --workspace)");
    let mut c = cargo(&["test", "--workspace", "--no-fail-fast"]);
    c.env("VPCGW_BIN", artifact("vpcgw", false));
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        c.env("RUST_BACKTRACE", "1");
    }
    let (r, took) = timed(|| run_counting_tests(c));
    let (status, n) = r?;
    let mut step = Step::new("tests", status.success(), took);
    step.note = format!(
        "{} passed, {} failed, {} ignored",
        n.passed, n.failed, n.ignored
    );
    steps.push(step);

    // A separate step: a crash shows as a failed step of its own.
    eprintln!("== test 5/5: fuzzing the IKE message parser for 60 s (cargo +nightly fuzz)");
    let (r, took) = timed(|| fuzz(&["-max_total_time=60"]));
    let (status, runs) = r?;
    let mut step = Step::new("fuzz", status.success(), took);
    step.note = match (status.success(), runs) {
        (true, Some(runs)) => format!("{FUZZ_TARGET}: {runs} executions, no crash"),
        (true, None) => format!("{FUZZ_TARGET}: no crash"),
        (false, _) => format!("{FUZZ_TARGET}: failed, see fuzz/artifacts/{FUZZ_TARGET}/"),
    };
    steps.push(step);

    eprintln!();
    eprintln!("== summary");
    for s in &steps {
        eprintln!(
            "  {}  {:<8} {:>8}  {}",
            if s.ok { "PASS" } else { "FAIL" },
            s.name,
            human(s.took),
            s.note
        );
    }
    let failed_steps: Vec<&str> = steps.iter().filter(|s| !s.ok).map(|s| s.name).collect();
    // A plain closing line for whoever reads the log (none if no test ran,
    // e.g. when the tests did not compile).
    if n.passed + n.failed + n.ignored > 0 {
        println!(
            "tests: {} passed, {} failed, {} skipped",
            n.passed, n.failed, n.ignored
        );
    }
    if failed_steps.is_empty() {
        eprintln!("== all steps passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("== FAILED: {}", failed_steps.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
