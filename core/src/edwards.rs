//! Strict Edwards25519 point encodings (RFC 8032 §5.1.3), shared by user keys and the VRF, and
//! strict Ed25519 verification, shared by user keys, notes and cosignatures.
//!
//! `CompressedEdwardsY::decompress` accepts two kinds of bytes that no encoder writes: a `y` at or
//! above the field prime `p = 2^255 - 19`, and `x = 0` with the sign bit set ("negative zero").
//! Both would give one point a second byte string. Re-compressing the point and comparing finds
//! them, but costs a field inversion (about as much as the decompression); the bytes alone tell
//! the same, so that is what is checked.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// `p - 1 = 2^255 - 20`, little-endian: the `y` of the point of order 2, whose `x` is 0.
const P_MINUS_ONE: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xec;
    b[31] = 0x7f;
    b
};

/// `y = 1`, little-endian: the identity, whose `x` is 0.
const ONE: [u8; 32] = {
    let mut b = [0; 32];
    b[0] = 1;
    b
};

/// Whether `bytes` is the one encoding of the point it decompresses to: `y < p`, and the sign
/// bit is clear when `x = 0`. Equivalent to `decompress(bytes).compress() == bytes` for every
/// `bytes` that decompresses (a unit test compares the two).
pub(crate) fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    let sign_set = bytes[31] & 0x80 != 0;
    // With the sign bit masked off, y < 2^255, so y ≥ p only for p..2^255-1: every byte but the
    // lowest at its maximum and the lowest at least p's (0xed).
    let y_at_least_p = y[0] >= 0xed && y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    // On the curve, x² = (y² − 1)/(d·y² + 1), so x = 0 exactly when y = ±1.
    let negative_zero = sign_set && (y == ONE || y == P_MINUS_ONE);
    !(y_at_least_p || negative_zero)
}

/// Ed25519 verification with exactly the verdicts of `VerifyingKey::verify_strict`, one field
/// inversion cheaper.
///
/// `verify_strict` recomputes `R' = [s]B - [k]A` and compares `compress(R')` with the
/// signature's `R` bytes, where `k = SHA-512(R || A || M) mod ℓ`; the compression is a field
/// inversion, about a tenth of a verification. Here `R'` is compared with the decompressed `R` in
/// projective coordinates instead (four multiplications), after checking that the `R` bytes are
/// canonical. The verdicts are the same: `compress` is injective on points and its output is
/// always canonical, so `compress(R') == bytes` holds exactly when the bytes are canonical and
/// decompress to `R'`. Every other check is `verify_strict`'s: `s < ℓ`, `R` decompresses, and
/// neither `R` nor `A` has small order. Differential tests below compare the two on valid,
/// corrupted and torsion-laden signatures, and Wycheproof's Ed25519 suite runs through
/// `UserKey::verify` (`core/tests/directory_wycheproof.rs`).
pub(crate) fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let (r_bytes, s_bytes) = signature.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 of 64 bytes");
    let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 of 64 bytes");
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    if !is_canonical_encoding(&r_bytes) {
        return false;
    }
    let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
        return false;
    };
    let a = key.to_edwards();
    if r.is_small_order() || a.is_small_order() {
        return false;
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s) == r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the byte check replaces: decompress, re-compress, compare.
    fn reencodes_to_itself(bytes: &[u8; 32]) -> Option<bool> {
        let point = CompressedEdwardsY(*bytes).decompress()?;
        Some(point.compress().as_bytes() == bytes)
    }

    /// Every y within 64 of the edges of the field, and of ±1, with either sign bit: all the
    /// non-canonical encodings there are, and their neighbours.
    fn edge_encodings() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for base in [[0u8; 32], ONE, P_MINUS_ONE] {
            for delta in 0u8..64 {
                for sign in [0u8, 0x80] {
                    let mut up = base;
                    let mut down = base;
                    add_small(&mut up, delta);
                    sub_small(&mut down, delta);
                    for mut b in [up, down] {
                        b[31] = (b[31] & 0x7f) | sign;
                        out.push(b);
                    }
                }
            }
        }
        out
    }

    fn add_small(b: &mut [u8; 32], mut carry: u8) {
        for byte in b.iter_mut() {
            let (v, c) = byte.overflowing_add(carry);
            *byte = v;
            carry = u8::from(c);
        }
    }

    fn sub_small(b: &mut [u8; 32], mut borrow: u8) {
        for byte in b.iter_mut() {
            let (v, c) = byte.overflowing_sub(borrow);
            *byte = v;
            borrow = u8::from(c);
        }
    }

    #[test]
    fn the_byte_check_agrees_with_reencoding_at_the_edges() {
        let (mut points, mut refused) = (0, 0);
        for bytes in edge_encodings() {
            if let Some(expected) = reencodes_to_itself(&bytes) {
                points += 1;
                refused += usize::from(!expected);
                assert_eq!(
                    is_canonical_encoding(&bytes),
                    expected,
                    "{}",
                    hex::encode(bytes)
                );
            }
        }
        // The edges hold points of both kinds: y = p + 1 (the identity again) and negative
        // zeros are refused, y = 1 and y = p - 1 with a clear sign bit accepted.
        assert!(
            points > 100 && refused >= 3,
            "{points} points, {refused} refused"
        );
    }

    proptest! {
        #[test]
        fn the_byte_check_agrees_with_reencoding(bytes in any::<[u8; 32]>()) {
            if let Some(expected) = reencodes_to_itself(&bytes) {
                prop_assert_eq!(is_canonical_encoding(&bytes), expected);
            }
        }
    }

    /// The verdicts of dalek's `verify_strict` and of ours, for a key that decodes.
    fn both_verdicts(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> Option<(bool, bool)> {
        let key = VerifyingKey::from_bytes(key).ok()?;
        let dalek = key
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok();
        Some((dalek, verify_strict(&key, message, sig)))
    }

    /// A signature made by hand: secret scalar `a` under the public point `public` (which may
    /// carry a torsion component `a` knows nothing of), nonce `r`, and `R` moved by `r_offset`.
    fn sign_raw(
        a: Scalar,
        public: EdwardsPoint,
        r: Scalar,
        r_offset: EdwardsPoint,
        message: &[u8],
    ) -> ([u8; 32], [u8; 64]) {
        let key = public.compress().to_bytes();
        let r_bytes = (EdwardsPoint::mul_base(&r) + r_offset)
            .compress()
            .to_bytes();
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        (key, sig)
    }

    fn add_le(a: &mut [u8; 32], b: &[u8; 32]) {
        let mut carry = 0u16;
        for (x, y) in a.iter_mut().zip(b) {
            let v = u16::from(*x) + u16::from(*y) + carry;
            *x = v as u8;
            carry = v >> 8;
        }
    }

    fn scalar(seed: u64, tag: u8) -> Scalar {
        let mut h = Sha512::new();
        h.update(seed.to_le_bytes());
        h.update([tag]);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// Keys and `R`s with every torsion component: a key with one verifies the signatures whose
    /// `k` kills it (about one in its order), which is exactly where strict and cofactored
    /// checks part, and both implementations must draw the line in the same place. With a zero
    /// secret the key is the torsion point itself (small order), and with a zero nonce `R` is:
    /// signatures that can satisfy the equation, which only the small-order checks refuse.
    #[test]
    fn verdicts_equal_dalek_under_every_torsion() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let (mut accepted, mut refused) = (0, 0);
        for (i, t_key) in EIGHT_TORSION.iter().enumerate() {
            for (j, t_r) in EIGHT_TORSION.iter().enumerate() {
                for m in 0..96u64 {
                    let seed = (i as u64) << 16 | (j as u64) << 8 | m;
                    let a = match m % 2 {
                        0 => scalar(seed, 0),
                        _ => Scalar::ZERO,
                    };
                    let r = match (m / 2) % 2 {
                        0 => scalar(seed, 1),
                        _ => Scalar::ZERO,
                    };
                    let public = EdwardsPoint::mul_base(&a) + t_key;
                    let message = seed.to_be_bytes();
                    let (key, sig) = sign_raw(a, public, r, *t_r, &message);
                    let (dalek, ours) =
                        both_verdicts(&key, &message, &sig).expect("every curve point decodes");
                    assert_eq!(dalek, ours, "key torsion {i}, R torsion {j}, message {m}");
                    if ours {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        // Torsion-free signatures pass; a few with torsion in the key pass too (k killed it).
        assert!(
            accepted > 24 && refused > 4_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// Signatures whose `R` is a small-order point or a non-canonical encoding, and whose `s`
    /// is not reduced: all refused by both.
    #[test]
    fn verdicts_equal_dalek_on_malformed_r_and_s() {
        let a = scalar(7, 0);
        let (key, valid) = sign_raw(
            a,
            EdwardsPoint::mul_base(&a),
            scalar(7, 1),
            EdwardsPoint::default(),
            b"m",
        );
        assert_eq!(both_verdicts(&key, b"m", &valid), Some((true, true)));
        let mut cases = 0;
        for r in edge_encodings() {
            let mut sig = valid;
            sig[..32].copy_from_slice(&r);
            assert_eq!(
                both_verdicts(&key, b"m", &sig),
                Some((false, false)),
                "R {}",
                hex::encode(r)
            );
            cases += 1;
        }
        // s + ℓ: the same signature with an unreduced s (ℓ = (ℓ - 1) + 1, below 2^253).
        let mut sig = valid;
        let mut unreduced: [u8; 32] = sig[32..].try_into().expect("32 bytes");
        add_small(&mut unreduced, 1);
        add_le(&mut unreduced, (-Scalar::ONE).as_bytes());
        sig[32..].copy_from_slice(&unreduced);
        assert_eq!(both_verdicts(&key, b"m", &sig), Some((false, false)));
        assert!(cases > 300);
    }

    proptest! {
        /// Valid signatures, and the same with one bit of the signature or message flipped.
        #[test]
        fn verdicts_equal_dalek(seed in any::<u64>(), message in proptest::collection::vec(any::<u8>(), 0..64), flip in any::<Option<u16>>()) {
            let a = scalar(seed, 0);
            let (key, mut sig) = sign_raw(a, EdwardsPoint::mul_base(&a), scalar(seed, 1), EdwardsPoint::default(), &message);
            let mut message = message;
            if let Some(bit) = flip {
                let bit = usize::from(bit) % (512 + 8 * message.len());
                if bit < 512 {
                    sig[bit / 8] ^= 1 << (bit % 8);
                } else {
                    message[(bit - 512) / 8] ^= 1 << (bit % 8);
                }
            }
            let (dalek, ours) = both_verdicts(&key, &message, &sig).expect("the key decodes");
            prop_assert_eq!(dalek, ours);
            prop_assert_eq!(ours, flip.is_none());
        }
    }
}
