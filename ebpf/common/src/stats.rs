//! Verdict reasons: each packet is counted under exactly one, per CPU, in the
//! `STATS` map (index = reason). The names are what metrics and logs show.

use crate::wire::ParseError;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $drop:literal; )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Reason { $( $(#[$doc])* $variant, )* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];
            pub const fn name(self) -> &'static str {
                match self { $( Reason::$variant => $name, )* }
            }
            /// Whether packets counted under this reason were dropped.
            pub const fn is_drop(self) -> bool {
                match self { $( Reason::$variant => $drop, )* }
            }
        }
    };
}

reasons! {
    /// Packet of a tracked flow admitted under the current policy.
    PassEstablished = "pass_established", false;
    /// First packet of a flow the security groups allow.
    PassNew = "pass_new", false;
    /// ICMP error quoting a tracked flow (e.g. fragmentation needed).
    PassRelated = "pass_related", false;
    /// Non-first fragment of a datagram whose first fragment was admitted.
    PassFragment = "pass_fragment", false;
    PassArp = "pass_arp", false;
    /// ICMPv6 neighbour discovery / multicast listener messages.
    PassNdp = "pass_ndp", false;
    /// IKE (UDP 500/4500) from a configured peer gateway.
    PassIke = "pass_ike", false;
    /// ESP from a configured peer gateway.
    PassEsp = "pass_esp", false;
    /// Inbound WAN traffic for the gateway itself, `wan_default = "pass"`.
    PassWanDefault = "pass_wan_default", false;
    /// VPN-bound packet handed to the crypto path's AF_XDP socket.
    VpnRedirect = "vpn_redirect", false;
    /// VPN-bound, but no AF_XDP socket on that queue.
    VpnNoSocket = "drop_vpn_no_socket", true;
    DropTruncatedEthernet = "drop_truncated_ethernet", true;
    DropTooManyVlans = "drop_too_many_vlans", true;
    DropUnsupportedEthertype = "drop_unsupported_ethertype", true;
    DropTruncatedIp = "drop_truncated_ip", true;
    DropBadIpHeader = "drop_bad_ip_header", true;
    DropExtHeaderLimit = "drop_ipv6_ext_header_limit", true;
    DropRoutingHeader0 = "drop_ipv6_routing_header_0", true;
    DropTruncatedL4 = "drop_truncated_l4", true;
    DropBadL4Header = "drop_bad_l4_header", true;
    DropTinyFragment = "drop_tiny_fragment", true;
    /// Non-first fragment with no admitted first fragment.
    DropFragmentNoFirst = "drop_fragment_no_first", true;
    /// LAN source address (or MAC) is not a port's.
    DropSpoofed = "drop_spoofed", true;
    /// WAN packet claiming a VPC port or a VPN remote subnet as source.
    DropWanSpoofed = "drop_wan_spoofed", true;
    DropPolicyEgress = "drop_policy_egress", true;
    DropPolicyIngress = "drop_policy_ingress", true;
    /// Packet of a tracked flow that a reload's policy no longer admits.
    DropRevoked = "drop_revoked", true;
    /// To a connection's remote subnets from outside its local subnets:
    /// would leave in clear, so it does not leave at all.
    DropVpnNotLocal = "drop_vpn_not_local", true;
    DropIkeNotPeer = "drop_ike_not_peer", true;
    DropEspNotPeer = "drop_esp_not_peer", true;
    DropWanDefault = "drop_wan_default", true;
    /// Arrived on an interface the agent did not register.
    DropUnknownIface = "drop_unknown_iface", true;
    /// No policy loaded yet.
    DropNotReady = "drop_not_ready", true;
}

pub const REASON_COUNT: u32 = Reason::ALL.len() as u32;

impl From<ParseError> for Reason {
    #[inline(always)]
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::TruncatedEthernet => Reason::DropTruncatedEthernet,
            ParseError::TooManyVlans => Reason::DropTooManyVlans,
            ParseError::Arp => Reason::PassArp,
            ParseError::UnsupportedEthertype => Reason::DropUnsupportedEthertype,
            ParseError::TruncatedIp => Reason::DropTruncatedIp,
            ParseError::BadIpHeader => Reason::DropBadIpHeader,
            ParseError::ExtHeaderLimit => Reason::DropExtHeaderLimit,
            ParseError::RoutingHeader0 => Reason::DropRoutingHeader0,
            ParseError::TruncatedL4 => Reason::DropTruncatedL4,
            ParseError::BadL4Header => Reason::DropBadL4Header,
            ParseError::TinyFragment => Reason::DropTinyFragment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_declaration_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn names_are_unique_and_drops_say_so() {
        for (i, a) in Reason::ALL.iter().enumerate() {
            for b in &Reason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
            assert_eq!(a.is_drop(), a.name().starts_with("drop_"), "{}", a.name());
        }
    }
}
