//! Keywords of the non-cryptographic enums: the words the file uses, in both
//! directions (parsing in `validate`, printing in summaries and `to_toml`).

use std::fmt;

use super::{Direction, DpdAction, Ethertype, Initiator, Protocol, WanDefault, XdpMode};

/// An enum spelled as one of a fixed set of words in the file.
pub(super) trait Keyword: Copy + Sized + 'static {
    const ALL: &'static [Self];
    fn word(self) -> &'static str;

    /// Case-insensitive, as the file's keywords are.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.word().eq_ignore_ascii_case(s))
    }

    /// "a, b or c", for messages.
    fn choices() -> String {
        one_of(&Self::ALL.iter().map(|k| k.word()).collect::<Vec<_>>())
    }
}

/// "a", "a or b", "a, b or c".
pub(super) fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

macro_rules! keywords {
    ($ty:ty { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// The word the configuration file uses for this value.
            pub const fn keyword(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl Keyword for $ty {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn word(self) -> &'static str {
                self.keyword()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.keyword())
            }
        }
    };
}

keywords!(XdpMode { Auto => "auto", Native => "native", Generic => "generic" });
keywords!(WanDefault { Pass => "pass", Drop => "drop" });
keywords!(Direction { Ingress => "ingress", Egress => "egress" });
keywords!(Ethertype { IPv4 => "IPv4", IPv6 => "IPv6" });
keywords!(Initiator { BiDirectional => "bi-directional", ResponseOnly => "response-only" });
keywords!(DpdAction { Hold => "hold", Clear => "clear", Restart => "restart", Disabled => "disabled" });

impl Ethertype {
    pub const fn of(addr: &std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => Self::IPv4,
            std::net::IpAddr::V6(_) => Self::IPv6,
        }
    }

    pub fn of_net(net: &ipnet::IpNet) -> Self {
        Self::of(&net.addr())
    }
}

impl Protocol {
    /// The IP protocol number a rule matches; `None` for `Any`.
    pub const fn number(self) -> Option<u8> {
        match self {
            Self::Any => None,
            Self::Tcp => Some(6),
            Self::Udp => Some(17),
            Self::Icmp => Some(1),
            Self::Icmpv6 => Some(58),
            Self::Number(n) => Some(n),
        }
    }

    /// A protocol number as the enum: 1, 6, 17 and 58 become their names.
    /// `None` for 255, which IANA reserves.
    pub const fn from_number(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Icmp,
            6 => Self::Tcp,
            17 => Self::Udp,
            58 => Self::Icmpv6,
            255 => return None,
            n => Self::Number(n),
        })
    }

    /// Names the file accepts (`ipv6-icmp` is Neutron's spelling).
    pub(super) fn from_name(s: &str) -> Option<Self> {
        const NAMES: [(&str, Protocol); 6] = [
            ("any", Protocol::Any),
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("icmp", Protocol::Icmp),
            ("icmpv6", Protocol::Icmpv6),
            ("ipv6-icmp", Protocol::Icmpv6),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, p)| p)
    }

    /// Whether port ranges mean something for it (ports, or ICMP type/code).
    pub const fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Icmp | Self::Icmpv6)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Tcp => f.write_str("tcp"),
            Self::Udp => f.write_str("udp"),
            Self::Icmp => f.write_str("icmp"),
            Self::Icmpv6 => f.write_str("icmpv6"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

/// `02:00:00:00:01:0a` (lower case).
pub fn mac_text(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, g] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
}

/// Six colon-separated hex octets, either case.
pub(super) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for octet in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *octet = u8::from_str_radix(part, 16).ok()?;
    }
    match parts.next() {
        None => Some(mac),
        Some(_) => None,
    }
}

/// A string from the file, for a message: quoted, control characters
/// escaped, and cut short so one bad value cannot flood the output.
pub(super) fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::from("'");
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('\'');
    out
}
