//! `cargo xtask fuzz`: one datagram's payload (after the non-ESP marker) as
//! the IKE engine would see it. Parsing, decoding and walking any chain must
//! never panic; a message whose payloads all decode must encode back into
//! one that parses and decodes to the same payloads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcgw_ike::wire::{
    Header, Payload, decode, parse_chain, parse_message, payload, try_encode_message,
};

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    let Ok(m) = parse_message(data) else {
        return;
    };
    let mut decoded = Vec::with_capacity(m.payloads.len());
    for p in &m.payloads {
        if let Ok(d) = decode(p) {
            decoded.push(d);
        }
        // The SK body as if it were the decrypted chain; any other body as a
        // chain starting with its own type.
        let first = if p.is_encrypted() {
            m.sk_first_payload.unwrap_or(payload::NONE)
        } else {
            p.ty
        };
        if let Ok(inner) = parse_chain(first, p.body) {
            for q in &inner {
                let _ = decode(q);
            }
        }
    }
    if m.sk_first_payload.is_none() && decoded.len() == m.payloads.len() {
        round_trip(&m.header, &decoded);
    }
});

fn round_trip(header: &Header, payloads: &[Payload]) {
    let buf = match try_encode_message(header, payloads) {
        Ok(buf) => buf,
        Err(e) => panic!("decoded payloads do not encode: {e}: {payloads:?}"),
    };
    let m = match parse_message(&buf) {
        Ok(m) => m,
        Err(e) => panic!("encoded message does not parse: {e}: {payloads:?}"),
    };
    let again: Vec<Payload> = m.payloads.iter().filter_map(|p| decode(p).ok()).collect();
    assert_eq!(again, payloads, "payloads changed in a round trip");
}
