//! AF_XDP sockets: where the XDP program hands VPN-bound frames to userspace.
//!
//! # What happens to a frame
//!
//! For a packet that must go through a VPN connection, `vpcgw_xdp` grows the
//! XDP metadata area by 16 bytes (`bpf_xdp_adjust_meta`), writes an
//! [`XskMeta`] there (magic, connection, policy generation and slot) and
//! redirects the frame to `XSKS[xsk_base + rx_queue]`, the socket this module
//! opened for that interface and queue. The kernel copies the frame, metadata
//! included, into a chunk of the socket's UMEM and posts a descriptor on the
//! socket's RX ring. [`XskSocket::recv`] shows the frame, with its metadata,
//! to a callback, and gives the chunk back to the kernel.
//!
//! # Memory and rings
//!
//! The UMEM is one anonymous mapping of `frames * frame_size` bytes,
//! registered with the socket (`XDP_UMEM_REG`) and cut into chunks of
//! `frame_size` bytes (aligned mode: a chunk is named by its offset, and any
//! offset inside it names it). Two rings, each mapped from the socket and
//! shared with the kernel, move chunks between us and the kernel:
//!
//! - the **fill ring**: we produce the offsets of free chunks; the kernel
//!   consumes them when a frame arrives;
//! - the **RX ring**: the kernel produces descriptors `{addr, len, options}`
//!   of received frames; we consume them.
//!
//! (A completion ring exists too, because `bind` requires one, but only the
//! TX path, not written yet, uses it.)
//!
//! Each ring has a producer index, a consumer index, a flags word and
//! `ring_size` (a power of two) entries. The indices run freely and wrap
//! at 2^32; entry `i` sits at `i & (ring_size - 1)`. The producer writes
//! entries, then stores its index with release ordering; the consumer loads
//! that index with acquire ordering, reads the entries, then stores its own
//! index with release ordering to hand the slots back. Each side caches the
//! other's index and reloads it only when the cache says there is not enough.
//!
//! A chunk therefore belongs to the kernel from the moment it is published on
//! the fill ring until its descriptor is read from the RX ring, and to us
//! otherwise; userspace reads or writes a chunk only while it owns it. The
//! kernel's descriptors are treated as input: the chunk must lie inside the
//! UMEM, be one the kernel holds, and contain `[addr, addr + len)`; anything
//! else is counted ([`XskSocket::bad_descriptors`]) and skipped, and a chunk
//! is never given to the kernel twice. Memory is fixed after
//! [`XskSocket::open`]: nothing on the receive path allocates.
//!
//! # Metadata
//!
//! In copy mode the kernel copies from the frame's metadata start to its end
//! into the chunk so that the frame itself starts at the chunk's headroom
//! (`XDP_PACKET_HEADROOM`, 256 bytes), and the metadata lands in the 16
//! bytes before it (`__xsk_rcv` in net/xdp/xsk.c: `memcpy(xsk_xdp->data -
//! meta_len, ...)`). The descriptor's `addr` points at the frame, so the
//! metadata is at `addr - 16`, inside the same chunk. The privileged test
//! `tests/tests/xsk.rs` checks this on veth (native XDP, copy-mode socket).
//!
//! The kernel does not say how much metadata came with a frame, so the
//! reader relies on the magic number, and clears the 16 bytes once read:
//! otherwise a later frame in the same chunk that came without metadata
//! (when `bpf_xdp_adjust_meta` fails) would show the earlier frame's. This
//! relies on frames starting at the same offset in every chunk, which holds
//! in copy mode (the program never moves the frame start). A frame without
//! valid metadata has [`Frame::meta`] `None`, and is classified again in
//! userspace.
//!
//! # Why copy mode
//!
//! - veth, used in tests and in container setups, has no zero-copy support,
//!   and copy mode works on every driver that runs XDP.
//! - In zero-copy mode the queue's receive buffers come from the UMEM for
//!   *all* its traffic, so every frame the program passes to the stack (the
//!   security-group path, most of the traffic on a LAN interface) must be
//!   copied into a new socket buffer. In copy mode only the VPN-bound frames
//!   are copied, once, and that copy (about 1500 bytes) is small next to
//!   encrypting them.
//!
//! The socket is bound with `XDP_COPY | XDP_USE_NEED_WAKEUP` and without
//! `XDP_USE_SG`: frames longer than `frame_size - 256` bytes are dropped by
//! the kernel and counted in [`KernelStats::rx_dropped`].

mod mmap;
mod receiver;
mod ring;
mod socket;
mod stats;

use std::io;

pub use receiver::spawn_receiver;
pub use socket::XskSocket;
pub use stats::{ConnCount, Count, KernelStats, XskStats, XskStatsSnapshot};
pub use vpcgw_common::abi::XskMeta;

/// Size of the metadata the program puts before the frame.
pub const META_LEN: usize = core::mem::size_of::<XskMeta>();

/// Largest UMEM this module agrees to allocate per socket (frames).
const MAX_FRAMES: u32 = 1 << 20;
/// Largest ring (entries).
const MAX_RING: u32 = 1 << 16;
/// Smallest chunk the kernel accepts (`XDP_UMEM_MIN_CHUNK_SIZE`).
const MIN_FRAME: u32 = 2048;

/// Sizes of one socket's UMEM and rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Chunk size: a power of two from 2048 to the page size. A frame can use
    /// `frame_size - 256` bytes (the kernel keeps `XDP_PACKET_HEADROOM`).
    pub frame_size: u32,
    /// Chunks in the UMEM (`frames * frame_size` bytes, locked in memory).
    pub frames: u32,
    /// Entries in the fill, completion and RX rings: a power of two.
    pub ring_size: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 2048,
            frames: 4096,
            ring_size: 2048,
        }
    }
}

impl XskConfig {
    /// Checks the sizes; returns the UMEM length in bytes.
    pub fn validate(&self) -> Result<usize, XskError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = u32::try_from(page).unwrap_or(4096);
        if !self.frame_size.is_power_of_two()
            || self.frame_size < MIN_FRAME
            || self.frame_size > page
        {
            return Err(XskError::Config(
                "frame_size must be a power of two from 2048 to the page size",
            ));
        }
        if self.frames == 0 || self.frames > MAX_FRAMES {
            return Err(XskError::Config("frames must be from 1 to 2^20"));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size > MAX_RING {
            return Err(XskError::Config(
                "ring_size must be a power of two up to 65536",
            ));
        }
        usize::try_from(u64::from(self.frames) * u64::from(self.frame_size))
            .map_err(|_| XskError::Config("UMEM too large for this platform"))
    }
}

/// A received frame, valid during the [`XskSocket::recv`] callback.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// What the XDP program attached, if it did (magic checked).
    pub meta: Option<XskMeta>,
    /// The Ethernet frame.
    pub data: &'a [u8],
}

#[derive(thiserror::Error, Debug)]
pub enum XskError {
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
    #[error("{call} failed: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("binding the AF_XDP socket to ifindex {ifindex} queue {queue} failed: {source}")]
    Bind {
        ifindex: u32,
        queue: u32,
        #[source]
        source: io::Error,
    },
    /// The kernel answered something this code does not understand.
    #[error("unexpected answer from the kernel: {0}")]
    Kernel(&'static str),
}

impl XskError {
    fn syscall(call: &'static str, source: io::Error) -> Self {
        Self::Syscall { call, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        assert_eq!(XskConfig::default().validate().ok(), Some(4096 * 2048));
        let bad = [
            XskConfig {
                frame_size: 1024,
                ..Default::default()
            },
            XskConfig {
                frame_size: 3000,
                ..Default::default()
            },
            XskConfig {
                frame_size: 1 << 20,
                ..Default::default()
            },
            XskConfig {
                frames: 0,
                ..Default::default()
            },
            XskConfig {
                frames: u32::MAX,
                ..Default::default()
            },
            XskConfig {
                ring_size: 0,
                ..Default::default()
            },
            XskConfig {
                ring_size: 1000,
                ..Default::default()
            },
            XskConfig {
                ring_size: 1 << 20,
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(cfg.validate(), Err(XskError::Config(_))),
                "{cfg:?}"
            );
        }
    }
}
