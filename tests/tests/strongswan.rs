//! strongSwan to strongSwan across the test bed: the baseline vpcgw's IKEv2
//! must match. A charon in `gw` (198.51.100.1, 192.168.1.0/24 and
//! 192.168.2.0/24) and one in `dc` (198.51.100.2, 192.168.3.0/24 and
//! 192.168.4.0/24), PSK, driven through [`vpcgw_tests::strongswan`].
//!
//! Each test builds its own bed; tests skip (with a note) when strongSwan is
//! not installed (`cargo xtask setup` installs it). Every wait is bounded;
//! the PSK (random per test) is never printed.

use std::fs::File;
use std::io::Read as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use vpcgw_tests::agent::last_lines;
use vpcgw_tests::bed::{self, Bed};
use vpcgw_tests::require_root;
use vpcgw_tests::strongswan::{
    Charon, CharonConf, ChildSaInfo, IkeSaInfo, median_time_to_child, strongswan_installed, summary,
};

const CONN: &str = "dc1";
/// How long one establishment may take.
const UP_LIMIT: Duration = Duration::from_secs(10);

/// (IKE proposal, ESP proposal, what swanctl lists: IKE encr/keysize, IKE
/// integ, PRF, DH group, ESP encr/keysize, ESP integ, PFS group).
struct Case {
    ike: &'static str,
    esp: &'static str,
    encr: (&'static str, u32),
    integ: Option<&'static str>,
    prf: &'static str,
    dh: &'static str,
    esp_encr: (&'static str, u32),
    esp_integ: Option<&'static str>,
    pfs: Option<&'static str>,
}

const CASES: [Case; 5] = [
    Case {
        ike: "aes128gcm16-prfsha256-modp2048",
        esp: "aes128gcm16-modp2048",
        encr: ("AES_GCM_16", 128),
        integ: None,
        prf: "PRF_HMAC_SHA2_256",
        dh: "MODP_2048",
        esp_encr: ("AES_GCM_16", 128),
        esp_integ: None,
        pfs: None, // PFS shows only on rekeyed CHILD_SAs (the first one uses the IKE keys)
    },
    Case {
        ike: "aes256gcm16-prfsha384-ecp384",
        esp: "aes256gcm16",
        encr: ("AES_GCM_16", 256),
        integ: None,
        prf: "PRF_HMAC_SHA2_384",
        dh: "ECP_384",
        esp_encr: ("AES_GCM_16", 256),
        esp_integ: None,
        pfs: None,
    },
    Case {
        ike: "aes128gcm16-prfsha256-curve25519",
        esp: "aes128gcm16",
        encr: ("AES_GCM_16", 128),
        integ: None,
        prf: "PRF_HMAC_SHA2_256",
        dh: "CURVE_25519",
        esp_encr: ("AES_GCM_16", 128),
        esp_integ: None,
        pfs: None,
    },
    Case {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256",
        encr: ("AES_CBC", 256),
        integ: Some("HMAC_SHA2_256_128"),
        prf: "PRF_HMAC_SHA2_256",
        dh: "MODP_2048",
        esp_encr: ("AES_CBC", 256),
        esp_integ: Some("HMAC_SHA2_256_128"),
        pfs: None,
    },
    Case {
        ike: "aes128-sha256-ecp256",
        esp: "aes128-sha256",
        encr: ("AES_CBC", 128),
        integ: Some("HMAC_SHA2_256_128"),
        prf: "PRF_HMAC_SHA2_256",
        dh: "ECP_256",
        esp_encr: ("AES_CBC", 128),
        esp_integ: Some("HMAC_SHA2_256_128"),
        pfs: None,
    },
];

/// Root and strongSwan there? (Not root: an error, as for the other
/// privileged tests. No strongSwan: a note and a skip.)
fn ready(test: &str) -> Result<bool> {
    require_root()?;
    if !strongswan_installed() {
        eprintln!("{test}: SKIPPED: strongSwan is not installed (run `cargo xtask setup`)");
        return Ok(false);
    }
    Ok(true)
}

/// A fresh random PSK (never printed).
fn random_psk() -> Result<String> {
    let mut b = [0u8; 18];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// gw's side of the site-to-site tunnel; dc's is its mirror.
fn gw_conf(psk: &str, ike: &str, esp: &str) -> CharonConf {
    let mut c = CharonConf::new(
        CONN,
        IpAddr::V4(bed::GW_WAN_IP),
        IpAddr::V4(bed::DC_WAN_IP),
        psk,
    );
    c.ike_proposals = ike.to_string();
    c.esp_proposals = esp.to_string();
    c.local_ts = vec!["192.168.1.0/24".into(), "192.168.2.0/24".into()];
    c.remote_ts = vec!["192.168.3.0/24".into(), "192.168.4.0/24".into()];
    c
}

/// Both charons; a failure of `body` carries the end of both logs.
fn with_pair(
    bed: &Bed,
    gw: &CharonConf,
    dc: &CharonConf,
    body: impl FnOnce(&mut Charon, &mut Charon) -> Result<()>,
) -> Result<()> {
    let mut c_dc = Charon::start(&bed.dc, dc).context("starting charon in dc")?;
    let mut c_gw = Charon::start(&bed.gw, gw).context("starting charon in gw")?;
    let r = body(&mut c_gw, &mut c_dc);
    let (log_gw, log_dc) = (c_gw.log(), c_dc.log());
    for (side, log) in [("gw", &log_gw), ("dc", &log_dc)] {
        ensure!(
            !log.contains(&gw.psk) && !log.contains(&dc.psk),
            "{side}'s charon log holds the PSK"
        );
    }
    r.map_err(|e| {
        e.context(format!(
            "charon log in gw (last lines):\n{}\ncharon log in dc (last lines):\n{}",
            last_lines(&log_gw, 40),
            last_lines(&log_dc, 40)
        ))
    })
}

/// The INSTALLED CHILD_SAs of `s` (rekeyed ones stay listed as REKEYED,
/// DELETING or DELETED for charon's `delete_rekeyed_delay`, 5 s).
fn installed(s: &IkeSaInfo) -> Vec<&ChildSaInfo> {
    s.children
        .iter()
        .filter(|c| c.state == "INSTALLED")
        .collect()
}

/// Exactly one IKE SA, named [`CONN`], ESTABLISHED, with one INSTALLED child.
fn one_up(sas: &[IkeSaInfo]) -> bool {
    sas.len() == 1
        && sas
            .iter()
            .all(|s| s.name == CONN && s.state == "ESTABLISHED" && installed(s).len() == 1)
}

/// Waits until both sides list the tunnel up, checks it is the same IKE SA
/// and mirrored CHILD_SAs with the algorithms of `case`; returns (gw, dc).
/// Lists both sides again (a few times) if they differ: a rekey may fall
/// between the two listings.
fn check_up(gw: &Charon, dc: &Charon, case: &Case) -> Result<(IkeSaInfo, IkeSaInfo)> {
    let mut last = None;
    for _ in 0..5 {
        let g = gw.wait_sas(UP_LIMIT, one_up).context("gw")?;
        let d = dc.wait_sas(UP_LIMIT, one_up).context("dc")?;
        let (Some(g), Some(d)) = (g.into_iter().next(), d.into_iter().next()) else {
            bail!("no SA");
        };
        match same_tunnel(&g, &d, case) {
            Ok(()) => return Ok((g, d)),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no comparison")))
}

fn same_tunnel(g: &IkeSaInfo, d: &IkeSaInfo, case: &Case) -> Result<()> {
    let ctx = || {
        format!(
            "{}, gw:\n{}dc:\n{}",
            case.ike,
            summary(std::slice::from_ref(g)),
            summary(std::slice::from_ref(d))
        )
    };
    ensure!(g.initiator && !d.initiator, "roles: {}", ctx());
    ensure!(
        g.spi_i == d.spi_i && g.spi_r == d.spi_r && g.spi_i.len() == 16 && g.spi_r.len() == 16,
        "IKE SPIs differ: {}",
        ctx()
    );
    for s in [g, d] {
        ensure!(
            (s.encr.as_str(), s.encr_keysize) == (case.encr.0, Some(case.encr.1))
                && s.integ.as_deref() == case.integ
                && s.prf == case.prf
                && s.dh == case.dh,
            "IKE algorithms {}/{:?}/{:?}/{}/{}: {}",
            s.encr,
            s.encr_keysize,
            s.integ,
            s.prf,
            s.dh,
            ctx()
        );
        // libipsec forces NAT-T: UDP 4500 on both ends.
        ensure!(
            (s.local_port, s.remote_port) == (4500, 4500),
            "ports: {}",
            ctx()
        );
    }
    let (Some(gc), Some(dcc)) = (installed(g).first().copied(), installed(d).first().copied())
    else {
        bail!("no CHILD_SA: {}", ctx());
    };
    ensure!(
        gc.spi_in == dcc.spi_out && gc.spi_out == dcc.spi_in && gc.spi_in.len() == 8,
        "CHILD_SA SPIs not mirrored: {}",
        ctx()
    );
    for c in [gc, dcc] {
        ensure!(
            c.name == CONN && c.mode == "TUNNEL" && c.protocol == "ESP" && c.encap,
            "CHILD_SA: {}",
            ctx()
        );
        ensure!(
            (c.encr.as_str(), c.encr_keysize) == (case.esp_encr.0, Some(case.esp_encr.1))
                && c.integ.as_deref() == case.esp_integ
                && c.dh.as_deref() == case.pfs,
            "ESP algorithms {}/{:?}/{:?}/{:?}: {}",
            c.encr,
            c.encr_keysize,
            c.integ,
            c.dh,
            ctx()
        );
    }
    ensure!(
        gc.local_ts == ["192.168.1.0/24", "192.168.2.0/24"]
            && gc.remote_ts == ["192.168.3.0/24", "192.168.4.0/24"]
            && dcc.local_ts == gc.remote_ts
            && dcc.remote_ts == gc.local_ts,
        "traffic selectors: {}",
        ctx()
    );
    Ok(())
}

fn terminate_all(gw: &Charon, dc: &Charon) -> Result<()> {
    if !gw.list_sas()?.is_empty() {
        gw.terminate_ike(CONN)?;
    }
    for c in [gw, dc] {
        c.wait_sas(UP_LIMIT, |sas| sas.is_empty())?;
    }
    Ok(())
}

/// 1. Every proposal pair comes up, both sides agree; traffic from srv1 to
///    dchost goes through the tunnel (the CHILD_SA counters move).
#[test]
fn strongswan_baseline_proposals_and_traffic() -> Result<()> {
    if !ready("strongswan_baseline_proposals_and_traffic")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let psk = random_psk()?;
    let first = &CASES[0];
    let gw = gw_conf(&psk, first.ike, first.esp);
    let dc = gw.mirror();
    with_pair(&bed, &gw, &dc, |c_gw, c_dc| {
        for (i, case) in CASES.iter().enumerate() {
            let g = gw_conf(&psk, case.ike, case.esp);
            if i > 0 {
                terminate_all(c_gw, c_dc)?;
                c_gw.reload(&g)?;
                c_dc.reload(&g.mirror())?;
            }
            let start = Instant::now();
            let out = c_gw
                .initiate(CONN, UP_LIMIT)
                .with_context(|| format!("initiate {} / {}", case.ike, case.esp))?;
            ensure!(!out.contains(&psk), "swanctl's output holds the PSK");
            let (gs, _) = check_up(c_gw, c_dc, case)?;
            eprintln!(
                "baseline: {} / {}: up in {:.0} ms, IKE {}_i {}_r",
                case.ike,
                case.esp,
                start.elapsed().as_secs_f64() * 1e3,
                gs.spi_i,
                gs.spi_r
            );
            if i == 0 {
                through_tunnel(&bed, c_gw, c_dc)?;
            }
        }
        Ok(())
    })
}

/// srv1 pings dchost: every echo and reply crosses the CHILD_SA (gw's and
/// dc's counters), not the clear route via dc that the bed also has.
fn through_tunnel(bed: &Bed, gw: &Charon, dc: &Charon) -> Result<()> {
    let rules = bed.gw.ip(&["rule", "show"])?;
    let t220 = bed.gw.ip(&["route", "show", "table", "220"])?;
    ensure!(
        rules.contains("lookup 220")
            && t220.contains("192.168.3.0/24 ")
            && t220.contains("dev ipsec0"),
        "libipsec's routes are not in gw's table 220:\nrules:\n{rules}table 220:\n{t220}"
    );
    let counters = |c: &Charon| -> Result<(u64, u64)> {
        let sas = c.list_sas()?;
        let child = sas.iter().flat_map(|s| &s.children).next();
        Ok(child
            .map(|c| (c.packets_in, c.packets_out))
            .unwrap_or_default())
    };
    let (g0, d0) = (counters(gw)?, counters(dc)?);
    let n = 3;
    let got = bed.srv1.ping(&bed::DCHOST_IP.to_string(), n)?;
    ensure!(
        got == n,
        "srv1 -> dchost through the tunnel: {got}/{n} replies"
    );
    let (g1, d1) = (counters(gw)?, counters(dc)?);
    let n = u64::from(n);
    eprintln!(
        "baseline: ping srv1 -> dchost {got}/{n}: gw CHILD_SA packets in {} out {}, dc in {} out {}",
        g1.0, g1.1, d1.0, d1.1
    );
    ensure!(
        g1.1 >= g0.1 + n && g1.0 >= g0.0 + n && d1.0 >= d0.0 + n && d1.1 >= d0.1 + n,
        "CHILD_SA counters did not move by {n}: gw {g0:?} -> {g1:?}, dc {d0:?} -> {d1:?}"
    );
    Ok(())
}

/// 2. Time from `swanctl --initiate` to CHILD_SA INSTALLED, median of 5.
#[test]
fn strongswan_time_to_child() -> Result<()> {
    if !ready("strongswan_time_to_child")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let psk = random_psk()?;
    let gw = gw_conf(&psk, CASES[0].ike, CASES[0].esp);
    with_pair(&bed, &gw, &gw.mirror(), |c_gw, c_dc| {
        let (median, runs) = median_time_to_child(c_gw, c_dc, CONN, CONN, 5, UP_LIMIT)?;
        let ms: Vec<String> = runs
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .collect();
        eprintln!(
            "time to CHILD_SA ({} / {}), strongSwan to strongSwan: median {:.1} ms (runs: {} ms)",
            CASES[0].ike,
            CASES[0].esp,
            median.as_secs_f64() * 1e3,
            ms.join(", ")
        );
        ensure!(median < Duration::from_secs(5), "median {median:?}");
        Ok(())
    })
}

/// 3. Short lifetimes: the IKE SA and the CHILD_SA rekey (new SPIs, the old
///    ones gone) and stay up, on both sides.
#[test]
fn strongswan_rekeys() -> Result<()> {
    if !ready("strongswan_rekeys")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let psk = random_psk()?;
    let mut gw = gw_conf(&psk, CASES[0].ike, CASES[0].esp);
    gw.rekey_time = Some(Duration::from_secs(8));
    gw.over_time = Some(Duration::from_secs(3));
    gw.child_rekey_time = Some(Duration::from_secs(6));
    gw.child_life_time = Some(Duration::from_secs(10));
    // dc keeps charon's long defaults: gw starts every rekey.
    let dc = gw.mirror();
    with_pair(&bed, &gw, &dc, |c_gw, c_dc| {
        let start = Instant::now();
        c_gw.initiate(CONN, UP_LIMIT)?;
        let (g0, _) = check_up(c_gw, c_dc, &CASES[0])?;
        let Some(child0) = installed(&g0).first().copied().cloned() else {
            bail!("no child");
        };
        let ike0 = (g0.spi_i.clone(), g0.spi_r.clone());
        let rekeyed = |sas: &[IkeSaInfo]| {
            let old_ike = sas
                .iter()
                .any(|s| (&s.spi_i, &s.spi_r) == (&ike0.0, &ike0.1));
            let old_child = sas.iter().flat_map(|s| &s.children).any(|c| {
                c.spi_in == child0.spi_in
                    || c.spi_out == child0.spi_in
                    || c.spi_in == child0.spi_out
                    || c.spi_out == child0.spi_out
            });
            !old_ike && !old_child && one_up(sas)
        };
        // IKE rekey after 5-8 s, CHILD_SA after 2-6 s; the old CHILD_SA is
        // listed (DELETED) for 5 s more.
        let limit = Duration::from_secs(25);
        let g1 = c_gw.wait_sas(limit, rekeyed).context("gw: rekeys")?;
        let took = start.elapsed();
        let d1 = c_dc
            .wait_sas(Duration::from_secs(5), rekeyed)
            .context("dc: rekeys")?;
        eprintln!(
            "rekeys: IKE and CHILD_SA both rekeyed within {:.1} s of initiating\n gw:\n{} dc:\n{}",
            took.as_secs_f64(),
            summary(&g1),
            summary(&d1)
        );
        let (g, d) = check_up(
            c_gw,
            c_dc,
            &Case {
                pfs: Some("MODP_2048"),
                ..CASES[0]
            },
        )?;
        let gw_log = c_gw.log();
        print_matching(
            "rekeys, gw",
            &gw_log,
            &["] rekeyed between", "CREATE_CHILD_SA request"],
        );
        // gw (the short lifetimes) started both rekeys.
        ensure!(
            gw_log.contains("activating IKE_REKEY task") && gw_log.contains("] rekeyed between"),
            "gw's log names no IKE_SA rekey"
        );
        ensure!(
            gw_log.contains("activating CHILD_REKEY task"),
            "gw's log names no CHILD_SA rekey"
        );
        ensure!(g.uniqueid != g0.uniqueid, "IKE unique id unchanged");
        ensure!(g.spi_i == d.spi_i, "SPIs differ after rekey");
        Ok(())
    })
}

/// 4. DPD: gw probes every 2 s; dc's charon is killed; gw's IKE SA goes.
#[test]
fn strongswan_dpd_detects_dead_peer() -> Result<()> {
    if !ready("strongswan_dpd_detects_dead_peer")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let psk = random_psk()?;
    let mut gw = gw_conf(&psk, CASES[0].ike, CASES[0].esp);
    gw.dpd_delay = Some(Duration::from_secs(2));
    gw.dpd_action = Some("clear".into());
    // charon's default retransmissions (4 s x 1.8^n, 5 tries) need ~165 s.
    gw.retransmit_timeout = Some(Duration::from_secs(1));
    gw.retransmit_base = Some(1.0);
    gw.retransmit_tries = Some(2);
    let dc = gw.mirror();
    with_pair(&bed, &gw, &dc, |c_gw, c_dc| {
        c_gw.initiate(CONN, UP_LIMIT)?;
        check_up(c_gw, c_dc, &CASES[0])?;
        c_dc.kill();
        let killed = Instant::now();
        c_gw.wait_sas(Duration::from_secs(20), |sas| {
            !sas.iter().any(|s| s.state == "ESTABLISHED")
        })
        .context("gw's IKE SA still up after its peer died")?;
        let took = killed.elapsed();
        let log = c_gw.log();
        let dpd_lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("retransmit") || l.contains("giving up") || l.contains("DPD"))
            .collect();
        eprintln!(
            "DPD: dpd_delay 2 s, retransmit 1 s x 2 tries: gw dropped the dead peer's IKE SA {:.1} s after the kill\n{}",
            took.as_secs_f64(),
            dpd_lines.join("\n")
        );
        ensure!(
            log.contains("giving up after 2 retransmits"),
            "gw's log does not say it gave up"
        );
        Ok(())
    })
}

/// 5a. Wrong PSK: no IKE SA; the initiator's log names AUTHENTICATION_FAILED.
#[test]
fn strongswan_wrong_psk_fails() -> Result<()> {
    if !ready("strongswan_wrong_psk_fails")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let mut gw = gw_conf(&random_psk()?, CASES[0].ike, CASES[0].esp);
    gw.keyingtries = Some(1);
    let mut dc = gw.mirror();
    dc.psk = random_psk()?;
    with_pair(&bed, &gw, &dc, |c_gw, c_dc| {
        let r = c_gw.initiate(CONN, UP_LIMIT);
        ensure!(r.is_err(), "initiate succeeded with a wrong PSK");
        for c in [&*c_gw, &*c_dc] {
            c.wait_sas(UP_LIMIT, |sas| {
                !sas.iter().any(|s| s.state == "ESTABLISHED")
            })?;
        }
        let (gl, dl) = (c_gw.log(), c_dc.log());
        print_matching("wrong PSK, gw (initiator)", &gl, &["AUTHENTICATION_FAILED"]);
        print_matching(
            "wrong PSK, dc (responder)",
            &dl,
            &["MAC mismatched", "N(AUTH_FAILED)"],
        );
        ensure!(
            gl.contains("received AUTHENTICATION_FAILED notify error"),
            "gw's log lacks AUTHENTICATION_FAILED"
        );
        ensure!(
            dl.contains("but MAC mismatched"),
            "dc's log lacks the MAC mismatch"
        );
        Ok(())
    })
}

/// 5b. Proposal mismatch, IKE then ESP: NO_PROPOSAL_CHOSEN.
#[test]
fn strongswan_proposal_mismatch_fails() -> Result<()> {
    if !ready("strongswan_proposal_mismatch_fails")? {
        return Ok(());
    }
    let bed = Bed::new()?;
    let psk = random_psk()?;
    let mut gw = gw_conf(&psk, CASES[0].ike, CASES[0].esp);
    gw.keyingtries = Some(1);
    let mut dc = gw.mirror();
    dc.ike_proposals = CASES[3].ike.to_string();
    with_pair(&bed, &gw, &dc, |c_gw, c_dc| {
        // IKE proposals disjoint: IKE_SA_INIT fails.
        ensure!(c_gw.initiate(CONN, UP_LIMIT).is_err(), "initiate succeeded");
        c_gw.wait_sas(UP_LIMIT, |sas| sas.is_empty())?;
        let (gl, dl) = (c_gw.log(), c_dc.log());
        print_matching(
            "IKE proposal mismatch, gw (initiator)",
            &gl,
            &["PROPOSAL", "proposal"],
        );
        print_matching(
            "IKE proposal mismatch, dc (responder)",
            &dl,
            &["PROPOSAL", "proposal"],
        );
        ensure!(
            gl.contains("received NO_PROPOSAL_CHOSEN notify error"),
            "gw's log lacks NO_PROPOSAL_CHOSEN"
        );
        ensure!(
            dl.contains("received proposals unacceptable"),
            "dc's log does not say why"
        );

        // IKE agrees, ESP does not: the IKE SA comes up, no CHILD_SA.
        let mut dc2 = dc.clone();
        dc2.ike_proposals = gw.ike_proposals.clone();
        dc2.esp_proposals = CASES[3].esp.to_string();
        c_dc.reload(&dc2)?;
        let before = c_gw.log().len();
        ensure!(c_gw.initiate(CONN, UP_LIMIT).is_err(), "initiate succeeded");
        let gl = c_gw.log();
        let tail = gl.get(before..).unwrap_or_default();
        print_matching(
            "ESP proposal mismatch, gw (initiator)",
            tail,
            &["PROPOSAL", "proposal"],
        );
        ensure!(
            tail.contains("received NO_PROPOSAL_CHOSEN notify, no CHILD_SA built"),
            "gw's log lacks the CHILD_SA NO_PROPOSAL_CHOSEN"
        );
        let sas = c_gw.list_sas()?;
        ensure!(
            sas.iter().all(|s| s.children.is_empty()),
            "a CHILD_SA came up:\n{}",
            summary(&sas)
        );
        Ok(())
    })
}

/// Prints the log lines that contain one of `needles`.
fn print_matching(what: &str, log: &str, needles: &[&str]) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect();
    eprintln!("{what}:\n  {}", lines.join("\n  "));
}
