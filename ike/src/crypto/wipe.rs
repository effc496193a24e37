//! Buffers that are overwritten with zeros when dropped, with aws-lc's
//! `OPENSSL_cleanse` (a memset followed by a compiler barrier, so the
//! store is not optimised away).

use std::ops::{Deref, DerefMut};

use aws_lc_sys as ffi;

/// Something whose bytes can be zeroed in place.
pub(crate) trait Wipe {
    fn wipe(&mut self);
}

fn cleanse(ptr: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: callers pass a pointer to `len` bytes of one live allocation
    // they own mutably (see the impls); OPENSSL_cleanse only stores zeros
    // into those bytes.
    unsafe { ffi::OPENSSL_cleanse(ptr.cast(), len) }
}

impl Wipe for Vec<u8> {
    /// Zeroes the whole allocation, spare capacity included (a truncated
    /// tail may still hold secret bytes).
    fn wipe(&mut self) {
        // The allocation is `capacity()` bytes; writing zeros through a raw
        // pointer into its uninitialised part is allowed.
        cleanse(self.as_mut_ptr(), self.capacity());
    }
}

impl<const N: usize> Wipe for [u8; N] {
    fn wipe(&mut self) {
        cleanse(self.as_mut_ptr(), N);
    }
}

/// A value zeroed when dropped.
#[derive(Clone)]
pub(crate) struct Wiped<T: Wipe>(pub(crate) T);

impl<T: Wipe> Drop for Wiped<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

impl<T: Wipe> Deref for Wiped<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Wipe> DerefMut for Wiped<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
