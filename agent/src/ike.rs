//! The IKE driver: a tokio task around `vpcgw_ike::engine::Engine`.
//!
//! It owns the UDP sockets on ports 500 and 4500 of the gateway's public
//! address, hands every datagram and every timer to the engine, sends what
//! the engine wants sent, and passes established CHILD_SAs on to the crypto
//! path through a channel ([`SaEvent`]). The engine holds all the protocol
//! logic; nothing here decides anything.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant as StdInstant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use vpcgw_ike::crypto::Secret;
use vpcgw_ike::engine::{
    ChildSaInfo, ConnSpec, ConnState, Dpd, DpdAction, Engine, EngineConfig, EspAlgs, Event,
    Identity, IkeAlgs, Subnet, Transmit,
};

use crate::config::{self, Config, Initiator};

pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;

/// What the crypto path is told.
#[derive(Debug)]
pub enum SaEvent {
    Up(Box<ChildSaInfo>),
    Down {
        conn: usize,
        spi_in: u32,
        spi_out: u32,
        reason: String,
    },
}

/// Requests to the driver.
pub enum Command {
    /// Negotiate connection `conn` now (VPN-bound traffic found no tunnel).
    Acquire(usize),
    Status(oneshot::Sender<Vec<ConnReport>>),
    /// Close every IKE SA (Deletes to the peers), then stop.
    Shutdown(oneshot::Sender<()>),
}

/// A connection as `vpcgw status` shows it. No keys, ever.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnReport {
    pub name: String,
    pub peer: String,
    pub state: String,
    pub reason: Option<String>,
    pub ike_spi_i: Option<String>,
    pub ike_spi_r: Option<String>,
    pub initiator: Option<bool>,
    pub nat: Option<String>,
    pub local_port: Option<u16>,
    pub established_secs: Option<u64>,
    pub children: Vec<ChildReport>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildReport {
    pub spi_in: String,
    pub spi_out: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub state: String,
}

fn subnets(v: &[ipnet::IpNet]) -> Vec<Subnet> {
    v.iter()
        .map(|n| Subnet {
            addr: n.network(),
            prefix_len: n.prefix_len(),
        })
        .collect()
}

/// The engine's view of the configuration. Reads the PSK files (checked
/// already by validation; read again here so a key is only ever held by
/// the engine).
pub fn engine_config(cfg: &Config) -> anyhow::Result<EngineConfig> {
    let mut conns = Vec::new();
    for c in &cfg.connections {
        let ike = cfg
            .ike_policies
            .get(c.ike_policy)
            .context("connection names a missing IKE policy")?;
        let esp = cfg
            .ipsec_policies
            .get(c.ipsec_policy)
            .context("connection names a missing IPsec policy")?;
        let psk = config::read_psk(&c.psk_file)
            .with_context(|| format!("connection {}: reading its PSK file", c.name))?;
        let dpd = match c.dpd.action {
            config::DpdAction::Disabled => None,
            a => Some(Dpd {
                interval: c.dpd.interval,
                timeout: c.dpd.timeout,
                action: match a {
                    config::DpdAction::Hold => DpdAction::Hold,
                    config::DpdAction::Clear => DpdAction::Clear,
                    _ => DpdAction::Restart,
                },
            }),
        };
        conns.push(ConnSpec {
            name: c.name.clone(),
            peer: c.peer_address,
            local_id: Identity::parse(&c.local_id),
            remote_id: Identity::parse(&c.peer_id),
            psk: Secret::new(psk),
            ike: IkeAlgs {
                encr: ike.encryption,
                integ: ike.integrity,
                prf: ike.prf,
                dh: ike.dh_group,
            },
            ike_lifetime: ike.lifetime,
            esp: EspAlgs {
                encr: esp.encryption,
                integ: esp.integrity,
                pfs: esp.pfs,
            },
            esp_lifetime: esp.lifetime,
            local_ts: subnets(&c.local_subnets),
            remote_ts: subnets(&c.remote_subnets),
            initiator: c.initiator == Initiator::BiDirectional,
            dpd,
        });
    }
    Ok(EngineConfig::new(cfg.gateway.public_ip, conns))
}

/// The IKE-relevant part of a configuration, to tell whether a reload
/// changes it (PSK contents included: a new key means new SAs).
pub fn fingerprint(cfg: &Config) -> String {
    let mut s = format!("{:?}", cfg.gateway.public_ip);
    for c in &cfg.connections {
        // Only change is detected here: a hash of the key is enough, and
        // the key itself never enters a string.
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        config::read_psk(&c.psk_file)
            .unwrap_or_default()
            .hash(&mut h);
        s.push_str(&format!(
            "|{:?}|{:?}|{:?}|{:x}",
            c,
            cfg.ike_policies.get(c.ike_policy),
            cfg.ipsec_policies.get(c.ipsec_policy),
            h.finish()
        ));
    }
    s
}

/// Bind the IKE sockets on the public address.
pub async fn bind(addr: IpAddr) -> anyhow::Result<(UdpSocket, UdpSocket)> {
    let s500 = UdpSocket::bind(SocketAddr::new(addr, IKE_PORT))
        .await
        .with_context(|| format!("binding UDP {addr}:{IKE_PORT} for IKE"))?;
    let s4500 = UdpSocket::bind(SocketAddr::new(addr, NATT_PORT))
        .await
        .with_context(|| format!("binding UDP {addr}:{NATT_PORT} for IKE/ESP in UDP"))?;
    Ok((s500, s4500))
}

/// Run the driver until `Command::Shutdown`. `sa_tx` gets the CHILD_SAs.
pub async fn drive(
    cfg: EngineConfig,
    sockets: (UdpSocket, UdpSocket),
    mut commands: mpsc::Receiver<Command>,
    sa_tx: mpsc::Sender<SaEvent>,
) -> anyhow::Result<()> {
    let (s500, s4500) = sockets;
    let start = StdInstant::now();
    let mut engine = Engine::new(cfg, start).context("starting the IKE engine")?;
    let names: Vec<String> = engine
        .config()
        .connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let initiators: Vec<usize> = engine
        .config()
        .connections
        .iter()
        .enumerate()
        .filter(|(_, c)| c.initiator)
        .map(|(i, _)| i)
        .collect();
    for i in initiators {
        engine.initiate(StdInstant::now(), i);
    }
    let mut states: HashMap<usize, ConnState> = HashMap::new();
    // Any UDP datagram fits (IKE_SA_INIT with MODP 2048 is ~600 bytes).
    let mut buf = vec![0u8; 65_536];
    const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);
    let idle = || tokio::time::Instant::now() + IDLE;
    // One timer, moved when the engine's next deadline moves: a new timer
    // per datagram costs more than answering an IKE_SA_INIT with a cookie.
    let timer = tokio::time::sleep_until(idle());
    tokio::pin!(timer);
    loop {
        flush(&mut engine, &s500, &s4500).await;
        events(&mut engine, &names, &mut states, &sa_tx).await;
        let wake = match engine.poll_timeout() {
            Some(t) => tokio::time::Instant::from_std(t),
            // Nothing due: keep a far deadline rather than move it each time.
            None if timer.deadline() > tokio::time::Instant::now() + IDLE / 2 => timer.deadline(),
            None => idle(),
        };
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        tokio::select! {
            r = s500.readable() => match r {
                Ok(()) => drain(&mut engine, &s500, IKE_PORT, &mut buf),
                Err(e) => debug!("IKE socket 500: {e}"),
            },
            r = s4500.readable() => match r {
                Ok(()) => drain(&mut engine, &s4500, NATT_PORT, &mut buf),
                Err(e) => debug!("IKE socket 4500: {e}"),
            },
            _ = &mut timer => engine.handle_timeout(StdInstant::now()),
            c = commands.recv() => match c {
                Some(Command::Acquire(conn)) => engine.initiate(StdInstant::now(), conn),
                Some(Command::Status(reply)) => {
                    let _ = reply.send(report(&engine));
                }
                Some(Command::Shutdown(done)) => {
                    engine.shutdown(StdInstant::now());
                    flush(&mut engine, &s500, &s4500).await;
                    events(&mut engine, &names, &mut states, &sa_tx).await;
                    let _ = done.send(());
                    return Ok(());
                }
                None => {
                    engine.shutdown(StdInstant::now());
                    flush(&mut engine, &s500, &s4500).await;
                    return Ok(());
                }
            },
        }
    }
}

/// IPv4-mapped addresses from a dual-stack socket, as plain IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Datagrams handled per wake-up before the answers go out.
const BATCH: usize = 64;

/// Hands the engine what `sock` has queued, up to [`BATCH`] datagrams: one
/// wake-up per batch rather than per datagram, which is what keeps the
/// driver ahead of an IKE_SA_INIT flood.
fn drain(engine: &mut Engine, sock: &UdpSocket, port: u16, buf: &mut [u8]) {
    for _ in 0..BATCH {
        match sock.try_recv_from(buf) {
            Ok((n, from)) => {
                if let Some(d) = buf.get(..n) {
                    engine.handle_datagram(StdInstant::now(), port, unmap(from), d);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                debug!("IKE socket {port}: {e}");
                return;
            }
        }
    }
}

async fn flush(engine: &mut Engine, s500: &UdpSocket, s4500: &UdpSocket) {
    while let Some(Transmit {
        src_port,
        dst,
        data,
    }) = engine.poll_transmit()
    {
        let sock = if src_port == NATT_PORT { s4500 } else { s500 };
        if let Err(e) = sock.send_to(&data, dst).await {
            debug!(%dst, "sending IKE: {e}");
        }
    }
}

async fn events(
    engine: &mut Engine,
    names: &[String],
    states: &mut HashMap<usize, ConnState>,
    sa_tx: &mpsc::Sender<SaEvent>,
) {
    while let Some(e) = engine.poll_event() {
        match e {
            Event::StateChanged {
                conn,
                state,
                reason,
            } => {
                let name = names.get(conn).map_or("?", |s| s.as_str());
                let changed = states.insert(conn, state) != Some(state);
                match (&reason, state) {
                    (Some(r), ConnState::Down) => warn!(connection = name, "{}: {r}", state.name()),
                    (Some(r), _) => warn!(connection = name, "{}, but {r}", state.name()),
                    (None, _) if changed => info!(connection = name, "{}", state.name()),
                    _ => {}
                }
            }
            Event::ChildUp(c) => {
                // SPIs and selectors only: the keys stay in `c`.
                info!(
                    connection = %c.conn_name,
                    spi_in = format_args!("{:08x}", c.spi_in),
                    spi_out = format_args!("{:08x}", c.spi_out),
                    encap = c.encap,
                    rekey_of = ?c.rekeyed_from.map(|s| format!("{s:08x}")),
                    "CHILD_SA installed"
                );
                let _ = sa_tx.send(SaEvent::Up(c)).await;
            }
            Event::ChildDown {
                conn,
                spi_in,
                spi_out,
                reason,
            } => {
                let name = names.get(conn).map_or("?", |s| s.as_str());
                info!(
                    connection = name,
                    spi_in = format_args!("{spi_in:08x}"),
                    "CHILD_SA removed: {reason}"
                );
                let _ = sa_tx
                    .send(SaEvent::Down {
                        conn,
                        spi_in,
                        spi_out,
                        reason,
                    })
                    .await;
            }
        }
    }
}

fn report(engine: &Engine) -> Vec<ConnReport> {
    let now = StdInstant::now();
    engine
        .status(now)
        .into_iter()
        .zip(engine.config().connections.iter())
        .map(|(s, spec)| ConnReport {
            name: s.name,
            peer: spec.peer.to_string(),
            state: s.state.name().to_string(),
            reason: s.reason,
            ike_spi_i: s.ike.as_ref().map(|i| i.spi_i.clone()),
            ike_spi_r: s.ike.as_ref().map(|i| i.spi_r.clone()),
            initiator: s.ike.as_ref().map(|i| i.initiator),
            nat: s.ike.as_ref().map(|i| match (i.nat_local, i.nat_remote) {
                (false, false) => "none".into(),
                (true, false) => "local".into(),
                (false, true) => "remote".into(),
                (true, true) => "both".into(),
            }),
            local_port: s.ike.as_ref().map(|i| i.local_port),
            established_secs: s.ike.as_ref().and_then(|i| i.established_secs),
            children: s
                .ike
                .map(|i| {
                    i.children
                        .into_iter()
                        .map(|c| ChildReport {
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                            local_ts: c.local_ts,
                            remote_ts: c.remote_ts,
                            state: c.state.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}
