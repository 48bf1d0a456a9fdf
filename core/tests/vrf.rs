//! ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381): the Appendix B.3 known answers, and every refusal
//! of RFC 9381 §5.3.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use kt_core::directory::label::Label;
use kt_core::vrf::{VrfError, VrfProof, VrfPublicKey, VrfSecretKey, PROOF_LEN};

struct Example {
    name: &'static str,
    sk: &'static str,
    pk: &'static str,
    alpha: &'static str,
    pi: &'static str,
    beta: &'static str,
}

/// RFC 9381 Appendix B.3, Examples 16, 17 and 18 (SK, PK, alpha, pi, beta; hex).
const EXAMPLES: [Example; 3] = [
    Example {
        name: "Example 16",
        sk: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        pk: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        alpha: "",
        pi: "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f\
             26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12\
             68a1b0db10836d9826a528ca76567805",
        beta: "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff\
               66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    },
    Example {
        name: "Example 17",
        sk: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        pk: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        alpha: "72",
        pi: "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593\
             3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d\
             a3ef39226bbc355bdc9850112c8f4b02",
        beta: "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb\
               5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    },
    Example {
        name: "Example 18",
        sk: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        pk: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        alpha: "af82",
        pi: "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80\
             96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a\
             2d41b00b05081ed0f58ee5e31b3a970e",
        beta: "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45\
               2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    },
];

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s).unwrap();
    v.try_into().unwrap()
}

fn key(seed_byte: u8) -> VrfSecretKey {
    VrfSecretKey::from_seed([seed_byte; 32])
}

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Little-endian `a + b` over 256 bits (no overflow for the values used here).
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    out
}

#[test]
fn rfc9381_appendix_b3_examples() {
    for ex in &EXAMPLES {
        let sk = VrfSecretKey::from_seed(unhex(ex.sk));
        let alpha = hex::decode(ex.alpha).unwrap();
        let pk = sk.public();
        assert_eq!(hex::encode(pk.to_bytes()), ex.pk, "{} PK", ex.name);

        let proof = sk.prove(&alpha);
        assert_eq!(hex::encode(proof.to_bytes()), ex.pi, "{} pi", ex.name);

        let (proof2, beta) = sk.prove_with_output(&alpha);
        assert_eq!(proof2, proof, "{}", ex.name);
        assert_eq!(hex::encode(beta), ex.beta, "{} beta (prover)", ex.name);

        // A verifier that only has the published bytes.
        let pk = VrfPublicKey::from_bytes(&unhex(ex.pk)).unwrap();
        let proof = VrfProof::from_bytes(&unhex(ex.pi)).unwrap();
        let beta = pk.verify(&alpha, &proof).unwrap();
        assert_eq!(hex::encode(beta), ex.beta, "{} beta (verifier)", ex.name);
    }
}

#[test]
fn label_is_first_half_of_beta() {
    let beta: [u8; 64] = unhex(EXAMPLES[0].beta);
    let label = Label::from_vrf_output(&beta);
    assert_eq!(
        label.to_string(),
        "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff"
    );
}

#[test]
fn prove_is_deterministic_and_outputs_differ_by_alpha_and_key() {
    let sk = key(1);
    let pk = sk.public();
    assert_eq!(sk.prove(b"alice"), sk.prove(b"alice"));
    let a = pk.verify(b"alice", &sk.prove(b"alice")).unwrap();
    let b = pk.verify(b"bob", &sk.prove(b"bob")).unwrap();
    assert_ne!(a, b);
    let other = key(2);
    let c = other
        .public()
        .verify(b"alice", &other.prove(b"alice"))
        .unwrap();
    assert_ne!(a, c);
}

#[test]
fn proof_for_another_alpha_fails() {
    let sk = key(1);
    let proof = sk.prove(b"alice@example.com");
    assert_eq!(
        sk.public().verify(b"bob@example.com", &proof),
        Err(VrfError::InvalidProof)
    );
    assert_eq!(sk.public().verify(b"", &proof), Err(VrfError::InvalidProof));
}

#[test]
fn proof_under_another_key_fails() {
    let proof = key(1).prove(b"alice@example.com");
    assert_eq!(
        key(2).public().verify(b"alice@example.com", &proof),
        Err(VrfError::InvalidProof)
    );
    // And the RFC's own examples do not cross-verify.
    let pk16 = VrfPublicKey::from_bytes(&unhex(EXAMPLES[0].pk)).unwrap();
    let pi17 = VrfProof::from_bytes(&unhex(EXAMPLES[1].pi)).unwrap();
    assert_eq!(
        pk16.verify(&[0x72], &pi17),
        Err(VrfError::InvalidProof),
        "Example 17's proof under Example 16's key"
    );
}

#[test]
fn every_bit_flip_of_a_proof_fails() {
    for ex in &EXAMPLES {
        let pk = VrfPublicKey::from_bytes(&unhex(ex.pk)).unwrap();
        let alpha = hex::decode(ex.alpha).unwrap();
        let pi: [u8; PROOF_LEN] = unhex(ex.pi);
        for bit in 0..PROOF_LEN * 8 {
            let mut bad = pi;
            bad[bit / 8] ^= 1 << (bit % 8);
            let verdict = VrfProof::from_bytes(&bad).and_then(|p| pk.verify(&alpha, &p));
            assert!(verdict.is_err(), "{}: flipped bit {bit} verifies", ex.name);
        }
    }
}

#[test]
fn every_bit_flip_of_the_public_key_fails() {
    let ex = &EXAMPLES[1];
    let alpha = hex::decode(ex.alpha).unwrap();
    let proof = VrfProof::from_bytes(&unhex(ex.pi)).unwrap();
    let pk: [u8; 32] = unhex(ex.pk);
    for bit in 0..256 {
        let mut bad = pk;
        bad[bit / 8] ^= 1 << (bit % 8);
        let verdict = VrfPublicKey::from_bytes(&bad).and_then(|k| k.verify(&alpha, &proof));
        assert!(verdict.is_err(), "flipped public key bit {bit} verifies");
    }
}

#[test]
fn small_order_public_keys_are_refused() {
    for (i, point) in EIGHT_TORSION.iter().enumerate() {
        let bytes = point.compress().to_bytes();
        assert_eq!(
            VrfPublicKey::from_bytes(&bytes),
            Err(VrfError::SmallOrderPublicKey),
            "torsion point {i} ({})",
            hex::encode(bytes)
        );
    }
    // The identity, spelled out: y = 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        VrfPublicKey::from_bytes(&identity),
        Err(VrfError::SmallOrderPublicKey)
    );
}

/// Every encoding `y + p` (y < 19, so it fits in 255 bits) with either sign bit, and the
/// identity with the sign bit set ("negative zero"): the lenient `decompress` accepts those that
/// are on the curve; RFC 8032 §5.1.3 decoding does not.
fn non_canonical_encodings() -> Vec<[u8; 32]> {
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut out = Vec::new();
    for y in 0u8..19 {
        let mut small = [0u8; 32];
        small[0] = y;
        let enc = add_le(&p, &small);
        for sign in [0u8, 0x80] {
            let mut e = enc;
            e[31] |= sign;
            if CompressedEdwardsY(e).decompress().is_some() {
                out.push(e);
            }
        }
    }
    let mut negative_zero = [0u8; 32];
    negative_zero[0] = 1;
    negative_zero[31] = 0x80;
    assert!(CompressedEdwardsY(negative_zero).decompress().is_some());
    out.push(negative_zero);
    out
}

#[test]
fn non_canonical_gamma_is_refused() {
    let encodings = non_canonical_encodings();
    // y ≡ 0 and y ≡ 1 are on the curve, so the loop below always tests something.
    assert!(encodings.len() >= 3, "{}", encodings.len());
    let pi: [u8; PROOF_LEN] = unhex(EXAMPLES[0].pi);
    for enc in encodings {
        let mut bad = pi;
        bad[..32].copy_from_slice(&enc);
        assert_eq!(
            VrfProof::from_bytes(&bad),
            Err(VrfError::InvalidGamma),
            "{}",
            hex::encode(enc)
        );
    }
    // Not on the curve at all (y = 2 is not the y of any point).
    let mut bad = pi;
    bad[..32].fill(0);
    bad[0] = 2;
    assert!(CompressedEdwardsY(bad[..32].try_into().unwrap())
        .decompress()
        .is_none());
    assert_eq!(VrfProof::from_bytes(&bad), Err(VrfError::InvalidGamma));
}

#[test]
fn non_canonical_public_key_is_refused() {
    for enc in non_canonical_encodings() {
        assert_eq!(
            VrfPublicKey::from_bytes(&enc),
            Err(VrfError::InvalidPublicKey),
            "{}",
            hex::encode(enc)
        );
    }
}

#[test]
fn s_not_below_the_group_order_is_refused() {
    for ex in &EXAMPLES {
        let pi: [u8; PROOF_LEN] = unhex(ex.pi);
        let s: [u8; 32] = pi[48..].try_into().unwrap();
        // s + L is the same scalar mod L: a lax verifier would accept the proof.
        for bad_s in [add_le(&s, &L), L, [0xff; 32]] {
            let mut bad = pi;
            bad[48..].copy_from_slice(&bad_s);
            assert_eq!(
                VrfProof::from_bytes(&bad),
                Err(VrfError::NonCanonicalScalar),
                "{} s = {}",
                ex.name,
                hex::encode(bad_s)
            );
        }
    }
    // L - 1 is canonical: the proof parses (and fails only at verification).
    let mut l_minus_1 = L;
    l_minus_1[0] -= 1;
    let mut pi: [u8; PROOF_LEN] = unhex(EXAMPLES[0].pi);
    pi[48..].copy_from_slice(&l_minus_1);
    let proof = VrfProof::from_bytes(&pi).unwrap();
    let pk = VrfPublicKey::from_bytes(&unhex(EXAMPLES[0].pk)).unwrap();
    assert_eq!(pk.verify(b"", &proof), Err(VrfError::InvalidProof));
}

#[test]
fn secret_key_debug_hides_the_seed() {
    let sk = VrfSecretKey::from_seed(unhex(EXAMPLES[0].sk));
    let dbg = format!("{sk:?}");
    assert!(!dbg.contains(EXAMPLES[0].sk), "{dbg}");
    assert!(dbg.contains(EXAMPLES[0].pk), "{dbg}");
}

#[test]
fn public_key_is_the_ed25519_public_key_of_the_seed() {
    for seed in [[0u8; 32], [7; 32], [0xff; 32]] {
        let ed = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(
            VrfSecretKey::from_seed(seed).public().to_bytes(),
            ed.to_bytes()
        );
    }
}
