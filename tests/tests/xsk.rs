//! AF_XDP end to end, in two network namespaces joined by a veth pair:
//!
//! ```text
//!   A: v0 10.99.0.1/24 ──veth── B: v1 10.99.0.2/24, vpcgw_xdp (native), AF_XDP socket on queue 0
//!      route 10.77.0.0/16 via 10.99.0.2
//! ```
//!
//! UDP datagrams from A to 10.77.1.2 (a VPN remote subnet of connection 0)
//! must be redirected by the program into the socket, with the `XskMeta`
//! the program wrote in front of each frame. Checked three ways: the frames
//! themselves through `XskSocket::recv`; the per-connection counters of the
//! receiver thread; the program's `STATS` map. Then a one-second burst
//! measures how many frames per second the copy-mode path carries.
//!
//! Needs root (skips with a note otherwise). Nothing is configured in the
//! root namespace; the namespaces are deleted on every exit path.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use vpcgw::xsk::{Count, META_LEN, XskConfig, XskSocket, XskStats, spawn_receiver};
use vpcgw_common::Addr;
use vpcgw_common::abi::{
    Config, Counter, DIR_EGRESS, FAMILY_V4, HdrKey, HdrVal, Iface, LPM_CONN_BITS, LPM_SLOT_BITS,
    PROTO_ANY, PortKey, PortVal, ROLE_LAN, VpnVal, WAN_DEFAULT_PASS, XDP_PROGRAM, XSK_META_MAGIC,
    XskMeta, map_names,
};
use vpcgw_common::conntrack::DEFAULT_TIMEOUTS;
use vpcgw_common::stats::Reason;

const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const DPORT: u16 = 5555;
/// Ethernet + IPv4 (no options) + UDP headers.
const HDRS: usize = 14 + 20 + 8;
const GENERATION: u32 = 1;
const WAIT: Duration = Duration::from_secs(5);
const BURST: Duration = Duration::from_secs(1);
const BURST_MAX: u64 = 2_000_000;

#[test]
fn vpn_bound_frames_reach_the_af_xdp_socket() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: skipping the AF_XDP test: it needs root (namespaces, XDP)");
        return Ok(());
    }
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();

    let ns = Namespaces::new()?;
    ns.wire()?;
    let a = ns.a.clone();
    let b = ns.b.clone();
    let side_b =
        thread::Builder::new()
            .name("netns-b".into())
            .spawn(move || -> Result<Report> {
                enter_netns(&b)?;
                side_b(&a)
            })?;
    let report = join(side_b)?.context("namespace B")?;
    println!("{report}");
    drop(ns);
    Ok(())
}

/// The two namespaces; deleted on drop.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn new() -> Result<Self> {
        // Not "vg...": the shared harness sweeps such names by the pid in them.
        let pid = std::process::id();
        let ns = Self {
            a: format!("xsk{pid}a"),
            b: format!("xsk{pid}b"),
        };
        for n in [&ns.a, &ns.b] {
            // Left over by an earlier run with our pid: ours to remove.
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            ip(&["netns", "add", n])?;
        }
        Ok(ns)
    }

    /// The veth pair, addresses, A's route to the remote subnet and a
    /// permanent neighbour entry for its gateway (no ARP).
    fn wire(&self) -> Result<()> {
        let (a, b) = (self.a.as_str(), self.b.as_str());
        ip(&[
            "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b,
        ])?;
        ip(&["-n", a, "addr", "add", "10.99.0.1/24", "dev", "v0"])?;
        ip(&["-n", b, "addr", "add", "10.99.0.2/24", "dev", "v1"])?;
        for (n, dev) in [(a, "v0"), (a, "lo"), (b, "v1"), (b, "lo")] {
            ip(&["-n", n, "link", "set", dev, "up"])?;
        }
        let link = ip(&["-n", b, "-o", "link", "show", "v1"])?;
        let mac = link
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .ok_or_else(|| anyhow!("no MAC address for v1 in: {link}"))?;
        ip(&[
            "-n",
            a,
            "route",
            "add",
            "10.77.0.0/16",
            "via",
            "10.99.0.2",
            "dev",
            "v0",
        ])?;
        ip(&[
            "-n",
            a,
            "neigh",
            "replace",
            "10.99.0.2",
            "lladdr",
            mac,
            "dev",
            "v0",
            "nud",
            "permanent",
        ])?;
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread (only) into namespace `name`.
fn enter_netns(name: &str) -> Result<()> {
    let f = File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening netns {name}"))?;
    // SAFETY: setns on a namespace fd we hold; it affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns({name})"));
    }
    Ok(())
}

fn join<T>(h: JoinHandle<T>) -> Result<T> {
    h.join().map_err(|_| anyhow!("thread panicked"))
}

fn if_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(
        i != 0,
        "no interface {name}: {}",
        std::io::Error::last_os_error()
    );
    Ok(i)
}

/// The minimum policy: 10.99.0.1 is a port, egress to anywhere allowed,
/// 10.77.0.0/16 is connection 0's remote subnet and 10.99.0.0/24 its local
/// one. Active slot 0, generation 1.
fn fill_maps(ebpf: &mut Ebpf, ifindex: u32) -> Result<()> {
    let map = |ebpf: &mut Ebpf, name: &str| -> Result<_> {
        ebpf.take_map(name).ok_or_else(|| anyhow!("no map {name}"))
    };
    let mut ifaces = HashMap::<_, u32, Iface>::try_from(map(ebpf, map_names::IFACES)?)?;
    ifaces.insert(
        ifindex,
        Iface {
            role: ROLE_LAN,
            xsk_base: 0,
        },
        0,
    )?;

    let mut ports = HashMap::<_, PortKey, PortVal>::try_from(map(ebpf, map_names::PORTS)?)?;
    let key = PortKey {
        addr: Addr::from(std::net::IpAddr::V4(A_ADDR)),
        slot: 0,
    };
    ports.insert(
        key,
        PortVal {
            port: 0,
            set: 0,
            mac: [0; 6],
            flags: 0,
            _pad: 0,
        },
        0,
    )?;

    let mut hdr = HashMap::<_, HdrKey, HdrVal>::try_from(map(ebpf, map_names::POLICY_HDR)?)?;
    let key = HdrKey {
        set: 0,
        class: 0,
        slot: 0,
        dir: DIR_EGRESS,
        family: FAMILY_V4,
        proto: PROTO_ANY,
    };
    hdr.insert(
        key,
        HdrVal {
            plens: 0,
            any_rule: 1,
        },
        0,
    )?;

    let mut remote = LpmTrie::<_, [u8; 5], VpnVal>::try_from(map(ebpf, map_names::VPN_REMOTE_V4)?)?;
    remote.insert(
        &Key::new(LPM_SLOT_BITS + 16, [0, 10, 77, 0, 0]),
        VpnVal { conn: 1 },
        0,
    )?;
    let mut local = LpmTrie::<_, [u8; 9], VpnVal>::try_from(map(ebpf, map_names::VPN_LOCAL_V4)?)?;
    let data = [0, 0, 0, 0, 0, 10, 99, 0, 0];
    local.insert(
        &Key::new(LPM_SLOT_BITS + LPM_CONN_BITS + 24, data),
        VpnVal { conn: 1 },
        0,
    )?;

    // Last: generation 0 means "not ready", everything dropped until now.
    let mut config = Array::<_, Config>::try_from(map(ebpf, map_names::CONFIG)?)?;
    let cfg = Config {
        generation: GENERATION,
        slot: 0,
        wan_default: WAN_DEFAULT_PASS,
        flags: 0,
        timeouts: DEFAULT_TIMEOUTS,
    };
    config.set(0, cfg, 0)?;
    Ok(())
}

fn stat(ebpf: &Ebpf, reason: Reason) -> Result<Count> {
    let map = ebpf
        .map(map_names::STATS)
        .ok_or_else(|| anyhow!("no map STATS"))?;
    let stats = PerCpuArray::<_, Counter>::try_from(map)?;
    let per_cpu = stats.get(&(reason as u32), 0)?;
    Ok(per_cpu.iter().fold(Count::default(), |acc, c| Count {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    }))
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

fn udp_from_a() -> Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(A_ADDR, 0))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok(s)
}

/// Sends one datagram per entry of `sizes` (payload bytes) from namespace A.
fn send_from(a: &str, sizes: &[usize]) -> Result<()> {
    let a = a.to_owned();
    let sizes = sizes.to_vec();
    let h = thread::spawn(move || -> Result<()> {
        enter_netns(&a)?;
        let s = udp_from_a()?;
        for (i, len) in sizes.iter().enumerate() {
            s.send_to(&payload(i, *len), SocketAddrV4::new(REMOTE, DPORT))
                .context("sending from A")?;
        }
        Ok(())
    });
    join(h)?
}

/// Sends small datagrams from A for `BURST` (at most `BURST_MAX`), 64 per
/// `sendmmsg(2)`; returns (sent, failed calls, elapsed).
fn burst_from(a: &str) -> Result<(u64, u64, Duration)> {
    const VLEN: usize = 64;
    let a = a.to_owned();
    let h = thread::spawn(move || -> Result<(u64, u64, Duration)> {
        enter_netns(&a)?;
        let s = udp_from_a()?;
        s.connect(SocketAddrV4::new(REMOTE, DPORT))?;
        let mut buf = payload(0, 18);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; VLEN] = unsafe { std::mem::zeroed() };
        for m in &mut msgs {
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let (mut sent, mut errors) = (0u64, 0u64);
        let start = Instant::now();
        while sent + errors < BURST_MAX && start.elapsed() < BURST {
            // SAFETY: `msgs` holds VLEN headers, each pointing at `iov`, which
            // points at `buf`; all outlive the call. The socket is connected,
            // so no address is needed.
            let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), VLEN as u32, 0) };
            match u64::try_from(n) {
                Ok(n) => sent += n,
                Err(_) => errors += 1,
            }
        }
        Ok((sent, errors, start.elapsed()))
    });
    join(h)?
}

/// Polls until `f` holds or `limit` passes (at most limit / 10 ms + 1 rounds).
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    for _ in 0..=limit.as_millis() / 10 {
        if f() {
            return true;
        }
        if start.elapsed() >= limit {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Stops and joins the receiver thread on every exit path.
struct Receiver {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Receiver {
    fn finish(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.handle.take() {
            Some(h) => join(h),
            None => Ok(()),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Report {
    meta_in_copy_mode: bool,
    burst_sent: u64,
    burst_send_errors: u64,
    burst_received: u64,
    burst_redirected: u64,
    burst_secs: f64,
    kernel: vpcgw::xsk::KernelStats,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |n: u64| n as f64 / self.burst_secs.max(1e-9);
        writeln!(
            f,
            "XskMeta arrives in front of copy-mode frames: {}",
            self.meta_in_copy_mode
        )?;
        writeln!(
            f,
            "burst: {} datagrams sent in {:.2} s ({:.0}/s, {} failed sendmmsg calls)",
            self.burst_sent,
            self.burst_secs,
            rate(self.burst_sent),
            self.burst_send_errors
        )?;
        writeln!(
            f,
            "burst: {} redirected by XDP, {} counted by the receiver ({:.0} frames/s)",
            self.burst_redirected,
            self.burst_received,
            rate(self.burst_received)
        )?;
        write!(f, "kernel socket counters: {:?}", self.kernel)
    }
}

fn side_b(a: &str) -> Result<Report> {
    let ifindex = if_index("v1")?;
    let mut ebpf = Ebpf::load(vpcgw::dataplane::OBJECT).context("loading the program")?;
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| anyhow!("no program {XDP_PROGRAM}"))?
        .try_into()?;
    prog.load().context("verifier")?;
    prog.attach("v1", XdpMode::Driver)
        .context("attaching to v1 (native)")?;

    let sock = XskSocket::open(ifindex, 0, &XskConfig::default()).context("AF_XDP socket")?;
    let mut xsks = XskMap::try_from(
        ebpf.take_map(map_names::XSKS)
            .ok_or_else(|| anyhow!("no XSKS"))?,
    )?;
    xsks.set(0, sock.fd(), 0)?;
    fill_maps(&mut ebpf, ifindex)?;

    // 1. The frames themselves, and the metadata 16 bytes before them.
    let mut sock = sock;
    let sizes: Vec<usize> = (0..8).map(|i| 64 + 150 * i).collect();
    send_from(a, &sizes)?;
    let mut frames: Vec<(Option<XskMeta>, Vec<u8>)> = Vec::new();
    wait_until(WAIT, || {
        sock.recv(64, |f| {
            if frames.len() < 64 {
                frames.push((f.meta, f.data.to_vec()));
            }
        });
        frames.len() >= sizes.len()
    });
    ensure!(
        frames.len() == sizes.len(),
        "received {} frames, sent {}; STATS vpn_redirect {:?}, drop_vpn_no_socket {:?}, pass_new {:?}",
        frames.len(),
        sizes.len(),
        stat(&ebpf, Reason::VpnRedirect),
        stat(&ebpf, Reason::VpnNoSocket),
        stat(&ebpf, Reason::PassNew),
    );
    let want_meta = XskMeta {
        magic: XSK_META_MAGIC,
        conn: 0,
        generation: GENERATION,
        slot: 0,
    };
    for (i, ((meta, data), len)) in frames.iter().zip(&sizes).enumerate() {
        ensure!(
            data.len() == HDRS + len,
            "frame {i}: {} bytes, want {}",
            data.len(),
            HDRS + len
        );
        ensure!(
            data.get(12..14) == Some(&[0x08, 0x00][..]),
            "frame {i}: not IPv4"
        );
        ensure!(data.get(23) == Some(&17), "frame {i}: not UDP");
        ensure!(
            data.get(26..30) == Some(&A_ADDR.octets()[..]),
            "frame {i}: source"
        );
        let dst = data
            .get(30..34)
            .ok_or_else(|| anyhow!("frame {i}: short"))?;
        ensure!(
            dst.get(..2) == Some(&[10, 77][..]),
            "frame {i}: destination {dst:?} not in 10.77/16"
        );
        ensure!(dst == REMOTE.octets(), "frame {i}: destination {dst:?}");
        ensure!(
            data.get(36..38) == Some(&DPORT.to_be_bytes()[..]),
            "frame {i}: port"
        );
        ensure!(
            data.get(HDRS..) == Some(&payload(i, *len)[..]),
            "frame {i}: payload"
        );
        ensure!(
            *meta == Some(want_meta),
            "frame {i}: metadata {meta:?}, want {want_meta:?} at addr - {META_LEN} \
             (copy mode did not carry the XDP metadata?)"
        );
    }
    let frame_bytes = |sizes: &[usize]| sizes.iter().map(|l| (HDRS + l) as u64).sum::<u64>();
    let want = Count {
        packets: sizes.len() as u64,
        bytes: frame_bytes(&sizes),
    };
    ensure!(
        stat(&ebpf, Reason::VpnRedirect)? == want,
        "STATS vpn_redirect after step 1"
    );
    ensure!(
        stat(&ebpf, Reason::VpnNoSocket)?.packets == 0,
        "STATS drop_vpn_no_socket"
    );

    // 2. The receiver thread counts them under connection 0 of slot 0.
    let stats = Arc::new(XskStats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let handle = spawn_receiver(vec![sock], Arc::clone(&stats), Arc::clone(&stop))?;
    let receiver = Receiver {
        stop,
        handle: Some(handle),
    };
    let sizes2: Vec<usize> = (0..32).map(|i| 18 + 41 * i).collect();
    send_from(a, &sizes2)?;
    let want2 = Count {
        packets: sizes2.len() as u64,
        bytes: frame_bytes(&sizes2),
    };
    let conn0 = || stats.conn(0, 0).unwrap_or_default();
    wait_until(WAIT, || conn0().packets >= want2.packets);
    // Late extras would show here.
    thread::sleep(Duration::from_millis(100));
    ensure!(
        conn0() == want2,
        "receiver counted {:?} under conn 0, want {want2:?}",
        conn0()
    );
    let snap = stats.snapshot();
    ensure!(
        snap.conns.len() == 1,
        "other connections counted: {:?}",
        snap.conns
    );
    ensure!(
        snap.no_meta == Count::default(),
        "frames without metadata: {:?}",
        snap.no_meta
    );
    ensure!(
        snap.bad_meta == Count::default(),
        "frames with bad metadata: {:?}",
        snap.bad_meta
    );
    ensure!(
        snap.bad_descriptors == 0,
        "bad descriptors: {}",
        snap.bad_descriptors
    );
    let redirected = stat(&ebpf, Reason::VpnRedirect)?;
    let want_total = Count {
        packets: want.packets + want2.packets,
        bytes: want.bytes + want2.bytes,
    };
    ensure!(
        redirected == want_total,
        "STATS vpn_redirect {redirected:?}, want {want_total:?}"
    );

    // 3. Throughput of the copy-mode path (measured, not asserted).
    let before = conn0();
    let (sent, errors, elapsed) = burst_from(a)?;
    let mut last = conn0();
    wait_until(Duration::from_secs(3), || {
        thread::sleep(Duration::from_millis(100));
        let now = conn0();
        let settled = now == last;
        last = now;
        settled
    });
    let received = conn0().packets - before.packets;
    let burst_redirected = stat(&ebpf, Reason::VpnRedirect)?.packets - redirected.packets;
    receiver.finish()?;
    let kernel = stats.kernel();
    ensure!(received > 0, "nothing received during the burst");
    ensure!(
        received <= burst_redirected,
        "received {received} > redirected {burst_redirected}"
    );
    ensure!(
        stats.no_meta().packets == 0,
        "frames without metadata during the burst"
    );
    ensure!(
        stats.bad_descriptors() == 0,
        "bad descriptors during the burst"
    );
    ensure!(
        received + kernel.rx_dropped + kernel.rx_ring_full == burst_redirected,
        "redirected {burst_redirected} != received {received} + kernel drops {kernel:?}"
    );
    Ok(Report {
        meta_in_copy_mode: true,
        burst_sent: sent,
        burst_send_errors: errors,
        burst_received: received,
        burst_redirected,
        burst_secs: elapsed.as_secs_f64(),
        kernel,
    })
}
