//! Directory entries: byte-exact known answers (the same bytes as `docs/protocol.md` §9), round
//! trips, and every malformation.

use kt_core::directory::{
    apply_update, DirectoryError, KeyError, KeyUpdate, Label, Message, Op, RefusedClass, Role,
    RuleError, SignatureError, UserSigner,
};
use kt_core::entry::Namespace;

const T0: u64 = 1_795_689_600_000;

fn alice() -> Label {
    Label::from_identifier("alice@example.com").unwrap()
}

fn signer(seed: u8) -> UserSigner {
    UserSigner::ed25519_from_seed([seed; 32])
}

/// register (key 1) -> rotate (key 2) -> revoke -> recover (key 3), each chained by `prev`.
fn examples() -> [KeyUpdate; 4] {
    let (k1, k2, k3) = (signer(1), signer(2), signer(3));
    let register = KeyUpdate::new(alice(), 1, [0; 32], Op::Register, Some(k1.public()), T0)
        .unwrap()
        .sign(Role::NewKey, &k1)
        .unwrap();
    let rotate = KeyUpdate::new(
        alice(),
        2,
        register.leaf_hash(),
        Op::Rotate,
        Some(k2.public()),
        T0 + 1000,
    )
    .unwrap()
    .sign(Role::NewKey, &k2)
    .unwrap()
    .sign(Role::PreviousKey, &k1)
    .unwrap();
    let revoke = KeyUpdate::new(alice(), 3, rotate.leaf_hash(), Op::Revoke, None, T0 + 2000)
        .unwrap()
        .sign(Role::PreviousKey, &k2)
        .unwrap();
    let recover = KeyUpdate::new(
        alice(),
        4,
        revoke.leaf_hash(),
        Op::Recover,
        Some(k3.public()),
        T0 + 3000,
    )
    .unwrap()
    .sign(Role::NewKey, &k3)
    .unwrap();
    [register, rotate, revoke, recover]
}

fn message() -> Message {
    Message::sign(
        Namespace::new("chat").unwrap(),
        alice(),
        1,
        b"hi".to_vec(),
        &signer(1),
    )
    .unwrap()
}

// Known answers; the same bytes are spelled out in `docs/protocol.md` §9.
const REGISTER_HEX: &str = concat!(
    "0102220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce20000000000000001000000000000",
    "00000000000000000000000000000000000000000000000000000101208a88e3dd7409f195fd52db2d3cba5d72ca6709",
    "bf1d94121bf3748801b40f6f5c000001a21770d400010200407139a292a60cde514d3b92ef3c1d6583bfefe05548346a",
    "f095d4de298a4a12bed8132dede56906c412a5cd77d61368de6359c5097c0874a7de0ff920797bfa02",
);
const ROTATE_HEX: &str = concat!(
    "0102220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce20000000000000002be09bb338eeb",
    "a012f5d7bbd4ee49bbded91c5752a86dcf86f1b6fef124872a010201208139770ea87d175f56a35466c34c7ecccb8d8a",
    "91b4ee37a25df60f5b8fc9b394000001a21770d7e8020100406f58677d0c7cd2aae8b7d692e2598f84a505b23c2cf288",
    "a83a7e5240cac46a425fd964b4c37664c30d758494f1197379073e6a1b2fcddda5a7f6f573afaa7d02020040d98f94dd",
    "1312587e02ceed668a8d75faf6b23005af6a61412f0611cf2a6cb0f53123a5ca495e24902e47aa2e18d1d47d28130674",
    "99000df6fb1147268b48a50c",
);
const REVOKE_HEX: &str = concat!(
    "0102220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce2000000000000000313dfbe7f2ae0",
    "5e28f9ba6b20ea2e28d189cc023cfde656df1d07e3be3d9995c2030000000001a21770dbd0010100404d0b1be2f4da9e",
    "9f21ca0bd55c0a94b587b4562dfdbecb905049c5e9a7719f1fa79ad85aec7d83490e5f8715ccd9b29671474438262207",
    "36fe042b446bc1ce0f",
);
const RECOVER_HEX: &str = concat!(
    "0102220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce200000000000000044f31813a4f80",
    "3076b68af972db55aff6f95d6297086af9398b44e9ac2c7cbe7d040120ed4928c628d1c2c6eae9033890599561295927",
    "3a5c63f93636c14614ac8737d1000001a21770dfb801020040b0a1015815e77006ca604846df744c05c6c1b2fca8da27",
    "9f35ac5f8d740262cc52d2f52dd17432b086afeca79964d6afed6b8100aa8132265ec841423206260e",
);
const MESSAGE_HEX: &str = concat!(
    "01030463686174220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce2000000000000000100",
    "0000026869004029262335122fb6dc8a38a20a57237e6cbe68123801ff292924332d3d3c473d08dcaf15e71df620e4c5",
    "2917ec9b6845c3dade1dcc8f83ad7fe74da5e60328b80f",
);

const ALICE_HEX: &str = "220317d8eef8df1ae60745c37ed92d4241c13536ea04938aa35de8b53e2acce2";

#[test]
fn label_is_domain_separated_sha256() {
    // python3 -c "import hashlib; print(hashlib.sha256(b'keytrail/v1/label\0alice@example.com').hexdigest())"
    assert_eq!(alice().to_string(), ALICE_HEX);
    assert_eq!(
        Label::from_identifier(""),
        Err(DirectoryError::IdentifierLength(0))
    );
    assert!(Label::from_identifier(&"a".repeat(256)).is_ok());
    assert_eq!(
        Label::from_identifier(&"a".repeat(257)),
        Err(DirectoryError::IdentifierLength(257))
    );
    for bad in ["a\nb", "tab\t", "\u{7f}", "nel\u{85}"] {
        assert!(
            matches!(
                Label::from_identifier(bad),
                Err(DirectoryError::IdentifierCharacter {
                    class: RefusedClass::Control,
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    assert!(Label::from_identifier("zoë@example.com").is_ok());
}

/// The register entry built field by field, independently of the encoder.
#[test]
fn register_bytes_field_by_field() {
    let [register, ..] = examples();
    let k1 = signer(1);
    let mut body = Vec::new();
    body.extend_from_slice(&hex::decode(ALICE_HEX).unwrap());
    body.extend_from_slice(&1u64.to_be_bytes());
    body.extend_from_slice(&[0; 32]);
    body.push(1); // register
    body.extend_from_slice(&[0x01, 32]);
    body.extend_from_slice(k1.public().public_bytes());
    body.extend_from_slice(&T0.to_be_bytes());
    let signed = [b"keytrail/v1/key-update\x00".as_slice(), &body].concat();
    assert_eq!(register.signed_bytes(), signed);
    let sig = k1.sign(&signed);
    let mut want = vec![0x01, 0x02];
    want.extend_from_slice(&body);
    want.extend_from_slice(&[1, 2, 0, 64]);
    want.extend_from_slice(&sig);
    assert_eq!(register.encode(), want);
    assert_eq!(hex::encode(&want), REGISTER_HEX);
}

#[test]
fn message_bytes_field_by_field() {
    let m = message();
    let mut body = vec![4];
    body.extend_from_slice(b"chat");
    body.extend_from_slice(&hex::decode(ALICE_HEX).unwrap());
    body.extend_from_slice(&1u64.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 2]);
    body.extend_from_slice(b"hi");
    let signed = [b"keytrail/v1/message\x00".as_slice(), &body].concat();
    assert_eq!(m.signed_bytes(), signed);
    let mut want = vec![0x01, 0x03];
    want.extend_from_slice(&body);
    want.extend_from_slice(&[0, 64]);
    want.extend_from_slice(&signer(1).sign(&signed));
    assert_eq!(m.encode(), want);
    assert_eq!(hex::encode(&want), MESSAGE_HEX);
}

#[test]
fn known_answers_round_trip() {
    let hexes = [REGISTER_HEX, ROTATE_HEX, REVOKE_HEX, RECOVER_HEX];
    for (u, want) in examples().iter().zip(hexes) {
        assert_eq!(hex::encode(u.encode()), want, "{}", u.op());
        assert_eq!(&KeyUpdate::decode(&hex::decode(want).unwrap()).unwrap(), u);
    }
    assert_eq!(hex::encode(message().encode()), MESSAGE_HEX);
    assert_eq!(
        Message::decode(&hex::decode(MESSAGE_HEX).unwrap()).unwrap(),
        message()
    );
}

/// The hex dumps in `docs/protocol.md` §9 are these exact bytes, so the two cannot drift.
#[test]
fn protocol_doc_examples_match() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let dump = |name: &str| -> String {
        let start = format!("```kt-hex {name}\n");
        let at = doc.find(&start).unwrap_or_else(|| panic!("no {name} dump")) + start.len();
        let end = doc[at..].find("```").unwrap();
        doc[at..at + end]
            .lines()
            .map(|l| l.split(';').next().unwrap().replace(' ', ""))
            .collect()
    };
    assert_eq!(dump("register"), REGISTER_HEX);
    assert_eq!(dump("rotate"), ROTATE_HEX);
    assert_eq!(dump("revoke"), REVOKE_HEX);
    assert_eq!(dump("recover"), RECOVER_HEX);
    assert_eq!(dump("message"), MESSAGE_HEX);
}

#[test]
fn every_truncation_and_trailing_byte_is_rejected() {
    for u in examples() {
        let good = u.encode();
        for cut in 0..good.len() {
            assert!(
                KeyUpdate::decode(&good[..cut]).is_err(),
                "{} cut {cut}",
                u.op()
            );
        }
        assert_eq!(KeyUpdate::decode(&[]), Err(DirectoryError::Empty));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            KeyUpdate::decode(&long),
            Err(DirectoryError::TrailingBytes(1))
        );
    }
    let good = message().encode();
    for cut in 0..good.len() {
        assert!(Message::decode(&good[..cut]).is_err(), "message cut {cut}");
    }
    let mut long = good;
    long.extend_from_slice(&[0, 0]);
    assert_eq!(
        Message::decode(&long),
        Err(DirectoryError::TrailingBytes(2))
    );
}

/// Byte offsets in the register example (see the table in `docs/protocol.md` §9).
const VERSION_AT: usize = 34;
const PREV_AT: usize = 42;
const OP_AT: usize = 74;
const ALG_AT: usize = 75;
const KEY_LEN_AT: usize = 76;
const SIG_COUNT_AT: usize = 117;

fn patched(base: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

#[test]
fn bad_update_fields_are_rejected() {
    let [register, rotate, revoke, _] = examples();
    let reg = register.encode();
    let d = |b: &[u8]| KeyUpdate::decode(b);
    assert_eq!(
        d(&patched(&reg, 0, &[2])),
        Err(DirectoryError::UnsupportedVersion(2))
    );
    assert_eq!(
        d(&patched(&reg, 1, &[3])),
        Err(DirectoryError::WrongKind { want: 2, got: 3 })
    );
    assert_eq!(
        d(&patched(&reg, VERSION_AT + 7, &[0])),
        Err(DirectoryError::ZeroVersion)
    );
    assert_eq!(
        d(&patched(&reg, PREV_AT, &[1])),
        Err(DirectoryError::PrevAtVersionOne)
    );
    assert_eq!(
        d(&patched(&reg, VERSION_AT + 7, &[2])),
        Err(DirectoryError::ZeroPrev(2))
    );
    for op in [0, 5, 0xff] {
        assert_eq!(
            d(&patched(&reg, OP_AT, &[op])),
            Err(DirectoryError::UnknownOp(op))
        );
    }
    assert_eq!(
        d(&patched(&reg, ALG_AT, &[4])),
        Err(KeyError::UnknownAlgorithm(4).into())
    );
    // The Ed25519 key read as secp256k1 ECDSA (0x02): that algorithm's keys are 33 bytes.
    assert_eq!(
        d(&patched(&reg, ALG_AT, &[2])),
        Err(KeyError::Length {
            alg: 2,
            want: 33,
            got: 32
        }
        .into())
    );
    // Read as BIP-340 (0x03, 32 bytes), this Ed25519 key happens to be a valid x coordinate, so
    // the entry decodes (decoding checks form, not signatures); its Ed25519 signature does not
    // verify under the BIP-340 key, so the rules refuse it as a bad signature.
    let as_bip340 = d(&patched(&reg, ALG_AT, &[3])).unwrap();
    let key = as_bip340.key().unwrap();
    assert_eq!(key.algorithm(), 3);
    assert_eq!(key.public_bytes(), register.key().unwrap().public_bytes());
    assert_eq!(
        key.verify(
            &as_bip340.signed_bytes(),
            as_bip340.signature(Role::NewKey).unwrap()
        ),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        apply_update(None, &as_bip340, as_bip340.leaf_hash(), 0),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
    // A 32-byte string that is no x coordinate of secp256k1 (x = 5 has none).
    let mut not_x = [0u8; 32];
    not_x[31] = 5;
    let bip340_not_x = patched(&patched(&reg, ALG_AT, &[3]), KEY_LEN_AT + 1, &not_x);
    assert_eq!(d(&bip340_not_x), Err(KeyError::InvalidPoint.into()));
    // A 33-byte Ed25519 key: the length is checked before the bytes are read as a point.
    let mut long_key = reg[..KEY_LEN_AT].to_vec();
    long_key.push(33);
    long_key.extend_from_slice(&reg[KEY_LEN_AT + 1..KEY_LEN_AT + 33]);
    long_key.push(0);
    long_key.extend_from_slice(&reg[KEY_LEN_AT + 33..]);
    assert_eq!(
        d(&long_key),
        Err(KeyError::Length {
            alg: 1,
            want: 32,
            got: 33
        }
        .into())
    );
    // A public key that is not a point (y = 2 has no x on edwards25519).
    let mut not_point = [0u8; 32];
    not_point[0] = 2;
    assert_eq!(
        d(&patched(&reg, KEY_LEN_AT + 1, &not_point)),
        Err(KeyError::InvalidPoint.into())
    );
    // "No key" must be exactly 00 00.
    let rev = revoke.encode();
    assert_eq!(
        d(&patched(&rev, KEY_LEN_AT, &[1])),
        Err(KeyError::Length {
            alg: 0,
            want: 0,
            got: 1
        }
        .into())
    );
    // Signatures: count, role, order, duplicates, lengths.
    let sig_count_at = SIG_COUNT_AT;
    assert_eq!(
        d(&patched(&reg, sig_count_at, &[3])),
        Err(DirectoryError::TooManySignatures(3))
    );
    for role in [0, 3] {
        assert_eq!(
            d(&patched(&reg, sig_count_at + 1, &[role])),
            Err(DirectoryError::UnknownRole(role))
        );
    }
    assert_eq!(
        d(&patched(&reg, sig_count_at + 2, &[0, 0])),
        Err(DirectoryError::SignatureLength(0))
    );
    assert_eq!(
        d(&patched(&reg, sig_count_at + 2, &[0, 129])),
        Err(DirectoryError::SignatureLength(129))
    );
    let rot = rotate.encode();
    let first = sig_count_at + 1; // role of the first signature
    let second = first + 3 + 64;
    assert_eq!(
        d(&patched(&patched(&rot, first, &[2]), second, &[1])),
        Err(DirectoryError::SignatureOrder)
    );
    assert_eq!(
        d(&patched(&rot, second, &[1])),
        Err(DirectoryError::DuplicateRole(Role::PreviousKey))
    );
    assert_eq!(
        register.clone().with_signature(Role::NewKey, vec![1; 64]),
        Err(DirectoryError::DuplicateRole(Role::NewKey))
    );
    assert_eq!(
        KeyUpdate::new(alice(), 0, [0; 32], Op::Register, None, 0),
        Err(DirectoryError::ZeroVersion)
    );
}

#[test]
fn bad_message_fields_are_rejected() {
    let good = message().encode();
    let d = |b: &[u8]| Message::decode(b);
    assert_eq!(
        d(&patched(&good, 1, &[2])),
        Err(DirectoryError::WrongKind { want: 3, got: 2 })
    );
    assert!(matches!(
        d(&patched(&good, 3, b"C")),
        Err(DirectoryError::Namespace(_))
    ));
    assert!(matches!(
        d(&patched(&good, 2, &[0])),
        Err(DirectoryError::Namespace(_))
    ));
    let seq_at = 2 + 1 + 4 + 32;
    assert_eq!(
        d(&patched(&good, seq_at + 7, &[0])),
        Err(DirectoryError::ZeroSequence)
    );
    let len_at = seq_at + 8;
    assert_eq!(
        d(&patched(&good, len_at, &[0, 0, 0, 0])),
        Err(DirectoryError::PayloadLength(0))
    );
    assert_eq!(
        d(&patched(&good, len_at, &[0, 0, 0x80, 1])),
        Err(DirectoryError::PayloadLength(32769))
    );
    let sig_len_at = len_at + 4 + 2;
    assert_eq!(
        d(&patched(&good, sig_len_at, &[0, 0])),
        Err(DirectoryError::SignatureLength(0))
    );
    let ns = Namespace::new("chat").unwrap();
    assert_eq!(
        Message::new(ns.clone(), alice(), 1, vec![], vec![1]),
        Err(DirectoryError::PayloadLength(0))
    );
    assert_eq!(
        Message::new(ns.clone(), alice(), 0, vec![1], vec![1]),
        Err(DirectoryError::ZeroSequence)
    );
    assert_eq!(
        Message::new(ns, alice(), 1, vec![1], vec![]),
        Err(DirectoryError::SignatureLength(0))
    );
}

#[test]
fn largest_message_fits_a_tile_bundle() {
    let m = Message::new(
        Namespace::new("a".repeat(64)).unwrap(),
        alice(),
        u64::MAX,
        vec![7; 32 * 1024],
        vec![1; 128],
    )
    .unwrap();
    assert!(m.encode().len() <= kt_core::entry::MAX_ENTRY_LEN);
    assert_eq!(Message::decode(&m.encode()).unwrap(), m);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn update() -> impl Strategy<Value = KeyUpdate> {
        (
            any::<[u8; 32]>(),
            1u64..,
            any::<[u8; 32]>(),
            0usize..4,
            proptest::option::of(any::<[u8; 32]>()),
            any::<u64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=128)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=128)),
        )
            .prop_map(|(label, version, mut prev, op, seed, time, s1, s2)| {
                if version == 1 {
                    prev = [0; 32];
                } else if prev == [0; 32] {
                    prev[0] = 1;
                }
                let op = [Op::Register, Op::Rotate, Op::Revoke, Op::Recover][op];
                let key = seed.map(|s| UserSigner::ed25519_from_seed(s).public());
                let mut u =
                    KeyUpdate::new(Label::from_bytes(label), version, prev, op, key, time).unwrap();
                // Added out of order on purpose: the type keeps them in canonical order.
                if let Some(s) = s2 {
                    u = u.with_signature(Role::NewKey, s).unwrap();
                }
                if let Some(s) = s1 {
                    u = u.with_signature(Role::PreviousKey, s).unwrap();
                }
                u
            })
    }

    proptest! {
        #[test]
        fn update_round_trips(u in update()) {
            let bytes = u.encode();
            prop_assert_eq!(KeyUpdate::decode(&bytes).unwrap(), u);
        }

        #[test]
        fn message_round_trips(
            ns in "[a-z0-9._/-]{1,64}",
            author in any::<[u8; 32]>(),
            seq in 1u64..,
            payload in proptest::collection::vec(any::<u8>(), 1..512),
            sig in proptest::collection::vec(any::<u8>(), 1..=128),
        ) {
            let m = Message::new(Namespace::new(ns).unwrap(), Label::from_bytes(author), seq, payload, sig).unwrap();
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }

        /// Any bytes either fail to decode or are exactly what the decoded value encodes to.
        #[test]
        fn decode_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(u) = KeyUpdate::decode(&bytes) {
                prop_assert_eq!(u.encode(), bytes.clone());
            }
            if let Ok(m) = Message::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }

        /// The same, for valid entries with one byte changed (far likelier to get past the header).
        #[test]
        fn mutated_entries_decode_canonically(which in 0usize..5, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = if which < 4 { examples()[which].encode() } else { message().encode() };
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(u) = KeyUpdate::decode(&bytes) {
                prop_assert_eq!(u.encode(), bytes.clone());
            }
            if let Ok(m) = Message::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }
    }
}
