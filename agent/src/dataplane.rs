//! The XDP program in the kernel: loading it, attaching it, filling its maps
//! from a compiled policy, reading its counters, sweeping its conntrack.
//!
//! Policies are installed double-buffered: every policy key carries a slot
//! (0 or 1). [`Dataplane::install`] writes the new policy into the slot not in
//! use, then switches `CONFIG` to it with one array write (and a new
//! generation, which makes the program re-check older conntrack entries), and
//! only then deletes the old slot's entries. A packet sees one whole policy.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, PerCpuValues};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use vpcgw_common::abi::{
    self, CtKey, CtVal, FAMILY_V4, FragKey, FragVal, HdrKey, HdrVal, Iface, LPM_CONN_BITS,
    LPM_SLOT_BITS, LpmV4, LpmV6, MAX_CONNS, MAX_LAN_IFACES, MAX_QUEUES, MAX_RULES, PeerKey,
    PeerVal, PolicyKey, PolicyVal, PortKey, PortVal, ROLE_LAN, ROLE_WAN, RemoteVal, VpnLocalV4,
    VpnLocalV6, VpnVal, map_names as names,
};
use vpcgw_common::conntrack::{Timeout, expired, timeout_for};
use vpcgw_common::stats::{REASON_COUNT, Reason};

use crate::compile::{Compiled, Prefix};

/// The program's ELF object (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vpcgw-xdp"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} missing from the program object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the program object")]
    MissingProgram(&'static str),
    #[error("interface {0}: {1}")]
    Interface(String, std::io::Error),
    #[error("attaching to {ifname} ({mode}): {source}")]
    Attach {
        ifname: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("too many LAN interfaces ({0}; at most {MAX_LAN_IFACES})")]
    TooManyLans(usize),
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
}

type Result<T> = std::result::Result<T, DataplaneError>;

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// Map sizes chosen at load time.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub ct_entries: u32,
    pub frag_entries: u32,
    /// aya-log level for the program (0 = off, 4 = debug, see aya_log_common::Level).
    pub log_level: u8,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ct_entries: abi::DEFAULT_CT_ENTRIES,
            frag_entries: abi::DEFAULT_FRAG_ENTRIES,
            log_level: 0,
        }
    }
}

/// How to attach: the config's `xdp_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native where the driver supports it, else generic.
    Auto,
    Native,
    Generic,
}

/// An interface the program runs on.
#[derive(Debug)]
pub struct Attached {
    pub ifname: String,
    pub ifindex: u32,
    /// "native" or "generic".
    pub mode: &'static str,
    link: aya::programs::xdp::XdpLinkId,
}

/// Counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by `Reason as usize`.
    pub reasons: Vec<abi::Counter>,
    /// Flows admitted, by rule id of the installed policy.
    pub rule_hits: Vec<u64>,
    /// VPN-bound packets/bytes, by connection id of the installed policy.
    pub conns: Vec<abi::Counter>,
}

/// What a conntrack sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub scanned: u64,
    pub expired: u64,
    pub frags_expired: u64,
}

pub struct Dataplane {
    ebpf: Ebpf,
    attached: Vec<Attached>,
    generation: u32,
    slot: u8,
    cpus: usize,
    rules: usize,
    conns: usize,
    runtime: abi::Config,
}

impl Dataplane {
    /// Load the program and create its maps (nothing is attached yet; until a
    /// policy is installed the program drops everything it sees).
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::CT, opts.ct_entries)
            .map_max_entries(names::FRAGS, opts.frag_entries)
            .override_global("AYA_LOG_LEVEL", &opts.log_level, false)
            .load(OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(abi::XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(abi::XDP_PROGRAM))?
            .try_into()?;
        prog.load()?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Cpus(e))?;
        Ok(Dataplane {
            ebpf,
            attached: Vec::new(),
            generation: 0,
            slot: 0,
            cpus,
            rules: 0,
            conns: 0,
            runtime: abi::Config::default(),
        })
    }

    /// The aya-log ring buffer, for the caller to drain (None when the
    /// program logs nothing or it was taken already). Records reach the
    /// `log` crate (and so tracing) under target `vpcgw::xdp`, with the
    /// reason number the program logs turned back into its name.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<XdpLog>> {
        aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, XdpLog).ok()
    }

    /// The loaded program's file descriptor (for BPF_PROG_TEST_RUN).
    pub fn program_fd(&self) -> Result<BorrowedFd<'_>> {
        let prog: &Xdp = self
            .ebpf
            .program(abi::XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(abi::XDP_PROGRAM))?
            .try_into()?;
        Ok(prog.fd()?.as_fd())
    }

    /// Instructions the verifier processed to accept the program (kernel
    /// 5.16+). A budget worth watching: the limit is 1M, and the program
    /// is shaped to stay far below it (docs/architecture.md).
    pub fn verified_instructions(&self) -> Result<Option<u32>> {
        let prog: &Xdp = self
            .ebpf
            .program(abi::XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(abi::XDP_PROGRAM))?
            .try_into()?;
        Ok(prog.info()?.verified_instruction_count())
    }

    pub fn attached(&self) -> &[Attached] {
        &self.attached
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// Tell the program which interface is which. LAN interfaces get AF_XDP
    /// slots in the order given: the XSKS index of queue `q` on the `i`-th
    /// LAN interface is `i * MAX_QUEUES + q`.
    pub fn set_interfaces(&mut self, lans: &[u32], wan: u32) -> Result<()> {
        if lans.len() > MAX_LAN_IFACES as usize {
            return Err(DataplaneError::TooManyLans(lans.len()));
        }
        let mut ifaces: BpfHashMap<&mut MapData, u32, Iface> = self.map_mut(names::IFACES)?;
        let stale: Vec<u32> = ifaces.keys().filter_map(|k| k.ok()).collect();
        for k in stale {
            if k != wan && !lans.contains(&k) {
                ifaces.remove(&k).map_err(map_err(names::IFACES))?;
            }
        }
        for (i, ifindex) in lans.iter().enumerate() {
            let v = Iface {
                role: ROLE_LAN,
                xsk_base: i as u32 * MAX_QUEUES,
            };
            ifaces
                .insert(ifindex, v, 0)
                .map_err(map_err(names::IFACES))?;
        }
        ifaces
            .insert(
                wan,
                Iface {
                    role: ROLE_WAN,
                    xsk_base: 0,
                },
                0,
            )
            .map_err(map_err(names::IFACES))?;
        Ok(())
    }

    /// Attach to `ifname`. In `Auto` mode native XDP is tried first.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<&Attached> {
        let ifindex = ifindex(ifname)?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(abi::XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(abi::XDP_PROGRAM))?
            .try_into()?;
        let tries: &[(XdpMode, &'static str)] = match mode {
            AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            AttachMode::Native => &[(XdpMode::Driver, "native")],
            AttachMode::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last = None;
        for (m, name) in tries {
            match prog.attach_to_if_index(ifindex, *m) {
                Ok(link) => {
                    self.attached.push(Attached {
                        ifname: ifname.to_string(),
                        ifindex,
                        mode: name,
                        link,
                    });
                    break;
                }
                Err(e) => last = Some((e, *name)),
            }
        }
        match self.attached.last() {
            Some(a) if a.ifindex == ifindex => Ok(a),
            _ => {
                let (source, mode) = last.unwrap_or((ProgramError::AlreadyLoaded, "none"));
                Err(DataplaneError::Attach {
                    ifname: ifname.to_string(),
                    mode,
                    source,
                })
            }
        }
    }

    /// Detach from `ifname` (no-op if not attached).
    pub fn detach(&mut self, ifname: &str) -> Result<()> {
        let Some(pos) = self.attached.iter().position(|a| a.ifname == ifname) else {
            return Ok(());
        };
        let a = self.attached.remove(pos);
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(abi::XDP_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(abi::XDP_PROGRAM))?
            .try_into()?;
        prog.detach(a.link)?;
        Ok(())
    }

    pub fn detach_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.attached.iter().map(|a| a.ifname.clone()).collect();
        for n in names {
            self.detach(&n)?;
        }
        Ok(())
    }

    /// Install `c` under the runtime settings `rt` (its generation and slot
    /// are chosen here). Returns the new generation.
    pub fn install(&mut self, c: &Compiled, rt: abi::Config) -> Result<u32> {
        let new = if self.generation == 0 {
            0
        } else {
            1 - self.slot
        };
        // A failed earlier install may have left entries in the free slot.
        self.clear_slot(new)?;
        self.write_slot(c, new)?;
        self.zero_slot_counters(new, c.rules.len())?;
        let generation = self.generation.wrapping_add(1).max(1);
        let runtime = abi::Config {
            generation,
            slot: new,
            ..rt
        };
        let mut config: Array<&mut MapData, abi::Config> = self.map_mut(names::CONFIG)?;
        config.set(0, runtime, 0).map_err(map_err(names::CONFIG))?;
        let old = self.slot;
        let had_policy = self.generation != 0;
        self.generation = generation;
        self.slot = new;
        self.rules = c.rules.len();
        self.conns = c.peers.len();
        self.runtime = runtime;
        if had_policy {
            self.clear_slot(old)?;
        }
        Ok(generation)
    }

    /// Change runtime flags (e.g. debug logging) without a new policy.
    pub fn set_flags(&mut self, flags: u16) -> Result<()> {
        self.runtime.flags = flags;
        let rt = self.runtime;
        let mut config: Array<&mut MapData, abi::Config> = self.map_mut(names::CONFIG)?;
        config.set(0, rt, 0).map_err(map_err(names::CONFIG))?;
        Ok(())
    }

    fn write_slot(&mut self, c: &Compiled, slot: u8) -> Result<()> {
        let s = slot as u32;
        {
            let mut m: BpfHashMap<&mut MapData, PortKey, PortVal> = self.map_mut(names::PORTS)?;
            for (addr, v) in &c.ports {
                let k = PortKey {
                    addr: *addr,
                    slot: s,
                };
                m.insert(k, v, 0).map_err(map_err(names::PORTS))?;
            }
        }
        for (p, class) in &c.remote {
            let v = RemoteVal { class: *class };
            self.lpm_insert(names::REMOTE_V4, names::REMOTE_V6, slot, None, p, v)?;
        }
        {
            let mut m: BpfHashMap<&mut MapData, HdrKey, HdrVal> =
                self.map_mut(names::POLICY_HDR)?;
            for (k, v) in &c.hdrs {
                m.insert(HdrKey { slot, ..*k }, v, 0)
                    .map_err(map_err(names::POLICY_HDR))?;
            }
        }
        {
            let mut m: BpfHashMap<&mut MapData, PolicyKey, PolicyVal> =
                self.map_mut(names::POLICY)?;
            for (k, v) in &c.policy {
                m.insert(PolicyKey { slot, ..*k }, v, 0)
                    .map_err(map_err(names::POLICY))?;
            }
        }
        for (p, conn) in &c.vpn_remote {
            let v = VpnVal { conn: conn + 1 };
            self.lpm_insert(names::VPN_REMOTE_V4, names::VPN_REMOTE_V6, slot, None, p, v)?;
        }
        for (conn, p) in &c.vpn_local {
            let v = VpnVal { conn: conn + 1 };
            self.lpm_insert(
                names::VPN_LOCAL_V4,
                names::VPN_LOCAL_V6,
                slot,
                Some(*conn),
                p,
                v,
            )?;
        }
        let mut m: BpfHashMap<&mut MapData, PeerKey, PeerVal> = self.map_mut(names::PEERS)?;
        for (addr, conn) in &c.peers {
            m.insert(
                PeerKey {
                    addr: *addr,
                    slot: s,
                },
                PeerVal { conn: conn + 1 },
                0,
            )
            .map_err(map_err(names::PEERS))?;
        }
        Ok(())
    }

    /// Insert into the v4 or v6 LPM trie, with the slot (and connection)
    /// bytes in front of the address.
    fn lpm_insert<V: aya::Pod>(
        &mut self,
        v4: &'static str,
        v6: &'static str,
        slot: u8,
        conn: Option<u32>,
        p: &Prefix,
        v: V,
    ) -> Result<()> {
        let extra = LPM_SLOT_BITS + if conn.is_some() { LPM_CONN_BITS } else { 0 };
        let c = conn.unwrap_or(0).to_be_bytes();
        let len = extra + p.len as u32;
        match (p.family == FAMILY_V4, conn.is_some()) {
            (true, false) => {
                let mut m: LpmTrie<&mut MapData, LpmV4, V> = self.map_mut(v4)?;
                let b = &p.bytes;
                m.insert(&Key::new(len, [slot, b[0], b[1], b[2], b[3]]), v, 0)
                    .map_err(map_err(v4))
            }
            (false, false) => {
                let mut m: LpmTrie<&mut MapData, LpmV6, V> = self.map_mut(v6)?;
                let mut d = [0u8; 17];
                d[0] = slot;
                d[1..].copy_from_slice(&p.bytes);
                m.insert(&Key::new(len, d), v, 0).map_err(map_err(v6))
            }
            (true, true) => {
                let mut m: LpmTrie<&mut MapData, VpnLocalV4, V> = self.map_mut(v4)?;
                let b = &p.bytes;
                let d = [slot, c[0], c[1], c[2], c[3], b[0], b[1], b[2], b[3]];
                m.insert(&Key::new(len, d), v, 0).map_err(map_err(v4))
            }
            (false, true) => {
                let mut m: LpmTrie<&mut MapData, VpnLocalV6, V> = self.map_mut(v6)?;
                let mut d = [0u8; 21];
                d[0] = slot;
                d[1..5].copy_from_slice(&c);
                d[5..].copy_from_slice(&p.bytes);
                m.insert(&Key::new(len, d), v, 0).map_err(map_err(v6))
            }
        }
    }

    /// Delete every policy entry of `slot`.
    fn clear_slot(&mut self, slot: u8) -> Result<()> {
        let s = slot as u32;
        self.retain_hash::<PortKey, PortVal>(names::PORTS, |k| k.slot != s)?;
        self.retain_hash::<HdrKey, HdrVal>(names::POLICY_HDR, |k| k.slot != slot)?;
        self.retain_hash::<PolicyKey, PolicyVal>(names::POLICY, |k| k.slot != slot)?;
        self.retain_hash::<PeerKey, PeerVal>(names::PEERS, |k| k.slot != s)?;
        self.retain_lpm::<LpmV4, RemoteVal>(names::REMOTE_V4, slot)?;
        self.retain_lpm::<LpmV6, RemoteVal>(names::REMOTE_V6, slot)?;
        self.retain_lpm::<LpmV4, VpnVal>(names::VPN_REMOTE_V4, slot)?;
        self.retain_lpm::<LpmV6, VpnVal>(names::VPN_REMOTE_V6, slot)?;
        self.retain_lpm::<VpnLocalV4, VpnVal>(names::VPN_LOCAL_V4, slot)?;
        self.retain_lpm::<VpnLocalV6, VpnVal>(names::VPN_LOCAL_V6, slot)?;
        Ok(())
    }

    fn retain_hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        keep: impl Fn(&K) -> bool,
    ) -> Result<()> {
        let mut m: BpfHashMap<&mut MapData, K, V> = self.map_mut(name)?;
        let doomed: Vec<K> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !keep(k))
            .collect();
        remove_all(name, doomed, |k| m.remove(k))
    }

    fn retain_lpm<K: aya::Pod + AsRef<[u8]>, V: aya::Pod>(
        &mut self,
        name: &'static str,
        slot: u8,
    ) -> Result<()> {
        let mut m: LpmTrie<&mut MapData, K, V> = self.map_mut(name)?;
        let doomed: Vec<Key<K>> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data().as_ref().first() == Some(&slot))
            .collect();
        remove_all(name, doomed, |k| m.remove(k))
    }

    fn zero_slot_counters(&mut self, slot: u8, rules: usize) -> Result<()> {
        let cpus = self.cpus;
        let zero_u64 = || PerCpuValues::try_from(vec![0u64; cpus]);
        let zero_c = || PerCpuValues::try_from(vec![abi::Counter::default(); cpus]);
        {
            let mut m: PerCpuArray<&mut MapData, u64> = self.map_mut(names::RULE_HITS)?;
            for i in 0..rules as u32 {
                let idx = slot as u32 * MAX_RULES + i;
                let z = zero_u64().map_err(|e| map_err(names::RULE_HITS)(e.into()))?;
                m.set(idx, z, 0).map_err(map_err(names::RULE_HITS))?;
            }
        }
        let mut m: PerCpuArray<&mut MapData, abi::Counter> = self.map_mut(names::CONN_STATS)?;
        for i in 0..MAX_CONNS {
            let idx = slot as u32 * MAX_CONNS + i;
            let z = zero_c().map_err(|e| map_err(names::CONN_STATS)(e.into()))?;
            m.set(idx, z, 0).map_err(map_err(names::CONN_STATS))?;
        }
        Ok(())
    }

    /// Counters of the installed policy, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut out = Counters::default();
        let stats: PerCpuArray<&MapData, abi::Counter> = self.map(names::STATS)?;
        for i in 0..REASON_COUNT {
            let v = stats.get(&i, 0).map_err(map_err(names::STATS))?;
            out.reasons.push(sum(&v));
        }
        let hits: PerCpuArray<&MapData, u64> = self.map(names::RULE_HITS)?;
        for i in 0..self.rules as u32 {
            let v = hits
                .get(&(self.slot as u32 * MAX_RULES + i), 0)
                .map_err(map_err(names::RULE_HITS))?;
            out.rule_hits.push(v.iter().sum());
        }
        let conns: PerCpuArray<&MapData, abi::Counter> = self.map(names::CONN_STATS)?;
        for i in 0..self.conns as u32 {
            let v = conns
                .get(&(self.slot as u32 * MAX_CONNS + i), 0)
                .map_err(map_err(names::CONN_STATS))?;
            out.conns.push(sum(&v));
        }
        Ok(out)
    }

    /// One reason's counter (summed over CPUs).
    pub fn reason(&self, r: Reason) -> Result<abi::Counter> {
        let c = self.counters()?;
        Ok(c.reasons.get(r as usize).copied().unwrap_or_default())
    }

    /// Delete expired conntrack and fragment entries. `now` is
    /// [`monotonic_ns`], the clock the program stamps entries with.
    pub fn sweep(&mut self, now: u64) -> Result<SweepStats> {
        let timeouts = self.runtime.timeouts;
        let t = |x: Timeout| timeouts.get(x as usize).copied().unwrap_or(0);
        let mut st = SweepStats::default();
        {
            let mut ct: BpfHashMap<&mut MapData, CtKey, CtVal> = self.map_mut(names::CT)?;
            let mut doomed = Vec::new();
            for item in ct.iter() {
                let Ok((k, v)) = item else { continue };
                st.scanned += 1;
                if expired(now, v.last_seen, t(timeout_for(k.proto, v.state))) {
                    doomed.push(k);
                }
            }
            for k in doomed {
                if ct.remove(&k).is_ok() {
                    st.expired += 1;
                }
            }
        }
        let mut frags: BpfHashMap<&mut MapData, FragKey, FragVal> = self.map_mut(names::FRAGS)?;
        let doomed: Vec<FragKey> = frags
            .iter()
            .filter_map(|i| i.ok())
            .filter(|(_, v)| expired(now, v.created, t(Timeout::Fragment)))
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            if frags.remove(&k).is_ok() {
                st.frags_expired += 1;
            }
        }
        Ok(st)
    }

    /// Entries in the conntrack table.
    pub fn ct_entries(&self) -> Result<Vec<(CtKey, CtVal)>> {
        let ct: BpfHashMap<&MapData, CtKey, CtVal> = self.map(names::CT)?;
        Ok(ct.iter().filter_map(|i| i.ok()).collect())
    }

    /// The AF_XDP socket map, to register sockets at `xsk_base + queue`.
    pub fn xsk_map(&mut self) -> Result<aya::maps::XskMap<&mut MapData>> {
        self.map_mut(names::XSKS)
    }

    /// A typed view of a map, by name.
    pub fn map<'a, T>(&'a self, name: &'static str) -> Result<T>
    where
        T: TryFrom<&'a aya::maps::Map, Error = MapError>,
    {
        let m = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        T::try_from(m).map_err(map_err(name))
    }

    /// A typed mutable view of a map, by name.
    pub fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        T::try_from(m).map_err(map_err(name))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // Links are bpf_links: closing them detaches anyway; this makes the
        // order explicit and reports nothing (there is no one to report to).
        let _ = self.detach_all();
    }
}

/// Forwards the program's log records to the process's logger. The program
/// logs a verdict as `reason N` (a name would cost the verifier a string per
/// path); this puts the name back.
pub struct XdpLog;

impl log::Log for XdpLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        log::logger().enabled(m)
    }

    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        let named = text
            .strip_prefix("reason ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(n, rest)| {
                let r = Reason::ALL.get(n.parse::<usize>().ok()?)?;
                Some(format!("{} {rest}", r.name()))
            })
            .unwrap_or(text);
        log::logger().log(
            &log::Record::builder()
                .args(format_args!("{named}"))
                .level(record.level())
                .target("vpcgw::xdp")
                .build(),
        );
    }

    fn flush(&self) {
        log::logger().flush();
    }
}

/// Remove `keys` (collected beforehand: deleting while walking a map's keys
/// skips entries). A key already gone is not an error.
fn remove_all<K>(
    name: &'static str,
    keys: Vec<K>,
    mut remove: impl FnMut(&K) -> std::result::Result<(), MapError>,
) -> Result<()> {
    for k in &keys {
        match remove(k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(name)(e)),
        }
    }
    Ok(())
}

/// Per-CPU counters summed.
fn sum(values: &PerCpuValues<abi::Counter>) -> abi::Counter {
    values
        .iter()
        .fold(abi::Counter::default(), |a, c| abi::Counter {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
        })
}

/// The interface index of `ifname` in the current network namespace.
pub fn ifindex(ifname: &str) -> Result<u32> {
    let c = std::ffi::CString::new(ifname).map_err(|_| {
        DataplaneError::Interface(
            ifname.to_string(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"),
        )
    })?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(DataplaneError::Interface(
            ifname.to_string(),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(idx)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the clock the program reads
/// (`bpf_ktime_get_coarse_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The result of one BPF_PROG_TEST_RUN.
#[derive(Clone, Debug)]
pub struct TestRun {
    /// The XDP action returned.
    pub retval: u32,
    /// The frame after the program (with any metadata it added in front).
    pub data: Vec<u8>,
    /// Mean run time per repetition, in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// Run the program on `frame` as if it arrived on `ifindex`, queue
/// `rx_queue`, `repeat` times (BPF_PROG_TEST_RUN). Map side effects are real.
pub fn test_run(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    rx_queue: u32,
    repeat: u32,
) -> std::io::Result<TestRun> {
    use std::os::fd::AsRawFd;
    // struct xdp_md as the kernel takes it in ctx_in.
    #[repr(C)]
    #[derive(Default)]
    struct XdpMd {
        data: u32,
        data_end: u32,
        data_meta: u32,
        ingress_ifindex: u32,
        rx_queue_index: u32,
        egress_ifindex: u32,
    }
    // The `test` member of union bpf_attr. The kernel refuses the call unless
    // every byte after the fields it knows is zero, so the tail padding is an
    // explicit field: implicit padding would carry stack garbage.
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _tail: u32,
    }
    const _: () = assert!(std::mem::size_of::<TestAttr>() == 80);
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let ctx = XdpMd {
        data: 0,
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        rx_queue_index: rx_queue,
        ..Default::default()
    };
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        ..Default::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_PROG_TEST_RUN; the
    // buffers it points to outlive the call and have the sizes given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            std::mem::size_of::<TestAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
}

/// Counters keyed by what they count, carried across policy reloads (rule
/// and connection ids change with every policy; names stay).
#[derive(Clone, Debug, Default)]
pub struct Carry {
    pub rule_hits: HashMap<String, u64>,
    pub conns: HashMap<String, abi::Counter>,
}
