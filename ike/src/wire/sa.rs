//! The SA payload (RFC 7296 3.3): proposals, their transforms, and the
//! transforms' attributes.
//!
//! ```text
//! Proposal:
//! | Last Substruc |   RESERVED    |         Proposal Length       |
//! | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//! ~                        SPI (variable)                         ~
//! ~                        <Transforms>                           ~
//! Transform:
//! | Last Substruc |   RESERVED    |        Transform Length       |
//! |Transform Type |   RESERVED    |          Transform ID         |
//! ~                      Transform Attributes                     ~
//! Attribute:
//! |A|       Attribute Type        |    AF=0  Attribute Length     |
//! |                               |    AF=1  Attribute Value      |
//! |                   AF=0  Attribute Value                       |
//! ```

use super::encode::Enc;
use super::reader::Reader;
use super::{MAX_PROPOSALS, MAX_TRANSFORMS, WireError, transform};

const PROPOSAL_HEADER_LEN: usize = 8;
const TRANSFORM_HEADER_LEN: usize = 8;
/// Last-substructure values.
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
const LAST: u8 = 0;
/// The attribute format bit: TV (value in the header) rather than TLV.
const AF_TV: u16 = 0x8000;

/// One proposal of an SA payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub number: u8,
    /// [`super::protocol`]: 1 IKE, 3 ESP.
    pub protocol: u8,
    /// 0, 4 or 8 bytes (none in IKE_SA_INIT, 4 for ESP and AH, 8 when
    /// rekeying an IKE SA).
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transform {
    /// [`super::transform`]: 1 ENCR, 2 PRF, 3 INTEG, 4 DH (KE), 5 ESN.
    pub kind: u8,
    pub id: u16,
    /// The Key Length attribute (type 14, TV format), in bits.
    pub key_length: Option<u16>,
}

impl Transform {
    pub const fn new(kind: u8, id: u16) -> Transform {
        Transform {
            kind,
            id,
            key_length: None,
        }
    }

    pub const fn with_key_length(kind: u8, id: u16, bits: u16) -> Transform {
        Transform {
            kind,
            id,
            key_length: Some(bits),
        }
    }
}

/// Proposal after proposal until the body ends. At least one.
pub(crate) fn decode_sa(body: &[u8]) -> Result<Vec<Proposal>, WireError> {
    if body.is_empty() {
        return Err(WireError::MalformedProposal("SA payload without proposals"));
    }
    let mut proposals = Vec::new();
    let mut r = Reader::new(body);
    while !r.is_empty() {
        if proposals.len() == MAX_PROPOSALS {
            return Err(WireError::TooMany {
                what: "proposals",
                limit: MAX_PROPOSALS,
            });
        }
        let truncated = WireError::MalformedProposal("truncated proposal header");
        let [last, _reserved, l0, l1] = r.array::<4>().ok_or(truncated)?;
        let length = usize::from(u16::from_be_bytes([l0, l1]));
        let inner_len = length
            .checked_sub(4)
            .filter(|_| length >= PROPOSAL_HEADER_LEN)
            .ok_or(WireError::MalformedProposal("proposal length < 8"))?;
        let inner = r.take(inner_len).ok_or(WireError::MalformedProposal(
            "proposal length overruns the SA payload",
        ))?;
        check_last(last, LAST, MORE_PROPOSALS, r.is_empty())
            .map_err(WireError::MalformedProposal)?;
        proposals.push(decode_proposal(inner)?);
    }
    Ok(proposals)
}

/// `Ok` if the last-substructure field fits the position.
fn check_last(v: u8, last: u8, more: u8, is_last: bool) -> Result<(), &'static str> {
    match (v, is_last) {
        (v, true) if v == last => Ok(()),
        (v, false) if v == more => Ok(()),
        (v, false) if v == last => Err("last-substructure 0 but more follow"),
        (v, true) if v == more => Err("last-substructure says more follow but none does"),
        _ => Err("bad last-substructure value"),
    }
}

/// A proposal after its first 4 bytes.
fn decode_proposal(inner: &[u8]) -> Result<Proposal, WireError> {
    let mut r = Reader::new(inner);
    let [number, protocol, spi_size, num_transforms] = r
        .array::<4>()
        .ok_or(WireError::MalformedProposal("truncated proposal header"))?;
    let spi = r
        .take(usize::from(spi_size))
        .ok_or(WireError::MalformedProposal(
            "SPI size exceeds the proposal length",
        ))?;
    if !matches!(spi_size, 0 | 4 | 8) {
        return Err(WireError::MalformedProposal("SPI size is not 0, 4 or 8"));
    }
    let count = usize::from(num_transforms);
    if count > MAX_TRANSFORMS {
        return Err(WireError::TooMany {
            what: "transforms",
            limit: MAX_TRANSFORMS,
        });
    }
    if count.saturating_mul(TRANSFORM_HEADER_LEN) > r.remaining() {
        return Err(WireError::MalformedProposal(
            "more transforms announced than fit the proposal",
        ));
    }
    let mut transforms = Vec::with_capacity(count);
    for i in 0..count {
        transforms.push(decode_transform(&mut r, i + 1 == count)?);
    }
    if !r.is_empty() {
        return Err(WireError::MalformedProposal(
            "bytes after the last transform",
        ));
    }
    Ok(Proposal {
        number,
        protocol,
        spi: spi.to_vec(),
        transforms,
    })
}

fn decode_transform(r: &mut Reader<'_>, is_last: bool) -> Result<Transform, WireError> {
    let truncated = WireError::MalformedTransform("truncated transform header");
    let [last, _reserved, l0, l1] = r.array::<4>().ok_or(truncated.clone())?;
    let length = usize::from(u16::from_be_bytes([l0, l1]));
    let inner_len = length
        .checked_sub(4)
        .filter(|_| length >= TRANSFORM_HEADER_LEN)
        .ok_or(WireError::MalformedTransform("transform length < 8"))?;
    let inner = r.take(inner_len).ok_or(WireError::MalformedTransform(
        "transform length overruns the proposal",
    ))?;
    check_last(last, LAST, MORE_TRANSFORMS, is_last).map_err(WireError::MalformedTransform)?;
    let mut t = Reader::new(inner);
    let [kind, _reserved, i0, i1] = t.array::<4>().ok_or(truncated)?;
    let key_length = decode_attributes(t.rest())?;
    Ok(Transform {
        kind,
        id: u16::from_be_bytes([i0, i1]),
        key_length,
    })
}

/// The Key Length attribute if present; other attributes are skipped.
fn decode_attributes(attrs: &[u8]) -> Result<Option<u16>, WireError> {
    let mut key_length = None;
    let mut r = Reader::new(attrs);
    while !r.is_empty() {
        let (Some(ty), Some(value)) = (r.u16(), r.u16()) else {
            return Err(WireError::MalformedAttribute("truncated attribute header"));
        };
        let tv = ty & AF_TV != 0;
        let ty = ty & !AF_TV;
        match (ty, tv) {
            (transform::ATTR_KEY_LENGTH, true) => {
                if key_length.replace(value).is_some() {
                    return Err(WireError::MalformedAttribute("key length given twice"));
                }
            }
            (transform::ATTR_KEY_LENGTH, false) => {
                return Err(WireError::MalformedAttribute("key length in TLV format"));
            }
            (_, true) => {}
            (_, false) => {
                r.take(usize::from(value))
                    .ok_or(WireError::MalformedAttribute(
                        "attribute length overruns the transform",
                    ))?;
            }
        }
    }
    Ok(key_length)
}

pub(crate) fn encode_sa(proposals: &[Proposal], e: &mut Enc) {
    if proposals.is_empty() {
        e.fail(WireError::Unencodable("SA payload without proposals"));
    }
    if proposals.len() > MAX_PROPOSALS {
        e.fail(WireError::TooMany {
            what: "proposals",
            limit: MAX_PROPOSALS,
        });
    }
    for (i, p) in proposals.iter().enumerate() {
        let last = i + 1 == proposals.len();
        let start = e.len();
        e.u8(if last { LAST } else { MORE_PROPOSALS });
        e.u8(0);
        let len_at = e.placeholder16();
        e.u8(p.number);
        e.u8(p.protocol);
        if !matches!(p.spi.len(), 0 | 4 | 8) {
            e.fail(WireError::Unencodable(
                "proposal SPI is not 0, 4 or 8 bytes",
            ));
        }
        let spi_size = e.count8(p.spi.len(), "SPI bytes");
        e.u8(spi_size);
        if p.transforms.len() > MAX_TRANSFORMS {
            e.fail(WireError::TooMany {
                what: "transforms",
                limit: MAX_TRANSFORMS,
            });
        }
        let count = e.count8(p.transforms.len(), "transforms");
        e.u8(count);
        e.bytes(&p.spi);
        for (j, t) in p.transforms.iter().enumerate() {
            let last = j + 1 == p.transforms.len();
            e.u8(if last { LAST } else { MORE_TRANSFORMS });
            e.u8(0);
            e.u16(if t.key_length.is_some() { 12 } else { 8 });
            e.u8(t.kind);
            e.u8(0);
            e.u16(t.id);
            if let Some(bits) = t.key_length {
                e.u16(AF_TV | transform::ATTR_KEY_LENGTH);
                e.u16(bits);
            }
        }
        e.patch_len16(len_at, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protocol;

    fn encode(proposals: &[Proposal]) -> Vec<u8> {
        let mut e = Enc::default();
        encode_sa(proposals, &mut e);
        assert_eq!(e.err, None);
        e.out
    }

    fn ike_proposal(number: u8) -> Proposal {
        Proposal {
            number,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, 20, 256),
                Transform::new(transform::PRF, 7),
                Transform::new(transform::DH, 31),
            ],
        }
    }

    /// One proposal, two transforms (ENCR 12 with key length 128, ESN 0).
    const ESP: [u8; 32] = [
        0, 0, 0, 32, // last, reserved, length
        1, 3, 4, 2, // number, ESP, SPI size, 2 transforms
        0xa, 0xb, 0xc, 0xd, // SPI
        3, 0, 0, 12, 1, 0, 0, 12, 0x80, 14, 0, 128, // ENCR 12, key length 128
        0, 0, 0, 8, 5, 0, 0, 0, // ESN 0
    ];

    #[test]
    fn decodes_known_bytes() -> Result<(), WireError> {
        let p = decode_sa(&ESP)?;
        assert_eq!(
            p,
            vec![Proposal {
                number: 1,
                protocol: protocol::ESP,
                spi: vec![0xa, 0xb, 0xc, 0xd],
                transforms: vec![
                    Transform::with_key_length(transform::ENCR, 12, 128),
                    Transform::new(transform::ESN, 0),
                ],
            }]
        );
        assert_eq!(encode(&p), ESP);
        Ok(())
    }

    #[test]
    fn round_trip() -> Result<(), WireError> {
        let ps = vec![ike_proposal(1), ike_proposal(2), ike_proposal(3)];
        assert_eq!(decode_sa(&encode(&ps))?, ps);
        Ok(())
    }

    #[test]
    fn unknown_attributes_are_skipped() -> Result<(), WireError> {
        let mut b = ESP.to_vec();
        // Transform 1 gets a TV attribute 99 and a TLV attribute 100 of 3 bytes.
        let extra = [0x80, 99, 0, 1, 0, 100, 0, 3, 7, 7, 7];
        b.splice(24..24, extra);
        b[3] += extra.len() as u8;
        b[15] += extra.len() as u8;
        assert_eq!(decode_sa(&b)?, decode_sa(&ESP)?);
        Ok(())
    }

    fn malformed(b: &[u8]) -> Option<WireError> {
        decode_sa(b).err()
    }

    #[test]
    fn empty_sa() {
        assert_eq!(
            malformed(&[]),
            Some(WireError::MalformedProposal("SA payload without proposals"))
        );
    }

    #[test]
    fn truncated_proposal() {
        assert_eq!(
            malformed(&ESP[..3]),
            Some(WireError::MalformedProposal("truncated proposal header"))
        );
        let mut b = ESP.to_vec();
        b[3] = 4;
        b.truncate(4);
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal("proposal length < 8"))
        );
    }

    #[test]
    fn proposal_length_overrun() {
        let mut b = ESP.to_vec();
        b[3] = 33;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal(
                "proposal length overruns the SA payload"
            ))
        );
    }

    #[test]
    fn spi_size_exceeds_proposal() {
        // A proposal of 8 bytes announcing a 4-byte SPI.
        assert_eq!(
            malformed(&[0, 0, 0, 8, 1, 3, 4, 0]),
            Some(WireError::MalformedProposal(
                "SPI size exceeds the proposal length"
            ))
        );
    }

    #[test]
    fn odd_spi_size() {
        assert_eq!(
            malformed(&[0, 0, 0, 11, 1, 3, 3, 0, 1, 2, 3]),
            Some(WireError::MalformedProposal("SPI size is not 0, 4 or 8"))
        );
    }

    #[test]
    fn last_substructure() {
        let mut b = ESP.to_vec();
        b[0] = 2;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal(
                "last-substructure says more follow but none does"
            ))
        );
        b[0] = 1;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal("bad last-substructure value"))
        );
        let mut two = ESP.to_vec();
        two.extend_from_slice(&ESP);
        assert_eq!(
            malformed(&two),
            Some(WireError::MalformedProposal(
                "last-substructure 0 but more follow"
            ))
        );
        two[0] = 2;
        assert!(decode_sa(&two).is_ok());
        let mut b = ESP.to_vec();
        b[12] = 0;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedTransform(
                "last-substructure 0 but more follow"
            ))
        );
        let mut b = ESP.to_vec();
        b[24] = 3;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedTransform(
                "last-substructure says more follow but none does"
            ))
        );
    }

    #[test]
    fn transform_count() {
        let mut b = ESP.to_vec();
        b[7] = 3;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal(
                "more transforms announced than fit the proposal"
            ))
        );
        b[7] = 1;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedTransform(
                "last-substructure says more follow but none does"
            ))
        );
        // One transform announced, one present, then garbage.
        let mut b = ESP.to_vec();
        b[7] = 1;
        b[12] = 0;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedProposal(
                "bytes after the last transform"
            ))
        );
        let mut b = vec![0, 0, 0, 8, 1, 3, 0, 200];
        b.extend(std::iter::repeat_n(0, 200 * 8));
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            malformed(&b),
            Some(WireError::TooMany {
                what: "transforms",
                limit: MAX_TRANSFORMS
            })
        );
    }

    #[test]
    fn too_many_proposals() {
        let one = [2, 0, 0, 8, 1, 1, 0, 0];
        let mut b = one.repeat(MAX_PROPOSALS + 1);
        let last = b.len() - 8;
        b[last] = 0;
        assert_eq!(
            malformed(&b),
            Some(WireError::TooMany {
                what: "proposals",
                limit: MAX_PROPOSALS
            })
        );
    }

    #[test]
    fn bad_transform_length() {
        let mut b = ESP.to_vec();
        b[15] = 7;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedTransform("transform length < 8"))
        );
        b[15] = 40;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedTransform(
                "transform length overruns the proposal"
            ))
        );
    }

    #[test]
    fn bad_attributes() {
        let mut b = ESP.to_vec();
        b[20] = 0; // key length in TLV format (length 128 overruns too, but format first)
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedAttribute("key length in TLV format"))
        );
        // A truncated attribute: transform length 10.
        let mut b = ESP.to_vec();
        b[15] = 10;
        b.drain(22..24);
        b[3] -= 2;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedAttribute("truncated attribute header"))
        );
        // Key length twice.
        let mut b = ESP.to_vec();
        b.splice(24..24, [0x80, 14, 1, 0]);
        b[3] += 4;
        b[15] += 4;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedAttribute("key length given twice"))
        );
        // A TLV attribute longer than the transform.
        let mut b = ESP.to_vec();
        b.splice(24..24, [0, 99, 0, 5, 1, 2, 3, 4]);
        b[3] += 8;
        b[15] += 8;
        assert_eq!(
            malformed(&b),
            Some(WireError::MalformedAttribute(
                "attribute length overruns the transform"
            ))
        );
    }

    #[test]
    fn encoding_refuses_what_does_not_fit() {
        let mut e = Enc::default();
        encode_sa(&[], &mut e);
        assert_eq!(
            e.err,
            Some(WireError::Unencodable("SA payload without proposals"))
        );
        let mut e = Enc::default();
        let mut p = ike_proposal(1);
        p.spi = vec![1, 2];
        encode_sa(&[p], &mut e);
        assert_eq!(
            e.err,
            Some(WireError::Unencodable(
                "proposal SPI is not 0, 4 or 8 bytes"
            ))
        );
    }
}
