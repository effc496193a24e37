//! The policy compiler: a validated [`Config`] becomes the contents of the
//! data plane's maps.
//!
//! The point is a per-packet cost that does not depend on how many rules
//! there are. Rules are cut along three axes, each resolved by one lookup:
//!
//! 1. **Local side**: ports carrying the same security groups share a *group
//!    set*; `PORTS` maps an address to its set.
//! 2. **Remote side**: every rule prefix and every address of a port in a
//!    group used as `remote_group` goes into an LPM trie (`REMOTE_V4/V6`). The
//!    value is a *remote class*: the identity of the set of rule prefixes and
//!    groups that contain the address. Longest match suffices because prefixes
//!    holding one address are nested: the longest one's containing set holds
//!    all the others. Class 0 means "inside no rule prefix".
//! 3. **Protocol and port**: for each (set, direction, family, class,
//!    protocol) cell, the port ranges of the rules that apply are cut into
//!    disjoint intervals, each owned by the first rule covering it, and each
//!    interval into aligned prefix blocks (masked ports). `POLICY_HDR` says
//!    which block lengths exist in a cell, `POLICY` holds the blocks.
//!
//! Rules open to any remote are folded into every class; rules for any
//! protocol are folded into every protocol's header. That trades memory for
//! lookups; the compiler refuses a policy that would not fit the maps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use vpcgw_common::Addr;
use vpcgw_common::abi::{
    DIR_EGRESS, DIR_INGRESS, FAMILY_V4, FAMILY_V6, HdrKey, HdrVal, MAX_CONNS, MAX_RULES,
    POLICY_ENTRIES, POLICY_HDR_ENTRIES, PORT_ENTRIES, PORT_HAS_MAC, PROTO_ANY, PolicyKey,
    PolicyVal, PortVal, REMOTE_ENTRIES, VPN_ENTRIES,
};
use vpcgw_common::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use crate::config::{Config, Direction, Ethertype, PortRange, Protocol, Remote, Rule};

/// Why a valid configuration could not be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error(
        "the compiled policy needs {needed} entries in {map}, which holds {capacity} per policy \
         slot; {hint}"
    )]
    TooLarge {
        map: &'static str,
        needed: usize,
        capacity: usize,
        hint: &'static str,
    },
}

/// An IP prefix as the LPM tries store it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub family: u8,
    /// Address bytes (IPv4 in the first four), host bits clear.
    pub bytes: [u8; 16],
    pub len: u8,
}

impl Prefix {
    pub fn from_net(net: &IpNet) -> Self {
        let net = net.trunc();
        match net {
            IpNet::V4(n) => {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&n.network().octets());
                Prefix {
                    family: FAMILY_V4,
                    bytes,
                    len: n.prefix_len(),
                }
            }
            IpNet::V6(n) => Prefix {
                family: FAMILY_V6,
                bytes: n.network().octets(),
                len: n.prefix_len(),
            },
        }
    }

    pub fn host(ip: IpAddr) -> Self {
        Self::from_net(&IpNet::from(ip))
    }

    /// The same prefix cut to `len` bits.
    fn truncate(&self, len: u8) -> Self {
        let mut bytes = [0u8; 16];
        for (i, b) in self.bytes.iter().enumerate() {
            let bit = (i * 8) as u32;
            let keep = (len as u32).saturating_sub(bit).min(8);
            let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            bytes[i] = b & mask;
        }
        Prefix {
            family: self.family,
            bytes,
            len,
        }
    }

    pub fn max_len(&self) -> u8 {
        if self.family == FAMILY_V4 { 32 } else { 128 }
    }

    pub fn contains_addr(&self, a: &Addr) -> bool {
        let bytes = if a.is_v4() {
            if self.family != FAMILY_V4 {
                return false;
            }
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.v4_octets());
            b
        } else {
            if self.family != FAMILY_V6 {
                return false;
            }
            a.octets()
        };
        let me = Prefix {
            family: self.family,
            bytes,
            len: self.max_len(),
        };
        me.truncate(self.len) == *self
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.family == FAMILY_V4 {
            let [a, b, c, d, ..] = self.bytes;
            write!(f, "{a}.{b}.{c}.{d}/{}", self.len)
        } else {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.bytes), self.len)
        }
    }
}

/// Where a compiled rule id comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub group: usize,
    /// Index within the group's rules.
    pub index: usize,
}

/// The maps' contents for one policy slot. Keys carry slot 0; the loader
/// rewrites the slot when it installs them.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// `PORTS`: address -> port value.
    pub ports: Vec<(Addr, PortVal)>,
    /// `REMOTE_V4`/`REMOTE_V6`: prefix -> remote class.
    pub remote: Vec<(Prefix, u32)>,
    pub hdrs: BTreeMap<HdrKey, HdrVal>,
    pub policy: BTreeMap<PolicyKey, PolicyVal>,
    /// `VPN_REMOTE_*`: remote subnet -> connection id.
    pub vpn_remote: Vec<(Prefix, u32)>,
    /// `VPN_LOCAL_*`: (connection id, local subnet).
    pub vpn_local: Vec<(u32, Prefix)>,
    /// `PEERS`: peer gateway address -> connection id.
    pub peers: Vec<(Addr, u32)>,
    /// Rule id -> where it is in the configuration.
    pub rules: Vec<RuleRef>,
    /// Group set id -> the groups in it.
    pub sets: Vec<Vec<usize>>,
    /// Remote class id -> what it stands for (class 0: nothing).
    pub classes: Vec<ClassInfo>,
}

/// What a remote class stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassInfo {
    /// Rule prefixes containing the class's addresses.
    pub prefixes: Vec<Prefix>,
    /// Groups (used as remote_group) whose ports own the class's address.
    pub groups: Vec<usize>,
}

/// Compile `cfg`. Deterministic: the same configuration gives the same maps.
pub fn compile(cfg: &Config) -> Result<Compiled, CompileError> {
    let mut out = Compiled::default();

    // Rule ids, in file order.
    let mut rule_ids: HashMap<(usize, usize), u32> = HashMap::new();
    for (g, group) in cfg.groups.iter().enumerate() {
        for i in 0..group.rules.len() {
            rule_ids.insert((g, i), out.rules.len() as u32);
            out.rules.push(RuleRef { group: g, index: i });
        }
    }
    check_capacity(
        "RULE_HITS",
        out.rules.len(),
        MAX_RULES,
        "split the rules over fewer, broader rules",
    )?;
    check_capacity(
        "CONN_STATS",
        cfg.connections.len(),
        MAX_CONNS,
        "run fewer connections per gateway",
    )?;

    // 1. Group sets and ports.
    let mut set_ids: BTreeMap<Vec<usize>, u32> = BTreeMap::new();
    for (idx, port) in cfg.ports.iter().enumerate() {
        let mut groups = port.groups.clone();
        groups.sort_unstable();
        groups.dedup();
        let next = set_ids.len() as u32;
        let set = *set_ids.entry(groups.clone()).or_insert_with(|| {
            out.sets.push(groups);
            next
        });
        for ip in &port.addresses {
            out.ports.push((
                Addr::from(*ip),
                PortVal {
                    port: idx as u32,
                    set,
                    mac: port.mac.unwrap_or([0; 6]),
                    flags: if port.mac.is_some() { PORT_HAS_MAC } else { 0 },
                    _pad: 0,
                },
            ));
        }
    }
    check_capacity(
        "PORTS",
        out.ports.len(),
        PORT_ENTRIES / 2,
        "fewer port addresses",
    )?;

    // 2. Remote classes.
    let remote_groups: BTreeSet<usize> = cfg
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter_map(|r| match r.remote {
            Remote::Group(g) => Some(g),
            _ => None,
        })
        .collect();
    let rule_prefixes: BTreeSet<Prefix> = cfg
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter_map(|r| match &r.remote {
            Remote::Prefix(n) => Some(Prefix::from_net(n)),
            _ => None,
        })
        .collect();
    // Address -> groups (among those used as remote_group) of the port owning it.
    let mut member_of: BTreeMap<Prefix, Vec<usize>> = BTreeMap::new();
    for port in &cfg.ports {
        let gs: Vec<usize> = port
            .groups
            .iter()
            .copied()
            .filter(|g| remote_groups.contains(g))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if gs.is_empty() {
            continue;
        }
        for ip in &port.addresses {
            member_of.entry(Prefix::host(*ip)).or_default().extend(&gs);
        }
    }
    let mut atoms: BTreeSet<Prefix> = rule_prefixes.clone();
    atoms.extend(member_of.keys().copied());

    let mut class_ids: HashMap<ClassInfo, u32> = HashMap::new();
    out.classes.push(ClassInfo::default());
    class_ids.insert(ClassInfo::default(), 0);
    for atom in &atoms {
        let mut info = ClassInfo::default();
        for len in 0..=atom.len {
            let p = atom.truncate(len);
            if rule_prefixes.contains(&p) {
                info.prefixes.push(p);
            }
        }
        if let Some(gs) = member_of.get(atom) {
            info.groups = gs.clone();
            info.groups.sort_unstable();
            info.groups.dedup();
        }
        let next = out.classes.len() as u32;
        let class = *class_ids.entry(info.clone()).or_insert_with(|| {
            out.classes.push(info);
            next
        });
        out.remote.push((*atom, class));
    }
    check_capacity(
        "REMOTE_V4/REMOTE_V6",
        out.remote.len(),
        REMOTE_ENTRIES / 2,
        "fewer distinct remote prefixes",
    )?;

    // 3. Cells. Rules indexed by what they accept as remote, so each class
    // only looks at the rules that can apply to it.
    let mut any_rules: Vec<u32> = Vec::new();
    let mut by_prefix: HashMap<Prefix, Vec<u32>> = HashMap::new();
    let mut by_group: HashMap<usize, Vec<u32>> = HashMap::new();
    for (id, r) in out.rules.iter().enumerate() {
        let rule = &cfg.groups[r.group].rules[r.index];
        match &rule.remote {
            Remote::Any => any_rules.push(id as u32),
            Remote::Prefix(n) => by_prefix
                .entry(Prefix::from_net(n))
                .or_default()
                .push(id as u32),
            Remote::Group(g) => by_group.entry(*g).or_default().push(id as u32),
        }
    }
    let rule_of = |id: u32| -> &Rule {
        let r = out.rules[id as usize];
        &cfg.groups[r.group].rules[r.index]
    };
    let group_of = |id: u32| out.rules[id as usize].group;

    for (set_id, groups) in out.sets.iter().enumerate() {
        let in_set: HashSet<usize> = groups.iter().copied().collect();
        for (class_id, info) in out.classes.iter().enumerate() {
            let mut candidates: Vec<u32> = any_rules.clone();
            for p in &info.prefixes {
                if let Some(ids) = by_prefix.get(p) {
                    candidates.extend(ids);
                }
            }
            for g in &info.groups {
                if let Some(ids) = by_group.get(g) {
                    candidates.extend(ids);
                }
            }
            candidates.retain(|id| in_set.contains(&group_of(*id)));
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_unstable();
            candidates.dedup();
            for (dir, dir_key) in [
                (Direction::Ingress, DIR_INGRESS),
                (Direction::Egress, DIR_EGRESS),
            ] {
                // A class may hold addresses of both families (class 0, or a
                // group's members); the family in the key keeps them apart.
                for (eth, family) in [(Ethertype::IPv4, FAMILY_V4), (Ethertype::IPv6, FAMILY_V6)] {
                    let rules: Vec<u32> = candidates
                        .iter()
                        .copied()
                        .filter(|id| {
                            let r = rule_of(*id);
                            r.direction == dir && r.ethertype == eth
                        })
                        .collect();
                    if rules.is_empty() {
                        continue;
                    }
                    let cell = Cell {
                        set: set_id as u32,
                        class: class_id as u32,
                        dir: dir_key,
                        family,
                    };
                    emit_cell(&mut out.hdrs, &mut out.policy, cell, &rules, &rule_of);
                }
            }
        }
    }
    check_capacity(
        "POLICY_HDR",
        out.hdrs.len(),
        POLICY_HDR_ENTRIES / 2,
        "fewer group sets or remote prefixes",
    )?;
    check_capacity(
        "POLICY",
        out.policy.len(),
        POLICY_ENTRIES / 2,
        "fewer distinct port ranges, or ranges aligned to powers of two",
    )?;

    // 4. VPN classification and peers.
    for (c, conn) in cfg.connections.iter().enumerate() {
        for n in &conn.remote_subnets {
            out.vpn_remote.push((Prefix::from_net(n), c as u32));
        }
        for n in &conn.local_subnets {
            out.vpn_local.push((c as u32, Prefix::from_net(n)));
        }
        out.peers.push((Addr::from(conn.peer_address), c as u32));
    }
    check_capacity(
        "VPN_REMOTE/VPN_LOCAL",
        out.vpn_remote.len().max(out.vpn_local.len()),
        VPN_ENTRIES / 2,
        "fewer subnets per connection",
    )?;
    Ok(out)
}

fn check_capacity(
    map: &'static str,
    needed: usize,
    capacity: u32,
    hint: &'static str,
) -> Result<(), CompileError> {
    if needed > capacity as usize {
        return Err(CompileError::TooLarge {
            map,
            needed,
            capacity: capacity as usize,
            hint,
        });
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Cell {
    set: u32,
    class: u32,
    dir: u8,
    family: u8,
}

/// The protocol number a rule matches in keys.
fn proto_key(p: Protocol) -> u8 {
    match p {
        Protocol::Any => PROTO_ANY,
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
        Protocol::Icmp => IPPROTO_ICMP,
        Protocol::Icmpv6 => IPPROTO_ICMPV6,
        Protocol::Number(n) => n,
    }
}

/// The rule's range of policy ports (inclusive).
fn port_span(r: &Rule) -> (u32, u32) {
    match r.ports {
        None => (0, 0xffff),
        Some(PortRange::Ports { min, max }) => (min as u32, max as u32),
        Some(PortRange::Icmp { ty, code: Some(c) }) => {
            let v = ((ty as u32) << 8) | c as u32;
            (v, v)
        }
        Some(PortRange::Icmp { ty, code: None }) => ((ty as u32) << 8, ((ty as u32) << 8) | 0xff),
    }
}

/// Emit the header and blocks of one cell. `rules` are sorted by id, so the
/// first rule covering a port owns it (and is the one credited with hits).
fn emit_cell<'c>(
    hdrs: &mut BTreeMap<HdrKey, HdrVal>,
    policy: &mut BTreeMap<PolicyKey, PolicyVal>,
    cell: Cell,
    rules: &[u32],
    rule_of: &impl Fn(u32) -> &'c Rule,
) {
    let any_rule = rules
        .iter()
        .copied()
        .find(|id| rule_of(*id).protocol == Protocol::Any)
        .map_or(0, |id| id + 1);
    let mut protos: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for id in rules {
        let p = proto_key(rule_of(*id).protocol);
        if p != PROTO_ANY {
            protos.entry(p).or_default().push(*id);
        }
    }
    let hdr_key = |proto: u8| HdrKey {
        set: cell.set,
        class: cell.class,
        slot: 0,
        dir: cell.dir,
        family: cell.family,
        proto,
    };
    if any_rule != 0 {
        hdrs.insert(hdr_key(PROTO_ANY), HdrVal { plens: 0, any_rule });
    }
    // "Any protocol" rules take part in every protocol's intervals, so the
    // owner of a port is the first matching rule in file order, whatever its
    // protocol (and the one credited with the flow).
    let any_spans: Vec<(u32, u32, u32)> = rules
        .iter()
        .filter(|id| rule_of(**id).protocol == Protocol::Any)
        .map(|id| (0, 0xffff, *id))
        .collect();
    for (proto, ids) in protos {
        let mut spans: Vec<(u32, u32, u32)> = ids
            .iter()
            .map(|id| {
                let (lo, hi) = port_span(rule_of(*id));
                (lo, hi, *id)
            })
            .collect();
        spans.extend_from_slice(&any_spans);
        let mut plens = 0u32;
        for (lo, hi, id) in owned_intervals(&spans) {
            for (port, plen) in prefix_blocks(lo, hi) {
                plens |= 1 << plen;
                policy.insert(
                    PolicyKey {
                        set: cell.set,
                        class: cell.class,
                        slot: 0,
                        dir: cell.dir,
                        family: cell.family,
                        proto,
                        plen,
                        _pad: 0,
                        port,
                    },
                    PolicyVal { rule: id + 1 },
                );
            }
        }
        hdrs.insert(hdr_key(proto), HdrVal { plens, any_rule });
    }
}

/// Cut overlapping `(lo, hi, rule)` spans into disjoint intervals, each owned
/// by the lowest rule id covering it; adjacent intervals of one rule merge.
fn owned_intervals(spans: &[(u32, u32, u32)]) -> Vec<(u32, u32, u32)> {
    let mut cuts: BTreeSet<u32> = BTreeSet::new();
    for &(lo, hi, _) in spans {
        cuts.insert(lo);
        cuts.insert(hi + 1);
    }
    let cuts: Vec<u32> = cuts.into_iter().collect();
    let mut out: Vec<(u32, u32, u32)> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let owner = spans
            .iter()
            .filter(|(a, b, _)| *a <= lo && hi <= *b)
            .map(|(_, _, id)| *id)
            .min();
        let Some(owner) = owner else { continue };
        match out.last_mut() {
            Some(last) if last.2 == owner && last.1 + 1 == lo => last.1 = hi,
            _ => out.push((lo, hi, owner)),
        }
    }
    out
}

/// Split `[lo, hi]` (within 0..=0xffff) into aligned blocks `(value, plen)`.
pub fn prefix_blocks(mut lo: u32, hi: u32) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    while lo <= hi {
        // Largest aligned block starting at lo that stays within hi.
        let mut size: u32 = if lo == 0 {
            1 << 16
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        let plen = 16 - size.trailing_zeros() as u8;
        out.push((lo as u16, plen));
        lo += size;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests;
