//! The single-producer/single-consumer rings shared with the kernel.
//!
//! Each ring is a mapping holding a producer index, a consumer index, a flags
//! word and a power-of-two array of entries, at offsets the kernel reports
//! (`XDP_MMAP_OFFSETS`). Indices are free-running `u32`s; entry `i` lives at
//! `i & (size - 1)`. The producer writes entries, then publishes them with a
//! release store of the producer index; the consumer reads the producer index
//! with an acquire load, reads the entries, then hands the slots back with a
//! release store of the consumer index. Each side caches the other's index
//! and re-reads it only when the cached value is not enough.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::Mmap;

/// An RX (or TX) ring entry: `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Desc {
    /// Offset of the frame's first byte in the UMEM.
    pub addr: u64,
    pub len: u32,
    /// `XDP_PKT_CONTD` for multi-buffer frames (never set without `XDP_USE_SG`).
    pub options: u32,
}

const _: () = assert!(core::mem::size_of::<Desc>() == 16);

/// Size of a fill (or completion) ring entry: a UMEM offset.
pub(super) const ADDR_ENTRY: usize = core::mem::size_of::<u64>();
/// Size of an RX (or TX) ring entry.
pub(super) const DESC_ENTRY: usize = core::mem::size_of::<Desc>();

/// A mapped ring, its layout checked against the mapping.
#[derive(Debug)]
pub(super) struct Ring {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<u8>,
    entry: usize,
    size: u32,
    /// Held for ownership: the pointers above point into it.
    _map: Mmap,
}

impl Ring {
    /// Bytes to map for a ring of `size` entries of `entry` bytes.
    pub(super) fn map_len(off: &libc::xdp_ring_offset, size: u32, entry: usize) -> Option<usize> {
        let entries = usize::try_from(size).ok()?.checked_mul(entry)?;
        usize::try_from(off.desc).ok()?.checked_add(entries)
    }

    /// Checks that the index words and `size` entries of `entry` bytes lie,
    /// aligned and without overlapping, inside `map`.
    pub(super) fn new(
        map: Mmap,
        off: &libc::xdp_ring_offset,
        size: u32,
        entry: usize,
    ) -> Result<Self, &'static str> {
        if !size.is_power_of_two() {
            return Err("ring size is not a power of two");
        }
        let end = Self::map_len(off, size, entry).ok_or("ring layout overflows")?;
        if end > map.len() {
            return Err("ring entries end past the mapping");
        }
        let desc = usize::try_from(off.desc).map_err(|_| "ring entry offset out of range")?;
        if desc % entry.max(1) != 0 || desc % 8 != 0 {
            return Err("ring entries are misaligned");
        }
        // The mapping starts on a page boundary, so an aligned offset gives an
        // aligned address.
        let word = |o: u64| -> Result<NonNull<AtomicU32>, &'static str> {
            let o = usize::try_from(o).map_err(|_| "ring index offset out of range")?;
            if o % core::mem::align_of::<AtomicU32>() != 0 {
                return Err("ring index is misaligned");
            }
            // Index words sit before the entries (the kernel's struct
            // xdp_ring), so atomics and plain entry accesses never overlap.
            if o.checked_add(4).is_none_or(|e| e > desc) {
                return Err("ring index overlaps the entries");
            }
            // SAFETY: o + 4 <= desc <= end <= map.len(): inside the mapping.
            let p = unsafe { map.as_ptr().add(o) };
            NonNull::new(p.cast::<AtomicU32>()).ok_or("null ring index")
        };
        let producer = word(off.producer)?;
        let consumer = word(off.consumer)?;
        let flags = word(off.flags)?;
        // SAFETY: desc <= end <= map.len(): inside (or one past) the mapping.
        let entries = unsafe { map.as_ptr().add(desc) };
        let entries = NonNull::new(entries).ok_or("null ring entries")?;
        Ok(Self {
            producer,
            consumer,
            flags,
            entries,
            entry,
            size,
            _map: map,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: aligned, inside the mapping `self.map`, which lives as long
        // as `self`; both sides access the word only atomically (the kernel
        // with READ_ONCE/WRITE_ONCE/smp_load_acquire/smp_store_release).
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }

    fn mask(&self) -> u32 {
        self.size - 1
    }

    /// Pointer to the entry for free-running index `idx`.
    fn slot(&self, idx: u32) -> *mut u8 {
        let i = (idx & self.mask()) as usize;
        // SAFETY: i < size, and `new` checked desc + size * entry <= map.len().
        unsafe { self.entries.as_ptr().add(i * self.entry) }
    }
}

/// The fill ring: we produce free UMEM chunks, the kernel consumes them.
#[derive(Debug)]
pub(super) struct FillRing {
    ring: Ring,
    prod: u32,
    cons: u32,
}

impl FillRing {
    pub(super) fn new(ring: Ring) -> Self {
        let prod = ring.producer().load(Ordering::Relaxed);
        let cons = ring.consumer().load(Ordering::Acquire);
        Self { ring, prod, cons }
    }

    /// Slots free for producing, re-reading the kernel's consumer index only
    /// when the cached one shows fewer than `want`.
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let cached = self.free_cached();
        if cached >= want {
            return cached;
        }
        // Acquire: the kernel has finished reading the slots it released.
        self.cons = self.ring.consumer().load(Ordering::Acquire);
        self.free_cached()
    }

    fn free_cached(&self) -> u32 {
        // A consumer index ahead of ours would be a kernel bug; saturating
        // turns it into "no room" rather than an overrun.
        self.ring
            .size
            .saturating_sub(self.prod.wrapping_sub(self.cons))
    }

    /// Writes the `i`th entry after the last submitted one; `i` must be below
    /// what [`FillRing::free`] returned (the index is masked either way).
    pub(super) fn write(&mut self, i: u32, addr: u64) {
        let p = self.ring.slot(self.prod.wrapping_add(i)).cast::<u64>();
        // SAFETY: `slot` returns an in-bounds entry, 8-byte aligned (`new`
        // checked the entry offset); the kernel does not read the slot until
        // we publish it in `submit`.
        unsafe { p.write_volatile(addr) };
    }

    /// Publishes `n` written entries.
    pub(super) fn submit(&mut self, n: u32) {
        self.prod = self.prod.wrapping_add(n);
        // Release: the entries are written before the kernel sees the index.
        self.ring.producer().store(self.prod, Ordering::Release);
    }

    /// The kernel asks to be woken (`XDP_USE_NEED_WAKEUP`, zero-copy drivers).
    pub(super) fn needs_wakeup(&self) -> bool {
        self.ring.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The RX ring: the kernel produces received frames, we consume them.
#[derive(Debug)]
pub(super) struct RxRing {
    ring: Ring,
    cons: u32,
}

impl RxRing {
    pub(super) fn new(ring: Ring) -> Self {
        let cons = ring.consumer().load(Ordering::Relaxed);
        Self { ring, cons }
    }

    /// Number of entries ready, at most `max`.
    pub(super) fn ready(&mut self, max: u32) -> u32 {
        // Acquire: entries below the producer index are fully written.
        let prod = self.ring.producer().load(Ordering::Acquire);
        // More than `size` would be a kernel bug: never read past one lap.
        prod.wrapping_sub(self.cons).min(self.ring.size).min(max)
    }

    /// The `i`th ready entry; `i` must be below what [`RxRing::ready`] returned.
    pub(super) fn read(&self, i: u32) -> Desc {
        let p = self.ring.slot(self.cons.wrapping_add(i)).cast::<Desc>();
        // SAFETY: `slot` returns an in-bounds entry, 8-byte aligned; the
        // kernel wrote it before publishing its producer index (acquired in
        // `ready`) and will not touch it until we release it. Every bit
        // pattern is a valid `Desc`.
        unsafe { p.read_volatile() }
    }

    /// Hands `n` read entries back to the kernel.
    pub(super) fn release(&mut self, n: u32) {
        self.cons = self.cons.wrapping_add(n);
        // Release: our reads of the entries happen before the kernel reuses them.
        self.ring.consumer().store(self.cons, Ordering::Release);
    }
}

#[cfg(test)]
pub(super) mod fake {
    //! Rings over anonymous memory, with the kernel's side played by the test.
    use super::*;

    /// A layout like the kernel's: indices on separate cache lines.
    pub(in super::super) const OFFSETS: libc::xdp_ring_offset = libc::xdp_ring_offset {
        producer: 0,
        consumer: 64,
        flags: 128,
        desc: 192,
    };

    pub(in super::super) fn ring(size: u32, entry: usize) -> std::io::Result<Ring> {
        let len = Ring::map_len(&OFFSETS, size, entry).unwrap_or(0);
        let map = Mmap::anonymous(len)?;
        Ring::new(map, &OFFSETS, size, entry).map_err(std::io::Error::other)
    }

    /// The kernel's view: raw access to a ring's indices and entries.
    pub(in super::super) struct Kernel<'a>(pub &'a Ring);

    impl Kernel<'_> {
        pub(in super::super) fn producer(&self) -> u32 {
            self.0.producer().load(Ordering::Acquire)
        }
        pub(in super::super) fn consumer(&self) -> u32 {
            self.0.consumer().load(Ordering::Acquire)
        }
        pub(in super::super) fn set_producer(&self, v: u32) {
            self.0.producer().store(v, Ordering::Release)
        }
        pub(in super::super) fn set_consumer(&self, v: u32) {
            self.0.consumer().store(v, Ordering::Release)
        }
        pub(in super::super) fn write_desc(&self, idx: u32, d: Desc) {
            // SAFETY: in-bounds, aligned entry of a test ring of `Desc`s.
            unsafe { self.0.slot(idx).cast::<Desc>().write_volatile(d) }
        }
        pub(in super::super) fn read_addr(&self, idx: u32) -> u64 {
            // SAFETY: in-bounds, aligned entry of a test ring of addresses.
            unsafe { self.0.slot(idx).cast::<u64>().read_volatile() }
        }
    }

    impl FillRing {
        pub(in super::super) fn ring(&self) -> &Ring {
            &self.ring
        }
    }

    impl RxRing {
        pub(in super::super) fn ring(&self) -> &Ring {
            &self.ring
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Kernel, OFFSETS};
    use super::*;

    #[test]
    fn layout_checks_reject_bad_offsets() -> std::io::Result<()> {
        let map = |len| Mmap::anonymous(len);
        // Entries past the mapping.
        assert!(Ring::new(map(256)?, &OFFSETS, 8, DESC_ENTRY).is_err());
        // Not a power of two.
        assert!(Ring::new(map(4096)?, &OFFSETS, 6, DESC_ENTRY).is_err());
        // Misaligned index.
        let off = libc::xdp_ring_offset {
            producer: 2,
            ..OFFSETS
        };
        assert!(Ring::new(map(4096)?, &off, 8, DESC_ENTRY).is_err());
        // Index inside the entries.
        let off = libc::xdp_ring_offset {
            flags: 200,
            ..OFFSETS
        };
        assert!(Ring::new(map(4096)?, &off, 8, DESC_ENTRY).is_err());
        // Huge offsets do not overflow.
        let off = libc::xdp_ring_offset {
            desc: u64::MAX - 8,
            ..OFFSETS
        };
        assert!(Ring::new(map(4096)?, &off, 8, DESC_ENTRY).is_err());
        assert!(Ring::new(map(4096)?, &OFFSETS, 8, DESC_ENTRY).is_ok());
        Ok(())
    }

    #[test]
    fn fill_ring_never_overruns_the_kernel() -> std::io::Result<()> {
        let mut fill = FillRing::new(fake::ring(4, ADDR_ENTRY)?);
        assert_eq!(fill.free(1), 4);
        for i in 0..4 {
            fill.write(i, u64::from(i) * 2048);
        }
        fill.submit(4);
        assert_eq!(fill.free(1), 0);
        let k = Kernel(fill.ring());
        assert_eq!(k.producer(), 4);
        assert_eq!(k.read_addr(3), 3 * 2048);
        // The kernel consumes two.
        k.set_consumer(2);
        assert_eq!(fill.free(1), 2);
        // A bogus consumer index ahead of the producer means no room.
        // (Asking for more than the cache shows makes it re-read the index.)
        Kernel(fill.ring()).set_consumer(1000);
        assert_eq!(fill.free(1), 2);
        assert_eq!(fill.free(3), 0);
        Ok(())
    }

    #[test]
    fn rx_ring_reads_at_most_one_lap() -> std::io::Result<()> {
        let mut rx = RxRing::new(fake::ring(4, DESC_ENTRY)?);
        assert_eq!(rx.ready(64), 0);
        let k = Kernel(rx.ring());
        for i in 0..3 {
            k.write_desc(
                i,
                Desc {
                    addr: u64::from(i),
                    len: 1,
                    options: 0,
                },
            );
        }
        k.set_producer(3);
        assert_eq!(rx.ready(2), 2);
        assert_eq!(rx.ready(64), 3);
        assert_eq!(rx.read(2).addr, 2);
        rx.release(3);
        assert_eq!(Kernel(rx.ring()).consumer(), 3);
        // A producer index far ahead is clamped to the ring size.
        Kernel(rx.ring()).set_producer(3 + 1_000_000);
        assert_eq!(rx.ready(u32::MAX), 4);
        Ok(())
    }
}
