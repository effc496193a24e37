//! Walking a payload chain (RFC 7296 3.2): each payload starts with a
//! generic header whose next-payload field names the type of the one after.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::reader::Reader;
use super::{
    HEADER_LEN, Header, MAX_MESSAGE, MAX_PAYLOADS, PAYLOAD_HEADER_LEN, WireError, payload,
};

/// One payload as it sits in the message, undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPayload<'a> {
    pub ty: u8,
    pub critical: bool,
    /// The payload after its generic header.
    pub body: &'a [u8],
    /// Offset of its 4-byte generic header from the start of the buffer
    /// given to the parser.
    pub offset: usize,
}

impl RawPayload<'_> {
    /// The payload with its generic header: `buf[offset..offset + 4 +
    /// body.len()]` of the parsed buffer.
    pub fn end(&self) -> usize {
        self.offset + PAYLOAD_HEADER_LEN + self.body.len()
    }

    /// An encrypted payload (SK or SKF): must be the last of its chain.
    pub fn is_encrypted(&self) -> bool {
        is_encrypted(self.ty)
    }
}

fn is_encrypted(ty: u8) -> bool {
    ty == payload::SK || ty == payload::SKF
}

/// A whole message: header checked (major version 2, length field equal to
/// the buffer's length, at most [`MAX_MESSAGE`]), payload chain walked and
/// bounded (at most [`MAX_PAYLOADS`] payloads, no bytes after the last).
///
/// An SK (46) or SKF (53, RFC 7383) payload must be the last. Its `body` is
/// `IV || ciphertext || ICV` (for SKF, preceded by the fragment number and
/// the total number of fragments, 2 bytes each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payloads: Vec<RawPayload<'a>>,
    /// When the last payload is SK: its next-payload field, the type of the
    /// first payload of the encrypted chain (0 if it is empty). For SKF it
    /// is the fragment's next-payload field (nonzero only in fragment 1,
    /// RFC 7383 2.5).
    pub sk_first_payload: Option<u8>,
}

impl<'a> Message<'a> {
    /// The SK or SKF payload, if any (the last payload).
    pub fn encrypted(&self) -> Option<&RawPayload<'a>> {
        self.payloads.last().filter(|p| p.is_encrypted())
    }
}

/// Parses a whole IKE message (without the non-ESP marker of port 4500).
pub fn parse_message(buf: &[u8]) -> Result<Message<'_>, WireError> {
    if buf.len() > MAX_MESSAGE {
        return Err(WireError::MessageTooLong { len: buf.len() });
    }
    let header = Header::parse(buf)?;
    if header.major != 2 {
        return Err(WireError::UnsupportedMajorVersion {
            major: header.major,
        });
    }
    if usize::try_from(header.length).ok() != Some(buf.len()) {
        return Err(WireError::BadLength {
            field: header.length,
            actual: buf.len(),
        });
    }
    let chain = buf.get(HEADER_LEN..).unwrap_or_default();
    let (payloads, sk_first_payload) = walk(header.next_payload, chain, HEADER_LEN, true)?;
    Ok(Message {
        header,
        payloads,
        sk_first_payload,
    })
}

/// Parses the chain inside a decrypted SK payload (padding and pad length
/// already removed), starting with type `first`; offsets are from the start
/// of `buf`. An SK or SKF payload inside is refused.
pub fn parse_chain(first: u8, buf: &[u8]) -> Result<Vec<RawPayload<'_>>, WireError> {
    if buf.len() > MAX_MESSAGE {
        return Err(WireError::MessageTooLong { len: buf.len() });
    }
    walk(first, buf, 0, false).map(|(payloads, _)| payloads)
}

/// Walks `chain` (which starts at `base` in the caller's buffer). With
/// `outer`, an encrypted payload ends the walk (it must be last) and its
/// next-payload field is returned.
fn walk(
    first: u8,
    chain: &[u8],
    base: usize,
    outer: bool,
) -> Result<(Vec<RawPayload<'_>>, Option<u8>), WireError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut r = Reader::new(chain);
    let mut offset = base;
    while next != payload::NONE {
        if payloads.len() == MAX_PAYLOADS {
            return Err(WireError::TooManyPayloads);
        }
        let ty = next;
        let truncated = WireError::TruncatedPayloadHeader { ty, offset };
        let [np, flags, l0, l1] = r.array::<4>().ok_or(truncated)?;
        let length = u16::from_be_bytes([l0, l1]);
        let body_len = usize::from(length)
            .checked_sub(PAYLOAD_HEADER_LEN)
            .ok_or(WireError::PayloadLengthTooShort { ty, offset, length })?;
        let remaining = r.remaining();
        let body = r.take(body_len).ok_or(WireError::ChainOverrun {
            ty,
            offset,
            length,
            remaining: remaining + PAYLOAD_HEADER_LEN,
        })?;
        payloads.push(RawPayload {
            ty,
            critical: flags & 0x80 != 0,
            body,
            offset,
        });
        if is_encrypted(ty) {
            if !outer {
                return Err(WireError::NestedEncrypted { ty, offset });
            }
            if !r.is_empty() {
                return Err(WireError::SkNotLast { ty, offset });
            }
            return Ok((payloads, Some(np)));
        }
        offset += usize::from(length);
        next = np;
    }
    if !r.is_empty() {
        return Err(WireError::TrailingData {
            offset,
            extra: r.remaining(),
        });
    }
    Ok((payloads, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Exchange, flags};

    /// A message of the given chain bytes (header length set).
    fn message(first: u8, chain: &[u8]) -> Vec<u8> {
        let mut h = Header::new([7; 8], [0; 8], Exchange::IkeSaInit, flags::INITIATOR, 0);
        h.next_payload = first;
        h.length = (HEADER_LEN + chain.len()) as u32;
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(chain);
        out
    }

    #[test]
    fn walks_a_chain() -> Result<(), WireError> {
        // Nonce (4 bytes body) -> Vendor (critical, empty body) -> end.
        let chain = [43, 0, 0, 8, 1, 2, 3, 4, 0, 0x80, 0, 4];
        let buf = message(payload::NONCE, &chain);
        let m = parse_message(&buf)?;
        assert_eq!(m.sk_first_payload, None);
        assert_eq!(m.encrypted(), None);
        assert_eq!(
            m.payloads,
            vec![
                RawPayload {
                    ty: payload::NONCE,
                    critical: false,
                    body: &[1, 2, 3, 4],
                    offset: 28
                },
                RawPayload {
                    ty: payload::VENDOR,
                    critical: true,
                    body: &[],
                    offset: 36
                },
            ]
        );
        assert_eq!(parse_chain(payload::NONCE, &chain)?[1].offset, 8);
        Ok(())
    }

    #[test]
    fn empty_chain() -> Result<(), WireError> {
        let buf = message(payload::NONE, &[]);
        assert!(parse_message(&buf)?.payloads.is_empty());
        assert_eq!(parse_chain(payload::NONE, &[])?, vec![]);
        Ok(())
    }

    #[test]
    fn sk_payload() -> Result<(), WireError> {
        // Notify (empty body) -> SK whose inner chain starts with IDi.
        let chain = [46, 0, 0, 4, 35, 0, 0, 7, 9, 9, 9];
        let buf = message(payload::NOTIFY, &chain);
        let m = parse_message(&buf)?;
        assert_eq!(m.sk_first_payload, Some(payload::IDI));
        let sk = m.encrypted().copied();
        assert_eq!(
            sk,
            Some(RawPayload {
                ty: payload::SK,
                critical: false,
                body: &[9, 9, 9],
                offset: 32
            })
        );
        assert_eq!(sk.map(|p| p.end()), Some(buf.len()));
        Ok(())
    }

    #[test]
    fn sk_not_last() {
        let chain = [40, 0, 0, 4, 0, 0, 0, 4];
        assert_eq!(
            parse_message(&message(payload::SK, &chain)),
            Err(WireError::SkNotLast {
                ty: payload::SK,
                offset: 28
            })
        );
        assert_eq!(
            parse_message(&message(payload::SKF, &chain)),
            Err(WireError::SkNotLast {
                ty: payload::SKF,
                offset: 28
            })
        );
    }

    #[test]
    fn nested_sk() {
        assert_eq!(
            parse_chain(payload::SK, &[0, 0, 0, 4]),
            Err(WireError::NestedEncrypted {
                ty: payload::SK,
                offset: 0
            })
        );
    }

    #[test]
    fn unsupported_major_version() {
        let mut buf = message(payload::NONE, &[]);
        buf[17] = 0x30;
        assert_eq!(
            parse_message(&buf),
            Err(WireError::UnsupportedMajorVersion { major: 3 })
        );
        buf[17] = 0x10;
        assert_eq!(
            parse_message(&buf),
            Err(WireError::UnsupportedMajorVersion { major: 1 })
        );
        // Minor versions are accepted (RFC 7296 2.5).
        buf[17] = 0x21;
        assert!(parse_message(&buf).is_ok());
    }

    #[test]
    fn bad_length_field() {
        let mut buf = message(payload::NONE, &[]);
        buf.push(0);
        assert_eq!(
            parse_message(&buf),
            Err(WireError::BadLength {
                field: 28,
                actual: 29
            })
        );
        buf.truncate(28);
        buf[27] = 27;
        assert_eq!(
            parse_message(&buf),
            Err(WireError::BadLength {
                field: 27,
                actual: 28
            })
        );
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            parse_message(&[0; 27]),
            Err(WireError::TruncatedHeader { len: 27 })
        );
    }

    #[test]
    fn too_long() {
        let buf = vec![0; MAX_MESSAGE + 1];
        assert_eq!(
            parse_message(&buf),
            Err(WireError::MessageTooLong {
                len: MAX_MESSAGE + 1
            })
        );
        assert_eq!(
            parse_chain(0, &buf),
            Err(WireError::MessageTooLong {
                len: MAX_MESSAGE + 1
            })
        );
    }

    #[test]
    fn truncated_payload_header() {
        assert_eq!(
            parse_chain(payload::NONCE, &[0, 0, 0]),
            Err(WireError::TruncatedPayloadHeader {
                ty: payload::NONCE,
                offset: 0
            })
        );
        // The next payload is announced but absent.
        assert_eq!(
            parse_message(&message(payload::NONCE, &[40, 0, 0, 4])),
            Err(WireError::TruncatedPayloadHeader {
                ty: payload::NONCE,
                offset: 32
            })
        );
    }

    #[test]
    fn payload_length_below_4() {
        for length in 0..4u8 {
            assert_eq!(
                parse_chain(payload::KE, &[0, 0, 0, length]),
                Err(WireError::PayloadLengthTooShort {
                    ty: payload::KE,
                    offset: 0,
                    length: length.into()
                })
            );
        }
    }

    #[test]
    fn chain_overrun() {
        assert_eq!(
            parse_chain(payload::KE, &[0, 0, 0, 9, 1, 2, 3, 4]),
            Err(WireError::ChainOverrun {
                ty: payload::KE,
                offset: 0,
                length: 9,
                remaining: 8
            })
        );
    }

    #[test]
    fn trailing_data() {
        assert_eq!(
            parse_chain(payload::VENDOR, &[0, 0, 0, 4, 0xff]),
            Err(WireError::TrailingData {
                offset: 4,
                extra: 1
            })
        );
        assert_eq!(
            parse_chain(payload::NONE, &[0]),
            Err(WireError::TrailingData {
                offset: 0,
                extra: 1
            })
        );
    }

    #[test]
    fn too_many_payloads() -> Result<(), WireError> {
        let one = [payload::VENDOR, 0, 0, 4];
        let chain: Vec<u8> = one.repeat(MAX_PAYLOADS + 1);
        assert_eq!(
            parse_chain(payload::VENDOR, &chain),
            Err(WireError::TooManyPayloads)
        );
        // Exactly the limit is fine.
        let mut chain: Vec<u8> = one.repeat(MAX_PAYLOADS);
        let last = chain.len() - 4;
        chain[last] = 0;
        assert_eq!(parse_chain(payload::VENDOR, &chain)?.len(), MAX_PAYLOADS);
        Ok(())
    }
}
