//! IKEv2 messages on the wire (RFC 7296 section 3), in the style of
//! smoltcp's `wire`: typed views over untrusted bytes, every length checked
//! before use, and the encoders that produce the same format.
//!
//! Parsing is in two steps. [`parse_message`] checks the IKE header and walks
//! the payload chain into [`RawPayload`]s (type, critical bit, body, offset),
//! without looking inside the bodies; [`decode`] turns one raw payload into
//! an owned [`Payload`]. The chain inside a decrypted SK payload is walked by
//! [`parse_chain`]. Encoding goes the other way: [`encode_chain`] and
//! [`encode_message`] (or their `try_` forms, which refuse what does not fit
//! the format).
//!
//! Nothing here panics or allocates without bound, whatever the input: the
//! number of payloads, proposals, transforms, selectors and SPIs is limited
//! ([`MAX_PAYLOADS`], [`MAX_PROPOSALS`], [`MAX_TRANSFORMS`],
//! [`MAX_DELETE_SPIS`]; a TS payload counts its selectors in one byte),
//! counts are checked against the bytes present before anything is
//! allocated, and byte vectors are copies of slices of the input.
//!
//! # The SK payload (RFC 7296 3.14, RFC 5282 5.1)
//!
//! An encrypted message is `IKE header || [unencrypted payloads] || SK`,
//! where the SK payload is `generic header (4) || IV || ciphertext || ICV`
//! and must be the last payload. The SK generic header's next-payload field
//! names the first payload of the encrypted chain
//! ([`Message::sk_first_payload`]); the [`RawPayload::body`] of the SK
//! payload is `IV || ciphertext || ICV`.
//!
//! - With an AEAD cipher (AES-GCM, RFC 5282 5.1), the additional
//!   authenticated data is the IKE header and every payload before the SK
//!   payload, up to and including the SK payload's 4-byte generic header:
//!   `message[..sk.offset + 4]` ([`sk_aad`]). The IV is not part of it, and
//!   the ICV is the AEAD tag at the end of the body.
//! - With a separate integrity algorithm (AES-CBC + HMAC), the ICV covers the
//!   whole message from the first byte of the IKE header up to the ICV, i.e.
//!   everything but the last `icv_len` bytes, IV and ciphertext included:
//!   `message[..message.len() - icv_len]` ([`sk_integrity_region`]).
//!
//! In both cases the IKE header's length field and the SK payload's length
//! field already hold their final values (the whole message and
//! `4 + IV + ciphertext + ICV`): [`sk_message_prefix`] builds the header
//! and the SK generic header that way.

mod chain;
mod encode;
mod header;
mod payloads;
mod reader;
mod sa;
mod ts;

#[cfg(test)]
mod tests;

pub use chain::{Message, RawPayload, parse_chain, parse_message};
pub use encode::{
    encode_chain, encode_message, sk_aad, sk_header, sk_integrity_region, sk_message_prefix,
    try_encode_chain, try_encode_message,
};
pub use header::{Exchange, Header};
pub use payloads::{Delete, Identification, Notify, Payload, decode};
pub use sa::{Proposal, Transform};
pub use ts::TrafficSelector;

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;
/// Largest message accepted or built (a UDP datagram minus headers).
pub const MAX_MESSAGE: usize = 65_000;
/// Non-ESP marker that prefixes IKE messages on port 4500 (RFC 3948).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// Length of the generic payload header.
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// Largest payload body: the payload length field is 16 bits and counts the
/// generic header.
pub const MAX_PAYLOAD_BODY: usize = u16::MAX as usize - PAYLOAD_HEADER_LEN;
/// Most payloads in one chain (the message's, or the one inside SK).
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most transforms in one proposal (strongSwan's default IKE proposal has
/// about forty).
pub const MAX_TRANSFORMS: usize = 128;
/// Most traffic selectors in one TS payload (its count field is one byte).
pub const MAX_TRAFFIC_SELECTORS: usize = 255;
/// Most SPIs in one Delete payload.
pub const MAX_DELETE_SPIS: usize = 4096;
/// Nonce lengths allowed by RFC 7296 3.9.
pub const NONCE_MIN: usize = 16;
pub const NONCE_MAX: usize = 256;

/// The header flags (RFC 7296 3.1).
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (IANA "IKEv2 Payload Types").
pub mod payload {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;
    /// Encrypted fragment (RFC 7383); like SK, it must be the last payload.
    pub const SKF: u8 = 53;
}

/// Security protocol IDs (proposals, notifications, deletes).
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform types (RFC 7296 3.3.2).
pub mod transform {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    /// Diffie-Hellman group (called "Key Exchange Method" since RFC 9370).
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
    /// The only attribute: Key Length, in TV format.
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

/// Identification types (RFC 7296 3.5).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const DER_ASN1_GN: u8 = 10;
    pub const KEY_ID: u8 = 11;
}

/// Authentication methods (RFC 7296 3.8).
pub mod auth_method {
    pub const RSA_DIGITAL_SIGNATURE: u8 = 1;
    pub const SHARED_KEY_MIC: u8 = 2;
    pub const DSS_DIGITAL_SIGNATURE: u8 = 3;
}

/// Traffic selector types (RFC 7296 3.13.1).
pub mod ts_type {
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// Notify message types (RFC 7296 3.10.1 and IANA).
pub mod notify {
    // Errors (< 16384).
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    // Status (>= 16384).
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// Types below 16384 report errors; the others are status.
    pub const fn is_error(ty: u16) -> bool {
        ty < 16384
    }
}

/// What was wrong with a message, a payload, or a value to encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated IKE header: {len} bytes, need {HEADER_LEN}")]
    TruncatedHeader { len: usize },
    #[error("message of {len} bytes is longer than the {MAX_MESSAGE}-byte limit")]
    MessageTooLong { len: usize },
    #[error("IKE header length field says {field} bytes, the message has {actual}")]
    BadLength { field: u32, actual: usize },
    #[error("unsupported IKE major version {major} (only 2 is)")]
    UnsupportedMajorVersion { major: u8 },
    #[error("truncated generic header of payload type {ty} at offset {offset}")]
    TruncatedPayloadHeader { ty: u8, offset: usize },
    #[error("payload type {ty} at offset {offset}: length {length} is less than 4")]
    PayloadLengthTooShort { ty: u8, offset: usize, length: u16 },
    #[error(
        "payload type {ty} at offset {offset}: length {length} overruns the chain \
         ({remaining} bytes left)"
    )]
    ChainOverrun {
        ty: u8,
        offset: usize,
        length: u16,
        remaining: usize,
    },
    #[error("{extra} bytes after the last payload of the chain (offset {offset})")]
    TrailingData { offset: usize, extra: usize },
    #[error("more than {MAX_PAYLOADS} payloads in one chain")]
    TooManyPayloads,
    #[error("encrypted payload type {ty} at offset {offset} is not the last payload")]
    SkNotLast { ty: u8, offset: usize },
    #[error("encrypted payload type {ty} at offset {offset} inside an encrypted payload")]
    NestedEncrypted { ty: u8, offset: usize },
    #[error("payload type {ty}: body of {len} bytes, need at least {min}")]
    PayloadTooShort { ty: u8, len: usize, min: usize },
    #[error("nonce of {len} bytes (must be {NONCE_MIN} to {NONCE_MAX})")]
    BadNonceLength { len: usize },
    #[error("malformed proposal: {0}")]
    MalformedProposal(&'static str),
    #[error("malformed transform: {0}")]
    MalformedTransform(&'static str),
    #[error("malformed transform attribute: {0}")]
    MalformedAttribute(&'static str),
    #[error("malformed notify payload: {0}")]
    MalformedNotify(&'static str),
    #[error("malformed delete payload: {0}")]
    MalformedDelete(&'static str),
    #[error("malformed traffic selector payload: {0}")]
    MalformedTs(&'static str),
    #[error("unsupported traffic selector type {ts_type}")]
    UnsupportedTsType { ts_type: u8 },
    #[error("traffic selector type {ts_type}: selector length {length}, must be {expected}")]
    BadSelectorLength {
        ts_type: u8,
        length: u16,
        expected: u16,
    },
    #[error("identification type {id_type}: address of {len} bytes, must be {expected}")]
    BadAddressLength {
        id_type: u8,
        len: usize,
        expected: usize,
    },
    #[error("too many {what} (limit {limit})")]
    TooMany { what: &'static str, limit: usize },
    #[error("payload type {ty}: body of {len} bytes does not fit one payload")]
    PayloadTooLong { ty: u8, len: usize },
    #[error("cannot encode: {0}")]
    Unencodable(&'static str),
}
