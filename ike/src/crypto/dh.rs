//! Diffie-Hellman for the KE payload, in IKE's formats:
//! - MODP (group 14, RFC 3526): the public value and the shared secret are
//!   big-endian, left-padded with zeros to the modulus length, 256 bytes
//!   (RFC 7296 3.4 and 2.14);
//! - ECP (groups 19, 20): the public value is `x | y`, each coordinate as
//!   long as the field (64 or 96 bytes, no SEC 1 point-format byte), the
//!   shared secret is `x` alone (RFC 5903 7);
//! - Curve25519 (group 31): 32-byte public values and shared secret
//!   (RFC 8031 2).

use std::fmt;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};

use super::modp::{self, ModpKey};
use super::{CryptoError, Secret};
use crate::alg::DhGroup;

/// SEC 1 tag of an uncompressed point, which RFC 5903 leaves out.
const SEC1_UNCOMPRESSED: u8 = 0x04;

/// Length of a KE payload's key exchange data for `group`.
pub const fn public_value_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp2048 => modp::LEN,
        DhGroup::Ecp256 => 64,
        DhGroup::Ecp384 => 96,
        DhGroup::Curve25519 => 32,
    }
}

/// Length of the shared secret `g^ir` for `group`.
pub const fn shared_secret_len(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp2048 => modp::LEN,
        DhGroup::Ecp256 => 32,
        DhGroup::Ecp384 => 48,
        DhGroup::Curve25519 => 32,
    }
}

enum Key {
    Modp(ModpKey),
    Ec(PrivateKey),
}

/// The private half of one Diffie-Hellman exchange. Used once, by
/// [`dh_agree`]; freeing it clears the private key. `Debug` shows only the
/// group.
pub struct DhPrivate {
    group: DhGroup,
    key: Key,
}

impl DhPrivate {
    pub fn group(&self) -> DhGroup {
        self.group
    }
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn ec_alg(group: DhGroup) -> Option<&'static agreement::Algorithm> {
    match group {
        DhGroup::Modp2048 => None,
        DhGroup::Ecp256 => Some(&agreement::ECDH_P256),
        DhGroup::Ecp384 => Some(&agreement::ECDH_P384),
        DhGroup::Curve25519 => Some(&agreement::X25519),
    }
}

/// Our public value of `key` in the KE payload format of `group`.
fn ec_public(group: DhGroup, key: &PrivateKey) -> Result<Vec<u8>, CryptoError> {
    let public = key.compute_public_key().map_err(|_| CryptoError::Backend)?;
    let bytes = public.as_ref();
    let value = match group {
        DhGroup::Curve25519 => bytes,
        _ => match bytes.split_first() {
            Some((&SEC1_UNCOMPRESSED, xy)) => xy,
            _ => return Err(CryptoError::Backend),
        },
    };
    if value.len() != public_value_len(group) {
        return Err(CryptoError::Backend);
    }
    Ok(value.to_vec())
}

/// A fresh private key for `group` and our public value (the KE payload's
/// key exchange data).
pub fn dh_generate(group: DhGroup) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
    match ec_alg(group) {
        None => {
            let (key, public) = ModpKey::generate()?;
            Ok((
                DhPrivate {
                    group,
                    key: Key::Modp(key),
                },
                public,
            ))
        }
        Some(alg) => {
            let key = PrivateKey::generate(alg).map_err(|_| CryptoError::Backend)?;
            let public = ec_public(group, &key)?;
            Ok((
                DhPrivate {
                    group,
                    key: Key::Ec(key),
                },
                public,
            ))
        }
    }
}

/// A key from fixed private bytes (big-endian scalar for ECP and MODP, the
/// RFC 7748 string for X25519), for known-answer tests.
#[cfg(test)]
pub(crate) fn dh_from_private(
    group: DhGroup,
    private: &[u8],
) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
    match ec_alg(group) {
        None => {
            let (key, public) = ModpKey::from_private(private)?;
            Ok((
                DhPrivate {
                    group,
                    key: Key::Modp(key),
                },
                public,
            ))
        }
        Some(alg) => {
            let key = PrivateKey::from_private_key(alg, private)
                .map_err(|_| CryptoError::BadPublicValue)?;
            let public = ec_public(group, &key)?;
            Ok((
                DhPrivate {
                    group,
                    key: Key::Ec(key),
                },
                public,
            ))
        }
    }
}

/// The shared secret `g^ir` with the peer's KE data `peer_public`, which is
/// validated: exactly [`public_value_len`] bytes; MODP: 1 < y < p-1 and
/// y^q = 1 (aws-lc's `DH_check_pub_key`, q = (p-1)/2); ECP: a point on the
/// curve (aws-lc); X25519: the result is not all zeros (RFC 8031 2.3, RFC
/// 7748 6.1). The secret is in the RFC format ([`shared_secret_len`]
/// bytes).
pub fn dh_agree(private: DhPrivate, peer_public: &[u8]) -> Result<Secret, CryptoError> {
    let group = private.group;
    let expected = public_value_len(group);
    if peer_public.len() != expected {
        return Err(CryptoError::WrongLength {
            expected,
            got: peer_public.len(),
        });
    }
    let secret = match private.key {
        Key::Modp(key) => key.agree(peer_public)?,
        Key::Ec(key) => {
            let encoded = match group {
                DhGroup::Curve25519 => peer_public.to_vec(),
                _ => {
                    let mut v = Vec::with_capacity(expected + 1);
                    v.push(SEC1_UNCOMPRESSED);
                    v.extend_from_slice(peer_public);
                    v
                }
            };
            let peer = UnparsedPublicKey::new(key.algorithm(), encoded);
            agreement::agree(&key, peer, CryptoError::BadPublicValue, |s| {
                Ok(Secret::new(s.to_vec()))
            })?
        }
    };
    if secret.len() != shared_secret_len(group) {
        return Err(CryptoError::Backend);
    }
    // aws-lc already refuses an all-zero X25519 result; checked again here
    // because RFC 8031 2.3 makes it the receiver's duty.
    if group == DhGroup::Curve25519 && secret.as_bytes().iter().fold(0u8, |acc, b| acc | b) == 0 {
        return Err(CryptoError::BadPublicValue);
    }
    Ok(secret)
}
