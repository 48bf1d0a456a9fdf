//! User keys: the public keys the directory maps labels to, and the signatures they verify.
//!
//! Three algorithms (`docs/protocol.md` §9.2): Ed25519, secp256k1 ECDSA over SHA-256 with low-S
//! compact signatures, and BIP-340 Schnorr. Every key has exactly one accepted encoding and every
//! signature at most one accepted encoding, so an entry's bytes are determined by what it means.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use secp256k1::{ecdsa, schnorr, Keypair, PublicKey, SecretKey, XOnlyPublicKey};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Algorithm byte of "no key" (a revoked label).
pub const ALG_NONE: u8 = 0x00;
/// Algorithm byte of Ed25519 (RFC 8032): 32-byte public key, 64-byte signature.
pub const ALG_ED25519: u8 = 0x01;
/// Algorithm byte of ECDSA over secp256k1 with SHA-256: 33-byte SEC1 compressed public key,
/// 64-byte compact `r || s` signature with low `s`.
pub const ALG_SECP256K1_ECDSA: u8 = 0x02;
/// Algorithm byte of BIP-340 Schnorr over secp256k1: 32-byte x-only public key, 64-byte signature.
pub const ALG_BIP340: u8 = 0x03;

const ED25519_KEY_LEN: usize = 32;
const ED25519_SIG_LEN: usize = 64;
const SECP256K1_ECDSA_KEY_LEN: usize = 33;
const SECP256K1_ECDSA_SIG_LEN: usize = 64;
const BIP340_KEY_LEN: usize = 32;
const BIP340_SIG_LEN: usize = 64;

/// The field prime `p` of secp256k1, big-endian: an x coordinate must be below it.
const SECP256K1_P: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xfc, 0x2f,
];

/// Why bytes are not a user public key (or, for the signer constructors, not a secret key).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("unknown key algorithm {0:#04x}")]
    UnknownAlgorithm(u8),
    #[error("key of algorithm {alg:#04x} must be {want} bytes, got {got}")]
    Length { alg: u8, want: usize, got: usize },
    #[error("public key is not a curve point")]
    InvalidPoint,
    #[error("public key encoding is not canonical")]
    NonCanonical,
    #[error("public key has small order")]
    SmallOrder,
    /// A secp256k1 secret key that is zero or not below the group order `n`.
    #[error("secret key is zero or not below the group order")]
    InvalidSecretKey,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("signature must be {want} bytes, got {got}")]
    Length { want: usize, got: usize },
    #[error("signature does not verify")]
    Invalid,
}

/// An Ed25519 public key that is a canonically encoded point of large order.
///
/// Small-order keys are refused because a signature under one can verify for many messages, and
/// non-canonical encodings because the same point would then have two byte strings, i.e. two
/// different-looking entries for the same key. `verify_strict` would reject signatures under
/// small-order keys anyway; refusing them at decode keeps them out of the log altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519PublicKey(VerifyingKey);

impl Ed25519PublicKey {
    pub fn from_bytes(bytes: &[u8; ED25519_KEY_LEN]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        // Decompression accepts y >= p and a set sign bit on x = 0.
        if !crate::edwards::is_canonical_encoding(bytes) {
            return Err(KeyError::NonCanonical);
        }
        if key.is_weak() {
            return Err(KeyError::SmallOrder);
        }
        Ok(Ed25519PublicKey(key))
    }

    pub fn as_bytes(&self) -> &[u8; ED25519_KEY_LEN] {
        self.0.as_bytes()
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

/// Whether a big-endian x coordinate is a field element (`x < p`).
fn is_field_element(x: &[u8]) -> bool {
    // Equal lengths, big-endian: byte-wise order is numeric order.
    x < &SECP256K1_P[..]
}

/// A secp256k1 ECDSA public key: a curve point in 33-byte SEC1 compressed form
/// (`0x02`/`0x03` for even/odd y, then x), the only encoding accepted.
///
/// A 33-byte string whose first byte is not `0x02`/`0x03`, or whose x is not below `p`, is
/// `NonCanonical`; an x with no point on the curve is `InvalidPoint`. Uncompressed and hybrid
/// encodings are 65 bytes long and are refused by length before they get here. The point at
/// infinity has no 33-byte encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Secp256k1EcdsaPublicKey {
    bytes: [u8; SECP256K1_ECDSA_KEY_LEN],
    key: PublicKey,
}

impl Secp256k1EcdsaPublicKey {
    pub fn from_bytes(bytes: &[u8; SECP256K1_ECDSA_KEY_LEN]) -> Result<Self, KeyError> {
        if !matches!(bytes[0], 0x02 | 0x03) || !is_field_element(&bytes[1..]) {
            return Err(KeyError::NonCanonical);
        }
        let key =
            PublicKey::from_byte_array_compressed(*bytes).map_err(|_| KeyError::InvalidPoint)?;
        // libsecp256k1 already refuses everything above; re-serializing makes "one key, one
        // encoding" a checked property here instead of a property of the parser.
        if key.serialize() != *bytes {
            return Err(KeyError::NonCanonical);
        }
        Ok(Secp256k1EcdsaPublicKey { bytes: *bytes, key })
    }

    fn from_key(key: PublicKey) -> Self {
        Secp256k1EcdsaPublicKey {
            bytes: key.serialize(),
            key,
        }
    }

    pub fn as_bytes(&self) -> &[u8; SECP256K1_ECDSA_KEY_LEN] {
        &self.bytes
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

/// A BIP-340 public key: 32 bytes, the x coordinate of a curve point whose y is even.
///
/// x not below `p` is `NonCanonical` (BIP-340's `lift_x` fails for it too); an x with no point on
/// the curve is `InvalidPoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bip340PublicKey {
    bytes: [u8; BIP340_KEY_LEN],
    key: XOnlyPublicKey,
}

impl Bip340PublicKey {
    pub fn from_bytes(bytes: &[u8; BIP340_KEY_LEN]) -> Result<Self, KeyError> {
        if !is_field_element(bytes) {
            return Err(KeyError::NonCanonical);
        }
        let key = XOnlyPublicKey::from_byte_array(*bytes).map_err(|_| KeyError::InvalidPoint)?;
        if key.to_byte_array() != *bytes {
            return Err(KeyError::NonCanonical);
        }
        Ok(Bip340PublicKey { bytes: *bytes, key })
    }

    fn from_key(key: XOnlyPublicKey) -> Self {
        Bip340PublicKey {
            bytes: key.to_byte_array(),
            key,
        }
    }

    pub fn as_bytes(&self) -> &[u8; BIP340_KEY_LEN] {
        &self.bytes
    }

    pub fn x_only_public_key(&self) -> &XOnlyPublicKey {
        &self.key
    }
}

/// A user's public key, tagged with its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    Ed25519(Ed25519PublicKey),
    Secp256k1Ecdsa(Secp256k1EcdsaPublicKey),
    Bip340(Bip340PublicKey),
}

/// `bytes` as an array of the algorithm's key length, or the typed length error.
fn key_array<const N: usize>(alg: u8, bytes: &[u8]) -> Result<&[u8; N], KeyError> {
    bytes.try_into().map_err(|_| KeyError::Length {
        alg,
        want: N,
        got: bytes.len(),
    })
}

/// `signature` as an array of the algorithm's signature length, or the typed length error.
fn sig_array<const N: usize>(signature: &[u8]) -> Result<&[u8; N], SignatureError> {
    signature.try_into().map_err(|_| SignatureError::Length {
        want: N,
        got: signature.len(),
    })
}

/// What secp256k1 ECDSA signs and verifies: SHA-256 of the full signed bytes.
fn ecdsa_digest(message: &[u8]) -> secp256k1::Message {
    secp256k1::Message::from_digest(Sha256::digest(message).into())
}

impl UserKey {
    /// Parses `algorithm || public key bytes` as they appear in an entry.
    pub fn from_parts(algorithm: u8, bytes: &[u8]) -> Result<UserKey, KeyError> {
        match algorithm {
            ALG_ED25519 => UserKey::ed25519(key_array(algorithm, bytes)?),
            ALG_SECP256K1_ECDSA => UserKey::secp256k1_ecdsa(key_array(algorithm, bytes)?),
            ALG_BIP340 => UserKey::bip340(key_array(algorithm, bytes)?),
            other => Err(KeyError::UnknownAlgorithm(other)),
        }
    }

    /// An Ed25519 key from its 32-byte encoding.
    pub fn ed25519(bytes: &[u8; ED25519_KEY_LEN]) -> Result<UserKey, KeyError> {
        Ok(UserKey::Ed25519(Ed25519PublicKey::from_bytes(bytes)?))
    }

    /// A secp256k1 ECDSA key from its 33-byte compressed encoding.
    pub fn secp256k1_ecdsa(bytes: &[u8; SECP256K1_ECDSA_KEY_LEN]) -> Result<UserKey, KeyError> {
        Ok(UserKey::Secp256k1Ecdsa(
            Secp256k1EcdsaPublicKey::from_bytes(bytes)?,
        ))
    }

    /// A BIP-340 key from its 32-byte x-only encoding.
    pub fn bip340(bytes: &[u8; BIP340_KEY_LEN]) -> Result<UserKey, KeyError> {
        Ok(UserKey::Bip340(Bip340PublicKey::from_bytes(bytes)?))
    }

    pub fn algorithm(&self) -> u8 {
        match self {
            UserKey::Ed25519(_) => ALG_ED25519,
            UserKey::Secp256k1Ecdsa(_) => ALG_SECP256K1_ECDSA,
            UserKey::Bip340(_) => ALG_BIP340,
        }
    }

    /// The public key bytes as they appear in an entry (without the algorithm byte).
    pub fn public_bytes(&self) -> &[u8] {
        match self {
            UserKey::Ed25519(k) => k.as_bytes(),
            UserKey::Secp256k1Ecdsa(k) => k.as_bytes(),
            UserKey::Bip340(k) => k.as_bytes(),
        }
    }

    /// Checks `signature` over `message` (the full signed bytes).
    ///
    /// **Ed25519** uses ed25519-dalek's `verify_strict` rule (computed by
    /// `crate::edwards::verify_strict`, which gives the same verdicts a little faster): `S` must
    /// be reduced, and neither the key nor `R` may have small order. This is stricter than RFC 8032's cofactorless check in exactly the cases that
    /// let one signature have several encodings or verify for several messages, and it is what the
    /// log's note signatures use too. Wycheproof's Ed25519 verdicts all agree with it
    /// (`core/tests/directory_wycheproof.rs`).
    ///
    /// **secp256k1 ECDSA** verifies the 64-byte compact `r || s` over `SHA-256(message)` with
    /// libsecp256k1: `r` and `s` must be in `[1, n-1]` (out-of-range values are refused when the
    /// signature is parsed, zero by the verifier), and `s` must be at most `n/2` (low-S, as in
    /// Bitcoin's standardness rules): libsecp256k1's `secp256k1_ecdsa_verify` refuses high-S
    /// signatures, so `(r, s)` and `(r, n - s)` are never both accepted. DER is not accepted.
    ///
    /// **BIP-340** verifies the 64-byte signature over `message` itself (any length; BIP-340
    /// hashes it inside the challenge) with libsecp256k1's `secp256k1_schnorrsig_verify`.
    ///
    /// `core/tests/directory_secp256k1.rs` runs Wycheproof's secp256k1 files and the BIP-340
    /// vectors through this function.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            UserKey::Ed25519(k) => {
                let sig = sig_array::<ED25519_SIG_LEN>(signature)?;
                if crate::edwards::verify_strict(&k.0, message, sig) {
                    Ok(())
                } else {
                    Err(SignatureError::Invalid)
                }
            }
            UserKey::Secp256k1Ecdsa(k) => {
                let sig = sig_array::<SECP256K1_ECDSA_SIG_LEN>(signature)?;
                let sig =
                    ecdsa::Signature::from_compact(sig).map_err(|_| SignatureError::Invalid)?;
                ecdsa::verify(&sig, ecdsa_digest(message), &k.key)
                    .map_err(|_| SignatureError::Invalid)
            }
            UserKey::Bip340(k) => {
                let sig = sig_array::<BIP340_SIG_LEN>(signature)?;
                let sig = schnorr::Signature::from_byte_array(*sig);
                schnorr::verify(&sig, message, &k.key).map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

/// A user's private key, for clients and tests.
///
/// Every algorithm signs deterministically: the same key and message give the same signature.
#[derive(Debug, Clone)]
pub enum UserSigner {
    Ed25519(SigningKey),
    /// RFC 6979 nonces; signatures are always low-S.
    Secp256k1Ecdsa(SecretKey),
    /// [`UserSigner::sign`] uses BIP-340 with `aux_rand` = 32 zero bytes.
    Bip340(Keypair),
}

impl UserSigner {
    /// An Ed25519 signer from its 32-byte seed (RFC 8032 private key).
    pub fn ed25519_from_seed(seed: [u8; 32]) -> UserSigner {
        UserSigner::Ed25519(SigningKey::from_bytes(&seed))
    }

    /// A secp256k1 ECDSA signer from its 32-byte big-endian secret scalar, which must be in
    /// `[1, n-1]` (`InvalidSecretKey` otherwise).
    pub fn secp256k1_ecdsa_from_secret(secret: [u8; 32]) -> Result<UserSigner, KeyError> {
        SecretKey::from_secret_bytes(secret)
            .map(UserSigner::Secp256k1Ecdsa)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    /// A BIP-340 signer from its 32-byte big-endian secret scalar, which must be in `[1, n-1]`
    /// (`InvalidSecretKey` otherwise). As in BIP-340, the public key is the x coordinate of
    /// `secret·G`; the secret is negated internally when that point's y is odd.
    pub fn bip340_from_secret(secret: [u8; 32]) -> Result<UserSigner, KeyError> {
        Keypair::from_secret_bytes(secret)
            .map(UserSigner::Bip340)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    pub fn public(&self) -> UserKey {
        match self {
            // A clamped scalar times the base point lies in the prime-order subgroup and is never
            // the identity, and `compress` is canonical, so this needs none of the decode checks.
            UserSigner::Ed25519(k) => UserKey::Ed25519(Ed25519PublicKey(k.verifying_key())),
            // A secret in [1, n-1] gives a point that is not infinity; serialization is canonical.
            UserSigner::Secp256k1Ecdsa(k) => {
                UserKey::Secp256k1Ecdsa(Secp256k1EcdsaPublicKey::from_key(k.public_key()))
            }
            UserSigner::Bip340(k) => {
                UserKey::Bip340(Bip340PublicKey::from_key(k.x_only_public_key().0))
            }
        }
    }

    /// Signs `message` (the full signed bytes) in the signer's algorithm; see [`UserKey::verify`]
    /// for what each algorithm signs.
    ///
    /// BIP-340 signs with `aux_rand` = 32 zero bytes, which BIP-340 permits: the nonce is still
    /// derived from the secret key and the message, so it never repeats across messages, and the
    /// signature is reproducible like an Ed25519 one. Fresh `aux_rand` would add protection against
    /// some side-channel attacks on the signing device; a client that wants it calls
    /// [`UserSigner::bip340_sign_with_aux_rand`].
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            UserSigner::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            UserSigner::Secp256k1Ecdsa(k) => ecdsa::sign(ecdsa_digest(message), k)
                .serialize_compact()
                .to_vec(),
            UserSigner::Bip340(k) => schnorr::sign_with_aux_rand(message, k, &[0; 32])
                .to_byte_array()
                .to_vec(),
        }
    }

    /// BIP-340 signing with the given `aux_rand` (BIP-340's "auxiliary random data"); `None` for
    /// a signer of another algorithm.
    pub fn bip340_sign_with_aux_rand(
        &self,
        message: &[u8],
        aux_rand: &[u8; 32],
    ) -> Option<Vec<u8>> {
        match self {
            UserSigner::Bip340(k) => Some(
                schnorr::sign_with_aux_rand(message, k, aux_rand)
                    .to_byte_array()
                    .to_vec(),
            ),
            UserSigner::Ed25519(_) | UserSigner::Secp256k1Ecdsa(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group order `n` of secp256k1, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];

    /// `n - s` for big-endian `0 < s < n`.
    fn neg_mod_n(s: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = N[i] as i16 - s[i] as i16 - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[i] = d as u8;
        }
        assert_eq!(borrow, 0);
        out
    }

    /// One of each, all from the same 32 secret bytes (also a valid Ed25519 seed), so the
    /// cross-algorithm checks compare keys that are as related as they can be.
    fn signers() -> [UserSigner; 3] {
        let secret = [7u8; 32];
        [
            UserSigner::ed25519_from_seed(secret),
            UserSigner::secp256k1_ecdsa_from_secret(secret).unwrap(),
            UserSigner::bip340_from_secret(secret).unwrap(),
        ]
    }

    #[test]
    fn sign_verify_round_trip_for_every_algorithm() {
        for (signer, (alg, key_len)) in signers().iter().zip([(0x01, 32), (0x02, 33), (0x03, 32)]) {
            let key = signer.public();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.public_bytes().len(), key_len);
            assert_eq!(
                UserKey::from_parts(alg, key.public_bytes()),
                Ok(key.clone())
            );
            for message in [&b""[..], b"m", &[0xab; 1000]] {
                let sig = signer.sign(message);
                assert_eq!(sig.len(), 64, "alg {alg:#04x}");
                assert_eq!(sig, signer.sign(message), "alg {alg:#04x} is deterministic");
                assert_eq!(key.verify(message, &sig), Ok(()), "alg {alg:#04x}");
                assert_eq!(
                    key.verify(b"another message", &sig),
                    Err(SignatureError::Invalid),
                    "alg {alg:#04x}"
                );
                let mut flipped = sig.clone();
                flipped[10] ^= 1;
                assert_eq!(key.verify(message, &flipped), Err(SignatureError::Invalid));
            }
        }
    }

    #[test]
    fn bip340_key_is_the_x_of_the_ecdsa_key() {
        let [_, ecdsa, bip340] = signers();
        assert_eq!(
            &ecdsa.public().public_bytes()[1..],
            bip340.public().public_bytes()
        );
    }

    #[test]
    fn a_signature_of_one_algorithm_does_not_verify_under_another() {
        let signers = signers();
        let message = b"keytrail/v1/message\0hello";
        for signer in &signers {
            let sig = signer.sign(message);
            for other in &signers {
                let key = other.public();
                let got = key.verify(message, &sig);
                if key.algorithm() == signer.public().algorithm() {
                    assert_eq!(got, Ok(()));
                } else {
                    assert_eq!(
                        got,
                        Err(SignatureError::Invalid),
                        "{:#04x} signature under a {:#04x} key",
                        signer.public().algorithm(),
                        key.algorithm()
                    );
                }
            }
        }
        // The same key bytes read as another algorithm: a BIP-340 key is the ECDSA key's x, and an
        // ECDSA signature under it (or the reverse) must still fail.
        let [_, ecdsa, bip340] = &signers;
        let as_bip340 = UserKey::from_parts(0x03, &ecdsa.public().public_bytes()[1..]).unwrap();
        assert_eq!(as_bip340, bip340.public());
        assert_eq!(
            as_bip340.verify(message, &ecdsa.sign(message)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            ecdsa.public().verify(message, &bip340.sign(message)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn wrong_lengths_give_typed_errors() {
        let cases: [(u8, usize, &[usize]); 3] = [
            (0x01, 32, &[0, 31, 33, 64]),
            (0x02, 33, &[0, 32, 34, 65]),
            (0x03, 32, &[0, 31, 33, 64]),
        ];
        for (alg, want, gots) in cases {
            for &got in gots {
                assert_eq!(
                    UserKey::from_parts(alg, &vec![2u8; got]),
                    Err(KeyError::Length { alg, want, got }),
                    "alg {alg:#04x}, {got} bytes"
                );
            }
        }
        for alg in [0x00, 0x04, 0xff] {
            assert_eq!(
                UserKey::from_parts(alg, &[2u8; 33]),
                Err(KeyError::UnknownAlgorithm(alg))
            );
        }
        for signer in signers() {
            let key = signer.public();
            let sig = signer.sign(b"m");
            for len in [0, 63, 65, 72, 128] {
                let mut wrong = sig.clone();
                wrong.resize(len, 0);
                assert_eq!(
                    key.verify(b"m", &wrong),
                    Err(SignatureError::Length { want: 64, got: len }),
                    "alg {:#04x}, {len} bytes",
                    key.algorithm()
                );
            }
        }
    }

    #[test]
    fn ecdsa_high_s_and_out_of_range_signatures_are_refused() {
        let signer = UserSigner::secp256k1_ecdsa_from_secret([7; 32]).unwrap();
        let key = signer.public();
        for message in [&b"a"[..], b"b", b"c", b"d"] {
            let sig = signer.sign(message);
            let (r, s) = sig.split_at(32);
            assert!(s <= &neg_mod_n(s)[..], "our signer produces low-S");
            // (r, n - s) is the same signature's malleated twin: valid ECDSA, refused by policy.
            let high: Vec<u8> = [r, &neg_mod_n(s)[..]].concat();
            assert_eq!(key.verify(message, &high), Err(SignatureError::Invalid));
            // ... and only because of its S: normalizing it gives back the accepted signature.
            let mut parsed = ecdsa::Signature::from_compact(&high).unwrap();
            parsed.normalize_s();
            assert_eq!(parsed.serialize_compact().to_vec(), sig);

            for (name, bad) in [
                ("r = 0", [&[0u8; 32][..], s].concat()),
                ("s = 0", [r, &[0u8; 32][..]].concat()),
                ("r = n", [&N[..], s].concat()),
                ("s = n", [r, &N[..]].concat()),
                ("r = 2^256 - 1", [&[0xff; 32][..], s].concat()),
            ] {
                assert_eq!(
                    key.verify(message, &bad),
                    Err(SignatureError::Invalid),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn secp256k1_key_encodings() {
        // Non-compressed prefixes in a 33-byte string, and x >= p, are not canonical.
        let good = UserSigner::secp256k1_ecdsa_from_secret([7; 32])
            .unwrap()
            .public();
        for prefix in [0x00, 0x01, 0x04, 0x05, 0x06, 0x07, 0xff] {
            let mut bytes = good.public_bytes().to_vec();
            bytes[0] = prefix;
            assert_eq!(
                UserKey::from_parts(0x02, &bytes),
                Err(KeyError::NonCanonical),
                "prefix {prefix:#04x}"
            );
        }
        let p_plus = |k: u8| {
            let mut x = SECP256K1_P;
            x[31] = x[31].wrapping_add(k);
            x
        };
        for k in [0u8, 1, 2, 7, 0xd0] {
            let x = p_plus(k);
            assert!(x >= SECP256K1_P, "p + {k} did not wrap");
            for prefix in [0x02, 0x03] {
                assert_eq!(
                    UserKey::from_parts(0x02, &[&[prefix][..], &x].concat()),
                    Err(KeyError::NonCanonical)
                );
            }
            assert_eq!(UserKey::from_parts(0x03, &x), Err(KeyError::NonCanonical));
        }
        assert_eq!(
            UserKey::from_parts(0x03, &[0xff; 32]),
            Err(KeyError::NonCanonical)
        );
        // Small x: about half are on the curve. Each verdict is the library's, and both occur.
        let (mut points, mut not_points) = (0, 0);
        for i in 0u8..32 {
            let mut x = [0u8; 32];
            x[31] = i;
            let on_curve = PublicKey::from_byte_array_compressed(
                [&[0x02][..], &x].concat().try_into().unwrap(),
            )
            .is_ok();
            for prefix in [0x02, 0x03] {
                let got = UserKey::from_parts(0x02, &[&[prefix][..], &x].concat());
                if on_curve {
                    let key = got.unwrap();
                    assert_eq!(key.public_bytes()[0], prefix);
                } else {
                    assert_eq!(got, Err(KeyError::InvalidPoint), "x = {i}");
                }
            }
            let got = UserKey::from_parts(0x03, &x);
            if on_curve {
                points += 1;
                assert_eq!(got.unwrap().public_bytes(), &x);
            } else {
                not_points += 1;
                assert_eq!(got, Err(KeyError::InvalidPoint), "x = {i}");
            }
        }
        assert!(
            points > 0 && not_points > 0,
            "{points} on, {not_points} off"
        );
    }

    #[test]
    fn secret_keys_out_of_range_are_refused() {
        let mut n_plus_one = N;
        n_plus_one[31] += 1;
        for secret in [[0u8; 32], N, n_plus_one, [0xff; 32]] {
            assert_eq!(
                UserSigner::secp256k1_ecdsa_from_secret(secret).unwrap_err(),
                KeyError::InvalidSecretKey
            );
            assert_eq!(
                UserSigner::bip340_from_secret(secret).unwrap_err(),
                KeyError::InvalidSecretKey
            );
        }
        let mut n_minus_one = N;
        n_minus_one[31] -= 1;
        let mut one = [0u8; 32];
        one[31] = 1;
        for secret in [one, n_minus_one] {
            assert!(UserSigner::secp256k1_ecdsa_from_secret(secret).is_ok());
            assert!(UserSigner::bip340_from_secret(secret).is_ok());
        }
    }

    #[test]
    fn bip340_sign_is_zero_aux_rand() {
        let [ed, ecdsa, bip340] = signers();
        for message in [&b""[..], b"m", &[0x5a; 100]] {
            assert_eq!(
                bip340.bip340_sign_with_aux_rand(message, &[0; 32]),
                Some(bip340.sign(message))
            );
            let other = bip340.bip340_sign_with_aux_rand(message, &[1; 32]).unwrap();
            assert_ne!(other, bip340.sign(message), "aux_rand is used");
            assert_eq!(bip340.public().verify(message, &other), Ok(()));
        }
        assert_eq!(ed.bip340_sign_with_aux_rand(b"m", &[0; 32]), None);
        assert_eq!(ecdsa.bip340_sign_with_aux_rand(b"m", &[0; 32]), None);
    }
}
