//! One address type for both families, as it sits in map keys.
//!
//! IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), so hash keys have
//! one shape for both families. The words hold the packet's bytes as loaded
//! (network order in memory), so the program never byte-swaps an address.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub [u32; 4]);

/// Third word of an IPv4-mapped address: bytes 00 00 ff ff in memory.
const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

impl Addr {
    /// From the four address bytes as a word loaded straight from a packet.
    #[inline(always)]
    pub const fn from_v4_raw(word: u32) -> Self {
        Self([0, 0, V4_MAPPED_WORD, word])
    }

    #[inline(always)]
    pub const fn from_v4_octets(o: [u8; 4]) -> Self {
        Self::from_v4_raw(u32::from_ne_bytes(o))
    }

    #[inline(always)]
    pub const fn from_v6_octets(o: [u8; 16]) -> Self {
        Self([
            u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
            u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
            u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
            u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
        ])
    }

    #[inline(always)]
    pub const fn octets(&self) -> [u8; 16] {
        let a = self.0[0].to_ne_bytes();
        let b = self.0[1].to_ne_bytes();
        let c = self.0[2].to_ne_bytes();
        let d = self.0[3].to_ne_bytes();
        [
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
            d[2], d[3],
        ]
    }

    #[inline(always)]
    pub const fn v4_octets(&self) -> [u8; 4] {
        self.0[3].to_ne_bytes()
    }

    #[inline(always)]
    pub const fn is_v4(&self) -> bool {
        self.0[0] == 0 && self.0[1] == 0 && self.0[2] == V4_MAPPED_WORD
    }
}

#[cfg(feature = "user")]
mod std_conv {
    extern crate std;
    use super::Addr;
    use std::net::IpAddr;

    impl From<IpAddr> for Addr {
        fn from(ip: IpAddr) -> Self {
            match ip {
                IpAddr::V4(v4) => Addr::from_v4_octets(v4.octets()),
                IpAddr::V6(v6) => Addr::from_v6_octets(v6.octets()),
            }
        }
    }

    impl From<Addr> for IpAddr {
        fn from(a: Addr) -> Self {
            if a.is_v4() {
                IpAddr::from(a.v4_octets())
            } else {
                IpAddr::from(a.octets())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapped_round_trip() {
        let a = Addr::from_v4_octets([192, 168, 1, 10]);
        assert!(a.is_v4());
        assert_eq!(a.v4_octets(), [192, 168, 1, 10]);
        let o = a.octets();
        assert_eq!(&o[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(Addr::from_v6_octets(o), a);
    }

    #[test]
    fn v6_is_not_v4() {
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[15] = 1;
        assert!(!Addr::from_v6_octets(o).is_v4());
        assert_eq!(Addr::from_v6_octets(o).octets(), o);
    }
}
