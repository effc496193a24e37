//! Diffie-Hellman group 14 (RFC 3526, the 2048-bit MODP group, g = 2) on
//! aws-lc's finite-field DH (`DH_*` in aws-lc-sys): aws-lc supplies the
//! prime, draws the private exponent, does the constant-time modular
//! exponentiation (`BN_mod_exp_mont_consttime`) and checks the peer's value
//! (`DH_check_pub_key`). This file is the small safe wrapper around those
//! raw calls; every `unsafe` block says why it is sound.
//!
//! The group's q = (p-1)/2 is set (p is a safe prime and 2 generates the
//! subgroup of order q, as p = 7 mod 8), so aws-lc checks that the peer's
//! value lies in that subgroup as well as 1 < y < p-1 (full public-key
//! validation, SP 800-56A Rev. 3 5.6.2.3.1).
//!
//! The private exponent is drawn (by aws-lc's RNG) uniformly from
//! [1, 2^256 - 1], not from [1, q-1]: SP 800-56A Rev. 3 5.6.1.1.4 allows a
//! length N >= 2s for a safe-prime group (s = 112 bits for this one), and
//! RFC 3526 section 8 asks for 220 to 320 bits. With p a safe prime there
//! is no small subgroup for a short exponent to fall into. It makes key
//! generation and agreement about 8 times cheaper than a 2047-bit exponent,
//! which is what lets a responder answer IKE_SA_INIT at a useful rate; the
//! subgroup check of the peer's value still costs one full exponentiation.

use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};

use aws_lc_sys as ffi;

use super::wipe::Wiped;
use super::{CryptoError, Secret};

/// Bytes of the modulus, the public values and the shared secret.
pub(super) const LEN: usize = 256;

/// Bits of the private exponents we draw (see the module's notes).
const PRIVATE_BITS: i32 = 256;

/// An owned BIGNUM, freed when dropped unless handed over with
/// [`Bn::into_raw`].
struct Bn(NonNull<ffi::BIGNUM>);

impl Bn {
    /// Takes ownership of a BIGNUM an aws-lc function just allocated (null:
    /// the allocation failed).
    fn from_raw(ptr: *mut ffi::BIGNUM) -> Result<Bn, CryptoError> {
        NonNull::new(ptr).map(Bn).ok_or(CryptoError::Backend)
    }

    fn new() -> Result<Bn, CryptoError> {
        // SAFETY: BN_new has no preconditions; it returns a new BIGNUM that
        // we own, or null.
        Bn::from_raw(unsafe { ffi::BN_new() })
    }

    fn as_ptr(&self) -> *mut ffi::BIGNUM {
        self.0.as_ptr()
    }

    /// Gives up ownership (to a function that takes it over).
    fn into_raw(self) -> *mut ffi::BIGNUM {
        ManuallyDrop::new(self).0.as_ptr()
    }
}

impl Drop for Bn {
    fn drop(&mut self) {
        // SAFETY: we own this BIGNUM and nothing else refers to it.
        // BN_clear_free zeroes it first (it may hold a private exponent).
        unsafe { ffi::BN_clear_free(self.0.as_ptr()) }
    }
}

/// Forgets aws-lc's error queue after a failure we report ourselves (the
/// queue is per thread; this keeps stale entries from piling up in it).
fn clear_errors() {
    // SAFETY: no preconditions; it only touches the calling thread's queue.
    unsafe { ffi::ERR_clear_error() }
}

/// One DH object holding p, q, g and, once generated, our key pair.
pub(super) struct ModpKey {
    dh: NonNull<ffi::DH>,
}

// SAFETY: the DH object is owned by this value alone (created here, its
// reference count never raised, the pointer never handed out), and aws-lc
// objects have no affinity to the thread that created them.
unsafe impl Send for ModpKey {}
// SAFETY: a shared reference gives access to nothing: every use of the DH
// object goes through `self` by value or through drop.
unsafe impl Sync for ModpKey {}

impl Drop for ModpKey {
    fn drop(&mut self) {
        // SAFETY: we own the only reference. DH_free clears the private
        // exponent (BN_clear_free) and frees p, q, g and the keys.
        unsafe { ffi::DH_free(self.dh.as_ptr()) }
    }
}

impl ModpKey {
    /// A DH object with RFC 3526's 2048-bit prime, q = (p-1)/2 and g = 2.
    fn with_group() -> Result<ModpKey, CryptoError> {
        // SAFETY: DH_new has no preconditions; it returns a new DH object
        // that we own, or null.
        let dh = NonNull::new(unsafe { ffi::DH_new() }).ok_or(CryptoError::Backend)?;
        // From here the object is freed by ModpKey's Drop on every path.
        let key = ModpKey { dh };
        // SAFETY: with a null argument BN_get_rfc3526_prime_2048 allocates
        // the returned BIGNUM, which we then own (or returns null).
        let p = Bn::from_raw(unsafe { ffi::BN_get_rfc3526_prime_2048(ptr::null_mut()) })?;
        let g = Bn::new()?;
        let q = Bn::new()?;
        // SAFETY: g and q are valid BIGNUMs we own; p is valid and only read.
        let ok = unsafe {
            ffi::BN_set_word(g.as_ptr(), 2) == 1 && ffi::BN_rshift1(q.as_ptr(), p.as_ptr()) == 1
        };
        if !ok {
            clear_errors();
            return Err(CryptoError::Backend);
        }
        // SAFETY: the DH object is valid and ours; on success DH_set0_pqg
        // takes ownership of the three non-null BIGNUMs, on failure it takes
        // none (then our guards free them).
        if unsafe { ffi::DH_set0_pqg(key.dh.as_ptr(), p.as_ptr(), q.as_ptr(), g.as_ptr()) } != 1 {
            clear_errors();
            return Err(CryptoError::Backend);
        }
        let _ = (p.into_raw(), q.into_raw(), g.into_raw());
        // SAFETY: the DH object is valid and has p set.
        let size = unsafe { ffi::DH_size(key.dh.as_ptr()) };
        if usize::try_from(size).ok() != Some(LEN) {
            return Err(CryptoError::Backend);
        }
        Ok(key)
    }

    /// Our public value, left-padded to [`LEN`] bytes.
    fn public_value(&self) -> Result<Vec<u8>, CryptoError> {
        // SAFETY: the DH object is valid; the result is borrowed from it
        // (null if no key was generated) and used before `self` can go away.
        let public = unsafe { ffi::DH_get0_pub_key(self.dh.as_ptr()) };
        if public.is_null() {
            return Err(CryptoError::Backend);
        }
        let mut out = vec![0u8; LEN];
        // SAFETY: `out` has LEN writable bytes; `public` is a valid BIGNUM.
        // BN_bn2bin_padded fails (returns 0) if the value needs more.
        if unsafe { ffi::BN_bn2bin_padded(out.as_mut_ptr(), out.len(), public) } != 1 {
            clear_errors();
            return Err(CryptoError::Backend);
        }
        Ok(out)
    }

    /// A new key pair (a [`PRIVATE_BITS`]-bit exponent); returns it with
    /// our public value.
    pub(super) fn generate() -> Result<(ModpKey, Vec<u8>), CryptoError> {
        let limit = Bn::new()?;
        let x = Bn::new()?;
        // SAFETY: `limit` and `x` are valid BIGNUMs we own. BN_set_bit makes
        // limit = 2^PRIVATE_BITS; BN_rand_range_ex draws x uniformly from
        // [1, limit) with aws-lc's RNG.
        let ok = unsafe {
            ffi::BN_set_bit(limit.as_ptr(), PRIVATE_BITS) == 1
                && ffi::BN_rand_range_ex(x.as_ptr(), 1, limit.as_ptr()) == 1
        };
        if !ok {
            clear_errors();
            return Err(CryptoError::Backend);
        }
        ModpKey::with_private(x)
    }

    /// The key pair of private exponent `x`.
    fn with_private(x: Bn) -> Result<(ModpKey, Vec<u8>), CryptoError> {
        let key = ModpKey::with_group()?;
        // SAFETY: the DH object is valid; DH_set0_key takes ownership of the
        // non-null private key (and leaves the absent public key alone).
        unsafe { ffi::DH_set0_key(key.dh.as_ptr(), ptr::null_mut(), x.into_raw()) };
        // SAFETY: the DH object is valid with p, q, g and a private key, so
        // DH_generate_key only computes the public value g^x mod p
        // (constant time in x).
        if unsafe { ffi::DH_generate_key(key.dh.as_ptr()) } != 1 {
            clear_errors();
            return Err(CryptoError::Backend);
        }
        let public = key.public_value()?;
        Ok((key, public))
    }

    /// A key pair with the fixed private exponent `x` (big-endian), for
    /// known-answer tests.
    #[cfg(test)]
    pub(super) fn from_private(x: &[u8]) -> Result<(ModpKey, Vec<u8>), CryptoError> {
        // SAFETY: `x` is valid for reads of x.len() bytes; with a null `ret`
        // BN_bin2bn allocates the BIGNUM it returns, which we own.
        let x = Bn::from_raw(unsafe { ffi::BN_bin2bn(x.as_ptr(), x.len(), ptr::null_mut()) })?;
        ModpKey::with_private(x)
    }

    /// `peer^x mod p`, left-padded to [`LEN`] bytes, after aws-lc's checks
    /// of the peer's value (1 < y < p-1, y^q = 1 mod p).
    pub(super) fn agree(self, peer: &[u8]) -> Result<Secret, CryptoError> {
        if peer.len() != LEN {
            return Err(CryptoError::WrongLength {
                expected: LEN,
                got: peer.len(),
            });
        }
        // SAFETY: `peer` is valid for reads of peer.len() bytes; with a null
        // `ret` BN_bin2bn allocates the BIGNUM it returns, which we own.
        let y =
            Bn::from_raw(unsafe { ffi::BN_bin2bn(peer.as_ptr(), peer.len(), ptr::null_mut()) })?;
        let mut out = Wiped(vec![0u8; LEN]);
        // SAFETY: the DH object is valid, holds p, q, g and our private key
        // (every ModpKey outside `with_group` has one), and DH_size is LEN
        // (checked in `with_group`), which is how many bytes DH_compute_key_padded
        // writes to `out`, which has LEN. `y` is a valid BIGNUM, only read.
        let n =
            unsafe { ffi::DH_compute_key_padded(out.as_mut_ptr(), y.as_ptr(), self.dh.as_ptr()) };
        if usize::try_from(n).ok() != Some(LEN) {
            clear_errors();
            return Err(CryptoError::BadPublicValue);
        }
        Ok(Secret(out))
    }

    /// The group's prime, for tests.
    #[cfg(test)]
    pub(super) fn prime() -> Result<Vec<u8>, CryptoError> {
        // SAFETY: as in `with_group`: a new BIGNUM that we own, or null.
        let p = Bn::from_raw(unsafe { ffi::BN_get_rfc3526_prime_2048(ptr::null_mut()) })?;
        let mut out = vec![0u8; LEN];
        // SAFETY: `out` has LEN writable bytes; `p` is a valid BIGNUM.
        if unsafe { ffi::BN_bn2bin_padded(out.as_mut_ptr(), out.len(), p.as_ptr()) } != 1 {
            return Err(CryptoError::Backend);
        }
        Ok(out)
    }
}
