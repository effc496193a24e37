//! What `vpcgw stats` shows: the data plane's counters under names.
//!
//! Rule and connection ids change with every policy; names do not. Before a
//! reload the agent folds the outgoing policy's counters into [`Totals`],
//! keyed by (group, rule text) and connection name, so counters survive
//! reloads as long as the thing they count does.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vpcgw_common::stats::Reason;

use crate::compile::Compiled;
use crate::config::Config;
use crate::dataplane::{Counters, Dataplane};
use crate::explain::rule_text;
use crate::xsk::{Count, XskStats};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub gateway: String,
    pub generation: u32,
    pub uptime_secs: u64,
    pub interfaces: Vec<IfaceStat>,
    pub reasons: Vec<ReasonStat>,
    pub rules: Vec<RuleStat>,
    pub connections: Vec<ConnStat>,
    pub conntrack: CtStat,
    pub xsk: XskStat,
}

/// The crypto path's AF_XDP sockets, beyond per-connection counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct XskStat {
    /// Frames that arrived without the program's metadata.
    pub no_meta_frames: u64,
    /// Frames whose metadata named an unknown slot or connection.
    pub bad_meta_frames: u64,
    /// RX descriptors refused as malformed.
    pub bad_descriptors: u64,
    /// The kernel's drops (no room in the UMEM, ring full).
    pub rx_dropped: u64,
    pub rx_ring_full: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IfaceStat {
    pub name: String,
    pub ifindex: u32,
    pub mode: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReasonStat {
    pub name: String,
    pub drop: bool,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleStat {
    pub group: String,
    /// Position in the group, from 1 (as configuration messages count).
    pub index: usize,
    pub rule: String,
    /// Flows this rule admitted (the first matching rule is credited).
    pub flows: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnStat {
    pub name: String,
    pub peer: String,
    /// VPN-bound packets/bytes the XDP program handed to the crypto path.
    pub packets: u64,
    pub bytes: u64,
    /// Frames the crypto path's AF_XDP sockets received for it.
    pub xsk_frames: u64,
    pub xsk_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CtStat {
    pub entries: u64,
    pub max_entries: u32,
    /// Entries the agent's sweeps removed since start.
    pub swept: u64,
}

/// Counters of earlier policies, by name.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    rules: HashMap<(String, String), u64>,
    /// Connection name -> (packets, bytes) handed to the crypto path.
    conns: HashMap<String, (u64, u64)>,
    /// Connection name -> (frames, bytes) the AF_XDP sockets received.
    xsk: HashMap<String, (u64, u64)>,
    pub swept: u64,
}

fn rule_key(cfg: &Config, c: &Compiled, id: usize) -> Option<(String, String)> {
    let r = c.rules.get(id)?;
    let g = cfg.groups.get(r.group)?;
    let rule = g.rules.get(r.index)?;
    Some((g.name.clone(), rule_text(cfg, rule)))
}

impl Totals {
    /// Fold the counters of the policy about to be replaced: the program's
    /// (`now`) and the AF_XDP receiver's for its slot (`xsk`, by connection).
    pub fn carry(&mut self, cfg: &Config, c: &Compiled, now: &Counters, xsk: &[Count]) {
        for (id, n) in xsk.iter().enumerate() {
            if let Some(conn) = cfg.connections.get(id) {
                let e = self.xsk.entry(conn.name.clone()).or_default();
                e.0 += n.packets;
                e.1 += n.bytes;
            }
        }
        for (id, hits) in now.rule_hits.iter().enumerate() {
            if let Some(k) = rule_key(cfg, c, id) {
                *self.rules.entry(k).or_default() += hits;
            }
        }
        for (id, ctr) in now.conns.iter().enumerate() {
            if let Some(conn) = cfg.connections.get(id) {
                let e = self.conns.entry(conn.name.clone()).or_default();
                e.0 += ctr.packets;
                e.1 += ctr.bytes;
            }
        }
    }
}

impl Snapshot {
    pub fn take(
        dp: &Dataplane,
        cfg: &Config,
        c: &Compiled,
        totals: &Totals,
        xsk: &XskStats,
        started: Instant,
    ) -> Snapshot {
        let counters = dp.counters().unwrap_or_default();
        let reasons = Reason::ALL
            .iter()
            .map(|r| {
                let v = counters
                    .reasons
                    .get(*r as usize)
                    .copied()
                    .unwrap_or_default();
                ReasonStat {
                    name: r.name().to_string(),
                    drop: r.is_drop(),
                    packets: v.packets,
                    bytes: v.bytes,
                }
            })
            .collect();
        let rules = (0..c.rules.len())
            .filter_map(|id| {
                let (group, rule) = rule_key(cfg, c, id)?;
                let now = counters.rule_hits.get(id).copied().unwrap_or(0);
                let before = totals
                    .rules
                    .get(&(group.clone(), rule.clone()))
                    .copied()
                    .unwrap_or(0);
                Some(RuleStat {
                    index: c.rules.get(id).map_or(0, |r| r.index + 1),
                    group,
                    rule,
                    flows: now + before,
                })
            })
            .collect();
        let connections = cfg
            .connections
            .iter()
            .enumerate()
            .map(|(id, conn)| {
                let now = counters.conns.get(id).copied().unwrap_or_default();
                let before = totals.conns.get(&conn.name).copied().unwrap_or_default();
                let rx = xsk.conn(dp.slot() as u32, id as u32).unwrap_or_default();
                let rx_before = totals.xsk.get(&conn.name).copied().unwrap_or_default();
                ConnStat {
                    name: conn.name.clone(),
                    peer: conn.peer_address.to_string(),
                    packets: now.packets + before.0,
                    bytes: now.bytes + before.1,
                    xsk_frames: rx.packets + rx_before.0,
                    xsk_bytes: rx.bytes + rx_before.1,
                }
            })
            .collect();
        Snapshot {
            gateway: cfg.gateway.name.clone(),
            generation: dp.generation(),
            uptime_secs: started.elapsed().as_secs(),
            interfaces: dp
                .attached()
                .iter()
                .map(|a| IfaceStat {
                    name: a.ifname.clone(),
                    ifindex: a.ifindex,
                    mode: a.mode.to_string(),
                })
                .collect(),
            reasons,
            rules,
            connections,
            conntrack: CtStat {
                entries: dp.ct_entries().map_or(0, |v| v.len() as u64),
                max_entries: cfg.conntrack.max_entries,
                swept: totals.swept,
            },
            xsk: {
                let k = xsk.kernel();
                XskStat {
                    no_meta_frames: xsk.no_meta().packets,
                    bad_meta_frames: xsk.bad_meta().packets,
                    bad_descriptors: xsk.bad_descriptors(),
                    rx_dropped: k.rx_dropped,
                    rx_ring_full: k.rx_ring_full,
                }
            },
        }
    }

    /// The human rendering of `vpcgw stats`.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "gateway {}  policy generation {}  up {}s",
            self.gateway, self.generation, self.uptime_secs
        );
        for i in &self.interfaces {
            let _ = writeln!(
                s,
                "  interface {} (ifindex {}, {} XDP)",
                i.name, i.ifindex, i.mode
            );
        }
        let _ = writeln!(s, "packets by verdict:");
        for r in self.reasons.iter().filter(|r| r.packets > 0) {
            let _ = writeln!(
                s,
                "  {:<32} {:>12} pkts {:>14} bytes",
                r.name, r.packets, r.bytes
            );
        }
        let _ = writeln!(s, "flows admitted by rule:");
        for r in &self.rules {
            let _ = writeln!(
                s,
                "  {:>10}  {} rule {}: {}",
                r.flows, r.group, r.index, r.rule
            );
        }
        let _ = writeln!(s, "connections:");
        for c in &self.connections {
            let _ = writeln!(
                s,
                "  {} (peer {}): {} pkts / {} bytes to the crypto path; AF_XDP received {} frames / {} bytes",
                c.name, c.peer, c.packets, c.bytes, c.xsk_frames, c.xsk_bytes
            );
        }
        let _ = writeln!(
            s,
            "conntrack: {} entries (max {}), {} swept",
            self.conntrack.entries, self.conntrack.max_entries, self.conntrack.swept
        );
        let x = &self.xsk;
        let _ = writeln!(
            s,
            "AF_XDP: {} frames without metadata, {} with bad metadata, {} bad descriptors, \
             {} dropped by the kernel ({} ring full)",
            x.no_meta_frames, x.bad_meta_frames, x.bad_descriptors, x.rx_dropped, x.rx_ring_full
        );
        s
    }
}
