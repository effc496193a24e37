//! The agent under test: `vpcgw run` in a namespace (usually the bed's `gw`),
//! readiness, `vpcgw stats --json`, SIGHUP reloads, and stopping it; plus
//! [`ConfigDir`], a private copy of an example configuration (its own control
//! socket and PSK file in a temporary directory) that tests can edit.
//!
//! Used by the demo and the end-to-end tests. Every wait is bounded; the
//! agent is stopped when its [`Agent`] is dropped (the [`Spawned`] guard).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use vpcgw::stats::{ConnStat, Snapshot};
use vpcgw_common::stats::Reason;

use crate::bed;
use crate::netns::{Netns, Spawned, wait_for};

/// How long the agent may take to load, attach and serve its socket.
pub const READY_LIMIT: Duration = Duration::from_secs(30);
/// Limit for one `vpcgw` CLI command (check, stats, explain).
pub const CLI_LIMIT: Duration = Duration::from_secs(20);

/// Runs `vpcgw ARGS` in `ns` (bounded by [`CLI_LIMIT`]): whether it exited
/// 0, and its stdout then stderr.
pub fn vpcgw(ns: &Netns, bin: &Path, args: &[&str]) -> Result<(bool, String)> {
    let bin_s = bin.to_string_lossy();
    let mut all = vec![bin_s.as_ref()];
    all.extend_from_slice(args);
    let out = ns.run(&all, CLI_LIMIT)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Removes terminal color sequences (ESC [ ... letter).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}

/// What [`Agent::wait_ready`] found.
#[derive(Debug)]
pub enum Readiness {
    /// Ready; how it was seen (a log line, or `vpcgw stats` answering).
    Ready(String),
    /// The agent exited before it was ready.
    Exited(ExitStatus),
    /// Not ready within the limit.
    TimedOut,
    /// The caller's `cancel` said stop.
    Cancelled,
}

/// `vpcgw run --config F` running in a namespace.
pub struct Agent<'a> {
    ns: &'a Netns,
    bin: PathBuf,
    config: PathBuf,
    /// The control socket, when the configuration could be read at start.
    socket: Option<PathBuf>,
    process: Spawned,
}

impl<'a> Agent<'a> {
    /// Starts `BIN run --config CONFIG` in `ns` (without colors in its log).
    /// Does not wait: see [`Agent::wait_ready`] / [`Agent::ready`].
    pub fn start(ns: &'a Netns, bin: &Path, config: &Path) -> Result<Agent<'a>> {
        Self::start_with(ns, bin, config, &[])
    }

    /// [`Agent::start`] with more arguments for `run` (e.g. `--log-level debug`).
    pub fn start_with(
        ns: &'a Netns,
        bin: &Path,
        config: &Path,
        extra: &[&str],
    ) -> Result<Agent<'a>> {
        let socket = vpcgw::config::load(config)
            .ok()
            .map(|c| c.config.gateway.control_socket);
        let bin_s = bin.to_string_lossy();
        let config_s = config.to_string_lossy();
        let mut args: Vec<&str> = vec![&bin_s, "run", "--config", &config_s];
        args.extend_from_slice(extra);
        let process = ns.spawn_env(&args, &[("NO_COLOR", "1")])?;
        Ok(Agent {
            ns,
            bin: bin.to_path_buf(),
            config: config.to_path_buf(),
            socket,
            process,
        })
    }

    /// The agent's process (signals, exit status, raw output).
    pub fn process(&self) -> &Spawned {
        &self.process
    }

    /// Its control socket (from the configuration it started with).
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Its log so far (stdout and stderr), colors removed.
    pub fn log(&self) -> String {
        strip_ansi(&self.process.output())
    }

    /// Waits until the agent is ready: it logs "vpcgw running", or it logged
    /// "attached" for every interface of the test bed's gateway, or
    /// `vpcgw stats` answers (tried once a second). `cancel` is asked every
    /// round (200 ms).
    pub fn wait_ready(&self, limit: Duration, cancel: impl Fn() -> bool) -> Readiness {
        let mut round = 0u32;
        let ready = wait_for(limit, Duration::from_millis(200), || {
            round += 1;
            if cancel() {
                return Some(Readiness::Cancelled);
            }
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("vpcgw running")) {
                return Some(Readiness::Ready(format!("log: {}", line.trim())));
            }
            let attached: Vec<&str> = log.lines().filter(|l| l.contains("attached")).collect();
            let all = [bed::GW_WAN, bed::GW_LAN0, bed::GW_LAN1]
                .iter()
                .all(|i| attached.iter().any(|l| l.contains(i)));
            if all {
                return Some(Readiness::Ready(format!(
                    "log: {}",
                    attached.last().map(|l| l.trim()).unwrap_or_default()
                )));
            }
            if let Ok(Some(st)) = self.process.try_wait() {
                return Some(Readiness::Exited(st));
            }
            if round.is_multiple_of(5)
                && matches!(self.cli(&self.control_args("stats", false)), Ok((true, _)))
            {
                return Some(Readiness::Ready("vpcgw stats answers".to_string()));
            }
            None
        });
        ready.unwrap_or(Readiness::TimedOut)
    }

    /// [`Agent::wait_ready`] within [`READY_LIMIT`], as a `Result` whose
    /// error carries the end of the agent's log.
    pub fn ready(&self) -> Result<String> {
        match self.wait_ready(READY_LIMIT, || false) {
            Readiness::Ready(how) => Ok(how),
            Readiness::Exited(st) => bail!(
                "the agent exited ({st}) before it was ready; its log:\n{}",
                last_lines(&self.log(), 40)
            ),
            Readiness::TimedOut | Readiness::Cancelled => bail!(
                "the agent was not ready within {READY_LIMIT:?}; its log:\n{}",
                last_lines(&self.log(), 40)
            ),
        }
    }

    /// Runs `vpcgw ARGS` (the same binary) in the agent's namespace.
    pub fn cli(&self, args: &[&str]) -> Result<(bool, String)> {
        vpcgw(self.ns, &self.bin, args)
    }

    /// `CMD [--json]` pointed at the agent: `--socket S` when the socket is
    /// known (works while the file on disk is broken), else `--config F`.
    fn control_args<'s>(&'s self, cmd: &'s str, json: bool) -> Vec<&'s str> {
        let mut args = vec![cmd];
        match &self.socket {
            Some(s) => args.extend(["--socket", s.to_str().unwrap_or_default()]),
            None => args.extend(["--config", self.config.to_str().unwrap_or_default()]),
        }
        if json {
            args.push("--json");
        }
        args
    }

    /// `vpcgw status --json`, parsed: each VPN connection's IKE state.
    pub fn status(&self) -> Result<vpcgw::run::StatusReport> {
        let (ok, text) = self.cli(&self.control_args("status", true))?;
        if !ok {
            bail!("vpcgw status failed: {}", text.trim());
        }
        serde_json::from_str(text.trim()).with_context(|| format!("vpcgw status --json: {text}"))
    }

    /// `vpcgw stats --json`, parsed.
    pub fn stats(&self) -> Result<Snapshot> {
        let (ok, text) = self.cli(&self.control_args("stats", true))?;
        if !ok {
            bail!("vpcgw stats failed: {}", text.trim());
        }
        serde_json::from_str(text.trim())
            .with_context(|| format!("vpcgw stats --json printed {:?}", text.trim()))
    }

    /// `vpcgw stats` (the human rendering), for messages.
    pub fn stats_text(&self) -> Result<String> {
        let (ok, text) = self.cli(&self.control_args("stats", false))?;
        if !ok {
            bail!("vpcgw stats failed: {}", text.trim());
        }
        Ok(text)
    }

    /// Sends SIGHUP (reload). See [`Agent::wait_generation`].
    pub fn reload(&self) -> Result<()> {
        self.process.signal(libc::SIGHUP)
    }

    /// Waits up to `limit` until the policy generation is above `above`;
    /// returns it, or `None` if it did not change in time.
    pub fn wait_generation(&self, above: u32, limit: Duration) -> Result<Option<u32>> {
        let mut err = None;
        let g = wait_for(limit, Duration::from_millis(50), || match self.stats() {
            Ok(s) if s.generation > above => Some(s.generation),
            Ok(_) => None,
            Err(e) => {
                err = Some(e);
                None
            }
        });
        match (g, err) {
            (Some(g), _) => Ok(Some(g)),
            (None, Some(e)) if self.process.try_wait()?.is_some() => {
                Err(e.context("the agent exited"))
            }
            _ => Ok(None),
        }
    }

    /// Number of log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits up to `limit` until more than `above` log lines contain
    /// `needle`; returns the last such line.
    pub fn wait_log(&self, needle: &str, above: usize, limit: Duration) -> Option<String> {
        wait_for(limit, Duration::from_millis(50), || {
            let log = self.log();
            let hits: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
            (hits.len() > above)
                .then(|| hits.last().map(|l| l.to_string()))
                .flatten()
        })
    }

    /// Sends `sig`, waits up to `limit`, SIGKILLs it if needed; the exit
    /// status and whether it exited on its own.
    pub fn stop(&self, sig: i32, limit: Duration) -> Result<(ExitStatus, bool)> {
        self.process.stop(sig, limit)
    }
}

/// Lookups in a stats snapshot by name. They panic on a name the snapshot
/// does not have (a test asking for it has a typo or is out of date).
pub trait SnapshotExt {
    /// Packets counted under `reason`.
    fn packets(&self, reason: Reason) -> u64;
    /// Flows credited to the rule of `group` whose text (as `vpcgw stats`
    /// shows it, e.g. `ingress IPv4 tcp 80 from any`) is `rule`.
    fn rule_flows(&self, group: &str, rule: &str) -> u64;
    /// The counters of connection `name`.
    fn conn(&self, name: &str) -> ConnStat;
}

impl SnapshotExt for Snapshot {
    fn packets(&self, reason: Reason) -> u64 {
        match self.reasons.iter().find(|r| r.name == reason.name()) {
            Some(r) => r.packets,
            None => panic!("stats have no reason {}", reason.name()),
        }
    }

    fn rule_flows(&self, group: &str, rule: &str) -> u64 {
        match self
            .rules
            .iter()
            .find(|r| r.group == group && r.rule == rule)
        {
            Some(r) => r.flows,
            None => panic!(
                "stats have no rule {group:?} {rule:?}; they have:\n{}",
                self.rules
                    .iter()
                    .map(|r| format!("  {} rule {}: {}", r.group, r.index, r.rule))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    fn conn(&self, name: &str) -> ConnStat {
        match self.connections.iter().find(|c| c.name == name) {
            Some(c) => c.clone(),
            None => panic!("stats have no connection {name:?}"),
        }
    }
}

/// A configuration file of its own, in a temporary directory removed on
/// drop: an example with `control_socket` rewritten to `DIR/vpcgw.sock`
/// and each `psk_file` replaced by a key file in `DIR/psk/` (mode 0600), so
/// that agents of tests running in parallel never share anything.
pub struct ConfigDir {
    dir: tempfile::TempDir,
    path: PathBuf,
    socket: PathBuf,
}

/// A test-only pre-shared key (never used for a real tunnel).
pub const TEST_PSK: &str = "vpcgw-test-key-not-a-secret-0123456789\n";

impl ConfigDir {
    /// `examples/site-to-site.toml`, made private.
    pub fn site_to_site() -> Result<ConfigDir> {
        let example = crate::repo_root().join("examples/site-to-site.toml");
        let text = std::fs::read_to_string(&example)
            .with_context(|| format!("reading {}", example.display()))?;
        ConfigDir::new(&text)
    }

    /// `text` (a configuration), made private; see [`ConfigDir`].
    pub fn new(text: &str) -> Result<ConfigDir> {
        let dir = tempfile::Builder::new()
            .prefix("vpcgw-test-")
            .tempdir()
            .context("creating a temporary directory")?;
        let socket = dir.path().join("vpcgw.sock");
        let path = dir.path().join("vpcgw.toml");
        std::fs::create_dir(dir.path().join("psk"))?;
        let cfg = ConfigDir { dir, path, socket };
        let mut out = String::new();
        for line in text.lines() {
            let key = line.split('=').next().unwrap_or_default().trim();
            match key {
                "control_socket" => {
                    out.push_str(&format!("control_socket = {}\n", quote(&cfg.socket)?));
                }
                "psk_file" => {
                    let value = line.split('=').nth(1).unwrap_or_default();
                    let name = value
                        .split('"')
                        .nth(1)
                        .and_then(|p| Path::new(p).file_name())
                        .map(|f| f.to_string_lossy().into_owned())
                        .context("psk_file without a quoted path")?;
                    let psk = cfg.dir.path().join("psk").join(&name);
                    write_private(&psk, TEST_PSK)?;
                    out.push_str(&format!("psk_file = {}\n", quote(&psk)?));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        cfg.write(&out)?;
        Ok(cfg)
    }

    /// The configuration file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The control socket it names.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file's current text.
    pub fn text(&self) -> Result<String> {
        std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))
    }

    /// Replaces the file's contents atomically (write aside, then rename),
    /// so a reload never reads half a file.
    pub fn write(&self, text: &str) -> Result<()> {
        let tmp = self.dir.path().join(".vpcgw.toml.new");
        write_private(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming to {}", self.path.display()))
    }
}

/// A TOML basic string for a path.
fn quote(p: &Path) -> Result<String> {
    let s = p.to_str().context("non-UTF-8 temporary path")?;
    if s.contains(['"', '\\']) || s.chars().any(char::is_control) {
        bail!("temporary path {s:?} needs escaping");
    }
    Ok(format!("\"{s}\""))
}

/// Creates (or truncates) `path` with mode 0600 and writes `text`.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A configuration's text cut into its tables: each piece starts with a
/// `[...]` / `[[...]]` header line (the first piece is what precedes the
/// first header) and runs to the next header.
fn tables(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.lines() {
        if line.trim_start().starts_with('[')
            && let Some(last) = out.last()
            && !last.is_empty()
        {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

fn header(table: &str) -> &str {
    table.lines().next().unwrap_or_default().trim()
}

/// The `name = "..."` of a table, if it has one.
fn table_name(table: &str) -> Option<&str> {
    table.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"'))
    })
}

/// `text` with one more rule at the end of security group `group`'s
/// rules; `rule` is the rule's body (`direction = "ingress"` ...).
pub fn with_rule(text: &str, group: &str, rule: &str) -> Result<String> {
    let tables = tables(text);
    let mut current = None;
    let mut last = None;
    for (i, t) in tables.iter().enumerate() {
        match header(t) {
            "[[security_groups]]" => current = table_name(t),
            "[[security_groups.rules]]" => {}
            _ => current = None,
        }
        if current == Some(group) {
            last = Some(i);
        }
    }
    let Some(at) = last else {
        bail!("no security group {group:?} in the configuration");
    };
    let mut out = String::new();
    for (i, t) in tables.iter().enumerate() {
        out.push_str(t);
        if i == at {
            out.push_str("\n[[security_groups.rules]]\n");
            out.push_str(rule.trim());
            out.push_str("\n\n");
        }
    }
    Ok(out)
}

/// `text` without the one rule table that contains `needle` (e.g. its
/// description).
pub fn without_rule(text: &str, needle: &str) -> Result<String> {
    let tables = tables(text);
    let hits: Vec<usize> = tables
        .iter()
        .enumerate()
        .filter(|(_, t)| header(t) == "[[security_groups.rules]]" && t.contains(needle))
        .map(|(i, _)| i)
        .collect();
    if hits.len() != 1 {
        bail!("{} rules contain {needle:?}; expected one", hits.len());
    }
    Ok(tables
        .iter()
        .enumerate()
        .filter(|(i, _)| !hits.contains(i))
        .map(|(_, t)| t.as_str())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[gateway]
name = \"g\"
control_socket = \"/run/x.sock\"

[[security_groups]]
name = \"a\"

[[security_groups.rules]]
direction = \"egress\"
description = \"a1\"

# a comment
[[security_groups]]
name = \"b\"

[[security_groups.rules]]
direction = \"ingress\"
description = \"b1\"

[[ports]]
name = \"p\"
";

    #[test]
    fn rules_added_and_removed() -> Result<()> {
        let t = with_rule(TEXT, "a", "direction = \"ingress\"\nprotocol = \"tcp\"")?;
        let a_new = t.find("protocol = \"tcp\"").unwrap_or(usize::MAX);
        let a1 = t.find("a1").unwrap_or(usize::MAX);
        let b = t.find("name = \"b\"").unwrap_or(0);
        assert!(a1 < a_new && a_new < b, "{t}");
        let t = with_rule(TEXT, "b", "direction = \"egress\"")?;
        let ports = t.find("[[ports]]").unwrap_or(0);
        assert!(
            t.rfind("direction = \"egress\"").unwrap_or(usize::MAX) < ports,
            "{t}"
        );
        assert!(with_rule(TEXT, "c", "x = 1").is_err());

        let t = without_rule(TEXT, "b1")?;
        assert!(
            !t.contains("b1") && t.contains("name = \"b\"") && t.contains("a1"),
            "{t}"
        );
        assert!(without_rule(TEXT, "description").is_err());
        assert!(without_rule(TEXT, "zz").is_err());
        Ok(())
    }

    #[test]
    fn config_dir_is_private() -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let cfg = ConfigDir::site_to_site()?;
        let text = cfg.text()?;
        assert!(text.contains(&format!("control_socket = \"{}\"", cfg.socket().display())));
        let psk = cfg.dir().join("psk/dc1.psk");
        assert!(
            text.contains(&format!("psk_file = \"{}\"", psk.display())),
            "{text}"
        );
        assert_eq!(std::fs::metadata(&psk)?.permissions().mode() & 0o777, 0o600);
        let checked = vpcgw::config::load(cfg.path())
            .map_err(|e| anyhow::anyhow!("the private copy does not validate: {e:?}"))?;
        assert_eq!(checked.config.gateway.control_socket, cfg.socket());
        let dir = cfg.dir().to_path_buf();
        drop(cfg);
        assert!(!dir.exists());
        Ok(())
    }
}
