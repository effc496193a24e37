//! The data plane's maps in process memory: the same lookups as the BPF maps,
//! over a [`Compiled`] policy. `vpcgw explain` runs the real pipeline on them,
//! and tests run it without privileges; the XDP program runs it on BPF maps.

use std::collections::HashMap;

use vpcgw_common::Addr;
use vpcgw_common::abi::{
    Config, CtKey, CtVal, FAMILY_V4, FragKey, FragVal, HdrKey, HdrVal, Iface, PeerKey, PeerVal,
    PolicyKey, PolicyVal, PortKey, PortVal,
};
use vpcgw_common::maps::{DataplaneMaps, PolicyMaps};
use vpcgw_common::stats::Reason;

use crate::compile::{Compiled, Prefix};

/// A longest-prefix-match table: one hash map per prefix length.
#[derive(Clone, Debug, Default)]
pub struct Lpm<V> {
    by_len: Vec<HashMap<Prefix, V>>,
}

impl<V: Copy> Lpm<V> {
    pub fn insert(&mut self, p: Prefix, v: V) {
        let len = p.len as usize;
        if self.by_len.len() <= len {
            self.by_len.resize_with(len + 1, HashMap::new);
        }
        if let Some(m) = self.by_len.get_mut(len) {
            m.insert(p, v);
        }
    }

    pub fn lookup(&self, family: u8, bytes: [u8; 16]) -> Option<(Prefix, V)> {
        let max = if family == FAMILY_V4 { 32 } else { 128 };
        let full = Prefix {
            family,
            bytes,
            len: max,
        };
        for len in (0..=max.min(self.by_len.len().saturating_sub(1) as u8)).rev() {
            let Some(m) = self.by_len.get(len as usize) else {
                continue;
            };
            if m.is_empty() {
                continue;
            }
            let p = truncate(&full, len);
            if let Some(v) = m.get(&p) {
                return Some((p, *v));
            }
        }
        None
    }
}

fn truncate(p: &Prefix, len: u8) -> Prefix {
    let mut bytes = [0u8; 16];
    for (i, b) in p.bytes.iter().enumerate() {
        let keep = (len as usize).saturating_sub(i * 8).min(8);
        if keep > 0 {
            bytes[i] = b & (0xffu8 << (8 - keep));
        }
    }
    Prefix {
        family: p.family,
        bytes,
        len,
    }
}

/// Address bytes in the LPM layout for `family` (IPv4 in the first four).
pub fn lpm_bytes(family: u8, a: &Addr) -> [u8; 16] {
    if family == FAMILY_V4 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a.v4_octets());
        b
    } else {
        a.octets()
    }
}

/// The compiled policy as lookup tables (slot ignored: there is one policy).
#[derive(Clone, Debug, Default)]
pub struct HostPolicy {
    ports: HashMap<Addr, PortVal>,
    remote: Lpm<u32>,
    hdrs: HashMap<HdrKey, HdrVal>,
    policy: HashMap<PolicyKey, PolicyVal>,
    vpn_remote: Lpm<u32>,
    vpn_local: HashMap<u32, Lpm<()>>,
    peers: HashMap<Addr, PeerVal>,
}

impl HostPolicy {
    pub fn new(c: &Compiled) -> Self {
        let mut h = HostPolicy::default();
        h.ports.extend(c.ports.iter().copied());
        for (p, class) in &c.remote {
            h.remote.insert(*p, *class);
        }
        h.hdrs.extend(c.hdrs.iter().map(|(k, v)| (*k, *v)));
        h.policy.extend(c.policy.iter().map(|(k, v)| (*k, *v)));
        for (p, conn) in &c.vpn_remote {
            h.vpn_remote.insert(*p, *conn + 1);
        }
        for (conn, p) in &c.vpn_local {
            h.vpn_local.entry(*conn).or_default().insert(*p, ());
        }
        for (a, conn) in &c.peers {
            h.peers.insert(*a, PeerVal { conn: conn + 1 });
        }
        h
    }

    /// The prefix (and class) an address falls in, for explanations.
    pub fn remote_match(&self, family: u8, addr: &Addr) -> Option<(Prefix, u32)> {
        self.remote.lookup(family, lpm_bytes(family, addr))
    }
}

/// Keys are compared with slot 0: the host holds one policy.
fn unslot_hdr(k: &HdrKey) -> HdrKey {
    HdrKey { slot: 0, ..*k }
}

impl PolicyMaps for HostPolicy {
    fn port(&self, key: &PortKey) -> Option<&PortVal> {
        self.ports.get(&key.addr)
    }
    fn remote_class(&self, _slot: u8, family: u8, addr: &Addr) -> u32 {
        self.remote_match(family, addr).map_or(0, |(_, c)| c)
    }
    fn hdr(&self, key: &HdrKey) -> Option<&HdrVal> {
        self.hdrs.get(&unslot_hdr(key))
    }
    fn policy(&self, key: &PolicyKey) -> Option<&PolicyVal> {
        self.policy.get(&PolicyKey { slot: 0, ..*key })
    }
    fn vpn_remote(&self, _slot: u8, family: u8, addr: &Addr) -> u32 {
        self.vpn_remote
            .lookup(family, lpm_bytes(family, addr))
            .map_or(0, |(_, c)| c)
    }
    fn vpn_local(&self, _slot: u8, family: u8, conn: u32, addr: &Addr) -> bool {
        self.vpn_local
            .get(&conn)
            .is_some_and(|l| l.lookup(family, lpm_bytes(family, addr)).is_some())
    }
    fn peer(&self, key: &PeerKey) -> Option<&PeerVal> {
        self.peers.get(&key.addr)
    }
}

/// A whole data plane in memory: policy, interfaces, conntrack, counters.
#[derive(Clone, Debug, Default)]
pub struct HostDataplane {
    pub policy: HostPolicy,
    pub ifaces: HashMap<u32, Iface>,
    pub ct: HashMap<CtKey, CtVal>,
    pub frags: HashMap<FragKey, FragVal>,
    pub stats: HashMap<&'static str, (u64, u64)>,
    /// Rule id -> flows admitted.
    pub rule_hits: HashMap<u32, u64>,
    /// Connection id -> (packets, bytes).
    pub conn_stats: HashMap<u32, (u64, u64)>,
}

impl HostDataplane {
    pub fn new(c: &Compiled) -> Self {
        HostDataplane {
            policy: HostPolicy::new(c),
            ..Default::default()
        }
    }
}

impl PolicyMaps for HostDataplane {
    fn port(&self, key: &PortKey) -> Option<&PortVal> {
        self.policy.port(key)
    }
    fn remote_class(&self, slot: u8, family: u8, addr: &Addr) -> u32 {
        self.policy.remote_class(slot, family, addr)
    }
    fn hdr(&self, key: &HdrKey) -> Option<&HdrVal> {
        self.policy.hdr(key)
    }
    fn policy(&self, key: &PolicyKey) -> Option<&PolicyVal> {
        PolicyMaps::policy(&self.policy, key)
    }
    fn vpn_remote(&self, slot: u8, family: u8, addr: &Addr) -> u32 {
        self.policy.vpn_remote(slot, family, addr)
    }
    fn vpn_local(&self, slot: u8, family: u8, conn: u32, addr: &Addr) -> bool {
        self.policy.vpn_local(slot, family, conn, addr)
    }
    fn peer(&self, key: &PeerKey) -> Option<&PeerVal> {
        self.policy.peer(key)
    }
}

impl DataplaneMaps for HostDataplane {
    fn iface(&self, ifindex: u32) -> Option<&Iface> {
        self.ifaces.get(&ifindex)
    }
    fn ct_get(&mut self, key: &CtKey) -> Option<&mut CtVal> {
        self.ct.get_mut(key)
    }
    fn ct_insert(&mut self, key: &CtKey, val: &CtVal) {
        self.ct.insert(*key, *val);
    }
    fn ct_remove(&mut self, key: &CtKey) {
        self.ct.remove(key);
    }
    fn frag_get(&self, key: &FragKey) -> Option<&FragVal> {
        self.frags.get(key)
    }
    fn frag_insert(&mut self, key: &FragKey, val: &FragVal) {
        self.frags.insert(*key, *val);
    }
    fn count(&mut self, reason: Reason, bytes: u64) {
        let e = self.stats.entry(reason.name()).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    fn rule_hit(&mut self, _slot: u8, rule: u32) {
        *self.rule_hits.entry(rule).or_default() += 1;
    }
    fn conn_bytes(&mut self, _slot: u8, conn: u32, bytes: u64) {
        let e = self.conn_stats.entry(conn).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
}

/// The `CONFIG` entry a configuration yields (generation and slot aside).
pub fn runtime_config(cfg: &crate::config::Config, generation: u32, slot: u8) -> Config {
    use vpcgw_common::abi::{WAN_DEFAULT_DROP, WAN_DEFAULT_PASS};
    Config {
        generation,
        slot,
        wan_default: match cfg.gateway.wan_default {
            crate::config::WanDefault::Pass => WAN_DEFAULT_PASS,
            crate::config::WanDefault::Drop => WAN_DEFAULT_DROP,
        },
        flags: 0,
        timeouts: cfg.conntrack.timeouts,
    }
}
