//! Encoding chains and messages, and the SK framing helpers.

use super::reader::{patch_u16, patch_u32};
use super::{
    HEADER_LEN, Header, MAX_MESSAGE, MAX_PAYLOADS, PAYLOAD_HEADER_LEN, Payload, RawPayload,
    WireError, payload,
};

/// An output buffer that remembers the first thing that did not fit the
/// format (the infallible encoders ignore it, the `try_` ones return it).
#[derive(Default)]
pub(crate) struct Enc {
    pub(crate) out: Vec<u8>,
    pub(crate) err: Option<WireError>,
}

impl Enc {
    pub(crate) fn fail(&mut self, e: WireError) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Two zero bytes to patch later; returns their position.
    pub(crate) fn placeholder16(&mut self) -> usize {
        let at = self.out.len();
        self.u16(0);
        at
    }

    /// Writes at `at` the length of what was written since `start`.
    pub(crate) fn patch_len16(&mut self, at: usize, start: usize) {
        let len = self.out.len().saturating_sub(start);
        let v = u16::try_from(len).unwrap_or_else(|_| {
            self.fail(WireError::Unencodable(
                "substructure longer than 65535 bytes",
            ));
            u16::MAX
        });
        patch_u16(&mut self.out, at, v);
    }

    /// A count for a one-byte field.
    pub(crate) fn count8(&mut self, n: usize, what: &'static str) -> u8 {
        u8::try_from(n).unwrap_or_else(|_| {
            self.fail(WireError::TooMany {
                what,
                limit: u8::MAX.into(),
            });
            u8::MAX
        })
    }

    /// A count for a two-byte field.
    pub(crate) fn count16(&mut self, n: usize, what: &'static str) -> u16 {
        u16::try_from(n).unwrap_or_else(|_| {
            self.fail(WireError::TooMany {
                what,
                limit: u16::MAX.into(),
            });
            u16::MAX
        })
    }
}

fn chain_into(payloads: &[Payload], e: &mut Enc) -> u8 {
    if payloads.len() > MAX_PAYLOADS {
        e.fail(WireError::TooManyPayloads);
    }
    let mut types = payloads.iter().map(Payload::ty).skip(1);
    for p in payloads {
        let ty = p.ty();
        if ty == payload::NONE || ty == payload::SK || ty == payload::SKF {
            e.fail(WireError::Unencodable(
                "payload type 0, SK or SKF in a chain (SK is framed with sk_header)",
            ));
        }
        let start = e.len();
        e.u8(types.next().unwrap_or(payload::NONE));
        e.u8(if p.critical() { 0x80 } else { 0 });
        let len_at = e.placeholder16();
        p.write_body(e);
        let len = e.len().saturating_sub(start);
        let v = u16::try_from(len).unwrap_or_else(|_| {
            e.fail(WireError::PayloadTooLong {
                ty,
                len: len.saturating_sub(PAYLOAD_HEADER_LEN),
            });
            u16::MAX
        });
        patch_u16(&mut e.out, len_at, v);
    }
    payloads.first().map_or(payload::NONE, Payload::ty)
}

/// Encodes `payloads` as a chain: returns the first type (0 if none) and
/// the bytes, next-payload fields filled in. Only payloads that fit the
/// format give a chain that parses back: [`try_encode_chain`] checks that.
pub fn encode_chain(payloads: &[Payload]) -> (u8, Vec<u8>) {
    let mut e = Enc::default();
    let first = chain_into(payloads, &mut e);
    (first, e.out)
}

/// [`encode_chain`], refusing what would not parse back: a body longer
/// than [`super::MAX_PAYLOAD_BODY`], more than [`MAX_PAYLOADS`] payloads,
/// counts that overflow their fields, values the decoder refuses (an SA
/// without proposals, a proposal SPI not 0, 4 or 8 bytes long, a TS
/// payload without selectors or with addresses of the wrong family, Delete
/// SPIs not `spi_size` long), an `Unknown` of type 0, SK or SKF, or a
/// chain longer than [`MAX_MESSAGE`].
pub fn try_encode_chain(payloads: &[Payload]) -> Result<(u8, Vec<u8>), WireError> {
    let mut e = Enc::default();
    let first = chain_into(payloads, &mut e);
    if e.out.len() > MAX_MESSAGE {
        e.fail(WireError::MessageTooLong { len: e.out.len() });
    }
    match e.err {
        Some(err) => Err(err),
        None => Ok((first, e.out)),
    }
}

fn message_into(header: &Header, payloads: &[Payload], e: &mut Enc) {
    header.write(&mut e.out);
    let first = chain_into(payloads, e);
    if let Some(next) = e.out.get_mut(16) {
        *next = first;
    }
    let len = u32::try_from(e.out.len()).unwrap_or(u32::MAX);
    patch_u32(&mut e.out, 24, len);
}

/// A plaintext message (no SK): `header` with `next_payload` and `length`
/// set, then the chain.
pub fn encode_message(header: &Header, payloads: &[Payload]) -> Vec<u8> {
    let mut e = Enc::default();
    message_into(header, payloads, &mut e);
    e.out
}

/// [`encode_message`], refusing what [`try_encode_chain`] refuses and a
/// message longer than [`MAX_MESSAGE`].
pub fn try_encode_message(header: &Header, payloads: &[Payload]) -> Result<Vec<u8>, WireError> {
    let mut e = Enc::default();
    message_into(header, payloads, &mut e);
    if e.out.len() > MAX_MESSAGE {
        e.fail(WireError::MessageTooLong { len: e.out.len() });
    }
    match e.err {
        Some(err) => Err(err),
        None => Ok(e.out),
    }
}

/// The generic payload header of an SK payload whose body (IV, ciphertext
/// and ICV) is `body_len` bytes, the first inner payload being
/// `first_inner`; critical bit clear. `body_len` must be at most
/// [`super::MAX_PAYLOAD_BODY`] (the length field saturates beyond).
pub fn sk_header(first_inner: u8, body_len: usize) -> [u8; 4] {
    let len = u16::try_from(body_len.saturating_add(PAYLOAD_HEADER_LEN)).unwrap_or(u16::MAX);
    let [l0, l1] = len.to_be_bytes();
    [first_inner, 0, l0, l1]
}

/// The IKE header (next payload SK, length covering the whole message) and
/// the SK generic header, for an SK body of `body_len` bytes: the first 32
/// bytes of the encrypted message, and exactly the AEAD's additional
/// authenticated data (RFC 5282 5.1) when no unencrypted payload precedes
/// SK (vpcgw sends none).
pub fn sk_message_prefix(header: &Header, first_inner: u8, body_len: usize) -> Vec<u8> {
    let mut h = *header;
    h.next_payload = payload::SK;
    let total = body_len.saturating_add(HEADER_LEN + PAYLOAD_HEADER_LEN);
    h.length = u32::try_from(total).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + PAYLOAD_HEADER_LEN);
    h.write(&mut out);
    out.extend_from_slice(&sk_header(first_inner, body_len));
    out
}

/// The AEAD's additional authenticated data of a received message (RFC
/// 5282 5.1): the IKE header and all payloads up to and including the SK
/// payload's generic header, `message[..sk.offset + 4]`. `sk` is the SK
/// payload of `parse_message(message)`. For an SKF payload the Fragment
/// Number and Total Fragments fields are included too (RFC 7383 2.5),
/// `message[..sk.offset + 8]`.
pub fn sk_aad<'a>(message: &'a [u8], sk: &RawPayload<'_>) -> Option<&'a [u8]> {
    let header = if sk.ty == payload::SKF {
        PAYLOAD_HEADER_LEN + 4
    } else {
        PAYLOAD_HEADER_LEN
    };
    message.get(..sk.offset.checked_add(header)?)
}

/// The bytes a separate integrity algorithm covers (RFC 7296 3.14): the
/// whole message up to the ICV, `message[..message.len() - icv_len]`
/// (IKE header, payloads before SK, SK generic header, IV and ciphertext).
pub fn sk_integrity_region(message: &[u8], icv_len: usize) -> Option<&[u8]> {
    message.get(..message.len().checked_sub(icv_len)?)
}
