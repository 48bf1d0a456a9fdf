//! The directory's rules: a whole life cycle, every refusal with its exact reason, and signatures
//! that cannot be replayed onto any other field value.

use kt_core::directory::{
    apply_message, apply_update, apply_update_verified, KeyUpdate, Label, LabelState, Message, Op,
    Role, RuleError, UserKey, UserSigner, VerifiedSignatures,
};
use kt_core::entry::Namespace;
use kt_core::hash::Hash;

const T0: u64 = 1_795_689_600_000;

fn alice() -> Label {
    Label::from_identifier("alice@example.com").unwrap()
}

fn signer(seed: u8) -> UserSigner {
    UserSigner::ed25519_from_seed([seed; 32])
}

fn state(version: u64, leaf_hash: Hash, key: Option<UserKey>) -> LabelState {
    LabelState {
        version,
        leaf_hash,
        index: 0,
        key,
        recovered: false,
    }
}

/// An unsigned update following `prev` (or a registration if `None`).
fn next(prev: Option<&LabelState>, op: Op, key: Option<&UserSigner>) -> KeyUpdate {
    let (version, prev_hash) = prev.map_or((1, [0; 32]), |s| (s.version + 1, s.leaf_hash));
    KeyUpdate::new(
        alice(),
        version,
        prev_hash,
        op,
        key.map(UserSigner::public),
        T0 + version,
    )
    .unwrap()
}

/// Applies `u` as the entry at `index`, using its real leaf hash. Every case is also applied with
/// the new key's signature verified ahead, as the auditor does: the result must be the same.
fn apply(prev: Option<&LabelState>, u: &KeyUpdate, index: u64) -> Result<LabelState, RuleError> {
    let result = apply_update(prev, u, u.leaf_hash(), index);
    let ahead = VerifiedSignatures::of_new_key(u);
    assert_eq!(
        apply_update_verified(prev, u, u.leaf_hash(), index, &ahead),
        result,
        "verifying the new key's signature ahead changed the verdict on {u:?}"
    );
    result
}

fn registered(k: &UserSigner) -> LabelState {
    let u = next(None, Op::Register, Some(k))
        .sign(Role::NewKey, k)
        .unwrap();
    apply(None, &u, 0).unwrap()
}

#[test]
fn full_life_cycle_is_accepted() {
    let (k1, k2, k3, k4, k5) = (signer(1), signer(2), signer(3), signer(4), signer(5));
    let reg = next(None, Op::Register, Some(&k1))
        .sign(Role::NewKey, &k1)
        .unwrap();
    let s1 = apply(None, &reg, 10).unwrap();
    assert_eq!(
        s1,
        LabelState {
            version: 1,
            leaf_hash: reg.leaf_hash(),
            index: 10,
            key: Some(k1.public()),
            recovered: false
        }
    );

    let rot = next(Some(&s1), Op::Rotate, Some(&k2))
        .sign(Role::PreviousKey, &k1)
        .unwrap()
        .sign(Role::NewKey, &k2)
        .unwrap();
    let s2 = apply(Some(&s1), &rot, 11).unwrap();
    assert_eq!(
        (s2.version, s2.key.clone(), s2.index),
        (2, Some(k2.public()), 11)
    );

    let rot2 = next(Some(&s2), Op::Rotate, Some(&k3))
        .sign(Role::PreviousKey, &k2)
        .unwrap()
        .sign(Role::NewKey, &k3)
        .unwrap();
    let s3 = apply(Some(&s2), &rot2, 12).unwrap();
    assert_eq!(s3.key, Some(k3.public()));

    let rev = next(Some(&s3), Op::Revoke, None)
        .sign(Role::PreviousKey, &k3)
        .unwrap();
    let s4 = apply(Some(&s3), &rev, 13).unwrap();
    assert_eq!((s4.version, s4.key.clone(), s4.recovered), (4, None, false));

    let rec = next(Some(&s4), Op::Recover, Some(&k4))
        .sign(Role::NewKey, &k4)
        .unwrap();
    let s5 = apply(Some(&s4), &rec, 14).unwrap();
    assert_eq!(
        (s5.version, s5.key.clone(), s5.recovered),
        (5, Some(k4.public()), true)
    );

    let rot3 = next(Some(&s5), Op::Rotate, Some(&k5))
        .sign(Role::PreviousKey, &k4)
        .unwrap()
        .sign(Role::NewKey, &k5)
        .unwrap();
    let s6 = apply(Some(&s5), &rot3, 15).unwrap();
    assert_eq!(
        (s6.version, s6.leaf_hash, s6.recovered),
        (6, rot3.leaf_hash(), false)
    );

    // Recover is also allowed while a key is still valid (the user lost it without revoking).
    let rec2 = next(Some(&s6), Op::Recover, Some(&k1))
        .sign(Role::NewKey, &k1)
        .unwrap();
    assert!(apply(Some(&s6), &rec2, 16).unwrap().recovered);

    // And the chain re-validates from its encoded bytes, as an auditor would replay it.
    let mut s: Option<LabelState> = None;
    for (i, u) in [&reg, &rot, &rot2, &rev, &rec, &rot3]
        .into_iter()
        .enumerate()
    {
        let u = KeyUpdate::decode(&u.encode()).unwrap();
        s = Some(apply(s.as_ref(), &u, i as u64).unwrap());
    }
    assert_eq!(s.unwrap().leaf_hash, s6.leaf_hash);
}

#[test]
fn register_refusals() {
    let (k1, k2) = (signer(1), signer(2));
    let s1 = registered(&k1);
    let good = next(None, Op::Register, Some(&k1))
        .sign(Role::NewKey, &k1)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &good, 1),
        Err(RuleError::AlreadyRegistered)
    );

    let v2 = KeyUpdate::new(alice(), 2, [9; 32], Op::Register, Some(k1.public()), T0)
        .unwrap()
        .sign(Role::NewKey, &k1)
        .unwrap();
    assert_eq!(
        apply(None, &v2, 0),
        Err(RuleError::SkippedVersion { want: 1, got: 2 })
    );

    let no_key = next(None, Op::Register, None);
    assert_eq!(
        apply(None, &no_key, 0),
        Err(RuleError::MissingKey { op: Op::Register })
    );

    let unsigned = next(None, Op::Register, Some(&k1));
    assert_eq!(
        apply(None, &unsigned, 0),
        Err(RuleError::MissingSignature { role: Role::NewKey })
    );
    // Proof of possession: a signature by some other key does not do.
    let wrong = unsigned.clone().sign(Role::NewKey, &k2).unwrap();
    assert_eq!(
        apply(None, &wrong, 0),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
    let extra = good.clone().sign(Role::PreviousKey, &k1).unwrap();
    assert_eq!(
        apply(None, &extra, 0),
        Err(RuleError::UnexpectedSignature {
            op: Op::Register,
            role: Role::PreviousKey
        })
    );
    // Not 64 bytes: the signature is bad, not a different error.
    let short = unsigned.with_signature(Role::NewKey, vec![1; 63]).unwrap();
    assert_eq!(
        apply(None, &short, 0),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
}

#[test]
fn rotate_refusals() {
    let (k1, k2, k3) = (signer(1), signer(2), signer(3));
    let s1 = registered(&k1);
    let unsigned = next(Some(&s1), Op::Rotate, Some(&k2));
    let good = unsigned
        .clone()
        .sign(Role::PreviousKey, &k1)
        .unwrap()
        .sign(Role::NewKey, &k2)
        .unwrap();
    assert!(apply(Some(&s1), &good, 1).is_ok());

    assert_eq!(apply(None, &good, 1), Err(RuleError::NotRegistered));
    let revoked = state(1, s1.leaf_hash, None);
    assert_eq!(apply(Some(&revoked), &good, 1), Err(RuleError::Revoked));
    // The update is for version 2: against a state at version 2 it skips to nowhere (replay)...
    let later = state(2, s1.leaf_hash, Some(k1.public()));
    assert_eq!(
        apply(Some(&later), &good, 1),
        Err(RuleError::SkippedVersion { want: 3, got: 2 })
    );
    // ...and a version 3 against a state at version 1 skips one.
    let skip = KeyUpdate::new(alice(), 3, s1.leaf_hash, Op::Rotate, Some(k2.public()), T0)
        .unwrap()
        .sign(Role::PreviousKey, &k1)
        .unwrap()
        .sign(Role::NewKey, &k2)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &skip, 1),
        Err(RuleError::SkippedVersion { want: 2, got: 3 })
    );
    let forked = state(1, [7; 32], Some(k1.public()));
    assert_eq!(
        apply(Some(&forked), &good, 1),
        Err(RuleError::WrongPrev {
            want: [7; 32],
            got: s1.leaf_hash
        })
    );
    let no_key = next(Some(&s1), Op::Rotate, None)
        .sign(Role::PreviousKey, &k1)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &no_key, 1),
        Err(RuleError::MissingKey { op: Op::Rotate })
    );
    let only_new = unsigned.clone().sign(Role::NewKey, &k2).unwrap();
    assert_eq!(
        apply(Some(&s1), &only_new, 1),
        Err(RuleError::MissingSignature {
            role: Role::PreviousKey
        })
    );
    let only_prev = unsigned.clone().sign(Role::PreviousKey, &k1).unwrap();
    assert_eq!(
        apply(Some(&s1), &only_prev, 1),
        Err(RuleError::MissingSignature { role: Role::NewKey })
    );
    // Continuity: the previous-key signature must be by the label's current key.
    let hijack = unsigned
        .clone()
        .sign(Role::PreviousKey, &k3)
        .unwrap()
        .sign(Role::NewKey, &k2)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &hijack, 1),
        Err(RuleError::BadSignature {
            role: Role::PreviousKey
        })
    );
    let no_pop = unsigned
        .sign(Role::PreviousKey, &k1)
        .unwrap()
        .sign(Role::NewKey, &k3)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &no_pop, 1),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
}

#[test]
fn revoke_refusals() {
    let (k1, k2) = (signer(1), signer(2));
    let s1 = registered(&k1);
    let good = next(Some(&s1), Op::Revoke, None)
        .sign(Role::PreviousKey, &k1)
        .unwrap();
    let s2 = apply(Some(&s1), &good, 1).unwrap();
    assert_eq!(apply(None, &good, 1), Err(RuleError::NotRegistered));
    let twice = next(Some(&s2), Op::Revoke, None)
        .sign(Role::PreviousKey, &k1)
        .unwrap();
    assert_eq!(apply(Some(&s2), &twice, 2), Err(RuleError::Revoked));
    let with_key = next(Some(&s1), Op::Revoke, Some(&k2))
        .sign(Role::PreviousKey, &k1)
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &with_key, 1),
        Err(RuleError::UnexpectedKey { op: Op::Revoke })
    );
    let unsigned = next(Some(&s1), Op::Revoke, None);
    assert_eq!(
        apply(Some(&s1), &unsigned, 1),
        Err(RuleError::MissingSignature {
            role: Role::PreviousKey
        })
    );
    let new_role = unsigned
        .clone()
        .with_signature(Role::NewKey, vec![1; 64])
        .unwrap();
    assert_eq!(
        apply(Some(&s1), &new_role, 1),
        Err(RuleError::UnexpectedSignature {
            op: Op::Revoke,
            role: Role::NewKey
        })
    );
    let by_other = unsigned.sign(Role::PreviousKey, &k2).unwrap();
    assert_eq!(
        apply(Some(&s1), &by_other, 1),
        Err(RuleError::BadSignature {
            role: Role::PreviousKey
        })
    );
    let wrong_prev = state(1, [3; 32], Some(k1.public()));
    assert!(matches!(
        apply(Some(&wrong_prev), &good, 1),
        Err(RuleError::WrongPrev { .. })
    ));
}

#[test]
fn recover_refusals() {
    let (k1, k2, k3) = (signer(1), signer(2), signer(3));
    let s1 = registered(&k1);
    let unsigned = next(Some(&s1), Op::Recover, Some(&k2));
    let good = unsigned.clone().sign(Role::NewKey, &k2).unwrap();
    assert!(apply(Some(&s1), &good, 1).unwrap().recovered);
    assert_eq!(apply(None, &good, 1), Err(RuleError::NotRegistered));
    let no_key = next(Some(&s1), Op::Recover, None);
    assert_eq!(
        apply(Some(&s1), &no_key, 1),
        Err(RuleError::MissingKey { op: Op::Recover })
    );
    assert_eq!(
        apply(Some(&s1), &unsigned, 1),
        Err(RuleError::MissingSignature { role: Role::NewKey })
    );
    let no_pop = unsigned.clone().sign(Role::NewKey, &k3).unwrap();
    assert_eq!(
        apply(Some(&s1), &no_pop, 1),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
    // A recover signed by the previous key should have been a rotate: refused, one shape per op.
    let prev_signed = good.sign(Role::PreviousKey, &k1).unwrap();
    assert_eq!(
        apply(Some(&s1), &prev_signed, 1),
        Err(RuleError::UnexpectedSignature {
            op: Op::Recover,
            role: Role::PreviousKey
        })
    );
    let exhausted = state(u64::MAX, s1.leaf_hash, Some(k1.public()));
    assert_eq!(
        apply(Some(&exhausted), &unsigned, 1),
        Err(RuleError::VersionExhausted)
    );
}

/// A rotate's signatures moved onto an update differing in one field, with the state adjusted so
/// that only the signatures can tell: each is refused as a bad signature.
#[test]
fn signatures_bind_every_field() {
    let (k1, k2, k3) = (signer(1), signer(2), signer(3));
    let s1 = registered(&k1);
    let orig = next(Some(&s1), Op::Rotate, Some(&k2))
        .sign(Role::PreviousKey, &k1)
        .unwrap()
        .sign(Role::NewKey, &k2)
        .unwrap();
    assert!(apply(Some(&s1), &orig, 1).is_ok());
    let prev_sig = orig.signature(Role::PreviousKey).unwrap().to_vec();
    let new_sig = orig.signature(Role::NewKey).unwrap().to_vec();

    // Rebuilds `orig` with one field changed and re-attaches the original signatures.
    let replay = |label: Label, version: u64, prev: Hash, key: &UserSigner, time: u64| {
        KeyUpdate::new(label, version, prev, Op::Rotate, Some(key.public()), time)
            .unwrap()
            .with_signature(Role::PreviousKey, prev_sig.clone())
            .unwrap()
            .with_signature(Role::NewKey, new_sig.clone())
            .unwrap()
    };
    let bad = Err(RuleError::BadSignature {
        role: Role::PreviousKey,
    });

    let bob = Label::from_identifier("bob@example.com").unwrap();
    let u = replay(bob, 2, s1.leaf_hash, &k2, orig.time_ms());
    assert_eq!(apply(Some(&s1), &u, 1), bad, "label");

    let u = replay(alice(), 3, s1.leaf_hash, &k2, orig.time_ms());
    let at_v2 = state(2, s1.leaf_hash, Some(k1.public()));
    assert_eq!(apply(Some(&at_v2), &u, 1), bad, "version");

    let u = replay(alice(), 2, [5; 32], &k2, orig.time_ms());
    let other_prev = state(1, [5; 32], Some(k1.public()));
    assert_eq!(apply(Some(&other_prev), &u, 1), bad, "prev");

    // The attacker's key with its own valid new-key signature still lacks continuity.
    let swapped = KeyUpdate::new(
        alice(),
        2,
        s1.leaf_hash,
        Op::Rotate,
        Some(k3.public()),
        orig.time_ms(),
    )
    .unwrap()
    .sign(Role::NewKey, &k3)
    .unwrap()
    .with_signature(Role::PreviousKey, prev_sig.clone())
    .unwrap();
    assert_eq!(apply(Some(&s1), &swapped, 1), bad, "key");

    let u = replay(alice(), 2, s1.leaf_hash, &k2, orig.time_ms() + 1);
    assert_eq!(apply(Some(&s1), &u, 1), bad, "time");

    // Op: the rotate's new-key signature does not make a recover.
    let as_recover = KeyUpdate::new(
        alice(),
        2,
        s1.leaf_hash,
        Op::Recover,
        Some(k2.public()),
        orig.time_ms(),
    )
    .unwrap()
    .with_signature(Role::NewKey, new_sig.clone())
    .unwrap();
    assert_eq!(
        apply(Some(&s1), &as_recover, 1),
        Err(RuleError::BadSignature { role: Role::NewKey }),
        "op"
    );
    // Nor does a revoke's previous-key signature make a rotate (or vice versa).
    let revoke = next(Some(&s1), Op::Revoke, None)
        .sign(Role::PreviousKey, &k1)
        .unwrap();
    let as_rotate = next(Some(&s1), Op::Rotate, Some(&k2))
        .sign(Role::NewKey, &k2)
        .unwrap()
        .with_signature(
            Role::PreviousKey,
            revoke.signature(Role::PreviousKey).unwrap().to_vec(),
        )
        .unwrap();
    assert_eq!(apply(Some(&s1), &as_rotate, 1), bad, "revoke -> rotate");
    let as_revoke = next(Some(&s1), Op::Revoke, None)
        .with_signature(Role::PreviousKey, prev_sig)
        .unwrap();
    assert_eq!(apply(Some(&s1), &as_revoke, 1), bad, "rotate -> revoke");
}

#[test]
fn message_rules() {
    let (k1, k2) = (signer(1), signer(2));
    let s1 = registered(&k1);
    let ns = Namespace::new("chat").unwrap();
    let msg = |seq: u64, k: &UserSigner| {
        Message::sign(ns.clone(), alice(), seq, b"hello".to_vec(), k).unwrap()
    };
    assert_eq!(apply_message(Some(&s1), 0, &msg(1, &k1)), Ok(()));
    assert_eq!(apply_message(Some(&s1), 1, &msg(2, &k1)), Ok(()));
    assert_eq!(
        apply_message(None, 0, &msg(1, &k1)),
        Err(RuleError::NotRegistered)
    );
    let revoked = state(2, [1; 32], None);
    assert_eq!(
        apply_message(Some(&revoked), 0, &msg(1, &k1)),
        Err(RuleError::Revoked)
    );
    assert_eq!(
        apply_message(Some(&s1), 0, &msg(2, &k1)),
        Err(RuleError::SkippedSequence { want: 1, got: 2 })
    );
    assert_eq!(
        apply_message(Some(&s1), 2, &msg(2, &k1)),
        Err(RuleError::SkippedSequence { want: 3, got: 2 })
    );
    assert_eq!(
        apply_message(Some(&s1), u64::MAX, &msg(1, &k1)),
        Err(RuleError::SequenceExhausted)
    );
    // Signed by a key that is not the author's current one (an old or foreign key).
    assert_eq!(
        apply_message(Some(&s1), 0, &msg(1, &k2)),
        Err(RuleError::BadMessageSignature)
    );
    // The signature covers namespace, author, sequence and payload.
    let good = msg(1, &k1);
    let sig = good.signature().to_vec();
    let bob = Label::from_identifier("bob@example.com").unwrap();
    let variants = [
        Message::new(
            Namespace::new("chat2").unwrap(),
            alice(),
            1,
            b"hello".to_vec(),
            sig.clone(),
        ),
        Message::new(ns.clone(), bob, 1, b"hello".to_vec(), sig.clone()),
        Message::new(ns.clone(), alice(), 2, b"hello".to_vec(), sig.clone()),
        Message::new(ns.clone(), alice(), 1, b"hellO".to_vec(), sig),
    ];
    for (i, m) in variants.into_iter().enumerate() {
        let m = m.unwrap();
        let last = m.sequence() - 1;
        assert_eq!(
            apply_message(Some(&s1), last, &m),
            Err(RuleError::BadMessageSignature),
            "{i}"
        );
    }
}

#[test]
fn a_verified_signature_counts_only_for_its_own_key_message_and_bytes() {
    let (k1, k2) = (signer(1), signer(2));
    let good = next(None, Op::Register, Some(&k2))
        .sign(Role::NewKey, &k2)
        .unwrap();
    let ahead = VerifiedSignatures::of_new_key(&good);
    let sig = good.signature(Role::NewKey).unwrap();
    assert!(ahead.contains(&k2.public(), &good.signed_bytes(), sig));
    assert!(!ahead.contains(&k1.public(), &good.signed_bytes(), sig));

    // The same key and signature bytes on an update with another time: the signature does not
    // cover it, and having verified it for `good` must not let it through.
    let replayed = KeyUpdate::new(alice(), 1, [0; 32], Op::Register, Some(k2.public()), T0 + 9)
        .unwrap()
        .with_signature(Role::NewKey, sig.to_vec())
        .unwrap();
    assert!(!ahead.contains(&k2.public(), &replayed.signed_bytes(), sig));
    assert_eq!(
        apply_update_verified(None, &replayed, replayed.leaf_hash(), 0, &ahead),
        Err(RuleError::BadSignature { role: Role::NewKey })
    );
    // A signature that does not verify is not recorded.
    let mut none = VerifiedSignatures::default();
    assert!(!none.verify(&k1.public(), good.signed_bytes(), sig));
    assert!(!none.contains(&k1.public(), &good.signed_bytes(), sig));
    assert!(none.verify(&k2.public(), good.signed_bytes(), sig));
}

/// A key update's `time_ms` must be within `MAX_UPDATE_SKEW_MS` (5 minutes) of the `time` of the
/// checkpoint that first includes it, either way, bounds included; the extremes an independent
/// client sent (0 and 2^64 - 1) are refused, and the error says the bound.
#[test]
fn update_time_is_within_the_skew_of_its_epoch() {
    use kt_core::directory::{check_update_time, MAX_UPDATE_SKEW_MS};
    assert_eq!(MAX_UPDATE_SKEW_MS, 300_000);
    let epoch = T0;
    for ok in [
        epoch,
        epoch - MAX_UPDATE_SKEW_MS,
        epoch + MAX_UPDATE_SKEW_MS,
        epoch - 1,
        epoch + 1,
    ] {
        assert_eq!(check_update_time(ok, epoch), Ok(()), "{ok}");
    }
    for bad in [
        0,
        u64::MAX,
        epoch - MAX_UPDATE_SKEW_MS - 1,
        epoch + MAX_UPDATE_SKEW_MS + 1,
    ] {
        assert_eq!(
            check_update_time(bad, epoch),
            Err(RuleError::UpdateTime {
                time_ms: bad,
                epoch_time_ms: epoch,
                skew_ms: MAX_UPDATE_SKEW_MS
            }),
            "{bad}"
        );
    }
    // Near the ends of the range nothing overflows.
    assert!(check_update_time(u64::MAX, u64::MAX).is_ok());
    assert!(check_update_time(0, 0).is_ok());
    assert!(check_update_time(u64::MAX, 0).is_err());
    let e = check_update_time(0, epoch).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "update time_ms 0 is more than 300000 ms from the epoch's time {epoch} (allowed: {} to {})",
            epoch - 300_000,
            epoch + 300_000
        )
    );
}
