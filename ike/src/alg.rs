//! The algorithms vpcgw negotiates, with their IANA numbers (RFC 7296
//! section 3.3.2, RFC 5282 for AES-GCM) and strongSwan's names. The
//! configuration refuses everything else (RFC 8247's MUST NOTs and the
//! phased-out algorithms); see the agent's config module.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    Aes128Cbc,
    Aes256Cbc,
    Aes128Gcm16,
    Aes256Gcm16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

/// Diffie-Hellman groups, by IANA number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhGroup {
    Modp2048 = 14,
    Ecp256 = 19,
    Ecp384 = 20,
    Curve25519 = 31,
}

impl Encryption {
    pub const ALL: [Self; 4] = [
        Self::Aes128Cbc,
        Self::Aes256Cbc,
        Self::Aes128Gcm16,
        Self::Aes256Gcm16,
    ];

    /// The word the configuration file uses.
    pub const fn keyword(self) -> &'static str {
        match self {
            Self::Aes128Cbc => "aes-128",
            Self::Aes256Cbc => "aes-256",
            Self::Aes128Gcm16 => "aes-128-gcm-16",
            Self::Aes256Gcm16 => "aes-256-gcm-16",
        }
    }

    /// strongSwan proposal keyword.
    pub const fn strongswan(self) -> &'static str {
        match self {
            Self::Aes128Cbc => "aes128",
            Self::Aes256Cbc => "aes256",
            Self::Aes128Gcm16 => "aes128gcm16",
            Self::Aes256Gcm16 => "aes256gcm16",
        }
    }

    /// GCM authenticates by itself: no separate integrity transform.
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::Aes128Gcm16 | Self::Aes256Gcm16)
    }

    pub const fn key_bits(self) -> u16 {
        match self {
            Self::Aes128Cbc | Self::Aes128Gcm16 => 128,
            Self::Aes256Cbc | Self::Aes256Gcm16 => 256,
        }
    }

    /// IKEv2 transform type 1 ID (IANA): ENCR_AES_CBC = 12, ENCR_AES_GCM_16 = 20.
    /// The key length goes in the Key Length attribute ([`Self::key_bits`]).
    pub const fn transform_id(self) -> u16 {
        if self.is_aead() { 20 } else { 12 }
    }
}

impl Integrity {
    pub const ALL: [Self; 3] = [
        Self::HmacSha256_128,
        Self::HmacSha384_192,
        Self::HmacSha512_256,
    ];

    pub const fn keyword(self) -> &'static str {
        match self {
            Self::HmacSha256_128 => "hmac-sha2-256",
            Self::HmacSha384_192 => "hmac-sha2-384",
            Self::HmacSha512_256 => "hmac-sha2-512",
        }
    }

    /// strongSwan proposal keyword (its `sha256` is HMAC-SHA2-256-128, etc.).
    pub const fn strongswan(self) -> &'static str {
        match self {
            Self::HmacSha256_128 => "sha256",
            Self::HmacSha384_192 => "sha384",
            Self::HmacSha512_256 => "sha512",
        }
    }

    /// IKEv2 transform type 3 ID (IANA): AUTH_HMAC_SHA2_256_128 = 12, ...
    pub const fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Bytes of the truncated ICV: half the hash.
    pub const fn icv_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }

    /// The PRF on the same hash: the default PRF of a CBC IKE policy.
    pub const fn prf(self) -> Prf {
        match self {
            Self::HmacSha256_128 => Prf::HmacSha256,
            Self::HmacSha384_192 => Prf::HmacSha384,
            Self::HmacSha512_256 => Prf::HmacSha512,
        }
    }
}

impl Prf {
    pub const ALL: [Self; 3] = [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];

    pub const fn keyword(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha2-256",
            Self::HmacSha384 => "hmac-sha2-384",
            Self::HmacSha512 => "hmac-sha2-512",
        }
    }

    /// strongSwan proposal keyword.
    pub const fn strongswan(self) -> &'static str {
        match self {
            Self::HmacSha256 => "prfsha256",
            Self::HmacSha384 => "prfsha384",
            Self::HmacSha512 => "prfsha512",
        }
    }

    /// IKEv2 transform type 2 ID (IANA): PRF_HMAC_SHA2_256 = 5, 384 = 6, 512 = 7.
    pub const fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }
}

impl DhGroup {
    pub const ALL: [Self; 4] = [Self::Modp2048, Self::Ecp256, Self::Ecp384, Self::Curve25519];

    /// IANA group number (IKEv2 transform type 4 ID).
    pub const fn number(self) -> u16 {
        self as u16
    }

    pub const fn from_number(n: i64) -> Option<Self> {
        match n {
            14 => Some(Self::Modp2048),
            19 => Some(Self::Ecp256),
            20 => Some(Self::Ecp384),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// The name the file accepts, which is also strongSwan's keyword.
    pub const fn keyword(self) -> &'static str {
        match self {
            Self::Modp2048 => "modp2048",
            Self::Ecp256 => "ecp256",
            Self::Ecp384 => "ecp384",
            Self::Curve25519 => "curve25519",
        }
    }
}
