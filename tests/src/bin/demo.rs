//! `cargo xtask demo`: the gateway at work, in network namespaces.
//!
//! Builds the standard test bed (see `vpcgw_tests::bed`), starts
//! `vpcgw run --config examples/site-to-site.toml` in the gateway namespace,
//! then tries a few flows and shows, for each, what the security groups say
//! and what happened. Everything it creates is removed at the end, also on
//! failure or Ctrl-C. Exit status: 0 if every expectation held.
//!
//! Options: `--verbose` (show the agent's log as it runs), `--config FILE`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use vpcgw_tests::agent::{Agent, READY_LIMIT, Readiness, last_lines, vpcgw};
use vpcgw_tests::bed::{self, Bed, sock};
use vpcgw_tests::{Connect, netns, repo_root, require_root, vpcgw_bin};

const DEFAULT_CONFIG: &str = "examples/site-to-site.toml";
/// A denied TCP connection is one that gets no answer within this.
const CONNECT_LIMIT: Duration = Duration::from_secs(1);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

struct Opts {
    verbose: bool,
    config: PathBuf,
}

fn parse_args() -> Result<Option<Opts>> {
    let mut opts = Opts {
        verbose: false,
        config: PathBuf::from(DEFAULT_CONFIG),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-v" | "--verbose" => opts.verbose = true,
            "--config" => {
                opts.config = args.next().context("--config needs a file")?.into();
            }
            "-h" | "--help" => {
                println!(
                    "usage: demo [--verbose] [--config FILE]   (run it with `cargo xtask demo`)"
                );
                return Ok(None);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(Some(opts))
}

fn main() -> ExitCode {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(tally) => {
            println!();
            println!("demo: {} passed, {} failed", tally.passed, tally.failed);
            if tally.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!();
            println!(
                "demo: {} — stopped, everything it created is removed",
                red("ERROR")
            );
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn color(code: &str, s: &str) -> String {
    if std::io::stdout().is_terminal() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}
fn red(s: &str) -> String {
    color("1;31", s)
}
fn green(s: &str) -> String {
    color("1;32", s)
}
fn bold(s: &str) -> String {
    color("1", s)
}

fn heading(s: &str) {
    println!();
    println!("{}", bold(&format!("== {s}")));
}

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    /// Prints one expectation: mark, flow, expected verdict, why; then what
    /// was seen.
    fn check(&mut self, pass: bool, flow: &str, expect: &str, why: &str, seen: &str) {
        let mark = if pass {
            self.passed += 1;
            green("PASS")
        } else {
            self.failed += 1;
            red("FAIL")
        };
        println!("  [{mark}] {flow:<26} {expect:<8} {why}");
        println!("         {:<26} seen:    {seen}", "");
    }
}

fn indent(text: &str) -> String {
    let mut out = String::new();
    for l in text.trim_end().lines() {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("    (no output)\n");
    }
    out
}

fn describe_connect(c: &Connect) -> String {
    match c {
        Connect::Connected(line) => format!("connected, server answered {line:?}"),
        Connect::Refused => "refused (RST): the SYN reached the host".into(),
        Connect::TimedOut => format!("no answer within {CONNECT_LIMIT:?} (dropped)"),
        Connect::Other(e) => e.clone(),
    }
}

fn run(opts: &Opts) -> Result<Tally> {
    require_root()?;
    let bin = vpcgw_bin()?;
    let bin = bin.canonicalize().unwrap_or(bin);
    let config_shown = opts.config.display().to_string();
    // Relative: from the current directory (xtask runs us from the
    // repository root), else from the repository this was built from.
    let config = if opts.config.is_absolute() || opts.config.is_file() {
        opts.config.clone()
    } else {
        repo_root().join(&opts.config)
    };
    let config = config.canonicalize().unwrap_or(config);
    if !config.is_file() {
        bail!(
            "{} not found: the demo runs the agent with it",
            config.display()
        );
    }
    let cfg = config.to_string_lossy().into_owned();

    println!(
        "{}",
        bold("vpcgw demo: XDP security groups on a gateway, in network namespaces")
    );
    println!(
        "
  srv1 192.168.1.10 (sg-web) ─lan0─┐
                                   gw ─wan0─ [switch] ─┬─ dc 198.51.100.2 ── dchost 192.168.3.10
  srv2 192.168.2.10 (sg-db)  ─lan1─┘ 198.51.100.1      └─ inet 198.51.100.100 (the internet)

  The agent runs in gw with {config_shown}. dc is the remote data
  center: its subnets (192.168.3.0/24, 192.168.4.0/24) are reached through the
  site-to-site VPN, never in clear. Nothing here touches the host's own network."
    );

    heading("Building the test bed (7 network namespaces)");
    let t = Instant::now();
    let bed = Bed::new()?;
    println!(
        "  ready in {} ms; namespaces: {}",
        t.elapsed().as_millis(),
        bed.namespaces()
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(" ")
    );
    interrupted()?;

    let mut tally = Tally::default();
    let result = demo_on_bed(opts, &bed, &bin, &cfg, &config_shown, &mut tally);

    heading("Tearing down");
    let prefix = bed.prefix().to_string();
    drop(bed);
    let left: Vec<String> = netns::list_namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if left.is_empty() {
        println!("  all namespaces removed");
    } else {
        println!("  {} namespaces left: {left:?}", red("WARNING"));
    }
    result.map(|()| tally)
}

fn demo_on_bed(
    opts: &Opts,
    bed: &Bed,
    bin: &Path,
    cfg: &str,
    config_shown: &str,
    tally: &mut Tally,
) -> Result<()> {
    heading(&format!(
        "Checking the configuration: vpcgw check --config {config_shown}"
    ));
    let (ok, text) = vpcgw(&bed.gw, bin, &["check", "--config", cfg])?;
    print!("{}", indent(&text));
    tally.check(
        ok,
        "vpcgw check",
        "valid",
        "the example configuration is accepted",
        if ok { "exit 0" } else { "rejected" },
    );
    interrupted()?;

    // Real listeners on every port tried, so a denied connection is the
    // gateway's doing (a closed port would answer RST instead).
    let web = bed.srv1.tcp_serve(sock(bed::SRV1_IP, 80))?;
    let ssh = bed.srv1.tcp_serve(sock(bed::SRV1_IP, 22))?;
    let db = bed.srv2.tcp_serve(sock(bed::SRV2_IP, 5432))?;
    println!(
        "\n  servers listening: srv1 tcp/80, srv1 tcp/22, srv2 tcp/5432 (each answers one line)"
    );

    heading(&format!(
        "Starting the agent in gw: vpcgw run --config {config_shown}"
    ));
    let agent = Agent::start(&bed.gw, bin, Path::new(cfg))?;
    agent.process().set_echo(opts.verbose);
    let Some(how) = wait_ready(&agent)? else {
        tally.check(
            false,
            "agent start",
            "ready",
            "attaches within 30 s",
            "not ready",
        );
        println!(
            "  agent log (last lines):\n{}",
            indent(&last_lines(&agent.log(), 30))
        );
        stop_agent(&agent, tally)?;
        return Ok(());
    };
    println!("  ready ({how})");

    heading("Flows through the gateway");
    let r = flows(bed, &web, &ssh, &db, tally);
    if r.is_err() || tally.failed > 0 {
        println!(
            "  agent log (last lines):\n{}",
            indent(&last_lines(&agent.log(), 30))
        );
    }
    r?;

    heading(&format!("Counters: vpcgw stats --config {config_shown}"));
    match vpcgw(&bed.gw, bin, &["stats", "--config", cfg])? {
        (true, text) => print!("{}", indent(&text)),
        (false, text) => println!("  (not available yet: {})", last_lines(text.trim(), 1)),
    }
    interrupted()?;

    heading("Why: vpcgw explain (the policy decision for a flow, from the configuration)");
    for (from, to, proto, port) in [
        (bed::INET_IP, bed::SRV1_IP, "tcp", "80"),
        (bed::INET_IP, bed::SRV1_IP, "tcp", "22"),
        (bed::SRV1_IP, bed::SRV2_IP, "tcp", "5432"),
    ] {
        let (from, to) = (from.to_string(), to.to_string());
        let args = [
            "explain", "--config", cfg, "--from", &from, "--to", &to, "--proto", proto, "--port",
            port,
        ];
        println!("  $ vpcgw explain --from {from} --to {to} --proto {proto} --port {port}");
        match vpcgw(&bed.gw, bin, &args)? {
            (true, text) => print!("{}", indent(&text)),
            (false, text) => println!("    (not available yet: {})", last_lines(text.trim(), 1)),
        }
    }
    interrupted()?;

    heading("Stopping the agent (SIGINT)");
    stop_agent(&agent, tally)?;
    let links = bed.gw.ip(&["-o", "link", "show"])?;
    let still: Vec<&str> = links
        .lines()
        .filter(|l| l.contains(" xdp"))
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    if still.is_empty() {
        println!("  gw's interfaces have no XDP program left");
    } else {
        println!(
            "  note: XDP programs still attached in gw on: {}",
            still.join(", ")
        );
    }
    Ok(())
}

/// Waits until the agent is ready (see [`Agent::wait_ready`]); says why
/// not when it is not.
fn wait_ready(agent: &Agent) -> Result<Option<String>> {
    let start = Instant::now();
    let ready = agent.wait_ready(READY_LIMIT, || INTERRUPTED.load(Ordering::Relaxed));
    interrupted()?;
    match ready {
        Readiness::Ready(how) => return Ok(Some(how)),
        Readiness::Exited(st) => println!(
            "  {} the agent exited ({st}) before it was ready",
            red("FAIL:")
        ),
        Readiness::TimedOut | Readiness::Cancelled => println!(
            "  {} not ready after {:.0?} (its log shows no \"attached\" for every interface, \
             and vpcgw stats does not answer)",
            red("FAIL:"),
            start.elapsed()
        ),
    }
    Ok(None)
}

fn stop_agent(agent: &Agent, tally: &mut Tally) -> Result<()> {
    let (status, own) = agent.stop(libc::SIGINT, Duration::from_secs(10))?;
    let pass = own && status.success();
    let seen = if own {
        format!("exited: {status}")
    } else {
        "had to be killed after 10 s".to_string()
    };
    tally.check(
        pass,
        "agent stop",
        "clean",
        "stops on SIGINT, exit status 0",
        &seen,
    );
    Ok(())
}

fn flows(
    bed: &Bed,
    web: &netns::TcpServer,
    ssh: &netns::TcpServer,
    db: &netns::TcpServer,
    tally: &mut Tally,
) -> Result<()> {
    // 1. The web port is open to everyone.
    let before = web.accepted();
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV1_IP, 80), CONNECT_LIMIT)?;
    tally.check(
        matches!(got, Connect::Connected(_)) && web.accepted() > before,
        "inet -> srv1 tcp/80",
        "allowed",
        "sg-web allows tcp 80 from anywhere",
        &describe_connect(&got),
    );
    interrupted()?;

    // 2. SSH only from the data center.
    let before = ssh.accepted();
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV1_IP, 22), CONNECT_LIMIT)?;
    tally.check(
        got == Connect::TimedOut && ssh.accepted() == before,
        "inet -> srv1 tcp/22",
        "denied",
        "sg-web allows ssh only from the DC subnets",
        &describe_connect(&got),
    );
    interrupted()?;

    // 3. The database is not reachable from the internet.
    let before = db.accepted();
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV2_IP, 5432), CONNECT_LIMIT)?;
    tally.check(
        got == Connect::TimedOut && db.accepted() == before,
        "inet -> srv2 tcp/5432",
        "denied",
        "sg-db allows 5432 only from members of sg-web",
        &describe_connect(&got),
    );
    interrupted()?;

    // 4. ... but it is from the web server (remote_group).
    let before = db.accepted();
    let got = bed
        .srv1
        .tcp_connect(sock(bed::SRV2_IP, 5432), CONNECT_LIMIT)?;
    tally.check(
        matches!(got, Connect::Connected(_)) && db.accepted() > before,
        "srv1 -> srv2 tcp/5432",
        "allowed",
        "srv1 is in sg-web; sg-db allows 5432 from sg-web (remote group)",
        &describe_connect(&got),
    );
    interrupted()?;

    // 5. Ping from the internet: icmp is only open to the data center.
    let echoes = bed.srv1.snmp("Icmp", "InEchos")?;
    let replies = bed.inet.ping(&bed::SRV1_IP.to_string(), 2)?;
    let reached = bed.srv1.snmp("Icmp", "InEchos")?.saturating_sub(echoes);
    tally.check(
        replies == 0 && reached == 0,
        "inet -> srv1 ping",
        "denied",
        "sg-web allows icmp only from the DC subnets",
        &format!("{replies}/2 replies, {reached} echo requests reached srv1"),
    );
    interrupted()?;

    // 6. Egress is open, and the replies come back as part of the flow.
    let replies = bed.srv1.ping(&bed::INET_IP.to_string(), 2)?;
    tally.check(
        replies == 2,
        "srv1 -> inet ping",
        "allowed",
        "egress allows all; conntrack lets the replies back in",
        &format!("{replies}/2 replies"),
    );
    interrupted()?;

    // 7. VPN-bound traffic never leaves in clear.
    let echoes = bed.dchost.snmp("Icmp", "InEchos")?;
    let replies = bed.srv1.ping(&bed::DCHOST_IP.to_string(), 2)?;
    let reached = bed.dchost.snmp("Icmp", "InEchos")?.saturating_sub(echoes);
    tally.check(
        reached == 0,
        "srv1 -> dchost ping",
        "to VPN",
        "192.168.3.0/24 is behind the tunnel: handed to the crypto path, not routed in clear",
        &format!("{reached} echo requests reached dchost in clear ({replies}/2 replies)"),
    );
    Ok(())
}
