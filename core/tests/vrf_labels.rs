//! Labels as VRF outputs (`docs/protocol.md` §9.1): the server's `Label::prove` and everyone
//! else's `verify_label` agree, and a proof for another identifier, under another key, or
//! altered in any bit never yields a label.

use kt_core::directory::{verify_label, vrf_input, AnswerError, DirectoryError, Label};
use kt_core::vrf::{VrfError, VrfSecretKey, PROOF_LEN};

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
    assert_eq!(vrf_input("a\nb"), Err(DirectoryError::IdentifierControl));
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
    for near in ["Bob@example.com", "bob@example.com ", "bob@example.co"] {
        assert_eq!(
            verify_label(&sk.public(), near, bobs.as_bytes()),
            Err(AnswerError::VrfProof(VrfError::InvalidProof)),
            "{near}"
        );
    }
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
