//! The Encrypted payload, SK (RFC 7296 3.14; AES-GCM: RFC 5282).
//!
//! ```text
//! IKE header | SK generic header (4) | IV | ciphertext | ICV
//! plaintext = inner payloads | padding | pad length (1)
//! ```
//!
//! - AES-CBC (RFC 3602) with HMAC-SHA2 (RFC 4868): a 16-byte random IV; the
//!   plaintext is padded with zeros to whole 16-byte blocks; the ICV is the
//!   truncated HMAC, under SK_a of the sending direction, of the whole
//!   message from the first byte of the IKE header to the end of the
//!   ciphertext (encrypt-then-MAC: it is checked before anything is
//!   decrypted).
//! - AES-GCM with a 16-byte tag: an 8-byte IV, the nonce `salt | IV` (the
//!   salt is the last 4 bytes of SK_e), no padding but the pad length byte
//!   (RFC 5282 3), the AAD the IKE header through the SK generic header
//!   (RFC 5282 5.1), the ICV the GCM tag.
//!
//! The IV is random for both: aws-lc's CSPRNG, a fresh one per message.
//! For GCM's 64-bit IV the chance of a repeat stays negligible for far more
//! messages than an IKE SA carries before it is rekeyed.

use std::fmt;

use aws_lc_rs::{aead, cipher, hmac};

use super::{
    CryptoError, IkeKeys, Secret, check_integ, ct_eq, encr_keymat_len, integ_key_len, random_bytes,
};
use crate::alg::{Encryption, Integrity};
use crate::wire::{self, HEADER_LEN, Header, MAX_MESSAGE, MAX_PAYLOAD_BODY, PAYLOAD_HEADER_LEN};

const CBC_BLOCK: usize = 16;
const CBC_IV_LEN: usize = 16;
const GCM_IV_LEN: usize = 8;
const GCM_SALT_LEN: usize = 4;
const GCM_TAG_LEN: usize = 16;

fn integ_hmac(integ: Integrity) -> hmac::Algorithm {
    match integ {
        Integrity::HmacSha256_128 => hmac::HMAC_SHA256,
        Integrity::HmacSha384_192 => hmac::HMAC_SHA384,
        Integrity::HmacSha512_256 => hmac::HMAC_SHA512,
    }
}

fn expect_len(secret: &Secret, expected: usize) -> Result<&[u8], CryptoError> {
    if secret.len() == expected {
        Ok(secret.as_bytes())
    } else {
        Err(CryptoError::WrongLength {
            expected,
            got: secret.len(),
        })
    }
}

fn cbc_key(encr: Encryption, key: &[u8]) -> Result<cipher::UnboundCipherKey, CryptoError> {
    let alg = match encr.key_bits() {
        128 => &cipher::AES_128,
        _ => &cipher::AES_256,
    };
    cipher::UnboundCipherKey::new(alg, key).map_err(|_| CryptoError::Backend)
}

/// AES-GCM key and salt from SK_e (key first, salt last: RFC 5282 7.1).
fn gcm_key(encr: Encryption, keymat: &[u8]) -> Result<(aead::LessSafeKey, [u8; 4]), CryptoError> {
    let alg = match encr.key_bits() {
        128 => &aead::AES_128_GCM,
        _ => &aead::AES_256_GCM,
    };
    let split = keymat
        .len()
        .checked_sub(GCM_SALT_LEN)
        .ok_or(CryptoError::Backend)?;
    let (key, salt) = keymat.split_at_checked(split).ok_or(CryptoError::Backend)?;
    let salt: [u8; GCM_SALT_LEN] = salt.try_into().map_err(|_| CryptoError::Backend)?;
    let key = aead::UnboundKey::new(alg, key).map_err(|_| CryptoError::Backend)?;
    Ok((aead::LessSafeKey::new(key), salt))
}

fn gcm_nonce(salt: &[u8; GCM_SALT_LEN], iv: &[u8; GCM_IV_LEN]) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    for (o, i) in n.iter_mut().zip(salt.iter().chain(iv)) {
        *o = *i;
    }
    aead::Nonce::assume_unique_for_key(n)
}

/// CBC keys for one direction: the cipher (`K` encrypts or decrypts) and
/// the HMAC key, with the ICV length.
struct Cbc<K> {
    key: K,
    mac: hmac::Key,
    icv_len: usize,
}

// The CBC variants are boxed: aws-lc's HMAC context is large.
enum Sealer {
    Cbc(Box<Cbc<cipher::EncryptingKey>>),
    Gcm {
        key: aead::LessSafeKey,
        salt: [u8; GCM_SALT_LEN],
    },
}

enum Opener {
    Cbc(Box<Cbc<cipher::DecryptingKey>>),
    Gcm {
        key: aead::LessSafeKey,
        salt: [u8; GCM_SALT_LEN],
    },
}

/// SK payload protection for one IKE SA: sealing with our direction's keys,
/// opening with the peer's. `Debug` shows only the algorithms.
pub struct SkCrypto {
    encr: Encryption,
    integ: Option<Integrity>,
    sealer: Sealer,
    opener: Opener,
}

impl fmt::Debug for SkCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCrypto")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

/// Refuses a message that would not fit: the SK payload's length is 16
/// bits, and the whole message must stay within [`MAX_MESSAGE`].
fn check_size(body_len: usize) -> Result<(), CryptoError> {
    let total = body_len.saturating_add(HEADER_LEN + PAYLOAD_HEADER_LEN);
    if body_len > MAX_PAYLOAD_BODY || total > MAX_MESSAGE {
        return Err(CryptoError::TooLarge { len: total });
    }
    Ok(())
}

/// Drops the padding and the pad length byte (any pad length that fits is
/// accepted, RFC 7296 3.14).
fn strip_padding(mut plain: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
    let (&pad, rest) = plain.split_last().ok_or(CryptoError::BadPadding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(CryptoError::BadPadding)?;
    plain.truncate(keep);
    Ok(plain)
}

impl SkCrypto {
    /// `initiator`: whether we are the original initiator of this IKE SA.
    /// We then send with SK_ei/SK_ai and receive with SK_er/SK_ar; the
    /// original responder the other way round. Key lengths are checked
    /// against the algorithms.
    pub fn new(
        encr: Encryption,
        integ: Option<Integrity>,
        keys: &IkeKeys,
        initiator: bool,
    ) -> Result<SkCrypto, CryptoError> {
        let integ = check_integ(encr, integ)?;
        let (e_out, a_out, e_in, a_in) = if initiator {
            (&keys.sk_ei, &keys.sk_ai, &keys.sk_er, &keys.sk_ar)
        } else {
            (&keys.sk_er, &keys.sk_ar, &keys.sk_ei, &keys.sk_ai)
        };
        let e_len = encr_keymat_len(encr);
        let (sealer, opener) = match integ {
            None => {
                let (key, salt) = gcm_key(encr, expect_len(e_out, e_len)?)?;
                let sealer = Sealer::Gcm { key, salt };
                let (key, salt) = gcm_key(encr, expect_len(e_in, e_len)?)?;
                (sealer, Opener::Gcm { key, salt })
            }
            Some(integ) => {
                let a_len = integ_key_len(integ);
                let alg = integ_hmac(integ);
                let icv_len = integ.icv_len();
                let sealer = Sealer::Cbc(Box::new(Cbc {
                    key: cipher::EncryptingKey::cbc(cbc_key(encr, expect_len(e_out, e_len)?)?)
                        .map_err(|_| CryptoError::Backend)?,
                    mac: hmac::Key::new(alg, expect_len(a_out, a_len)?),
                    icv_len,
                }));
                let opener = Opener::Cbc(Box::new(Cbc {
                    key: cipher::DecryptingKey::cbc(cbc_key(encr, expect_len(e_in, e_len)?)?)
                        .map_err(|_| CryptoError::Backend)?,
                    mac: hmac::Key::new(alg, expect_len(a_in, a_len)?),
                    icv_len,
                }));
                (sealer, opener)
            }
        };
        Ok(SkCrypto {
            encr,
            integ,
            sealer,
            opener,
        })
    }

    /// The whole protected message: `header` (with next payload SK and the
    /// length of the result), then an SK payload whose first inner payload
    /// is `first_inner` and whose plaintext is `inner` (the encoded inner
    /// chain), padded, encrypted and integrity protected.
    pub fn seal(
        &self,
        header: &Header,
        first_inner: u8,
        inner: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut iv = [0u8; CBC_IV_LEN];
        let iv_len = match self.sealer {
            Sealer::Cbc(_) => CBC_IV_LEN,
            Sealer::Gcm { .. } => GCM_IV_LEN,
        };
        let iv = iv.get_mut(..iv_len).ok_or(CryptoError::Backend)?;
        random_bytes(iv)?;
        self.seal_with_iv(header, first_inner, inner, iv)
    }

    /// [`Self::seal`] with a given IV (16 bytes for CBC, 8 for GCM).
    pub(super) fn seal_with_iv(
        &self,
        header: &Header,
        first_inner: u8,
        inner: &[u8],
        iv: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        match &self.sealer {
            Sealer::Cbc(cbc) => {
                let Cbc { key, mac, icv_len } = &**cbc;
                let iv: [u8; CBC_IV_LEN] = iv.try_into().map_err(|_| CryptoError::Backend)?;
                let pad_len = (CBC_BLOCK - (inner.len() + 1) % CBC_BLOCK) % CBC_BLOCK;
                let ct_len = inner.len() + pad_len + 1;
                let body_len = CBC_IV_LEN.saturating_add(ct_len).saturating_add(*icv_len);
                check_size(body_len)?;
                let mut out = wire::sk_message_prefix(header, first_inner, body_len);
                out.reserve_exact(body_len);
                out.extend_from_slice(&iv);
                let ct_start = out.len();
                out.extend_from_slice(inner);
                out.resize(out.len() + pad_len, 0);
                out.push(u8::try_from(pad_len).map_err(|_| CryptoError::Backend)?);
                let ct = out.get_mut(ct_start..).ok_or(CryptoError::Backend)?;
                key.less_safe_encrypt(ct, cipher::EncryptionContext::Iv128(iv.into()))
                    .map_err(|_| CryptoError::Backend)?;
                let tag = hmac::sign(mac, &out);
                let icv = tag.as_ref().get(..*icv_len).ok_or(CryptoError::Backend)?;
                out.extend_from_slice(icv);
                Ok(out)
            }
            Sealer::Gcm { key, salt } => {
                let iv: [u8; GCM_IV_LEN] = iv.try_into().map_err(|_| CryptoError::Backend)?;
                let body_len = GCM_IV_LEN
                    .saturating_add(inner.len())
                    .saturating_add(1 + GCM_TAG_LEN);
                check_size(body_len)?;
                let mut out = wire::sk_message_prefix(header, first_inner, body_len);
                let aad_len = out.len();
                out.reserve_exact(body_len);
                out.extend_from_slice(&iv);
                out.extend_from_slice(inner);
                out.push(0); // pad length: GCM needs no padding
                let (aad, rest) = out
                    .split_at_mut_checked(aad_len)
                    .ok_or(CryptoError::Backend)?;
                let pt = rest.get_mut(GCM_IV_LEN..).ok_or(CryptoError::Backend)?;
                let tag = key
                    .seal_in_place_separate_tag(gcm_nonce(salt, &iv), aead::Aad::from(&*aad), pt)
                    .map_err(|_| CryptoError::Backend)?;
                out.extend_from_slice(tag.as_ref());
                Ok(out)
            }
        }
    }

    /// Checks and decrypts the SK payload of `message` (the whole IKE
    /// message, without a non-ESP marker), whose generic header starts at
    /// `sk_offset`; returns the inner chain (padding removed). The SK
    /// payload must end the message. Never panics: every malformed input
    /// is an error.
    pub fn open(&self, message: &[u8], sk_offset: usize) -> Result<Vec<u8>, CryptoError> {
        if sk_offset < HEADER_LEN {
            return Err(CryptoError::Malformed);
        }
        let hdr_end = sk_offset
            .checked_add(PAYLOAD_HEADER_LEN)
            .ok_or(CryptoError::Malformed)?;
        let sk_hdr: [u8; PAYLOAD_HEADER_LEN] = message
            .get(sk_offset..hdr_end)
            .and_then(|h| h.try_into().ok())
            .ok_or(CryptoError::Malformed)?;
        let [_, _, l0, l1] = sk_hdr;
        let sk_len = usize::from(u16::from_be_bytes([l0, l1]));
        let end = sk_offset
            .checked_add(sk_len)
            .ok_or(CryptoError::Malformed)?;
        if end != message.len() {
            return Err(CryptoError::Malformed);
        }
        let body = message.get(hdr_end..end).ok_or(CryptoError::Malformed)?;
        match &self.opener {
            Opener::Cbc(cbc) => {
                let Cbc { key, mac, icv_len } = &**cbc;
                let ct_len = body
                    .len()
                    .checked_sub(CBC_IV_LEN + icv_len)
                    .ok_or(CryptoError::Malformed)?;
                if ct_len == 0 || !ct_len.is_multiple_of(CBC_BLOCK) {
                    return Err(CryptoError::Malformed);
                }
                let icv_start = end.checked_sub(*icv_len).ok_or(CryptoError::Malformed)?;
                let (covered, icv) = message
                    .split_at_checked(icv_start)
                    .ok_or(CryptoError::Malformed)?;
                let tag = hmac::sign(mac, covered);
                let expected = tag.as_ref().get(..*icv_len).ok_or(CryptoError::Backend)?;
                if !ct_eq(expected, icv) {
                    return Err(CryptoError::AuthenticationFailed);
                }
                let (iv, rest) = body
                    .split_first_chunk::<CBC_IV_LEN>()
                    .ok_or(CryptoError::Malformed)?;
                let mut plain = rest.get(..ct_len).ok_or(CryptoError::Malformed)?.to_vec();
                key.decrypt(&mut plain, cipher::DecryptionContext::Iv128((*iv).into()))
                    .map_err(|_| CryptoError::DecryptionFailed)?;
                strip_padding(plain)
            }
            Opener::Gcm { key, salt } => {
                if body.len() < GCM_IV_LEN + 1 + GCM_TAG_LEN {
                    return Err(CryptoError::Malformed);
                }
                let aad = message.get(..hdr_end).ok_or(CryptoError::Malformed)?;
                let (iv, rest) = body
                    .split_first_chunk::<GCM_IV_LEN>()
                    .ok_or(CryptoError::Malformed)?;
                let mut buf = rest.to_vec();
                let plain_len = key
                    .open_in_place(gcm_nonce(salt, iv), aead::Aad::from(aad), &mut buf)
                    .map_err(|_| CryptoError::AuthenticationFailed)?
                    .len();
                buf.truncate(plain_len);
                strip_padding(buf)
            }
        }
    }
}
