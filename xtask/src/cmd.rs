//! Running commands: every command is echoed before it runs, so the output
//! of `cargo xtask ...` shows exactly what was done.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A `Command` that runs in the repository root.
pub fn cmd(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(repo_root());
    c
}

/// `cargo` (the one that runs xtask, when cargo tells us which it is).
pub fn cargo(args: &[&str]) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    cmd(program, args)
}

/// The command line as a shell would show it, with the variables it sets.
pub fn describe(c: &Command) -> String {
    let mut s = String::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), quote(v));
        }
    }
    let program = Path::new(c.get_program());
    // Show `cargo` rather than the full path of the cargo binary.
    let shown = match program.file_name() {
        Some(name) if name == "cargo" => name.to_os_string(),
        _ => program.as_os_str().to_os_string(),
    };
    s.push_str(&quote(&shown));
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn echo(c: &Command) {
    eprintln!("+ {}", describe(c));
}

/// Runs `c` (output goes to the terminal); fails unless it exits 0.
pub fn run(mut c: Command) -> Result<()> {
    echo(&c);
    let status = c
        .status()
        .with_context(|| format!("cannot start {}", describe(&c)))?;
    check(&c, status)
}

/// Runs `c` and returns its exit status, whatever it is.
pub fn run_status(mut c: Command) -> Result<ExitStatus> {
    echo(&c);
    c.status()
        .with_context(|| format!("cannot start {}", describe(&c)))
}

fn check(c: &Command, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("command failed ({status}): {}", describe(c))
    }
}

/// Runs `c` quietly (not echoed: used for checks) and returns its output.
/// An error only if it cannot start.
pub fn probe(mut c: Command) -> Result<Output> {
    c.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", describe(&c)))
}

/// Totals read from `cargo test` output ("test result: ok. 3 passed; ...").
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestCounts {
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result:") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test`-like `c`, passing its output through while counting
/// the tests its "test result:" lines report.
pub fn run_counting_tests(mut c: Command) -> Result<(ExitStatus, TestCounts)> {
    echo(&c);
    c.stdout(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start {}", describe(&c)))?;
    let mut counts = TestCounts::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            counts.add_line(&line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((status, counts))
}

/// Runs `c`, passing its stderr through line by line and showing each line
/// to `watch`; returns its exit status, whatever it is.
pub fn run_watching_stderr(mut c: Command, mut watch: impl FnMut(&str)) -> Result<ExitStatus> {
    echo(&c);
    c.stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start {}", describe(&c)))?;
    if let Some(err) = child.stderr.take() {
        let mut err = BufReader::new(err);
        let mut buf = Vec::new();
        // Bytes, not `lines()`: a line that is not UTF-8 must not stop us.
        while matches!(err.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            eprintln!("{line}");
            watch(line);
            buf.clear();
        }
    }
    child
        .wait()
        .with_context(|| format!("waiting for {}", describe(&c)))
}

/// The number of executions in libFuzzer's closing line
/// ("Done 5375404 runs in 61 second(s)").
pub fn libfuzzer_runs(line: &str) -> Option<u64> {
    let mut words = line.trim().strip_prefix("Done ")?.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("runs")).then_some(n)
}

/// "1m 05s" / "3.2s".
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        let whole = d.as_secs();
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// Times `f`.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_test_result_lines() {
        let mut c = TestCounts::default();
        c.add_line(
            "test result: ok. 13 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        );
        c.add_line(
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("running 4 tests");
        assert_eq!(
            c,
            TestCounts {
                passed: 14,
                failed: 3,
                ignored: 2
            }
        );
    }

    #[test]
    fn describes_commands() {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "a b"]).env("X", "1");
        assert_eq!(describe(&c), "X=1 apt-get install -y 'a b'");
    }

    #[test]
    fn reads_libfuzzer_runs() {
        assert_eq!(
            libfuzzer_runs("Done 5375404 runs in 61 second(s)"),
            Some(5_375_404)
        );
        assert_eq!(libfuzzer_runs("#5375404\tDONE   cov: 972 ft: 2864"), None);
        assert_eq!(libfuzzer_runs("Done fuzzing"), None);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(3200)), "3.2s");
        assert_eq!(human(Duration::from_secs(65)), "1m 05s");
    }
}
