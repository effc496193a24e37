//! One AF_XDP socket with its own UMEM, bound to one (interface, queue).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use vpcgw_common::abi::{XSK_META_MAGIC, XskMeta};

use super::mmap::Mmap;
use super::ring::{ADDR_ENTRY, DESC_ENTRY, Desc, FillRing, Ring, RxRing};
use super::{Frame, KernelStats, META_LEN, XskConfig, XskError};

/// The frames, and which of them the kernel holds.
///
/// A chunk is either the kernel's (`in_kernel`: put on the fill ring, not yet
/// back on the RX ring) or ours (in `free`, or being looked at by a caller of
/// [`XskSocket::recv`]). We read or write a chunk only while it is ours, and
/// give each chunk to the kernel at most once, whatever the RX ring says.
#[derive(Debug)]
struct Umem {
    frame_size: u32,
    in_kernel: Vec<bool>,
    /// Chunk base offsets we own and can hand to the fill ring. Never holds
    /// more than `frames` entries, so pushes never reallocate.
    free: Vec<u64>,
    map: Mmap,
}

impl Umem {
    fn new(cfg: &XskConfig, len: usize) -> Result<Self, XskError> {
        let map = Mmap::anonymous(len).map_err(|e| XskError::syscall("mmap(UMEM)", e))?;
        let frames = cfg.frames;
        let fs = u64::from(cfg.frame_size);
        let count = usize::try_from(frames).map_err(|_| XskError::Config("too many frames"))?;
        let mut free = Vec::with_capacity(count);
        // Reversed, so the fill ring gets chunks in address order.
        free.extend((0..u64::from(frames)).rev().map(|i| i * fs));
        Ok(Self {
            frame_size: cfg.frame_size,
            in_kernel: vec![false; count],
            free,
            map,
        })
    }

    /// Bytes `[off, off + len)` of the UMEM, if inside it.
    fn bytes(&self, off: u64, len: usize) -> Option<*mut u8> {
        let off = usize::try_from(off).ok()?;
        if off.checked_add(len)? > self.map.len() {
            return None;
        }
        // SAFETY: off + len <= map.len(): the pointer stays inside the mapping.
        Some(unsafe { self.map.as_ptr().add(off) })
    }

    /// The metadata the program put just before the frame at `off` within the
    /// chunk at `base` (a chunk we own), if there is room for it and it
    /// carries the magic. Clears those bytes, so a later frame in this chunk
    /// that comes without metadata cannot be mistaken for one with it.
    fn take_meta(&mut self, base: u64, off: u64) -> Option<XskMeta> {
        let at = base + off.checked_sub(META_LEN as u64)?;
        let p = self.bytes(at, META_LEN)?;
        // SAFETY: `bytes` checked [at, at + 16) is inside the mapping; it is
        // inside the chunk at `base` (off >= 16), which is ours, so nothing
        // else writes it. Unaligned read of plain bytes.
        let raw = unsafe { p.cast::<[u8; META_LEN]>().read_unaligned() };
        // SAFETY: as above; we own these bytes.
        unsafe { ptr::write_bytes(p, 0, META_LEN) };
        let [
            m0,
            m1,
            m2,
            m3,
            c0,
            c1,
            c2,
            c3,
            g0,
            g1,
            g2,
            g3,
            s0,
            s1,
            s2,
            s3,
        ] = raw;
        // The program writes the struct in host order (same machine).
        let meta = XskMeta {
            magic: u32::from_ne_bytes([m0, m1, m2, m3]),
            conn: u32::from_ne_bytes([c0, c1, c2, c3]),
            generation: u32::from_ne_bytes([g0, g1, g2, g3]),
            slot: u32::from_ne_bytes([s0, s1, s2, s3]),
        };
        (meta.magic == XSK_META_MAGIC).then_some(meta)
    }
}

/// One AF_XDP socket bound to `(ifindex, queue)` in copy mode, with its own
/// UMEM, fill ring and RX ring. See the [module docs](super) for the
/// protocol.
///
/// Dropping it unmaps the rings, closes the socket (the kernel then stops
/// redirecting to it and removes it from any XSKMAP), and unmaps the UMEM.
#[derive(Debug)]
pub struct XskSocket {
    // Drop order is declaration order: rings, socket, UMEM.
    rx: RxRing,
    fill: FillRing,
    fd: OwnedFd,
    umem: Umem,
    ifindex: u32,
    queue: u32,
    bad_descs: u64,
}

// SAFETY: the raw pointers inside point into mappings this struct owns
// exclusively (no other userspace handle exists), so moving the whole
// socket to another thread moves sole access with it. The kernel's side of
// the rings does not care which thread we run on.
unsafe impl Send for XskSocket {}

impl XskSocket {
    /// Creates the UMEM and the socket, and binds it to `queue` of
    /// `ifindex` in copy mode. `ifindex` is looked up in the network
    /// namespace of the calling thread.
    pub fn open(ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        let umem_len = cfg.validate()?;
        let umem = Umem::new(cfg, umem_len)?;

        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError::syscall(
                "socket(AF_XDP)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let reg = libc::xdp_umem_reg {
            addr: umem.map.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        set_opt(
            fd.as_fd(),
            libc::XDP_UMEM_REG,
            &reg,
            "setsockopt(XDP_UMEM_REG)",
        )?;
        let size = cfg.ring_size;
        set_opt(
            fd.as_fd(),
            libc::XDP_UMEM_FILL_RING,
            &size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        // Bind refuses a UMEM without a completion ring, even for RX only.
        set_opt(
            fd.as_fd(),
            libc::XDP_UMEM_COMPLETION_RING,
            &size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        set_opt(
            fd.as_fd(),
            libc::XDP_RX_RING,
            &size,
            "setsockopt(XDP_RX_RING)",
        )?;

        let zero = libc::xdp_ring_offset {
            producer: 0,
            consumer: 0,
            desc: 0,
            flags: 0,
        };
        let init = libc::xdp_mmap_offsets {
            rx: zero,
            tx: zero,
            fr: zero,
            cr: zero,
        };
        let (off, got) = get_opt(
            fd.as_fd(),
            libc::XDP_MMAP_OFFSETS,
            init,
            "getsockopt(XDP_MMAP_OFFSETS)",
        )?;
        if got != size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 return the layout without `flags`.
            return Err(XskError::Kernel(
                "XDP_MMAP_OFFSETS without ring flags (kernel < 5.4)",
            ));
        }

        let fill = map_ring(
            fd.as_fd(),
            &off.fr,
            size,
            ADDR_ENTRY,
            FILL_PGOFF,
            "mmap(fill ring)",
        )?;
        let rx = map_ring(
            fd.as_fd(),
            &off.rx,
            size,
            DESC_ENTRY,
            libc::XDP_PGOFF_RX_RING,
            "mmap(RX ring)",
        )?;

        let mut sock = Self {
            rx: RxRing::new(rx),
            fill: FillRing::new(fill),
            fd,
            umem,
            ifindex,
            queue,
            bad_descs: 0,
        };

        let family =
            u16::try_from(libc::AF_XDP).map_err(|_| XskError::Kernel("AF_XDP out of range"))?;
        let addr = libc::sockaddr_xdp {
            sxdp_family: family,
            sxdp_flags: libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let len = socklen::<libc::sockaddr_xdp>()?;
        // SAFETY: `addr` is a live sockaddr_xdp of `len` bytes; the kernel
        // only reads it.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc != 0 {
            return Err(XskError::Bind {
                ifindex,
                queue,
                source: io::Error::last_os_error(),
            });
        }
        sock.refill();
        Ok(sock)
    }

    /// The socket, to be stored in the `XSKS` map.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// RX descriptors rejected so far (outside the UMEM, longer than a
    /// frame, for a chunk the kernel did not hold, or multi-buffer).
    pub fn bad_descriptors(&self) -> u64 {
        self.bad_descs
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn kernel_stats(&self) -> Result<KernelStats, XskError> {
        let init = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        let (s, got) = get_opt(
            self.fd(),
            libc::XDP_STATISTICS,
            init,
            "getsockopt(XDP_STATISTICS)",
        )?;
        // Fields past what the kernel filled in stay zero.
        let _ = got;
        Ok(KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        })
    }

    /// Takes up to `max` descriptors from the RX ring, calls `f` with each
    /// valid frame, then gives all their chunks back to the fill ring.
    ///
    /// Returns the number of descriptors taken, valid or not: 0 means the
    /// ring was empty. Rejected descriptors are counted in
    /// [`XskSocket::bad_descriptors`] and not shown to `f`. Never blocks;
    /// wait with `poll(2)` on [`XskSocket::fd`] for `POLLIN`.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(Frame<'_>)) -> usize {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let n = self.rx.ready(max);
        for i in 0..n {
            let d = self.rx.read(i);
            self.take(d, &mut f);
        }
        self.rx.release(n);
        self.refill();
        n as usize
    }

    /// Checks one descriptor, shows its frame to `f`, and puts its chunk on
    /// the free list.
    fn take(&mut self, d: Desc, f: &mut impl FnMut(Frame<'_>)) {
        let fs = u64::from(self.umem.frame_size);
        let chunk = d.addr / fs;
        let off = d.addr % fs;
        let held = usize::try_from(chunk)
            .ok()
            .and_then(|c| self.umem.in_kernel.get_mut(c));
        match held {
            Some(held) if *held => *held = false,
            // Outside the UMEM, or a chunk the kernel does not hold (already
            // returned once): nothing we may touch or recycle.
            _ => {
                self.bad_descs += 1;
                return;
            }
        }
        let base = chunk * fs;
        // Read and clear the metadata slot even for a frame we reject, so it
        // cannot be read later as belonging to another frame in this chunk.
        let meta = self.umem.take_meta(base, off);
        let len = d.len as usize;
        let fits = off + u64::from(d.len) <= fs;
        let whole = d.options & libc::XDP_PKT_CONTD == 0;
        match (fits && whole)
            .then(|| self.umem.bytes(d.addr, len))
            .flatten()
        {
            Some(p) => {
                // SAFETY: [addr, addr + len) is inside the mapping (`bytes`)
                // and inside chunk `chunk` (off + len <= frame size), which
                // the kernel has handed back to us and gets again only via
                // `refill`, after this borrow ends.
                let data = unsafe { std::slice::from_raw_parts(p.cast_const(), len) };
                f(Frame { meta, data });
            }
            None => self.bad_descs += 1,
        }
        // The chunk is ours again either way.
        self.umem.free.push(base);
    }

    /// Moves free chunks to the fill ring, as many as it has room for.
    fn refill(&mut self) {
        let want = u32::try_from(self.umem.free.len()).unwrap_or(u32::MAX);
        if want == 0 {
            return;
        }
        let room = self.fill.free(want).min(want);
        let fs = u64::from(self.umem.frame_size);
        let mut n = 0;
        while n < room {
            let Some(addr) = self.umem.free.pop() else {
                break;
            };
            if let Some(held) = usize::try_from(addr / fs)
                .ok()
                .and_then(|c| self.umem.in_kernel.get_mut(c))
            {
                *held = true;
            }
            self.fill.write(n, addr);
            n += 1;
        }
        self.fill.submit(n);
        if self.fill.needs_wakeup() {
            // Zero-copy drivers sleep when the fill ring ran dry; copy mode
            // never sets the flag. EAGAIN is the normal answer.
            // SAFETY: no buffer is passed (length 0, null pointers).
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                );
            }
        }
    }
}

/// `XDP_UMEM_PGOFF_FILL_RING` as an mmap offset (it does not fit a 32-bit off_t).
const FILL_PGOFF: libc::off_t = libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t;

fn map_ring(
    fd: BorrowedFd<'_>,
    off: &libc::xdp_ring_offset,
    size: u32,
    entry: usize,
    pgoff: libc::off_t,
    call: &'static str,
) -> Result<Ring, XskError> {
    let len = Ring::map_len(off, size, entry).ok_or(XskError::Kernel("ring layout overflows"))?;
    let map = Mmap::ring(fd, len, pgoff).map_err(|e| XskError::syscall(call, e))?;
    Ring::new(map, off, size, entry).map_err(XskError::Kernel)
}

fn socklen<T>() -> Result<libc::socklen_t, XskError> {
    libc::socklen_t::try_from(size_of::<T>()).map_err(|_| XskError::Kernel("option too large"))
}

fn set_opt<T>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    val: &T,
    call: &'static str,
) -> Result<(), XskError> {
    let len = socklen::<T>()?;
    // SAFETY: `val` is a live T of `len` bytes; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            ptr::from_ref(val).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(XskError::syscall(call, io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads option `name` into a copy of `init`; returns it and the length the
/// kernel wrote. `T` must be plain integers (any bit pattern valid).
fn get_opt<T: Copy>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    init: T,
    call: &'static str,
) -> Result<(T, usize), XskError> {
    let mut val = init;
    let mut len = socklen::<T>()?;
    // SAFETY: `val` is a live, writable T of `len` bytes; the kernel writes at
    // most `len` bytes and stores the count in `len`. The callers' types are
    // plain integer structs, valid for any bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            ptr::from_mut(&mut val).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(XskError::syscall(call, io::Error::last_os_error()));
    }
    Ok((val, len as usize))
}

#[cfg(test)]
mod tests {
    use super::super::ring::fake::{self, Kernel};
    use super::*;
    use std::fs::File;

    const FS: u64 = 2048;

    /// A socket over fake rings, the kernel played by the test.
    fn fake_socket(frames: u32, ring: u32) -> io::Result<XskSocket> {
        let cfg = XskConfig {
            frame_size: FS as u32,
            frames,
            ring_size: ring,
        };
        let len = cfg.validate().map_err(io::Error::other)?;
        let umem = Umem::new(&cfg, len).map_err(io::Error::other)?;
        let mut s = XskSocket {
            rx: RxRing::new(fake::ring(ring, DESC_ENTRY)?),
            fill: FillRing::new(fake::ring(ring, ADDR_ENTRY)?),
            fd: OwnedFd::from(File::open("/dev/null")?),
            umem,
            ifindex: 0,
            queue: 0,
            bad_descs: 0,
        };
        s.refill();
        Ok(s)
    }

    /// Plays the kernel: takes the next fill entry, writes `payload` (and
    /// optionally metadata) into it at the copy-mode offset, returns its
    /// descriptor.
    fn deliver(s: &mut XskSocket, fill_idx: u32, payload: &[u8], meta: Option<XskMeta>) -> Desc {
        let chunk = Kernel(s.fill.ring()).read_addr(fill_idx);
        let addr = chunk + 256;
        if let Some(p) = s.umem.bytes(addr, payload.len()) {
            // SAFETY: test: in-bounds bytes of a chunk the "kernel" holds.
            unsafe { ptr::copy_nonoverlapping(payload.as_ptr(), p, payload.len()) };
        }
        if let (Some(m), Some(p)) = (meta, s.umem.bytes(addr - 16, 16)) {
            // SAFETY: test: the 16 bytes before the frame, same chunk.
            unsafe { p.cast::<XskMeta>().write_unaligned(m) };
        }
        Desc {
            addr,
            len: payload.len() as u32,
            options: 0,
        }
    }

    fn meta(conn: u32) -> XskMeta {
        XskMeta {
            magic: XSK_META_MAGIC,
            conn,
            generation: 7,
            slot: 1,
        }
    }

    #[test]
    fn frames_metadata_and_recycling() -> io::Result<()> {
        let mut s = fake_socket(8, 4)?;
        // The fill ring got 4 chunks, 4 stay free.
        assert_eq!(Kernel(s.fill.ring()).producer(), 4);
        assert_eq!(s.umem.free.len(), 4);

        let d0 = deliver(&mut s, 0, b"hello", Some(meta(3)));
        let d1 = deliver(&mut s, 1, b"world!", None);
        let k = Kernel(s.rx.ring());
        k.write_desc(0, d0);
        k.write_desc(1, d1);
        k.set_producer(2);
        Kernel(s.fill.ring()).set_consumer(2);

        let mut got = Vec::new();
        assert_eq!(s.recv(64, |f| got.push((f.meta, f.data.to_vec()))), 2);
        assert_eq!(got.len(), 2);
        assert_eq!(got.first(), Some(&(Some(meta(3)), b"hello".to_vec())));
        assert_eq!(got.get(1), Some(&(None, b"world!".to_vec())));
        assert_eq!(s.bad_descriptors(), 0);
        assert_eq!(Kernel(s.rx.ring()).consumer(), 2);
        // Both chunks went back to the fill ring (2 free slots).
        assert_eq!(Kernel(s.fill.ring()).producer(), 6);

        // The chunk that carried metadata comes back without: no stale magic.
        let chunk0 = d0.addr - 256;
        let again = Kernel(s.fill.ring()).read_addr(4);
        let again = if again == chunk0 { 4 } else { 5 };
        let d = deliver(&mut s, again, b"x", None);
        assert_eq!(d.addr, d0.addr);
        Kernel(s.rx.ring()).write_desc(2, d);
        Kernel(s.rx.ring()).set_producer(3);
        let mut metas = Vec::new();
        assert_eq!(s.recv(64, |f| metas.push(f.meta)), 1);
        assert_eq!(metas, vec![None]);
        Ok(())
    }

    #[test]
    fn bad_descriptors_are_counted_and_skipped() -> io::Result<()> {
        let mut s = fake_socket(8, 8)?;
        let good = deliver(&mut s, 0, b"ok", Some(meta(1)));
        let held = Kernel(s.fill.ring()).read_addr(1);
        let bad = [
            // Outside the UMEM.
            Desc {
                addr: 8 * FS + 256,
                len: 10,
                options: 0,
            },
            Desc {
                addr: u64::MAX,
                len: u32::MAX,
                options: 0,
            },
            // Crosses into the next chunk.
            Desc {
                addr: held + 256,
                len: 2000,
                options: 0,
            },
            // Same chunk again (already returned by the previous one).
            Desc {
                addr: held + 300,
                len: 10,
                options: 0,
            },
            // Multi-buffer continuation.
            Desc {
                addr: Kernel(s.fill.ring()).read_addr(2) + 256,
                len: 10,
                options: libc::XDP_PKT_CONTD,
            },
        ];
        let k = Kernel(s.rx.ring());
        k.write_desc(0, good);
        for (i, d) in bad.iter().enumerate() {
            k.write_desc(1 + i as u32, *d);
        }
        k.set_producer(1 + bad.len() as u32);
        Kernel(s.fill.ring()).set_consumer(8);

        let mut frames = 0;
        let taken = s.recv(64, |f| {
            frames += 1;
            assert_eq!(f.data, b"ok");
        });
        assert_eq!(taken, 6);
        assert_eq!(frames, 1);
        assert_eq!(s.bad_descriptors(), 5);
        // Chunks we legitimately got back (good, the oversize one, the
        // multi-buffer one) are recycled; nothing is recycled twice.
        assert_eq!(
            s.umem.free.len() + s.umem.in_kernel.iter().filter(|h| **h).count(),
            8
        );
        assert_eq!(Kernel(s.fill.ring()).producer(), 8 + 3);
        Ok(())
    }

    #[test]
    fn ring_full_of_garbage_never_panics() -> io::Result<()> {
        let mut s = fake_socket(16, 16)?;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..64u32 {
            let k = Kernel(s.rx.ring());
            let base = k.producer();
            for i in 0..16 {
                // xorshift: arbitrary descriptors, some landing in range.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let addr = if x & 1 == 0 { x % (20 * FS) } else { x };
                k.write_desc(
                    base.wrapping_add(i),
                    Desc {
                        addr,
                        len: (x >> 32) as u32 % 4096,
                        options: (x >> 40) as u32 & 1,
                    },
                );
            }
            k.set_producer(base.wrapping_add(16));
            Kernel(s.fill.ring()).set_consumer(Kernel(s.fill.ring()).producer());
            assert_eq!(s.recv(usize::MAX, |_| {}), 16, "round {round}");
            let owned = s.umem.free.len() + s.umem.in_kernel.iter().filter(|h| **h).count();
            assert_eq!(owned, 16);
        }
        Ok(())
    }
}
