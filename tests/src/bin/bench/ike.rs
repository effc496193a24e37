//! What IKE costs, against the same work done by strongSwan in the same run.
//!
//! - Time to a CHILD_SA: charon in `dc` runs `swanctl --initiate` toward
//!   the gateway address, answered first by charon in `gw`
//!   (strongSwan to strongSwan), then by the agent in `gw` (strongSwan to
//!   vpcgw). Two clocks: on the wire (tcpdump on dc's WAN, kernel
//!   timestamps), from the first IKE_SA_INIT request to the IKE_AUTH
//!   response that carries the CHILD_SA; and swanctl's, from its start
//!   until it returns with the CHILD_SA installed (includes swanctl's own
//!   start, ~9 ms, and charon's installing the SA).
//! - IKE_SA_INIT answers per second in process: the engine alone, one core,
//!   no sockets; full answers (a DH key each) against the raw cost of the
//!   same DH (key generation and agreement) in aws-lc, cookie answers, and
//!   requests from addresses with no connection (dropped without state).
//! - A flood on the wire: unpaced IKE_SA_INIT from the peer's address to
//!   UDP 500 while an SA is up, against charon and against the agent:
//!   answers per second, whether the SA survives, the responder's memory.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use vpcgw_ike::alg::{DhGroup, Encryption, Prf};
use vpcgw_ike::crypto::{dh_agree, dh_generate};
use vpcgw_ike::engine::{Engine, EngineConfig, IkeAlgs};
use vpcgw_tests::agent::{Agent, ConfigDir};
use vpcgw_tests::bed::{Bed, DC_WAN_IP, GW_WAN_IP};
use vpcgw_tests::flood::{
    Answer, Flood, FloodSpec, classify, conn_spec, flood, init_request, rss_kib, set_nth,
};
use vpcgw_tests::interop::{MATRIX, Proposal, charon_conf, side, status, wait_up};
use vpcgw_tests::strongswan::{
    Charon, StartAction, median_time_to_child, strongswan_installed, time_to_child,
};
use vpcgw_tests::{vpcgw_bin, wait_for};

use crate::quick;

const LIMIT: Duration = Duration::from_secs(10);

fn runs() -> usize {
    if quick() { 5 } else { 21 }
}

/// How long each in-process rate is measured.
fn budget() -> Duration {
    if quick() {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    }
}

fn gw() -> IpAddr {
    GW_WAN_IP.into()
}

fn dc() -> IpAddr {
    DC_WAN_IP.into()
}

pub fn run() -> Result<()> {
    println!("IKE");
    engine_rates()?;
    if !strongswan_installed() {
        println!("\nstrongSwan is not installed: skipping the comparisons (cargo xtask setup)");
        return Ok(());
    }
    against_strongswan()
}

fn algs(dh: DhGroup) -> IkeAlgs {
    IkeAlgs {
        encr: Encryption::Aes128Gcm16,
        integ: None,
        prf: Prf::HmacSha256,
        dh,
    }
}

/// `f` as many times as fit in [`budget`] (at most `max`); calls per second.
fn rate(max: u64, mut f: impl FnMut(u64) -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    let mut n = 0;
    while n < max && t.elapsed() < budget() {
        f(n)?;
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

/// A responder engine for `dc`'s connection; `cookies`: with the default
/// cookie thresholds, else without cookies or bounds.
fn responder(dh: DhGroup, cookies: bool) -> Result<Engine> {
    let mut cfg = EngineConfig::new(gw(), vec![conn_spec(algs(dh), gw(), dc(), false)]);
    if !cookies {
        cfg.cookie_threshold = usize::MAX;
        cfg.half_open_limit = usize::MAX;
        cfg.peer_cookie_threshold = usize::MAX;
        cfg.peer_half_open_limit = usize::MAX;
    }
    Engine::new(cfg, Instant::now()).map_err(|e| anyhow!("engine: {e}"))
}

/// Feeds copy `n` of `template` from `from`; the kind of the one answer.
fn feed(e: &mut Engine, template: &mut [u8], n: u64, from: SocketAddr) -> Option<Answer> {
    set_nth(template, n);
    e.handle_datagram(Instant::now(), 500, from, template);
    let mut answer = None;
    while let Some(t) = e.poll_transmit() {
        answer = Some(classify(&t.data));
    }
    answer
}

fn engine_rates() -> Result<()> {
    println!(
        "\nIKE_SA_INIT answers per second, engine in process (one core, no sockets), {:?} each:",
        budget()
    );
    println!(
        "{:>16} | {:>17} | {:>14} | {:>5}",
        "DH group", "raw DH/s (aws-lc)", "full answers/s", "ratio"
    );
    let from = SocketAddr::new(dc(), 500);
    for dh in DhGroup::ALL {
        let (_, peer_public) = dh_generate(dh).map_err(|e| anyhow!("{e}"))?;
        let raw = rate(1_000_000, |_| {
            let (k, _) = dh_generate(dh).map_err(|e| anyhow!("{e}"))?;
            dh_agree(k, &peer_public).map_err(|e| anyhow!("{e}"))?;
            Ok(())
        })?;
        let mut e = responder(dh, false)?;
        let mut req = init_request(algs(dh), dc(), gw())?;
        // Bounded so the engine's SA table stays modest.
        let full = rate(20_000, |n| {
            let a = feed(&mut e, &mut req, n, from);
            ensure!(a == Some(Answer::Full), "request {n}: {a:?}");
            Ok(())
        })?;
        println!(
            "{:>16} | {:>17.0} | {:>14.0} | {:>5.2}",
            format!("{} ({})", dh.keyword(), dh.number()),
            raw,
            full,
            full / raw
        );
    }
    // Cookies: the peer's half-open SAs up to its threshold first, then
    // every request is asked for one.
    let mut e = responder(DhGroup::Curve25519, true)?;
    let threshold = e.config().peer_cookie_threshold as u64;
    let mut req = init_request(algs(DhGroup::Curve25519), dc(), gw())?;
    for n in 0..threshold {
        feed(&mut e, &mut req, n, from);
    }
    let cookies = rate(10_000_000, |n| {
        let a = feed(&mut e, &mut req, threshold + n, from);
        ensure!(a == Some(Answer::Cookie), "request {n}: {a:?}");
        Ok(())
    })?;
    let stranger = SocketAddr::new(IpAddr::from([203, 0, 113, 7]), 500);
    let dropped = rate(10_000_000, |n| {
        let a = feed(&mut e, &mut req, n, stranger);
        ensure!(a.is_none(), "a stranger was answered: {a:?}");
        Ok(())
    })?;
    println!(
        "cookie answers/s ({threshold} SAs with the peer half-open): {cookies:.0}; requests from \
         addresses with no connection, dropped/s: {dropped:.0}"
    );
    Ok(())
}

/// One responder's figures.
struct Side {
    /// swanctl's clock.
    median: Duration,
    /// On the wire.
    wire: Vec<Duration>,
    flood: Option<(Flood, bool, u64, u64)>,
}

fn median(v: &[Duration]) -> Duration {
    let mut sorted = v.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Runs `f` with tcpdump on dc's WAN; also returns, for every IKE SA set up
/// meanwhile, the time from the first IKE_SA_INIT request (a retry with a
/// cookie counts from the first) to the IKE_AUTH response.
fn on_the_wire<T>(bed: &Bed, f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<Duration>)> {
    let cap = bed.dc.spawn(&[
        "tcpdump",
        "-i",
        "wan0",
        "-nn",
        "-l",
        "-tt",
        "--immediate-mode",
        "udp port 500 or udp port 4500",
    ])?;
    ensure!(
        cap.wait_output("listening on", LIMIT).is_some(),
        "tcpdump did not start: {}",
        cap.output()
    );
    let r = f()?;
    std::thread::sleep(Duration::from_millis(200));
    let text = cap.output();
    drop(cap);
    Ok((r, exchanges(&text)))
}

/// tcpdump's `-tt` lines: "SECONDS.MICROS IP a.p > b.p: isakmp: ... ikev2_init[I]".
/// `[I]`: sent by the original initiator, a request; `[R]`: a response.
fn exchanges(text: &str) -> Vec<Duration> {
    let mut start = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(ts) = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
        else {
            continue;
        };
        if line.contains("ikev2_init[I]") {
            start.get_or_insert(ts);
        } else if line.contains("ikev2_auth[R]")
            && let Some(s) = start.take()
        {
            out.push(Duration::from_secs_f64((ts - s).max(0.0)));
        }
    }
    out
}

fn against_strongswan() -> Result<()> {
    let bin = vpcgw_bin()?;
    let bed = Bed::new()?;
    let mut rows = Vec::new();
    // The example's proposal, and the cheapest DH.
    for (i, p) in [&MATRIX[0], &MATRIX[2]].into_iter().enumerate() {
        let with_flood = i == 0;
        let conf = charon_conf(p, StartAction::None);
        let c_dc = Charon::start(&bed.dc, &conf).context("charon in dc")?;
        let sw = {
            let c_gw = Charon::start(&bed.gw, &conf.mirror()).context("charon in gw")?;
            let ((median, _), wire) = on_the_wire(&bed, || {
                median_time_to_child(&c_dc, &c_gw, "dc1", "dc1", runs(), LIMIT)
            })?;
            let flood = with_flood
                .then(|| flood_charon(&bed, &c_dc, &c_gw))
                .transpose()?;
            Side {
                median,
                wire,
                flood,
            }
        };
        let ours = {
            let cfg = ConfigDir::new(&side(p, false).config()?)?;
            let agent = Agent::start(&bed.gw, &bin, cfg.path())?;
            agent.ready()?;
            let (median, wire) = on_the_wire(&bed, || agent_time_to_child(&agent, &c_dc))?;
            let flood = with_flood
                .then(|| flood_agent(&bed, &agent, &c_dc))
                .transpose()?;
            Side {
                median,
                wire,
                flood,
            }
        };
        rows.push((p, sw, ours));
    }
    print_rows(&rows);
    Ok(())
}

/// Establishment times against the agent, the way
/// [`median_time_to_child`] does it between two charons.
fn agent_time_to_child(agent: &Agent<'_>, c_dc: &Charon) -> Result<Duration> {
    let mut times = Vec::new();
    for run in 0..runs() {
        if !c_dc.list_sas()?.is_empty() {
            let _ = c_dc.terminate_ike("dc1");
        }
        c_dc.wait_sas(LIMIT, |s| s.is_empty())?;
        let gone = wait_for(LIMIT, Duration::from_millis(20), || {
            status(agent).ok().filter(|s| s.ike_spi_i.is_none())
        });
        ensure!(gone.is_some(), "run {run}: the agent kept its SA");
        times.push(time_to_child(c_dc, "dc1", LIMIT).with_context(|| format!("run {run}"))?);
        // Untimed: both sides agree on what came up.
        wait_up(agent, c_dc, LIMIT)?;
    }
    Ok(median(&times))
}

fn unpaced() -> FloodSpec {
    FloodSpec {
        time: if quick() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(3)
        },
        max: 2_000_000,
        rate: None,
    }
}

fn template() -> Result<Vec<u8>> {
    init_request(vpcgw_tests::interop::first_ike_algs(), dc(), gw())
}

/// The unpaced flood from dc to gw:500, with the resident memory of the
/// responder `pid` before and after (KiB).
fn flood_watching(bed: &Bed, pid: u32) -> Result<(Flood, u64, u64)> {
    let rss0 = rss_kib(pid)?;
    let f = flood(
        &bed.dc,
        dc(),
        SocketAddr::new(gw(), 500),
        &template()?,
        unpaced(),
    )?;
    Ok((f, rss0, rss_kib(pid)?))
}

/// The flood against charon in gw, with an SA up: (figures, SA kept, RSS
/// before and after in KiB).
fn flood_charon(bed: &Bed, c_dc: &Charon, c_gw: &Charon) -> Result<(Flood, bool, u64, u64)> {
    if c_dc.list_sas()?.is_empty() {
        c_dc.initiate("dc1", LIMIT)?;
    }
    let before = c_gw.wait_sas(LIMIT, |s| s.iter().any(|s| s.state == "ESTABLISHED"))?;
    let (f, rss0, rss1) = flood_watching(bed, c_gw.pid())?;
    let after = c_gw.list_sas()?;
    let kept = before.iter().any(|b| {
        after
            .iter()
            .any(|a| a.spi_i == b.spi_i && a.spi_r == b.spi_r && a.state == "ESTABLISHED")
    });
    Ok((f, kept, rss0, rss1))
}

fn flood_agent(bed: &Bed, agent: &Agent<'_>, c_dc: &Charon) -> Result<(Flood, bool, u64, u64)> {
    let (before, _) = wait_up(agent, c_dc, LIMIT)?;
    let (f, rss0, rss1) = flood_watching(bed, agent.process().pid())?;
    let kept = status(agent).is_ok_and(|a| {
        a.state == "established"
            && a.ike_spi_i == before.ike_spi_i
            && a.ike_spi_r == before.ike_spi_r
    });
    Ok((f, kept, rss0, rss1))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_rows(rows: &[(&Proposal, Side, Side)]) {
    println!(
        "\nTime to CHILD_SA, charon in dc initiating, median of {} runs: on the wire (first \
         IKE_SA_INIT to IKE_AUTH response) and by swanctl (--initiate until it returns):",
        runs()
    );
    println!(
        "{:>34} | {:>14} {:>14} {:>5} | {:>14} {:>14} {:>5}",
        "IKE proposal",
        "wire sw-sw",
        "wire sw-vpcgw",
        "ratio",
        "swanctl sw-sw",
        "sw-vpcgw",
        "ratio"
    );
    let list = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (p, sw, ours) in rows {
        let (w_sw, w_ours) = (median(&sw.wire), median(&ours.wire));
        println!(
            "{:>34} | {:>11.2} ms {:>11.2} ms {:>5.2} | {:>11.1} ms {:>11.1} ms {:>5.2}",
            p.ike,
            ms(w_sw),
            ms(w_ours),
            ms(w_ours) / ms(w_sw).max(1e-9),
            ms(sw.median),
            ms(ours.median),
            ms(ours.median) / ms(sw.median).max(1e-9)
        );
        println!("{:>34}   wire, ms: strongSwan {}", "", list(&sw.wire));
        println!("{:>34}                  vpcgw {}", "", list(&ours.wire));
    }
    let spec = unpaced();
    println!(
        "\nFlood on the wire: IKE_SA_INIT to UDP 500 from the peer's address, unpaced, {:?}, with \
         an SA up:",
        spec.time
    );
    println!(
        "{:>10} | {:>9} | {:>10} | {:>6} {:>9} {:>6} | {:>7} | {:>14}",
        "responder", "sent/s", "answered/s", "full", "cookies", "other", "SA kept", "RSS KiB"
    );
    for (_, sw, ours) in rows {
        for (name, s) in [("strongSwan", sw), ("vpcgw", ours)] {
            if let Some((f, kept, r0, r1)) = &s.flood {
                println!(
                    "{:>10} | {:>9.0} | {:>10.0} | {:>6} {:>9} {:>6} | {:>7} | {:>6} -> {:>6}",
                    name,
                    f.per_sec(f.sent),
                    f.per_sec(f.answered()),
                    f.full,
                    f.cookies,
                    f.other,
                    if *kept { "yes" } else { "NO" },
                    r0,
                    r1
                );
            }
        }
    }
}
