//! Counters of what the AF_XDP sockets received, readable from any thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vpcgw_common::abi::{MAX_CONNS, XskMeta};

/// Policy slots (the double buffer of `vpcgw_common::abi::Config::slot`).
const SLOTS: u32 = 2;

/// Packets and bytes (whole Ethernet frames, as the socket received them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Pair {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Pair {
    fn add(&self, bytes: u64) {
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    /// The two loads are not one atomic read: a reader racing with the
    /// receiver can see a frame's packet without its bytes, never worse.
    fn get(&self) -> Count {
        Count {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

/// The kernel's drop counters (`XDP_STATISTICS`), summed over the sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped: no free chunk on the fill ring, or longer than a
    /// chunk minus headroom.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (receiver too slow).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
}

impl KernelStats {
    fn add(self, o: KernelStats) -> KernelStats {
        KernelStats {
            rx_dropped: self.rx_dropped.wrapping_add(o.rx_dropped),
            rx_invalid_descs: self.rx_invalid_descs.wrapping_add(o.rx_invalid_descs),
            rx_ring_full: self.rx_ring_full.wrapping_add(o.rx_ring_full),
            rx_fill_ring_empty_descs: self
                .rx_fill_ring_empty_descs
                .wrapping_add(o.rx_fill_ring_empty_descs),
        }
    }

    pub(super) fn sum(all: impl IntoIterator<Item = KernelStats>) -> KernelStats {
        all.into_iter()
            .fold(KernelStats::default(), KernelStats::add)
    }
}

/// Frames received, per (policy slot, connection) from the metadata the XDP
/// program attached, plus frames without usable metadata. Fixed size
/// (`2 * MAX_CONNS` counters), written by the receiver thread with relaxed
/// atomics, cheap to read from any other thread.
#[derive(Debug)]
pub struct XskStats {
    conns: Box<[Pair]>,
    no_meta: Pair,
    bad_meta: Pair,
    bad_descs: AtomicU64,
    kernel: [AtomicU64; 4],
}

/// One connection's counters in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnCount {
    pub slot: u32,
    /// Connection id (not +1), as in [`XskMeta::conn`].
    pub conn: u32,
    pub count: Count,
}

/// A copy of [`XskStats`] at one moment (each counter read once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XskStatsSnapshot {
    /// Connections that received anything, by slot then connection.
    pub conns: Vec<ConnCount>,
    pub no_meta: Count,
    pub bad_meta: Count,
    pub bad_descriptors: u64,
    pub kernel: KernelStats,
}

impl Default for XskStats {
    fn default() -> Self {
        Self::new()
    }
}

impl XskStats {
    pub fn new() -> Self {
        Self {
            conns: (0..SLOTS * MAX_CONNS).map(|_| Pair::default()).collect(),
            no_meta: Pair::default(),
            bad_meta: Pair::default(),
            bad_descs: AtomicU64::new(0),
            kernel: Default::default(),
        }
    }

    fn index(slot: u32, conn: u32) -> Option<usize> {
        (slot < SLOTS && conn < MAX_CONNS).then(|| (slot * MAX_CONNS + conn) as usize)
    }

    /// Counts one frame of `bytes` under its metadata: its connection, or
    /// "no metadata", or "bad metadata" (slot or connection out of range).
    pub fn record(&self, meta: Option<&XskMeta>, bytes: u64) {
        let pair = match meta {
            None => &self.no_meta,
            Some(m) => Self::index(m.slot, m.conn)
                .and_then(|i| self.conns.get(i))
                .unwrap_or(&self.bad_meta),
        };
        pair.add(bytes);
    }

    pub(super) fn add_bad_descriptors(&self, n: u64) {
        if n > 0 {
            self.bad_descs.fetch_add(n, Relaxed);
        }
    }

    pub(super) fn set_kernel(&self, k: KernelStats) {
        let [a, b, c, d] = &self.kernel;
        a.store(k.rx_dropped, Relaxed);
        b.store(k.rx_invalid_descs, Relaxed);
        c.store(k.rx_ring_full, Relaxed);
        d.store(k.rx_fill_ring_empty_descs, Relaxed);
    }

    /// Frames of connection `conn` in policy slot `slot`; `None` if out of range.
    pub fn conn(&self, slot: u32, conn: u32) -> Option<Count> {
        Self::index(slot, conn)
            .and_then(|i| self.conns.get(i))
            .map(Pair::get)
    }

    /// Zero the counters of policy `slot` and return what they held, by
    /// connection id. The agent calls it for the outgoing slot at a reload,
    /// so the slot starts clean when a later reload reuses it; frames still
    /// in flight with the old metadata may land after the swap and be
    /// counted there.
    pub fn take_slot(&self, slot: u32) -> Vec<Count> {
        (0..MAX_CONNS)
            .map(|conn| {
                Self::index(slot, conn)
                    .and_then(|i| self.conns.get(i))
                    .map_or_else(Count::default, |p| Count {
                        packets: p.packets.swap(0, Relaxed),
                        bytes: p.bytes.swap(0, Relaxed),
                    })
            })
            .collect()
    }

    /// Frames that came without metadata (the program could not add it).
    pub fn no_meta(&self) -> Count {
        self.no_meta.get()
    }

    /// Frames whose metadata named a slot or connection out of range.
    pub fn bad_meta(&self) -> Count {
        self.bad_meta.get()
    }

    /// RX descriptors the sockets rejected (see `XskSocket::bad_descriptors`).
    pub fn bad_descriptors(&self) -> u64 {
        self.bad_descs.load(Relaxed)
    }

    /// The kernel's counters, as of the receiver's last refresh (about once
    /// a second).
    pub fn kernel(&self) -> KernelStats {
        let [a, b, c, d] = &self.kernel;
        KernelStats {
            rx_dropped: a.load(Relaxed),
            rx_invalid_descs: b.load(Relaxed),
            rx_ring_full: c.load(Relaxed),
            rx_fill_ring_empty_descs: d.load(Relaxed),
        }
    }

    pub fn snapshot(&self) -> XskStatsSnapshot {
        let mut conns = Vec::new();
        for slot in 0..SLOTS {
            for conn in 0..MAX_CONNS {
                if let Some(count) = self.conn(slot, conn).filter(|c| c.packets > 0) {
                    conns.push(ConnCount { slot, conn, count });
                }
            }
        }
        XskStatsSnapshot {
            conns,
            no_meta: self.no_meta(),
            bad_meta: self.bad_meta(),
            bad_descriptors: self.bad_descriptors(),
            kernel: self.kernel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcgw_common::abi::XSK_META_MAGIC;

    fn meta(slot: u32, conn: u32) -> XskMeta {
        XskMeta {
            magic: XSK_META_MAGIC,
            conn,
            generation: 1,
            slot,
        }
    }

    #[test]
    fn frames_land_under_their_connection() {
        let s = XskStats::new();
        s.record(Some(&meta(0, 0)), 100);
        s.record(Some(&meta(0, 0)), 50);
        s.record(Some(&meta(1, MAX_CONNS - 1)), 7);
        s.record(Some(&meta(2, 0)), 1);
        s.record(Some(&meta(0, MAX_CONNS)), 1);
        s.record(None, 60);
        assert_eq!(
            s.conn(0, 0),
            Some(Count {
                packets: 2,
                bytes: 150
            })
        );
        assert_eq!(
            s.conn(1, MAX_CONNS - 1),
            Some(Count {
                packets: 1,
                bytes: 7
            })
        );
        assert_eq!(s.conn(2, 0), None);
        assert_eq!(
            s.bad_meta(),
            Count {
                packets: 2,
                bytes: 2
            }
        );
        assert_eq!(
            s.no_meta(),
            Count {
                packets: 1,
                bytes: 60
            }
        );
        let snap = s.snapshot();
        assert_eq!(
            snap.conns,
            vec![
                ConnCount {
                    slot: 0,
                    conn: 0,
                    count: Count {
                        packets: 2,
                        bytes: 150
                    }
                },
                ConnCount {
                    slot: 1,
                    conn: MAX_CONNS - 1,
                    count: Count {
                        packets: 1,
                        bytes: 7
                    }
                },
            ]
        );
    }
}
