//! Checkpoints: exact body, strict parsing, signing and opening, chaining.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use kt_core::checkpoint::{
    ChainError, Checkpoint, CheckpointError, CheckpointOpener, SignedCheckpoint,
};
use kt_core::hash::{empty_root, sha256};
use kt_core::note::{sign_note, KeyName, NoteError, NoteSigner};
use proptest::prelude::*;

const ORIGIN: &str = "keytrail.example/log";

fn log_key() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [1; 32])
}

fn sample() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.to_owned(),
        size: 20852163,
        root: [0xab; 32],
        epoch: 42,
        map_root: [0xcd; 32],
        prev: [0xef; 32],
        time_ms: 1_700_000_000_123,
    }
}

const SAMPLE_BODY: &str = "keytrail.example/log\n\
    20852163\n\
    q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\
    epoch 42\n\
    map zc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc0=\n\
    prev 7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+8=\n\
    time 1700000000123\n";

#[test]
fn body_is_exact_and_round_trips() {
    assert_eq!(sample().body(), SAMPLE_BODY);
    assert_eq!(Checkpoint::parse_body(SAMPLE_BODY).unwrap(), sample());
    assert_eq!(sample().body_hash(), sha256(SAMPLE_BODY.as_bytes()));
}

#[test]
fn genesis() {
    let g = Checkpoint::genesis(ORIGIN, 5);
    assert_eq!((g.size, g.epoch, g.time_ms), (0, 0, 5));
    assert_eq!(g.root, empty_root());
    assert_eq!(g.map_root, [0; 32]);
    assert_eq!(g.prev, [0; 32]);
    assert_eq!(
        g.body(),
        "keytrail.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nepoch 0\n\
         map AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
         prev AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 5\n"
    );
    assert_eq!(Checkpoint::parse_body(&g.body()).unwrap(), g);
}

/// Replaces line `i` (0-based) of the sample body.
fn with_line(i: usize, line: Option<&str>) -> String {
    let mut lines: Vec<&str> = SAMPLE_BODY.lines().collect();
    match line {
        Some(l) => lines[i] = l,
        None => {
            lines.remove(i);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn strict_parsing() {
    let h31 = BASE64.encode([7u8; 31]);
    let h33 = BASE64.encode([7u8; 33]);
    let cases: Vec<(String, CheckpointError)> = vec![
        (with_line(1, Some("020852163")), number("size")),
        (with_line(1, Some("+20852163")), number("size")),
        (with_line(1, Some("-1")), number("size")),
        (with_line(1, Some("")), number("size")),
        (with_line(1, Some(" 20852163")), number("size")),
        (with_line(1, Some("18446744073709551616")), number("size")),
        (with_line(3, Some("epoch 042")), number("epoch")),
        (with_line(3, Some("epoch 00")), number("epoch")),
        (with_line(3, Some("epoch  42")), number("epoch")),
        (with_line(3, Some("epoch 42 ")), number("epoch")),
        (with_line(6, Some("time 0x10")), number("time")),
        (with_line(2, Some(&h31)), hash("root")),
        (with_line(2, Some(&h33)), hash("root")),
        (with_line(2, Some("not base64!")), hash("root")),
        // Unpadded, and non-zero trailing bits: not the canonical encoding.
        (
            with_line(2, Some("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s")),
            hash("root"),
        ),
        (
            with_line(2, Some("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6t=")),
            hash("root"),
        ),
        (with_line(4, Some(&format!("map {h31}"))), hash("map")),
        (with_line(5, Some("prev")), missing("prev")),
        (with_line(6, None), missing("time")),
        (with_line(4, None), missing("map")),
        (with_line(3, Some("Epoch 42")), missing("epoch")),
        (with_line(0, Some("")), CheckpointError::InvalidOrigin),
        (with_line(0, Some("a\tb")), CheckpointError::InvalidOrigin),
        (
            format!("{SAMPLE_BODY}extra 1\n"),
            CheckpointError::ExtraLine { line: 8 },
        ),
        (
            format!("{SAMPLE_BODY}\n"),
            CheckpointError::ExtraLine { line: 8 },
        ),
        (
            SAMPLE_BODY.trim_end().to_owned(),
            CheckpointError::MissingNewline,
        ),
        (String::new(), CheckpointError::MissingNewline),
        (
            "keytrail.example/log\n20852163\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
                .to_owned(),
            missing("epoch"),
        ),
        // An empty tree has exactly one root.
        (with_line(1, Some("0")), CheckpointError::WrongEmptyRoot),
    ];
    for (body, want) in cases {
        assert_eq!(Checkpoint::parse_body(&body), Err(want), "{body:?}");
    }
}

fn number(field: &'static str) -> CheckpointError {
    CheckpointError::InvalidNumber { field }
}

fn hash(field: &'static str) -> CheckpointError {
    CheckpointError::InvalidHash { field }
}

fn missing(field: &'static str) -> CheckpointError {
    CheckpointError::MissingLine { field }
}

#[test]
fn sign_and_open() {
    let key = log_key();
    let signed = SignedCheckpoint::sign(sample(), &key).unwrap();
    assert!(signed.note().starts_with(SAMPLE_BODY));
    let opened = SignedCheckpoint::open(signed.note().as_bytes(), ORIGIN, &key.verifier()).unwrap();
    assert_eq!(opened, signed);
    assert_eq!(opened.checkpoint(), &sample());
}

#[test]
fn open_keeps_cosignatures() {
    let key = log_key();
    let witness = NoteSigner::from_seed(KeyName::new("witness.example").unwrap(), [2; 32]);
    let note = sign_note(SAMPLE_BODY, &[&key, &witness]).unwrap();
    let opened = SignedCheckpoint::open(note.as_bytes(), ORIGIN, &key.verifier()).unwrap();
    assert_eq!(opened.note(), note);
    assert_eq!(opened.checkpoint(), &sample());
    // The witness alone is not the log.
    assert!(matches!(
        SignedCheckpoint::open(
            sign_note(SAMPLE_BODY, &[&witness]).unwrap().as_bytes(),
            ORIGIN,
            &key.verifier()
        ),
        Err(CheckpointError::Note(NoteError::UnknownKey))
    ));
}

#[test]
fn open_rejects_wrong_origin() {
    let key = log_key();
    let signed = SignedCheckpoint::sign(sample(), &key).unwrap();
    assert!(matches!(
        SignedCheckpoint::open(signed.note().as_bytes(), "other.example/log", &key.verifier()),
        Err(CheckpointError::WrongOrigin { expected, found }) if expected == "other.example/log" && found == ORIGIN
    ));
}

#[test]
fn open_rejects_bad_signature() {
    let key = log_key();
    let signed = SignedCheckpoint::sign(sample(), &key).unwrap();
    let tampered = signed.note().replace("epoch 42", "epoch 43");
    assert!(matches!(
        SignedCheckpoint::open(tampered.as_bytes(), ORIGIN, &key.verifier()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
    let other = NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [9; 32]);
    assert!(matches!(
        SignedCheckpoint::open(signed.note().as_bytes(), ORIGIN, &other.verifier()),
        Err(CheckpointError::Note(NoteError::UnknownKey))
    ));
}

#[test]
fn an_opener_remembers_only_the_exact_note_it_opened() {
    let key = log_key();
    let opener = CheckpointOpener::new(ORIGIN, key.verifier());
    let signed = SignedCheckpoint::sign(sample(), &key).unwrap();
    let note = signed.note().as_bytes();
    assert!(!opener.remembers(note), "nothing opened yet");
    assert_eq!(opener.open(note).unwrap(), signed);
    assert!(opener.remembers(note));
    assert_eq!(opener.open(note).unwrap(), signed, "the same note again");

    // A tampered copy of the remembered note is opened in full, and refused.
    let tampered = signed.note().replace("epoch 42", "epoch 43");
    assert!(matches!(
        opener.open(tampered.as_bytes()),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
    assert!(opener.remembers(note), "a refused note replaces nothing");

    // The same checkpoint with a cosignature added is another note: opened, then remembered.
    let witness = NoteSigner::from_seed(KeyName::new("witness.example").unwrap(), [2; 32]);
    let cosigned = sign_note(SAMPLE_BODY, &[&key, &witness]).unwrap();
    assert_eq!(opener.open(cosigned.as_bytes()).unwrap().note(), cosigned);
    assert!(opener.remembers(cosigned.as_bytes()) && !opener.remembers(note));

    // Clones share the memory; another log's opener refuses the same note.
    assert!(opener.clone().remembers(cosigned.as_bytes()));
    let other = CheckpointOpener::new("other.example/log", key.verifier());
    assert!(matches!(
        other.open(cosigned.as_bytes()),
        Err(CheckpointError::WrongOrigin { .. })
    ));
    let other_key = NoteSigner::from_seed(KeyName::new(ORIGIN).unwrap(), [9; 32]);
    assert!(CheckpointOpener::new(ORIGIN, other_key.verifier())
        .open(note)
        .is_err());
}

#[test]
fn open_rejects_malformed_body_even_if_signed() {
    let key = log_key();
    let note = sign_note(&with_line(3, Some("epoch 042")), &[&key]).unwrap();
    assert_eq!(
        SignedCheckpoint::open(note.as_bytes(), ORIGIN, &key.verifier()),
        Err(number("epoch"))
    );
    // A plain tlog-checkpoint without KeyTrail's extension lines is not a KeyTrail checkpoint.
    let note = sign_note(
        "keytrail.example/log\n20852163\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        &[&key],
    )
    .unwrap();
    assert_eq!(
        SignedCheckpoint::open(note.as_bytes(), ORIGIN, &key.verifier()),
        Err(missing("epoch"))
    );
}

#[test]
fn sign_refuses_an_origin_that_would_not_parse() {
    let mut cp = sample();
    cp.origin = "a\nb".to_owned();
    assert!(SignedCheckpoint::sign(cp, &log_key()).is_err());
    let mut cp = sample();
    cp.origin = String::new();
    assert_eq!(
        SignedCheckpoint::sign(cp, &log_key()),
        Err(CheckpointError::InvalidOrigin)
    );
}

#[test]
fn body_hash_chains_and_ignores_signatures() {
    let key = log_key();
    let g = Checkpoint::genesis(ORIGIN, 1000);
    let next = Checkpoint {
        size: 3,
        root: [1; 32],
        epoch: 1,
        map_root: [2; 32],
        prev: g.body_hash(),
        time_ms: 1500,
        ..g.clone()
    };
    assert_eq!(next.follows(&g), Ok(()));

    // Cosigning the previous checkpoint changes its note, not its body hash.
    let witness = NoteSigner::from_seed(KeyName::new("w").unwrap(), [3; 32]);
    let cosigned = sign_note(&g.body(), &[&key, &witness]).unwrap();
    let opened = SignedCheckpoint::open(cosigned.as_bytes(), ORIGIN, &key.verifier()).unwrap();
    assert_eq!(opened.checkpoint().body_hash(), g.body_hash());

    let mut bad = next.clone();
    bad.prev = sample().body_hash();
    assert_eq!(bad.follows(&g), Err(ChainError::PrevMismatch));
    let mut bad = next.clone();
    bad.epoch = 2;
    assert_eq!(
        bad.follows(&g),
        Err(ChainError::EpochNotNext { prev: 0, next: 2 })
    );
    let mut bad = next.clone();
    bad.time_ms = 999;
    assert_eq!(
        bad.follows(&g),
        Err(ChainError::TimeWentBackwards {
            prev: 1000,
            next: 999
        })
    );
    let mut bad = next.clone();
    bad.origin = "other".to_owned();
    assert!(matches!(
        bad.follows(&g),
        Err(ChainError::OriginChanged { .. })
    ));
    let third = Checkpoint {
        size: 2,
        epoch: 2,
        prev: next.body_hash(),
        ..next.clone()
    };
    assert_eq!(
        third.follows(&next),
        Err(ChainError::SizeDecreased { prev: 3, next: 2 })
    );
    // Same epoch is never a link.
    assert!(g.follows(&g).is_err());
}

#[test]
fn serde_as_the_note_string() {
    let signed = SignedCheckpoint::sign(sample(), &log_key()).unwrap();
    let json = serde_json::to_string(&signed).unwrap();
    assert_eq!(json, serde_json::to_string(signed.note()).unwrap());
    let back: SignedCheckpoint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, signed);
    // A string that is not a checkpoint note does not deserialize.
    assert!(serde_json::from_str::<SignedCheckpoint>("\"hello\\n\"").is_err());
}

fn arb_checkpoint() -> impl Strategy<Value = Checkpoint> {
    (
        "[a-z0-9./-]{1,30}",
        1..u64::MAX,
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u64>(),
    )
        .prop_map(
            |(origin, size, root, epoch, map_root, prev, time_ms)| Checkpoint {
                origin,
                size,
                root,
                epoch,
                map_root,
                prev,
                time_ms,
            },
        )
}

proptest! {
    #[test]
    fn body_round_trips(cp in arb_checkpoint()) {
        let body = cp.body();
        prop_assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
    }

    #[test]
    fn parsing_is_canonical(cp in arb_checkpoint(), i in any::<prop::sample::Index>(), b in any::<u8>()) {
        // Any one-byte change either fails to parse or parses to a body that prints back the same.
        let mut body = cp.body().into_bytes();
        let i = i.index(body.len());
        prop_assume!(body[i] != b);
        body[i] = b;
        if let Ok(s) = std::str::from_utf8(&body) {
            if let Ok(parsed) = Checkpoint::parse_body(s) {
                prop_assert_ne!(&parsed, &cp);
                prop_assert_eq!(parsed.body(), s);
            }
        }
    }
}
