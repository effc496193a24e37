//! The IKE header (RFC 7296 3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::reader::Reader;
use super::{HEADER_LEN, WireError, flags};

/// Exchange types (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    IkeSaInit,
    IkeAuth,
    CreateChildSa,
    Informational,
    /// Any other value (0-33 reserved, 38-239 unassigned or other RFCs,
    /// 240-255 private use). [`Exchange::from_u8`] never returns
    /// `Other(34..=37)`.
    Other(u8),
}

impl Exchange {
    pub const fn from_u8(v: u8) -> Exchange {
        match v {
            34 => Exchange::IkeSaInit,
            35 => Exchange::IkeAuth,
            36 => Exchange::CreateChildSa,
            37 => Exchange::Informational,
            other => Exchange::Other(other),
        }
    }

    pub const fn as_u8(self) -> u8 {
        match self {
            Exchange::IkeSaInit => 34,
            Exchange::IkeAuth => 35,
            Exchange::CreateChildSa => 36,
            Exchange::Informational => 37,
            Exchange::Other(v) => v,
        }
    }
}

/// The IKE header, as read (nothing checked but its presence: see
/// [`super::parse_message`] for the checks on a whole message). The engine
/// reads it alone to answer a message of another major version with
/// INVALID_MAJOR_VERSION (RFC 7296 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub next_payload: u8,
    pub major: u8,
    pub minor: u8,
    pub exchange: Exchange,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// Reads the first [`HEADER_LEN`] bytes of `buf` (what follows is not
    /// looked at).
    pub fn parse(buf: &[u8]) -> Result<Header, WireError> {
        let truncated = WireError::TruncatedHeader { len: buf.len() };
        let head = buf.first_chunk::<HEADER_LEN>().ok_or(truncated.clone())?;
        let mut r = Reader::new(head);
        let mut read = || -> Option<Header> {
            let spi_i = r.array::<8>()?;
            let spi_r = r.array::<8>()?;
            let next_payload = r.u8()?;
            let version = r.u8()?;
            let exchange = Exchange::from_u8(r.u8()?);
            let flags = r.u8()?;
            let message_id = r.u32()?;
            let length = r.u32()?;
            Some(Header {
                spi_i,
                spi_r,
                next_payload,
                major: version >> 4,
                minor: version & 0x0f,
                exchange,
                flags,
                message_id,
                length,
            })
        };
        read().ok_or(truncated)
    }

    /// Appends the 28 bytes, fields as they are (`length` and
    /// `next_payload` included; `major` and `minor` keep their low 4 bits).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i);
        out.extend_from_slice(&self.spi_r);
        out.push(self.next_payload);
        out.push((self.major << 4) | (self.minor & 0x0f));
        out.push(self.exchange.as_u8());
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// The R flag: this message answers a request.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// The I flag: sent by the original initiator of the IKE SA.
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    /// A header for IKE version 2.0 with the given fields; `next_payload`
    /// and `length` are zero (the encoders fill them in).
    pub fn new(
        spi_i: [u8; 8],
        spi_r: [u8; 8],
        exchange: Exchange,
        flags: u8,
        message_id: u32,
    ) -> Header {
        Header {
            spi_i,
            spi_r,
            next_payload: 0,
            major: 2,
            minor: 0,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            spi_i: [1, 2, 3, 4, 5, 6, 7, 8],
            spi_r: [0; 8],
            next_payload: 33,
            major: 2,
            minor: 0,
            exchange: Exchange::IkeSaInit,
            flags: flags::INITIATOR,
            message_id: 0x0102_0304,
            length: 28,
        }
    }

    #[test]
    fn round_trip() -> Result<(), WireError> {
        let h = sample();
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(out[16..20], [33, 0x20, 34, 0x08]);
        assert_eq!(Header::parse(&out)?, h);
        assert!(h.is_initiator());
        assert!(!h.is_response());
        Ok(())
    }

    #[test]
    fn exchange_numbers() {
        for v in 0..=255u8 {
            assert_eq!(Exchange::from_u8(v).as_u8(), v);
        }
        assert_eq!(Exchange::from_u8(34), Exchange::IkeSaInit);
        assert_eq!(Exchange::from_u8(37), Exchange::Informational);
        assert_eq!(Exchange::from_u8(38), Exchange::Other(38));
    }

    #[test]
    fn truncated() {
        let mut out = Vec::new();
        sample().write(&mut out);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Header::parse(&out[..n]),
                Err(WireError::TruncatedHeader { len: n })
            );
        }
    }

    #[test]
    fn other_versions_are_read() -> Result<(), WireError> {
        let mut out = Vec::new();
        sample().write(&mut out);
        out[17] = 0x31;
        let h = Header::parse(&out)?;
        assert_eq!((h.major, h.minor), (3, 1));
        Ok(())
    }
}
