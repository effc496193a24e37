//! `cargo xtask setup`: makes a fresh Debian 12 machine (root, rustup with a
//! stable and a nightly toolchain) able to build, test and demo vpcgw.
//!
//! Every item is checked first and installed only when missing, so running
//! it again installs nothing. `apt-get update` runs only when a Debian
//! package must be installed (a stale package index gives 404s).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, cmd, human, probe, run, timed};

/// Debian packages the build, the tests, the demo and the benchmarks use.
/// strongSwan, iperf3 and nftables are for the IPsec interop tests and the
/// benchmarks; tcpdump and bpftool for debugging.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "ethtool",
    "bpftool",
    "tcpdump",
    "strongswan-charon",
    "strongswan-swanctl",
    "libcharon-extra-plugins",
    "libstrongswan-standard-plugins",
    "iperf3",
    "nftables",
];

const NIGHTLY: &str = "nightly";
/// cargo-fuzz, built with the nightly toolchain (its sanitizer flags need
/// nightly anyway). 0.13.2 builds with nightly 1.97.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
const BPFFS: &str = "/sys/fs/bpf";

/// How much to say when nothing is missing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `cargo xtask setup`: one line per item.
    Full,
    /// Called by another subcommand: one line when all is there.
    Brief,
}

/// What the machine lacks.
#[derive(Default)]
struct Missing {
    packages: Vec<String>,
    /// rustfmt/clippy for the toolchain xtask runs with (`cargo xtask test`).
    components: Vec<&'static str>,
    rust_src: bool,
    bpf_linker: bool,
    cargo_fuzz: bool,
    bpffs: bool,
    psk_modes: Vec<PathBuf>,
}

impl Missing {
    fn nothing(&self) -> bool {
        self.packages.is_empty()
            && self.components.is_empty()
            && !self.rust_src
            && !self.bpf_linker
            && !self.cargo_fuzz
            && !self.bpffs
            && self.psk_modes.is_empty()
    }

    fn needs_root(&self) -> bool {
        !self.packages.is_empty() || self.bpffs
    }
}

/// Effective uid 0? (read from /proc: xtask has no libc dependency)
pub fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

/// Checks everything and installs what is missing.
pub fn setup(verbosity: Verbosity) -> Result<()> {
    let (result, took) = timed(|| setup_inner(verbosity));
    let installed = result?;
    if installed || verbosity == Verbosity::Full {
        eprintln!(
            "== setup: done in {}{}",
            human(took),
            if installed {
                ""
            } else {
                " (nothing to install)"
            }
        );
    }
    Ok(())
}

/// Only what `cargo build` needs (rust-src for nightly, bpf-linker); runs
/// the whole setup when one of them is missing.
pub fn ensure_build_tools() -> Result<()> {
    if nightly_has_rust_src()? && bpf_linker_version().is_some() {
        return Ok(());
    }
    eprintln!("== setup: rust-src or bpf-linker missing, running `cargo xtask setup` first");
    setup(Verbosity::Brief)
}

/// Returns whether it installed or changed anything.
fn setup_inner(verbosity: Verbosity) -> Result<bool> {
    let full = verbosity == Verbosity::Full;
    if full {
        eprintln!("== setup: checking what this machine has");
    }
    let nightly = nightly_version()?;
    let mut missing = Missing {
        packages: missing_packages()?,
        ..Missing::default()
    };
    if full {
        if missing.packages.is_empty() {
            eprintln!(
                "  ok       Debian packages: {} installed",
                DEBIAN_PACKAGES.len()
            );
        } else {
            eprintln!("  missing  Debian packages: {}", missing.packages.join(" "));
        }
        eprintln!("  ok       nightly toolchain: {nightly}");
    }

    missing.components = missing_components()?;
    missing.rust_src = !nightly_has_rust_src()?;
    let linker = bpf_linker_version();
    missing.bpf_linker = linker.is_none();
    let fuzz = cargo_fuzz_version();
    missing.cargo_fuzz = fuzz.is_none();
    missing.bpffs = !bpffs_mounted();
    missing.psk_modes = psk_files_to_fix()?;
    if full {
        line(
            missing.components.is_empty(),
            "rustfmt and clippy for the default toolchain",
        );
        line(!missing.rust_src, "rust-src for the nightly toolchain");
        line(
            !missing.bpf_linker,
            &format!(
                "bpf-linker{}",
                linker
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ),
        );
        line(
            !missing.cargo_fuzz,
            &format!(
                "cargo-fuzz{}",
                fuzz.as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ),
        );
        line(!missing.bpffs, &format!("bpffs mounted at {BPFFS}"));
        line(
            missing.psk_modes.is_empty(),
            "examples/psk/*.psk are mode 0600",
        );
    }

    if missing.nothing() {
        if !full {
            eprintln!(
                "== setup: all present ({} Debian packages, nightly rust-src, {}, {}, bpffs)",
                DEBIAN_PACKAGES.len(),
                linker.as_deref().unwrap_or("bpf-linker"),
                fuzz.as_deref().unwrap_or("cargo-fuzz")
            );
        }
        return Ok(false);
    }
    if missing.needs_root() && !is_root() {
        bail!(
            "setup must install Debian packages or mount bpffs, which needs root: \
             run `cargo xtask setup` as root"
        );
    }

    if !missing.packages.is_empty() {
        install_packages(&missing.packages)?;
    }
    if !missing.components.is_empty() {
        eprintln!("== setup: adding rustfmt/clippy (cargo xtask test runs them)");
        let mut c = cmd("rustup", &["component", "add"]);
        c.args(&missing.components);
        run(c)?;
    }
    if missing.rust_src {
        eprintln!("== setup: adding rust-src to the nightly toolchain (needed by -Z build-std)");
        run(cmd(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", NIGHTLY],
        ))?;
    }
    if missing.bpf_linker {
        install_bpf_linker()?;
    }
    if missing.cargo_fuzz {
        install_cargo_fuzz()?;
    }
    if missing.bpffs {
        eprintln!("== setup: mounting bpffs");
        run(cmd("mount", &["-t", "bpf", "bpf", BPFFS]))?;
    }
    if !missing.psk_modes.is_empty() {
        eprintln!("== setup: PSK files must be 0600 (git does not keep file modes)");
        let mut c = cmd("chmod", &["600"]);
        c.args(&missing.psk_modes);
        run(c)?;
    }
    Ok(true)
}

fn line(ok: bool, what: &str) {
    eprintln!("  {}  {what}", if ok { "ok     " } else { "missing" });
}

/// Packages of [`DEBIAN_PACKAGES`] that are not installed.
fn missing_packages() -> Result<Vec<String>> {
    let mut c = cmd(
        "dpkg-query",
        &["--show", "--showformat=${Package} ${db:Status-Status}\\n"],
    );
    c.args(DEBIAN_PACKAGES);
    // Exit status 1 means some package is unknown to dpkg: read stdout anyway.
    let out = probe(c)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.trim() == "installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(DEBIAN_PACKAGES
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| p.to_string())
        .collect())
}

fn install_packages(packages: &[String]) -> Result<()> {
    eprintln!(
        "== setup: installing {} Debian package(s): {}",
        packages.len(),
        packages.join(" ")
    );
    let apt = |args: &[&str]| {
        let mut c = cmd("apt-get", args);
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    // The index may be stale (404s) or absent on a fresh machine.
    run(apt(&["update"]))?;
    let mut c = apt(&["install", "-y", "--no-install-recommends"]);
    c.args(packages);
    run(c)?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

/// `rustc 1.97.0-nightly (e50aa6fba 2026-05-19), LLVM 22.1.4`
fn nightly_version() -> Result<String> {
    let (release, llvm) = nightly_release_and_llvm()?;
    Ok(format!("rustc {release}, LLVM {llvm}"))
}

fn nightly_release_and_llvm() -> Result<(String, String)> {
    let out = probe(cmd("rustc", &["+nightly", "-vV"]))?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is not installed (the eBPF program is built with it): \
             `rustup toolchain install nightly --component rust-src`\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let release = field("release:").context("`rustc +nightly -vV` printed no release")?;
    let llvm = field("LLVM version:").context("`rustc +nightly -vV` printed no LLVM version")?;
    Ok((release, llvm))
}

/// rustfmt and clippy, if the active toolchain (the one running xtask)
/// lacks them.
fn missing_components() -> Result<Vec<&'static str>> {
    let out = probe(cmd("rustup", &["component", "list", "--installed"]))?;
    if !out.status.success() {
        bail!(
            "`rustup component list --installed` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let has = |name: &str| {
        text.lines().any(|l| {
            let l = l.trim();
            l == name || l.strip_prefix(name).is_some_and(|r| r.starts_with('-'))
        })
    };
    Ok(["rustfmt", "clippy"]
        .into_iter()
        .filter(|c| !has(c))
        .collect())
}

fn nightly_has_rust_src() -> Result<bool> {
    let out = probe(cmd(
        "rustup",
        &["component", "list", "--installed", "--toolchain", NIGHTLY],
    ))?;
    if !out.status.success() {
        return Ok(false);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "rust-src"))
}

/// `Some("bpf-linker 0.13.0")` if it runs (its libLLVM link is intact).
fn bpf_linker_version() -> Option<String> {
    let out = probe(cmd("bpf-linker", &["--version"])).ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `Some("cargo-fuzz 0.13.2")` if `cargo +nightly fuzz` runs.
fn cargo_fuzz_version() -> Option<String> {
    let out = probe(cmd("cargo", &["+nightly", "fuzz", "--version"])).ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Only what `cargo xtask fuzz` needs: cargo-fuzz (the nightly toolchain
/// is checked by the whole setup, which runs when cargo-fuzz is missing).
pub fn ensure_fuzz_tools() -> Result<()> {
    if cargo_fuzz_version().is_some() {
        return Ok(());
    }
    eprintln!("== setup: cargo-fuzz missing, running `cargo xtask setup` first");
    setup(Verbosity::Brief)
}

fn install_cargo_fuzz() -> Result<()> {
    eprintln!(
        "== setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} with the nightly toolchain \
         (the fuzz target of `cargo xtask test`)"
    );
    let install = cmd(
        "cargo",
        &[
            "+nightly",
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ],
    );
    let (result, took) = timed(|| run(install));
    result?;
    eprintln!("   cargo-fuzz built in {}", human(took));
    match cargo_fuzz_version() {
        Some(v) => {
            eprintln!("  ok       {v}");
            Ok(())
        }
        None => bail!(
            "`cargo +nightly fuzz` still does not run after `cargo install`: is {} on PATH?",
            cargo_home()?.join("bin").display()
        ),
    }
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// bpf-linker is built against the nightly toolchain's own libLLVM (same
/// LLVM as the rustc that emits the bitcode). Its build looks for LLVM under
/// LLVM_PREFIX, so a lasting directory gets symlinks to that library; the
/// binary keeps that directory as its runpath.
fn install_bpf_linker() -> Result<()> {
    let (release, llvm) = nightly_release_and_llvm()?;
    let major = llvm
        .split('.')
        .next()
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("cannot read the LLVM major version from {llvm:?}"))?
        .to_string();
    eprintln!(
        "== setup: installing bpf-linker against the nightly toolchain's LLVM {llvm} (rustc {release})"
    );
    let sysroot = probe(cmd("rustc", &["+nightly", "--print", "sysroot"]))?;
    if !sysroot.status.success() {
        bail!("`rustc +nightly --print sysroot` failed");
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    let file_name = libllvm
        .file_name()
        .context("libLLVM path has no file name")?
        .to_os_string();

    let prefix = cargo_home()?.join("bpf-linker-llvm");
    let lib = prefix.join("lib");
    let mut mkdir = cmd("mkdir", &["-p"]);
    mkdir.arg(&lib);
    run(mkdir)?;
    for link in [lib.join("libLLVM.so"), lib.join(&file_name)] {
        let mut ln = cmd("ln", &["-sfn"]);
        ln.arg(&libllvm).arg(&link);
        run(ln)?;
    }
    let feature = format!("llvm-{major}");
    let mut install = cmd::cargo(&[
        "install",
        "bpf-linker",
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
        &feature,
    ]);
    install.env("LLVM_PREFIX", &prefix);
    let (result, took) = timed(|| run(install));
    result?;
    eprintln!("   bpf-linker built in {}", human(took));

    match bpf_linker_version() {
        Some(v) => {
            eprintln!("  ok       {v}");
            Ok(())
        }
        None => {
            let bin = cargo_home()?.join("bin").join("bpf-linker");
            if bin.exists() {
                bail!(
                    "bpf-linker was installed in {} but does not run from PATH: \
                     add {} to PATH",
                    bin.display(),
                    cargo_home()?.join("bin").display()
                )
            }
            bail!("bpf-linker still does not run after `cargo install`")
        }
    }
}

/// The versioned shared library (`libLLVM.so.22.1-rust-1.97.0-nightly`),
/// else the `libLLVM-22-rust-...so` form.
fn find_libllvm(dir: &Path) -> Result<PathBuf> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("libLLVM"))
        .collect();
    names.sort();
    let pick = names
        .iter()
        .find(|n| n.starts_with("libLLVM.so."))
        .or_else(|| {
            names
                .iter()
                .find(|n| n.starts_with("libLLVM-") && n.ends_with(".so"))
        })
        .with_context(|| {
            format!(
                "no libLLVM shared library in {} (found: {names:?})",
                dir.display()
            )
        })?;
    Ok(dir.join(pick))
}

fn bpffs_mounted() -> bool {
    fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                let _dev = f.next();
                f.next() == Some(BPFFS) && f.next() == Some("bpf")
            })
        })
        .unwrap_or(false)
}

/// `examples/psk/*.psk` whose mode is not 0600.
fn psk_files_to_fix() -> Result<Vec<PathBuf>> {
    let dir = cmd::repo_root().join("examples").join("psk");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut fix = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let path = e.path();
        if path.extension().is_none_or(|x| x != "psk") {
            continue;
        }
        let mode = e
            .metadata()
            .with_context(|| format!("stat {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o7777 != 0o600 {
            fix.push(path);
        }
    }
    fix.sort();
    Ok(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versioned_libllvm() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-llvm-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        for n in [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-x.so",
        ] {
            fs::write(dir.join(n), b"")?;
        }
        let found = find_libllvm(&dir);
        fs::remove_dir_all(&dir)?;
        assert_eq!(
            found?.file_name().and_then(|n| n.to_str()),
            Some("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
        Ok(())
    }
}
