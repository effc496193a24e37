//! Network namespaces for privileged tests.
//!
//! Rules every test relies on:
//! - test addresses exist only inside namespaces made here; veths are created
//!   inside them (`ip -n A link add ... peer ... netns B`), so the root
//!   namespace never gets a test address, interface or route;
//! - everything is removed on drop, also when a test fails or panics
//!   ([`Netns`] and [`Spawned`] are drop guards); namespaces left by a
//!   process that died (killed, aborted) are removed by the next process
//!   that uses this harness, since their names carry the pid of their maker;
//! - every command and every wait is bounded in time.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

/// Every namespace name starts with this, then the maker's pid (5 base-36
/// digits), then a per-process counter (2 base-36 digits), then a tag.
pub const PREFIX: &str = "vg";
const PID_DIGITS: usize = 5;
const CTR_DIGITS: usize = 2;
/// `sh` and friends give up after this long.
pub const SH_TIMEOUT: Duration = Duration::from_secs(30);
const NETNS_DIR: &str = "/run/netns";
/// Output kept per spawned process (older output is dropped).
const LOG_LIMIT: usize = 1 << 20;

/// Effective uid 0?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// An error for privileged tests run without root.
pub fn require_root() -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("this test needs root (network namespaces, XDP): run `cargo xtask test` as root")
    }
}

/// Polls `f` every `step` until it returns `Some` or `limit` has passed.
/// `f` runs at least once, and at most `limit / step + 1` times.
pub fn wait_for<T>(limit: Duration, step: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let step = step.max(Duration::from_millis(1));
    let max_rounds = limit.as_millis() / step.as_millis() + 1;
    for round in 0..=max_rounds {
        if let Some(v) = f() {
            return Some(v);
        }
        if round == max_rounds || start.elapsed() >= limit {
            break;
        }
        thread::sleep(step.min(limit.saturating_sub(start.elapsed())));
    }
    None
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        if let Some(&d) = DIGITS.get((n % 36) as usize) {
            *slot = d;
        }
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_base36(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 36).ok()
}

/// Names in /run/netns.
pub fn list_namespaces() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let rd = match std::fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).context("listing /run/netns"),
    };
    for e in rd {
        let e = e.context("listing /run/netns")?;
        if let Ok(n) = e.file_name().into_string() {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes namespaces whose maker (the pid in their name) is gone.
fn sweep_stale() {
    let Ok(names) = list_namespaces() else { return };
    // Not ours unless the "pid" could be one.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(4_194_304);
    for name in names {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.get(..PID_DIGITS))
            .filter(|_| name.len() > PREFIX.len() + PID_DIGITS + CTR_DIGITS)
            .and_then(parse_base36)
        else {
            continue;
        };
        if pid == 0 || pid > pid_max || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("netns: removing {name}, left by process {pid} which is gone");
        remove_namespace(&name);
    }
}

static SWEEP: Once = Once::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh prefix ("vg" + pid + counter) no namespace has yet. [`Netns::new`]
/// and [`crate::bed::Bed::new`] use it; also removes stale namespaces of
/// earlier, dead processes (once per process).
pub fn unique_prefix() -> Result<String> {
    SWEEP.call_once(sweep_stale);
    let pid = base36(u64::from(std::process::id()), PID_DIGITS);
    let existing = list_namespaces()?;
    let space = 36u32.pow(CTR_DIGITS as u32);
    for _ in 0..space {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % space;
        let prefix = format!("{PREFIX}{pid}{}", base36(u64::from(n), CTR_DIGITS));
        if !existing.iter().any(|e| e.starts_with(&prefix)) {
            return Ok(prefix);
        }
    }
    bail!("no free namespace prefix for pid {pid}: too many namespaces in use")
}

/// A network namespace made for a test: removed on drop, after the processes
/// still running inside are killed.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace named "vg" + pid + counter + `tag`, with `lo` up.
    /// Keep `tag` short (≤ 6 characters keeps the name within 15).
    pub fn new(tag: &str) -> Result<Netns> {
        Netns::create(format!("{}{tag}", unique_prefix()?))
    }

    /// A new namespace with exactly this name (get a prefix from
    /// [`unique_prefix`]), with `lo` up.
    pub fn create(name: String) -> Result<Netns> {
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            bail!("bad namespace name {name:?}");
        }
        SWEEP.call_once(sweep_stale);
        let out = run_timeout(ip(&["netns", "add", &name]), SH_TIMEOUT, None)?;
        if !out.status.success() {
            bail!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // From here on, drop removes it.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`; an error (with stderr) unless it exits 0.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut c = ip(&["-n", &self.name]);
        c.args(args);
        checked(&c, run_timeout(c_clone(&c), SH_TIMEOUT, None)?)
    }

    /// Runs many `ip` commands in one process: `ip -n NAME -batch -`, one
    /// command per line (without the leading `ip`). Stops at the first error.
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        let c = ip(&["-n", &self.name, "-batch", "-"]);
        let script = lines.join("\n") + "\n";
        let out = run_timeout(c_clone(&c), SH_TIMEOUT, Some(script.into_bytes()))?;
        checked(&c, out).map(|_| ()).with_context(|| {
            format!(
                "in namespace {}, batch:\n  {}",
                self.name,
                lines.join("\n  ")
            )
        })
    }

    /// `ip netns exec NAME ARGS...` with a 30 s limit; its stdout, or an
    /// error with its stderr unless it exits 0.
    pub fn sh(&self, args: &[&str]) -> Result<String> {
        let c = self.exec_cmd(args)?;
        checked(&c, run_timeout(c_clone(&c), SH_TIMEOUT, None)?)
    }

    /// Like [`Netns::sh`] but returns the output whatever the exit status.
    pub fn run(&self, args: &[&str], limit: Duration) -> Result<Output> {
        let c = self.exec_cmd(args)?;
        run_timeout(c, limit, None)
    }

    fn exec_cmd(&self, args: &[&str]) -> Result<Command> {
        if args.is_empty() {
            bail!("no command to run in {}", self.name);
        }
        let mut c = ip(&["netns", "exec", &self.name]);
        c.args(args);
        Ok(c)
    }

    /// Starts a long-running process inside (`ip netns exec` execs it, so
    /// its pid is the process's own). Its output is kept (see
    /// [`Spawned::output`]); it is stopped when the [`Spawned`] is dropped.
    pub fn spawn(&self, args: &[&str]) -> Result<Spawned> {
        self.spawn_env(args, &[])
    }

    /// [`Netns::spawn`] with extra environment variables.
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Spawned> {
        let mut c = self.exec_cmd(args)?;
        c.envs(env.iter().copied());
        let tag = format!(
            "{}:{}",
            self.name,
            args.first()
                .and_then(|a| std::path::Path::new(a).file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Spawned::start(c, tag)
    }

    /// Runs `f` on a new thread that has entered this namespace (setns
    /// CLONE_NEWNET), and returns its result. Sockets made there belong to
    /// the namespace for their whole life, wherever they are used later.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let path = format!("{NETNS_DIR}/{}", self.name);
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        let handle = thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || -> Result<R> {
                // SAFETY: a valid namespace fd; CLONE_NEWNET affects only this
                // thread, which ends after `f`.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
                }
                drop(file);
                Ok(f())
            })
            .context("spawning a thread")?;
        handle
            .join()
            .map_err(|_| anyhow!("the closure run in namespace {} panicked", self.name))?
    }

    /// The interface index of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let c = CString::new(ifname).context("interface name")?;
        // SAFETY: a valid NUL-terminated string.
        let idx = self.enter(move || unsafe { libc::if_nametoindex(c.as_ptr()) })?;
        if idx == 0 {
            bail!("no interface {ifname} in namespace {}", self.name);
        }
        Ok(idx)
    }

    /// Sets sysctls (`("net/ipv4/ip_forward", "1")`, path under
    /// /proc/sys) for this namespace, without starting a process.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        let owned: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let name = self.name.clone();
        self.enter(move || -> Result<()> {
            for (k, v) in owned {
                let path = format!("/proc/sys/{k}");
                std::fs::write(&path, &v)
                    .with_context(|| format!("{name}: write {v} to {path}"))?;
            }
            Ok(())
        })?
    }

    /// A counter of /proc/net/snmp or /proc/net/netstat in this namespace,
    /// e.g. `("Icmp", "InEchos")`, `("Ip", "InReceives")`, `("Tcp", "PassiveOpens")`.
    pub fn snmp(&self, group: &str, field: &str) -> Result<u64> {
        let (group, field) = (group.to_string(), field.to_string());
        let name = self.name.clone();
        self.enter(move || -> Result<u64> {
            for file in [
                "/proc/thread-self/net/snmp",
                "/proc/thread-self/net/netstat",
            ] {
                let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
                if let Some(v) = snmp_value(&text, &group, &field) {
                    return Ok(v);
                }
            }
            bail!("{name}: no counter {group}:{field}")
        })?
    }

    /// Pings `dst` `count` times (0.2 s apart, 1 s wait per reply) and
    /// returns how many replies came back.
    pub fn ping(&self, dst: &str, count: u32) -> Result<u32> {
        let count_s = count.to_string();
        let out = self.run(
            &[
                "ping", "-n", "-q", "-c", &count_s, "-i", "0.2", "-W", "1", dst,
            ],
            Duration::from_secs(u64::from(count) + 5),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "2 packets transmitted, 2 received, 0% packet loss, time 201ms"
        let received = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        match received {
            Some(n) => Ok(n),
            None => bail!(
                "ping {dst} in {}: unexpected output: {}{}",
                self.name,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    /// A TCP server listening on `addr` inside this namespace, in a
    /// background thread: each connection gets one line and is closed.
    pub fn tcp_serve(&self, addr: SocketAddr) -> Result<TcpServer> {
        let listener = self
            .enter(move || TcpListener::bind(addr))?
            .with_context(|| format!("bind {addr} in {}", self.name))?;
        TcpServer::start(listener, addr)
    }

    /// Connects to `addr` from inside this namespace and reads the
    /// [`TcpServer`]'s line; `limit` bounds the connect and the read.
    pub fn tcp_connect(&self, addr: SocketAddr, limit: Duration) -> Result<Connect> {
        self.enter(move || tcp_probe(addr, limit))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

fn namespace_pids(name: &str) -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    run_timeout(ip(&["netns", "pids", name]), SH_TIMEOUT, None)
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|&p| p > 1 && p != me)
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what runs inside (bounded: 2 s), then deletes the namespace.
fn remove_namespace(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = namespace_pids(name);
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("netns: {name}: processes {pids:?} still inside after SIGKILL");
            break;
        }
        for p in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
    match run_timeout(ip(&["netns", "del", name]), SH_TIMEOUT, None) {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "netns: ip netns del {name}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("netns: ip netns del {name}: {e:#}"),
    }
}

/// A veth pair: `a_if` created inside `a`, its peer `b_if` inside `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

fn snmp_value(text: &str, group: &str, field: &str) -> Option<u64> {
    // Pairs of lines: "Icmp: InMsgs InErrors ..." then "Icmp: 3 0 ...".
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let pos = names.split_whitespace().position(|n| n == field);
        if let Some(pos) = pos {
            return values.split_whitespace().nth(pos)?.parse().ok();
        }
    }
    None
}

fn ip(args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(args);
    c
}

/// A copy of `c` (program, args, env, dir), since Command is not Clone.
fn c_clone(c: &Command) -> Command {
    let mut n = Command::new(c.get_program());
    n.args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => n.env(k, v),
            None => n.env_remove(k),
        };
    }
    if let Some(d) = c.get_current_dir() {
        n.current_dir(d);
    }
    n
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn checked(c: &Command, out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        bail!(
            "`{}` failed ({}): {}{}",
            describe(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            {
                let so = String::from_utf8_lossy(&out.stdout);
                if so.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", so.trim())
                }
            }
        )
    }
}

fn read_to_end_thread(r: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut r) = r {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// Runs `c` to completion, killing it after `limit`; output captured.
pub fn run_timeout(mut c: Command, limit: Duration, stdin: Option<Vec<u8>>) -> Result<Output> {
    let what = describe(&c);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small scripts: fits in the pipe buffer, or the child reads it.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_rx = read_to_end_thread(child.stdout.take());
    let err_rx = read_to_end_thread(child.stderr.take());
    // A blocking wait on its own thread, not a polling loop: the bench
    // times commands with this, and polling would round its figures up to
    // the polling steps.
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(st) => st.with_context(|| format!("waiting for `{what}`"))?,
        Err(_) => {
            // SAFETY: kill(2) on the child's pid: it cannot have been reused,
            // as the child is not reaped until the waiting thread returns.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(2));
            bail!("`{what}` did not finish within {limit:?} (killed)");
        }
    };
    // A grandchild could hold the pipes open: bound the reads too.
    let grace = Duration::from_secs(2);
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Output of a spawned process: stdout and stderr lines, as they came.
#[derive(Default)]
struct Log {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Log {
    fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > LOG_LIMIT {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.len() + 1,
                None => break,
            }
        }
    }
}

/// A process running inside a [`Netns`]. Dropping it stops it: SIGTERM,
/// then SIGKILL after 2 s.
pub struct Spawned {
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    pid: u32,
    tag: String,
    log: Arc<Mutex<Log>>,
    echo: Arc<AtomicBool>,
}

impl Spawned {
    fn start(mut c: Command, tag: String) -> Result<Spawned> {
        let what = describe(&c);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let echo = Arc::new(AtomicBool::new(false));
        let readers: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ];
        for r in readers.into_iter().flatten() {
            let (log, echo, tag) = (log.clone(), echo.clone(), tag.clone());
            // Ends when the process (and whatever inherited its output) exits.
            let _detached: JoinHandle<()> = thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if echo.load(Ordering::Relaxed) {
                        eprintln!("[{tag}] {line}");
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Ok(Spawned {
            pid: child.id(),
            child: Mutex::new(child),
            status: Mutex::new(None),
            tag,
            log,
            echo,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Print its output lines to stderr as they come ("[ns:prog] line").
    pub fn set_echo(&self, on: bool) {
        self.echo.store(on, Ordering::Relaxed);
    }

    /// Everything it printed so far (stdout and stderr lines; the last MiB).
    pub fn output(&self) -> String {
        self.log
            .lock()
            .map(|l| l.lines.iter().map(|s| format!("{s}\n")).collect())
            .unwrap_or_default()
    }

    /// Waits (bounded) until its output has a line containing `needle`;
    /// returns that line. `None` if not within `limit` or it exited first.
    pub fn wait_output(&self, needle: &str, limit: Duration) -> Option<String> {
        let find = || {
            self.log
                .lock()
                .ok()?
                .lines
                .iter()
                .find(|l| l.contains(needle))
                .cloned()
        };
        let mut saw_exit = false;
        wait_for(limit, Duration::from_millis(50), || {
            if let Some(line) = find() {
                return Some(Some(line));
            }
            if self.exited() {
                // Give the readers one more round for its last lines.
                if saw_exit {
                    return Some(None);
                }
                saw_exit = true;
            }
            None
        })
        .flatten()
    }

    /// Its exit status if it has exited (reaps it).
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let mut status = self.status.lock().map_err(|_| anyhow!("poisoned lock"))?;
        if status.is_none() {
            let mut child = self.child.lock().map_err(|_| anyhow!("poisoned lock"))?;
            *status = child
                .try_wait()
                .with_context(|| format!("wait {}", self.tag))?;
        }
        Ok(*status)
    }

    fn exited(&self) -> bool {
        matches!(self.try_wait(), Ok(Some(_)))
    }

    /// Sends `sig` (e.g. `libc::SIGINT`); nothing if it already exited.
    pub fn signal(&self, sig: i32) -> Result<()> {
        // Holding the status lock: the pid cannot be reaped (and reused) meanwhile.
        let status = self.status.lock().map_err(|_| anyhow!("poisoned lock"))?;
        if status.is_some() {
            return Ok(());
        }
        let mut child = self.child.lock().map_err(|_| anyhow!("poisoned lock"))?;
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid).context("pid")?;
        // SAFETY: our own unreaped child, so the pid is its.
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("kill({pid}, {sig})"));
        }
        Ok(())
    }

    /// Waits up to `limit` for it to exit.
    pub fn wait_timeout(&self, limit: Duration) -> Result<Option<ExitStatus>> {
        let mut err = None;
        let st = wait_for(limit, Duration::from_millis(10), || match self.try_wait() {
            Ok(s) => s,
            Err(e) => {
                err = Some(e);
                Some(ExitStatus::default())
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(st),
        }
    }

    /// Sends `sig`, waits up to `limit`, then SIGKILLs it if needed; returns
    /// the exit status and whether it exited on its own after `sig`.
    pub fn stop(&self, sig: i32, limit: Duration) -> Result<(ExitStatus, bool)> {
        self.signal(sig)?;
        if let Some(st) = self.wait_timeout(limit)? {
            return Ok((st, true));
        }
        self.signal(libc::SIGKILL)?;
        match self.wait_timeout(Duration::from_secs(2))? {
            Some(st) => Ok((st, false)),
            None => bail!("{} (pid {}) survived SIGKILL", self.tag, self.pid),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        if let Err(e) = self.stop(libc::SIGTERM, Duration::from_secs(2)) {
            eprintln!("netns: stopping {}: {e:#}", self.tag);
        }
    }
}

/// What a TCP connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// Connected, and the server's line came back.
    Connected(String),
    /// RST: the SYN reached a host with nothing listening.
    Refused,
    /// No answer within the limit (dropped on the way).
    TimedOut,
    /// Anything else (unreachable, connected but no data, ...).
    Other(String),
}

fn tcp_probe(addr: SocketAddr, limit: Duration) -> Connect {
    let mut stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) => {
            return match e.kind() {
                std::io::ErrorKind::ConnectionRefused => Connect::Refused,
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Connect::TimedOut,
                _ => Connect::Other(e.to_string()),
            };
        }
    };
    if let Err(e) = stream.set_read_timeout(Some(limit)) {
        return Connect::Other(format!("connected, set_read_timeout: {e}"));
    }
    let mut line = String::new();
    match BufReader::new(&mut stream).read_line(&mut line) {
        Ok(n) if n > 0 => Connect::Connected(line.trim_end().to_string()),
        Ok(_) => Connect::Other("connected, but the server sent nothing".into()),
        Err(e) => Connect::Other(format!("connected, but no data: {e}")),
    }
}

/// A TCP server in a namespace (see [`Netns::tcp_serve`]): answers each
/// connection with "vpcgw-test ADDR\n"; stops on drop.
pub struct TcpServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(listener: TcpListener, addr: SocketAddr) -> Result<TcpServer> {
        listener.set_nonblocking(true).context("set_nonblocking")?;
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = thread::Builder::new()
            .name(format!("serve-{addr}"))
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut conn, _peer)) => {
                            a.fetch_add(1, Ordering::Relaxed);
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                            let _ = writeln!(conn, "vpcgw-test {addr}");
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .context("spawning the server thread")?;
        Ok(TcpServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_round_trip() {
        assert_eq!(base36(0, 5), "00000");
        assert_eq!(base36(4_194_304, 5), "2hwcg");
        assert_eq!(parse_base36("2hwcg"), Some(4_194_304));
        assert_eq!(base36(36 * 36 + 1, 2), "01");
    }

    #[test]
    fn snmp_parsing() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nIcmp: InMsgs InEchos\nIcmp: 5 3\n";
        assert_eq!(snmp_value(text, "Icmp", "InEchos"), Some(3));
        assert_eq!(snmp_value(text, "Ip", "Forwarding"), Some(1));
        assert_eq!(snmp_value(text, "Tcp", "InSegs"), None);
    }

    #[test]
    fn wait_for_is_bounded() {
        let mut calls = 0;
        let start = Instant::now();
        let r: Option<()> = wait_for(
            Duration::from_millis(100),
            Duration::from_millis(20),
            || {
                calls += 1;
                None
            },
        );
        assert!(r.is_none());
        assert!(calls <= 6, "{calls} calls");
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(
            wait_for(Duration::ZERO, Duration::from_millis(5), || Some(7)),
            Some(7)
        );
    }

    #[test]
    fn netns_primitives() -> Result<()> {
        require_root()?;
        let a = Netns::new("ta")?;
        let b = Netns::new("tb")?;
        let name = a.name().to_string();
        assert!(name.starts_with(PREFIX) && name.len() <= 15, "{name}");

        // sh: output, errors with stderr, timeout.
        assert!(a.sh(&["ip", "-o", "link", "show", "lo"])?.contains("UP"));
        let err = a.sh(&["ip", "link", "show", "nosuchif"]).err();
        assert!(format!("{err:?}").contains("nosuchif"), "{err:?}");
        let slow = a.run(&["sleep", "5"], Duration::from_millis(200));
        assert!(slow.is_err());

        // veth and addresses only inside; ifindex; enter + sockets.
        veth(&a, "x0", &b, "y0")?;
        a.ip(&["addr", "add", "10.99.0.1/30", "dev", "x0"])?;
        b.ip(&["addr", "add", "10.99.0.2/30", "dev", "y0"])?;
        assert!(a.ifindex("x0")? > 1);
        assert!(a.ifindex("y0").is_err());
        let srv = b.tcp_serve("10.99.0.2:7000".parse()?)?;
        let got = a.tcp_connect("10.99.0.2:7000".parse()?, Duration::from_secs(2))?;
        assert_eq!(got, Connect::Connected("vpcgw-test 10.99.0.2:7000".into()));
        assert_eq!(srv.accepted(), 1);
        assert_eq!(
            a.tcp_connect("10.99.0.2:7001".parse()?, Duration::from_secs(2))?,
            Connect::Refused
        );
        assert_eq!(a.ping("10.99.0.2", 1)?, 1);
        assert!(b.snmp("Icmp", "InEchos")? >= 1);

        // sysctl in the namespace only.
        b.sysctl(&[("net/ipv4/ip_forward", "1")])?;
        assert_eq!(b.sh(&["cat", "/proc/sys/net/ipv4/ip_forward"])?.trim(), "1");

        // spawn: output, signal, wait.
        let p = a.spawn(&[
            "sh",
            "-c",
            "echo ready; trap 'echo bye; exit 3' INT; while :; do sleep 0.05; done",
        ])?;
        assert!(p.wait_output("ready", Duration::from_secs(5)).is_some());
        p.signal(libc::SIGINT)?;
        let st = p.wait_timeout(Duration::from_secs(5))?;
        assert_eq!(st.and_then(|s| s.code()), Some(3));
        assert!(p.output().contains("bye"));

        // A process left running is killed with its namespace.
        let orphan = a.spawn(&["sleep", "60"])?;
        let orphan_pid = orphan.pid();
        std::mem::forget(orphan);
        drop(a);
        drop(b);
        assert!(!list_namespaces()?.contains(&name));
        let gone = wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
            let stat = std::fs::read_to_string(format!("/proc/{orphan_pid}/stat")).ok();
            // Gone, or a zombie waiting to be reaped.
            match stat {
                None => Some(()),
                Some(s) if s.contains(") Z ") => Some(()),
                Some(_) => None,
            }
        });
        assert!(gone.is_some(), "sleep {orphan_pid} still running");
        Ok(())
    }
}
