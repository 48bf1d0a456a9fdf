//! Labels as VRF outputs (`docs/protocol.md` §9.1): the server's `Label::prove` and everyone
//! else's `verify_label` agree, and a proof for another identifier, under another key, or
//! altered in any bit never yields a label.

use kt_core::directory::{
    canonical_identifier, normalize_identifier, refused_class, verify_label, vrf_input,
    AnswerError, DirectoryError, Label, RefusedClass,
};
use kt_core::vrf::{VrfError, VrfSecretKey, PROOF_LEN};
use proptest::prelude::*;

fn key(byte: u8) -> VrfSecretKey {
    VrfSecretKey::from_seed([byte; 32])
}

/// A recorded vector: the VRF key from the seed `07…07`, the identifier `alice@example.com`.
/// Anyone implementing §9.1 must get these bytes.
const VECTOR_PUBLIC_KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
const VECTOR_PROOF: &str = "82a8d014a5be81c943333898c67130cd988f871abcd0fd2e1cf1b86f703c83ca56fe43213562f2fcd2e56c244db394116fcdbf3fb069c348f3824674404b23e931113707e553b0442ee6407f585b5502";
const VECTOR_LABEL: &str = "9d8a491beef60a066e63113ea7bc3bdee044b16ef57fa03f39e8815d42ef9475";

#[test]
fn vrf_input_is_the_tag_then_the_identifier() {
    assert_eq!(
        vrf_input("alice@example.com").unwrap(),
        b"keytrail/v1/label\x00alice@example.com"
    );
    assert_eq!(vrf_input(""), Err(DirectoryError::IdentifierLength(0)));
    assert_eq!(
        vrf_input(&"a".repeat(257)),
        Err(DirectoryError::IdentifierLength(257))
    );
    assert_eq!(
        vrf_input("a\nb"),
        Err(DirectoryError::IdentifierCharacter {
            ch: '\n',
            at: 1,
            class: RefusedClass::Control
        })
    );
}

#[test]
fn recorded_vector() {
    let sk = key(7);
    assert_eq!(hex::encode(sk.public().to_bytes()), VECTOR_PUBLIC_KEY);
    let (label, proof) = Label::prove(&sk, "alice@example.com").unwrap();
    assert_eq!(hex::encode(proof.to_bytes()), VECTOR_PROOF);
    assert_eq!(label.to_string(), VECTOR_LABEL);
    let proof: [u8; PROOF_LEN] = hex::decode(VECTOR_PROOF).unwrap().try_into().unwrap();
    assert_eq!(
        verify_label(&sk.public(), "alice@example.com", &proof).unwrap(),
        label
    );
}

#[test]
fn the_servers_proof_gives_the_servers_label() {
    let sk = key(1);
    for id in [
        "alice@example.com",
        "bob@example.com",
        "zoë@example.com",
        "x",
    ] {
        let (label, proof) = Label::prove(&sk, id).unwrap();
        assert_eq!(
            verify_label(&sk.public(), id, proof.as_bytes()).unwrap(),
            label
        );
        // Not the plain hash: without the VRF key nobody can compute it.
        assert_ne!(label, Label::from_identifier(id).unwrap());
    }
}

#[test]
fn a_proof_for_another_identifier_is_refused() {
    let sk = key(1);
    let (_, bobs) = Label::prove(&sk, "bob@example.com").unwrap();
    assert_eq!(
        verify_label(&sk.public(), "alice@example.com", bobs.as_bytes()),
        Err(AnswerError::VrfProof(VrfError::InvalidProof))
    );
    // Nor does an identifier differing only in case or by a trailing byte borrow it.
    for near in ["Bob@example.com", "bob@example.com.", "bob@example.co"] {
        assert_eq!(
            verify_label(&sk.public(), near, bobs.as_bytes()),
            Err(AnswerError::VrfProof(VrfError::InvalidProof)),
            "{near}"
        );
    }
    // A trailing space is not even an identifier (§9.1).
    assert!(matches!(
        verify_label(&sk.public(), "bob@example.com ", bobs.as_bytes()),
        Err(AnswerError::Identifier(_))
    ));
}

#[test]
fn a_proof_under_another_key_is_refused() {
    let (_, proof) = Label::prove(&key(2), "alice@example.com").unwrap();
    assert_eq!(
        verify_label(&key(1).public(), "alice@example.com", proof.as_bytes()),
        Err(AnswerError::VrfProof(VrfError::InvalidProof))
    );
}

#[test]
fn every_bit_flip_of_a_proof_is_refused() {
    let sk = key(3);
    let (_, proof) = Label::prove(&sk, "alice@example.com").unwrap();
    for bit in 0..PROOF_LEN * 8 {
        let mut bad = proof.to_bytes();
        bad[bit / 8] ^= 1 << (bit % 8);
        let got = verify_label(&sk.public(), "alice@example.com", &bad);
        assert!(
            matches!(got, Err(AnswerError::VrfProof(_))),
            "bit {bit}: {got:?}"
        );
    }
    // All zeros and all ones: not proofs either.
    for bytes in [[0u8; PROOF_LEN], [0xff; PROOF_LEN]] {
        assert!(verify_label(&sk.public(), "alice@example.com", &bytes).is_err());
    }
}

#[test]
fn an_invalid_identifier_is_the_callers_error() {
    let sk = key(1);
    let (_, proof) = Label::prove(&sk, "alice@example.com").unwrap();
    assert_eq!(
        verify_label(&sk.public(), "", proof.as_bytes()),
        Err(AnswerError::Identifier(DirectoryError::IdentifierLength(0)))
    );
    assert!(Label::prove(&sk, "a\u{7f}b").is_err());
}

/// Every class of character refused in identifiers (`docs/protocol.md` §9.1), each with
/// examples, wherever it stands in the identifier: each would let an identifier print like
/// `alice@example.com` with another label.
#[test]
fn identifiers_refuse_invisible_and_lookalike_characters() {
    use RefusedClass::*;
    let refused: &[(char, RefusedClass)] = &[
        // Cc: C0, DEL, C1.
        ('\0', Control),
        ('\t', Control),
        ('\n', Control),
        ('\r', Control),
        ('\u{1b}', Control),
        ('\u{7f}', Control),
        ('\u{80}', Control),
        ('\u{85}', Control),
        ('\u{9f}', Control),
        // Cf: zero-width, joiners, soft hyphen, bidi controls, BOM, tags, Arabic letter mark.
        ('\u{ad}', Format),
        ('\u{61c}', Format),
        ('\u{180e}', Format),
        ('\u{200b}', Format),
        ('\u{200c}', Format),
        ('\u{200d}', Format),
        ('\u{200e}', Format),
        ('\u{200f}', Format),
        ('\u{202a}', Format),
        ('\u{202b}', Format),
        ('\u{202c}', Format),
        ('\u{202d}', Format),
        ('\u{202e}', Format),
        ('\u{2060}', Format),
        ('\u{2061}', Format),
        ('\u{2064}', Format),
        ('\u{2066}', Format),
        ('\u{2067}', Format),
        ('\u{2068}', Format),
        ('\u{2069}', Format),
        ('\u{feff}', Format),
        ('\u{fff9}', Format),
        ('\u{e0001}', Format),
        ('\u{e0041}', Format),
        // Zs, Zl, Zp.
        (' ', Separator),
        ('\u{a0}', Separator),
        ('\u{2002}', Separator),
        ('\u{202f}', Separator),
        ('\u{3000}', Separator),
        ('\u{2028}', Separator),
        ('\u{2029}', Separator),
        // Co.
        ('\u{e000}', PrivateUse),
        ('\u{f8ff}', PrivateUse),
        ('\u{f0000}', PrivateUse),
        ('\u{10fffd}', PrivateUse),
        // Cn: unassigned, and the noncharacters.
        ('\u{378}', Unassigned),
        ('\u{2065}', Unassigned),
        ('\u{fdd0}', Unassigned),
        ('\u{fdef}', Unassigned),
        ('\u{fffe}', Unassigned),
        ('\u{ffff}', Unassigned),
        ('\u{1fffe}', Unassigned),
        ('\u{10ffff}', Unassigned),
        // Default-ignorable letters and marks.
        ('\u{34f}', Ignorable),
        ('\u{115f}', Ignorable),
        ('\u{1160}', Ignorable),
        ('\u{17b4}', Ignorable),
        ('\u{180b}', Ignorable),
        ('\u{180f}', Ignorable),
        ('\u{3164}', Ignorable),
        ('\u{fe00}', Ignorable),
        ('\u{fe0f}', Ignorable),
        ('\u{ffa0}', Ignorable),
        ('\u{e0100}', Ignorable),
        ('\u{e01ef}', Ignorable),
    ];
    let sk = key(1);
    for &(ch, class) in refused {
        assert_eq!(refused_class(ch), Some(class), "U+{:04X}", u32::from(ch));
        for (id, at) in [
            (format!("alice{ch}@example.com"), 5),
            (format!("{ch}alice@example.com"), 0),
            (format!("alice@example.com{ch}"), 17),
        ] {
            let want = Err(DirectoryError::IdentifierCharacter { ch, at, class });
            assert_eq!(canonical_identifier(&id).map(drop), want, "{id:?}");
            assert_eq!(vrf_input(&id).map(drop), want, "{id:?}");
            assert_eq!(Label::from_identifier(&id).map(drop), want, "{id:?}");
            assert!(Label::prove(&sk, &id).is_err(), "{id:?}");
        }
    }
    // The message says what and where.
    let e = canonical_identifier("alice\u{200b}@example.com").unwrap_err();
    assert_eq!(
        e.to_string(),
        "identifier contains U+200B at byte 5, an invisible format character (Unicode Cf): \
         refused, because it would print like another identifier"
    );
    // What stays allowed: letters, marks, digits, punctuation and symbols of any script.
    for ok in [
        "alice@example.com",
        "zoë@example.com",
        "+15551234567",
        "ñandú@ejemplo.es",
        "пользователь@пример.рф",
        "用户@例子.中国",
        "δοκιμή@παράδειγμα.δοκιμή",
        "user+tag_1.2-3@example.com",
        "émile❤@example.com",
    ] {
        assert_eq!(canonical_identifier(ok).unwrap(), ok, "{ok:?}");
    }
}

/// The non-`Cf` default-ignorable table agrees with the general-category data: every character
/// in it is assigned, and a letter or a mark (so neither `Cf` nor `Cn`, which are refused whole).
#[test]
fn the_ignorable_table_is_letters_and_marks() {
    use kt_core::directory::label::IGNORABLE_NOT_FORMAT;
    use unicode_properties::{GeneralCategoryGroup as G, UnicodeGeneralCategory as _};
    for &(lo, hi) in IGNORABLE_NOT_FORMAT {
        for ch in lo..=hi {
            assert!(
                matches!(ch.general_category_group(), G::Letter | G::Mark),
                "U+{:04X} is {:?}",
                u32::from(ch),
                ch.general_category()
            );
            assert_eq!(refused_class(ch), Some(RefusedClass::Ignorable));
        }
    }
}

/// One normalization, NFC, before the VRF input: canonically equivalent spellings of an
/// identifier are one identifier, with one label and one proof, under every party's code.
#[test]
fn canonically_equivalent_identifiers_have_one_label() {
    let sk = key(7);
    let pairs = [
        // é precomposed, and e + COMBINING ACUTE ACCENT.
        ("jos\u{e9}@example.com", "jose\u{301}@example.com"),
        // Å: U+00C5, U+212B ANGSTROM SIGN (a singleton), and A + COMBINING RING ABOVE.
        (
            "\u{c5}ngstr\u{f6}m@example.com",
            "\u{212b}ngstro\u{308}m@example.com",
        ),
        (
            "\u{c5}ngstr\u{f6}m@example.com",
            "A\u{30a}ngstr\u{f6}m@example.com",
        ),
        // Hangul syllable 가 and its jamo.
        ("\u{ac00}@example.com", "\u{1100}\u{1161}@example.com"),
        // Combining marks in another order: ạ̈ (dot below, diaeresis) either way.
        ("a\u{323}\u{308}@example.com", "a\u{308}\u{323}@example.com"),
    ];
    for (a, b) in pairs {
        assert_ne!(a, b);
        assert_eq!(
            canonical_identifier(a).unwrap(),
            canonical_identifier(b).unwrap()
        );
        assert_eq!(vrf_input(a).unwrap(), vrf_input(b).unwrap());
        assert_eq!(Label::from_identifier(a), Label::from_identifier(b));
        let (label_a, proof_a) = Label::prove(&sk, a).unwrap();
        let (label_b, proof_b) = Label::prove(&sk, b).unwrap();
        assert_eq!((label_a, proof_a.to_bytes()), (label_b, proof_b.to_bytes()));
        // A proof made for one spelling verifies for the other.
        assert_eq!(
            verify_label(&sk.public(), b, &proof_a.to_bytes()),
            Ok(label_a)
        );
    }
    // The input is the NFC form.
    assert_eq!(
        vrf_input("jose\u{301}@example.com").unwrap(),
        "keytrail/v1/label\0jos\u{e9}@example.com".as_bytes()
    );
    // Compatibility forms are other identifiers (NFC, not NFKC): the ﬁ ligature is not "fi".
    assert_ne!(
        Label::from_identifier("\u{fb01}@example.com"),
        Label::from_identifier("fi@example.com")
    );
    // Length counts the NFC form: 128 decomposed é (384 bytes) are 256 bytes composed.
    let decomposed = "e\u{301}".repeat(128);
    assert_eq!(decomposed.len(), 384);
    assert_eq!(canonical_identifier(&decomposed).unwrap().len(), 256);
    assert_eq!(
        canonical_identifier(&"e\u{301}".repeat(129)).map(drop),
        Err(DirectoryError::IdentifierLength(258))
    );
    assert_eq!(
        canonical_identifier(&"a".repeat(1025)).map(drop),
        Err(DirectoryError::IdentifierLength(1025))
    );
}

proptest! {
    /// NFC is idempotent, and an accepted identifier is its own canonical form's canonical form,
    /// with the same label: normalizing twice never changes a label.
    #[test]
    fn normalization_is_idempotent(s in "(?s).{0,40}") {
        let once = normalize_identifier(&s).into_owned();
        prop_assert_eq!(normalize_identifier(&once).into_owned(), once.clone());
        match canonical_identifier(&s) {
            Ok(c) => {
                let c = c.into_owned();
                prop_assert_eq!(&c, &once);
                prop_assert_eq!(canonical_identifier(&c).unwrap().into_owned(), c.clone());
                prop_assert_eq!(Label::from_identifier(&s), Label::from_identifier(&c));
            }
            Err(e) => prop_assert_eq!(canonical_identifier(&once).map(drop), Err(e)),
        }
    }
}
