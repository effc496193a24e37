//! An owned memory mapping, unmapped on drop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

/// `len` bytes at `ptr`, mapped by us and unmapped when dropped.
#[derive(Debug)]
pub(super) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Private anonymous memory, zero-filled, populated up front (the UMEM).
    pub(super) fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a new private anonymous mapping at an address the kernel
        // chooses; it cannot alias any memory Rust already uses.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::checked(p, len)
    }

    /// A ring of the AF_XDP socket `fd`, shared with the kernel.
    pub(super) fn ring(fd: BorrowedFd<'_>, len: usize, offset: libc::off_t) -> io::Result<Self> {
        // SAFETY: a new shared mapping of the socket's ring at an address the
        // kernel chooses; the kernel checks `offset` and `len` against the
        // ring it allocated, and the mapping aliases no Rust memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        Self::checked(p, len)
    }

    fn checked(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Self { ptr, len }),
            None => Err(io::Error::other("mmap returned a null address")),
        }
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly [ptr, ptr + len) and own it; every pointer
        // into it lives in the struct that owns this `Mmap` and dies with it.
        // munmap can only fail for arguments we never pass.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
