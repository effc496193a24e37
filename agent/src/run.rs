//! `vpcgw run`: the agent.
//!
//! One tokio task owns the data plane and serialises everything that changes
//! it: signals (SIGINT/SIGTERM stop, SIGHUP reloads), the conntrack sweep,
//! and stats requests from the control socket (answered through a channel,
//! so no lock is ever held around the maps). The AF_XDP receiver is a plain
//! thread: it is a busy data-path loop, not a control-plane task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};
use vpcgw_common::abi::MAX_QUEUES;

use crate::compile::{Compiled, compile};
use crate::config::{self, Config, XdpMode};
use crate::dataplane::{AttachMode, Dataplane, LoadOptions, ifindex, monotonic_ns};
use crate::hostmaps::runtime_config;
use crate::ike::{self, SaEvent};
use crate::stats::{Snapshot, Totals};
use crate::xsk::{XskConfig, XskSocket, XskStats, spawn_receiver};
use std::collections::HashMap;

/// Requests the control socket forwards to the main loop.
enum Request {
    Stats(oneshot::Sender<Snapshot>),
    Status(oneshot::Sender<StatusReport>),
}

/// What `vpcgw status` shows: each connection's IKE state, with its reason.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatusReport {
    pub gateway: String,
    pub connections: Vec<ike::ConnReport>,
}

/// The IKE driver task and the means to reach it.
struct IkeTask {
    commands: mpsc::Sender<ike::Command>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The IKE-relevant configuration it runs: a reload restarts the task
    /// only when this changes.
    fingerprint: String,
}

async fn start_ike(cfg: &Config, sa_tx: mpsc::Sender<SaEvent>) -> anyhow::Result<Option<IkeTask>> {
    if cfg.connections.is_empty() {
        return Ok(None);
    }
    let engine_cfg = ike::engine_config(cfg)?;
    let sockets = ike::bind(cfg.gateway.public_ip).await?;
    let (tx, rx) = mpsc::channel(64);
    let handle = tokio::spawn(ike::drive(engine_cfg, sockets, rx, sa_tx));
    info!(
        connections = cfg.connections.len(),
        "IKE started on UDP 500 and 4500"
    );
    Ok(Some(IkeTask {
        commands: tx,
        handle,
        fingerprint: ike::fingerprint(cfg),
    }))
}

/// Close every IKE SA (Deletes reach the peers) and stop the task.
async fn stop_ike(task: IkeTask) {
    let (tx, rx) = oneshot::channel();
    if task.commands.send(ike::Command::Shutdown(tx)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
    }
    match tokio::time::timeout(Duration::from_secs(2), task.handle).await {
        Ok(Ok(Err(e))) => warn!("IKE stopped with an error: {e:#}"),
        Err(_) => warn!("IKE did not stop in time"),
        _ => {}
    }
}

async fn ike_status(task: Option<&IkeTask>) -> Vec<ike::ConnReport> {
    let Some(t) = task else {
        return vec![];
    };
    let (tx, rx) = oneshot::channel();
    if t.commands.send(ike::Command::Status(tx)).await.is_err() {
        return vec![];
    }
    tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default()
}

/// Settings that only take effect at start: a reload that changes them is
/// refused (the running configuration stays).
fn restart_only(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if a.gateway.wan_interface != b.gateway.wan_interface {
        v.push("gateway.wan_interface");
    }
    if a.gateway.lan_interfaces != b.gateway.lan_interfaces {
        v.push("gateway.lan_interfaces");
    }
    if a.gateway.xdp_mode != b.gateway.xdp_mode {
        v.push("gateway.xdp_mode");
    }
    if a.gateway.control_socket != b.gateway.control_socket {
        v.push("gateway.control_socket");
    }
    if a.conntrack.max_entries != b.conntrack.max_entries {
        v.push("conntrack.max_entries");
    }
    v
}

/// Load and compile, logging what was found.
fn prepare(path: &Path) -> anyhow::Result<(Config, Compiled)> {
    let checked = match config::load(path) {
        Ok(c) => c,
        Err(config::ConfigError::Invalid(problems)) => {
            for p in &problems {
                error!("{p}");
            }
            bail!("{}: {} problem(s)", path.display(), problems.len());
        }
        Err(e) => bail!("{e}"),
    };
    for w in &checked.warnings {
        warn!("{w}");
    }
    let compiled = compile(&checked.config).context("compiling the security groups")?;
    Ok((checked.config, compiled))
}

/// RX queues of an interface, as sysfs shows them (at least one).
fn rx_queues(ifname: &str) -> u32 {
    let dir = format!("/sys/class/net/{ifname}/queues");
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1);
    n.clamp(1, MAX_QUEUES)
}

pub async fn run(path: PathBuf, debug_log: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut cfg, mut compiled) = prepare(&path)?;
    let opts = LoadOptions {
        ct_entries: cfg.conntrack.max_entries,
        log_level: if debug_log { 4 } else { 0 },
        ..LoadOptions::default()
    };
    let mut dp = Dataplane::load(&opts).context("loading the XDP program")?;
    let mut logger = dp.take_logger();

    let lan_idx: Vec<u32> = cfg
        .gateway
        .lan_interfaces
        .iter()
        .map(|n| ifindex(n))
        .collect::<Result<_, _>>()?;
    let wan_idx = ifindex(&cfg.gateway.wan_interface)?;
    dp.set_interfaces(&lan_idx, wan_idx)?;
    let generation = dp.install(&compiled, runtime_config(&cfg, 0, 0))?;
    info!(
        generation,
        rules = compiled.rules.len(),
        policy_entries = compiled.policy.len(),
        "policy installed"
    );

    // AF_XDP sockets on every queue of every LAN interface, registered before
    // the program is attached, so no VPN-bound packet finds the map empty.
    let xsk_stats = Arc::new(XskStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = Vec::new();
    for (i, (name, idx)) in cfg.gateway.lan_interfaces.iter().zip(&lan_idx).enumerate() {
        for q in 0..rx_queues(name) {
            let s = XskSocket::open(*idx, q, &XskConfig::default())
                .with_context(|| format!("AF_XDP socket on {name} queue {q}"))?;
            dp.xsk_map()?
                .set(i as u32 * MAX_QUEUES + q, s.fd(), 0)
                .with_context(|| format!("registering the AF_XDP socket of {name} queue {q}"))?;
            sockets.push(s);
        }
    }
    let receiver = spawn_receiver(sockets, xsk_stats.clone(), stop.clone())
        .context("starting the AF_XDP receiver")?;

    let mode = match cfg.gateway.xdp_mode {
        XdpMode::Auto => AttachMode::Auto,
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
    };
    let ifaces: Vec<String> = cfg
        .gateway
        .lan_interfaces
        .iter()
        .chain(std::iter::once(&cfg.gateway.wan_interface))
        .cloned()
        .collect();
    for name in &ifaces {
        let a = dp.attach(name, mode)?;
        info!(interface = %a.ifname, ifindex = a.ifindex, mode = a.mode, "attached");
    }

    let (tx, mut rx) = mpsc::channel::<Request>(16);
    let socket_path = cfg.gateway.control_socket.clone();
    let listener = bind_control(&socket_path)?;
    let control = tokio::spawn(serve_control(listener, tx));

    let mut totals = Totals::default();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sweep = tokio::time::interval(cfg.conntrack.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log_poll = tokio::time::interval(Duration::from_millis(200));

    // IKE: CHILD_SAs come back on `sa_rx` (the crypto path's feed).
    let (sa_tx, mut sa_rx) = mpsc::channel::<SaEvent>(256);
    let mut ike_task = start_ike(&cfg, sa_tx.clone()).await?;
    // Connection -> inbound SPIs of its live CHILD_SAs.
    let mut children: HashMap<usize, Vec<u32>> = HashMap::new();
    // VPN-bound frames seen per connection, to negotiate on traffic.
    let mut seen_frames: Vec<u64> = Vec::new();
    let mut acquire = tokio::time::interval(Duration::from_secs(1));
    acquire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(config = %path.display(), socket = %socket_path.display(), "vpcgw running");

    loop {
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sighup.recv() => {
                info!(config = %path.display(), "SIGHUP: reloading");
                match prepare(&path) {
                    Err(e) => error!("reload refused, the running configuration stays: {e:#}"),
                    Ok((new_cfg, new_compiled)) => {
                        let fixed = restart_only(&cfg, &new_cfg);
                        if !fixed.is_empty() {
                            error!(
                                "reload refused, the running configuration stays: {} change(s) \
                                 only at restart",
                                fixed.join(", ")
                            );
                            continue;
                        }
                        let old_slot = dp.slot() as u32;
                        let counters = dp.counters();
                        match dp.install(&new_compiled, runtime_config(&new_cfg, 0, 0)) {
                            Ok(generation) => {
                                // The outgoing policy's counters, kept under names.
                                let rx = xsk_stats.take_slot(old_slot);
                                if let Ok(c) = counters {
                                    totals.carry(&cfg, &compiled, &c, &rx);
                                }
                                info!(generation, rules = new_compiled.rules.len(), "configuration reloaded");
                                // IKE restarts only when its part changed.
                                let changed = ike_task
                                    .as_ref()
                                    .map_or(!new_cfg.connections.is_empty(), |t| t.fingerprint != ike::fingerprint(&new_cfg));
                                if changed {
                                    if let Some(t) = ike_task.take() {
                                        stop_ike(t).await;
                                    }
                                    children.clear();
                                    match start_ike(&new_cfg, sa_tx.clone()).await {
                                        Ok(t) => ike_task = t,
                                        Err(e) => error!("IKE could not restart with the new configuration: {e:#}"),
                                    }
                                }
                                cfg = new_cfg;
                                compiled = new_compiled;
                            }
                            Err(e) => error!("reload failed while installing, the previous policy stays active: {e}"),
                        }
                    }
                }
            }
            _ = sweep.tick() => {
                match dp.sweep(monotonic_ns()) {
                    Ok(s) => {
                        totals.swept += s.expired;
                        debug!(scanned = s.scanned, expired = s.expired, frags = s.frags_expired, "conntrack sweep");
                    }
                    Err(e) => warn!("conntrack sweep: {e}"),
                }
            }
            _ = log_poll.tick() => {
                if let Some(l) = logger.as_mut() {
                    l.flush();
                }
            }
            Some(req) = rx.recv() => match req {
                Request::Stats(reply) => {
                    let snap = Snapshot::take(&dp, &cfg, &compiled, &totals, &xsk_stats, started);
                    let _ = reply.send(snap);
                }
                Request::Status(reply) => {
                    let connections = ike_status(ike_task.as_ref()).await;
                    let _ = reply.send(StatusReport { gateway: cfg.gateway.name.clone(), connections });
                }
            },
            Some(ev) = sa_rx.recv() => match ev {
                // The crypto path (ESP) takes these over; until it exists the
                // agent keeps track of which connections have a tunnel.
                SaEvent::Up(c) => {
                    let list = children.entry(c.conn).or_default();
                    if let Some(old) = c.rekeyed_from {
                        list.retain(|s| *s != old);
                    }
                    list.push(c.spi_in);
                }
                SaEvent::Down { conn, spi_in, .. } => {
                    if let Some(list) = children.get_mut(&conn) {
                        list.retain(|s| *s != spi_in);
                    }
                }
            },
            _ = acquire.tick() => {
                // VPN-bound traffic for a connection without a CHILD_SA:
                // negotiate now (the engine ignores it when an SA exists).
                let Some(t) = ike_task.as_ref() else { continue };
                seen_frames.resize(cfg.connections.len(), 0);
                for (conn, last) in seen_frames.iter_mut().enumerate() {
                    let now = xsk_stats.conn(dp.slot() as u32, conn as u32).map_or(0, |c| c.packets);
                    let idle = children.get(&conn).is_none_or(|l| l.is_empty());
                    if now > *last && idle && cfg.connections.get(conn).is_some_and(|c| c.initiator == config::Initiator::BiDirectional) {
                        let _ = t.commands.try_send(ike::Command::Acquire(conn));
                    }
                    *last = now;
                }
            }
        }
    }

    if let Some(t) = ike_task.take() {
        stop_ike(t).await;
        info!("IKE SAs closed");
    }
    control.abort();
    let _ = std::fs::remove_file(&socket_path);
    stop.store(true, Ordering::Relaxed);
    dp.detach_all()?;
    info!("detached");
    if receiver.join().is_err() {
        warn!("the AF_XDP receiver thread panicked");
    }
    Ok(())
}

fn bind_control(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the control socket", dir.display()))?;
    }
    // A socket left by a crashed run would make bind fail; one that answers
    // belongs to a live agent, which must not be hijacked.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{} answers: another vpcgw is running with it",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// One request per connection: a line with the command, a JSON answer.
async fn serve_control(listener: UnixListener, tx: mpsc::Sender<Request>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            // Bounded: a command is a word; refuse to read more.
            let mut r = BufReader::new(r).take(256);
            let read = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line)).await;
            let answer = match (read, line.trim()) {
                (Ok(Ok(_)), "stats") => {
                    let (otx, orx) = oneshot::channel();
                    if tx.send(Request::Stats(otx)).await.is_err() {
                        return;
                    }
                    match orx.await {
                        Ok(snap) => serde_json::to_string(&snap)
                            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                        Err(_) => return,
                    }
                }
                (Ok(Ok(_)), "status") => {
                    let (otx, orx) = oneshot::channel();
                    if tx.send(Request::Status(otx)).await.is_err() {
                        return;
                    }
                    match orx.await {
                        Ok(report) => serde_json::to_string(&report)
                            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                        Err(_) => return,
                    }
                }
                (Ok(Ok(_)), other) => {
                    serde_json::json!({ "error": format!("unknown command {other:?}") }).to_string()
                }
                _ => return,
            };
            let _ = w.write_all(answer.as_bytes()).await;
            let _ = w.write_all(b"\n").await;
        });
    }
}

use tokio::io::AsyncReadExt as _;
