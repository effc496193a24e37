//! Security-group decisions for new flows, over the compiled policy maps.
//!
//! Cost does not depend on the number of rules: one longest-prefix match for
//! the remote address, at most two header probes, then one probe per port
//! prefix length present in that cell (at most 17, typically one or two).

use crate::abi::{
    DIR_EGRESS, DIR_INGRESS, HdrKey, NONE, PROTO_ANY, PeerKey, PolicyKey, PortKey, PortVal,
};
use crate::addr::Addr;
use crate::maps::PolicyMaps;
use crate::stats::Reason;

/// Mask keeping the top `plen` bits of a 16-bit port.
#[inline(always)]
pub const fn port_mask(plen: u8) -> u16 {
    if plen == 0 {
        0
    } else if plen >= 16 {
        0xffff
    } else {
        !(0xffffu16 >> plen)
    }
}

/// The rule (+1) that lets traffic through for the cell `q` names (its
/// `class` is filled in here from `remote`), at policy port `port`; 0 when no
/// rule does.
#[inline(always)]
pub fn match_rules<M: PolicyMaps + ?Sized>(m: &M, q: &HdrKey, port: u16, remote: &Addr) -> u32 {
    let class = m.remote_class(q.slot, q.family, remote);
    let mut hk = HdrKey { class, ..*q };
    if let Some(h) = m.hdr(&hk) {
        let mut key = PolicyKey {
            set: hk.set,
            class,
            slot: hk.slot,
            dir: hk.dir,
            family: hk.family,
            proto: hk.proto,
            plen: 0,
            _pad: 0,
            port: 0,
        };
        // Longest prefix first: the compiler made the blocks disjoint, so the
        // order only saves probes, it does not change the answer.
        let mut plen: u8 = 16;
        for _ in 0..17 {
            if h.plens & (1u32 << plen) != 0 {
                key.plen = plen;
                key.port = port & port_mask(plen);
                if let Some(v) = m.policy(&key) {
                    return v.rule;
                }
            }
            plen = plen.wrapping_sub(1);
        }
        return h.any_rule;
    }
    hk.proto = PROTO_ANY;
    match m.hdr(&hk) {
        Some(h) => h.any_rule,
        None => NONE,
    }
}

/// Where a packet entered the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// From a VPC server, on a LAN interface (source already checked).
    #[default]
    Lan,
    /// From outside, on the WAN interface, in clear.
    Wan,
    /// Decrypted from connection `conn` (not +1) by the crypto path.
    Tunnel { conn: u32 },
}

/// A new flow as the policy sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub family: u8,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// Destination port, or ICMP type<<8|code.
    pub port: u16,
}

/// What the policy says about a new flow, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The counter reason: `PassNew`, `VpnRedirect`, or a drop.
    pub reason: Reason,
    /// VPN connection (+1) the flow is carried by, or 0.
    pub conn: u32,
    /// Rule (+1) that allowed the source port's egress, or 0 if not checked.
    pub egress_rule: u32,
    /// Rule (+1) that allowed the destination port's ingress, or 0 if not checked.
    pub ingress_rule: u32,
}

impl Decision {
    #[inline(always)]
    const fn new(reason: Reason) -> Self {
        Self {
            reason,
            conn: NONE,
            egress_rule: NONE,
            ingress_rule: NONE,
        }
    }

    #[inline(always)]
    pub const fn allowed(&self) -> bool {
        !self.reason.is_drop()
    }

    /// The rule to credit with the flow: the ingress rule when the
    /// destination is a port (the more specific decision), else egress.
    #[inline(always)]
    pub const fn rule(&self) -> u32 {
        if self.ingress_rule != NONE {
            self.ingress_rule
        } else {
            self.egress_rule
        }
    }
}

/// Decide a new flow. For `Origin::Lan` the caller has already checked that
/// the source is a port (anti-spoofing); for `Origin::Wan`, that the
/// destination is one (other WAN traffic never reaches the policy).
///
/// Not inlined, for the same stack reason as [`crate::wire::parse`].
#[inline(never)]
pub fn decide_new<M: PolicyMaps + ?Sized>(
    m: &M,
    slot: u8,
    origin: Origin,
    flow: &Flow,
) -> Decision {
    let mut d = Decision::new(Reason::PassNew);
    let src_port = port_of(m, slot, &flow.src);
    let dst_port = port_of(m, slot, &flow.dst);

    if let Origin::Tunnel { conn } = origin {
        // Decrypted traffic must stay within the connection's selectors.
        if m.vpn_remote(slot, flow.family, &flow.src) != conn + 1
            || !m.vpn_local(slot, flow.family, conn, &flow.dst)
        {
            d.reason = Reason::DropVpnNotLocal;
            return d;
        }
        d.conn = conn + 1;
    }

    let cell = |set, dir| HdrKey {
        set,
        class: 0,
        slot,
        dir,
        family: flow.family,
        proto: flow.proto,
    };
    if let (Origin::Lan, Some(sp)) = (origin, src_port) {
        d.egress_rule = match_rules(m, &cell(sp.set, DIR_EGRESS), flow.port, &flow.dst);
        if d.egress_rule == NONE {
            d.reason = Reason::DropPolicyEgress;
            return d;
        }
    }
    if let Some(dp) = dst_port {
        d.ingress_rule = match_rules(m, &cell(dp.set, DIR_INGRESS), flow.port, &flow.src);
        if d.ingress_rule == NONE {
            d.reason = Reason::DropPolicyIngress;
            return d;
        }
    }

    if origin == Origin::Lan {
        let conn = m.vpn_remote(slot, flow.family, &flow.dst);
        if conn != NONE {
            if !m.vpn_local(slot, flow.family, conn - 1, &flow.src) {
                d.reason = Reason::DropVpnNotLocal;
                return d;
            }
            d.conn = conn;
            d.reason = Reason::VpnRedirect;
        }
    }
    d
}

/// The port that owns `addr`, if any.
#[inline(always)]
pub fn port_of<'m, M: PolicyMaps + ?Sized>(m: &'m M, slot: u8, addr: &Addr) -> Option<&'m PortVal> {
    m.port(&PortKey {
        addr: *addr,
        slot: slot as u32,
    })
}

/// WAN packets that claim an inside address as source: a VPC port's, or one in
/// a connection's remote subnets (those arrive only through the tunnel).
#[inline(always)]
pub fn wan_source_spoofed<M: PolicyMaps + ?Sized>(m: &M, slot: u8, family: u8, src: &Addr) -> bool {
    port_of(m, slot, src).is_some() || m.vpn_remote(slot, family, src) != NONE
}

/// Whether `src` is a configured peer gateway.
#[inline(always)]
pub fn is_peer<M: PolicyMaps + ?Sized>(m: &M, slot: u8, src: &Addr) -> bool {
    m.peer(&PeerKey {
        addr: *src,
        slot: slot as u32,
    })
    .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(port_mask(0), 0);
        assert_eq!(port_mask(1), 0x8000);
        assert_eq!(port_mask(8), 0xff00);
        assert_eq!(port_mask(15), 0xfffe);
        assert_eq!(port_mask(16), 0xffff);
    }
}
