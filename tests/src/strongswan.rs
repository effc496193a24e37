//! strongSwan (Debian's 5.9.8) as a real IKEv2 peer: a `charon` in a test's
//! namespace, configured from Rust values ([`CharonConf`]), driven and read
//! back through `swanctl` ([`Charon`], [`IkeSaInfo`]).
//!
//! Each [`Charon`] has its own private directory (strongswan.conf,
//! swanctl/swanctl.conf with the PSK, mode 0600, its log, its vici socket and
//! a `run/` directory bind-mounted over /run in a private mount namespace,
//! since charon 5.9.8 hard-codes /var/run/charon.pid). Dropping it stops
//! charon (SIGTERM, then SIGKILL) and removes the directory.
//!
//! This kernel has no ESP, so charon uses its userspace data plane, the
//! kernel-libipsec plugin: a TUN device `ipsec0` (MTU 1400), routes in table
//! 220, ESP always in UDP 4500 (it forces NAT-T, so SAs show `nat_remote`).
//! The plugin order matters: kernel-libipsec before kernel-netlink (the first
//! IPsec backend wins), and `openssl` first by default (ECP and curve25519
//! groups, and the fast AES-GCM; the first plugin to register an algorithm
//! provides it). A gateway needs an address inside its own local subnet.
//!
//! The PSK is never printed: [`CharonConf`]'s `Debug` hides it, the secrets
//! file is written hex-encoded, and charon logs at levels that do not dump
//! keys (`ike 2`, others 1; `ike 4` or `enc 3` and up would print secrets).
//! Every command and wait is bounded in time.
//!
//! Pitfalls met here (5.9.8):
//! - swanctl options follow the command: `swanctl --list-sas --uri ...`
//!   (`swanctl --uri ... --list-sas` is "unrecognized option").
//! - swanctl reads `swanctl.load` from STRONGSWAN_CONF (its default list
//!   names plugins Debian lacks: a dozen "failed to load" lines), and looks
//!   for credential directories (x509, private, ...) beside `--file`.
//! - `charon.threads` below 16 can leave no worker free (9 block for good
//!   with libipsec): vici then accepts connections and never answers.
//! - filelog buffers unless `flush_line = yes`.
//! - A rekeyed CHILD_SA stays listed (REKEYED, DELETING, DELETED) for
//!   `delete_rekeyed_delay` (5 s); an overdue rekey shows a negative
//!   `rekey-time`. The first CHILD_SA shows no `dh-group` (PFS applies from
//!   its first rekey on).
//! - DPD in IKEv2 uses the retransmission settings: with charon's defaults a
//!   dead peer takes about 165 s to detect.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::netns::{Netns, Spawned, run_timeout, wait_for};

/// Where Debian (and others) put the daemon.
const CHARON_PATHS: [&str; 2] = ["/usr/lib/ipsec/charon", "/usr/libexec/ipsec/charon"];
const SWANCTL_PATHS: [&str; 3] = ["/usr/sbin/swanctl", "/usr/bin/swanctl", "/sbin/swanctl"];
const PLUGIN_DIRS: [&str; 2] = ["/usr/lib/ipsec/plugins", "/usr/libexec/ipsec/plugins"];
/// Plugins charon loads after [`CharonConf::extra_plugins_first`], in this
/// order (kernel-libipsec before kernel-netlink).
pub const BASE_PLUGINS: &[&str] = &[
    "random",
    "nonce",
    "aes",
    "sha1",
    "sha2",
    "hmac",
    "kdf",
    "gmp",
    "gcm",
    "kernel-libipsec",
    "kernel-netlink",
    "socket-default",
    "vici",
];
/// Plugin files [`strongswan_installed`] wants (openssl: ECP, curve25519).
const NEEDED_PLUGINS: [&str; 5] = [
    "kernel-libipsec",
    "kernel-netlink",
    "vici",
    "gcm",
    "openssl",
];
/// swanctl's own plugins (its default list names plugins Debian lacks, and
/// it complains about each one on stderr).
const SWANCTL_PLUGINS: &str = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey";
/// swanctl looks for credentials in these, next to swanctl.conf.
const SWANCTL_SUBDIRS: [&str; 13] = [
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// How long charon may take to open its vici socket and answer.
pub const START_LIMIT: Duration = Duration::from_secs(10);
/// Limit for one `swanctl` command (other than `--initiate`, which gets its
/// own limit plus this).
pub const SWANCTL_LIMIT: Duration = Duration::from_secs(20);
/// Polling step of [`Charon::wait_sas`].
const POLL_STEP: Duration = Duration::from_millis(50);
/// Bounds of the `--list-sas` parser.
const MAX_LIST_OUTPUT: usize = 4 << 20;
const MAX_DEPTH: usize = 16;

/// Is strongSwan there: charon, swanctl and the plugins the harness loads?
pub fn strongswan_installed() -> bool {
    charon_path().is_some()
        && swanctl_path().is_some()
        && NEEDED_PLUGINS.iter().all(|p| {
            PLUGIN_DIRS
                .iter()
                .any(|d| Path::new(d).join(format!("libstrongswan-{p}.so")).is_file())
        })
}

/// The charon binary, if installed.
pub fn charon_path() -> Option<PathBuf> {
    CHARON_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn swanctl_path() -> Option<PathBuf> {
    SWANCTL_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// What the CHILD_SA does when its configuration is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAction {
    /// Wait to be initiated (by swanctl or by the peer).
    #[default]
    None,
    /// Initiate at once.
    Start,
    /// Install a trap policy: initiate on the first matching packet.
    Trap,
}

impl StartAction {
    fn as_str(self) -> &'static str {
        match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        }
    }
}

/// One IKEv2 connection (with one CHILD_SA) for a [`Charon`], PSK-authenticated.
/// Durations are written in whole seconds (rounded up).
#[derive(Clone)]
pub struct CharonConf {
    /// Connection name in swanctl.conf (also the child's unless `child_name`).
    pub name: String,
    pub child_name: Option<String>,
    pub local_addr: IpAddr,
    pub remote_addr: IpAddr,
    pub local_id: String,
    pub remote_id: String,
    /// Written hex-encoded to the secrets section (file mode 0600); never printed.
    pub psk: String,
    /// e.g. "aes128gcm16-prfsha256-modp2048".
    pub ike_proposals: String,
    /// e.g. "aes128gcm16-modp2048" (PFS) or "aes256-sha256".
    pub esp_proposals: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub start_action: StartAction,
    /// IKE SA.
    pub rekey_time: Option<Duration>,
    pub over_time: Option<Duration>,
    pub reauth_time: Option<Duration>,
    /// CHILD_SA.
    pub child_rekey_time: Option<Duration>,
    pub child_life_time: Option<Duration>,
    pub dpd_delay: Option<Duration>,
    /// IKEv1 only: accepted and ignored (IKEv2 uses the retransmission settings).
    pub dpd_timeout: Option<Duration>,
    /// "clear", "trap" or "restart" (the child's `dpd_action`).
    pub dpd_action: Option<String>,
    /// Force UDP encapsulation (libipsec uses UDP 4500 anyway).
    pub encap: bool,
    pub mobike: bool,
    /// "yes", "accept", "force" or "no".
    pub fragmentation: Option<String>,
    pub keyingtries: Option<u32>,
    /// Plugins loaded before [`BASE_PLUGINS`]; default `["openssl"]`.
    pub extra_plugins_first: Vec<String>,
    /// strongswan.conf `charon.retransmit_*` (written at start only, not by
    /// [`Charon::reload`]). charon's defaults (4 s, base 1.8, 5 tries) take
    /// about 165 s to declare a peer dead.
    pub retransmit_timeout: Option<Duration>,
    pub retransmit_base: Option<f64>,
    pub retransmit_tries: Option<u32>,
}

impl fmt::Debug for CharonConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CharonConf")
            .field("name", &self.name)
            .field("child_name", &self.child_name)
            .field("local_addr", &self.local_addr)
            .field("remote_addr", &self.remote_addr)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &"<hidden>")
            .field("ike_proposals", &self.ike_proposals)
            .field("esp_proposals", &self.esp_proposals)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("start_action", &self.start_action)
            .field("rekey_time", &self.rekey_time)
            .field("over_time", &self.over_time)
            .field("reauth_time", &self.reauth_time)
            .field("child_rekey_time", &self.child_rekey_time)
            .field("child_life_time", &self.child_life_time)
            .field("dpd_delay", &self.dpd_delay)
            .field("dpd_action", &self.dpd_action)
            .field("encap", &self.encap)
            .field("mobike", &self.mobike)
            .field("fragmentation", &self.fragmentation)
            .field("keyingtries", &self.keyingtries)
            .field("extra_plugins_first", &self.extra_plugins_first)
            .finish_non_exhaustive()
    }
}

impl CharonConf {
    /// A connection `name` from `local_addr` to `remote_addr`, IDs the
    /// addresses, the example's proposals (aes128gcm16-prfsha256-modp2048,
    /// ESP aes128gcm16-modp2048), no traffic selectors yet, charon's
    /// defaults for the rest, `openssl` loaded first.
    pub fn new(name: &str, local_addr: IpAddr, remote_addr: IpAddr, psk: &str) -> CharonConf {
        CharonConf {
            name: name.to_string(),
            child_name: None,
            local_addr,
            remote_addr,
            local_id: local_addr.to_string(),
            remote_id: remote_addr.to_string(),
            psk: psk.to_string(),
            ike_proposals: "aes128gcm16-prfsha256-modp2048".to_string(),
            esp_proposals: "aes128gcm16-modp2048".to_string(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            start_action: StartAction::None,
            rekey_time: None,
            over_time: None,
            reauth_time: None,
            child_rekey_time: None,
            child_life_time: None,
            dpd_delay: None,
            dpd_timeout: None,
            dpd_action: None,
            encap: false,
            mobike: false,
            fragmentation: None,
            keyingtries: None,
            extra_plugins_first: vec!["openssl".to_string()],
            retransmit_timeout: None,
            retransmit_base: None,
            retransmit_tries: None,
        }
    }

    /// The peer's view: addresses, IDs and traffic selectors swapped;
    /// proposals, PSK and names kept; timers and start action back to
    /// charon's defaults (a passive responder).
    pub fn mirror(&self) -> CharonConf {
        let mut m = CharonConf::new(&self.name, self.remote_addr, self.local_addr, &self.psk);
        m.child_name = self.child_name.clone();
        m.local_id = self.remote_id.clone();
        m.remote_id = self.local_id.clone();
        m.ike_proposals = self.ike_proposals.clone();
        m.esp_proposals = self.esp_proposals.clone();
        m.local_ts = self.remote_ts.clone();
        m.remote_ts = self.local_ts.clone();
        m.extra_plugins_first = self.extra_plugins_first.clone();
        m
    }

    /// The CHILD_SA's name.
    pub fn child(&self) -> &str {
        self.child_name.as_deref().unwrap_or(&self.name)
    }

    /// charon's plugin load list.
    pub fn plugins(&self) -> Vec<String> {
        let mut list: Vec<String> = Vec::new();
        for p in self
            .extra_plugins_first
            .iter()
            .map(String::as_str)
            .chain(BASE_PLUGINS.iter().copied())
        {
            if !list.iter().any(|q| q == p) {
                list.push(p.to_string());
            }
        }
        list
    }
}

/// A name, proposal list, traffic selector, ...: written unquoted.
fn token<'a>(s: &'a str, what: &str) -> Result<&'a str> {
    ensure!(
        !s.is_empty()
            && s.len() <= 1024
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.,:/".contains(c)),
        "{what} {s:?}: only letters, digits and - _ . , : / allowed"
    );
    Ok(s)
}

/// A string written in double quotes (an identity).
fn quoted(s: &str, what: &str) -> Result<String> {
    ensure!(
        !s.is_empty()
            && s.len() <= 1024
            && !s.chars().any(|c| c.is_control() || "\"\\$".contains(c)),
        "{what} {s:?}: empty, too long, or has a quote, backslash, $ or control character"
    );
    Ok(format!("\"{s}\""))
}

/// Whole seconds, rounded up.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// swanctl.conf for `c` (holds the PSK: write it with mode 0600).
fn swanctl_conf(c: &CharonConf) -> Result<String> {
    let name = token(&c.name, "connection name")?;
    let child = token(c.child(), "child name")?;
    ensure!(!c.psk.is_empty(), "empty PSK");
    ensure!(
        !c.local_ts.is_empty() && !c.remote_ts.is_empty(),
        "traffic selectors missing"
    );
    let ts = |v: &[String], what: &str| -> Result<String> {
        let parts: Result<Vec<&str>> = v.iter().map(|t| token(t, what)).collect();
        Ok(parts?.join(","))
    };
    let mut conn = vec![
        "version = 2".to_string(),
        format!("local_addrs = {}", c.local_addr),
        format!("remote_addrs = {}", c.remote_addr),
        format!("proposals = {}", token(&c.ike_proposals, "IKE proposals")?),
        format!("encap = {}", yes_no(c.encap)),
        format!("mobike = {}", yes_no(c.mobike)),
    ];
    for (key, v) in [
        ("rekey_time", c.rekey_time),
        ("over_time", c.over_time),
        ("reauth_time", c.reauth_time),
        ("dpd_delay", c.dpd_delay),
    ] {
        if let Some(d) = v {
            conn.push(format!("{key} = {}s", secs(d)));
        }
    }
    if let Some(f) = &c.fragmentation {
        conn.push(format!("fragmentation = {}", token(f, "fragmentation")?));
    }
    if let Some(k) = c.keyingtries {
        conn.push(format!("keyingtries = {k}"));
    }
    let mut ch = vec![
        format!("local_ts = {}", ts(&c.local_ts, "local_ts")?),
        format!("remote_ts = {}", ts(&c.remote_ts, "remote_ts")?),
        format!(
            "esp_proposals = {}",
            token(&c.esp_proposals, "ESP proposals")?
        ),
        format!("start_action = {}", c.start_action.as_str()),
    ];
    for (key, v) in [
        ("rekey_time", c.child_rekey_time),
        ("life_time", c.child_life_time),
    ] {
        if let Some(d) = v {
            ch.push(format!("{key} = {}s", secs(d)));
        }
    }
    if let Some(a) = &c.dpd_action {
        ch.push(format!("dpd_action = {}", token(a, "dpd_action")?));
    }
    let local_id = quoted(&c.local_id, "local_id")?;
    let remote_id = quoted(&c.remote_id, "remote_id")?;
    let hex: String = c.psk.bytes().map(|b| format!("{b:02x}")).collect();
    let ind = |lines: &[String], n: usize| -> String {
        lines
            .iter()
            .map(|l| format!("{:n$}{l}\n", ""))
            .collect::<String>()
    };
    Ok(format!(
        "# written by vpcgw-tests (strongswan.rs)\n\
         connections {{\n  {name} {{\n{}    local {{\n      auth = psk\n      id = {local_id}\n    }}\n\
         \x20   remote {{\n      auth = psk\n      id = {remote_id}\n    }}\n\
         \x20   children {{\n      {child} {{\n{}      }}\n    }}\n  }}\n}}\n\
         secrets {{\n  ike-{name} {{\n    id-1 = {local_id}\n    id-2 = {remote_id}\n    secret = 0x{hex}\n  }}\n}}\n",
        ind(&conn, 4),
        ind(&ch, 8),
    ))
}

/// strongswan.conf for an instance living in `dir`. Keeps charon's 16
/// worker threads: 9 of them block for good here (kernel-libipsec, netlink,
/// sockets, ...); with `threads = 8`, vici accepts connections and never
/// answers.
fn strongswan_conf(c: &CharonConf, dir: &Path) -> Result<String> {
    let plugins = c.plugins();
    for p in &plugins {
        token(p, "plugin")?;
    }
    let d = dir.display();
    let mut retransmit = String::new();
    if let Some(t) = c.retransmit_timeout {
        retransmit += &format!("  retransmit_timeout = {:.3}\n", t.as_secs_f64());
    }
    if let Some(b) = c.retransmit_base {
        ensure!(b.is_finite() && b >= 1.0, "retransmit_base {b} < 1");
        retransmit += &format!("  retransmit_base = {b:.3}\n");
    }
    if let Some(n) = c.retransmit_tries {
        retransmit += &format!("  retransmit_tries = {n}\n");
    }
    Ok(format!(
        "# written by vpcgw-tests (strongswan.rs)\n\
         charon {{\n  load = {}\n  install_routes = yes\n{retransmit}\
         \x20 plugins {{\n    vici {{\n      socket = unix://{d}/charon.vici\n    }}\n  }}\n\
         \x20 filelog {{\n    harness {{\n      path = {d}/charon.log\n      append = no\n      flush_line = yes\n\
         \x20     time_format = %H:%M:%S\n      ike_name = yes\n\
         \x20     default = 1\n      ike = 2\n      cfg = 1\n      knl = 1\n      net = 1\n      enc = 1\n    }}\n  }}\n}}\n\
         swanctl {{\n  load = {SWANCTL_PLUGINS}\n}}\n",
        plugins.join(" ")
    ))
}

/// Writes `text` to `path` with mode 0600 (via a temporary file and a rename).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

/// A charon in a namespace; see the module documentation.
pub struct Charon {
    /// Declared before `dir`: charon stops before its directory goes.
    proc: Spawned,
    dir: tempfile::TempDir,
    ns: String,
    uri: String,
    swanctl: PathBuf,
}

impl Charon {
    /// Writes the files, starts charon in `ns` (private mount namespace with
    /// its own /run), waits (bounded) until it answers on its vici socket,
    /// then `swanctl --load-all`.
    pub fn start(ns: &Netns, conf: &CharonConf) -> Result<Charon> {
        let charon = charon_path().ok_or_else(|| anyhow!("charon is not installed"))?;
        let swanctl = swanctl_path().ok_or_else(|| anyhow!("swanctl is not installed"))?;
        let dir = tempfile::Builder::new()
            .prefix("vpcgw-charon-")
            .tempdir()
            .context("creating charon's directory")?;
        let path = dir.path().to_path_buf();
        let p = path.to_string_lossy().into_owned();
        ensure!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
                && p.len() < 80,
            "temporary directory {p:?}: want a short plain path (the vici socket path is limited)"
        );
        fs::create_dir(path.join("run"))?;
        fs::create_dir(path.join("swanctl"))?;
        for sub in SWANCTL_SUBDIRS {
            fs::create_dir(path.join("swanctl").join(sub))?;
        }
        fs::write(path.join("strongswan.conf"), strongswan_conf(conf, &path)?)?;
        write_private(&path.join("swanctl/swanctl.conf"), &swanctl_conf(conf)?)?;

        let script = format!("mount --bind '{p}/run' /run && exec {}", charon.display());
        let conf_path = format!("{p}/strongswan.conf");
        let proc = ns.spawn_env(
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ],
            &[("STRONGSWAN_CONF", &conf_path)],
        )?;
        let me = Charon {
            proc,
            uri: format!("unix://{p}/charon.vici"),
            dir,
            ns: ns.name().to_string(),
            swanctl,
        };
        let socket = path.join("charon.vici");
        let mut last = String::new();
        let up = wait_for(START_LIMIT, POLL_STEP, || {
            if matches!(me.proc.try_wait(), Ok(Some(_))) {
                return Some(false);
            }
            if !socket.exists() {
                return None;
            }
            // Short limit: a charon without a free worker thread accepts the
            // connection and never answers.
            match me.swanctl_limit(&["--stats"], Duration::from_secs(2)) {
                Ok(_) => Some(true),
                Err(e) => {
                    last = format!("{e:#}");
                    None
                }
            }
        });
        match up {
            Some(true) => {}
            Some(false) => bail!("charon in {} exited at start{}", me.ns, me.diagnostics()),
            None => bail!(
                "charon in {} did not answer on its vici socket within {START_LIMIT:?} ({last}){}",
                me.ns,
                me.diagnostics()
            ),
        }
        me.load_all()
            .with_context(|| format!("loading the configuration{}", me.diagnostics()))?;
        Ok(me)
    }

    /// charon's output and the end of its log, for error messages.
    fn diagnostics(&self) -> String {
        format!(
            "\ncharon output:\n{}\ncharon log (last lines):\n{}",
            crate::agent::last_lines(&self.proc.output(), 20),
            crate::agent::last_lines(&self.log(), 30)
        )
    }

    fn load_all(&self) -> Result<String> {
        let file = self.dir.path().join("swanctl/swanctl.conf");
        let file = file.to_string_lossy();
        self.swanctl(&["--load-all", "--file", &file])
    }

    /// `swanctl ARGS --uri ...` in charon's namespace, bounded by
    /// [`SWANCTL_LIMIT`]: its stdout, or an error with its output.
    pub fn swanctl(&self, args: &[&str]) -> Result<String> {
        self.swanctl_limit(args, SWANCTL_LIMIT)
    }

    fn swanctl_limit(&self, args: &[&str], limit: Duration) -> Result<String> {
        ensure!(!args.is_empty(), "swanctl: no command");
        let conf = format!(
            "STRONGSWAN_CONF={}",
            self.dir.path().join("strongswan.conf").display()
        );
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "env", &conf])
            .arg(&self.swanctl)
            .args(args)
            .args(["--uri", &self.uri]);
        let out = run_timeout(c, limit, None)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        bail!(
            "swanctl {} in {} failed ({}): {}{}",
            args.join(" "),
            self.ns,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\nstdout:\n{}", stdout.trim_end())
            }
        )
    }

    /// `swanctl --initiate --child CHILD --timeout LIMIT`: waits until the
    /// CHILD_SA is up (its output: charon's log lines at level 1) or fails.
    pub fn initiate(&self, child: &str, limit: Duration) -> Result<String> {
        let t = secs(limit).max(1).to_string();
        self.swanctl_limit(
            &["--initiate", "--child", child, "--timeout", &t],
            limit + SWANCTL_LIMIT,
        )
    }

    /// `swanctl --terminate --ike NAME`: deletes the IKE SA (and its
    /// children), waiting up to 10 s for the peer's answer. An error if
    /// there is no such IKE SA.
    pub fn terminate_ike(&self, name: &str) -> Result<()> {
        self.swanctl(&["--terminate", "--ike", name, "--timeout", "10"])
            .map(|_| ())
    }

    /// Rewrites swanctl.conf from `conf` and `swanctl --load-all` (new SAs
    /// use it; established ones keep theirs). The strongswan.conf settings
    /// (plugins, retransmissions) stay those of [`Charon::start`].
    pub fn reload(&self, conf: &CharonConf) -> Result<()> {
        write_private(
            &self.dir.path().join("swanctl/swanctl.conf"),
            &swanctl_conf(conf)?,
        )?;
        self.load_all().map(|_| ())
    }

    /// `swanctl --list-sas`, parsed.
    pub fn list_sas(&self) -> Result<Vec<IkeSaInfo>> {
        let text = self.swanctl(&["--list-sas", "--pretty"])?;
        parse_list_sas(&text)
    }

    /// Polls [`Charon::list_sas`] until `pred` holds (returns that listing)
    /// or `limit` passes (an error with the last listing).
    pub fn wait_sas(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&[IkeSaInfo]) -> bool,
    ) -> Result<Vec<IkeSaInfo>> {
        let mut last: Result<Vec<IkeSaInfo>> = Ok(Vec::new());
        let got = wait_for(limit, POLL_STEP, || match self.list_sas() {
            Ok(sas) if pred(&sas) => Some(sas),
            other => {
                last = other;
                None
            }
        });
        match (got, last) {
            (Some(sas), _) => Ok(sas),
            (None, Ok(sas)) => bail!(
                "in {}: the SAs did not reach the expected state within {limit:?}; last seen:\n{}",
                self.ns,
                summary(&sas)
            ),
            (None, Err(e)) => Err(e.context(format!("in {}: listing SAs", self.ns))),
        }
    }

    /// charon's log file (levels: ike 2, others 1).
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("charon.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL: charon vanishes without a word to its peer (for DPD tests).
    pub fn kill(&mut self) {
        if let Err(e) = self.proc.stop(libc::SIGKILL, Duration::from_secs(2)) {
            eprintln!("charon in {}: kill: {e:#}", self.ns);
        }
    }

    /// charon's pid.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its private directory (config, log, vici socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The vici URI, for `swanctl --uri`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The namespace charon runs in.
    pub fn netns(&self) -> &str {
        &self.ns
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        if let Err(e) = self.proc.stop(libc::SIGTERM, Duration::from_secs(2)) {
            eprintln!("charon in {}: stopping: {e:#}", self.ns);
        }
        // `dir` is removed after this, when the fields drop.
    }
}

/// Times one establishment: from starting `swanctl --initiate` of `child`
/// on `initiator` until it returns, which it does once the CHILD_SA is
/// installed (includes swanctl's own start, about 10 ms here); then checks
/// (untimed) that the CHILD_SA is listed INSTALLED. The caller makes sure
/// no SA is up before.
pub fn time_to_child(initiator: &Charon, child: &str, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    initiator.initiate(child, limit)?;
    let took = start.elapsed();
    initiator.wait_sas(
        limit.saturating_sub(took).max(Duration::from_secs(1)),
        |sas| {
            sas.iter()
                .flat_map(|s| &s.children)
                .any(|c| c.name == child && c.state == "INSTALLED")
        },
    )?;
    Ok(took)
}

/// [`time_to_child`] `runs` times, terminating the IKE SA `ike` (and waiting
/// until neither side lists an SA) before each run; returns the median and
/// every run.
pub fn median_time_to_child(
    initiator: &Charon,
    responder: &Charon,
    ike: &str,
    child: &str,
    runs: usize,
    limit: Duration,
) -> Result<(Duration, Vec<Duration>)> {
    ensure!(runs > 0 && runs <= 100, "runs {runs}: 1 to 100");
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        for c in [initiator, responder] {
            if !c.list_sas()?.is_empty() {
                let _ = c.terminate_ike(ike);
            }
            c.wait_sas(limit, |sas| sas.is_empty())
                .with_context(|| format!("run {run}: SAs left before initiating"))?;
        }
        times.push(time_to_child(initiator, child, limit).with_context(|| format!("run {run}"))?);
    }
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted.get(runs / 2).copied().unwrap_or_default();
    Ok((median, times))
}

/// One IKE SA as `swanctl --list-sas` shows it. Fields charon leaves out
/// (e.g. algorithms of an SA still CONNECTING) are empty, 0 or `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IkeSaInfo {
    pub name: String,
    pub uniqueid: u32,
    /// CREATED, CONNECTING, ESTABLISHED, PASSIVE, REKEYING, REKEYED, DELETING, DESTROYING.
    pub state: String,
    pub initiator: bool,
    /// 16 hex digits, as swanctl prints them.
    pub spi_i: String,
    pub spi_r: String,
    pub local_id: String,
    pub remote_id: String,
    /// e.g. AES_GCM_16, AES_CBC.
    pub encr: String,
    pub encr_keysize: Option<u32>,
    /// e.g. HMAC_SHA2_256_128 (none with AEAD).
    pub integ: Option<String>,
    /// e.g. PRF_HMAC_SHA2_256.
    pub prf: String,
    /// e.g. MODP_2048, ECP_384, CURVE_25519.
    pub dh: String,
    pub local_host: String,
    pub remote_host: String,
    pub local_port: u16,
    pub remote_port: u16,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub established_secs: Option<u64>,
    /// Seconds to the rekey (0 if overdue).
    pub rekey_secs: Option<u64>,
    pub children: Vec<ChildSaInfo>,
}

/// One CHILD_SA of an [`IkeSaInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildSaInfo {
    pub name: String,
    pub uniqueid: u32,
    pub reqid: u32,
    /// INSTALLED, REKEYING, REKEYED, DELETING, ...
    pub state: String,
    pub mode: String,
    pub protocol: String,
    pub encap: bool,
    /// 8 hex digits.
    pub spi_in: String,
    pub spi_out: String,
    pub encr: String,
    pub encr_keysize: Option<u32>,
    pub integ: Option<String>,
    /// The PFS group, if any.
    pub dh: Option<String>,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// Seconds to the rekey (0 if overdue); `None` once rekeyed.
    pub rekey_secs: Option<u64>,
    /// Seconds to the hard expiry (0 if overdue).
    pub life_secs: Option<u64>,
}

/// One line per SA, for messages.
pub fn summary(sas: &[IkeSaInfo]) -> String {
    if sas.is_empty() {
        return "  (no SAs)\n".to_string();
    }
    let mut s = String::new();
    for a in sas {
        s += &format!(
            "  IKE {}[{}] {} {} spi {}_i {}_r {}/{}/{} {}:{} -> {}:{}\n",
            a.name,
            a.uniqueid,
            a.state,
            if a.initiator {
                "initiator"
            } else {
                "responder"
            },
            a.spi_i,
            a.spi_r,
            a.encr,
            a.prf,
            a.dh,
            a.local_host,
            a.local_port,
            a.remote_host,
            a.remote_port
        );
        for c in &a.children {
            s += &format!(
                "    CHILD {}{{{}}} {} spi {}_i {}_o {} pkts in {} out {} {:?} === {:?}\n",
                c.name,
                c.uniqueid,
                c.state,
                c.spi_in,
                c.spi_out,
                c.encr,
                c.packets_in,
                c.packets_out,
                c.local_ts,
                c.remote_ts
            );
        }
    }
    s
}

/// A parsed vici message element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vici {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Vici)>),
}

/// A message as `swanctl --pretty` prints it: its label ("list-sa event")
/// and its body.
pub type ViciMessage = (String, Vec<(String, Vici)>);

enum Frame {
    Section(String, Vec<(String, Vici)>),
    List(String, Vec<String>),
}

/// Is `k` a vici key (no spaces, printable)?
fn is_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_graphic())
}

/// Parses the output of `swanctl ... --pretty`: messages `LABEL {`, then
/// per element one line indented by 2 per level: `key = value`,
/// `name {` ... `}`, `key = [` items `]`. The indentation tells items and
/// closers apart, so values may hold anything printable. Bounded in size
/// and depth; errors name the line.
pub fn parse_pretty(text: &str) -> Result<Vec<ViciMessage>> {
    ensure!(
        text.len() <= MAX_LIST_OUTPUT,
        "swanctl output too long ({} bytes)",
        text.len()
    );
    let mut messages = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        let rest = line.trim_start_matches(' ');
        let indent = line.len() - rest.len();
        let depth = stack.len();
        let want = 2 * depth;
        let bad = |why: &str| anyhow!("swanctl output, line {no}: {why}: {line:?}");
        match stack.last_mut() {
            None => {
                if rest.is_empty() {
                    continue;
                }
                match rest.strip_suffix(" {") {
                    Some(label) if indent == 0 && !label.is_empty() => {
                        stack.push(Frame::Section(label.to_string(), Vec::new()));
                    }
                    _ => return Err(bad("expected a message label (`name {`)")),
                }
            }
            Some(Frame::List(_, items)) => {
                if indent + 2 == want && rest == "]" {
                    let Some(Frame::List(name, items)) = stack.pop() else {
                        return Err(bad("parser state"));
                    };
                    match stack.last_mut() {
                        Some(Frame::Section(_, kids)) => kids.push((name, Vici::List(items))),
                        _ => return Err(bad("a list outside a section")),
                    }
                } else if indent == want {
                    items.push(rest.to_string());
                } else {
                    return Err(bad("unexpected indentation in a list"));
                }
            }
            Some(Frame::Section(_, kids)) => {
                if indent + 2 == want && rest == "}" {
                    let Some(Frame::Section(name, body)) = stack.pop() else {
                        return Err(bad("parser state"));
                    };
                    match stack.last_mut() {
                        Some(Frame::Section(_, kids)) => kids.push((name, Vici::Section(body))),
                        Some(Frame::List(..)) => return Err(bad("a section inside a list")),
                        None => messages.push((name, body)),
                    }
                    continue;
                }
                if indent != want {
                    return Err(bad("unexpected indentation"));
                }
                let kv = rest
                    .split_once(" = ")
                    .or_else(|| rest.strip_suffix(" =").map(|k| (k, "")))
                    .filter(|(k, _)| is_key(k));
                if let Some((k, v)) = kv {
                    if v == "[" {
                        if depth >= MAX_DEPTH {
                            return Err(bad("nested too deep"));
                        }
                        stack.push(Frame::List(k.to_string(), Vec::new()));
                    } else {
                        kids.push((k.to_string(), Vici::Value(v.to_string())));
                    }
                } else if let Some(name) = rest.strip_suffix(" {").filter(|n| is_key(n)) {
                    if depth >= MAX_DEPTH {
                        return Err(bad("nested too deep"));
                    }
                    stack.push(Frame::Section(name.to_string(), Vec::new()));
                } else {
                    return Err(bad("expected `key = value`, `key = [` or `name {`"));
                }
            }
        }
    }
    if let Some(Frame::Section(name, _) | Frame::List(name, _)) = stack.last() {
        bail!("swanctl output ends inside {name:?} (truncated?)");
    }
    Ok(messages)
}

/// Field access on a parsed section, with errors naming the field.
struct Fields<'a> {
    what: String,
    items: &'a [(String, Vici)],
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Vici> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Vici::Value(v)) => Ok(Some(v)),
            Some(_) => bail!("{}: {key} is not a value", self.what),
        }
    }

    fn string(&self, key: &str) -> Result<String> {
        Ok(self.str(key)?.unwrap_or_default().to_string())
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.str(key)?.map(str::to_string))
    }

    fn required(&self, key: &str) -> Result<&'a str> {
        self.str(key)?
            .ok_or_else(|| anyhow!("{}: no {key}", self.what))
    }

    fn num<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.str(key)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("{}: {key} = {v:?} is not a number", self.what)),
        }
    }

    /// Seconds until an event; swanctl prints a negative count when the
    /// event is overdue (a rekey waiting for another exchange): 0 then.
    fn secs(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.num::<i64>(key)?.map(|n| u64::try_from(n).unwrap_or(0)))
    }

    fn flag(&self, key: &str) -> Result<bool> {
        match self.str(key)? {
            None | Some("no") => Ok(false),
            Some("yes") => Ok(true),
            Some(v) => bail!("{}: {key} = {v:?}, want yes or no", self.what),
        }
    }

    fn list(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Vici::List(v)) => Ok(v.clone()),
            Some(_) => bail!("{}: {key} is not a list", self.what),
        }
    }
}

fn child_from(name: &str, items: &[(String, Vici)]) -> Result<ChildSaInfo> {
    let f = Fields {
        what: format!("CHILD_SA section {name}"),
        items,
    };
    Ok(ChildSaInfo {
        name: f.str("name")?.unwrap_or(name).to_string(),
        uniqueid: f
            .required("uniqueid")?
            .parse()
            .map_err(|_| anyhow!("CHILD_SA section {name}: uniqueid is not a number"))?,
        reqid: f.num("reqid")?.unwrap_or(0),
        state: f.required("state")?.to_string(),
        mode: f.string("mode")?,
        protocol: f.string("protocol")?,
        encap: f.flag("encap")?,
        spi_in: f.string("spi-in")?,
        spi_out: f.string("spi-out")?,
        encr: f.string("encr-alg")?,
        encr_keysize: f.num("encr-keysize")?,
        integ: f.opt_string("integ-alg")?,
        dh: f.opt_string("dh-group")?,
        bytes_in: f.num("bytes-in")?.unwrap_or(0),
        packets_in: f.num("packets-in")?.unwrap_or(0),
        bytes_out: f.num("bytes-out")?.unwrap_or(0),
        packets_out: f.num("packets-out")?.unwrap_or(0),
        local_ts: f.list("local-ts")?,
        remote_ts: f.list("remote-ts")?,
        rekey_secs: f.secs("rekey-time")?,
        life_secs: f.secs("life-time")?,
    })
}

fn ike_from(name: &str, items: &[(String, Vici)]) -> Result<IkeSaInfo> {
    let f = Fields {
        what: format!("IKE_SA section {name}"),
        items,
    };
    let mut children = Vec::new();
    match f.get("child-sas") {
        None => {}
        Some(Vici::Section(kids)) => {
            for (cname, v) in kids {
                match v {
                    Vici::Section(c) => children.push(child_from(cname, c)?),
                    _ => bail!("IKE_SA section {name}: child-sas.{cname} is not a section"),
                }
            }
        }
        Some(_) => bail!("IKE_SA section {name}: child-sas is not a section"),
    }
    Ok(IkeSaInfo {
        name: name.to_string(),
        uniqueid: f
            .required("uniqueid")?
            .parse()
            .map_err(|_| anyhow!("IKE_SA section {name}: uniqueid is not a number"))?,
        state: f.required("state")?.to_string(),
        initiator: f.flag("initiator")?,
        spi_i: f.string("initiator-spi")?,
        spi_r: f.string("responder-spi")?,
        local_id: f.string("local-id")?,
        remote_id: f.string("remote-id")?,
        encr: f.string("encr-alg")?,
        encr_keysize: f.num("encr-keysize")?,
        integ: f.opt_string("integ-alg")?,
        prf: f.string("prf-alg")?,
        dh: f.string("dh-group")?,
        local_host: f.string("local-host")?,
        remote_host: f.string("remote-host")?,
        local_port: f.num("local-port")?.unwrap_or(0),
        remote_port: f.num("remote-port")?.unwrap_or(0),
        nat_local: f.flag("nat-local")?,
        nat_remote: f.flag("nat-remote")?,
        established_secs: f.secs("established")?,
        rekey_secs: f.secs("rekey-time")?,
        children,
    })
}

/// Parses `swanctl --list-sas --pretty`: one IKE SA per `list-sa event`
/// message, then a `list-sas reply`.
pub fn parse_list_sas(text: &str) -> Result<Vec<IkeSaInfo>> {
    let mut sas = Vec::new();
    for (label, body) in parse_pretty(text)? {
        match label.as_str() {
            "list-sa event" => {
                for (name, v) in &body {
                    match v {
                        Vici::Section(items) => sas.push(ike_from(name, items)?),
                        _ => bail!("list-sa event: {name} is not a section"),
                    }
                }
            }
            "list-sas reply" => {}
            other => bail!("swanctl --list-sas: unexpected message {other:?}"),
        }
    }
    Ok(sas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_hides_psk_and_quotes() {
        let mut c = CharonConf::new(
            "dc1",
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            "s3cret-psk",
        );
        c.local_ts = vec!["192.168.1.0/24".into(), "192.168.2.0/24".into()];
        c.remote_ts = vec!["192.168.3.0/24".into()];
        c.dpd_delay = Some(Duration::from_millis(1500));
        assert!(!format!("{c:?}").contains("s3cret"));
        let text = swanctl_conf(&c).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("secret = 0x73336372"), "{text}");
        assert!(text.contains("local_ts = 192.168.1.0/24,192.168.2.0/24"));
        assert!(text.contains("dpd_delay = 2s"));
        assert!(text.contains("id = \"198.51.100.1\""));
        let m = c.mirror();
        assert_eq!(m.local_ts, c.remote_ts);
        assert_eq!(m.local_id, "198.51.100.2");
        c.local_id = "a\"b".into();
        assert!(swanctl_conf(&c).is_err());
        c.local_id = "x".into();
        c.esp_proposals = "aes128 gcm".into();
        assert!(swanctl_conf(&c).is_err());
        assert_eq!(
            c.plugins().first().map(String::as_str),
            Some("openssl"),
            "openssl first"
        );
        let plugins = c.plugins();
        let pos = |p: &str| plugins.iter().position(|q| q == p);
        assert!(pos("kernel-libipsec") < pos("kernel-netlink"));
    }

    /// Captured from charon 5.9.8 (`swanctl --list-sas --pretty`): the
    /// initiator right after `--initiate`.
    const CAPTURED_FIRST: &str = "list-sa event {
  c1 {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.1
    local-port = 4500
    local-id = 198.51.100.1
    remote-host = 198.51.100.2
    remote-port = 4500
    remote-id = 198.51.100.2
    initiator = yes
    initiator-spi = 359bf3a7a6dd08f5
    responder-spi = 772990140c08587b
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_GCM_16
    encr-keysize = 128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = MODP_2048
    established = 0
    rekey-time = 14039
    child-sas {
      c1-1 {
        name = c1
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = b40efbc7
        spi-out = dbeaa2c5
        encr-alg = AES_GCM_16
        encr-keysize = 128
        bytes-in = 0
        packets-in = 0
        bytes-out = 0
        packets-out = 0
        rekey-time = 3571
        life-time = 3960
        install-time = 0
        local-ts = [
          192.168.1.0/24
        ]
        remote-ts = [
          192.168.3.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
";

    /// Captured from charon 5.9.8 during the rekey test (child rekey_time
    /// 5 s): a CHILD_SA rekey under way, old SAs DELETED/DELETING (kept
    /// `delete_rekeyed_delay`, 5 s), a negative (overdue) rekey-time, task lists.
    const CAPTURED_REKEYING: &str = "list-sa event {
  dc1 {
    uniqueid = 2
    version = 2
    state = ESTABLISHED
    local-host = 198.51.100.1
    local-port = 4500
    local-id = 198.51.100.1
    remote-host = 198.51.100.2
    remote-port = 4500
    remote-id = 198.51.100.2
    initiator = yes
    initiator-spi = 2cfffcb3e1b46f95
    responder-spi = 320ebb29eb9aa349
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_GCM_16
    encr-keysize = 128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = MODP_2048
    established = 0
    rekey-time = 8
    tasks-queued = [
      CHILD_REKEY
    ]
    tasks-active = [
      CHILD_REKEY
    ]
    child-sas {
      dc1-3 {
        name = dc1
        uniqueid = 3
        reqid = 1
        state = DELETED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = d5d8dbc3
        spi-out = 1ea43824
        encr-alg = AES_GCM_16
        encr-keysize = 128
        dh-group = MODP_2048
        bytes-in = 0
        packets-in = 0
        bytes-out = 0
        packets-out = 0
        rekey-time = -4
        life-time = 2
        install-time = 6
        local-ts = [
          192.168.1.0/24
          192.168.2.0/24
        ]
        remote-ts = [
          192.168.3.0/24
          192.168.4.0/24
        ]
      }
      dc1-4 {
        name = dc1
        uniqueid = 4
        reqid = 1
        state = DELETING
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = 417dd24a
        spi-out = a2367da1
        encr-alg = AES_GCM_16
        encr-keysize = 128
        dh-group = MODP_2048
        bytes-in = 0
        packets-in = 0
        bytes-out = 0
        packets-out = 0
        rekey-time = 0
        life-time = 4
        install-time = 4
        local-ts = [
          192.168.1.0/24
          192.168.2.0/24
        ]
        remote-ts = [
          192.168.3.0/24
          192.168.4.0/24
        ]
      }
      dc1-5 {
        name = dc1
        uniqueid = 5
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = 8bd71630
        spi-out = 2bc6da43
        encr-alg = AES_GCM_16
        encr-keysize = 128
        dh-group = MODP_2048
        bytes-in = 0
        packets-in = 0
        bytes-out = 0
        packets-out = 0
        rekey-time = 2
        life-time = 8
        install-time = 0
        local-ts = [
          192.168.1.0/24
          192.168.2.0/24
        ]
        remote-ts = [
          192.168.3.0/24
          192.168.4.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
";

    /// Not captured: a half-open IKE SA, and an identity holding the
    /// characters the format uses (` = `, `{`, `[`).
    const SYNTHETIC: &str = "list-sa event {
  other {
    uniqueid = 9
    version = 2
    state = CONNECTING
    local-host = 198.51.100.1
    local-port = 500
    local-id = C=CH, O=x {y} = [z]
    remote-host = 198.51.100.9
    remote-port = 500
    remote-id = %any
    initiator = yes
    initiator-spi = 0102030405060708
    responder-spi = 0000000000000000
    empty = 
    child-sas {
    }
    tasks-active = [
      IKE_VENDOR
\x20     
      ]
    ]
  }
}
list-sas reply {
}
";

    #[test]
    fn parses_captured_list_sas() {
        let sas = parse_list_sas(CAPTURED_FIRST).unwrap();
        assert_eq!(sas.len(), 1);
        let a = &sas[0];
        assert_eq!(
            (a.name.as_str(), a.uniqueid, a.state.as_str(), a.initiator),
            ("c1", 1, "ESTABLISHED", true)
        );
        assert_eq!(a.spi_i, "359bf3a7a6dd08f5");
        assert_eq!(a.spi_r, "772990140c08587b");
        assert_eq!(
            (a.local_id.as_str(), a.remote_id.as_str()),
            ("198.51.100.1", "198.51.100.2")
        );
        assert_eq!(
            (a.encr.as_str(), a.encr_keysize, a.integ.as_deref()),
            ("AES_GCM_16", Some(128), None)
        );
        assert_eq!(
            (a.prf.as_str(), a.dh.as_str()),
            ("PRF_HMAC_SHA2_256", "MODP_2048")
        );
        assert_eq!(
            (a.local_host.as_str(), a.remote_host.as_str()),
            ("198.51.100.1", "198.51.100.2")
        );
        assert_eq!((a.local_port, a.remote_port), (4500, 4500));
        assert!(a.nat_remote && !a.nat_local);
        assert_eq!((a.established_secs, a.rekey_secs), (Some(0), Some(14039)));
        assert_eq!(a.children.len(), 1);
        let c = &a.children[0];
        assert_eq!((c.name.as_str(), c.uniqueid, c.reqid), ("c1", 1, 1));
        assert_eq!(
            (c.state.as_str(), c.mode.as_str(), c.protocol.as_str()),
            ("INSTALLED", "TUNNEL", "ESP")
        );
        assert!(c.encap);
        assert_eq!(
            (c.spi_in.as_str(), c.spi_out.as_str()),
            ("b40efbc7", "dbeaa2c5")
        );
        assert_eq!((c.integ.as_deref(), c.dh.as_deref()), (None, None));
        assert_eq!(
            (c.bytes_in, c.packets_in, c.bytes_out, c.packets_out),
            (0, 0, 0, 0)
        );
        assert_eq!(c.local_ts, ["192.168.1.0/24"]);
        assert_eq!(c.remote_ts, ["192.168.3.0/24"]);
        assert_eq!((c.rekey_secs, c.life_secs), (Some(3571), Some(3960)));

        let sas = parse_list_sas(CAPTURED_REKEYING).unwrap();
        assert_eq!(sas.len(), 1);
        let a = &sas[0];
        assert_eq!(
            (a.uniqueid, a.state.as_str(), a.rekey_secs),
            (2, "ESTABLISHED", Some(8))
        );
        let states: Vec<(&str, &str, Option<u64>, Option<&str>)> = a
            .children
            .iter()
            .map(|c| {
                (
                    c.state.as_str(),
                    c.spi_in.as_str(),
                    c.rekey_secs,
                    c.dh.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("DELETED", "d5d8dbc3", Some(0), Some("MODP_2048")),
                ("DELETING", "417dd24a", Some(0), Some("MODP_2048")),
                ("INSTALLED", "8bd71630", Some(2), Some("MODP_2048")),
            ]
        );
        assert_eq!(a.children[2].local_ts, ["192.168.1.0/24", "192.168.2.0/24"]);
        assert_eq!(
            a.children[2].remote_ts,
            ["192.168.3.0/24", "192.168.4.0/24"]
        );

        let sas = parse_list_sas(SYNTHETIC).unwrap();
        let b = &sas[0];
        assert_eq!(
            (b.state.as_str(), b.encr.as_str(), b.encr_keysize),
            ("CONNECTING", "", None)
        );
        assert_eq!(b.local_id, "C=CH, O=x {y} = [z]");
        assert_eq!(
            (b.spi_r.as_str(), b.established_secs),
            ("0000000000000000", None)
        );
        assert!(b.children.is_empty());
        let raw = parse_pretty(SYNTHETIC).unwrap();
        let body = &raw[0].1[0].1;
        let Vici::Section(items) = body else {
            panic!("{body:?}")
        };
        assert!(items.contains(&("empty".to_string(), Vici::Value(String::new()))));
        assert!(items.contains(&(
            "tasks-active".to_string(),
            Vici::List(vec!["IKE_VENDOR".into(), "".into(), "]".into()])
        )));
        assert_eq!(parse_list_sas("list-sas reply {\n}\n").unwrap(), vec![]);
        assert_eq!(parse_list_sas("").unwrap(), vec![]);
    }

    #[test]
    fn parser_rejects_bad_input_without_panicking() {
        for (text, want) in [
            ("garbage\n", "message label"),
            ("list-sa event {\n  dc1 {\n    uniqueid = 1\n", "truncated"),
            (
                "list-sa event {\n  dc1 {\n   uniqueid = 1\n  }\n}\n",
                "indentation",
            ),
            (
                "list-sa event {\n  dc1 {\n    state = X\n  }\n}\n",
                "uniqueid",
            ),
            (
                "list-sa event {\n  dc1 {\n    uniqueid = one\n    state = X\n  }\n}\n",
                "not a number",
            ),
            (
                "list-sa event {\n  dc1 {\n    uniqueid = 1\n    state = X\n    initiator = maybe\n  }\n}\n",
                "yes or no",
            ),
            ("list-sa event {\n  dc1 = x\n}\n", "not a section"),
            (
                "list-sa event {\n  dc1 {\n    just words\n  }\n}\n",
                "expected",
            ),
            ("other {\n}\n", "unexpected message"),
            (
                "list-sa event {\n  x = [\n  }\n}\n",
                "indentation in a list",
            ),
        ] {
            let err = format!("{:#}", parse_list_sas(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // Deep nesting is refused, not recursed into.
        let mut deep = String::from("list-sa event {\n");
        for i in 1..40 {
            deep += &format!("{:w$}s{i} {{\n", "", w = 2 * i);
        }
        assert!(format!("{:#}", parse_pretty(&deep).unwrap_err()).contains("deep"));
        // Arbitrary bytes never panic.
        let mut x: u32 = 1;
        for _ in 0..2000 {
            let s: String = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [' ', ' ', '{', '}', '[', ']', '=', '\n', 'a', '1'][(x % 10) as usize]
                })
                .collect();
            let _ = parse_list_sas(&s);
        }
    }
}
