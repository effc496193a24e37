//! The `vpcgw` command. Errors end here, as one line each and an exit code;
//! nothing below panics on bad input.

use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use vpcgw::config::{self, ConfigError};
use vpcgw::explain::{Query, explain};
use vpcgw::stats::Snapshot;

#[derive(Parser)]
#[command(name = "vpcgw", version, about = "VPC VPN gateway data-plane agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration: exit 0 with a summary, or 1 with one line per problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the agent: load and attach the XDP program, serve the control socket.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Log level (error, warn, info, debug, trace) or a tracing filter;
        /// RUST_LOG wins when set. At debug the XDP program logs its decisions too.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// What the data plane does with a new flow, and why. First line: ALLOW, DENY or VPN <connection>.
    Explain {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        from: IpAddr,
        #[arg(long)]
        to: IpAddr,
        /// tcp, udp, icmp, icmpv6, or a protocol number.
        #[arg(long)]
        proto: String,
        /// Destination port (tcp/udp).
        #[arg(long)]
        port: Option<u16>,
        /// ICMP type (default: echo request).
        #[arg(long)]
        icmp_type: Option<u8>,
        #[arg(long, default_value_t = 0)]
        icmp_code: u8,
    },
    /// Each VPN connection's IKE state, with the reason when it is not up.
    Status {
        /// The configuration the agent runs (to find its control socket).
        #[arg(long, short, required_unless_present = "socket")]
        config: Option<PathBuf>,
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counters of a running agent (through its control socket).
    Stats {
        /// The configuration the agent runs (to find its control socket).
        #[arg(long, short, required_unless_present = "socket")]
        config: Option<PathBuf>,
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Check { config } => Ok(check(&config)),
        Cmd::Run { config, log_level } => {
            let debug = init_tracing(&log_level)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(vpcgw::run::run(config, debug))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Explain {
            config,
            from,
            to,
            proto,
            port,
            icmp_type,
            icmp_code,
        } => {
            let checked = load_or_report(&config)?;
            let proto = parse_proto(&proto)?;
            let v6 = from.is_ipv6();
            if matches!(proto, 6 | 17) && port.is_none() {
                bail!("--port is needed for tcp and udp");
            }
            let echo = if v6 { 128 } else { 8 };
            let q = Query {
                from,
                to,
                proto,
                port: port.unwrap_or(0),
                icmp: (icmp_type.unwrap_or(echo), icmp_code),
            };
            print!("{}", explain(&checked.config, &q)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status {
            config,
            socket,
            json,
        } => {
            let path = control_socket(socket, config)?;
            let answer = ask(&path, "status")?;
            if json {
                println!("{answer}");
            } else {
                let report: vpcgw::run::StatusReport = serde_json::from_str(&answer)
                    .with_context(|| format!("unexpected answer from {}", path.display()))?;
                print!("{}", render_status(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats {
            config,
            socket,
            json,
        } => {
            let path = control_socket(socket, config)?;
            let answer = ask(&path, "stats")?;
            if json {
                println!("{answer}");
            } else {
                let snap: Snapshot = serde_json::from_str(&answer)
                    .with_context(|| format!("unexpected answer from {}", path.display()))?;
                print!("{}", snap.render());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn control_socket(socket: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => load_or_report(&c)?.config.gateway.control_socket,
        (None, None) => bail!("--config or --socket is needed"),
    })
}

/// The human rendering of `vpcgw status`.
fn render_status(r: &vpcgw::run::StatusReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "gateway {}", r.gateway);
    if r.connections.is_empty() {
        let _ = writeln!(s, "  no VPN connections configured");
    }
    for c in &r.connections {
        let _ = write!(s, "{} (peer {}): {}", c.name, c.peer, c.state);
        if let Some(reason) = &c.reason {
            let _ = write!(s, " -- {reason}");
        }
        let _ = writeln!(s);
        if let (Some(i), Some(rr)) = (&c.ike_spi_i, &c.ike_spi_r) {
            let role = if c.initiator == Some(true) {
                "initiator"
            } else {
                "responder"
            };
            let _ = writeln!(
                s,
                "  IKE SA {i}_i {rr}_r, {role}, NAT {}, UDP {}, up {} s",
                c.nat.as_deref().unwrap_or("?"),
                c.local_port.unwrap_or(0),
                c.established_secs.unwrap_or(0)
            );
        }
        for ch in &c.children {
            let _ = writeln!(
                s,
                "  CHILD_SA {}_i {}_o  {} === {} ({})",
                ch.spi_in,
                ch.spi_out,
                ch.local_ts.join(", "),
                ch.remote_ts.join(", "),
                ch.state
            );
        }
    }
    s
}

/// `vpcgw check`: the summary, or one line per problem and exit 1.
fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            print!("{}", config::summary(&c.config, &c.warnings));
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            println!("{e}");
            ExitCode::from(1)
        }
    }
}

fn load_or_report(path: &Path) -> anyhow::Result<config::Checked> {
    match config::load(path) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(problems)) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!(
                "{} is not valid ({} problem(s)); see `vpcgw check`",
                path.display(),
                problems.len()
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_proto(s: &str) -> anyhow::Result<u8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        other => other
            .parse::<u8>()
            .with_context(|| format!("--proto {s:?}: expected tcp, udp, icmp, icmpv6 or 0-255"))?,
    })
}

/// One request on the control socket.
fn ask(path: &Path, cmd: &str) -> anyhow::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("connecting to {} (is `vpcgw run` running?)", path.display()))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    writeln!(s, "{cmd}")?;
    let mut line = String::new();
    std::io::BufReader::new(s.take_limited()).read_line(&mut line)?;
    Ok(line)
}

/// Reading an answer is bounded like everything else.
trait TakeLimited: std::io::Read + Sized {
    fn take_limited(self) -> std::io::Take<Self> {
        self.take(64 << 20)
    }
}
impl TakeLimited for std::os::unix::net::UnixStream {}

/// Set up tracing; returns whether debug logging is on (then the XDP
/// program logs its decisions as well).
fn init_tracing(level: &str) -> anyhow::Result<bool> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(level),
    }
    .with_context(|| format!("log level {level:?}"))?;
    let debug = filter
        .max_level_hint()
        .is_some_and(|l| l >= tracing::level_filters::LevelFilter::DEBUG);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(debug)
}
