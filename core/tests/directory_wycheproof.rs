//! Wycheproof Ed25519 vectors through [`UserKey::verify`]: every verdict must match, except the
//! tcIds listed in [`POLICY_DIFFERENCES`], whose expected outcome is our documented policy.

use kt_core::directory::UserKey;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Vectors where our verdict deliberately differs from Wycheproof's: (tcId, our verdict, why).
/// Empty today: `verify_strict` plus our key checks agree with every verdict of the file. Any
/// future difference must be listed here (and in `docs/protocol.md` §9), never skipped.
const POLICY_DIFFERENCES: &[(u64, bool, &str)] = &[];

fn vectors_dir() -> PathBuf {
    std::env::var_os("KT_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(
                std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
            )
            .join("../../shared/vectors")
        })
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing {field}")),
    )
    .unwrap()
}

#[test]
fn wycheproof_ed25519_verdicts() {
    let path = vectors_dir().join("wycheproof/ed25519_test.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["algorithm"], "EDDSA");

    let (mut run, mut valid, mut invalid, mut policy) = (0u64, 0u64, 0u64, 0u64);
    let mut seen_ids = BTreeSet::new();
    let mut mismatches = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        assert_eq!(group["publicKey"]["curve"], "edwards25519");
        let pk = hex_field(&group["publicKey"], "pk");
        // A key we refuse to decode verifies nothing: every test in its group gets "invalid".
        let key = UserKey::from_parts(0x01, &pk).ok();
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            assert!(seen_ids.insert(id), "tcId {id} twice");
            let want = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {id}: unexpected result {other:?}"),
            };
            let got = key.as_ref().is_some_and(|k| {
                k.verify(&hex_field(test, "msg"), &hex_field(test, "sig"))
                    .is_ok()
            });
            run += 1;
            match POLICY_DIFFERENCES.iter().find(|(pid, _, _)| *pid == id) {
                Some((_, ours, why)) => {
                    policy += 1;
                    assert_eq!(got, *ours, "tcId {id}: policy ({why}) not followed");
                }
                None if got != want => mismatches.push((id, want, got, test["comment"].clone())),
                None => {}
            }
            if want {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "verdicts differ (tcId, want, got, comment): {mismatches:#?}"
    );
    assert_eq!(
        run,
        doc["numberOfTests"].as_u64().unwrap(),
        "every test ran"
    );
    assert_eq!(
        policy,
        POLICY_DIFFERENCES.len() as u64,
        "every policy tcId exists"
    );
    println!("wycheproof ed25519: {run} tests ({valid} valid, {invalid} invalid), {policy} policy differences");
}

/// Our key policy on the edge cases Wycheproof's file does not exercise: keys are refused at
/// decode if their encoding is not canonical (y >= p, or "negative zero" x) or their point has
/// small order. Each case is enumerated and counted, none skipped.
#[test]
fn non_canonical_and_small_order_keys_are_refused() {
    use kt_core::directory::KeyError;
    // The 19 values y = p + k (k < 19) fit in 255 bits; with either sign bit that is 38
    // non-canonical encodings. Each either is no point at all or is refused as non-canonical.
    let (mut non_canonical, mut not_points) = (0, 0);
    for k in 0u8..19 {
        for sign in [0u8, 0x80] {
            // p = 2^255 - 19, little-endian: ed ff .. ff 7f; p + k adds k to the low byte.
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f | sign;
            match UserKey::from_parts(0x01, &bytes) {
                Err(KeyError::NonCanonical) => non_canonical += 1,
                Err(KeyError::InvalidPoint) => not_points += 1,
                other => panic!("y = p + {k}, sign {sign:#x}: {other:?}"),
            }
        }
    }
    assert_eq!(non_canonical + not_points, 38);
    assert!(non_canonical > 0, "the non-canonical check was exercised");

    // Small-order points in canonical encoding: the identity (y = 1), y = -1 (order 2), and the
    // order-4 points (y = 0, x = +-1 written with sign 0 or 1).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let zero = [0u8; 32];
    let mut zero_neg = [0u8; 32];
    zero_neg[31] = 0x80;
    for (name, bytes) in [
        ("identity", identity),
        ("y = -1", minus_one),
        ("y = 0, +x", zero),
        ("y = 0, -x", zero_neg),
    ] {
        assert_eq!(
            UserKey::from_parts(0x01, &bytes),
            Err(KeyError::SmallOrder),
            "{name}"
        );
    }
    // x = 0 with the sign bit set ("negative zero") is a non-canonical identity.
    let mut neg_identity = identity;
    neg_identity[31] = 0x80;
    assert_eq!(
        UserKey::from_parts(0x01, &neg_identity),
        Err(KeyError::NonCanonical)
    );
}
