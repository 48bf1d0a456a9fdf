//! User keys: the public keys the directory maps labels to, and the signatures they verify.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use thiserror::Error;

/// Algorithm byte of "no key" (a revoked label).
pub const ALG_NONE: u8 = 0x00;
/// Algorithm byte of Ed25519 (RFC 8032): 32-byte public key, 64-byte signature.
pub const ALG_ED25519: u8 = 0x01;
/// Reserved: secp256k1 ECDSA, 33-byte compressed public key (not supported yet).
pub const ALG_SECP256K1_ECDSA: u8 = 0x02;
/// Reserved: BIP-340 Schnorr over secp256k1, 32-byte x-only public key (not supported yet).
pub const ALG_BIP340: u8 = 0x03;

const ED25519_KEY_LEN: usize = 32;
const ED25519_SIG_LEN: usize = 64;

/// Why bytes are not a user public key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("unknown key algorithm {0:#04x}")]
    UnknownAlgorithm(u8),
    #[error("key algorithm {0:#04x} is reserved but not supported yet")]
    UnsupportedAlgorithm(u8),
    #[error("key of algorithm {alg:#04x} must be {want} bytes, got {got}")]
    Length { alg: u8, want: usize, got: usize },
    #[error("public key is not a curve point")]
    InvalidPoint,
    #[error("public key encoding is not canonical")]
    NonCanonical,
    #[error("public key has small order")]
    SmallOrder,
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
        // Decompression accepts y >= p and a set sign bit on x = 0; re-compressing reveals both.
        if key.to_edwards().compress().to_bytes() != *bytes {
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

/// A user's public key, tagged with its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    Ed25519(Ed25519PublicKey),
}

impl UserKey {
    /// Parses `algorithm || public key bytes` as they appear in an entry.
    pub fn from_parts(algorithm: u8, bytes: &[u8]) -> Result<UserKey, KeyError> {
        match algorithm {
            ALG_ED25519 => {
                let bytes: &[u8; ED25519_KEY_LEN] =
                    bytes.try_into().map_err(|_| KeyError::Length {
                        alg: ALG_ED25519,
                        want: ED25519_KEY_LEN,
                        got: bytes.len(),
                    })?;
                Ok(UserKey::Ed25519(Ed25519PublicKey::from_bytes(bytes)?))
            }
            ALG_SECP256K1_ECDSA | ALG_BIP340 => Err(KeyError::UnsupportedAlgorithm(algorithm)),
            other => Err(KeyError::UnknownAlgorithm(other)),
        }
    }

    /// An Ed25519 key from its 32-byte encoding.
    pub fn ed25519(bytes: &[u8; ED25519_KEY_LEN]) -> Result<UserKey, KeyError> {
        Ok(UserKey::Ed25519(Ed25519PublicKey::from_bytes(bytes)?))
    }

    pub fn algorithm(&self) -> u8 {
        match self {
            UserKey::Ed25519(_) => ALG_ED25519,
        }
    }

    /// The public key bytes as they appear in an entry (without the algorithm byte).
    pub fn public_bytes(&self) -> &[u8] {
        match self {
            UserKey::Ed25519(k) => k.as_bytes(),
        }
    }

    /// Checks `signature` over `message`.
    ///
    /// Ed25519 uses `verify_strict`: `S` must be reduced, and neither the key nor `R` may have
    /// small order. This is stricter than RFC 8032's cofactorless check in exactly the cases that
    /// let one signature have several encodings or verify for several messages, and it is what the
    /// log's note signatures use too. Wycheproof's Ed25519 verdicts all agree with it
    /// (`core/tests/directory_wycheproof.rs`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            UserKey::Ed25519(k) => {
                let sig: &[u8; ED25519_SIG_LEN] =
                    signature.try_into().map_err(|_| SignatureError::Length {
                        want: ED25519_SIG_LEN,
                        got: signature.len(),
                    })?;
                k.0.verify_strict(message, &Signature::from_bytes(sig))
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

/// A user's private key, for clients and tests.
#[derive(Debug, Clone)]
pub enum UserSigner {
    Ed25519(SigningKey),
}

impl UserSigner {
    /// An Ed25519 signer from its 32-byte seed (RFC 8032 private key).
    pub fn ed25519_from_seed(seed: [u8; 32]) -> UserSigner {
        UserSigner::Ed25519(SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> UserKey {
        match self {
            // A clamped scalar times the base point lies in the prime-order subgroup and is never
            // the identity, and `compress` is canonical, so this needs none of the decode checks.
            UserSigner::Ed25519(k) => UserKey::Ed25519(Ed25519PublicKey(k.verifying_key())),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            UserSigner::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }
}
