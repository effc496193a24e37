//! The agent against strongSwan: the proposal matrix in both notations, the
//! agent's config for one connection, charon's mirror of it, and the checks
//! that both sides report the same SAs. Shared by tests/interop.rs and the
//! IKE part of the bench.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use vpcgw::ike::ConnReport;
use vpcgw::run::StatusReport;

use vpcgw_ike::alg::{DhGroup, Encryption, Prf};
use vpcgw_ike::engine::IkeAlgs;

use crate::agent::{Agent, TEST_PSK, last_lines};
use crate::bed::{DC_WAN_IP, GW_WAN_IP};
use crate::strongswan::{Charon, CharonConf, IkeSaInfo, StartAction};
use crate::wait_for;

/// One row of the proposal matrix: strongSwan's notation, and ours.
pub struct Proposal {
    pub ike: &'static str,
    pub esp: &'static str,
    /// The `[[ike_policies]]` and `[[ipsec_policies]]` keys (besides name).
    pub ike_toml: &'static str,
    pub esp_toml: &'static str,
}

pub const MATRIX: &[Proposal] = &[
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

/// The example with these policies, this initiator mode and these lifetimes
/// (seconds) and DPD settings.
pub struct AgentSide<'a> {
    pub proposal: &'a Proposal,
    pub initiator: bool,
    pub ike_lifetime: u64,
    pub esp_lifetime: u64,
    /// (action, interval, timeout)
    pub dpd: (&'a str, u64, u64),
}

impl AgentSide<'_> {
    pub fn config(&self) -> Result<String> {
        let example =
            std::fs::read_to_string(crate::repo_root().join("examples/site-to-site.toml"))?;
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
pub fn charon_conf(p: &Proposal, start: StartAction) -> CharonConf {
    let mut c = CharonConf::new(
        "dc1",
        DC_WAN_IP.into(),
        GW_WAN_IP.into(),
        TEST_PSK.trim_end(),
    );
    c.ike_proposals = p.ike.to_string();
    c.esp_proposals = p.esp.to_string();
    c.local_ts = vec!["192.168.3.0/24".into(), "192.168.4.0/24".into()];
    c.remote_ts = vec!["192.168.1.0/24".into(), "192.168.2.0/24".into()];
    c.start_action = start;
    c
}

pub fn status(agent: &Agent<'_>) -> Result<ConnReport> {
    let r: StatusReport = agent.status()?;
    r.connections
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no connection in the status"))
}

/// Wait until both report an established IKE SA with a CHILD_SA, and check
/// they agree on the SPIs. Returns the time it took.
pub fn wait_up(
    agent: &Agent<'_>,
    charon: &Charon,
    limit: Duration,
) -> Result<(ConnReport, IkeSaInfo)> {
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

pub fn check_spis(a: &ConnReport, s: &IkeSaInfo) -> Result<()> {
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

pub fn side(p: &Proposal, initiator: bool) -> AgentSide<'_> {
    AgentSide {
        proposal: p,
        initiator,
        ike_lifetime: 86_400,
        esp_lifetime: 3_600,
        dpd: ("restart", 30, 120),
    }
}

/// [`MATRIX`]`[0]`'s IKE proposal (aes128gcm16-prfsha256-modp2048), for
/// requests made outside the agent (floods).
pub fn first_ike_algs() -> IkeAlgs {
    IkeAlgs {
        encr: Encryption::Aes128Gcm16,
        integ: None,
        prf: Prf::HmacSha256,
        dh: DhGroup::Modp2048,
    }
}
