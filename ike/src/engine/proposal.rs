//! SA payload proposals (RFC 7296 3.3): the one vpcgw offers, and choosing
//! it among the peer's.

use crate::alg::Encryption;
use crate::wire::{Proposal, Transform};

use super::spec::{EspAlgs, IkeAlgs};

pub const PROTO_IKE: u8 = 1;
pub const PROTO_ESP: u8 = 3;

pub const TRANS_ENCR: u8 = 1;
pub const TRANS_PRF: u8 = 2;
pub const TRANS_INTEG: u8 = 3;
pub const TRANS_DH: u8 = 4;
pub const TRANS_ESN: u8 = 5;

/// ESN transform id for "no extended sequence numbers".
const ESN_NONE: u16 = 0;

fn encr(e: Encryption) -> Transform {
    Transform {
        kind: TRANS_ENCR,
        id: e.transform_id(),
        key_length: Some(e.key_bits()),
    }
}

fn t(kind: u8, id: u16) -> Transform {
    Transform {
        kind,
        id,
        key_length: None,
    }
}

/// The IKE proposal; `spi` is empty in IKE_SA_INIT, the new SA's SPI in a
/// rekey.
pub fn ike_proposal(a: &IkeAlgs, spi: Vec<u8>) -> Proposal {
    let mut transforms = vec![encr(a.encr), t(TRANS_PRF, a.prf.transform_id())];
    if let Some(i) = a.integ {
        transforms.push(t(TRANS_INTEG, i.transform_id()));
    }
    transforms.push(t(TRANS_DH, a.dh.number()));
    Proposal {
        number: 1,
        protocol: PROTO_IKE,
        spi,
        transforms,
    }
}

/// The ESP proposal. `with_dh`: include the PFS group (CREATE_CHILD_SA);
/// never in IKE_AUTH, whose CHILD_SA has no exchange of its own.
pub fn esp_proposal(a: &EspAlgs, spi: u32, with_dh: bool) -> Proposal {
    let mut transforms = vec![encr(a.encr)];
    if let Some(i) = a.integ {
        transforms.push(t(TRANS_INTEG, i.transform_id()));
    }
    if let (true, Some(g)) = (with_dh, a.pfs) {
        transforms.push(t(TRANS_DH, g.number()));
    }
    transforms.push(t(TRANS_ESN, ESN_NONE));
    Proposal {
        number: 1,
        protocol: PROTO_ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms,
    }
}

/// Why no proposal was chosen (for the connection's reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoMatch(pub String);

fn describe(p: &Proposal) -> String {
    let names: Vec<String> = p
        .transforms
        .iter()
        .map(|t| match t.kind {
            TRANS_ENCR => match t.key_length {
                Some(k) => format!("encr {}/{}", t.id, k),
                None => format!("encr {}", t.id),
            },
            TRANS_PRF => format!("prf {}", t.id),
            TRANS_INTEG => format!("integ {}", t.id),
            TRANS_DH => format!("dh {}", t.id),
            TRANS_ESN => format!("esn {}", t.id),
            k => format!("type{k} {}", t.id),
        })
        .collect();
    names.join(", ")
}

/// Does proposal `p` offer `want` (same id and key length) among its
/// transforms of that kind?
fn offers(p: &Proposal, want: &Transform) -> bool {
    p.transforms
        .iter()
        .any(|t| t.kind == want.kind && t.id == want.id && t.key_length == want.key_length)
}

fn has_kind(p: &Proposal, kind: u8) -> bool {
    p.transforms.iter().any(|t| t.kind == kind)
}

/// Responder: the first of the peer's proposals that offers every transform
/// of ours. `ignore_dh` strips DH transforms from both sides (IKE_AUTH's
/// CHILD_SA: RFC 7296 says its DH transforms are not used, and peers differ
/// on whether they send them). Returns the peer's proposal number and SPI.
pub fn select(
    peer: &[Proposal],
    ours: &Proposal,
    ignore_dh: bool,
) -> Result<(u8, Vec<u8>), NoMatch> {
    'proposals: for p in peer {
        if p.protocol != ours.protocol {
            continue;
        }
        for want in &ours.transforms {
            if ignore_dh && want.kind == TRANS_DH {
                continue;
            }
            if want.kind == TRANS_ESN && !has_kind(p, TRANS_ESN) {
                // No ESN transform at all means no extended sequence numbers.
                continue;
            }
            if !offers(p, want) {
                continue 'proposals;
            }
        }
        // Anything the peer requires that we do not do (an INTEG with
        // AEAD, a DH where we have none) makes the proposal unusable.
        for kind in [TRANS_INTEG, TRANS_DH] {
            if ignore_dh && kind == TRANS_DH {
                continue;
            }
            if has_kind(p, kind) && !has_kind(ours, kind) {
                continue 'proposals;
            }
        }
        return Ok((p.number, p.spi.clone()));
    }
    let theirs: Vec<String> = peer.iter().map(describe).collect();
    Err(NoMatch(format!(
        "we offer [{}], the peer offers [{}]",
        describe(ours),
        theirs.join("] or [")
    )))
}

/// The responder's SA payload: our proposal under the peer's number, with
/// `spi` (ours), optionally without DH.
pub fn answer(ours: &Proposal, number: u8, spi: Vec<u8>, strip_dh: bool) -> Proposal {
    Proposal {
        number,
        protocol: ours.protocol,
        spi,
        transforms: ours
            .transforms
            .iter()
            .filter(|t| !(strip_dh && t.kind == TRANS_DH))
            .cloned()
            .collect(),
    }
}

/// Initiator: the responder's SA payload must hold exactly one proposal,
/// choosing one transform of each kind, all ours. Returns its SPI.
pub fn check_answer(
    answer: &[Proposal],
    ours: &Proposal,
    ignore_dh: bool,
) -> Result<Vec<u8>, NoMatch> {
    let [p] = answer else {
        return Err(NoMatch(format!(
            "the responder chose {} proposals",
            answer.len()
        )));
    };
    if p.protocol != ours.protocol {
        return Err(NoMatch("the responder chose another protocol".into()));
    }
    for got in &p.transforms {
        if ignore_dh && got.kind == TRANS_DH {
            continue;
        }
        if !offers(ours, got) {
            return Err(NoMatch(format!(
                "the responder chose [{}], not offered ([{}])",
                describe(p),
                describe(ours)
            )));
        }
    }
    for want in &ours.transforms {
        let needed = !(ignore_dh && want.kind == TRANS_DH) && want.kind != TRANS_ESN;
        if needed && !offers(p, want) {
            return Err(NoMatch(format!(
                "the responder's choice [{}] lacks part of ours ([{}])",
                describe(p),
                describe(ours)
            )));
        }
    }
    Ok(p.spi.clone())
}

/// The DH group a proposal carries, if any.
pub fn dh_of(p: &Proposal) -> Option<u16> {
    p.transforms
        .iter()
        .find(|t| t.kind == TRANS_DH)
        .map(|t| t.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::{DhGroup, Integrity, Prf};

    fn algs() -> (IkeAlgs, EspAlgs) {
        (
            IkeAlgs {
                encr: Encryption::Aes128Gcm16,
                integ: None,
                prf: Prf::HmacSha256,
                dh: DhGroup::Modp2048,
            },
            EspAlgs {
                encr: Encryption::Aes256Cbc,
                integ: Some(Integrity::HmacSha256_128),
                pfs: Some(DhGroup::Ecp256),
            },
        )
    }

    #[test]
    fn our_proposal_is_chosen_among_others() {
        let (ike, _) = algs();
        let ours = ike_proposal(&ike, vec![]);
        let mut other = ours.clone();
        other.number = 1;
        other.transforms[0].key_length = Some(256);
        let mut same = ours.clone();
        same.number = 2;
        assert_eq!(select(&[other, same], &ours, false), Ok((2, vec![])));
    }

    #[test]
    fn dh_is_ignored_in_ike_auth_and_required_in_rekeys() {
        let (_, esp) = algs();
        let with = esp_proposal(&esp, 7, true);
        let without = esp_proposal(&esp, 7, false);
        assert!(select(std::slice::from_ref(&without), &with, true).is_ok());
        assert!(select(std::slice::from_ref(&without), &with, false).is_err());
        assert!(select(std::slice::from_ref(&with), &with, false).is_ok());
    }

    #[test]
    fn answers_are_checked() {
        let (ike, _) = algs();
        let ours = ike_proposal(&ike, vec![]);
        let ok = answer(&ours, 1, vec![1; 8], false);
        assert_eq!(
            check_answer(std::slice::from_ref(&ok), &ours, false),
            Ok(vec![1; 8])
        );
        let mut bad = ok.clone();
        bad.transforms[1].id = 99;
        assert!(check_answer(&[bad], &ours, false).is_err());
        assert!(check_answer(&[ok.clone(), ok], &ours, false).is_err());
    }
}
