//! Strict Edwards25519 point encodings (RFC 8032 §5.1.3), shared by user keys and the VRF.
//!
//! `CompressedEdwardsY::decompress` accepts two kinds of bytes that no encoder writes: a `y` at or
//! above the field prime `p = 2^255 - 19`, and `x = 0` with the sign bit set ("negative zero").
//! Both would give one point a second byte string. Re-compressing the point and comparing finds
//! them, but costs a field inversion (about as much as the decompression); the bytes alone tell
//! the same, so that is what is checked.

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

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::CompressedEdwardsY;
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
}
