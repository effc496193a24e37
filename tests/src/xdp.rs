//! Running crafted frames through the loaded XDP program (BPF_PROG_TEST_RUN)
//! and through the same pipeline on in-memory maps, side by side.
//!
//! A [`Rig`] is a network namespace with interfaces `lan0`, `lan1` and
//! `wan0` (veths) (BPF_PROG_TEST_RUN needs real interfaces for `ingress_ifindex`), a
//! loaded [`Dataplane`] with a policy installed, and a [`HostDataplane`] with
//! the same policy. [`Rig::send`] runs one frame through both and returns
//! what each did; the kernel's reason comes from the `STATS` counter that
//! moved.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use vpcgw::compile::{Compiled, compile};
use vpcgw::config::{self, Config};
use vpcgw::dataplane::{Dataplane, LoadOptions, test_run};
use vpcgw::hostmaps::{HostDataplane, runtime_config};
use vpcgw::xsk::{XskConfig, XskSocket};
use vpcgw_common::abi::{Iface, MAX_QUEUES, ROLE_LAN, ROLE_WAN};
use vpcgw_common::pipeline::{Action, Outcome, Work, process};
use vpcgw_common::stats::Reason;

use crate::netns::Netns;

/// XDP actions as BPF_PROG_TEST_RUN reports them.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// Which interface a frame arrives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum If {
    Lan0,
    Lan1,
    Wan,
}

/// What one frame did, in the kernel and on the host.
#[derive(Clone, Debug)]
pub struct Sent {
    pub kernel_action: u32,
    pub kernel_reason: Reason,
    pub host: Action,
    pub host_reason: Reason,
    /// The host's whole outcome (connection and XSKS index of a redirect).
    pub host_outcome: Outcome,
    /// The frame as the kernel left it (metadata in front for redirects).
    pub data: Vec<u8>,
}

impl Sent {
    /// The kernel and the host agree. Without an AF_XDP socket the kernel
    /// cannot redirect: a host redirect is a kernel drop counted as
    /// `drop_vpn_no_socket`.
    pub fn agree(&self) -> bool {
        match self.host {
            Action::Pass => {
                self.kernel_action == XDP_PASS && self.kernel_reason == self.host_reason
            }
            Action::Drop => {
                self.kernel_action == XDP_DROP && self.kernel_reason == self.host_reason
            }
            Action::Redirect => {
                (self.kernel_action == XDP_REDIRECT && self.kernel_reason == Reason::VpnRedirect)
                    || (self.kernel_action == XDP_DROP && self.kernel_reason == Reason::VpnNoSocket)
            }
        }
    }
}

/// Loaded program + host twin, living on the namespace's thread.
pub struct Loaded {
    pub dp: Dataplane,
    pub host: HostDataplane,
    pub cfg: Config,
    pub compiled: Compiled,
    pub ifindex: [u32; 3],
    work: Work,
    clock: u64,
    /// AF_XDP sockets opened with [`Loaded::open_xsk`], kept open (closing
    /// one removes it from `XSKS`).
    xsks: Vec<XskSocket>,
}

impl Loaded {
    fn ifindex_of(&self, i: If) -> u32 {
        match i {
            If::Lan0 => self.ifindex[0],
            If::Lan1 => self.ifindex[1],
            If::Wan => self.ifindex[2],
        }
    }

    /// Open an AF_XDP socket on queue 0 of LAN interface `on` and register
    /// it in `XSKS`, so the kernel redirects VPN-bound frames from `on`
    /// (`XDP_REDIRECT` instead of `drop_vpn_no_socket`). Frames are tested
    /// with BPF_PROG_TEST_RUN, which returns the action and the frame with
    /// its metadata without delivering anything to the socket.
    pub fn open_xsk(&mut self, on: If) -> Result<()> {
        let slot = match on {
            If::Lan0 => 0,
            If::Lan1 => 1,
            If::Wan => bail!("AF_XDP sockets serve LAN interfaces only"),
        };
        let ifindex = self.ifindex_of(on);
        let sock = XskSocket::open(ifindex, 0, &XskConfig::default())
            .with_context(|| format!("AF_XDP socket on {on:?} queue 0"))?;
        let mut map = self.dp.xsk_map()?;
        map.set(slot * MAX_QUEUES, sock.fd(), 0)
            .context("registering the AF_XDP socket in XSKS")?;
        self.xsks.push(sock);
        Ok(())
    }

    /// Run `frame` through the host pipeline only: for frames the kernel
    /// will not test-run (shorter than an Ethernet header, which no NIC
    /// delivers either).
    pub fn host_only(&mut self, on: If, frame: &[u8]) -> vpcgw_common::pipeline::Outcome {
        // The host clock only needs to move forward like the kernel's.
        self.clock += 1_000_000;
        let rt = runtime_config(&self.cfg, self.dp.generation(), self.dp.slot());
        let ifindex = self.ifindex_of(on);
        process(
            &mut self.host,
            &rt,
            &mut self.work,
            frame,
            ifindex,
            0,
            self.clock,
        )
    }

    /// Run `frame` through both.
    pub fn send(&mut self, on: If, frame: &[u8]) -> Result<Sent> {
        let before = self.dp.counters()?.reasons;
        let fd = self.dp.program_fd()?;
        let ifindex = self.ifindex_of(on);
        let run = test_run(fd, frame, ifindex, 0, 1).with_context(|| {
            format!(
                "BPF_PROG_TEST_RUN of a {}-byte frame on ifindex {ifindex}",
                frame.len()
            )
        })?;
        let after = self.dp.counters()?.reasons;
        let moved: Vec<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|r| {
                let i = *r as usize;
                after.get(i).map(|c| c.packets) != before.get(i).map(|c| c.packets)
            })
            .collect();
        let kernel_reason = match moved.as_slice() {
            [r] => *r,
            other => bail!("expected exactly one counter to move, got {other:?}"),
        };
        let out = self.host_only(on, frame);
        Ok(Sent {
            kernel_action: run.retval,
            kernel_reason,
            host: out.action,
            host_reason: out.reason,
            host_outcome: out,
            data: run.data,
        })
    }

    /// Install a new configuration in both (a reload).
    pub fn reload(&mut self, cfg: Config) -> Result<()> {
        let compiled = compile(&cfg)?;
        let rt = runtime_config(&cfg, 0, 0);
        self.dp.install(&compiled, rt)?;
        let mut host = HostDataplane::new(&compiled);
        host.ifaces = std::mem::take(&mut self.host.ifaces);
        host.ct = std::mem::take(&mut self.host.ct);
        host.frags = std::mem::take(&mut self.host.frags);
        self.host = host;
        self.cfg = cfg;
        self.compiled = compiled;
        Ok(())
    }
}

/// A namespace holding the interfaces the program is told about.
pub struct Rig {
    pub ns: Netns,
}

impl Rig {
    pub fn new() -> Result<Rig> {
        let ns = Netns::new("xdp")?;
        // veth pairs inside the namespace (this kernel has no dummy driver).
        for name in ["lan0", "lan1", "wan0"] {
            let peer = format!("{name}p");
            ns.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
            ns.ip(&["link", "set", name, "up"])?;
            ns.ip(&["link", "set", &peer, "up"])?;
        }
        Ok(Rig { ns })
    }

    /// Load the program with `config_toml` inside the namespace and run `f`
    /// there. `psk` files named in the config are created next to it.
    pub fn with<R: Send + 'static>(
        &self,
        config_toml: &str,
        f: impl FnOnce(&mut Loaded) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let cfg = parse_config(config_toml)?;
        let idx = [
            self.ns.ifindex("lan0")?,
            self.ns.ifindex("lan1")?,
            self.ns.ifindex("wan0")?,
        ];
        self.ns.enter(move || -> Result<R> {
            let compiled = compile(&cfg)?;
            let mut dp = Dataplane::load(&LoadOptions::default())?;
            dp.set_interfaces(&idx[..2], idx[2])?;
            dp.install(&compiled, runtime_config(&cfg, 0, 0))?;
            let mut host = HostDataplane::new(&compiled);
            for (i, ix) in idx[..2].iter().enumerate() {
                host.ifaces.insert(
                    *ix,
                    Iface {
                        role: ROLE_LAN,
                        xsk_base: i as u32 * MAX_QUEUES,
                    },
                );
            }
            host.ifaces.insert(
                idx[2],
                Iface {
                    role: ROLE_WAN,
                    xsk_base: 0,
                },
            );
            let mut l = Loaded {
                dp,
                host,
                cfg,
                compiled,
                ifindex: idx,
                work: Work::default(),
                clock: 1_000_000_000,
                xsks: Vec::new(),
            };
            f(&mut l)
        })?
    }
}

/// Parse a configuration text; PSK files it names are created (mode 0600)
/// in a private temporary directory that anchors relative paths.
pub fn parse_config(text: &str) -> Result<Config> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir()?;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("psk_file") {
            let name = rest.trim_start_matches([' ', '=']).trim().trim_matches('"');
            let path = dir.join(name);
            std::fs::write(&path, "example-only-psk-0123456789abcdef\n")?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let path = dir.join("vpcgw.toml");
    std::fs::write(&path, text)?;
    let parsed = config::parse_str(text, &path);
    // The PSK files are checked while parsing and never read again.
    let _ = std::fs::remove_dir_all(&dir);
    match parsed {
        Ok(c) => Ok(c.config),
        Err(config::ConfigError::Invalid(ps)) => {
            let lines: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            bail!("invalid test config:\n{}", lines.join("\n"))
        }
        Err(e) => Err(e.into()),
    }
}

fn temp_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vpcgw-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
