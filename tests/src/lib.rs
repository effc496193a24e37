//! Test harness for vpcgw's privileged tests: network namespaces
//! ([`netns`]), the standard test bed ([`bed`]), and where to find the agent
//! binary. Privileged tests need root; `cargo xtask test` runs them.

pub mod agent;
pub mod bed;
pub mod flood;
pub mod interop;
pub mod netns;
pub mod strongswan;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub use bed::Bed;
pub use netns::{
    Connect, Netns, Spawned, TcpServer, is_root, require_root, unique_prefix, veth, wait_for,
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The agent binary: `$VPCGW_BIN` (set by `cargo xtask test/demo/bench`),
/// else `vpcgw` next to the running executable (target/PROFILE/, also from
/// target/PROFILE/deps/ for test binaries).
pub fn vpcgw_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VPCGW_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("VPCGW_BIN={} is not a file", p.display());
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("vpcgw");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("cannot find the vpcgw binary: set VPCGW_BIN or build it (`cargo xtask build`)")
}
pub mod xdp;
