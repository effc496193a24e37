//! What the data-plane logic needs from its maps. The XDP program implements
//! this over BPF maps; the agent implements it over the compiled policy held in
//! memory (for `vpcgw explain` and host tests), so both run the same decisions.

use crate::abi::{
    CtKey, CtVal, FragKey, FragVal, HdrKey, HdrVal, Iface, PeerKey, PeerVal, PolicyKey, PolicyVal,
    PortKey, PortVal,
};
use crate::addr::Addr;
use crate::stats::Reason;

/// Read-only lookups into the compiled policy of one slot.
///
/// Lookups return references, not copies: in BPF an `Option<Struct>` copied
/// out of a map leaves its payload undefined on the `None` path, and the
/// verifier refuses to spill an undefined register.
pub trait PolicyMaps {
    fn port(&self, key: &PortKey) -> Option<&PortVal>;
    /// Remote class of `addr` (longest-prefix match), 0 when no prefix holds it.
    fn remote_class(&self, slot: u8, family: u8, addr: &Addr) -> u32;
    fn hdr(&self, key: &HdrKey) -> Option<&HdrVal>;
    fn policy(&self, key: &PolicyKey) -> Option<&PolicyVal>;
    /// Connection (+1) whose remote subnets hold `addr`, or 0.
    fn vpn_remote(&self, slot: u8, family: u8, addr: &Addr) -> u32;
    /// Whether `addr` is in the local subnets of connection `conn` (not +1).
    fn vpn_local(&self, slot: u8, family: u8, conn: u32, addr: &Addr) -> bool;
    fn peer(&self, key: &PeerKey) -> Option<&PeerVal>;
}

/// Everything the per-packet pipeline touches, including state and counters.
pub trait DataplaneMaps: PolicyMaps {
    fn iface(&self, ifindex: u32) -> Option<&Iface>;
    /// The live conntrack entry, to be updated in place.
    fn ct_get(&mut self, key: &CtKey) -> Option<&mut CtVal>;
    fn ct_insert(&mut self, key: &CtKey, val: &CtVal);
    fn ct_remove(&mut self, key: &CtKey);
    fn frag_get(&self, key: &FragKey) -> Option<&FragVal>;
    fn frag_insert(&mut self, key: &FragKey, val: &FragVal);
    fn count(&mut self, reason: Reason, bytes: u64);
    fn rule_hit(&mut self, slot: u8, rule: u32);
    fn conn_bytes(&mut self, slot: u8, conn: u32, bytes: u64);
}
