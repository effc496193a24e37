//! Message-level tests: real strongSwan packets, encoding limits, the SK
//! framing helpers, and property tests (round trips, no panics on
//! arbitrary or mutated input).

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

/// Bytes from a hex dump (whitespace ignored).
fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0xff,
        })
        .collect();
    assert!(digits.iter().all(|&d| d < 16) && digits.len().is_multiple_of(2));
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

/// strongSwan 5.9.8 (charon, `proposals = default`, PSK) initiating to
/// another charon over loopback: the IKE_SA_INIT request and response on
/// port 500, and the IKE_AUTH request on port 4500 (non-ESP marker first).
const INIT_REQUEST: &str = include_str!("testdata/charon_ike_sa_init_request.hex");
const INIT_RESPONSE: &str = include_str!("testdata/charon_ike_sa_init_response.hex");
const AUTH_REQUEST_4500: &str = include_str!("testdata/charon_ike_auth_request_4500.hex");

const SPI_I: [u8; 8] = [0xf4, 0x0d, 0x40, 0xd5, 0xf0, 0x0a, 0x2f, 0x06];
const SPI_R: [u8; 8] = [0x10, 0x80, 0x20, 0x6f, 0x61, 0xe0, 0xbc, 0x06];

fn decode_all(m: &Message<'_>) -> Result<Vec<Payload>, WireError> {
    m.payloads.iter().map(decode).collect()
}

fn notify_types(payloads: &[Payload]) -> Vec<u16> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.ty),
            _ => None,
        })
        .collect()
}

#[test]
fn charon_ike_sa_init_request() -> Result<(), WireError> {
    let buf = unhex(INIT_REQUEST);
    assert_eq!(buf.len(), 892);
    let m = parse_message(&buf)?;
    assert_eq!(
        m.header,
        Header {
            spi_i: SPI_I,
            spi_r: [0; 8],
            next_payload: payload::SA,
            major: 2,
            minor: 0,
            exchange: Exchange::IkeSaInit,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 892,
        }
    );
    assert!(m.header.is_initiator() && !m.header.is_response());
    assert_eq!(m.sk_first_payload, None);
    let types: Vec<u8> = m.payloads.iter().map(|p| p.ty).collect();
    assert_eq!(types, [33, 34, 40, 41, 41, 41, 41, 41]);
    assert!(m.payloads.iter().all(|p| !p.critical));

    let payloads = decode_all(&m)?;
    let Payload::Sa(proposals) = &payloads[0] else {
        return Err(WireError::Unencodable("no SA"));
    };
    // `default`: an AES-CBC/HMAC proposal and an AEAD one.
    assert_eq!(proposals.len(), 2);
    let (p1, p2) = (&proposals[0], &proposals[1]);
    assert_eq!(
        (p1.number, p1.protocol, p1.spi.len()),
        (1, protocol::IKE, 0)
    );
    assert_eq!(
        (p2.number, p2.protocol, p2.spi.len()),
        (2, protocol::IKE, 0)
    );
    assert_eq!(p1.transforms.len(), 34);
    assert_eq!(p2.transforms.len(), 36);
    assert_eq!(
        p1.transforms[0],
        Transform::with_key_length(transform::ENCR, 12, 128)
    );
    assert_eq!(
        p2.transforms[0],
        Transform::with_key_length(transform::ENCR, 20, 128)
    );
    // Only the AEAD proposal lacks integrity transforms.
    let integ = |p: &Proposal| p.transforms.iter().any(|t| t.kind == transform::INTEG);
    assert!(integ(p1) && !integ(p2));
    // Curve25519 is the first group offered, and the KE is for it.
    let first_dh = p1.transforms.iter().find(|t| t.kind == transform::DH);
    assert_eq!(first_dh, Some(&Transform::new(transform::DH, 31)));
    let Payload::Ke { group, data } = &payloads[1] else {
        return Err(WireError::Unencodable("no KE"));
    };
    assert_eq!((*group, data.len()), (31, 32));
    assert!(matches!(&payloads[2], Payload::Nonce(n) if n.len() == 32));
    assert_eq!(
        notify_types(&payloads),
        [
            notify::NAT_DETECTION_SOURCE_IP,
            notify::NAT_DETECTION_DESTINATION_IP,
            notify::FRAGMENTATION_SUPPORTED,
            notify::SIGNATURE_HASH_ALGORITHMS,
            16406, // REDIRECT_SUPPORTED
        ]
    );
    let Payload::Notify(hash_algs) = &payloads[6] else {
        return Err(WireError::Unencodable("no SIGNATURE_HASH_ALGORITHMS"));
    };
    assert_eq!(hash_algs.data, [0, 2, 0, 3, 0, 4, 0, 5]);
    assert!(matches!(&payloads[3], Payload::Notify(n) if n.data.len() == 20 && n.protocol == 0));

    // strongSwan encodes as we do: re-encoding gives the same bytes.
    assert_eq!(encode_message(&m.header, &payloads), buf);
    Ok(())
}

#[test]
fn charon_ike_sa_init_response() -> Result<(), WireError> {
    let buf = unhex(INIT_RESPONSE);
    let m = parse_message(&buf)?;
    assert_eq!((m.header.spi_i, m.header.spi_r), (SPI_I, SPI_R));
    assert_eq!(m.header.flags, flags::RESPONSE);
    assert!(m.header.is_response() && !m.header.is_initiator());
    let payloads = decode_all(&m)?;
    assert_eq!(
        payloads[0],
        Payload::Sa(vec![Proposal {
            number: 1,
            protocol: protocol::IKE,
            spi: vec![],
            transforms: vec![
                Transform::with_key_length(transform::ENCR, 12, 128),
                Transform::new(transform::INTEG, 12),
                Transform::new(transform::PRF, 5),
                Transform::new(transform::DH, 31),
            ],
        }])
    );
    assert_eq!(
        notify_types(&payloads),
        [
            notify::NAT_DETECTION_SOURCE_IP,
            notify::NAT_DETECTION_DESTINATION_IP,
            notify::FRAGMENTATION_SUPPORTED,
            notify::SIGNATURE_HASH_ALGORITHMS,
            16418, // CHILDLESS_IKEV2_SUPPORTED
            16404, // MULTIPLE_AUTH_SUPPORTED
        ]
    );
    assert_eq!(encode_message(&m.header, &payloads), buf);
    Ok(())
}

#[test]
fn charon_ike_auth_request() -> Result<(), WireError> {
    let datagram = unhex(AUTH_REQUEST_4500);
    let Some(buf) = datagram.strip_prefix(&NON_ESP_MARKER) else {
        return Err(WireError::Unencodable("no non-ESP marker"));
    };
    let m = parse_message(buf)?;
    assert_eq!((m.header.spi_i, m.header.spi_r), (SPI_I, SPI_R));
    assert_eq!(m.header.exchange, Exchange::IkeAuth);
    assert_eq!(m.header.message_id, 1);
    assert_eq!(m.header.next_payload, payload::SK);
    assert_eq!(m.sk_first_payload, Some(payload::IDI));
    assert_eq!(m.payloads.len(), 1);
    let sk = m.payloads[0];
    assert_eq!(m.encrypted(), Some(&sk));
    assert_eq!((sk.ty, sk.offset, sk.body.len()), (payload::SK, 28, 368));
    assert_eq!(sk.end(), buf.len());
    // AES-CBC-128 with HMAC-SHA2-256-128: IV 16, ciphertext a multiple of 16,
    // ICV 16.
    assert_eq!((sk.body.len() - 16 - 16) % 16, 0);
    let aad = sk_aad(buf, &sk);
    assert_eq!(aad, buf.get(..32));
    assert_eq!(sk_integrity_region(buf, 16), buf.get(..buf.len() - 16));
    // Our own prefix for the same header and body is the same 32 bytes.
    let prefix = sk_message_prefix(&m.header, payload::IDI, sk.body.len());
    assert_eq!(Some(prefix.as_slice()), aad);
    // A datagram on port 4500 still carrying the marker is no IKE message.
    assert!(parse_message(&datagram).is_err());
    Ok(())
}

#[test]
fn sk_framing() -> Result<(), WireError> {
    assert_eq!(sk_header(payload::IDI, 0), [35, 0, 0, 4]);
    assert_eq!(sk_header(payload::NONE, 0x1234), [0, 0, 0x12, 0x38]);
    assert_eq!(sk_header(0, usize::MAX), [0, 0, 0xff, 0xff]);
    // A message with a Notify before SK (the unencrypted payload is in the AAD).
    let h = Header::new([1; 8], [2; 8], Exchange::Informational, flags::RESPONSE, 7);
    let body = [0xab; 48];
    let (first, mut msg) = encode_chain(&[Payload::Vendor(b"x".to_vec())]);
    // Point the vendor payload at SK, then append SK.
    msg[0] = payload::SK;
    msg.extend_from_slice(&sk_header(payload::DELETE, body.len()));
    msg.extend_from_slice(&body);
    let mut h2 = h;
    h2.next_payload = first;
    h2.length = (HEADER_LEN + msg.len()) as u32;
    let mut buf = Vec::new();
    h2.write(&mut buf);
    buf.extend_from_slice(&msg);
    let m = parse_message(&buf)?;
    assert_eq!(m.sk_first_payload, Some(payload::DELETE));
    let sk = *m.encrypted().ok_or(WireError::Unencodable("no SK"))?;
    assert_eq!(sk.body, body);
    assert_eq!(sk_aad(&buf, &sk), buf.get(..HEADER_LEN + 5 + 4));
    assert_eq!(sk_integrity_region(&buf, 16), buf.get(..buf.len() - 16));
    assert_eq!(sk_integrity_region(&buf, buf.len() + 1), None);
    // The prefix of an SK-only message parses with the body appended.
    let mut only = sk_message_prefix(&h, payload::NONE, body.len());
    only.extend_from_slice(&body);
    let m = parse_message(&only)?;
    assert_eq!(m.header.exchange, Exchange::Informational);
    assert_eq!(m.sk_first_payload, Some(payload::NONE));
    Ok(())
}

#[test]
fn encode_message_sets_next_payload_and_length() -> Result<(), WireError> {
    let mut h = Header::new([9; 8], [0; 8], Exchange::IkeSaInit, flags::INITIATOR, 0);
    h.next_payload = 99;
    h.length = 12345;
    let payloads = [
        Payload::Nonce(vec![5; 32]),
        Payload::Notify(Notify::new(notify::COOKIE, vec![1; 8])),
    ];
    let buf = try_encode_message(&h, &payloads)?;
    assert_eq!(buf, encode_message(&h, &payloads));
    let m = parse_message(&buf)?;
    assert_eq!(m.header.next_payload, payload::NONCE);
    assert_eq!(m.header.length as usize, buf.len());
    assert_eq!(decode_all(&m)?, payloads);
    // No payloads.
    let empty = encode_message(&h, &[]);
    assert_eq!(empty.len(), HEADER_LEN);
    assert_eq!(parse_message(&empty)?.header.next_payload, payload::NONE);
    Ok(())
}

#[test]
fn try_encode_refuses_what_would_not_parse() {
    let h = Header::new([9; 8], [0; 8], Exchange::IkeAuth, 0, 1);
    let big = Payload::Vendor(vec![0; MAX_PAYLOAD_BODY + 1]);
    assert_eq!(
        try_encode_chain(std::slice::from_ref(&big)),
        Err(WireError::PayloadTooLong {
            ty: payload::VENDOR,
            len: MAX_PAYLOAD_BODY + 1
        })
    );
    assert!(try_encode_chain(&[Payload::Vendor(vec![0; 60_000])]).is_ok());
    let halves = [
        Payload::Vendor(vec![0; 33_000]),
        Payload::Vendor(vec![0; 33_000]),
    ];
    assert!(matches!(
        try_encode_message(&h, &halves),
        Err(WireError::MessageTooLong { .. })
    ));
    let many = vec![Payload::Vendor(vec![]); MAX_PAYLOADS + 1];
    assert_eq!(try_encode_chain(&many), Err(WireError::TooManyPayloads));
    for ty in [payload::NONE, payload::SK, payload::SKF] {
        let p = Payload::Unknown {
            ty,
            critical: false,
            data: vec![],
        };
        assert!(matches!(
            try_encode_chain(&[p]),
            Err(WireError::Unencodable(_))
        ));
    }
    let bad_delete = Payload::Delete(Delete {
        protocol: protocol::ESP,
        spi_size: 4,
        spis: vec![vec![1, 2, 3]],
    });
    assert!(try_encode_chain(&[bad_delete]).is_err());
    let zero_delete = Payload::Delete(Delete {
        protocol: protocol::IKE,
        spi_size: 0,
        spis: vec![vec![]],
    });
    assert!(try_encode_chain(&[zero_delete]).is_err());
    let long_spi = Payload::Notify(Notify {
        protocol: 3,
        spi: vec![0; 256],
        ty: notify::REKEY_SA,
        data: vec![],
    });
    assert!(matches!(
        try_encode_chain(&[long_spi]),
        Err(WireError::TooMany { .. })
    ));
    // The infallible encoder still produces bytes (that do not parse).
    let (_, bytes) = encode_chain(&[big]);
    assert!(parse_chain(payload::VENDOR, &bytes).is_err());
}

#[test]
fn errors_say_what_was_wrong() {
    let e = WireError::ChainOverrun {
        ty: 34,
        offset: 28,
        length: 100,
        remaining: 40,
    };
    assert_eq!(
        e.to_string(),
        "payload type 34 at offset 28: length 100 overruns the chain (40 bytes left)"
    );
    assert_eq!(
        WireError::TruncatedHeader { len: 3 }.to_string(),
        "truncated IKE header: 3 bytes, need 28"
    );
}

// ---------------------------------------------------------------------------
// Property tests.

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn transform_strategy() -> impl Strategy<Value = Transform> {
    (1u8..=5, any::<u16>(), prop::option::of(any::<u16>())).prop_map(|(kind, id, key_length)| {
        Transform {
            kind,
            id,
            key_length,
        }
    })
}

fn proposal_strategy() -> impl Strategy<Value = Proposal> {
    let spi = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 4),
        prop::collection::vec(any::<u8>(), 8),
    ];
    (
        any::<u8>(),
        prop_oneof![Just(protocol::IKE), Just(protocol::ESP), any::<u8>()],
        spi,
        prop::collection::vec(transform_strategy(), 0..10),
    )
        .prop_map(|(number, protocol, spi, transforms)| Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
}

fn ts_strategy() -> impl Strategy<Value = TrafficSelector> {
    let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>())
        .prop_map(|(s, e)| (ts_type::IPV4_ADDR_RANGE, IpAddr::from(s), IpAddr::from(e)));
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_map(|(s, e)| (ts_type::IPV6_ADDR_RANGE, IpAddr::from(s), IpAddr::from(e)));
    (prop_oneof![v4, v6], any::<u8>(), any::<u16>(), any::<u16>()).prop_map(
        |((ts_type, start, end), ip_protocol, start_port, end_port)| TrafficSelector {
            ts_type,
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        },
    )
}

fn id_strategy() -> impl Strategy<Value = Identification> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Identification {
            id_type: id_type::IPV4_ADDR,
            data: a.to_vec()
        }),
        any::<[u8; 16]>().prop_map(|a| Identification {
            id_type: id_type::IPV6_ADDR,
            data: a.to_vec()
        }),
        (
            any::<u8>().prop_filter("address types", |t| {
                *t != id_type::IPV4_ADDR && *t != id_type::IPV6_ADDR
            }),
            bytes(64)
        )
            .prop_map(|(id_type, data)| Identification { id_type, data }),
    ]
}

fn delete_strategy() -> impl Strategy<Value = Delete> {
    prop_oneof![
        any::<u8>().prop_map(|protocol| Delete {
            protocol,
            spi_size: 0,
            spis: vec![]
        }),
        (any::<u8>(), 1u8..=16).prop_flat_map(|(protocol, spi_size)| {
            prop::collection::vec(
                prop::collection::vec(any::<u8>(), usize::from(spi_size)),
                0..12,
            )
            .prop_map(move |spis| Delete {
                protocol,
                spi_size,
                spis,
            })
        }),
    ]
}

/// Types `decode` returns as `Unknown` and that may sit in a chain.
fn unknown_type() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter(
        "decoded or framing type",
        |t| !matches!(*t, 0 | 33..=36 | 39..=46 | 53),
    )
}

fn payload_strategy() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(proposal_strategy(), 1..5).prop_map(Payload::Sa),
        (any::<u16>(), bytes(64)).prop_map(|(group, data)| Payload::Ke { group, data }),
        prop::collection::vec(any::<u8>(), NONCE_MIN..=NONCE_MAX).prop_map(Payload::Nonce),
        id_strategy().prop_map(Payload::IdI),
        id_strategy().prop_map(Payload::IdR),
        (any::<u8>(), bytes(64)).prop_map(|(method, data)| Payload::Auth { method, data }),
        (any::<u8>(), bytes(16), any::<u16>(), bytes(64)).prop_map(|(protocol, spi, ty, data)| {
            Payload::Notify(Notify {
                protocol,
                spi,
                ty,
                data,
            })
        }),
        delete_strategy().prop_map(Payload::Delete),
        prop::collection::vec(ts_strategy(), 1..8).prop_map(Payload::TsI),
        prop::collection::vec(ts_strategy(), 1..8).prop_map(Payload::TsR),
        bytes(64).prop_map(Payload::Vendor),
        (unknown_type(), any::<bool>(), bytes(64))
            .prop_map(|(ty, critical, data)| Payload::Unknown { ty, critical, data }),
    ]
}

fn header_strategy() -> impl Strategy<Value = Header> {
    (
        any::<[u8; 8]>(),
        any::<[u8; 8]>(),
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(spi_i, spi_r, minor, exchange, flags, message_id)| Header {
                spi_i,
                spi_r,
                next_payload: 0,
                major: 2,
                minor,
                exchange: Exchange::from_u8(exchange),
                flags,
                message_id,
                length: 0,
            },
        )
}

/// A valid message: a header and up to 8 payloads.
fn message_strategy() -> impl Strategy<Value = (Header, Vec<Payload>)> {
    (
        header_strategy(),
        prop::collection::vec(payload_strategy(), 0..8),
    )
}

/// What the fuzz target does: parse, decode every payload, walk every body
/// as a chain. Must never panic; returns how many payloads decoded.
fn exercise(buf: &[u8]) -> usize {
    let mut decoded = 0;
    if let Ok(m) = parse_message(buf) {
        for p in &m.payloads {
            decoded += usize::from(decode(p).is_ok());
            let first = if p.is_encrypted() {
                m.sk_first_payload.unwrap_or(payload::NONE)
            } else {
                p.ty
            };
            if let Ok(inner) = parse_chain(first, p.body) {
                decoded += inner.iter().filter(|q| decode(q).is_ok()).count();
            }
        }
    }
    decoded
}

/// The types worth decoding arbitrary bodies as.
const DECODED_TYPES: [u8; 20] = [
    0, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53, 99, 255,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn payload_round_trip(p in payload_strategy()) {
        let (first, bytes) = try_encode_chain(std::slice::from_ref(&p))?;
        prop_assert_eq!(first, p.ty());
        let chain = parse_chain(first, &bytes)?;
        prop_assert_eq!(chain.len(), 1);
        prop_assert_eq!(chain[0].critical, p.critical());
        prop_assert_eq!(decode(&chain[0])?, p);
    }

    #[test]
    fn message_round_trip((header, payloads) in message_strategy()) {
        let buf = try_encode_message(&header, &payloads)?;
        prop_assert_eq!(&buf, &encode_message(&header, &payloads));
        let m = parse_message(&buf)?;
        let mut expected = header;
        expected.next_payload = payloads.first().map_or(payload::NONE, Payload::ty);
        expected.length = buf.len() as u32;
        prop_assert_eq!(m.header, expected);
        prop_assert_eq!(m.sk_first_payload, None);
        let decoded: Result<Vec<Payload>, WireError> = m.payloads.iter().map(decode).collect();
        prop_assert_eq!(decoded?, payloads);
    }

    #[test]
    fn chain_round_trip(payloads in prop::collection::vec(payload_strategy(), 0..8)) {
        let (first, bytes) = try_encode_chain(&payloads)?;
        let chain = parse_chain(first, &bytes)?;
        let mut offset = 0;
        for (raw, p) in chain.iter().zip(&payloads) {
            prop_assert_eq!(raw.offset, offset);
            offset = raw.end();
            prop_assert_eq!(&decode(raw)?, p);
        }
        prop_assert_eq!(offset, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_do_not_panic(buf in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&buf);
        for first in DECODED_TYPES {
            let _ = parse_chain(first, &buf);
        }
        for ty in DECODED_TYPES {
            for critical in [false, true] {
                let _ = decode(&RawPayload { ty, critical, body: &buf, offset: 0 });
            }
        }
    }

    /// Arbitrary bytes behind a plausible header (version 2, right length),
    /// so that the chain walk sees them.
    #[test]
    fn arbitrary_chains_do_not_panic(
        first in prop::sample::select(DECODED_TYPES.to_vec()),
        chain in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut h = Header::new([1; 8], [2; 8], Exchange::IkeAuth, 0, 1);
        h.next_payload = first;
        h.length = (HEADER_LEN + chain.len()) as u32;
        let mut buf = Vec::new();
        h.write(&mut buf);
        buf.extend_from_slice(&chain);
        exercise(&buf);
    }

    /// Valid messages with bytes overwritten, then cut or extended, with
    /// and without the length field fixed up.
    #[test]
    fn mutated_messages_do_not_panic(
        (header, payloads) in message_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        extra in bytes(16),
    ) {
        let mut buf = encode_message(&header, &payloads);
        for (at, v) in &edits {
            let i = at.index(buf.len());
            buf[i] = *v;
        }
        exercise(&buf);
        buf.truncate(cut.index(buf.len() + 1));
        buf.extend_from_slice(&extra);
        exercise(&buf);
        if buf.len() >= HEADER_LEN {
            let len = (buf.len() as u32).to_be_bytes();
            buf[24..28].copy_from_slice(&len);
            buf[17] = 0x20;
            exercise(&buf);
        }
    }

    /// The real IKE_SA_INIT request, mutated.
    #[test]
    fn mutated_charon_request_does_not_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut buf = unhex(INIT_REQUEST);
        for (at, v) in &edits {
            let i = at.index(buf.len());
            buf[i] = *v;
        }
        exercise(&buf);
    }

    #[test]
    fn covers_and_intersect_agree(a in ts_strategy(), b in ts_strategy()) {
        match a.intersect(&b) {
            Some(i) => {
                prop_assert!(a.covers(&i) && b.covers(&i));
                prop_assert_eq!(b.intersect(&a), Some(i));
            }
            None => prop_assert!(!(a.covers(&b) && a.is_well_formed() && b.is_well_formed())),
        }
        if a.covers(&b) {
            prop_assert_eq!(a.intersect(&b), Some(b));
        }
    }
}

#[test]
fn charon_request_mutations_keep_errors_typed() {
    // Every single-byte truncation of the real request is refused with an
    // error (never accepted, never a panic).
    let buf = unhex(INIT_REQUEST);
    for n in 0..buf.len() {
        assert!(parse_message(&buf[..n]).is_err());
    }
    // With the length field fixed, every truncation after the header is a
    // chain error.
    for n in HEADER_LEN..buf.len() {
        let mut cut = buf[..n].to_vec();
        cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
        assert!(matches!(
            parse_message(&cut),
            Err(WireError::TruncatedPayloadHeader { .. } | WireError::ChainOverrun { .. })
        ));
    }
}

/// The fuzz target's seed corpus (fuzz/corpus/ike_message/seed-*): the
/// strongSwan packets and messages of every exchange built here, plaintext
/// (as the engine sees them after decryption) and one whose SK body is a
/// plaintext chain. They must all parse and decode; with
/// `VPCGW_WRITE_FUZZ_SEEDS=1` this test (re)writes them.
fn fuzz_seeds() -> Result<Vec<(&'static str, Vec<u8>)>, WireError> {
    let net = |a: [u8; 4], p| TrafficSelector::from_subnet(IpAddr::from(a), p);
    let net6 = |a: [u8; 16], p| TrafficSelector::from_subnet(IpAddr::from(a), p);
    let esp = Proposal {
        number: 1,
        protocol: protocol::ESP,
        spi: vec![0xc1, 0x2d, 0x44, 0x01],
        transforms: vec![
            Transform::with_key_length(transform::ENCR, 20, 256),
            Transform::new(transform::ESN, 0),
        ],
    };
    let id = |name: &[u8]| Identification {
        id_type: id_type::FQDN,
        data: name.to_vec(),
    };
    let auth_payloads = vec![
        Payload::IdI(id(b"a.example.net")),
        Payload::Notify(Notify::new(notify::INITIAL_CONTACT, vec![])),
        Payload::IdR(id(b"b.example.net")),
        Payload::Auth {
            method: auth_method::SHARED_KEY_MIC,
            data: vec![0x5a; 32],
        },
        Payload::Sa(vec![esp.clone()]),
        Payload::TsI(vec![net([10, 1, 0, 0], 16)]),
        Payload::TsR(vec![
            net([10, 2, 0, 0], 16),
            net([10, 3, 0, 0], 24).with_ports(6, 443, 443),
        ]),
    ];
    let auth = Header::new(SPI_I, SPI_R, Exchange::IkeAuth, flags::INITIATOR, 1);
    let child = Header::new(SPI_I, SPI_R, Exchange::CreateChildSa, flags::RESPONSE, 2);
    let info = Header::new(SPI_I, SPI_R, Exchange::Informational, flags::INITIATOR, 3);
    let rekey_ike = Proposal {
        number: 1,
        protocol: protocol::IKE,
        spi: vec![8; 8],
        transforms: vec![
            Transform::with_key_length(transform::ENCR, 20, 128),
            Transform::new(transform::PRF, 5),
            Transform::new(transform::DH, 19),
        ],
    };
    let (first, inner) = try_encode_chain(&auth_payloads)?;
    let mut sk_message = sk_message_prefix(&auth, first, inner.len());
    sk_message.extend_from_slice(&inner);
    let seeds = vec![
        ("seed-charon-ike-sa-init-request", unhex(INIT_REQUEST)),
        ("seed-charon-ike-sa-init-response", unhex(INIT_RESPONSE)),
        (
            "seed-charon-ike-auth-request",
            unhex(AUTH_REQUEST_4500).split_off(NON_ESP_MARKER.len()),
        ),
        (
            "seed-ike-auth-plaintext",
            try_encode_message(&auth, &auth_payloads)?,
        ),
        ("seed-ike-auth-sk-plaintext-body", sk_message),
        (
            "seed-create-child-sa-rekey-ike",
            try_encode_message(
                &child,
                &[
                    Payload::Sa(vec![rekey_ike]),
                    Payload::Nonce(vec![0x11; 32]),
                    Payload::Ke {
                        group: 19,
                        data: vec![0x22; 64],
                    },
                ],
            )?,
        ),
        (
            "seed-create-child-sa-esp-v6",
            try_encode_message(
                &child,
                &[
                    Payload::Notify(Notify {
                        protocol: protocol::ESP,
                        spi: vec![0xc1, 0x2d, 0x44, 0x01],
                        ty: notify::REKEY_SA,
                        data: vec![],
                    }),
                    Payload::Sa(vec![esp]),
                    Payload::Nonce(vec![0x33; 16]),
                    Payload::TsI(vec![net6(
                        [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        64,
                    )]),
                    Payload::TsR(vec![net6(
                        [0xfd, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        48,
                    )]),
                    Payload::Vendor(b"vpcgw".to_vec()),
                ],
            )?,
        ),
        (
            "seed-informational-delete",
            try_encode_message(
                &info,
                &[
                    Payload::Delete(Delete {
                        protocol: protocol::ESP,
                        spi_size: 4,
                        spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
                    }),
                    Payload::Delete(Delete {
                        protocol: protocol::IKE,
                        spi_size: 0,
                        spis: vec![],
                    }),
                    Payload::Unknown {
                        ty: payload::CP,
                        critical: true,
                        data: vec![1, 0, 0, 0, 0, 1, 0, 0],
                    },
                ],
            )?,
        ),
    ];
    Ok(seeds)
}

#[test]
fn fuzz_seeds_parse() -> Result<(), Box<dyn std::error::Error>> {
    let seeds = fuzz_seeds()?;
    for (name, seed) in &seeds {
        let m = parse_message(seed)?;
        assert!(!m.payloads.is_empty(), "{name}");
        assert!(exercise(seed) > 0, "{name}");
    }
    if std::env::var_os("VPCGW_WRITE_FUZZ_SEEDS").is_some() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ike_message");
        std::fs::create_dir_all(&dir)?;
        for (name, seed) in &seeds {
            std::fs::write(dir.join(name), seed)?;
        }
    }
    Ok(())
}
