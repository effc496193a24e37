//! IKE_SA_INIT floods on the wire: what an attacker who can spoof (or own)
//! the peer's address sends, and what comes back. Used by the interop test
//! that checks SAs survive a flood, and by the bench's responses-per-second
//! figure.
//!
//! The requests are real: one IKE_SA_INIT made by a throwaway initiator
//! engine, sent again and again with a fresh initiator SPI each time, so
//! every copy is a new IKE SA to the responder (a new DH unless a cookie is
//! asked for first).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use vpcgw_ike::crypto::Secret;
use vpcgw_ike::engine::{ConnSpec, Engine, EngineConfig, EspAlgs, Identity, IkeAlgs};
use vpcgw_ike::wire::{self, Payload, notify, payload};

use crate::netns::Netns;

/// A PSK connection from `me` to `peer` proposing `ike` (no PFS, no
/// selectors, no DPD): enough for IKE_SA_INIT, which is all a flood is.
pub fn conn_spec(ike: IkeAlgs, me: IpAddr, peer: IpAddr, initiator: bool) -> ConnSpec {
    ConnSpec {
        name: "flood".into(),
        peer,
        local_id: Identity::from(me),
        remote_id: Identity::from(peer),
        // Never used: a flood stops before IKE_AUTH.
        psk: Secret::new(b"unused-by-the-flood".to_vec()),
        ike,
        ike_lifetime: Duration::from_secs(3600),
        esp: EspAlgs {
            encr: ike.encr,
            integ: ike.integ,
            pfs: None,
        },
        esp_lifetime: Duration::from_secs(1800),
        local_ts: Vec::new(),
        remote_ts: Vec::new(),
        initiator,
        dpd: None,
    }
}

/// One IKE_SA_INIT request from `from` to `to` proposing `ike`, as a real
/// initiator sends it (KE, nonce, NAT detection).
pub fn init_request(ike: IkeAlgs, from: IpAddr, to: IpAddr) -> Result<Vec<u8>> {
    let now = Instant::now();
    let conn = conn_spec(ike, from, to, true);
    let mut e = Engine::new(EngineConfig::new(from, vec![conn]), now)
        .map_err(|e| anyhow!("initiator engine: {e}"))?;
    e.initiate(now, 0);
    e.poll_transmit()
        .map(|t| t.data)
        .context("the initiator engine sent nothing")
}

/// Makes `request` copy `n` of itself: a distinct, nonzero initiator SPI.
pub fn set_nth(request: &mut [u8], n: u64) {
    if let Some(spi) = request.get_mut(..8) {
        spi.copy_from_slice(&(n | 1 << 63).to_be_bytes());
    }
}

/// What one answer to an IKE_SA_INIT request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A full answer: SA, KE, nonce (the responder made a DH key).
    Full,
    /// COOKIE only (RFC 7296 2.6): the responder kept no state.
    Cookie,
    /// Another notification (a proposal mismatch, INVALID_KE_PAYLOAD...).
    Other,
}

/// Classifies an IKE_SA_INIT response.
pub fn classify(data: &[u8]) -> Answer {
    let Ok(m) = wire::parse_message(data) else {
        return Answer::Other;
    };
    match m.payloads.first() {
        Some(p) if p.ty == payload::SA => Answer::Full,
        Some(p) => match wire::decode(p) {
            Ok(Payload::Notify(n)) if n.ty == notify::COOKIE => Answer::Cookie,
            _ => Answer::Other,
        },
        None => Answer::Other,
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Flood {
    pub sent: u64,
    /// Sends the kernel refused (buffers full): not on the wire.
    pub send_errors: u64,
    pub full: u64,
    pub cookies: u64,
    pub other: u64,
    pub elapsed: Duration,
}

impl Flood {
    pub fn answered(&self) -> u64 {
        self.full + self.cookies + self.other
    }

    pub fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How hard and how long to flood.
#[derive(Clone, Copy, Debug)]
pub struct FloodSpec {
    pub time: Duration,
    pub max: u64,
    /// Requests per second; `None`: as fast as the socket takes them.
    pub rate: Option<u64>,
}

/// Sends copies of `template` (see [`set_nth`]) from `from` (an address
/// in `ns`, any port) to `to` for `spec.time` or `spec.max` requests,
/// whichever comes first; counts the answers, including those arriving up
/// to 300 ms after the last request.
pub fn flood(
    ns: &Netns,
    from: IpAddr,
    to: SocketAddr,
    template: &[u8],
    spec: FloodSpec,
) -> Result<Flood> {
    let sock = ns
        .enter(move || UdpSocket::bind(SocketAddr::new(from, 0)))?
        .with_context(|| format!("binding UDP on {from}"))?;
    sock.connect(to).with_context(|| format!("connect {to}"))?;
    let rx = sock.try_clone()?;
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_rx = Arc::clone(&stop);
    let receiver = thread::Builder::new()
        .name("flood-rx".into())
        .spawn(move || {
            let mut counts = (0u64, 0u64, 0u64);
            let mut buf = vec![0u8; 2048];
            while !stop_rx.load(Ordering::Relaxed) {
                if let Ok(n) = rx.recv(&mut buf) {
                    match classify(buf.get(..n).unwrap_or_default()) {
                        Answer::Full => counts.0 += 1,
                        Answer::Cookie => counts.1 += 1,
                        Answer::Other => counts.2 += 1,
                    }
                }
            }
            counts
        })?;
    let mut f = Flood::default();
    let start = Instant::now();
    let mut msg = template.to_vec();
    loop {
        let n = f.sent + f.send_errors;
        let t = start.elapsed();
        if n >= spec.max || t >= spec.time {
            break;
        }
        if let Some(rate) = spec.rate
            && n as f64 >= rate as f64 * t.as_secs_f64()
        {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        set_nth(&mut msg, n);
        match sock.send(&msg) {
            Ok(_) => f.sent += 1,
            Err(_) => f.send_errors += 1,
        }
    }
    f.elapsed = start.elapsed();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (full, cookies, other) = receiver
        .join()
        .map_err(|_| anyhow!("the flood's receiver panicked"))?;
    f.full = full;
    f.cookies = cookies;
    f.other = other;
    Ok(f)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}
