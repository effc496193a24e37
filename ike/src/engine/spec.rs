//! What the engine is told to do: the connections, in the engine's own terms
//! (the agent converts its configuration into these).

use std::net::IpAddr;
use std::time::Duration;

use crate::alg::{DhGroup, Encryption, Integrity, Prf};
use crate::crypto::Secret;

/// One IKE identity (RFC 7296 3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Ipv4([u8; 4]),
    Ipv6([u8; 16]),
    Fqdn(String),
    Rfc822(String),
}

pub const ID_IPV4_ADDR: u8 = 1;
pub const ID_FQDN: u8 = 2;
pub const ID_RFC822_ADDR: u8 = 3;
pub const ID_IPV6_ADDR: u8 = 5;

impl Identity {
    /// strongSwan's reading of an identity string: an IP address, `@fqdn`,
    /// `user@domain`, or a bare name (FQDN).
    pub fn parse(s: &str) -> Identity {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Identity::from(ip);
        }
        if let Some(fqdn) = s.strip_prefix('@') {
            return Identity::Fqdn(fqdn.to_string());
        }
        if s.contains('@') {
            return Identity::Rfc822(s.to_string());
        }
        Identity::Fqdn(s.to_string())
    }

    pub fn id_type(&self) -> u8 {
        match self {
            Identity::Ipv4(_) => ID_IPV4_ADDR,
            Identity::Ipv6(_) => ID_IPV6_ADDR,
            Identity::Fqdn(_) => ID_FQDN,
            Identity::Rfc822(_) => ID_RFC822_ADDR,
        }
    }

    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.to_vec(),
            Identity::Ipv6(a) => a.to_vec(),
            Identity::Fqdn(s) | Identity::Rfc822(s) => s.as_bytes().to_vec(),
        }
    }

    /// Whether an ID payload's type and data name this identity.
    pub fn matches(&self, id_type: u8, data: &[u8]) -> bool {
        self.id_type() == id_type && self.data() == data
    }
}

impl From<IpAddr> for Identity {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Identity::Ipv4(a.octets()),
            IpAddr::V6(a) => Identity::Ipv6(a.octets()),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Ipv4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            Identity::Ipv6(a) => write!(f, "{}", std::net::Ipv6Addr::from(*a)),
            Identity::Fqdn(s) => write!(f, "@{s}"),
            Identity::Rfc822(s) => write!(f, "{s}"),
        }
    }
}

/// The IKE SA's algorithms (one proposal: vpcgw offers exactly what its
/// configuration names, as the cloud VPN workflow asks both sides to match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeAlgs {
    pub encr: Encryption,
    /// `None` with AEAD.
    pub integ: Option<Integrity>,
    pub prf: Prf,
    pub dh: DhGroup,
}

/// A CHILD_SA's algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspAlgs {
    pub encr: Encryption,
    pub integ: Option<Integrity>,
    /// DH group for rekeys (PFS); the first CHILD_SA (in IKE_AUTH) never has one.
    pub pfs: Option<DhGroup>,
}

/// A subnet, as traffic selectors carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// What to do when DPD finds the peer gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    /// Forget the SAs; negotiate again when traffic needs the tunnel.
    Hold,
    /// Forget the SAs.
    Clear,
    /// Negotiate again at once.
    Restart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    /// Idle time before a liveness check.
    pub interval: Duration,
    /// Time without an answer after which the peer is declared dead.
    pub timeout: Duration,
    pub action: DpdAction,
}

/// One VPN connection to one peer gateway.
#[derive(Clone, Debug)]
pub struct ConnSpec {
    pub name: String,
    pub peer: IpAddr,
    pub local_id: Identity,
    pub remote_id: Identity,
    pub psk: Secret,
    pub ike: IkeAlgs,
    pub ike_lifetime: Duration,
    pub esp: EspAlgs,
    pub esp_lifetime: Duration,
    /// Our side's selectors (the VPC subnets); the peer's side.
    pub local_ts: Vec<Subnet>,
    pub remote_ts: Vec<Subnet>,
    /// Whether we start negotiating (at start and on traffic), or only answer.
    pub initiator: bool,
    /// `None`: no liveness checks.
    pub dpd: Option<Dpd>,
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Our address (the gateway's public IP).
    pub local_addr: IpAddr,
    pub connections: Vec<ConnSpec>,
    /// Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet) above
    /// which a COOKIE is required (RFC 7296 2.6).
    pub cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs: beyond it new IKE_SA_INIT requests
    /// are dropped. Bounds memory under a flood.
    pub half_open_limit: usize,
    /// The same two bounds per peer address, so a flood in one peer's name
    /// neither makes the other peers return cookies nor uses up the whole
    /// half-open table (an attacker who can answer cookies sent to that
    /// address gets only this far).
    pub peer_cookie_threshold: usize,
    pub peer_half_open_limit: usize,
    /// How long a half-open SA may wait for IKE_AUTH.
    pub half_open_timeout: Duration,
    /// First retransmission delay; doubles up to `retransmit_max`.
    pub retransmit_initial: Duration,
    pub retransmit_max: Duration,
    /// A request unanswered this long fails its exchange (DPD uses the
    /// connection's own timeout).
    pub request_timeout: Duration,
    /// NAT keepalive interval when we are behind a NAT (RFC 3948).
    pub nat_keepalive: Duration,
    /// How long an inbound CHILD_SA outlives its replacement after a rekey,
    /// so packets in flight under the old SPI still decrypt.
    pub rekey_grace: Duration,
    /// Delay before negotiating again after a failure.
    pub retry_delay: Duration,
}

impl EngineConfig {
    pub fn new(local_addr: IpAddr, connections: Vec<ConnSpec>) -> Self {
        EngineConfig {
            local_addr,
            connections,
            cookie_threshold: 64,
            half_open_limit: 4096,
            peer_cookie_threshold: 8,
            peer_half_open_limit: 512,
            half_open_timeout: Duration::from_secs(30),
            retransmit_initial: Duration::from_millis(500),
            retransmit_max: Duration::from_secs(8),
            request_timeout: Duration::from_secs(30),
            nat_keepalive: Duration::from_secs(20),
            rekey_grace: Duration::from_secs(10),
            retry_delay: Duration::from_secs(5),
        }
    }
}
