//! Decoded payloads (RFC 7296 3.3-3.13), and their bodies' encoding.

use super::encode::Enc;
use super::reader::Reader;
use super::sa::{decode_sa, encode_sa};
use super::ts::{decode_ts, encode_ts};
use super::{
    MAX_DELETE_SPIS, NONCE_MAX, NONCE_MIN, Proposal, RawPayload, TrafficSelector, WireError,
    id_type, payload,
};

/// A decoded payload: owned, small, bounded by the message it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    /// 16 to 256 bytes.
    Nonce(Vec<u8>),
    IdI(Identification),
    IdR(Identification),
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Notify(Notify),
    Delete(Delete),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Vendor(Vec<u8>),
    /// Any other type (CERT, CERTREQ, CP, EAP, ... and unassigned ones),
    /// body as it is. Whether an unknown critical payload is refused is the
    /// engine's decision (RFC 7296 2.5). Encoding writes `data` as the
    /// body whatever the type (one that [`decode`] knows decodes as that).
    Unknown {
        ty: u8,
        critical: bool,
        data: Vec<u8>,
    },
}

/// An identification (RFC 7296 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// [`id_type`]: 1 IPv4 address, 2 FQDN, 3 RFC 822 address, 5 IPv6
    /// address, 9 DER DN, 11 key ID, ...
    pub id_type: u8,
    pub data: Vec<u8>,
}

impl Identification {
    /// The ID payload's body exactly as on the wire: type, three reserved
    /// zero bytes, data. RFC 7296 2.15 signs `prf(SK_p, body)`.
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + self.data.len());
        b.extend_from_slice(&[self.id_type, 0, 0, 0]);
        b.extend_from_slice(&self.data);
        b
    }
}

/// A notification (RFC 7296 3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// [`super::protocol`], or 0 when no SA is concerned.
    pub protocol: u8,
    pub spi: Vec<u8>,
    /// [`super::notify`].
    pub ty: u16,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification about no particular SA.
    pub fn new(ty: u16, data: Vec<u8>) -> Notify {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            ty,
            data,
        }
    }
}

/// A Delete payload (RFC 7296 3.11). For the IKE SA: protocol 1, SPI size
/// 0, no SPIs; for Child SAs: protocol 3 (ESP), SPI size 4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    pub protocol: u8,
    pub spi_size: u8,
    /// Each `spi_size` bytes long; at most [`MAX_DELETE_SPIS`].
    pub spis: Vec<Vec<u8>>,
}

impl Payload {
    /// The payload type number.
    pub fn ty(&self) -> u8 {
        match self {
            Payload::Sa(_) => payload::SA,
            Payload::Ke { .. } => payload::KE,
            Payload::Nonce(_) => payload::NONCE,
            Payload::IdI(_) => payload::IDI,
            Payload::IdR(_) => payload::IDR,
            Payload::Auth { .. } => payload::AUTH,
            Payload::Notify(_) => payload::NOTIFY,
            Payload::Delete(_) => payload::DELETE,
            Payload::TsI(_) => payload::TSI,
            Payload::TsR(_) => payload::TSR,
            Payload::Vendor(_) => payload::VENDOR,
            Payload::Unknown { ty, .. } => *ty,
        }
    }

    /// The critical bit as encoded: clear for the payloads of RFC 7296.
    pub fn critical(&self) -> bool {
        matches!(self, Payload::Unknown { critical: true, .. })
    }

    pub(crate) fn write_body(&self, e: &mut Enc) {
        match self {
            Payload::Sa(proposals) => encode_sa(proposals, e),
            Payload::Ke { group, data } => {
                e.u16(*group);
                e.u16(0);
                e.bytes(data);
            }
            Payload::Nonce(data) | Payload::Vendor(data) | Payload::Unknown { data, .. } => {
                e.bytes(data);
            }
            Payload::IdI(id) | Payload::IdR(id) => {
                e.bytes(&[id.id_type, 0, 0, 0]);
                e.bytes(&id.data);
            }
            Payload::Auth { method, data } => {
                e.bytes(&[*method, 0, 0, 0]);
                e.bytes(data);
            }
            Payload::Notify(n) => {
                e.u8(n.protocol);
                let spi_size = e.count8(n.spi.len(), "notify SPI bytes");
                e.u8(spi_size);
                e.u16(n.ty);
                e.bytes(&n.spi);
                e.bytes(&n.data);
            }
            Payload::Delete(d) => {
                if d.spis.len() > MAX_DELETE_SPIS {
                    e.fail(WireError::TooMany {
                        what: "SPIs to delete",
                        limit: MAX_DELETE_SPIS,
                    });
                }
                if d.spis.iter().any(|s| s.len() != usize::from(d.spi_size)) {
                    e.fail(WireError::Unencodable("delete SPI not spi_size bytes long"));
                }
                if d.spi_size == 0 && !d.spis.is_empty() {
                    e.fail(WireError::Unencodable("delete SPIs of size 0"));
                }
                e.u8(d.protocol);
                e.u8(d.spi_size);
                let count = e.count16(d.spis.len(), "SPIs to delete");
                e.u16(count);
                for spi in &d.spis {
                    e.bytes(spi);
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => encode_ts(ts, e),
        }
    }
}

/// Decodes one payload. Types this crate does not decode come back as
/// [`Payload::Unknown`]; the critical bit of the others is ignored (RFC
/// 7296 2.5: it is for payloads one does not understand).
pub fn decode(raw: &RawPayload<'_>) -> Result<Payload, WireError> {
    let body = raw.body;
    let ty = raw.ty;
    Ok(match ty {
        payload::SA => Payload::Sa(decode_sa(body)?),
        payload::KE => {
            let (head, data) = split_fixed(ty, body)?;
            let [g0, g1, _, _] = head;
            Payload::Ke {
                group: u16::from_be_bytes([g0, g1]),
                data: data.to_vec(),
            }
        }
        payload::NONCE => {
            if !(NONCE_MIN..=NONCE_MAX).contains(&body.len()) {
                return Err(WireError::BadNonceLength { len: body.len() });
            }
            Payload::Nonce(body.to_vec())
        }
        payload::IDI => Payload::IdI(decode_id(ty, body)?),
        payload::IDR => Payload::IdR(decode_id(ty, body)?),
        payload::AUTH => {
            let ([method, _, _, _], data) = split_fixed(ty, body)?;
            Payload::Auth {
                method,
                data: data.to_vec(),
            }
        }
        payload::NOTIFY => Payload::Notify(decode_notify(ty, body)?),
        payload::DELETE => Payload::Delete(decode_delete(ty, body)?),
        payload::TSI => Payload::TsI(decode_ts(ty, body)?),
        payload::TSR => Payload::TsR(decode_ts(ty, body)?),
        payload::VENDOR => Payload::Vendor(body.to_vec()),
        _ => Payload::Unknown {
            ty,
            critical: raw.critical,
            data: body.to_vec(),
        },
    })
}

/// The first 4 bytes of a body and the rest.
fn split_fixed(ty: u8, body: &[u8]) -> Result<([u8; 4], &[u8]), WireError> {
    body.split_first_chunk::<4>()
        .map(|(h, rest)| (*h, rest))
        .ok_or(WireError::PayloadTooShort {
            ty,
            len: body.len(),
            min: 4,
        })
}

fn decode_id(ty: u8, body: &[u8]) -> Result<Identification, WireError> {
    let ([id_type, _, _, _], data) = split_fixed(ty, body)?;
    let expected = match id_type {
        id_type::IPV4_ADDR => Some(4),
        id_type::IPV6_ADDR => Some(16),
        _ => None,
    };
    if let Some(expected) = expected
        && data.len() != expected
    {
        return Err(WireError::BadAddressLength {
            id_type,
            len: data.len(),
            expected,
        });
    }
    Ok(Identification {
        id_type,
        data: data.to_vec(),
    })
}

fn decode_notify(ty: u8, body: &[u8]) -> Result<Notify, WireError> {
    let ([protocol, spi_size, t0, t1], rest) = split_fixed(ty, body)?;
    let mut r = Reader::new(rest);
    let spi = r
        .take(usize::from(spi_size))
        .ok_or(WireError::MalformedNotify("SPI size exceeds the payload"))?;
    Ok(Notify {
        protocol,
        spi: spi.to_vec(),
        ty: u16::from_be_bytes([t0, t1]),
        data: r.rest().to_vec(),
    })
}

fn decode_delete(ty: u8, body: &[u8]) -> Result<Delete, WireError> {
    let ([protocol, spi_size, n0, n1], rest) = split_fixed(ty, body)?;
    let count = usize::from(u16::from_be_bytes([n0, n1]));
    if spi_size == 0 {
        if count != 0 {
            return Err(WireError::MalformedDelete("SPIs of size 0"));
        }
    } else if count > MAX_DELETE_SPIS {
        return Err(WireError::TooMany {
            what: "SPIs to delete",
            limit: MAX_DELETE_SPIS,
        });
    }
    if count.saturating_mul(spi_size.into()) != rest.len() {
        return Err(WireError::MalformedDelete(
            "number of SPIs times SPI size disagrees with the payload length",
        ));
    }
    let mut spis = Vec::with_capacity(count);
    let mut r = Reader::new(rest);
    while let Some(spi) = r.take(spi_size.into()).filter(|s| !s.is_empty()) {
        spis.push(spi.to_vec());
    }
    Ok(Delete {
        protocol,
        spi_size,
        spis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_chain, notify, parse_chain, protocol};

    fn raw(ty: u8, body: &[u8]) -> RawPayload<'_> {
        RawPayload {
            ty,
            critical: false,
            body,
            offset: 0,
        }
    }

    /// Encodes as a one-payload chain, checks the generic header, parses
    /// and decodes it back.
    fn round_trip(p: &Payload) -> Result<Vec<u8>, WireError> {
        let (first, bytes) = encode_chain(std::slice::from_ref(p));
        assert_eq!(first, p.ty());
        assert_eq!(bytes[0], 0, "next payload");
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            bytes.len()
        );
        let chain = parse_chain(first, &bytes)?;
        assert_eq!(chain.len(), 1);
        assert_eq!(&decode(&chain[0])?, p);
        Ok(bytes[4..].to_vec())
    }

    #[test]
    fn ke() -> Result<(), WireError> {
        let p = Payload::Ke {
            group: 31,
            data: vec![0xaa; 32],
        };
        let body = round_trip(&p)?;
        assert_eq!(body[..4], [0, 31, 0, 0]);
        for n in 0..4 {
            assert_eq!(
                decode(&raw(payload::KE, &body[..n])),
                Err(WireError::PayloadTooShort {
                    ty: payload::KE,
                    len: n,
                    min: 4
                })
            );
        }
        Ok(())
    }

    #[test]
    fn nonce() -> Result<(), WireError> {
        round_trip(&Payload::Nonce(vec![1; 16]))?;
        round_trip(&Payload::Nonce(vec![2; 256]))?;
        for len in [0, 15, 257] {
            assert_eq!(
                decode(&raw(payload::NONCE, &vec![0; len])),
                Err(WireError::BadNonceLength { len })
            );
        }
        Ok(())
    }

    #[test]
    fn identification() -> Result<(), WireError> {
        let id = Identification {
            id_type: id_type::FQDN,
            data: b"gw.example".to_vec(),
        };
        let body = round_trip(&Payload::IdI(id.clone()))?;
        assert_eq!(body, id.body());
        assert_eq!(&body[..4], &[2, 0, 0, 0]);
        round_trip(&Payload::IdR(Identification {
            id_type: id_type::IPV4_ADDR,
            data: vec![192, 0, 2, 1],
        }))?;
        round_trip(&Payload::IdR(Identification {
            id_type: id_type::IPV6_ADDR,
            data: vec![0xfd; 16],
        }))?;
        round_trip(&Payload::IdI(Identification {
            id_type: id_type::KEY_ID,
            data: vec![],
        }))?;
        assert_eq!(
            decode(&raw(payload::IDI, &[2, 0, 0])),
            Err(WireError::PayloadTooShort {
                ty: payload::IDI,
                len: 3,
                min: 4
            })
        );
        assert_eq!(
            decode(&raw(payload::IDR, &[1, 0, 0, 0, 10, 0, 0])),
            Err(WireError::BadAddressLength {
                id_type: 1,
                len: 3,
                expected: 4
            })
        );
        assert_eq!(
            decode(&raw(payload::IDR, &[5, 0, 0, 0, 10, 0, 0, 1])),
            Err(WireError::BadAddressLength {
                id_type: 5,
                len: 4,
                expected: 16
            })
        );
        Ok(())
    }

    #[test]
    fn auth() -> Result<(), WireError> {
        let body = round_trip(&Payload::Auth {
            method: 2,
            data: vec![7; 32],
        })?;
        assert_eq!(body[..4], [2, 0, 0, 0]);
        assert_eq!(
            decode(&raw(payload::AUTH, &[2])),
            Err(WireError::PayloadTooShort {
                ty: payload::AUTH,
                len: 1,
                min: 4
            })
        );
        Ok(())
    }

    #[test]
    fn notify() -> Result<(), WireError> {
        let body = round_trip(&Payload::Notify(Notify {
            protocol: protocol::ESP,
            spi: vec![1, 2, 3, 4],
            ty: notify::REKEY_SA,
            data: vec![],
        }))?;
        assert_eq!(body, [3, 4, 0x40, 0x09, 1, 2, 3, 4]);
        round_trip(&Payload::Notify(Notify::new(notify::COOKIE, vec![9; 20])))?;
        round_trip(&Payload::Notify(Notify::new(
            notify::INVALID_SYNTAX,
            vec![],
        )))?;
        assert_eq!(
            decode(&raw(payload::NOTIFY, &[3, 5, 0x40, 0x09, 1, 2, 3, 4])),
            Err(WireError::MalformedNotify("SPI size exceeds the payload"))
        );
        assert_eq!(
            decode(&raw(payload::NOTIFY, &[0, 0, 0])),
            Err(WireError::PayloadTooShort {
                ty: payload::NOTIFY,
                len: 3,
                min: 4
            })
        );
        Ok(())
    }

    #[test]
    fn delete() -> Result<(), WireError> {
        let body = round_trip(&Payload::Delete(Delete {
            protocol: protocol::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }))?;
        assert_eq!(body[..4], [3, 4, 0, 2]);
        let body = round_trip(&Payload::Delete(Delete {
            protocol: protocol::IKE,
            spi_size: 0,
            spis: vec![],
        }))?;
        assert_eq!(body, [1, 0, 0, 0]);
        assert_eq!(
            decode(&raw(payload::DELETE, &[1, 0, 0, 1])),
            Err(WireError::MalformedDelete("SPIs of size 0"))
        );
        assert_eq!(
            decode(&raw(payload::DELETE, &[3, 4, 0, 2, 1, 2, 3, 4])),
            Err(WireError::MalformedDelete(
                "number of SPIs times SPI size disagrees with the payload length"
            ))
        );
        assert_eq!(
            decode(&raw(payload::DELETE, &[3, 4, 0, 1, 1, 2, 3, 4, 5])),
            Err(WireError::MalformedDelete(
                "number of SPIs times SPI size disagrees with the payload length"
            ))
        );
        assert_eq!(
            decode(&raw(payload::DELETE, &[3, 4, 0xff, 0xff])),
            Err(WireError::TooMany {
                what: "SPIs to delete",
                limit: MAX_DELETE_SPIS
            })
        );
        assert_eq!(
            decode(&raw(payload::DELETE, &[3, 4, 0])),
            Err(WireError::PayloadTooShort {
                ty: payload::DELETE,
                len: 3,
                min: 4
            })
        );
        Ok(())
    }

    #[test]
    fn traffic_selectors() -> Result<(), WireError> {
        let ts = vec![TrafficSelector::from_subnet([10, 0, 0, 0].into(), 8)];
        round_trip(&Payload::TsI(ts.clone()))?;
        round_trip(&Payload::TsR(ts))?;
        assert_eq!(
            decode(&raw(payload::TSR, &[1, 0, 0])),
            Err(WireError::PayloadTooShort {
                ty: payload::TSR,
                len: 3,
                min: 4
            })
        );
        Ok(())
    }

    #[test]
    fn vendor_and_unknown() -> Result<(), WireError> {
        round_trip(&Payload::Vendor(b"vpcgw".to_vec()))?;
        round_trip(&Payload::Vendor(vec![]))?;
        let body = round_trip(&Payload::Unknown {
            ty: payload::CP,
            critical: true,
            data: vec![1, 0, 0, 0],
        })?;
        assert_eq!(body, [1, 0, 0, 0]);
        let (_, bytes) = encode_chain(&[Payload::Unknown {
            ty: 200,
            critical: true,
            data: vec![],
        }]);
        assert_eq!(bytes, [0, 0x80, 0, 4]);
        // The critical bit of known payloads is ignored on receipt.
        let mut r = raw(payload::VENDOR, b"x");
        r.critical = true;
        assert_eq!(decode(&r)?, Payload::Vendor(b"x".to_vec()));
        Ok(())
    }

    #[test]
    fn sa() -> Result<(), WireError> {
        use crate::wire::{Transform, transform};
        round_trip(&Payload::Sa(vec![Proposal {
            number: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, 20, 256),
                Transform::new(transform::PRF, 7),
                Transform::new(transform::DH, 31),
            ],
        }]))?;
        assert_eq!(
            decode(&raw(payload::SA, &[])),
            Err(WireError::MalformedProposal("SA payload without proposals"))
        );
        Ok(())
    }
}
