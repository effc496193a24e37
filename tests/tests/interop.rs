//! The agent's IKEv2 against the real thing: Debian's strongSwan 5.9.8 as
//! the data-center router (tests/src/strongswan.rs), across the standard
//! test bed. Needs root; skipped (with a note) without strongSwan.
//!
//! Every scenario runs the real agent binary on a private copy of
//! examples/site-to-site.toml in the `gw` namespace and charon in `dc`, and
//! compares what both report: IKE SPIs equal, CHILD_SA SPIs mirrored.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use vpcgw::ike::ConnReport;
use vpcgw::run::StatusReport;
use vpcgw_tests::agent::{Agent, ConfigDir, TEST_PSK, last_lines};
use vpcgw_tests::bed::Bed;
use vpcgw_tests::strongswan::{Charon, CharonConf, IkeSaInfo, StartAction, strongswan_installed};
use vpcgw_tests::{require_root, vpcgw_bin, wait_for};

/// One row of the proposal matrix: strongSwan's notation, and ours.
struct Proposal {
    ike: &'static str,
    esp: &'static str,
    /// The `[[ike_policies]]` and `[[ipsec_policies]]` keys (besides name).
    ike_toml: &'static str,
    esp_toml: &'static str,
}

const MATRIX: &[Proposal] = &[
    Proposal {
        ike: "aes128gcm16-prfsha256-modp2048",
        esp: "aes128gcm16-modp2048",
        ike_toml: "encryption = \"aes-128-gcm-16\"\nprf = \"hmac-sha2-256\"\ndh_group = 14\n",
        esp_toml: "encryption = \"aes-128-gcm-16\"\npfs = 14\n",
    },
    Proposal {
        ike: "aes256gcm16-prfsha384-ecp384",
        esp: "aes256gcm16",
        ike_toml: "encryption = \"aes-256-gcm-16\"\nprf = \"hmac-sha2-384\"\ndh_group = 20\n",
        esp_toml: "encryption = \"aes-256-gcm-16\"\n",
    },
    Proposal {
        ike: "aes128gcm16-prfsha256-curve25519",
        esp: "aes128gcm16",
        ike_toml: "encryption = \"aes-128-gcm-16\"\nprf = \"hmac-sha2-256\"\ndh_group = 31\n",
        esp_toml: "encryption = \"aes-128-gcm-16\"\n",
    },
    Proposal {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256",
        ike_toml: "encryption = \"aes-256\"\nintegrity = \"hmac-sha2-256\"\ndh_group = 14\n",
        esp_toml: "encryption = \"aes-256\"\nintegrity = \"hmac-sha2-256\"\n",
    },
    Proposal {
        ike: "aes128-sha256-ecp256",
        esp: "aes128-sha256",
        ike_toml: "encryption = \"aes-128\"\nintegrity = \"hmac-sha2-256\"\ndh_group = 19\n",
        esp_toml: "encryption = \"aes-128\"\nintegrity = \"hmac-sha2-256\"\n",
    },
];

fn skip() -> bool {
    if !strongswan_installed() {
        eprintln!("skipped: strongSwan is not installed (cargo xtask setup installs it)");
        return true;
    }
    false
}

/// The example with these policies, this initiator mode and these lifetimes
/// (seconds) and DPD settings.
struct AgentSide<'a> {
    proposal: &'a Proposal,
    initiator: bool,
    ike_lifetime: u64,
    esp_lifetime: u64,
    /// (action, interval, timeout)
    dpd: (&'a str, u64, u64),
}

impl AgentSide<'_> {
    fn config(&self) -> Result<String> {
        let example =
            std::fs::read_to_string(vpcgw_tests::repo_root().join("examples/site-to-site.toml"))?;
        let start = example
            .find("[[ike_policies]]")
            .context("no [[ike_policies]] in the example")?;
        let conn = example
            .find("[[connections]]")
            .context("no [[connections]] in the example")?;
        let policies = format!(
            "[[ike_policies]]\nname = \"ike-dc1\"\n{}lifetime = {}\n\n[[ipsec_policies]]\nname = \"ipsec-dc1\"\n{}lifetime = {}\n\n",
            self.proposal.ike_toml, self.ike_lifetime, self.proposal.esp_toml, self.esp_lifetime
        );
        let mut rest = String::new();
        let mut in_dpd = false;
        for line in example[conn..].lines() {
            if line.starts_with("initiator") {
                let mode = if self.initiator {
                    "bi-directional"
                } else {
                    "response-only"
                };
                rest.push_str(&format!("initiator = \"{mode}\"\n"));
                continue;
            }
            if line.starts_with("[connections.dpd]") {
                in_dpd = true;
                let (action, interval, timeout) = self.dpd;
                rest.push_str(&format!(
                    "[connections.dpd]\naction = \"{action}\"\ninterval = {interval}\ntimeout = {timeout}\n"
                ));
                continue;
            }
            if in_dpd
                && (line.starts_with("action")
                    || line.starts_with("interval")
                    || line.starts_with("timeout"))
            {
                continue;
            }
            rest.push_str(line);
            rest.push('\n');
        }
        Ok(format!("{}{}{}", &example[..start], policies, rest))
    }
}

/// charon in `dc`, the mirror of the agent's connection.
fn charon_conf(p: &Proposal, start: StartAction) -> CharonConf {
    let mut c = CharonConf::new(
        "dc1",
        "198.51.100.2"
            .parse()
            .unwrap_or(std::net::IpAddr::from([198, 51, 100, 2])),
        "198.51.100.1"
            .parse()
            .unwrap_or(std::net::IpAddr::from([198, 51, 100, 1])),
        TEST_PSK.trim_end(),
    );
    c.ike_proposals = p.ike.to_string();
    c.esp_proposals = p.esp.to_string();
    c.local_ts = vec!["192.168.3.0/24".into(), "192.168.4.0/24".into()];
    c.remote_ts = vec!["192.168.1.0/24".into(), "192.168.2.0/24".into()];
    c.start_action = start;
    c
}

fn status(agent: &Agent<'_>) -> Result<ConnReport> {
    let r: StatusReport = agent.status()?;
    r.connections
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no connection in the status"))
}

/// Wait until both report an established IKE SA with a CHILD_SA, and check
/// they agree on the SPIs. Returns the time it took.
fn wait_up(agent: &Agent<'_>, charon: &Charon, limit: Duration) -> Result<(ConnReport, IkeSaInfo)> {
    let got = wait_for(limit, Duration::from_millis(50), || {
        let a = status(agent).ok()?;
        if a.state != "established" || a.children.is_empty() {
            return None;
        }
        let sas = charon.list_sas().ok()?;
        let s = sas.into_iter().find(|s| {
            s.state == "ESTABLISHED" && s.children.iter().any(|c| c.state == "INSTALLED")
        })?;
        Some((a, s))
    });
    let Some((a, s)) = got else {
        bail!(
            "not established within {limit:?}.\nagent status: {:?}\nagent log:\n{}\ncharon log:\n{}",
            status(agent).ok(),
            last_lines(&agent.log(), 30),
            last_lines(&charon.log(), 40)
        );
    };
    check_spis(&a, &s)?;
    Ok((a, s))
}

fn check_spis(a: &ConnReport, s: &IkeSaInfo) -> Result<()> {
    ensure!(
        a.ike_spi_i.as_deref() == Some(s.spi_i.as_str())
            && a.ike_spi_r.as_deref() == Some(s.spi_r.as_str()),
        "IKE SPIs differ: agent {:?}/{:?}, strongSwan {}/{}",
        a.ike_spi_i,
        a.ike_spi_r,
        s.spi_i,
        s.spi_r
    );
    let installed: Vec<_> = s
        .children
        .iter()
        .filter(|c| c.state == "INSTALLED")
        .collect();
    // Replaced CHILD_SAs live on for their grace period on both sides.
    let ours: Vec<_> = a
        .children
        .iter()
        .filter(|c| c.state == "installed")
        .collect();
    ensure!(
        !ours.is_empty(),
        "the agent has no installed CHILD_SA: {a:?}"
    );
    for c in ours {
        ensure!(
            installed
                .iter()
                .any(|sc| sc.spi_in == c.spi_out && sc.spi_out == c.spi_in),
            "agent CHILD_SA {}_i/{}_o has no mirror in strongSwan's {:?}",
            c.spi_in,
            c.spi_out,
            installed
                .iter()
                .map(|c| (&c.spi_in, &c.spi_out))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// One scenario: the bed, the agent with `side`, charon with `conf`.
fn scenario(
    side: &AgentSide<'_>,
    conf: &CharonConf,
    body: impl FnOnce(&Agent<'_>, &mut Charon) -> Result<()>,
) -> Result<()> {
    require_root()?;
    let bin = vpcgw_bin()?;
    let bed = Bed::new()?;
    let cfg = ConfigDir::new(&side.config()?)?;
    let mut charon = Charon::start(&bed.dc, conf)?;
    let agent = Agent::start(&bed.gw, &bin, cfg.path())?;
    agent.ready()?;
    let r = body(&agent, &mut charon);
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

fn side(p: &Proposal, initiator: bool) -> AgentSide<'_> {
    AgentSide {
        proposal: p,
        initiator,
        ike_lifetime: 86_400,
        esp_lifetime: 3_600,
        dpd: ("restart", 30, 120),
    }
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
            |agent, charon| {
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
            |agent, charon| {
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
    scenario(&side(p, true), &conf, |agent, _charon| {
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
    scenario(&side(p, true), &conf, |agent, _charon| {
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
        scenario(&s, &charon_conf(p, StartAction::None), |agent, charon| {
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
        })?;
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
    scenario(&s, &charon_conf(p, StartAction::None), |agent, charon| {
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
    })
}
