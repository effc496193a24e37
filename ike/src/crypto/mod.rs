//! The cryptography of IKEv2 with pre-shared keys (RFC 7296), composed
//! from aws-lc primitives: HMAC, AES-CBC, AES-GCM, X25519, ECDH and the
//! 2048-bit MODP group all come from aws-lc (through aws-lc-rs, and
//! aws-lc-sys's `DH_*` functions for MODP). This module only arranges them
//! the way the RFCs say: prf and prf+ (2.13), the key derivations (2.14,
//! 2.17, 2.18), the SK payload (3.14, RFC 5282), PSK authentication (2.15),
//! NAT detection hashes (2.23) and stateless cookies (2.6).
//!
//! Secrets live in [`Secret`], which is zeroized when dropped (aws-lc's
//! `OPENSSL_cleanse`, whole allocation) and whose `Debug` shows only its
//! length. The buffers this module fills with secrets on the way (the prf+
//! output, the key `prf(PSK, "Key Pad for IKEv2")`, MODP shared values, the
//! cookie secret) are zeroized the same way; what aws-lc-rs keeps on the
//! stack (HMAC tags) and inside aws-lc's own objects (which aws-lc cleanses
//! when freeing them) is out of this module's reach.
//!
//! Lengths (RFC 7296 2.13, 2.14, RFC 4868, RFC 5282):
//! - the PRFs are HMAC-SHA2; their preferred key length, and the length of
//!   SK_d, SK_pi and SK_pr, is the hash length ([`prf_key_len`]);
//! - HMAC-SHA2-256-128 / 384-192 / 512-256 take 32 / 48 / 64-byte keys
//!   ([`integ_key_len`]);
//! - AES-CBC keys are 16 or 32 bytes; AES-GCM keying material is the key
//!   followed by a 4-byte salt ([`encr_keymat_len`]).

mod dh;
mod modp;
mod sk;
mod wipe;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests;

pub use dh::{DhPrivate, dh_agree, dh_generate, public_value_len, shared_secret_len};
pub use sk::SkCrypto;

use std::fmt;
use std::net::IpAddr;

use aws_lc_rs::{constant_time, digest, hmac, rand};

use crate::alg::{Encryption, Integrity, Prf};
use wipe::Wiped;

/// Secret bytes: keys, shared secrets, keying material. Zeroized when
/// dropped; `Debug` prints only the length.
#[derive(Clone)]
pub struct Secret(Wiped<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Wiped(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.len())
    }
}

#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The peer's Diffie-Hellman public value is not an element of the group
    /// (MODP: not 1 < y < p-1 or not in the prime-order subgroup; ECP: not a
    /// point on the curve; X25519: the shared secret came out all zero).
    #[error("invalid Diffie-Hellman public value")]
    BadPublicValue,
    #[error("wrong length: {got} bytes where {expected} are needed")]
    WrongLength { expected: usize, got: usize },
    /// An encryption algorithm and an integrity algorithm that do not go
    /// together: CBC needs one, AES-GCM must have none (RFC 5282 8).
    #[error("{encr:?} with integrity algorithm {integ:?}")]
    AlgorithmMismatch {
        encr: Encryption,
        integ: Option<Integrity>,
    },
    /// The ICV (HMAC or GCM tag) does not match: tampered with, truncated,
    /// or protected with other keys.
    #[error("integrity check of the encrypted payload failed")]
    AuthenticationFailed,
    #[error("decryption of the encrypted payload failed")]
    DecryptionFailed,
    /// The pad length byte points before the start of the plaintext.
    #[error("bad padding in the encrypted payload")]
    BadPadding,
    /// The SK payload does not have the shape the algorithms need (too
    /// short, not whole blocks, not the last payload, offset out of range).
    #[error("malformed encrypted payload")]
    Malformed,
    /// The message to protect would not fit in a datagram (or in the SK
    /// payload's 16-bit length).
    #[error("message too large to encrypt: {len} bytes")]
    TooLarge { len: usize },
    /// prf+ stops at 255 blocks (RFC 7296 2.13).
    #[error("prf+ asked for {requested} bytes, at most {max} exist")]
    PrfPlusTooLong { requested: usize, max: usize },
    #[error("random number generator failed")]
    Rng,
    /// aws-lc refused an operation that cannot fail on valid input (key
    /// generation, encoding, encryption with a well-formed key).
    #[error("cryptographic library failure")]
    Backend,
}

/// prf+ produces at most this many blocks (RFC 7296 2.13: the counter is
/// one octet).
pub const PRF_PLUS_MAX_BLOCKS: usize = 255;

/// `"Key Pad for IKEv2"` (RFC 7296 2.15), without a terminating NUL.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// Length of [`CookieSecret::cookie`]'s output: a version byte and SHA-256.
pub const COOKIE_LEN: usize = 1 + 32;

fn hmac_alg(prf: Prf) -> hmac::Algorithm {
    match prf {
        Prf::HmacSha256 => hmac::HMAC_SHA256,
        Prf::HmacSha384 => hmac::HMAC_SHA384,
        Prf::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// Output length of the PRF, which is also its preferred key length (the
/// length of SK_d, SK_pi and SK_pr; RFC 7296 2.14, RFC 4868 2.1.2).
pub const fn prf_key_len(prf: Prf) -> usize {
    match prf {
        Prf::HmacSha256 => 32,
        Prf::HmacSha384 => 48,
        Prf::HmacSha512 => 64,
    }
}

/// Key length of the integrity algorithm (RFC 4868 2.1.1: the hash length).
pub const fn integ_key_len(integ: Integrity) -> usize {
    match integ {
        Integrity::HmacSha256_128 => 32,
        Integrity::HmacSha384_192 => 48,
        Integrity::HmacSha512_256 => 64,
    }
}

/// Bytes of keying material the encryption algorithm takes: the AES key,
/// plus the 4-byte salt for AES-GCM (RFC 5282 7.1, RFC 4106 8.1).
pub const fn encr_keymat_len(encr: Encryption) -> usize {
    let key = encr.key_bits() as usize / 8;
    if encr.is_aead() { key + 4 } else { key }
}

/// CBC needs a separate integrity algorithm; AES-GCM must not have one.
fn check_integ(
    encr: Encryption,
    integ: Option<Integrity>,
) -> Result<Option<Integrity>, CryptoError> {
    match (encr.is_aead(), integ) {
        (true, None) => Ok(None),
        (false, Some(i)) => Ok(Some(i)),
        _ => Err(CryptoError::AlgorithmMismatch { encr, integ }),
    }
}

fn prf_ctx(key: &hmac::Key, data: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for d in data {
        ctx.update(d);
    }
    ctx.sign()
}

/// `prf(key, data[0] | data[1] | ...)`: HMAC with the PRF's hash.
pub fn prf(alg: Prf, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac_alg(alg), key);
    prf_ctx(&key, data).as_ref().to_vec()
}

/// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 2.13):
/// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`, at most 255
/// blocks. `seed` is concatenated.
pub fn prf_plus(alg: Prf, key: &[u8], seed: &[&[u8]], len: usize) -> Result<Secret, CryptoError> {
    let block = prf_key_len(alg);
    let max = block.saturating_mul(PRF_PLUS_MAX_BLOCKS);
    if len > max {
        return Err(CryptoError::PrfPlusTooLong {
            requested: len,
            max,
        });
    }
    let key = hmac::Key::new(hmac_alg(alg), key);
    // Reserved up front so that no reallocation leaves an unzeroized copy.
    let mut out = Wiped(Vec::with_capacity(len.div_ceil(block) * block));
    let mut prev: Option<hmac::Tag> = None;
    let mut counter: u8 = 1;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        if let Some(t) = &prev {
            ctx.update(t.as_ref());
        }
        for s in seed {
            ctx.update(s);
        }
        ctx.update(&[counter]);
        let t = ctx.sign();
        out.extend_from_slice(t.as_ref());
        prev = Some(t);
        // At most 255 rounds (checked above): the counter never wraps
        // while it is still used.
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(Secret(out))
}

/// `SKEYSEED = prf(Ni | Nr, g^ir)` (RFC 7296 2.14). The nonces are used
/// whole: the 64-bit truncation of 2.14 applies only to AES-XCBC/CMAC PRFs,
/// which vpcgw does not offer.
pub fn skeyseed(alg: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Secret {
    let mut key = Vec::with_capacity(ni.len().saturating_add(nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    Secret::new(prf(alg, &key, &[g_ir]))
}

/// SKEYSEED of an IKE SA rekeyed with CREATE_CHILD_SA (RFC 7296 2.18):
/// `prf(SK_d (old), g^ir (new) | Ni | Nr)`, with the nonces of the rekeying
/// exchange.
///
/// Which PRF: the OLD IKE SA's. RFC 7296 2.18 says so ("Because the
/// rekeying exchange belongs to the old IKE SA, it is the old IKE SA's PRF
/// that is used to generate SKEYSEED"), strongSwan (keymat_v2.c,
/// `derive_ike_keys` with `rekey_function`) and libreswan do the same, and
/// the NIST SP 800-135 vectors ("SKEYSEED(Rekey)") compute it with the SA's
/// one PRF.
///
/// The keys of the new SA are then `prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`
/// ([`derive_ike_keys`], new SPIs and nonces). RFC 7296 2.18 says with the
/// NEW SA's PRF, and libreswan does that; strongSwan (5.x and 6.x) runs that
/// prf+ with the OLD SA's PRF as well ("use OLD SAs PRF functions for both
/// prf_plus and prf"), sizing SK_d/SK_pi/SK_pr by the new PRF. The two
/// readings agree whenever the new SA keeps the old SA's PRF, so the engine
/// should only propose or accept, when rekeying an IKE SA, proposals whose
/// PRF is the current one; then it does not matter which one
/// `derive_ike_keys` is given. No erratum on this point was found.
pub fn rekey_skeyseed(old_prf: Prf, old_sk_d: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Secret {
    Secret::new(prf(old_prf, old_sk_d, &[g_ir, ni, nr]))
}

/// The seven secrets of an IKE SA (RFC 7296 2.14). `sk_ai`/`sk_ar` are
/// empty with AES-GCM; `sk_ei`/`sk_er` include GCM's 4-byte salt at the end.
#[derive(Clone, Debug)]
pub struct IkeKeys {
    pub sk_d: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
}

/// Cuts consecutive pieces out of keying material.
struct Pieces<'a> {
    rest: &'a [u8],
}

impl<'a> Pieces<'a> {
    fn take(&mut self, n: usize) -> Result<Secret, CryptoError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(CryptoError::Backend)?;
        self.rest = tail;
        Ok(Secret::new(head.to_vec()))
    }
}

/// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
/// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)` (RFC 7296 2.14), the lengths
/// given by the algorithms. For a rekeyed IKE SA, `skeyseed` comes from
/// [`rekey_skeyseed`] and the nonces and SPIs are the new ones (2.18).
#[allow(clippy::too_many_arguments)]
pub fn derive_ike_keys(
    encr: Encryption,
    integ: Option<Integrity>,
    prf: Prf,
    skeyseed: &Secret,
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> Result<IkeKeys, CryptoError> {
    let integ = check_integ(encr, integ)?;
    let p = prf_key_len(prf);
    let a = integ.map_or(0, integ_key_len);
    let e = encr_keymat_len(encr);
    let total = 3 * p + 2 * a + 2 * e;
    let keymat = prf_plus(prf, skeyseed.as_bytes(), &[ni, nr, spi_i, spi_r], total)?;
    let mut k = Pieces {
        rest: keymat.as_bytes(),
    };
    Ok(IkeKeys {
        sk_d: k.take(p)?,
        sk_ai: k.take(a)?,
        sk_ar: k.take(a)?,
        sk_ei: k.take(e)?,
        sk_er: k.take(e)?,
        sk_pi: k.take(p)?,
        sk_pr: k.take(p)?,
    })
}

/// The keys of an ESP Child SA: `_i` protects traffic from the initiator of
/// the exchange that created it to the responder, `_r` the reverse. The
/// integrity keys are empty with AES-GCM, whose encryption keys end with
/// the 4-byte salt.
#[derive(Clone, Debug)]
pub struct ChildKeys {
    pub encr_i: Secret,
    pub integ_i: Secret,
    pub encr_r: Secret,
    pub integ_r: Secret,
}

/// `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)` (RFC 7296 2.17), taken in
/// the order initiator-to-responder encryption key, its integrity key, then
/// the same for responder-to-initiator (RFC 4301 and 2.17's rules for ESP).
/// `g_ir` is the shared secret of a CREATE_CHILD_SA with KE payloads; the
/// nonces are those of the exchange (IKE_SA_INIT's for the first Child SA).
pub fn derive_child_keys(
    prf: Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr: Encryption,
    integ: Option<Integrity>,
) -> Result<ChildKeys, CryptoError> {
    let integ = check_integ(encr, integ)?;
    let e = encr_keymat_len(encr);
    let a = integ.map_or(0, integ_key_len);
    let keymat = match g_ir {
        Some(g) => prf_plus(prf, sk_d, &[g, ni, nr], 2 * (e + a))?,
        None => prf_plus(prf, sk_d, &[ni, nr], 2 * (e + a))?,
    };
    let mut k = Pieces {
        rest: keymat.as_bytes(),
    };
    Ok(ChildKeys {
        encr_i: k.take(e)?,
        integ_i: k.take(a)?,
        encr_r: k.take(e)?,
        integ_r: k.take(a)?,
    })
}

/// The octets an AUTH payload signs (RFC 7296 2.15):
/// `RealMessage | NonceOfPeer | prf(SK_px, IDx')`, where `first_message` is
/// the signer's IKE_SA_INIT message as sent (initiator: its request;
/// responder: its response), `peer_nonce` the other side's nonce data,
/// `sk_p` the signer's SK_pi or SK_pr and `id_body` the signer's ID payload
/// body (ID type, three reserved bytes, identification data).
pub fn signed_octets(
    prf: Prf,
    first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mac = self::prf(prf, sk_p, &[id_body]);
    let mut out = Vec::with_capacity(
        first_message
            .len()
            .saturating_add(peer_nonce.len())
            .saturating_add(mac.len()),
    );
    out.extend_from_slice(first_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(&mac);
    out
}

/// `AUTH = prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>)` (RFC 7296
/// 2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8]) -> Vec<u8> {
    let pad_key = Wiped(self::prf(prf, psk, &[KEY_PAD]));
    self::prf(prf, &pad_key, &[signed_octets])
}

/// Whether `auth` (a received AUTH payload's data) is the PSK AUTH value of
/// `signed_octets`, compared in constant time.
pub fn verify_psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8], auth: &[u8]) -> bool {
    ct_eq(&psk_auth(prf, psk, signed_octets), auth)
}

/// Equality of two byte strings in time independent of their contents
/// (not of their lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn ip_octets(addr: IpAddr) -> ([u8; 16], usize) {
    let mut buf = [0u8; 16];
    let n = match addr {
        IpAddr::V4(a) => {
            for (o, i) in buf.iter_mut().zip(a.octets()) {
                *o = i;
            }
            4
        }
        IpAddr::V6(a) => {
            buf = a.octets();
            16
        }
    };
    (buf, n)
}

/// NAT detection data (RFC 7296 2.23): `SHA-1(SPIi | SPIr | IP | Port)`,
/// the address in network order (4 or 16 bytes), the port as 2 bytes. The
/// protocol mandates SHA-1 here; it is not used for security.
pub fn nat_hash(spi_i: &[u8; 8], spi_r: &[u8; 8], addr: IpAddr, port: u16) -> [u8; 20] {
    let (ip, n) = ip_octets(addr);
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(spi_i);
    ctx.update(spi_r);
    ctx.update(ip.get(..n).unwrap_or_default());
    ctx.update(&port.to_be_bytes());
    let d = ctx.finish();
    let mut out = [0u8; 20];
    for (o, i) in out.iter_mut().zip(d.as_ref()) {
        *o = *i;
    }
    out
}

/// Fills `buf` from aws-lc's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    rand::fill(buf).map_err(|_| CryptoError::Rng)
}

struct CookieKey {
    version: u8,
    secret: Wiped<[u8; 32]>,
}

impl CookieKey {
    fn random(version: u8) -> Result<CookieKey, CryptoError> {
        let mut secret = Wiped([0u8; 32]);
        random_bytes(secret.as_mut_slice())?;
        Ok(CookieKey { version, secret })
    }

    fn digest(&self, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> digest::Digest {
        let (ip, n) = ip_octets(ip);
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(ni);
        ctx.update(ip.get(..n).unwrap_or_default());
        ctx.update(spi_i);
        ctx.update(self.secret.as_slice());
        ctx.finish()
    }
}

/// The responder's secret for stateless cookies (RFC 7296 2.6):
/// `Cookie = <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>)`.
/// [`CookieSecret::rotate`] replaces the secret; a cookie made with the
/// previous one still verifies, so a rotation does not reject an initiator
/// that is between its two IKE_SA_INIT requests.
pub struct CookieSecret {
    current: CookieKey,
    previous: Option<CookieKey>,
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieSecret")
            .field("version", &self.current.version)
            .finish_non_exhaustive()
    }
}

impl CookieSecret {
    /// A fresh random secret.
    pub fn new() -> Result<CookieSecret, CryptoError> {
        Ok(CookieSecret {
            current: CookieKey::random(0)?,
            previous: None,
        })
    }

    /// A new random secret becomes current; the current one is kept as the
    /// previous one (and the one before is forgotten).
    pub fn rotate(&mut self) -> Result<(), CryptoError> {
        let next = CookieKey::random(self.current.version.wrapping_add(1))?;
        self.previous = Some(std::mem::replace(&mut self.current, next));
        Ok(())
    }

    /// The cookie for an initiator's IKE_SA_INIT request: `ni` its nonce
    /// data, `ip` its address, `spi_i` its SPI. [`COOKIE_LEN`] bytes.
    pub fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> Vec<u8> {
        let d = self.current.digest(ni, ip, spi_i);
        let mut out = Vec::with_capacity(COOKIE_LEN);
        out.push(self.current.version);
        out.extend_from_slice(d.as_ref());
        out
    }

    /// Whether `cookie` was made by [`Self::cookie`] with the current or the
    /// previous secret for these values (constant-time comparison).
    pub fn verify(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let Some((&version, mac)) = cookie.split_first() else {
            return false;
        };
        let key = if version == self.current.version {
            &self.current
        } else {
            match &self.previous {
                Some(p) if p.version == version => p,
                _ => return false,
            }
        };
        ct_eq(key.digest(ni, ip, spi_i).as_ref(), mac)
    }
}
