//! c2sp.org/tlog-cosignature (cosignature/v1, Ed25519): known answers, an independent
//! recomputation, cosigned checkpoint notes, and refusals.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::cosignature::{Cosignature, CosignatureError, CosignatureVerifier, Cosigner};
use kt_core::note::{KeyName, Note, NoteError, NoteSigner, NoteVerifier};
use sha2::{Digest, Sha256};

const WITNESS_NAME: &str = "witness.example/w1";
const WITNESS_SEED: [u8; 32] = [0x42; 32];
const TIME: u64 = 1_795_689_600;

/// The expected line for [`WITNESS_SEED`], [`WITNESS_NAME`], [`TIME`] and [`checkpoint`]'s body.
/// Computed once with this crate; the same line came out of an independent Python script
/// (`cryptography`'s OpenSSL Ed25519, hashlib, base64) and out of
/// `known_answer_matches_a_computation_by_hand` below.
const EXPECTED_LINE: &str = "\u{2014} witness.example/w1 8e2MRwAAAABrCAyAdje46FmmCkLLKdy2EPmsw1BBSyx9XBjnyYdh3/TRQVrqU9Hqga0lp0Vr0A6sZ6fOqSwx2UNRIiXUYhuso0ZnBg==";

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "keytrail.example/log".to_owned(),
        size: 2,
        root: [0x11; 32],
        epoch: 3,
        map_root: [0x22; 32],
        prev: [0x33; 32],
        time_ms: 1_795_689_600_123,
    }
}

fn witness() -> Cosigner {
    Cosigner::from_seed(KeyName::new(WITNESS_NAME).unwrap(), WITNESS_SEED)
}

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(KeyName::new("keytrail.example/log").unwrap(), [0x01; 32])
}

#[test]
fn known_answer() {
    let cosig = witness().cosign(&checkpoint().body(), TIME).unwrap();
    assert_eq!(cosig.to_line(), EXPECTED_LINE);
    assert_eq!(Cosignature::parse_line(EXPECTED_LINE).unwrap(), cosig);
    witness()
        .verifier()
        .verify(&checkpoint().body(), &cosig)
        .unwrap();
}

/// The same line, computed from the spec with sha2, ed25519-dalek and base64 only.
#[test]
fn known_answer_matches_a_computation_by_hand() {
    let body = checkpoint().body();
    let key = SigningKey::from_bytes(&WITNESS_SEED);

    let mut id_input = WITNESS_NAME.as_bytes().to_vec();
    id_input.push(0x0a);
    id_input.push(0x04);
    id_input.extend_from_slice(key.verifying_key().as_bytes());
    let key_id = &Sha256::digest(&id_input)[..4];

    let msg = format!("cosignature/v1\ntime {TIME}\n{body}");
    assert!(msg.starts_with("cosignature/v1\ntime 1795689600\nkeytrail.example/log\n2\n"));
    assert!(msg.ends_with("\ntime 1795689600123\n"));
    let sig = key.sign(msg.as_bytes()).to_bytes();

    let mut raw = key_id.to_vec();
    raw.extend_from_slice(&TIME.to_be_bytes());
    raw.extend_from_slice(&sig);
    assert_eq!(raw.len(), 76);
    let by_hand = format!("\u{2014} {WITNESS_NAME} {}", BASE64.encode(raw));

    assert_eq!(by_hand, EXPECTED_LINE);
    assert_eq!(witness().cosign(&body, TIME).unwrap().to_line(), by_hand);
    assert_eq!(
        witness().key_id(),
        u32::from_be_bytes(key_id.try_into().unwrap())
    );
}

/// A real witness key from transparency-dev/formats' tests: its key id was computed by Go with
/// type 0x04, so it checks our key id against another implementation.
#[test]
fn parses_a_published_cosignature_vkey() {
    let vkey = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
    let v = CosignatureVerifier::parse(vkey).unwrap();
    assert_eq!(v.name().as_str(), "remora.n621.de");
    assert_eq!(v.key_id(), 0xda77ade7);
    assert_eq!(v.to_string(), vkey);
    // The same key as a note (type 0x01) key is not a cosignature key.
    assert!(NoteVerifier::parse(vkey).is_err());
}

/// The example line of the C2SP spec: key id 8d66cf3f, time 1679315147 (the spec's example
/// signed message has `time 1679315147`).
#[test]
fn parses_the_c2sp_example_line() {
    let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let cosig = Cosignature::parse_line(line).unwrap();
    assert_eq!(cosig.name().as_str(), "witness.example.com/w1");
    assert_eq!(cosig.key_id(), 0x8d66cf3f);
    assert_eq!(cosig.timestamp(), 1_679_315_147);
    assert_eq!(cosig.to_line(), line);
}

#[test]
fn verifier_key_string_round_trips() {
    let v = witness().verifier();
    let s = v.to_string();
    assert!(s.starts_with("witness.example/w1+"), "{s}");
    let raw = BASE64.decode(s.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(raw[0], 0x04);
    assert_eq!(&raw[1..], v.public_key().as_bytes());
    assert_eq!(CosignatureVerifier::parse(&s).unwrap(), v);
    assert_eq!(s.parse::<CosignatureVerifier>().unwrap(), v);
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(json, format!("\"{s}\""));
    assert_eq!(
        serde_json::from_str::<CosignatureVerifier>(&json).unwrap(),
        v
    );
}

#[test]
fn verifier_key_strings_are_checked() {
    let good = witness().verifier().to_string();
    let mut parts = good.splitn(3, '+');
    let (name, id, key_b64) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let pk = witness().verifier().public_key().to_bytes();

    // Wrong key id.
    let wrong_id = format!("{name}+00000000+{key_b64}");
    assert!(matches!(
        CosignatureVerifier::parse(&wrong_id),
        Err(CosignatureError::Note(NoteError::KeyIdMismatch { .. }))
    ));
    // Upper-case hex is not canonical.
    let upper = format!("{name}+{}+{key_b64}", id.to_uppercase());
    if upper != good {
        assert!(CosignatureVerifier::parse(&upper).is_err());
    }
    // A note key (type 0x01) of the same public key.
    let mut raw = vec![0x01];
    raw.extend_from_slice(&pk);
    let as_note_key = format!("{name}+{id}+{}", BASE64.encode(&raw));
    assert_eq!(
        CosignatureVerifier::parse(&as_note_key),
        Err(CosignatureError::Note(NoteError::UnsupportedAlgorithm(
            0x01
        )))
    );
    // And the other way: a cosignature key is not a note key (one parser reads both).
    assert_eq!(
        NoteVerifier::parse(&good),
        Err(NoteError::UnsupportedAlgorithm(0x04))
    );
    // Short key, bad base64, missing parts, bad name.
    let mut short = vec![0x04];
    short.extend_from_slice(&pk[..31]);
    for bad in [
        format!("{name}+{id}+{}", BASE64.encode(&short)),
        format!("{name}+{id}+{key_b64}!"),
        format!("{name}+{id}"),
        format!("bad name+{id}+{key_b64}"),
        String::new(),
    ] {
        assert!(CosignatureVerifier::parse(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cosigned_checkpoint_note_still_opens_with_the_log_key() {
    let log = log_signer();
    let signed = SignedCheckpoint::sign(checkpoint(), &log).unwrap();
    let body = checkpoint().body();
    let cosig = witness().cosign(&body, TIME).unwrap();
    let cosigned = format!("{}{}\n", signed.note(), cosig.to_line());

    // The log's signature still verifies; the cosignature line is ignored by Note::verify.
    let note = Note::parse(cosigned.as_bytes()).unwrap();
    assert_eq!(note.text(), body);
    assert_eq!(note.signatures().len(), 2);
    let signers = note.verify(&[log.verifier()]).unwrap();
    assert_eq!(signers, vec![log.verifier()]);
    let opened =
        SignedCheckpoint::open(cosigned.as_bytes(), "keytrail.example/log", &log.verifier())
            .unwrap();
    assert_eq!(opened.checkpoint(), &checkpoint());

    // The witness's line verifies, found among the note's signatures.
    let found = witness().verifier().verify_note(&note).unwrap();
    assert_eq!(found, cosig);
    assert_eq!(found.timestamp(), TIME);

    // The same Ed25519 key as a *note* key (type 0x01) has another key id: the cosignature is
    // not a note signature by it.
    let as_note_key =
        NoteVerifier::new(witness().name().clone(), *witness().verifier().public_key());
    assert_ne!(as_note_key.key_id(), witness().key_id());
    assert_eq!(note.verify(&[as_note_key]), Err(NoteError::UnknownKey));

    // A note without the witness's line: missing. With it twice: duplicate.
    let plain = Note::parse(signed.note().as_bytes()).unwrap();
    assert!(matches!(
        witness().verifier().verify_note(&plain),
        Err(CosignatureError::Missing { .. })
    ));
    let twice = format!("{cosigned}{}\n", cosig.to_line());
    let twice = Note::parse(twice.as_bytes()).unwrap();
    assert!(matches!(
        witness().verifier().verify_note(&twice),
        Err(CosignatureError::Duplicate { .. })
    ));
}

#[test]
fn cosignature_over_another_checkpoint_fails() {
    let cosig = witness().cosign(&checkpoint().body(), TIME).unwrap();
    let v = witness().verifier();
    let mut other = checkpoint();
    other.size = 3;
    assert!(matches!(
        v.verify(&other.body(), &cosig),
        Err(CosignatureError::InvalidSignature { .. })
    ));
    // Extension lines are signed too.
    let mut other = checkpoint();
    other.map_root = [0x23; 32];
    assert!(matches!(
        v.verify(&other.body(), &cosig),
        Err(CosignatureError::InvalidSignature { .. })
    ));
}

#[test]
fn cosignature_with_another_time_fails() {
    let body = checkpoint().body();
    let line = witness().cosign(&body, TIME).unwrap().to_line();
    let (prefix, b64) = line.rsplit_once(' ').unwrap();
    let mut raw = BASE64.decode(b64).unwrap();
    for time in [TIME + 1, TIME - 1, 0] {
        raw[4..12].copy_from_slice(&time.to_be_bytes());
        let changed = format!("{prefix} {}", BASE64.encode(&raw));
        let cosig = Cosignature::parse_line(&changed).unwrap();
        assert_eq!(cosig.timestamp(), time);
        assert!(matches!(
            witness().verifier().verify(&body, &cosig),
            Err(CosignatureError::InvalidSignature { .. })
        ));
    }
}

#[test]
fn cosignature_from_another_key_is_not_this_witness() {
    let body = checkpoint().body();
    let other = Cosigner::from_seed(KeyName::new(WITNESS_NAME).unwrap(), [0x43; 32]);
    let cosig = other.cosign(&body, TIME).unwrap();
    assert!(matches!(
        witness().verifier().verify(&body, &cosig),
        Err(CosignatureError::WrongKey { .. })
    ));
    // Same key, another name: another key id, and the name differs anyway.
    let renamed = Cosigner::from_seed(KeyName::new("witness.example/w2").unwrap(), WITNESS_SEED);
    let cosig = renamed.cosign(&body, TIME).unwrap();
    assert_ne!(renamed.key_id(), witness().key_id());
    assert!(matches!(
        witness().verifier().verify(&body, &cosig),
        Err(CosignatureError::WrongKey { .. })
    ));
}

#[test]
fn malformed_lines_are_refused() {
    let line = witness()
        .cosign(&checkpoint().body(), TIME)
        .unwrap()
        .to_line();
    let (prefix, b64) = line.rsplit_once(' ').unwrap();
    let raw = BASE64.decode(b64).unwrap();
    let with = |raw: &[u8]| format!("{prefix} {}", BASE64.encode(raw));

    // Wrong length: one byte short, one byte long, a plain note signature (4 + 64).
    for len in [75, 77, 68, 0] {
        let mut r = raw.clone();
        r.resize(len, 0);
        assert_eq!(
            Cosignature::parse_line(&with(&r)),
            Err(CosignatureError::WrongLength(len)),
            "{len}"
        );
    }
    // Wrong key id: parses, but is not this witness's.
    let mut r = raw.clone();
    r[0] ^= 1;
    let cosig = Cosignature::parse_line(&with(&r)).unwrap();
    assert!(matches!(
        witness().verifier().verify(&checkpoint().body(), &cosig),
        Err(CosignatureError::WrongKey { .. })
    ));
    // Bad base64: not base64, missing padding, URL alphabet, a trailing newline.
    for bad in [
        format!("{prefix} {b64}!"),
        format!("{prefix} {}", b64.trim_end_matches('=')),
        format!("{prefix} {}", b64.replace('+', "-").replace('/', "_")),
        format!("{line}\n"),
    ] {
        if bad == line {
            continue;
        }
        assert!(Cosignature::parse_line(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Cosignature::parse_line(&format!("{prefix} {b64}!")),
        Err(CosignatureError::BadBase64)
    );
    // Not an em dash: hyphen, en dash, two hyphens; or no space after it.
    let rest = line.strip_prefix('\u{2014}').unwrap();
    for dash in ["-", "\u{2013}", "--", ""] {
        assert_eq!(
            Cosignature::parse_line(&format!("{dash}{rest}")),
            Err(CosignatureError::MissingEmDash),
            "{dash:?}"
        );
    }
    assert_eq!(
        Cosignature::parse_line(&line.replacen("\u{2014} ", "\u{2014}", 1)),
        Err(CosignatureError::MissingEmDash)
    );
    // No space between name and signature; an empty name.
    assert_eq!(
        Cosignature::parse_line(&format!("\u{2014} {WITNESS_NAME}")),
        Err(CosignatureError::MalformedLine)
    );
    assert!(matches!(
        Cosignature::parse_line(&format!("\u{2014}  {b64}")),
        Err(CosignatureError::Note(NoteError::InvalidKeyName { .. }))
    ));
    // Wrong time: above 2^63 - 1.
    let mut r = raw.clone();
    r[4..12].copy_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(
        Cosignature::parse_line(&with(&r)),
        Err(CosignatureError::TimestampTooLarge(1 << 63))
    );
    r[4..12].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        Cosignature::parse_line(&with(&r)),
        Err(CosignatureError::TimestampTooLarge(u64::MAX))
    );
    r[4..12].copy_from_slice(&(i64::MAX as u64).to_be_bytes());
    assert!(Cosignature::parse_line(&with(&r)).is_ok());
}

#[test]
fn cosigner_refuses_bad_input() {
    let w = witness();
    let body = checkpoint().body();
    assert_eq!(
        w.cosign(&body, 1 << 63),
        Err(CosignatureError::TimestampTooLarge(1 << 63))
    );
    assert!(w.cosign(&body, (1 << 63) - 1).is_ok());
    for bad in [
        "",
        "origin\n2\n",
        "origin\n2\nroot",
        "origin\n\n2\nroot\n",
        "\norigin\n2\nroot\n",
        "origin\n2\nro\tot\n",
    ] {
        assert_eq!(
            w.cosign(bad, TIME),
            Err(CosignatureError::InvalidCheckpointText),
            "{bad:?}"
        );
    }
    // A plain three-line C2SP checkpoint is fine.
    let plain = "example.com/log\n2\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cosig = w.cosign(plain, TIME).unwrap();
    w.verifier().verify(plain, &cosig).unwrap();
}

#[test]
fn cosigner_debug_hides_the_seed() {
    let dbg = format!("{:?}", witness());
    assert!(!dbg.contains(&hex::encode(WITNESS_SEED)), "{dbg}");
    assert!(dbg.contains(WITNESS_NAME), "{dbg}");
}

#[test]
fn private_key_string_round_trips_and_is_checked() {
    let w = witness();
    let s = w.to_private_string();
    assert!(s.starts_with("PRIVATE+KEY+witness.example/w1+"));
    let back = Cosigner::parse(&s).unwrap();
    assert_eq!(back.verifier(), w.verifier());
    // A note signer key (type 0x01) is not a cosigner key, and a wrong key id is refused.
    let note_key = NoteSigner::from_seed(KeyName::new(WITNESS_NAME).unwrap(), WITNESS_SEED)
        .to_private_string();
    assert_eq!(
        Cosigner::parse(&note_key).unwrap_err(),
        CosignatureError::MalformedPrivateKey
    );
    let wrong_id = s.replacen(&format!("{:08x}", w.key_id()), "00000000", 1);
    assert!(Cosigner::parse(&wrong_id).is_err());
    assert!(!format!("{w:?}").contains(&s[s.len() - 20..]));
}

#[test]
fn witness_policy_counts_only_valid_cosignatures_of_its_witnesses() {
    use kt_core::cosignature::WitnessPolicy;
    let signed = SignedCheckpoint::sign(checkpoint(), &log_signer()).unwrap();
    let ws: Vec<Cosigner> = (0..3u8)
        .map(|i| Cosigner::from_seed(KeyName::new(format!("w{i}")).unwrap(), [i + 1; 32]))
        .collect();
    let policy = WitnessPolicy::new(ws.iter().map(|w| w.verifier()).collect(), 2).unwrap();
    let body = checkpoint().body();
    let line = |w: &Cosigner| w.cosign(&body, TIME).unwrap().to_line() + "\n";
    let with = |lines: &[String]| {
        let note = format!("{}{}", signed.note(), lines.concat());
        Note::parse(note.as_bytes()).unwrap()
    };
    assert_eq!(
        policy.check(&with(&[line(&ws[0])])),
        Err(CosignatureError::NoQuorum {
            found: 1,
            threshold: 2
        })
    );
    assert_eq!(policy.check(&with(&[line(&ws[0]), line(&ws[2])])), Ok(2));
    // A cosignature over another body, and one by a key outside the policy, do not count.
    let mut other = checkpoint();
    other.size = 3;
    let forged = ws[1].cosign(&other.body(), TIME).unwrap().to_line() + "\n";
    let outsider = Cosigner::from_seed(KeyName::new("w9").unwrap(), [9; 32]);
    assert!(policy
        .check(&with(&[line(&ws[0]), forged, line(&outsider)]))
        .is_err());
    // Bad policies.
    assert!(WitnessPolicy::new(vec![ws[0].verifier()], 2).is_err());
    assert!(WitnessPolicy::new(vec![ws[0].verifier()], 0).is_err());
    assert!(WitnessPolicy::new(vec![ws[0].verifier(), ws[0].verifier()], 1).is_err());
}

/// The attack of a key listed twice: a witness cosigns once, the log copies the signature into a
/// line under the key's second name (the signed message has no name in it, so it verifies), and
/// a 2-of-2 policy would count one witness twice. Such a policy is refused when it is made,
/// whatever the names, with an error naming both entries.
#[test]
fn a_witness_policy_refuses_one_key_under_two_names() {
    use kt_core::cosignature::WitnessPolicy;
    let seed = [5; 32];
    let w = Cosigner::from_seed(KeyName::new("witness.example/a").unwrap(), seed);
    let alias = Cosigner::from_seed(KeyName::new("witness.example/b").unwrap(), seed);
    let (first, second) = (w.verifier(), alias.verifier());
    assert_ne!(first.key_id(), second.key_id());
    assert_eq!(first.public_key(), second.public_key());

    // The witness cosigns once; the copy under the alias verifies too.
    let signed = SignedCheckpoint::sign(checkpoint(), &log_signer()).unwrap();
    let line = w.cosign(&checkpoint().body(), TIME).unwrap().to_line();
    let raw = BASE64.decode(line.rsplit_once(' ').unwrap().1).unwrap();
    let mut copied = second.key_id().to_be_bytes().to_vec();
    copied.extend_from_slice(&raw[4..]);
    let copy = format!("\u{2014} witness.example/b {}", BASE64.encode(copied));
    let note = format!("{}{line}\n{copy}\n", signed.note());
    let note = Note::parse(note.as_bytes()).unwrap();
    assert!(first.verify_note(&note).is_ok());
    assert!(second.verify_note(&note).is_ok(), "the copy verifies");

    // So the policy is refused, in either order, at any threshold.
    for k in [1, 2] {
        assert_eq!(
            WitnessPolicy::new(vec![first.clone(), second.clone()], k),
            Err(CosignatureError::DuplicateWitnessKey {
                first: first.to_string(),
                second: second.to_string(),
            })
        );
    }
    let other = Cosigner::from_seed(KeyName::new("witness.example/c").unwrap(), [6; 32]);
    assert_eq!(
        WitnessPolicy::new(vec![second.clone(), other.verifier(), first.clone()], 2),
        Err(CosignatureError::DuplicateWitnessKey {
            first: second.to_string(),
            second: first.to_string(),
        })
    );
    let e = WitnessPolicy::new(vec![first.clone(), second.clone()], 2).unwrap_err();
    assert!(e.to_string().contains("same public key"), "{e}");
    // Distinct keys make a policy; the note above has one of them.
    let policy = WitnessPolicy::new(vec![first, other.verifier()], 2).unwrap();
    assert_eq!(
        policy.check(&note),
        Err(CosignatureError::NoQuorum {
            found: 1,
            threshold: 2
        })
    );
}
