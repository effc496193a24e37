//! The agent's IKEv2 against the real thing: Debian's strongSwan 5.9.8 as
//! the data-center router (tests/src/strongswan.rs), across the standard
//! test bed. Needs root; skipped (with a note) without strongSwan.
//!
//! Every scenario runs the real agent binary on a private copy of
//! examples/site-to-site.toml in the `gw` namespace and charon in `dc`, and
//! compares what both report: IKE SPIs equal, CHILD_SA SPIs mirrored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use vpcgw_tests::agent::{Agent, ConfigDir, TEST_PSK, last_lines};
use vpcgw_tests::bed::{Bed, DC_WAN_IP, GW_WAN_IP};
use vpcgw_tests::flood::{FloodSpec, flood, init_request, rss_kib};
use vpcgw_tests::interop::{
    AgentSide, MATRIX, charon_conf, check_spis, first_ike_algs, side, status, wait_up,
};
use vpcgw_tests::strongswan::{Charon, CharonConf, StartAction, strongswan_installed};
use vpcgw_tests::{require_root, vpcgw_bin, wait_for};

fn skip() -> bool {
    if !strongswan_installed() {
        eprintln!("skipped: strongSwan is not installed (cargo xtask setup installs it)");
        return true;
    }
    false
}

/// One scenario: the bed, the agent with `side`, charon with `conf`.
fn scenario(
    side: &AgentSide<'_>,
    conf: &CharonConf,
    body: impl FnOnce(&Bed, &Agent<'_>, &mut Charon) -> Result<()>,
) -> Result<()> {
    require_root()?;
    let bin = vpcgw_bin()?;
    let bed = Bed::new()?;
    let cfg = ConfigDir::new(&side.config()?)?;
    let mut charon = Charon::start(&bed.dc, conf)?;
    let agent = Agent::start(&bed.gw, &bin, cfg.path())?;
    agent.ready()?;
    let r = body(&bed, &agent, &mut charon);
    if r.is_err() {
        eprintln!("agent log:\n{}", last_lines(&agent.log(), 40));
        eprintln!("charon log:\n{}", last_lines(&charon.log(), 60));
    }
    // No key material may ever reach the agent's output.
    ensure!(
        !agent.log().contains(TEST_PSK.trim_end()),
        "the PSK appears in the agent's log"
    );
    r
}

#[test]
fn matrix_agent_initiates() -> Result<()> {
    if skip() {
        return Ok(());
    }
    for p in MATRIX {
        scenario(
            &side(p, true),
            &charon_conf(p, StartAction::None),
            |_, agent, charon| {
                let (a, s) = wait_up(agent, charon, Duration::from_secs(10))?;
                ensure!(
                    a.initiator == Some(true) && !s.initiator,
                    "roles: {a:?} / {}",
                    s.initiator
                );
                eprintln!("{}: up as initiator, IKE {}/{}", p.ike, s.spi_i, s.spi_r);
                Ok(())
            },
        )
        .with_context(|| format!("proposal {} / {}", p.ike, p.esp))?;
    }
    Ok(())
}

#[test]
fn matrix_agent_responds() -> Result<()> {
    if skip() {
        return Ok(());
    }
    for p in MATRIX {
        scenario(
            &side(p, false),
            &charon_conf(p, StartAction::None),
            |_, agent, charon| {
                charon.initiate("dc1", Duration::from_secs(10))?;
                let (a, s) = wait_up(agent, charon, Duration::from_secs(10))?;
                ensure!(
                    a.initiator == Some(false) && s.initiator,
                    "roles: {a:?} / {}",
                    s.initiator
                );
                eprintln!("{}: up as responder, IKE {}/{}", p.ike, s.spi_i, s.spi_r);
                Ok(())
            },
        )
        .with_context(|| format!("proposal {} / {}", p.ike, p.esp))?;
    }
    Ok(())
}

#[test]
fn wrong_psk_and_proposal_mismatch_end_in_clear_reasons() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let p = &MATRIX[0];
    let mut conf = charon_conf(p, StartAction::None);
    conf.psk = "a-different-key-entirely-98765".into();
    scenario(&side(p, true), &conf, |_, agent, _charon| {
        let r = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            status(agent).ok().filter(|s| {
                s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("authentication failed"))
            })
        });
        ensure!(
            r.is_some(),
            "no authentication failure reported: {:?}",
            status(agent).ok()
        );
        Ok(())
    })?;
    let mut conf = charon_conf(p, StartAction::None);
    conf.ike_proposals = "aes256-sha256-modp2048".into();
    scenario(&side(p, true), &conf, |_, agent, _charon| {
        let r = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            status(agent).ok().filter(|s| {
                s.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("no proposal chosen"))
            })
        });
        ensure!(
            r.is_some(),
            "no proposal mismatch reported: {:?}",
            status(agent).ok()
        );
        Ok(())
    })
}

#[test]
fn rekeys_with_short_lifetimes() -> Result<()> {
    if skip() {
        return Ok(());
    }
    for initiator in [true, false] {
        let p = &MATRIX[0];
        let mut s = side(p, initiator);
        s.ike_lifetime = 60;
        s.esp_lifetime = 30;
        scenario(
            &s,
            &charon_conf(p, StartAction::None),
            |_, agent, charon| {
                if !initiator {
                    charon.initiate("dc1", Duration::from_secs(10))?;
                }
                let (a0, _) = wait_up(agent, charon, Duration::from_secs(10))?;
                let t0 = Instant::now();
                // The CHILD_SA rekeys at 85-95% of 30 s, the IKE SA of 60 s.
                let rekeyed = wait_for(Duration::from_secs(70), Duration::from_millis(500), || {
                    let a = status(agent).ok()?;
                    let child_new = a
                        .children
                        .iter()
                        .all(|c| !a0.children.iter().any(|o| o.spi_in == c.spi_in));
                    let ike_new = a.ike_spi_i != a0.ike_spi_i;
                    (a.state == "established" && child_new && ike_new && !a.children.is_empty())
                        .then_some(a)
                });
                let Some(a) = rekeyed else {
                    bail!(
                        "no CHILD_SA and IKE SA rekey within 70 s: {:?}",
                        status(agent).ok()
                    );
                };
                // Both agree on the new SAs.
                let sas = charon.list_sas()?;
                let s = sas
                    .iter()
                    .find(|s| Some(s.spi_i.as_str()) == a.ike_spi_i.as_deref())
                    .ok_or_else(|| {
                        anyhow!("strongSwan lacks the new IKE SA {:?}: {sas:?}", a.ike_spi_i)
                    })?;
                check_spis(&a, s)?;
                eprintln!(
                    "rekeys done {:?} after establishment (agent initiator: {initiator})",
                    t0.elapsed()
                );
                Ok(())
            },
        )?;
    }
    Ok(())
}

#[test]
fn dead_peer_is_detected_within_the_timeout() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let p = &MATRIX[0];
    let mut s = side(p, true);
    s.dpd = ("clear", 2, 6);
    scenario(
        &s,
        &charon_conf(p, StartAction::None),
        |_, agent, charon| {
            wait_up(agent, charon, Duration::from_secs(10))?;
            charon.kill();
            let t0 = Instant::now();
            let down = wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
                status(agent).ok().filter(|s| s.state == "down")
            });
            let Some(d) = down else {
                bail!(
                    "the dead peer was not detected within 15 s: {:?}",
                    status(agent).ok()
                );
            };
            let took = t0.elapsed();
            ensure!(
                d.reason.as_deref() == Some("peer not responding (dead peer detection)"),
                "reason: {:?}",
                d.reason
            );
            // Idle interval (2 s) + timeout (6 s), with slack for the poll.
            ensure!(took <= Duration::from_secs(9), "detected after {took:?}");
            eprintln!("dead peer detected after {took:?}");
            Ok(())
        },
    )
}

/// A flood of IKE_SA_INIT from the peer's own address (spoofed, or a host
/// behind the peer's NAT): the agent answers with cookies once 8 SAs with
/// that peer are half-open, keeps its memory flat, keeps the established SA, and lets the
/// real peer (which answers the cookie) set up a new one during the flood.
#[test]
fn flood_of_ike_sa_init_spares_sas_and_memory() -> Result<()> {
    if skip() {
        return Ok(());
    }
    let p = &MATRIX[0];
    scenario(
        &side(p, false),
        &charon_conf(p, StartAction::None),
        |bed, agent, charon| {
            charon.initiate("dc1", Duration::from_secs(10))?;
            let (a0, _) = wait_up(agent, charon, Duration::from_secs(10))?;
            let pid = agent.process().pid();
            let rss0 = rss_kib(pid)?;
            let template = init_request(first_ike_algs(), DC_WAN_IP.into(), GW_WAN_IP.into())?;
            let to = SocketAddr::new(GW_WAN_IP.into(), 500);
            // Unpaced: more than the agent can answer, most requests are
            // dropped from its socket's queue.
            let f = flood(
                &bed.dc,
                DC_WAN_IP.into(),
                to,
                &template,
                FloodSpec {
                    time: Duration::from_secs(3),
                    max: 100_000,
                    rate: None,
                },
            )?;
            let rss1 = rss_kib(pid)?;
            eprintln!(
                "flood: {} requests in {:?}: {} full answers, {} cookies, {} other; agent RSS {} -> {} KiB",
                f.sent, f.elapsed, f.full, f.cookies, f.other, rss0, rss1
            );
            ensure!(f.sent >= 1_000, "the flood did not get going: {f:?}");
            // The per-peer cookie threshold: no more DH work than 8
            // half-open SAs with one peer.
            ensure!(f.full <= 8, "{} full answers under the flood", f.full);
            ensure!(f.cookies > 0 && f.other == 0, "answers: {f:?}");
            ensure!(
                rss1 < rss0 + 16 * 1024,
                "agent RSS grew from {rss0} to {rss1} KiB"
            );
            // The established SA is untouched.
            let (a1, _) = wait_up(agent, charon, Duration::from_secs(5))?;
            ensure!(
                a1.ike_spi_i == a0.ike_spi_i && a1.ike_spi_r == a0.ike_spi_r,
                "the IKE SA changed under the flood: {a0:?} -> {a1:?}"
            );
            // A new SA comes up during a flood the agent keeps up with
            // (an overload drops the real peer's request too, at random,
            // and charon retransmits after 4 s): strongSwan is asked for a
            // cookie (8 SAs are still half-open) and returns it.
            charon.terminate_ike("dc1")?;
            let gone = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                status(agent).ok().filter(|s| s.ike_spi_i.is_none())
            });
            ensure!(
                gone.is_some(),
                "the agent kept the deleted SA: {:?}",
                status(agent).ok()
            );
            std::thread::scope(|s| -> Result<()> {
                let flooding = s.spawn(|| {
                    flood(
                        &bed.dc,
                        DC_WAN_IP.into(),
                        to,
                        &template,
                        FloodSpec {
                            time: Duration::from_secs(3),
                            max: 100_000,
                            rate: Some(5_000),
                        },
                    )
                });
                let t0 = Instant::now();
                let up = charon
                    .initiate("dc1", Duration::from_secs(10))
                    .and_then(|_| wait_up(agent, charon, Duration::from_secs(10)));
                let took = t0.elapsed();
                let f2 = flooding
                    .join()
                    .map_err(|_| anyhow!("the flood panicked"))??;
                let (a2, _) = up?;
                ensure!(a2.ike_spi_i != a0.ike_spi_i, "no new IKE SA: {a2:?}");
                ensure!(
                    took < Duration::from_secs(3) && f2.cookies > 0,
                    "new SA after {took:?} under {f2:?}"
                );
                eprintln!(
                    "new SA up in {took:?} during a flood of {} requests ({} cookies)",
                    f2.sent, f2.cookies
                );
                Ok(())
            })
        },
    )
}
