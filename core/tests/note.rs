//! Signed notes: known answers from the specs, round trips and every malformation.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use kt_core::note::{
    sign_note, KeyName, Note, NoteError, NoteSigner, NoteVerifier, MAX_NOTE_SIZE, MAX_SIGNATURES,
};
use proptest::prelude::*;

// golang.org/x/mod/sumdb/note package docs.
const NEUMANN_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const NEUMANN_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const NEUMANN_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                            then you don't know what your problem is.\n";
const NEUMANN_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// c2sp.org/signed-note: the example note (the spec publishes no key for it).
const QUASIMODO: &str = "Ognuno sta solo sul cuor della terra\n\
                         trafitto da un raggio di sole:\n\
                         \n\
                         ed è subito sera.\n\
                         \n\
                         — quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

fn neumann_note() -> String {
    format!("{NEUMANN_TEXT}\n{NEUMANN_SIG}")
}

fn neumann() -> NoteVerifier {
    NoteVerifier::parse(NEUMANN_VKEY).unwrap()
}

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(name).unwrap(), [seed; 32])
}

fn open(note: &[u8], verifiers: &[NoteVerifier]) -> Result<Vec<NoteVerifier>, NoteError> {
    Note::parse(note)?.verify(verifiers)
}

#[test]
fn go_sumdb_known_answer() {
    let s = NoteSigner::parse(NEUMANN_SKEY).unwrap();
    assert_eq!(s.key_id(), 0xc74f20a3);
    assert_eq!(s.to_private_string(), NEUMANN_SKEY);
    assert_eq!(s.verifier().to_string(), NEUMANN_VKEY);
    assert_eq!(s.verifier(), neumann());
    // Ed25519 is deterministic: signing gives the published bytes.
    assert_eq!(sign_note(NEUMANN_TEXT, &[&s]).unwrap(), neumann_note());

    let note = Note::parse(neumann_note().as_bytes()).unwrap();
    assert_eq!(note.text(), NEUMANN_TEXT);
    assert_eq!(note.signatures().len(), 1);
    assert_eq!(note.signatures()[0].name().as_str(), "PeterNeumann");
    assert_eq!(note.signatures()[0].key_id(), 0xc74f20a3);
    assert_eq!(note.signatures()[0].signature().len(), 64);
    assert_eq!(note.verify(&[neumann()]).unwrap(), vec![neumann()]);
}

#[test]
fn go_sumdb_cosigned_note_ignores_unknown_key() {
    let msg = format!("{NEUMANN_TEXT}\n{NEUMANN_SIG}{ENOCH_SIG}");
    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(note.signatures().len(), 2);
    assert_eq!(note.signatures()[1].name().as_str(), "EnochRoot");
    assert_eq!(note.verify(&[neumann()]).unwrap(), vec![neumann()]);
}

#[test]
fn c2sp_example_parses_at_last_blank_line() {
    let note = Note::parse(QUASIMODO.as_bytes()).unwrap();
    assert_eq!(
        note.text(),
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    );
    let [sig] = note.signatures() else {
        panic!("want one signature")
    };
    assert_eq!(sig.name().as_str(), "quasimodo.example/salvatore");
    assert_eq!(sig.key_id(), 0x367ba04b);
    assert_eq!(sig.signature().len(), 64);
    // Without its key the note must be refused.
    assert!(matches!(
        note.verify(&[neumann()]),
        Err(NoteError::UnknownKey)
    ));
}

#[test]
fn round_trip_with_several_signers() {
    let (a, b) = (signer("a.example/log", 1), signer("b.example/witness", 2));
    let text = "hello\n\nworld\n";
    let msg = sign_note(text, &[&a, &b]).unwrap();
    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(note.text(), text);
    assert_eq!(note.verify(&[b.verifier()]).unwrap(), vec![b.verifier()]);
    assert_eq!(
        note.verify(&[b.verifier(), a.verifier()]).unwrap(),
        vec![a.verifier(), b.verifier()]
    );
}

#[test]
fn key_strings_round_trip() {
    let s = signer("example.com/log42", 9);
    let s2 = NoteSigner::parse(&s.to_private_string()).unwrap();
    assert_eq!(s2.name(), s.name());
    assert_eq!(s2.key_id(), s.key_id());
    assert_eq!(s2.verifier(), s.verifier());
    let v = NoteVerifier::parse(&s.verifier().to_string()).unwrap();
    assert_eq!(v, s.verifier());
    let v: NoteVerifier = s.verifier().to_string().parse().unwrap();
    assert_eq!(v, s.verifier());

    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(json, format!("\"{v}\""));
    assert_eq!(serde_json::from_str::<NoteVerifier>(&json).unwrap(), v);
}

#[test]
fn key_string_with_wrong_key_id_is_rejected() {
    let bad = NEUMANN_VKEY.replace("c74f20a3", "c74f20a4");
    assert!(matches!(
        NoteVerifier::parse(&bad),
        Err(NoteError::KeyIdMismatch {
            expected: 0xc74f20a3,
            found: 0xc74f20a4
        })
    ));
    let bad = NEUMANN_SKEY.replace("c74f20a3", "00000000");
    assert!(matches!(
        NoteSigner::parse(&bad),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    // Same key under another name: the id no longer matches.
    let bad = NEUMANN_VKEY.replace("PeterNeumann", "PeterNeumann2");
    assert!(matches!(
        NoteVerifier::parse(&bad),
        Err(NoteError::KeyIdMismatch { .. })
    ));
}

#[test]
fn malformed_key_strings_are_rejected() {
    let key_b64 = NEUMANN_VKEY.rsplit_once("+c74f20a3+").unwrap().1;
    let mut raw = BASE64.decode(key_b64).unwrap();
    raw[0] = 0x04;
    let other_alg = format!("PeterNeumann+c74f20a3+{}", BASE64.encode(&raw));
    assert!(matches!(
        NoteVerifier::parse(&other_alg),
        Err(NoteError::UnsupportedAlgorithm(0x04))
    ));
    for bad in [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW==",
        "PeterNeumann+c74f20a3+",
    ] {
        assert!(
            matches!(NoteVerifier::parse(bad), Err(NoteError::MalformedKey)),
            "{bad:?}"
        );
    }
    assert!(matches!(
        NoteVerifier::parse("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::InvalidKeyName { .. })
    ));
    // A verifier string is not a signer string and vice versa.
    assert!(matches!(
        NoteSigner::parse(NEUMANN_VKEY),
        Err(NoteError::MalformedKey)
    ));
    assert!(NoteVerifier::parse(NEUMANN_SKEY).is_err());
}

#[test]
fn signed_by_another_key_is_unknown_key() {
    let msg = sign_note("hi\n", &[&signer("PeterNeumann", 3)]).unwrap();
    // Same name, other key (so other id): ignored, hence no known signature.
    assert!(matches!(
        open(msg.as_bytes(), &[neumann()]),
        Err(NoteError::UnknownKey)
    ));
    assert!(matches!(
        open(msg.as_bytes(), &[]),
        Err(NoteError::UnknownKey)
    ));
}

#[test]
fn modified_body_is_invalid_signature() {
    let msg = neumann_note().replace("cryptography", "cryptograph!");
    assert!(matches!(
        open(msg.as_bytes(), &[neumann()]),
        Err(NoteError::InvalidSignature { name, id: 0xc74f20a3 }) if name == "PeterNeumann"
    ));
}

#[test]
fn truncated_signature() {
    // Fewer than key id + 1 byte: malformed.
    let short = format!("{NEUMANN_TEXT}\n— PeterNeumann x08gow==\n");
    assert!(matches!(
        Note::parse(short.as_bytes()),
        Err(NoteError::SignatureTooShort { index: 0 })
    ));
    // A known key with a cut Ed25519 signature: invalid.
    let raw = BASE64
        .decode(NEUMANN_SIG.trim_end().rsplit_once(' ').unwrap().1)
        .unwrap();
    let cut = format!(
        "{NEUMANN_TEXT}\n— PeterNeumann {}\n",
        BASE64.encode(&raw[..raw.len() - 1])
    );
    assert!(matches!(
        open(cut.as_bytes(), &[neumann()]),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn duplicate_signatures_from_a_known_key() {
    let msg = format!("{NEUMANN_TEXT}\n{NEUMANN_SIG}{NEUMANN_SIG}");
    assert!(matches!(
        open(msg.as_bytes(), &[neumann()]),
        Err(NoteError::DuplicateSignature { id: 0xc74f20a3, .. })
    ));
    let s = NoteSigner::parse(NEUMANN_SKEY).unwrap();
    assert!(matches!(
        sign_note("x\n", &[&s, &s]),
        Err(NoteError::DuplicateSignature { .. })
    ));
    // Duplicates from unknown keys are ignored like any unknown signature.
    let msg = format!("{NEUMANN_TEXT}\n{ENOCH_SIG}{ENOCH_SIG}{NEUMANN_SIG}");
    assert_eq!(open(msg.as_bytes(), &[neumann()]).unwrap(), vec![neumann()]);
}

fn seed(i: u64) -> [u8; 32] {
    let mut seed = [0; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed
}

#[test]
fn ambiguous_verifiers_are_rejected() {
    // Two keys named "k" whose 32-bit key ids collide (found by a birthday search).
    let name = KeyName::new("k").unwrap();
    let a = NoteSigner::from_seed(name.clone(), seed(75083));
    let b = NoteSigner::from_seed(name, seed(77273));
    assert_eq!(a.key_id(), 0xef57b5ff);
    assert_eq!(b.key_id(), a.key_id());
    assert_ne!(a.verifier(), b.verifier());

    let msg = sign_note("x\n", &[&a]).unwrap();
    assert!(matches!(
        open(msg.as_bytes(), &[a.verifier(), b.verifier()]),
        Err(NoteError::AmbiguousKey { id: 0xef57b5ff, .. })
    ));
    // The colliding key alone: it is "known", so its failure to verify is fatal.
    assert!(matches!(
        open(msg.as_bytes(), &[b.verifier()]),
        Err(NoteError::InvalidSignature { id: 0xef57b5ff, .. })
    ));
    // The same key listed twice is not ambiguous.
    assert!(open(msg.as_bytes(), &[a.verifier(), a.verifier()]).is_ok());
}

#[test]
fn malformed_notes() {
    use NoteError::*;
    let body = NEUMANN_TEXT;
    let bad_name = |name: &str| InvalidKeyName {
        name: name.to_owned(),
    };
    let cases = [
        (format!("{body}{NEUMANN_SIG}"), NoBlankLine),
        (format!("{body}\n"), NoSignatures),
        (
            format!("{body}\n{}", NEUMANN_SIG.trim_end()),
            MissingNewline,
        ),
        (
            format!("{body}\n- PeterNeumann x08go/ZJ\n"),
            MissingEmDash { index: 0 },
        ),
        (
            format!("{body}\n{}", NEUMANN_SIG.replacen("— ", "—", 1)),
            MissingEmDash { index: 0 },
        ),
        (
            format!("{body}\n{NEUMANN_SIG}— x08goxAAAA==\n"),
            MalformedSignatureLine { index: 1 },
        ),
        (format!("{body}\n—  x08goxAAAA==\n"), bad_name("")),
        (
            format!("{body}\n— Peter+Neumann x08goxAAAA==\n"),
            bad_name("Peter+Neumann"),
        ),
        (
            format!("{body}\n— PeterNeumann x08go*ZJ\n"),
            BadBase64 { index: 0 },
        ),
        (
            format!("{body}\n— PeterNeumann x08goxAAAA\n"),
            BadBase64 { index: 0 },
        ),
        (
            format!("{body}\n— PeterNeumann x08goxAAAA== \n"),
            BadBase64 { index: 0 },
        ),
        (
            format!("{body}\n— PeterNeumann \n"),
            SignatureTooShort { index: 0 },
        ),
        (format!("a\tb\n\n{NEUMANN_SIG}"), ControlCharacter),
        (format!("{body}\r\n{NEUMANN_SIG}"), ControlCharacter),
    ];
    for (msg, want) in cases {
        assert_eq!(Note::parse(msg.as_bytes()), Err(want), "{msg:?}");
    }
}

#[test]
fn non_utf8_note() {
    let mut msg = neumann_note().into_bytes();
    msg[3] = 0xff;
    assert!(matches!(Note::parse(&msg), Err(NoteError::NotUtf8)));
}

#[test]
fn oversized_note() {
    let text = "a".repeat(MAX_NOTE_SIZE) + "\n";
    let msg = format!("{text}\n{NEUMANN_SIG}");
    assert!(matches!(
        Note::parse(msg.as_bytes()),
        Err(NoteError::TooLarge {
            max: MAX_NOTE_SIZE,
            ..
        })
    ));
    let s = NoteSigner::parse(NEUMANN_SKEY).unwrap();
    assert!(matches!(
        sign_note(&text, &[&s]),
        Err(NoteError::TooLarge { .. })
    ));
}

#[test]
fn too_many_signatures() {
    let msg = format!("{NEUMANN_TEXT}\n{}", ENOCH_SIG.repeat(MAX_SIGNATURES + 1));
    assert!(matches!(
        Note::parse(msg.as_bytes()),
        Err(NoteError::TooManySignatures { .. })
    ));
    let msg = format!(
        "{NEUMANN_TEXT}\n{}{NEUMANN_SIG}",
        ENOCH_SIG.repeat(MAX_SIGNATURES - 1)
    );
    assert!(open(msg.as_bytes(), &[neumann()]).is_ok());
}

#[test]
fn sign_rejects_bad_text_and_no_signers() {
    let s = signer("k", 1);
    assert!(matches!(
        sign_note("", &[&s]),
        Err(NoteError::MissingNewline)
    ));
    assert!(matches!(
        sign_note("abc", &[&s]),
        Err(NoteError::MissingNewline)
    ));
    assert!(matches!(
        sign_note("a\u{7}\n", &[&s]),
        Err(NoteError::ControlCharacter)
    ));
    assert!(matches!(
        sign_note("abc\n", &[]),
        Err(NoteError::NoSignatures)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_parse_verify(text in "([^\\x00-\\x1f]{0,20}\n){1,5}", flip in any::<prop::sample::Index>()) {
        let s = signer("p.example/log", 5);
        let msg = sign_note(&text, &[&s]).unwrap();
        let note = Note::parse(msg.as_bytes()).unwrap();
        prop_assert_eq!(note.text(), text.as_str());
        prop_assert_eq!(note.verify(&[s.verifier()]).unwrap(), vec![s.verifier()]);

        // Any change to a text byte is refused, whatever the error.
        let mut bad = msg.into_bytes();
        let i = flip.index(text.len());
        bad[i] ^= 0x01;
        prop_assert!(open(&bad, &[s.verifier()]).is_err());
    }
}
