//! End-to-end: the real agent binary (`vpcgw run`) in the test bed's gateway
//! namespace, real traffic between the bed's namespaces (iputils `ping`,
//! TCP and UDP sockets made inside them), and the agent's own counters
//! (`vpcgw stats --json`). Each test builds its own bed and runs its agent on
//! a private copy of `examples/site-to-site.toml` (own control socket and PSK
//! in a temporary directory), so tests run in parallel.
//!
//! Every wait is bounded; the bed, the agent and the temporary directory
//! are removed also when a test fails.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use vpcgw::stats::Snapshot;
use vpcgw_common::stats::Reason;
use vpcgw_tests::agent::{Agent, ConfigDir, SnapshotExt as _, last_lines, with_rule, without_rule};
use vpcgw_tests::bed::{self, Bed, sock};
use vpcgw_tests::{Connect, Netns, require_root, vpcgw_bin, wait_for};

/// A denied TCP connection is one that gets no answer within this.
const CONNECT_LIMIT: Duration = Duration::from_secs(1);
/// How long an allowed exchange (a datagram, an echoed line) may take.
const REPLY_LIMIT: Duration = Duration::from_secs(2);
/// How long a reload may take to show in `generation`.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);

// Rules of the example, as `vpcgw stats` names them.
const WEB: &str = "sg-web";
const DB: &str = "sg-db";
const WEB_HTTP_ANY: &str = "ingress IPv4 tcp 80 from any";
const WEB_EGRESS: &str = "egress IPv4 any to any";
const DB_PG_FROM_WEB: &str = "ingress IPv4 tcp 5432 from group sg-web";
/// The rule tests 5 adds.
const WEB_8080_RULE: &str = "direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_min = 8080\n\
                             description = \"e2e: 8080 from any\"";
const WEB_8080_ANY: &str = "ingress IPv4 tcp 8080 from any";

/// What a test gets: its bed, its configuration, its running agent.
struct Env<'a> {
    bed: &'a Bed,
    cfg: &'a ConfigDir,
    agent: &'a Agent<'a>,
}

impl Env<'_> {
    fn stats(&self) -> Result<Snapshot> {
        self.agent.stats()
    }
}

/// Builds a bed, starts the agent on a private copy of the site-to-site
/// example, waits until it is ready, runs `body`. A failure carries the end
/// of the agent's log and its last counters.
fn e2e(body: impl FnOnce(&Env) -> Result<()>) -> Result<()> {
    require_root()?;
    let bin = vpcgw_bin()?;
    let bed = Bed::new()?;
    let cfg = ConfigDir::site_to_site()?;
    let agent = Agent::start(&bed.gw, &bin, cfg.path())?;
    agent.ready()?;
    let env = Env {
        bed: &bed,
        cfg: &cfg,
        agent: &agent,
    };
    body(&env).map_err(|e| {
        let stats = agent
            .stats_text()
            .unwrap_or_else(|e| format!("(no stats: {e:#})"));
        e.context(format!(
            "agent log (last lines):\n{}\nagent stats:\n{stats}",
            last_lines(&agent.log(), 40)
        ))
    })
}

/// `after - before` for a reason's packet counter.
fn grew(before: &Snapshot, after: &Snapshot, r: Reason) -> u64 {
    after.packets(r).saturating_sub(before.packets(r))
}

/// `after - before` for a rule's flow counter.
fn rule_grew(before: &Snapshot, after: &Snapshot, group: &str, rule: &str) -> u64 {
    after
        .rule_flows(group, rule)
        .saturating_sub(before.rule_flows(group, rule))
}

/// A TCP connection opened from inside `ns`, with read/write timeouts.
fn connect_in(ns: &Netns, addr: SocketAddr) -> Result<TcpStream> {
    let s = ns
        .enter(move || TcpStream::connect_timeout(&addr, REPLY_LIMIT))?
        .with_context(|| format!("{}: connect to {addr}", ns.name()))?;
    s.set_read_timeout(Some(REPLY_LIMIT))?;
    s.set_write_timeout(Some(REPLY_LIMIT))?;
    Ok(s)
}

/// Sends `line` and reads the echo; an error if it does not come back
/// within the stream's read timeout.
fn round_trip(s: &TcpStream, line: &str) -> Result<()> {
    let mut w = s;
    writeln!(w, "{line}")?;
    let mut got = String::new();
    BufReader::new(s)
        .read_line(&mut got)
        .with_context(|| format!("no echo of {line:?}"))?;
    ensure!(got.trim_end() == line, "sent {line:?}, echoed {got:?}");
    Ok(())
}

/// A UDP socket bound inside `ns`, with a read timeout.
fn udp_in(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<UdpSocket> {
    let s = ns
        .enter(move || UdpSocket::bind(addr))?
        .with_context(|| format!("{}: bind udp {addr}", ns.name()))?;
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// A datagram within the socket's read timeout, or `None`.
fn recv(s: &UdpSocket) -> Result<Option<(String, SocketAddr)>> {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Ok(Some((
            String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned(),
            from,
        ))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A line-echo TCP server inside a namespace: echoes each line back, counts
/// connections and lines; stops (and joins its threads) on drop.
struct EchoServer {
    accepted: Arc<AtomicU64>,
    lines: Arc<AtomicU64>,
    /// Write halves of the connections, for [`EchoServer::push`].
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &Netns, addr: SocketAddr) -> Result<EchoServer> {
        let listener = ns
            .enter(move || TcpListener::bind(addr))?
            .with_context(|| format!("{}: listen on {addr}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let accepted = Arc::new(AtomicU64::new(0));
        let lines = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (a, l, st, cs) = (accepted.clone(), lines.clone(), stop.clone(), conns.clone());
        let thread = thread::Builder::new()
            .name(format!("echo-{addr}"))
            .spawn(move || {
                let mut conns = Vec::new();
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            a.fetch_add(1, Ordering::Relaxed);
                            if let (Ok(w), Ok(mut cs)) = (conn.try_clone(), cs.lock()) {
                                cs.push(w);
                            }
                            let (l, st) = (l.clone(), st.clone());
                            conns.push(thread::spawn(move || echo(conn, &l, &st)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })?;
        Ok(EchoServer {
            accepted,
            lines,
            conns,
            stop,
            thread: Some(thread),
        })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Sends `line` on every connection, unasked (the server speaks first).
    fn push(&self, line: &str) -> Result<()> {
        let conns = self.conns.lock().map_err(|_| anyhow!("poisoned lock"))?;
        ensure!(!conns.is_empty(), "no connection to push to");
        for mut c in conns.iter() {
            c.set_write_timeout(Some(REPLY_LIMIT))?;
            writeln!(c, "{line}")?;
        }
        Ok(())
    }
}

/// One connection of an [`EchoServer`]: polls (100 ms) so it notices `stop`.
fn echo(conn: TcpStream, lines: &AtomicU64, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                lines.fetch_add(1, Ordering::Relaxed);
                if w.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `text` as the configuration, sends SIGHUP, and waits for the
/// generation to move past `before`; returns the new one.
fn reload_to(env: &Env, text: &str, before: u32) -> Result<u32> {
    env.cfg.write(text)?;
    env.agent.reload()?;
    match env.agent.wait_generation(before, RELOAD_LIMIT)? {
        Some(g) => Ok(g),
        None => bail!("generation still {before} {RELOAD_LIMIT:?} after SIGHUP"),
    }
}

/// Waits (bounded) until no packet passes the gateway for 300 ms: every
/// delayed ACK of earlier exchanges has gone by, so the next packet of a
/// flow is the one a test sends.
fn wait_quiet(env: &Env) -> Result<()> {
    let passed = |s: &Snapshot| -> u64 {
        s.reasons
            .iter()
            .filter(|r| !r.drop && r.name != Reason::PassNdp.name())
            .map(|r| r.packets)
            .sum()
    };
    let mut last = (passed(&env.stats()?), std::time::Instant::now());
    let quiet = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
        let now = passed(&env.stats().ok()?);
        if now != last.0 {
            last = (now, std::time::Instant::now());
            return None;
        }
        (last.1.elapsed() >= Duration::from_millis(300)).then_some(())
    });
    quiet.context("traffic through the gateway did not stop within 5 s")
}

/// `ip -o link` lines in `ns` that show an XDP program.
fn xdp_links(ns: &Netns) -> Result<Vec<String>> {
    Ok(ns
        .ip(&["-o", "link", "show"])?
        .lines()
        .filter(|l| l.contains("xdp"))
        .map(str::to_string)
        .collect())
}

/// Case 1: Security groups on the wire: what each group allows passes, with its
/// reply; what it does not is dropped at the gateway (the servers listen,
/// so a denied connection is the gateway's doing). Counters agree.
#[test]
fn groups_allow_and_deny() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let web = b.srv1.tcp_serve(sock(bed::SRV1_IP, 80))?;
        let ssh = b.srv1.tcp_serve(sock(bed::SRV1_IP, 22))?;
        let db = b.srv2.tcp_serve(sock(bed::SRV2_IP, 5432))?;
        let s0 = env.stats()?;
        ensure!(s0.generation == 1, "generation {} at start", s0.generation);

        // inet -> srv1 tcp/80: sg-web allows 80 from any; the server's line comes back.
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 80), REPLY_LIMIT)?;
        ensure!(
            got == Connect::Connected(format!("vpcgw-test {}:80", bed::SRV1_IP)),
            "inet -> srv1:80: {got:?}"
        );
        ensure!(web.accepted() == 1, "srv1:80 accepted {}", web.accepted());
        let s1 = env.stats()?;
        ensure!(grew(&s0, &s1, Reason::PassNew) == 1, "pass_new");
        ensure!(
            grew(&s0, &s1, Reason::PassEstablished) >= 3,
            "pass_established"
        );
        ensure!(
            rule_grew(&s0, &s1, WEB, WEB_HTTP_ANY) == 1,
            "{WEB_HTTP_ANY}"
        );

        // inet -> srv1 tcp/22: only the DC subnets may.
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 22), CONNECT_LIMIT)?;
        ensure!(got == Connect::TimedOut, "inet -> srv1:22: {got:?}");
        ensure!(ssh.accepted() == 0, "srv1:22 accepted {}", ssh.accepted());
        let s2 = env.stats()?;
        ensure!(
            grew(&s1, &s2, Reason::DropPolicyIngress) >= 1,
            "drop_policy_ingress did not grow for inet -> srv1:22"
        );

        // srv1 -> srv2 tcp/5432: sg-db admits its remote group sg-web.
        let got = b.srv1.tcp_connect(sock(bed::SRV2_IP, 5432), REPLY_LIMIT)?;
        ensure!(
            got == Connect::Connected(format!("vpcgw-test {}:5432", bed::SRV2_IP)),
            "srv1 -> srv2:5432: {got:?}"
        );
        ensure!(db.accepted() == 1, "srv2:5432 accepted {}", db.accepted());

        // inet -> srv2 tcp/5432: not in sg-web, dropped by the policy.
        let s3 = env.stats()?;
        let got = b
            .inet
            .tcp_connect(sock(bed::SRV2_IP, 5432), CONNECT_LIMIT)?;
        ensure!(got == Connect::TimedOut, "inet -> srv2:5432: {got:?}");
        ensure!(db.accepted() == 1, "srv2:5432 accepted {}", db.accepted());
        let s4 = env.stats()?;
        ensure!(
            grew(&s3, &s4, Reason::DropPolicyIngress) >= 1,
            "drop_policy_ingress did not grow for inet -> srv2:5432"
        );

        // srv1 pings inet: egress any, the replies come back through conntrack.
        let replies = b.srv1.ping(&bed::INET_IP.to_string(), 2)?;
        ensure!(replies == 2, "srv1 -> inet ping: {replies}/2 replies");

        // inet pings srv2: sg-db allows icmp only from 192.168.3.0/24.
        let s5 = env.stats()?;
        let echoes = b.srv2.snmp("Icmp", "InEchos")?;
        let replies = b.inet.ping(&bed::SRV2_IP.to_string(), 2)?;
        let reached = b.srv2.snmp("Icmp", "InEchos")? - echoes;
        ensure!(
            replies == 0 && reached == 0,
            "inet -> srv2 ping: {replies}/2 replies, {reached} echo requests reached srv2"
        );
        let s6 = env.stats()?;
        ensure!(
            grew(&s5, &s6, Reason::DropPolicyIngress) >= 2,
            "drop_policy_ingress grew by {} for 2 echo requests to srv2",
            grew(&s5, &s6, Reason::DropPolicyIngress)
        );

        // Every admitted flow credited to the first rule that admits it, and
        // no other rule credited with anything.
        let expected = [
            (WEB, WEB_HTTP_ANY, 1),
            (WEB, WEB_EGRESS, 2), // srv1 -> srv2:5432, srv1 -> inet ping
            (DB, DB_PG_FROM_WEB, 1),
        ];
        for r in &s6.rules {
            let want = expected
                .iter()
                .find(|(g, t, _)| *g == r.group && *t == r.rule)
                .map_or(0, |e| e.2);
            let got = rule_grew(&s0, &s6, &r.group, &r.rule);
            ensure!(
                got == want,
                "{} rule {} ({}): {got} flows, expected {want}",
                r.group,
                r.index,
                r.rule
            );
        }
        ensure!(
            grew(&s0, &s6, Reason::PassNew) == 3,
            "pass_new grew by {}, expected 3 admitted flows",
            grew(&s0, &s6, Reason::PassNew)
        );
        Ok(())
    })
}

/// Case 2: Replies need no rule: srv1 -> inet UDP and inet's answers (which no
/// ingress rule of sg-web admits) pass through conntrack; the same traffic
/// from inet as a new flow is dropped.
#[test]
fn replies_pass_without_rules() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let client = udp_in(&b.srv1, sock(bed::SRV1_IP, 0), REPLY_LIMIT)?;
        let server = udp_in(&b.inet, sock(bed::INET_IP, 7777), REPLY_LIMIT)?;
        let client_addr = client.local_addr()?;
        let s0 = env.stats()?;

        for i in 0..3 {
            let q = format!("question {i}");
            client.send_to(q.as_bytes(), sock(bed::INET_IP, 7777))?;
            let Some((got, from)) = recv(&server)? else {
                bail!("inet received nothing for {q:?}");
            };
            ensure!(
                got == q && from == client_addr,
                "inet got {got:?} from {from}"
            );
            let a = format!("answer {i}");
            server.send_to(a.as_bytes(), from)?;
            let Some((got, from)) = recv(&client)? else {
                bail!("srv1 received no {a:?}: the reply was not let back in");
            };
            ensure!(
                got == a && from == sock(bed::INET_IP, 7777),
                "srv1 got {got:?} from {from}"
            );
        }
        let s1 = env.stats()?;
        ensure!(grew(&s0, &s1, Reason::PassNew) == 1, "pass_new: one flow");
        ensure!(
            grew(&s0, &s1, Reason::PassEstablished) == 5,
            "pass_established grew by {}, expected 5 (3 answers, 2 later questions)",
            grew(&s0, &s1, Reason::PassEstablished)
        );
        ensure!(
            grew(&s0, &s1, Reason::DropPolicyIngress) == 0,
            "drops during the exchange"
        );
        ensure!(rule_grew(&s0, &s1, WEB, WEB_EGRESS) == 1, "{WEB_EGRESS}");
        let ingress_hits: u64 = s1
            .rules
            .iter()
            .filter(|r| r.rule.starts_with("ingress"))
            .map(|r| rule_grew(&s0, &s1, &r.group, &r.rule))
            .sum();
        ensure!(ingress_hits == 0, "{ingress_hits} ingress rule hits");

        // The same packet, not a reply (another source port): dropped.
        let stranger = udp_in(&b.inet, sock(bed::INET_IP, 7778), REPLY_LIMIT)?;
        client.set_read_timeout(Some(CONNECT_LIMIT))?;
        stranger.send_to(b"unsolicited", client_addr)?;
        ensure!(
            recv(&client)?.is_none(),
            "an unsolicited datagram from inet reached srv1"
        );
        let s2 = env.stats()?;
        ensure!(
            grew(&s1, &s2, Reason::DropPolicyIngress) == 1,
            "drop_policy_ingress grew by {} for one unsolicited datagram",
            grew(&s1, &s2, Reason::DropPolicyIngress)
        );
        Ok(())
    })
}

/// Case 3: VPN classification: traffic from the VPC to the data center's subnets
/// goes to the crypto path (AF_XDP), never routed in clear.
#[test]
fn vpn_traffic_goes_to_the_crypto_path() -> Result<()> {
    const N: u64 = 5;
    const PAYLOAD: &str = "to the data center";
    e2e(|env| {
        let b = env.bed;
        let listener = udp_in(&b.dchost, sock(bed::DCHOST_IP, 9000), CONNECT_LIMIT)?;
        let client = udp_in(&b.srv1, sock(bed::SRV1_IP, 0), REPLY_LIMIT)?;
        let s0 = env.stats()?;
        let dc_fwd = b.dc.snmp("Ip", "ForwDatagrams")?;
        let dchost_in = b.dchost.snmp("Ip", "InReceives")?;

        for _ in 0..N {
            client.send_to(PAYLOAD.as_bytes(), sock(bed::DCHOST_IP, 9000))?;
        }
        ensure!(
            recv(&listener)?.is_none(),
            "dchost received a VPN-bound datagram in clear"
        );
        ensure!(
            b.dc.snmp("Ip", "ForwDatagrams")? == dc_fwd,
            "dc forwarded packets"
        );
        ensure!(
            b.dchost.snmp("Ip", "InReceives")? == dchost_in,
            "dchost received IP packets"
        );

        // The receiver thread counts asynchronously: wait (bounded) for it.
        let ip_len = (20 + 8 + PAYLOAD.len()) as u64;
        let frame_len = 14 + ip_len;
        let s1 = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            let s = env.stats().ok()?;
            let frames = s.conn("dc1").xsk_frames - s0.conn("dc1").xsk_frames;
            (frames >= N).then_some(s)
        });
        let s1 = match s1 {
            Some(s) => s,
            None => env.stats()?,
        };
        let (c0, c1) = (s0.conn("dc1"), s1.conn("dc1"));
        ensure!(
            grew(&s0, &s1, Reason::VpnRedirect) == N,
            "vpn_redirect grew by {}, expected {N}",
            grew(&s0, &s1, Reason::VpnRedirect)
        );
        ensure!(
            c1.packets - c0.packets == N && c1.bytes - c0.bytes == N * ip_len,
            "dc1: {} packets / {} bytes to the crypto path, expected {N} / {}",
            c1.packets - c0.packets,
            c1.bytes - c0.bytes,
            N * ip_len
        );
        ensure!(
            c1.xsk_frames - c0.xsk_frames == N && c1.xsk_bytes - c0.xsk_bytes == N * frame_len,
            "dc1: AF_XDP received {} frames / {} bytes, expected {N} / {}",
            c1.xsk_frames - c0.xsk_frames,
            c1.xsk_bytes - c0.xsk_bytes,
            N * frame_len
        );
        ensure!(
            grew(&s0, &s1, Reason::VpnNoSocket) == 0,
            "drop_vpn_no_socket grew"
        );
        ensure!(
            s1.xsk.no_meta_frames == 0 && s1.xsk.bad_meta_frames == 0 && s1.xsk.rx_dropped == 0,
            "AF_XDP trouble: {:?}",
            s1.xsk
        );
        // One flow, admitted by sg-web's egress rule.
        ensure!(rule_grew(&s0, &s1, WEB, WEB_EGRESS) == 1, "{WEB_EGRESS}");
        Ok(())
    })
}

/// Case 4: Anti-spoofing: srv1 sending from an address that is not its port's
/// is dropped at the gateway; from its own address it still passes.
#[test]
fn spoofed_sources_are_dropped() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let spoofed = "192.168.1.99";
        b.srv1
            .ip(&["addr", "add", &format!("{spoofed}/24"), "dev", "eth0"])?;
        let target = udp_in(&b.srv2, sock(bed::SRV2_IP, 9000), CONNECT_LIMIT)?;
        let s0 = env.stats()?;
        let inet_echoes = b.inet.snmp("Icmp", "InEchos")?;

        // ping -I <spoofed>: two echo requests.
        let out = b.srv1.run(
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                spoofed,
                &bed::INET_IP.to_string(),
            ],
            Duration::from_secs(10),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            text.contains("2 packets transmitted, 0 received"),
            "ping -I {spoofed}: {text}"
        );
        ensure!(
            b.inet.snmp("Icmp", "InEchos")? == inet_echoes,
            "a spoofed echo request reached inet"
        );

        // A UDP datagram from the spoofed address to srv2.
        let sender = udp_in(&b.srv1, format!("{spoofed}:0").parse()?, CONNECT_LIMIT)?;
        sender.send_to(b"spoofed", sock(bed::SRV2_IP, 9000))?;
        ensure!(recv(&target)?.is_none(), "a spoofed datagram reached srv2");
        let s1 = env.stats()?;
        ensure!(
            grew(&s0, &s1, Reason::DropSpoofed) == 3,
            "drop_spoofed grew by {}, expected 3 (2 echo requests, 1 datagram)",
            grew(&s0, &s1, Reason::DropSpoofed)
        );
        ensure!(
            grew(&s0, &s1, Reason::PassNew) == 0,
            "a spoofed flow was admitted"
        );

        // The same from srv1's own address passes.
        let replies = b.srv1.ping(&bed::INET_IP.to_string(), 1)?;
        ensure!(
            replies == 1,
            "srv1 -> inet from its own address: {replies}/1"
        );
        let own = udp_in(&b.srv1, sock(bed::SRV1_IP, 0), CONNECT_LIMIT)?;
        own.send_to(b"genuine", sock(bed::SRV2_IP, 9000))?;
        // sg-db admits no UDP from srv1: dropped by policy, not as spoofed.
        ensure!(
            recv(&target)?.is_none(),
            "srv2 got UDP sg-db does not allow"
        );
        let s2 = env.stats()?;
        ensure!(
            grew(&s1, &s2, Reason::DropSpoofed) == 0,
            "srv1's own address counted as spoofed"
        );
        ensure!(
            grew(&s1, &s2, Reason::DropPolicyIngress) == 1,
            "the genuine datagram was not decided by srv2's ingress policy"
        );
        Ok(())
    })
}

/// Case 5: SIGHUP: a new rule takes effect while an established connection keeps
/// exchanging data in both directions.
#[test]
fn reload_keeps_flows_and_adds_rules() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let echo = EchoServer::start(&b.srv1, sock(bed::SRV1_IP, 80))?;
        let alt = b.srv1.tcp_serve(sock(bed::SRV1_IP, 8080))?;
        let conn = connect_in(&b.inet, sock(bed::SRV1_IP, 80))?;
        for i in 0..3 {
            round_trip(&conn, &format!("before {i}"))?;
        }
        let got = b
            .inet
            .tcp_connect(sock(bed::SRV1_IP, 8080), CONNECT_LIMIT)?;
        ensure!(got == Connect::TimedOut, "8080 before the reload: {got:?}");
        ensure!(alt.accepted() == 0);

        let s0 = env.stats()?;
        let text = with_rule(&env.cfg.text()?, WEB, WEB_8080_RULE)?;
        let generation = reload_to(env, &text, s0.generation)?;
        ensure!(
            generation == s0.generation + 1,
            "generation {} -> {generation}",
            s0.generation
        );
        ensure!(
            env.agent
                .wait_log("configuration reloaded", 0, RELOAD_LIMIT)
                .is_some(),
            "no 'configuration reloaded' in the log"
        );

        // The old connection, re-decided under the new policy, carries on.
        let s1 = env.stats()?;
        for i in 0..5 {
            round_trip(&conn, &format!("after {i}"))?;
        }
        ensure!(
            echo.lines() == 8,
            "srv1 echoed {} lines, expected 8",
            echo.lines()
        );
        let s2 = env.stats()?;
        ensure!(
            grew(&s1, &s2, Reason::PassEstablished) >= 10,
            "pass_established grew by {} for 5 round trips",
            grew(&s1, &s2, Reason::PassEstablished)
        );
        for r in [Reason::DropPolicyIngress, Reason::DropPolicyEgress] {
            ensure!(grew(&s1, &s2, r) == 0, "{} grew", r.name());
        }
        ensure!(
            grew(&s1, &s2, Reason::PassNew) == 0,
            "the old flow was re-opened"
        );

        // The new rule admits new connections.
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 8080), REPLY_LIMIT)?;
        ensure!(
            got == Connect::Connected(format!("vpcgw-test {}:8080", bed::SRV1_IP)),
            "8080 after the reload: {got:?}"
        );
        ensure!(alt.accepted() == 1);
        let s3 = env.stats()?;
        ensure!(s3.rule_flows(WEB, WEB_8080_ANY) == 1, "{WEB_8080_ANY}");
        // Counted once, and kept across the reload.
        ensure!(
            s3.rule_flows(WEB, WEB_HTTP_ANY) == 1,
            "{WEB_HTTP_ANY}: {} flows, expected 1",
            s3.rule_flows(WEB, WEB_HTTP_ANY)
        );
        ensure!(echo.accepted() == 1);
        round_trip(&conn, "last")?;
        Ok(())
    })
}

/// Case 6: A reload with a file that fails (a TOML syntax error; then a rule
/// naming a group that does not exist) is refused: the running policy
/// stays, traffic flows as before, the log says why.
#[test]
fn invalid_reload_is_refused() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let _web = b.srv1.tcp_serve(sock(bed::SRV1_IP, 80))?;
        let ssh = b.srv1.tcp_serve(sock(bed::SRV1_IP, 22))?;
        let good = env.cfg.text()?;
        let s0 = env.stats()?;

        // Both broken files would also open tcp/22 to anyone if applied.
        let open_ssh = with_rule(
            &good,
            WEB,
            "direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_min = 22",
        )?;
        let syntax = format!("{open_ssh}\n[[ports]\nname = \"broken\"\n");
        let invalid = with_rule(
            &open_ssh,
            DB,
            "direction = \"ingress\"\nremote_group = \"sg-missing\"",
        )?;
        for (what, text, mention) in [
            ("a TOML syntax error", syntax, "vpcgw.toml"),
            ("an unknown remote group", invalid, "sg-missing"),
        ] {
            let refused = env.agent.log_count("reload refused");
            env.cfg.write(&text)?;
            env.agent.reload()?;
            let Some(line) = env.agent.wait_log("reload refused", refused, RELOAD_LIMIT) else {
                bail!("{what}: no 'reload refused' in the log within {RELOAD_LIMIT:?}");
            };
            ensure!(
                env.agent.log().contains(mention),
                "{what}: the log does not mention {mention:?}; refused with: {line}"
            );
            ensure!(
                env.agent.process().try_wait()?.is_none(),
                "{what}: the agent exited"
            );
            let s = env.stats()?;
            ensure!(
                s.generation == s0.generation,
                "{what}: generation {} -> {}",
                s0.generation,
                s.generation
            );

            // Traffic: what was allowed still is, what was denied still is.
            let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 80), REPLY_LIMIT)?;
            ensure!(
                matches!(got, Connect::Connected(_)),
                "{what}: inet -> srv1:80 {got:?}"
            );
            let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 22), CONNECT_LIMIT)?;
            ensure!(got == Connect::TimedOut, "{what}: inet -> srv1:22 {got:?}");
            ensure!(ssh.accepted() == 0, "{what}: srv1:22 accepted");
        }
        let s1 = env.stats()?;
        ensure!(s1.rule_flows(WEB, WEB_HTTP_ANY) == 2, "{WEB_HTTP_ANY}");
        ensure!(
            grew(&s0, &s1, Reason::DropPolicyIngress) >= 2,
            "drop_policy_ingress did not count the tcp/22 attempts"
        );
        ensure!(
            !s1.rules
                .iter()
                .any(|r| r.rule == "ingress IPv4 tcp 22 from any"),
            "the refused file's rule is in the running policy"
        );
        Ok(())
    })
}

/// Case 7: A reload that removes the rule an established flow depends on cuts
/// it: its next packets are dropped (drop_policy_ingress), new connections
/// too.
#[test]
fn reload_removing_a_rule_cuts_its_flows() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let echo = EchoServer::start(&b.srv1, sock(bed::SRV1_IP, 80))?;
        let conn = connect_in(&b.inet, sock(bed::SRV1_IP, 80))?;
        for i in 0..2 {
            round_trip(&conn, &format!("before {i}"))?;
        }
        // The client's packet is the first one after the reload (see
        // `reload_cut_flow_revived_by_the_server` for the other order).
        wait_quiet(env)?;
        let s0 = env.stats()?;
        let text = without_rule(
            &env.cfg.text()?,
            "HTTP from any address (other VPC subnets included)",
        )?;
        reload_to(env, &text, s0.generation)?;
        let s1 = env.stats()?;
        ensure!(
            !s1.rules.iter().any(|r| r.rule == WEB_HTTP_ANY),
            "{WEB_HTTP_ANY} still in the policy"
        );

        // The old connection: the next data segment goes nowhere.
        conn.set_read_timeout(Some(Duration::from_millis(1500)))?;
        let cut = round_trip(&conn, "after");
        ensure!(cut.is_err(), "the old connection still echoes");
        ensure!(echo.lines() == 2, "srv1 received {} lines", echo.lines());
        let s2 = env.stats()?;
        ensure!(
            grew(&s1, &s2, Reason::DropPolicyIngress) >= 1,
            "drop_policy_ingress did not count the old flow's packets"
        );
        ensure!(
            grew(&s1, &s2, Reason::PassEstablished) == 0,
            "pass_established grew by {}",
            grew(&s1, &s2, Reason::PassEstablished)
        );

        // New connections are refused too.
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 80), CONNECT_LIMIT)?;
        ensure!(got == Connect::TimedOut, "a new connection to 80: {got:?}");
        ensure!(echo.accepted() == 1, "srv1 accepted {}", echo.accepted());
        let s3 = env.stats()?;
        ensure!(
            grew(&s2, &s3, Reason::DropPolicyIngress) >= 1,
            "drop_policy_ingress did not count the new SYN"
        );
        ensure!(grew(&s1, &s3, Reason::PassNew) == 0, "a flow was admitted");
        Ok(())
    })
}

/// Case 8: SIGTERM: exit 0, no XDP program left on gw's interfaces, the control
/// socket removed; the gateway then forwards unfiltered.
#[test]
fn sigterm_stops_cleanly() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let ssh = b.srv1.tcp_serve(sock(bed::SRV1_IP, 22))?;
        let attached = xdp_links(&b.gw)?;
        for i in [bed::GW_WAN, bed::GW_LAN0, bed::GW_LAN1] {
            ensure!(
                attached
                    .iter()
                    .any(|l| l.contains(&format!(": {i}:")) || l.contains(&format!(": {i}@"))),
                "no XDP program on {i} while running: {attached:?}"
            );
        }
        ensure!(env.cfg.socket().exists(), "no control socket while running");
        let s0 = env.stats()?;
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 22), CONNECT_LIMIT)?;
        ensure!(
            got == Connect::TimedOut,
            "inet -> srv1:22 while running: {got:?}"
        );
        let s1 = env.stats()?;
        ensure!(grew(&s0, &s1, Reason::DropPolicyIngress) >= 1);

        let (status, own) = env.agent.stop(libc::SIGTERM, Duration::from_secs(10))?;
        ensure!(own, "the agent had to be killed after SIGTERM");
        ensure!(status.code() == Some(0), "exit status {status}");
        let log = env.agent.log();
        ensure!(log.contains("SIGTERM: stopping"), "log: no SIGTERM line");
        ensure!(log.contains("detached"), "log: no 'detached'");

        let left = xdp_links(&b.gw)?;
        ensure!(left.is_empty(), "XDP programs left in gw: {left:?}");
        ensure!(
            !env.cfg.socket().exists(),
            "control socket {} left behind",
            env.cfg.socket().display()
        );
        ensure!(env.agent.stats().is_err(), "vpcgw stats still answers");

        // Nothing filters any more: the denied port is reachable.
        let got = b.inet.tcp_connect(sock(bed::SRV1_IP, 22), REPLY_LIMIT)?;
        ensure!(
            matches!(got, Connect::Connected(_)),
            "inet -> srv1:22 after the stop: {got:?}"
        );
        ensure!(ssh.accepted() == 1);
        Ok(())
    })
}

/// A flow cut by a reload stays cut when the *server* sends first after the
/// reload. Its segment is re-decided under the flow's original direction
/// (inet -> srv1:80, now denied) and dropped; the entry stays as a revoked
/// marker, so the server's retransmissions are dropped too instead of being
/// picked up mid-stream as a new flow that egress rules would admit (the
/// bug this test was written for: removing an ingress rule did not cut a
/// connection on which the server talks).
#[test]
fn reload_cut_flow_revived_by_the_server() -> Result<()> {
    e2e(|env| {
        let b = env.bed;
        let echo = EchoServer::start(&b.srv1, sock(bed::SRV1_IP, 80))?;
        let conn = connect_in(&b.inet, sock(bed::SRV1_IP, 80))?;
        round_trip(&conn, "before")?;
        wait_quiet(env)?;
        let s0 = env.stats()?;
        let text = without_rule(
            &env.cfg.text()?,
            "HTTP from any address (other VPC subnets included)",
        )?;
        reload_to(env, &text, s0.generation)?;
        let s1 = env.stats()?;

        // The server speaks first: nothing of it may reach inet.
        echo.push("from the server")?;
        conn.set_read_timeout(Some(Duration::from_millis(1500)))?;
        let mut got = String::new();
        let read = BufReader::new(&conn).read_line(&mut got);
        let s2 = env.stats()?;
        ensure!(
            read.is_err(),
            "inet received {got:?} on a connection the reload cut (pass_new +{}, \
             egress rule +{} flows)",
            grew(&s1, &s2, Reason::PassNew),
            rule_grew(&s1, &s2, WEB, WEB_EGRESS)
        );
        ensure!(grew(&s1, &s2, Reason::PassNew) == 0, "a flow was admitted");
        Ok(())
    })
}

/// With `--log-level debug`, the XDP program logs its decisions about new
/// flows, and they reach the agent's log under their reason's name (the
/// program logs a number; the agent's aya-log logger names it).
#[test]
fn debug_log_names_the_programs_decisions() -> Result<()> {
    require_root()?;
    let bin = vpcgw_bin()?;
    let bed = Bed::new()?;
    let cfg = ConfigDir::site_to_site()?;
    let agent = Agent::start_with(&bed.gw, &bin, cfg.path(), &["--log-level", "debug"])?;
    agent.ready()?;
    let got = bed
        .inet
        .tcp_connect(sock(bed::SRV1_IP, 22), CONNECT_LIMIT)?;
    ensure!(got == Connect::TimedOut, "inet -> srv1:22: {got:?}");
    let line = agent
        .wait_log("drop_policy_ingress", 0, Duration::from_secs(5))
        .ok_or_else(|| {
            anyhow!(
                "no debug line for the refused SYN:\n{}",
                last_lines(&agent.log(), 30)
            )
        })?;
    ensure!(
        line.contains("vpcgw::xdp")
            && line.contains("198.51.100.100")
            && line.contains("192.168.1.10"),
        "the decision line names neither its source nor its flow: {line}"
    );
    ensure!(
        !agent.log().contains("reason "),
        "a reason left as a number: {}",
        last_lines(&agent.log(), 30)
    );
    Ok(())
}
