//! The identities a run makes, and their keys, derived from the identifier and version alone.
//!
//! Deriving keys (instead of keeping them) lets a later run with the same `--prefix` rotate or
//! check identities an earlier run registered, and lets a lookup check the key of whatever
//! version the answer shows, even while another client is rotating that identity.

use kt_core::directory::key::{ALG_BIP340, ALG_ED25519, ALG_SECP256K1_ECDSA};
use kt_core::directory::{UserKey, UserSigner};
use sha2::{Digest, Sha256};

use crate::config::KeyAlg;

/// The identifier of the `index`-th identity of the setup phase.
pub fn user_identifier(prefix: &str, index: u64) -> String {
    format!("{prefix}-u{index}@bench.keytrail")
}

/// The identifier of the `n`-th identity a `register` operation makes.
pub fn new_identifier(prefix: &str, n: u64) -> String {
    format!("{prefix}-r{n}@bench.keytrail")
}

/// An identifier never registered (the `absent` share of lookups and histories).
pub fn absent_identifier(prefix: &str, n: u64) -> String {
    format!("{prefix}-absent{n}@bench.keytrail")
}

/// The signer of version `version` of `identifier` in `alg`. Not secret in any way: anyone who
/// knows the identifier can compute it, which is fine for a load generator and nothing else.
pub fn signer_for(identifier: &str, version: u64, alg: KeyAlg) -> UserSigner {
    let mut counter = 0u32;
    loop {
        let mut h = Sha256::new();
        h.update(b"kt-bench/v1/key\0");
        h.update(identifier.as_bytes());
        h.update([0]);
        h.update(version.to_be_bytes());
        h.update(counter.to_be_bytes());
        let secret: [u8; 32] = h.finalize().into();
        let signer = match alg {
            KeyAlg::Ed25519 => Ok(UserSigner::ed25519_from_seed(secret)),
            KeyAlg::Secp256k1 => UserSigner::secp256k1_ecdsa_from_secret(secret),
            KeyAlg::Bip340 => UserSigner::bip340_from_secret(secret),
        };
        match signer {
            Ok(s) => return s,
            // A hash at or above the secp256k1 group order (probability about 2^-128): next.
            Err(_) => counter += 1,
        }
    }
}

/// The algorithm of a key, as [`signer_for`] names it.
pub fn alg_of(key: &UserKey) -> Option<KeyAlg> {
    match key.algorithm() {
        ALG_ED25519 => Some(KeyAlg::Ed25519),
        ALG_SECP256K1_ECDSA => Some(KeyAlg::Secp256k1),
        ALG_BIP340 => Some(KeyAlg::Bip340),
        _ => None,
    }
}

/// Whether `key` is the derived key of version `version` of `identifier`.
pub fn is_expected_key(identifier: &str, version: u64, key: &UserKey) -> bool {
    alg_of(key).is_some_and(|alg| signer_for(identifier, version, alg).public() == *key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_per_identifier_version_and_algorithm() {
        let a1 = signer_for("a", 1, KeyAlg::Ed25519).public();
        assert_eq!(a1, signer_for("a", 1, KeyAlg::Ed25519).public());
        assert_ne!(a1, signer_for("a", 2, KeyAlg::Ed25519).public());
        assert_ne!(a1, signer_for("b", 1, KeyAlg::Ed25519).public());
        for alg in [KeyAlg::Ed25519, KeyAlg::Secp256k1, KeyAlg::Bip340] {
            let key = signer_for("a", 3, alg).public();
            assert_eq!(alg_of(&key), Some(alg));
            assert!(is_expected_key("a", 3, &key));
            assert!(!is_expected_key("a", 2, &key));
        }
    }
}
