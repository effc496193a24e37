//! The cryptographic policy: which algorithm names the file accepts, which it
//! refuses and why, and how they are spelt elsewhere (IANA transform IDs for
//! IKE, strongSwan proposal notation for humans).
//!
//! Accepted: AES-CBC (128/256) with HMAC-SHA2, AES-GCM with a 16-octet ICV,
//! PRFs HMAC-SHA2, DH groups 14, 19, 20, 31. That is RFC 8247's (IKEv2) and
//! RFC 8221's (ESP) MUST/SHOULD set minus the algorithms a gateway does not
//! need to offer. Refused with a reason: what those RFCs say MUST NOT or are
//! phasing out (DES, 3DES, MD5, SHA-1, MODP groups under 2048 bits).

use toml::Value;

use super::names::{one_of, quote};
use super::{DhGroup, Encryption, IkePolicy, Integrity, IpsecPolicy, Prf};

impl IkePolicy {
    /// strongSwan notation: `aes128gcm16-prfsha256-modp2048`,
    /// `aes256-sha256-ecp384` (the PRF is implied by the integrity algorithm
    /// unless it differs: `aes256-sha256-prfsha512-ecp384`).
    pub fn proposal(&self) -> String {
        let mut parts = vec![self.encryption.strongswan()];
        match self.integrity {
            Some(integ) => {
                parts.push(integ.strongswan());
                if integ.prf() != self.prf {
                    parts.push(self.prf.strongswan());
                }
            }
            None => parts.push(self.prf.strongswan()),
        }
        parts.push(self.dh_group.keyword());
        parts.join("-")
    }
}

impl IpsecPolicy {
    /// strongSwan ESP notation: `aes128gcm16`, `aes256-sha256-modp2048` (the
    /// group is the PFS group of CHILD_SA rekeys).
    pub fn proposal(&self) -> String {
        let mut parts = vec![self.encryption.strongswan()];
        if let Some(integ) = self.integrity {
            parts.push(integ.strongswan());
        }
        if let Some(g) = self.pfs {
            parts.push(g.keyword());
        }
        parts.join("-")
    }
}

const USE_AEAD: &str = "use aes-128-gcm-16 or aes-256-gcm-16";
const USE_SHA2: &str = "use hmac-sha2-256, hmac-sha2-384 or hmac-sha2-512";
const USE_GROUPS: &str = "use 14 (modp2048), 19 (ecp256), 20 (ecp384) or 31 (curve25519)";

fn words<T: Copy>(all: &[T], keyword: fn(T) -> &'static str) -> String {
    one_of(&all.iter().map(|&a| keyword(a)).collect::<Vec<_>>())
}

pub(super) fn parse_encryption(s: &str) -> Result<Encryption, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(e) = Encryption::ALL.into_iter().find(|e| e.keyword() == lower) {
        return Ok(e);
    }
    Err(match lower.as_str() {
        "3des" | "3des-cbc" | "des3" | "des-ede3" | "des-ede3-cbc" | "tripledes" | "triple-des" => {
            format!(
                "3DES is refused: its 64-bit block lets an attacker who sees a few tens of \
                 gigabytes of one tunnel recover plaintext (Sweet32 birthday attack, \
                 CVE-2016-2183); {USE_AEAD}"
            )
        }
        "des" | "des-cbc" => format!(
            "DES is refused: its 56-bit key is brute-forced in hours and its 64-bit block \
             is open to Sweet32; RFC 8247 and RFC 8221 say MUST NOT; {USE_AEAD}"
        ),
        "null" | "none" | "encr-null" => {
            format!(
                "encryption cannot be turned off: ENCR_NULL sends the traffic in clear; {USE_AEAD}"
            )
        }
        "aes-128-gcm" | "aes-256-gcm" | "aes-128-gcm-8" | "aes-256-gcm-8" | "aes-128-gcm-12"
        | "aes-256-gcm-12" => {
            format!(
                "{} is not supported: only GCM with a 16-octet ICV is (RFC 8247 and RFC 8221 \
                 recommend it); {USE_AEAD}",
                quote(s)
            )
        }
        _ => format!(
            "unsupported encryption {}; use {}",
            quote(s),
            words(&Encryption::ALL, Encryption::keyword)
        ),
    })
}

fn refused_hash(what: &str, lower: &str) -> Option<String> {
    let name = lower.strip_prefix("prf-").unwrap_or(lower);
    let hash = name.strip_prefix("hmac-").unwrap_or(name);
    match hash {
        "md5" | "md5-96" => Some(format!(
            "{what} HMAC-MD5 is refused: MD5 is broken and RFC 8247 and RFC 8221 say MUST NOT; {USE_SHA2}"
        )),
        "sha1" | "sha1-96" | "sha" | "sha-1" => Some(format!(
            "{what} HMAC-SHA1 is refused: SHA-1 is broken for collisions (SHAttered) and \
             RFC 8247 deprecates it for IKEv2 (MUST-, on its way out); {USE_SHA2}"
        )),
        _ => None,
    }
}

pub(super) fn parse_integrity(s: &str) -> Result<Integrity, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = Integrity::ALL.into_iter().find(|i| i.keyword() == lower) {
        return Ok(i);
    }
    if let Some(reason) = refused_hash("integrity", &lower) {
        return Err(reason);
    }
    Err(match lower.as_str() {
        "none" | "null" => format!(
            "integrity cannot be turned off for a CBC cipher; omit integrity and pick a GCM \
             cipher ({USE_AEAD}) to get authenticated encryption without it"
        ),
        _ => format!("unsupported integrity {}; {USE_SHA2}", quote(s)),
    })
}

pub(super) fn parse_prf(s: &str) -> Result<Prf, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(p) = Prf::ALL.into_iter().find(|p| p.keyword() == lower) {
        return Ok(p);
    }
    Err(refused_hash("prf", &lower)
        .unwrap_or_else(|| format!("unsupported prf {}; {USE_SHA2}", quote(s))))
}

fn group_by_number(n: i64) -> Result<DhGroup, String> {
    if let Some(g) = DhGroup::from_number(n) {
        return Ok(g);
    }
    let bits = match n {
        1 => 768,
        2 => 1024,
        5 => 1536,
        _ => return Err(format!("DH group {n} is not supported; {USE_GROUPS}")),
    };
    Err(format!(
        "DH group {n} (MODP {bits}-bit) is refused: MODP groups under 2048 bits are within \
         reach of precomputation attacks (Logjam); {USE_GROUPS}"
    ))
}

/// A DH group as a number (`14`) or a name (`"modp2048"`, `"group14"`).
pub(super) fn parse_dh(v: &Value) -> Result<DhGroup, String> {
    match v {
        Value::Integer(n) => group_by_number(*n),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            if let Some(g) = DhGroup::ALL.into_iter().find(|g| g.keyword() == lower) {
                return Ok(g);
            }
            let by_name = match lower.as_str() {
                "x25519" => return Ok(DhGroup::Curve25519),
                "modp768" => Some(1),
                "modp1024" => Some(2),
                "modp1536" => Some(5),
                _ => lower
                    .strip_prefix("group")
                    .and_then(|n| n.parse::<i64>().ok()),
            };
            match by_name {
                Some(n) => group_by_number(n),
                None => Err(format!("unsupported DH group {}; {USE_GROUPS}", quote(s))),
            }
        }
        other => Err(format!(
            "must be a group number or name, not a {}; {USE_GROUPS}",
            other.type_str()
        )),
    }
}

/// PFS: a DH group, or `"none"` for no PFS.
pub(super) fn parse_pfs(v: &Value) -> Result<Option<DhGroup>, String> {
    match v {
        Value::String(s) if s.eq_ignore_ascii_case("none") => Ok(None),
        v => parse_dh(v)
            .map(Some)
            .map_err(|e| format!("{e}; or \"none\" for no PFS")),
    }
}
