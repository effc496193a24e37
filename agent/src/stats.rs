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
use crate::xsk::XskStats;

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
    conns: HashMap<String, (u64, u64)>,
    pub swept: u64,
}

fn rule_key(cfg: &Config, c: &Compiled, id: usize) -> Option<(String, String)> {
    let r = c.rules.get(id)?;
    let g = cfg.groups.get(r.group)?;
    let rule = g.rules.get(r.index)?;
    Some((g.name.clone(), rule_text(cfg, rule)))
}

impl Totals {
    /// Fold the counters of the policy about to be replaced.
    pub fn carry(&mut self, cfg: &Config, c: &Compiled, now: &Counters) {
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
                let v = counters.reasons.get(*r as usize).copied().unwrap_or_default();
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
                let before = totals.rules.get(&(group.clone(), rule.clone())).copied().unwrap_or(0);
                Some(RuleStat {
                    index: c.rules.get(id).map_or(0, |r| r.index),
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
                let (frames, bytes) = xsk.conn(dp.slot(), id as u32);
                ConnStat {
                    name: conn.name.clone(),
                    peer: conn.peer_address.to_string(),
                    packets: now.packets + before.0,
                    bytes: now.bytes + before.1,
                    xsk_frames: frames,
                    xsk_bytes: bytes,
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
            let _ = writeln!(s, "  interface {} (ifindex {}, {} XDP)", i.name, i.ifindex, i.mode);
        }
        let _ = writeln!(s, "packets by verdict:");
        for r in self.reasons.iter().filter(|r| r.packets > 0) {
            let _ = writeln!(s, "  {:<32} {:>12} pkts {:>14} bytes", r.name, r.packets, r.bytes);
        }
        let _ = writeln!(s, "flows admitted by rule:");
        for r in &self.rules {
            let _ = writeln!(s, "  {:>10}  {} rule {}: {}", r.flows, r.group, r.index, r.rule);
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
        s
    }
}
