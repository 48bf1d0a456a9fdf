//! This device's user keys: a JSON file (default `~/.keytrail/keys.json`) holding, per user
//! identifier, the private keys this device holds for it and the leaf hashes of every update this
//! device made (its "made-set", which the owner's monitor compares the label's history with),
//! each with where its receipt proved it, once one did (`confirmed`: the epoch of the receipt's
//! checkpoint and the update's log index; absent until then, and in files written before `kt`
//! recorded it).
//!
//! The file is written atomically with mode 0600 from the moment it exists, and refused on open
//! when anyone but its owner may read or write it.
//!
//! ```json
//! {
//!   "version": 1,
//!   "identities": {
//!     "alice@example.com": {
//!       "keys": [ { "algorithm": "ed25519", "secret": "<64 hex>", "public": "<hex>" } ],
//!       "made": [
//!         { "leaf_hash": "<64 hex>", "op": "register", "version": 1,
//!           "confirmed": { "epoch": 12, "index": 40 } }
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! A label has one current key, but a device can hold more than one private key for it for a
//! while: `kt key rotate` saves the new key (and the update's leaf hash) *before* sending the
//! rotation, so a crash or a lost answer cannot lock the user out; whichever key the directory
//! names is the current one ([`KeyFile::signer_for`]), and the other is dropped once a receipt
//! has verified ([`KeyFile::keep_only`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kt_core::directory::{KeyError, Op, UserKey, UserSigner};
use kt_core::hash::Hash;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::write_private_atomically;

/// Why the key file cannot be used.
#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("key file {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(
        "key file {path} may be read or written by others (mode {mode:04o}); \
         it holds private keys: run `chmod 600 {path}` if nobody else has seen it"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a valid key file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("unknown key algorithm {0:?} (ed25519, secp256k1 or bip340)")]
    UnknownAlgorithm(String),
}

/// The user-key algorithms a device can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), algorithm byte 0x01.
    Ed25519,
    /// ECDSA over secp256k1 with SHA-256, low-S, algorithm byte 0x02.
    Secp256k1,
    /// BIP-340 Schnorr over secp256k1, algorithm byte 0x03.
    Bip340,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Ed25519, Algorithm::Secp256k1, Algorithm::Bip340];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Secp256k1 => "secp256k1",
            Algorithm::Bip340 => "bip340",
        }
    }

    /// The algorithm of a public key.
    pub fn of(key: &UserKey) -> Algorithm {
        match key {
            UserKey::Ed25519(_) => Algorithm::Ed25519,
            UserKey::Secp256k1Ecdsa(_) => Algorithm::Secp256k1,
            UserKey::Bip340(_) => Algorithm::Bip340,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyFileError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| KeyFileError::UnknownAlgorithm(s.to_owned()))
    }
}

/// A private key of this device: its algorithm and 32 secret bytes (the Ed25519 seed, or the
/// secp256k1 secret scalar). Its `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey {
    algorithm: Algorithm,
    secret: [u8; 32],
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl DeviceKey {
    /// A key from its secret bytes; secp256k1 secrets must be in `[1, n-1]`.
    pub fn from_secret(algorithm: Algorithm, secret: [u8; 32]) -> Result<DeviceKey, KeyError> {
        let key = DeviceKey { algorithm, secret };
        key.signer()?;
        Ok(key)
    }

    /// A fresh key from the operating system's randomness.
    pub fn generate(algorithm: Algorithm) -> Result<DeviceKey, KeyFileError> {
        loop {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| KeyFileError::Random(e.to_string()))?;
            // A secp256k1 secret is out of range with probability about 2^-128: draw again.
            if let Ok(key) = DeviceKey::from_secret(algorithm, secret) {
                return Ok(key);
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn signer(&self) -> Result<UserSigner, KeyError> {
        match self.algorithm {
            Algorithm::Ed25519 => Ok(UserSigner::ed25519_from_seed(self.secret)),
            Algorithm::Secp256k1 => UserSigner::secp256k1_ecdsa_from_secret(self.secret),
            Algorithm::Bip340 => UserSigner::bip340_from_secret(self.secret),
        }
    }

    pub fn public(&self) -> Result<UserKey, KeyError> {
        Ok(self.signer()?.public())
    }
}

/// Where a verified receipt proved an update: the map of the receipt's checkpoint (of `epoch`)
/// names it, and the log holds it at `index`. Every history proven under that epoch or a later
/// one must hold the update (see [`crate::directory::missing_confirmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    pub epoch: u64,
    pub index: u64,
}

/// An update this device made (signed and sent, or about to be sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeUpdate {
    pub leaf_hash: Hash,
    pub op: Op,
    pub version: u64,
    /// Set once the update's receipt verified; `None` for an update whose answer never came (it
    /// may or may not have landed).
    pub confirmed: Option<Confirmed>,
}

/// What the device holds for one identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Private keys, oldest first.
    pub keys: Vec<DeviceKey>,
    /// Updates this device made, in the order it made them.
    pub made: Vec<MadeUpdate>,
}

impl Identity {
    /// The leaf hashes of the updates this device made.
    pub fn made_set(&self) -> HashSet<Hash> {
        self.made.iter().map(|m| m.leaf_hash).collect()
    }
}

/// The key file, loaded. Changes are written by [`KeyFile::save`].
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    identities: BTreeMap<String, Identity>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    identities: BTreeMap<String, DiskIdentity>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskIdentity {
    #[serde(default)]
    keys: Vec<DiskKey>,
    #[serde(default)]
    made: Vec<DiskMade>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskKey {
    algorithm: Algorithm,
    secret: String,
    /// For people and tools reading the file; recomputed from the secret and checked on load.
    public: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskMade {
    leaf_hash: String,
    op: String,
    version: u64,
    /// Missing in files written before it was recorded, and for unconfirmed updates: both read
    /// as unconfirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed: Option<DiskConfirmed>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskConfirmed {
    epoch: u64,
    index: u64,
}

const FORMAT_VERSION: u32 = 1;

fn parse_op(s: &str) -> Option<Op> {
    [Op::Register, Op::Rotate, Op::Revoke, Op::Recover]
        .into_iter()
        .find(|op| op.to_string() == s)
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

impl KeyFile {
    /// The default location: `~/.keytrail/keys.json`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".keytrail").join("keys.json"))
    }

    /// Loads the key file at `path`, or starts an empty one if there is none (nothing is written
    /// until [`KeyFile::save`]). Refuses a file others may read or write.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyFile, KeyFileError> {
        let path = path.into();
        let io = |e: std::io::Error| KeyFileError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        let metadata = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(KeyFile {
                    path,
                    identities: BTreeMap::new(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions { path, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let corrupt = |reason: String| KeyFileError::Corrupt {
            path: path.clone(),
            reason,
        };
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if disk.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {}, this kt reads {FORMAT_VERSION}",
                disk.version
            )));
        }
        let mut identities = BTreeMap::new();
        for (id, d) in disk.identities {
            let mut identity = Identity::default();
            for k in d.keys {
                let secret = hex32(&k.secret)
                    .ok_or_else(|| corrupt(format!("{id}: a secret is not 32 bytes of hex")))?;
                let key = DeviceKey::from_secret(k.algorithm, secret)
                    .map_err(|e| corrupt(format!("{id}: {e}")))?;
                let public = key.public().map_err(|e| corrupt(format!("{id}: {e}")))?;
                if hex::encode(public.public_bytes()) != k.public {
                    return Err(corrupt(format!(
                        "{id}: public key {} does not belong to its secret",
                        k.public
                    )));
                }
                identity.keys.push(key);
            }
            for m in d.made {
                identity.made.push(MadeUpdate {
                    leaf_hash: hex32(&m.leaf_hash).ok_or_else(|| {
                        corrupt(format!("{id}: a leaf hash is not 32 bytes of hex"))
                    })?,
                    op: parse_op(&m.op)
                        .ok_or_else(|| corrupt(format!("{id}: unknown op {:?}", m.op)))?,
                    version: m.version,
                    confirmed: m.confirmed.map(|c| Confirmed {
                        epoch: c.epoch,
                        index: c.index,
                    }),
                });
            }
            identities.insert(id, identity);
        }
        Ok(KeyFile { path, identities })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the file atomically, mode 0600.
    pub fn save(&self) -> Result<(), KeyFileError> {
        let mut identities = BTreeMap::new();
        for (id, identity) in &self.identities {
            let mut d = DiskIdentity::default();
            for k in &identity.keys {
                let public = k.public().expect("keys are checked when added");
                d.keys.push(DiskKey {
                    algorithm: k.algorithm,
                    secret: hex::encode(k.secret),
                    public: hex::encode(public.public_bytes()),
                });
            }
            for m in &identity.made {
                d.made.push(DiskMade {
                    leaf_hash: hex::encode(m.leaf_hash),
                    op: m.op.to_string(),
                    version: m.version,
                    confirmed: m.confirmed.map(|c| DiskConfirmed {
                        epoch: c.epoch,
                        index: c.index,
                    }),
                });
            }
            identities.insert(id.clone(), d);
        }
        let disk = OnDisk {
            version: FORMAT_VERSION,
            identities,
        };
        let json = serde_json::to_string_pretty(&disk).expect("plain data serializes");
        write_private_atomically(&self.path, json.as_bytes()).map_err(|e| KeyFileError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The identifiers this device holds anything for.
    pub fn identifiers(&self) -> impl Iterator<Item = &str> {
        self.identities.keys().map(String::as_str)
    }

    pub fn identity(&self, identifier: &str) -> Option<&Identity> {
        self.identities.get(identifier)
    }

    /// Adds a private key for `identifier` (newest last).
    pub fn add_key(&mut self, identifier: &str, key: DeviceKey) {
        let identity = self.identities.entry(identifier.to_owned()).or_default();
        if !identity.keys.contains(&key) {
            identity.keys.push(key);
        }
    }

    /// The newest private key for `identifier`.
    pub fn newest_key(&self, identifier: &str) -> Option<&DeviceKey> {
        self.identity(identifier).and_then(|i| i.keys.last())
    }

    /// The private key for `identifier` whose public key is `public`, as a signer.
    pub fn signer_for(&self, identifier: &str, public: &UserKey) -> Option<UserSigner> {
        self.identity(identifier)?
            .keys
            .iter()
            .filter_map(|k| k.signer().ok())
            .find(|s| s.public() == *public)
    }

    /// Drops every private key for `identifier` except the one whose public key is `public`.
    pub fn keep_only(&mut self, identifier: &str, public: &UserKey) {
        if let Some(identity) = self.identities.get_mut(identifier) {
            identity
                .keys
                .retain(|k| k.public().is_ok_and(|p| p == *public));
        }
    }

    /// Drops every private key for `identifier` (after a revoke); the made-set stays.
    pub fn remove_keys(&mut self, identifier: &str) {
        if let Some(identity) = self.identities.get_mut(identifier) {
            identity.keys.clear();
        }
    }

    /// Records an update this device made (before sending it: an update that never lands does
    /// no harm in the made-set, one that lands unrecorded raises a false alarm).
    pub fn record_made(&mut self, identifier: &str, leaf_hash: Hash, op: Op, version: u64) {
        let identity = self.identities.entry(identifier.to_owned()).or_default();
        if !identity.made.iter().any(|m| m.leaf_hash == leaf_hash) {
            identity.made.push(MadeUpdate {
                leaf_hash,
                op,
                version,
                confirmed: None,
            });
        }
    }

    /// Records that the receipt of the update with `leaf_hash` (recorded by
    /// [`KeyFile::record_made`]) verified. Returns whether such an update was recorded.
    pub fn record_confirmed(
        &mut self,
        identifier: &str,
        leaf_hash: Hash,
        confirmed: Confirmed,
    ) -> bool {
        let made = self
            .identities
            .get_mut(identifier)
            .and_then(|i| i.made.iter_mut().find(|m| m.leaf_hash == leaf_hash));
        match made {
            Some(m) => {
                m.confirmed = Some(confirmed);
                true
            }
            None => false,
        }
    }

    /// The updates this device made for `identifier`, in the order it made them.
    pub fn made(&self, identifier: &str) -> &[MadeUpdate] {
        self.identity(identifier).map_or(&[], |i| &i.made)
    }

    /// The leaf hashes of the updates this device made for `identifier`.
    pub fn made_set(&self, identifier: &str) -> HashSet<Hash> {
        self.identity(identifier)
            .map(Identity::made_set)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_keeps_keys_and_made_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/keys.json");
        let mut file = KeyFile::open(&path).unwrap();
        assert!(file.identity("alice").is_none());
        assert!(!path.exists(), "opening does not write");

        let keys: Vec<DeviceKey> = Algorithm::ALL
            .into_iter()
            .map(|a| DeviceKey::generate(a).unwrap())
            .collect();
        for k in &keys {
            file.add_key("alice", k.clone());
        }
        file.add_key("alice", keys[0].clone());
        file.record_made("alice", [1; 32], Op::Register, 1);
        file.record_made("alice", [2; 32], Op::Rotate, 2);
        file.record_made("alice", [1; 32], Op::Register, 1);
        file.add_key(
            "bob",
            DeviceKey::from_secret(Algorithm::Ed25519, [7; 32]).unwrap(),
        );
        file.save().unwrap();

        let loaded = KeyFile::open(&path).unwrap();
        let alice = loaded.identity("alice").unwrap();
        assert_eq!(alice.keys, keys, "each key once, in order");
        assert_eq!(alice.made.len(), 2, "each update once");
        assert_eq!(alice.made[1].op, Op::Rotate);
        assert_eq!(alice.made[1].version, 2);
        assert_eq!(loaded.made_set("alice"), [[1; 32], [2; 32]].into());
        assert!(loaded.made_set("carol").is_empty());
        assert_eq!(loaded.identifiers().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(loaded.newest_key("alice"), keys.last());

        // Signers are found by public key, whatever their algorithm.
        for k in &keys {
            let public = k.public().unwrap();
            let signer = loaded.signer_for("alice", &public).unwrap();
            assert_eq!(signer.public(), public);
            assert_eq!(Algorithm::of(&public), k.algorithm());
        }
        assert!(loaded
            .signer_for("bob", &keys[0].public().unwrap())
            .is_none());
    }

    #[test]
    fn keep_only_and_remove_keys_leave_the_made_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::open(&path).unwrap();
        let old = DeviceKey::from_secret(Algorithm::Ed25519, [1; 32]).unwrap();
        let new = DeviceKey::from_secret(Algorithm::Bip340, [2; 32]).unwrap();
        file.add_key("alice", old.clone());
        file.add_key("alice", new.clone());
        file.record_made("alice", [3; 32], Op::Rotate, 2);
        file.keep_only("alice", &new.public().unwrap());
        assert_eq!(file.identity("alice").unwrap().keys, vec![new]);
        file.remove_keys("alice");
        file.save().unwrap();
        let loaded = KeyFile::open(&path).unwrap();
        assert!(loaded.identity("alice").unwrap().keys.is_empty());
        assert_eq!(loaded.made_set("alice"), [[3; 32]].into());
    }

    #[test]
    fn confirmed_receipts_round_trip_and_old_files_read_as_unconfirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::open(&path).unwrap();
        file.record_made("alice", [1; 32], Op::Register, 1);
        file.record_made("alice", [2; 32], Op::Rotate, 2);
        let at = Confirmed {
            epoch: 12,
            index: 40,
        };
        assert!(file.record_confirmed("alice", [1; 32], at));
        assert!(
            !file.record_confirmed("alice", [3; 32], at),
            "only a recorded update is confirmed"
        );
        assert!(!file.record_confirmed("bob", [1; 32], at));
        file.save().unwrap();

        let loaded = KeyFile::open(&path).unwrap();
        let made = loaded.made("alice");
        assert_eq!(made.len(), 2);
        assert_eq!(made[0].confirmed, Some(at));
        assert_eq!(made[1].confirmed, None);
        assert!(loaded.made("carol").is_empty());
        // An unconfirmed update is written without the field, as before it existed.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\"confirmed\"").count(), 1, "{text}");
        let disk: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            disk["identities"]["alice"]["made"][0]["confirmed"],
            serde_json::json!({"epoch": 12, "index": 40})
        );

        // A file written before `confirmed` was recorded: every update reads as unconfirmed.
        let old = format!(
            r#"{{"version":1,"identities":{{"alice":{{"made":[{{"leaf_hash":"{}","op":"register","version":1}},{{"leaf_hash":"{}","op":"rotate","version":2}}]}}}}}}"#,
            hex::encode([1u8; 32]),
            hex::encode([2u8; 32])
        );
        write_private_atomically(&path, old.as_bytes()).unwrap();
        let loaded = KeyFile::open(&path).unwrap();
        let made = loaded.made("alice");
        assert_eq!(
            made.iter()
                .map(|m| (m.version, m.confirmed))
                .collect::<Vec<_>>(),
            vec![(1, None), (2, None)]
        );
        assert_eq!(loaded.made_set("alice"), [[1; 32], [2; 32]].into());
    }

    #[cfg(unix)]
    #[test]
    fn written_0600_and_wider_permissions_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::open(&path).unwrap();
        file.add_key("alice", DeviceKey::generate(Algorithm::Ed25519).unwrap());
        file.save().unwrap();
        assert_eq!(mode(&path), 0o600);
        KeyFile::open(&path).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );

        let new_dir = dir.path().join("fresh");
        let nested = new_dir.join("keys.json");
        file.path = nested.clone();
        file.save().unwrap();
        assert_eq!(mode(&nested), 0o600);
        assert_eq!(
            mode(&new_dir),
            0o700,
            "a directory it creates is private too"
        );

        for wide in [0o640, 0o604, 0o660, 0o666, 0o700] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wide)).unwrap();
            match KeyFile::open(&path) {
                Err(KeyFileError::Permissions { mode, .. }) if wide & 0o077 != 0 => {
                    assert_eq!(mode, wide)
                }
                Ok(_) if wide & 0o077 == 0 => {}
                other => panic!("mode {wide:o}: {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(err.contains("0644"), "{err}");
    }

    #[test]
    fn corrupt_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let good = DeviceKey::from_secret(Algorithm::Ed25519, [5; 32]).unwrap();
        let public = hex::encode(good.public().unwrap().public_bytes());
        let cases = [
            ("not json", "expected"),
            (r#"{"version": 2, "identities": {}}"#, "format version 2"),
            (
                &*format!(
                    r#"{{"version":1,"identities":{{"a":{{"keys":[{{"algorithm":"ed25519","secret":"{}","public":"{}"}}]}}}}}}"#,
                    hex::encode([6u8; 32]),
                    public
                ),
                "does not belong",
            ),
            (
                r#"{"version":1,"identities":{"a":{"keys":[{"algorithm":"secp256k1","secret":"0000000000000000000000000000000000000000000000000000000000000000","public":""}]}}}"#,
                "secret key",
            ),
            (
                r#"{"version":1,"identities":{"a":{"made":[{"leaf_hash":"00","op":"register","version":1}]}}}"#,
                "leaf hash",
            ),
            (
                r#"{"version":1,"identities":{"a":{"keys":[{"algorithm":"rsa","secret":"","public":""}]}}}"#,
                "unknown variant",
            ),
            (
                r#"{"version":1,"identities":{"a":{"made":[{"leaf_hash":"00","op":"register","version":1,"confirmed":{"epoch":1}}]}}}"#,
                "missing field `index`",
            ),
        ];
        for (text, want) in cases {
            write_private_atomically(&path, text.as_bytes()).unwrap();
            let err = KeyFile::open(&path).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Corrupt { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn algorithms_parse_and_generate_distinct_keys() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
            let (k1, k2) = (
                DeviceKey::generate(a).unwrap(),
                DeviceKey::generate(a).unwrap(),
            );
            assert_ne!(k1, k2);
            assert_eq!(Algorithm::of(&k1.public().unwrap()), a);
        }
        assert_eq!("Ed25519".parse::<Algorithm>().unwrap(), Algorithm::Ed25519);
        assert!("rsa".parse::<Algorithm>().is_err());
        let debug = format!(
            "{:?}",
            DeviceKey::from_secret(Algorithm::Ed25519, [0xab; 32]).unwrap()
        );
        assert!(!debug.contains("abab"), "{debug}");
        assert!(DeviceKey::from_secret(Algorithm::Secp256k1, [0; 32]).is_err());
        assert!(DeviceKey::from_secret(Algorithm::Bip340, [0xff; 32]).is_err());
    }
}
