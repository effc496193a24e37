//! Two engines wired together in memory: deterministic in flow (time is
//! advanced by the test, loss and NAT are the test's choice), real in
//! content (real keys, real crypto, real encodings).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, SocketAddr};

use super::sa::{IKE_PORT, NATT_PORT};
use super::*;
use crate::alg::{DhGroup, Encryption, Integrity, Prf};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> Subnet {
    let (a, l) = s.split_once('/').unwrap();
    Subnet {
        addr: ip(a),
        prefix_len: l.parse().unwrap(),
    }
}

const A: &str = "198.51.100.1";
const B: &str = "198.51.100.2";

fn algs_gcm() -> (IkeAlgs, EspAlgs) {
    (
        IkeAlgs {
            encr: Encryption::Aes128Gcm16,
            integ: None,
            prf: Prf::HmacSha256,
            dh: DhGroup::Modp2048,
        },
        EspAlgs {
            encr: Encryption::Aes128Gcm16,
            integ: None,
            pfs: Some(DhGroup::Modp2048),
        },
    )
}

fn conn(me: &str, peer: &str, psk: &str, initiator: bool, algs: (IkeAlgs, EspAlgs)) -> ConnSpec {
    let (local, remote) = if me == A {
        (
            vec![subnet("192.168.1.0/24"), subnet("192.168.2.0/24")],
            vec![subnet("192.168.3.0/24"), subnet("192.168.4.0/24")],
        )
    } else {
        (
            vec![subnet("192.168.3.0/24"), subnet("192.168.4.0/24")],
            vec![subnet("192.168.1.0/24"), subnet("192.168.2.0/24")],
        )
    };
    ConnSpec {
        name: format!("to-{peer}"),
        peer: ip(peer),
        local_id: Identity::parse(me),
        remote_id: Identity::parse(peer),
        psk: Secret::new(psk.as_bytes().to_vec()),
        ike: algs.0,
        ike_lifetime: Duration::from_secs(3600),
        esp: algs.1,
        esp_lifetime: Duration::from_secs(1800),
        local_ts: local,
        remote_ts: remote,
        initiator,
        dpd: Some(Dpd {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            action: DpdAction::Clear,
        }),
    }
}

/// Drop this transmit? (`true`: it is from a.)
type Loss = Box<dyn FnMut(bool, &Transmit) -> bool>;

/// Two engines and the network between them.
struct Pair {
    a: Engine,
    b: Engine,
    now: Instant,
    /// `Some`: a sits behind a NAT that shows it to b as this address,
    /// mapping a's port p to p + 40000.
    nat: Option<IpAddr>,
    lose: Loss,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    delivered: usize,
}

impl Pair {
    fn new(ca: ConnSpec, cb: ConnSpec) -> Pair {
        Self::with(
            EngineConfig::new(ip(A), vec![ca]),
            EngineConfig::new(ip(B), vec![cb]),
        )
    }

    fn with(a: EngineConfig, b: EngineConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Engine::new(a, now).unwrap(),
            b: Engine::new(b, now).unwrap(),
            now,
            nat: None,
            lose: Box::new(|_, _| false),
            events_a: vec![],
            events_b: vec![],
            delivered: 0,
        }
    }

    /// Deliver everything in flight until both are quiet (bounded).
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                if (self.lose)(true, &t) {
                    continue;
                }
                let (from_ip, from_port) = match self.nat {
                    Some(n) => (n, t.src_port + 40000),
                    None => (ip(A), t.src_port),
                };
                assert_eq!(t.dst.ip(), ip(B));
                self.delivered += 1;
                self.b.handle_datagram(
                    self.now,
                    t.dst.port(),
                    SocketAddr::new(from_ip, from_port),
                    &t.data,
                );
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                if (self.lose)(false, &t) {
                    continue;
                }
                let local_port = match self.nat {
                    Some(n) => {
                        assert_eq!(t.dst.ip(), n, "b must answer the NAT's address");
                        t.dst.port() - 40000
                    }
                    None => t.dst.port(),
                };
                self.delivered += 1;
                self.a.handle_datagram(
                    self.now,
                    local_port,
                    SocketAddr::new(ip(B), t.src_port),
                    &t.data,
                );
            }
            while let Some(e) = self.a.poll_event() {
                moved = true;
                self.events_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                moved = true;
                self.events_b.push(e);
            }
            if !moved {
                self.a.check_counts();
                self.b.check_counts();
                return;
            }
        }
        panic!("the engines never went quiet");
    }

    /// Let `d` pass, firing timers as they come (bounded).
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.pump();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                    return;
                }
            }
        }
        panic!("timers never settled");
    }

    fn up(&self, side_a: bool) -> Vec<&ChildSaInfo> {
        let ev = if side_a {
            &self.events_a
        } else {
            &self.events_b
        };
        ev.iter()
            .filter_map(|e| match e {
                Event::ChildUp(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }

    fn state(&self, side_a: bool) -> ConnStatus {
        let e = if side_a { &self.a } else { &self.b };
        e.status(self.now).remove(0)
    }
}

fn assert_twins(a: &ChildSaInfo, b: &ChildSaInfo) {
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(a.encr_key_out.as_bytes(), b.encr_key_in.as_bytes());
    assert_eq!(a.encr_key_in.as_bytes(), b.encr_key_out.as_bytes());
    assert_eq!(a.integ_key_out.as_bytes(), b.integ_key_in.as_bytes());
    assert_ne!(a.encr_key_in.as_bytes(), a.encr_key_out.as_bytes());
}

#[test]
fn establishes_with_every_algorithm_set() {
    let sets = [
        algs_gcm(),
        (
            IkeAlgs {
                encr: Encryption::Aes256Gcm16,
                integ: None,
                prf: Prf::HmacSha384,
                dh: DhGroup::Ecp384,
            },
            EspAlgs {
                encr: Encryption::Aes256Gcm16,
                integ: None,
                pfs: None,
            },
        ),
        (
            IkeAlgs {
                encr: Encryption::Aes128Gcm16,
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::Curve25519,
            },
            EspAlgs {
                encr: Encryption::Aes128Gcm16,
                integ: None,
                pfs: Some(DhGroup::Curve25519),
            },
        ),
        (
            IkeAlgs {
                encr: Encryption::Aes256Cbc,
                integ: Some(Integrity::HmacSha256_128),
                prf: Prf::HmacSha256,
                dh: DhGroup::Modp2048,
            },
            EspAlgs {
                encr: Encryption::Aes256Cbc,
                integ: Some(Integrity::HmacSha256_128),
                pfs: None,
            },
        ),
        (
            IkeAlgs {
                encr: Encryption::Aes128Cbc,
                integ: Some(Integrity::HmacSha512_256),
                prf: Prf::HmacSha512,
                dh: DhGroup::Ecp256,
            },
            EspAlgs {
                encr: Encryption::Aes128Cbc,
                integ: Some(Integrity::HmacSha384_192),
                pfs: Some(DhGroup::Ecp256),
            },
        ),
    ];
    for algs in sets {
        let mut p = Pair::new(
            conn(A, B, "sesame-open-123", true, algs),
            conn(B, A, "sesame-open-123", false, algs),
        );
        p.a.initiate(p.now, 0);
        p.pump();
        let (ua, ub) = (p.up(true), p.up(false));
        assert_eq!(
            (ua.len(), ub.len()),
            (1, 1),
            "{algs:?}: {:?}",
            p.state(true)
        );
        assert_twins(ua[0], ub[0]);
        assert_eq!(
            ua[0].remote_ts.len(),
            2,
            "both remote subnets in one CHILD_SA"
        );
        let (sa, sb) = (p.state(true), p.state(false));
        assert_eq!(
            (sa.state, sb.state),
            (ConnState::Established, ConnState::Established)
        );
        let (ia, ib) = (sa.ike.unwrap(), sb.ike.unwrap());
        assert_eq!((ia.spi_i.clone(), ia.spi_r.clone()), (ib.spi_i, ib.spi_r));
        assert!(ia.initiator && !ib.initiator);
        assert_eq!(ia.children[0].spi_in, ib.children[0].spi_out);
        // The whole exchange: IKE_SA_INIT and IKE_AUTH, two round trips.
        assert_eq!(p.delivered, 4);
    }
}

#[test]
fn wrong_psk_fails_with_a_reason_on_both_sides() {
    let mut p = Pair::new(
        conn(A, B, "right-key-12345", true, algs_gcm()),
        conn(B, A, "wrong-key-12345", false, algs_gcm()),
    );
    p.a.initiate(p.now, 0);
    p.pump();
    let (sa, sb) = (p.state(true), p.state(false));
    assert_eq!(sa.state, ConnState::Down);
    assert!(
        sa.reason
            .as_deref()
            .unwrap()
            .starts_with("authentication failed"),
        "{sa:?}"
    );
    assert!(
        sb.reason.as_deref().unwrap().contains("pre-shared key"),
        "{sb:?}"
    );
    assert!(p.up(true).is_empty() && p.up(false).is_empty());
}

#[test]
fn proposal_mismatches_are_named() {
    let mut other = algs_gcm();
    other.0.dh = DhGroup::Ecp256;
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, other),
    );
    p.a.initiate(p.now, 0);
    p.pump();
    let sa = p.state(true);
    assert_eq!(sa.state, ConnState::Down);
    assert!(
        sa.reason
            .as_deref()
            .unwrap()
            .starts_with("no proposal chosen"),
        "{sa:?}"
    );
    let sb = p.state(false);
    assert!(
        sb.reason
            .as_deref()
            .unwrap()
            .starts_with("no proposal chosen"),
        "{sb:?}"
    );

    // ESP mismatch: the IKE SA comes up, the CHILD_SA does not, and says why.
    let mut esp_other = algs_gcm();
    esp_other.1.encr = Encryption::Aes256Gcm16;
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, esp_other),
    );
    p.a.initiate(p.now, 0);
    p.pump();
    let sa = p.state(true);
    assert_eq!(sa.state, ConnState::Established);
    assert!(
        sa.reason.as_deref().unwrap().contains("NO_PROPOSAL_CHOSEN"),
        "{sa:?}"
    );
    assert!(p.up(true).is_empty());
}

#[test]
fn child_sa_rekeys_with_pfs_and_the_old_one_goes_after_the_grace() {
    let mut ca = conn(A, B, "same-key-123456", true, algs_gcm());
    let mut cb = conn(B, A, "same-key-123456", false, algs_gcm());
    ca.esp_lifetime = Duration::from_secs(60);
    cb.esp_lifetime = Duration::from_secs(600);
    let mut p = Pair::new(ca, cb);
    p.a.initiate(p.now, 0);
    p.pump();
    let first_in = p.up(true)[0].spi_in;
    p.run_for(Duration::from_secs(58));
    let ups = p.up(true);
    assert_eq!(ups.len(), 2, "one rekey within the lifetime");
    assert_eq!(ups[1].rekeyed_from, Some(first_in));
    let bups = p.up(false);
    assert_twins(ups[1], bups[1]);
    assert_ne!(ups[1].encr_key_in.as_bytes(), ups[0].encr_key_in.as_bytes());
    // The old CHILD_SA is reported down once the grace period is over.
    p.run_for(Duration::from_secs(11));
    assert!(
        p.events_a
            .iter()
            .any(|e| matches!(e, Event::ChildDown { spi_in, .. } if *spi_in == first_in)),
        "{:?}",
        p.events_a
    );
    let sa = p.state(true);
    assert_eq!(sa.ike.unwrap().children.len(), 1);
}

#[test]
fn ike_sa_rekeys_and_keeps_its_children() {
    let mut ca = conn(A, B, "same-key-123456", true, algs_gcm());
    ca.ike_lifetime = Duration::from_secs(100);
    let cb = conn(B, A, "same-key-123456", false, algs_gcm());
    let mut p = Pair::new(ca, cb);
    p.a.initiate(p.now, 0);
    p.pump();
    let before = p.state(true).ike.unwrap();
    p.run_for(Duration::from_secs(95));
    let (after_a, after_b) = (p.state(true).ike.unwrap(), p.state(false).ike.unwrap());
    assert_ne!(after_a.spi_i, before.spi_i, "new IKE SA");
    assert_eq!(
        (after_a.spi_i.clone(), after_a.spi_r.clone()),
        (after_b.spi_i, after_b.spi_r)
    );
    assert_eq!(after_a.children.len(), 1);
    assert_eq!(
        after_a.children[0].spi_in, before.children[0].spi_in,
        "children moved over"
    );
    assert_eq!(p.state(true).state, ConnState::Established);
    // Liveness still works on the new SA.
    p.run_for(Duration::from_secs(30));
    assert_eq!(p.state(true).state, ConnState::Established);
}

#[test]
fn dead_peer_is_detected_within_the_timeout() {
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, algs_gcm()),
    );
    p.a.initiate(p.now, 0);
    p.pump();
    let t0 = p.now;
    p.lose = Box::new(|from_a, _| !from_a); // b goes silent
    p.run_for(Duration::from_secs(25));
    let sa = p.state(true);
    assert_eq!(sa.state, ConnState::Down);
    assert_eq!(
        sa.reason.as_deref(),
        Some("peer not responding (dead peer detection)")
    );
    // Idle 5 s, then a 15 s timeout: detected by 20 s (+ scheduling).
    let down_at = p
        .events_a
        .iter()
        .rposition(|e| matches!(e, Event::ChildDown { .. }));
    assert!(down_at.is_some());
    assert!(p.now.duration_since(t0) >= Duration::from_secs(20));
}

#[test]
fn dpd_actions_decide_what_happens_after_a_dead_peer() {
    for action in [DpdAction::Clear, DpdAction::Hold, DpdAction::Restart] {
        let mut ca = conn(A, B, "same-key-123456", true, algs_gcm());
        if let Some(d) = ca.dpd.as_mut() {
            d.action = action;
        }
        let mut p = Pair::new(ca, conn(B, A, "same-key-123456", false, algs_gcm()));
        p.a.initiate(p.now, 0);
        p.pump();
        p.lose = Box::new(|from_a, _| !from_a);
        p.run_for(Duration::from_secs(21));
        let st = p.state(true);
        assert_eq!(
            st.reason.as_deref(),
            Some("peer not responding (dead peer detection)"),
            "{action:?}"
        );
        assert_ne!(st.state, ConnState::Established, "{action:?}");
        p.lose = Box::new(|_, _| false);
        // Traffic asks for the tunnel (the agent's acquire).
        p.a.initiate(p.now, 0);
        p.run_for(Duration::from_secs(6));
        let st = p.state(true).state;
        match action {
            // Parked: traffic does not bring it back, only the peer (here
            // restarted, as a rebooted router would).
            DpdAction::Clear => {
                assert_eq!(st, ConnState::Down, "{action:?}");
                let cb = conn(B, A, "same-key-123456", false, algs_gcm());
                p.b = Engine::new(EngineConfig::new(ip(B), vec![cb]), p.now).unwrap();
                p.b.initiate(p.now, 0);
                p.pump();
                assert_eq!(p.state(true).state, ConnState::Established);
            }
            DpdAction::Hold | DpdAction::Restart => {
                assert_eq!(st, ConnState::Established, "{action:?}")
            }
        }
    }
}

#[test]
fn lost_packets_are_retransmitted_and_replays_answered_from_memory() {
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, algs_gcm()),
    );
    let mut lost = 0;
    p.lose = Box::new(move |from_a, _| {
        // Lose the first two of a's datagrams and the first of b's.
        lost += 1;
        (from_a && lost <= 2) || (!from_a && lost == 3)
    });
    p.a.initiate(p.now, 0);
    p.run_for(Duration::from_secs(10));
    assert_eq!(p.state(true).state, ConnState::Established);
    assert_eq!(p.up(true).len(), 1);
    assert_eq!(
        p.up(false).len(),
        1,
        "a retransmitted IKE_AUTH does not make a second CHILD_SA"
    );
}

#[test]
fn nat_is_detected_and_both_move_to_4500() {
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, algs_gcm()),
    );
    p.nat = Some(ip("203.0.113.7"));
    // b must know a by the NAT's address.
    let mut cb = conn(B, A, "same-key-123456", false, algs_gcm());
    cb.peer = ip("203.0.113.7");
    // No liveness checks: their traffic would keep the mapping open and
    // make keepalives unnecessary (and so unsent).
    cb.dpd = None;
    let mut ca = conn(A, B, "same-key-123456", true, algs_gcm());
    ca.dpd = None;
    p.a = Engine::new(EngineConfig::new(ip(A), vec![ca]), p.now).unwrap();
    p.b = Engine::new(EngineConfig::new(ip(B), vec![cb]), p.now).unwrap();
    p.a.initiate(p.now, 0);
    p.pump();
    let (sa, sb) = (p.state(true).ike.unwrap(), p.state(false).ike.unwrap());
    assert!(sa.nat_local && !sa.nat_remote, "{sa:?}");
    assert!(sb.nat_remote, "{sb:?}");
    assert_eq!((sa.local_port, sb.local_port), (NATT_PORT, NATT_PORT));
    assert!(p.up(true)[0].encap && p.up(false)[0].encap);
    // a keeps the NAT mapping open.
    p.run_for(Duration::from_secs(21));
    assert!(p.b.stats().keepalives >= 1);
}

#[test]
fn flood_of_ike_sa_init_needs_cookies_and_keeps_memory_bounded() {
    let ca = conn(A, B, "same-key-123456", true, algs_gcm());
    let cb = conn(B, A, "same-key-123456", false, algs_gcm());
    let mut bcfg = EngineConfig::new(ip(B), vec![cb]);
    bcfg.cookie_threshold = 4;
    bcfg.half_open_limit = 50;
    let mut p = Pair::with(EngineConfig::new(ip(A), vec![ca.clone()]), bcfg);
    // Many "initiators" from the peer's address (spoofed or not), each a
    // fresh IKE SA, none completing IKE_AUTH.
    for i in 0..200u32 {
        let mut e = Engine::new(EngineConfig::new(ip(A), vec![ca.clone()]), p.now).unwrap();
        e.initiate(p.now, 0);
        let t = e.poll_transmit().unwrap();
        let _ = i;
        p.b.handle_datagram(p.now, IKE_PORT, SocketAddr::new(ip(A), IKE_PORT), &t.data);
        while p.b.poll_transmit().is_some() {}
    }
    p.b.check_counts();
    let half_open = p.b.half_open;
    assert!(half_open <= 4, "{half_open} half-open SAs kept");
    assert!(p.b.stats().cookies_sent >= 190);
    // The real initiator is asked for a cookie and gets through.
    p.a.initiate(p.now, 0);
    p.pump();
    assert_eq!(
        p.state(true).state,
        ConnState::Established,
        "{:?}",
        p.state(true)
    );
    // Half-open SAs expire.
    p.run_for(Duration::from_secs(31));
    assert_eq!(p.b.sas.values().filter(|s| s.is_half_open()).count(), 0);
}

/// The first payload of `t`'s IKE message (after the non-ESP marker).
fn first_payload(t: &Transmit) -> u8 {
    let data = if t.src_port == NATT_PORT {
        &t.data[4..]
    } else {
        &t.data[..]
    };
    wire::parse_message(data).unwrap().payloads[0].ty
}

#[test]
fn a_flood_in_one_peers_name_spares_the_other_peers() {
    const C: &str = "198.51.100.3";
    let cb = conn(A, B, "same-key-123456", false, algs_gcm());
    let mut cc = conn(A, C, "other-key-98765", false, algs_gcm());
    cc.name = "to-c".into();
    let now = Instant::now();
    let mut r = Engine::new(EngineConfig::new(ip(A), vec![cb, cc]), now).unwrap();
    let from_b = conn(B, A, "same-key-123456", true, algs_gcm());
    for _ in 0..100 {
        let mut e = Engine::new(EngineConfig::new(ip(B), vec![from_b.clone()]), now).unwrap();
        e.initiate(now, 0);
        let t = e.poll_transmit().unwrap();
        r.handle_datagram(now, IKE_PORT, SocketAddr::new(ip(B), IKE_PORT), &t.data);
    }
    r.check_counts();
    let answers: Vec<u8> = std::iter::from_fn(|| r.poll_transmit())
        .map(|t| first_payload(&t))
        .collect();
    let full = answers.iter().filter(|&&p| p == payload::SA).count();
    assert_eq!(full, r.cfg.peer_cookie_threshold, "B's own bound");
    assert_eq!(r.stats().cookies_sent as usize, 100 - full);
    // C is answered in full, at once.
    let mut c = Engine::new(
        EngineConfig::new(ip(C), vec![conn(C, A, "other-key-98765", true, algs_gcm())]),
        now,
    )
    .unwrap();
    c.initiate(now, 0);
    let t = c.poll_transmit().unwrap();
    r.handle_datagram(now, IKE_PORT, SocketAddr::new(ip(C), IKE_PORT), &t.data);
    assert_eq!(first_payload(&r.poll_transmit().unwrap()), payload::SA);
}

#[test]
fn garbage_and_mutations_never_panic_nor_tear_down() {
    let mut p = Pair::new(
        conn(A, B, "same-key-123456", true, algs_gcm()),
        conn(B, A, "same-key-123456", false, algs_gcm()),
    );
    // Capture a's messages while establishing, then replay mutations of them.
    let mut captured: Vec<Vec<u8>> = vec![];
    p.a.initiate(p.now, 0);
    for _ in 0..10 {
        while let Some(t) = p.a.poll_transmit() {
            captured.push(t.data.clone());
            p.b.handle_datagram(
                p.now,
                t.dst.port(),
                SocketAddr::new(ip(A), t.src_port),
                &t.data,
            );
        }
        while let Some(t) = p.b.poll_transmit() {
            p.a.handle_datagram(
                p.now,
                t.dst.port(),
                SocketAddr::new(ip(B), t.src_port),
                &t.data,
            );
        }
    }
    assert_eq!(p.state(false).state, ConnState::Established);
    let mut seed = 0x1234_5678_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for i in 0..3000 {
        let base = &captured[i % captured.len()];
        let mut m = base.clone();
        match next() % 4 {
            0 => {
                let at = next() as usize % m.len();
                m[at] ^= 1 << (next() % 8);
            }
            1 => m.truncate(next() as usize % m.len()),
            2 => m.extend((0..(next() % 64)).map(|_| next() as u8)),
            _ => {
                let at = next() as usize % m.len();
                m[at] = next() as u8;
            }
        }
        let port = if next() % 2 == 0 { IKE_PORT } else { NATT_PORT };
        p.b.handle_datagram(p.now, port, SocketAddr::new(ip(A), IKE_PORT), &m);
        while p.b.poll_transmit().is_some() {}
    }
    let junk: Vec<u8> = (0..3000).map(|_| next() as u8).collect();
    for n in [0, 1, 4, 27, 28, 29, 100, 3000] {
        p.b.handle_datagram(
            p.now,
            IKE_PORT,
            SocketAddr::new(ip(A), IKE_PORT),
            &junk[..n],
        );
    }
    assert_eq!(
        p.state(false).state,
        ConnState::Established,
        "nothing unauthenticated tears it down"
    );
    assert!(p.b.stats().malformed > 0);
}
