//! The log's keys on disk, each a file of mode 0600 created on a new log's first start: the
//! signing key (one line in the signed-note private key format), the VRF key that derives labels
//! (one line: the 32-byte RFC 8032 seed in hex, `docs/protocol.md` §9.1) and the identity
//! provider's token. Each public key goes next to its key with extension `.pub`.

use std::io::Write;
use std::path::{Path, PathBuf};

use kt_core::note::{KeyName, NoteSigner};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: not a signing key: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: the key is named {found:?} but the log's origin is {want:?}")]
    WrongName {
        path: PathBuf,
        found: String,
        want: String,
    },
}

fn io(path: &Path, e: std::io::Error) -> KeyFileError {
    KeyFileError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Generates a key named `origin`, writes it to `path` (which must not exist) with mode 0600,
/// and the verifier key to `path` with extension `.pub`. Returns the signer.
pub fn generate(path: &Path, origin: &str) -> Result<NoteSigner, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Io {
        path: path.to_owned(),
        reason: format!("no randomness: {e}"),
    })?;
    let name = KeyName::new(origin).map_err(|e| KeyFileError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let signer = NoteSigner::from_seed(name, seed);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    write_private(path, &format!("{}\n", signer.to_private_string()))?;
    let public = path.with_extension("pub");
    std::fs::write(&public, format!("{}\n", signer.verifier())).map_err(|e| io(&public, e))?;
    Ok(signer)
}

/// Creates `path` (which must not exist) with mode 0600 and `contents`, synced.
fn write_private(path: &Path, contents: &str) -> Result<(), KeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| io(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// The identity provider's bearer token kept in `path`, generated (32 random bytes, hex, mode
/// 0600) if the file does not exist yet, as the signing key is on a new log's first start.
pub fn load_or_create_provider_token(path: &Path) -> Result<String, KeyFileError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyFileError::Io {
                path: path.to_owned(),
                reason: "the provider token file is readable or writable by others; run `chmod 600` on it (or make a new token)".into(),
            });
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= MIN_PROVIDER_TOKEN_LEN => Ok(text.trim().to_owned()),
        Ok(_) => Err(KeyFileError::Parse {
            path: path.to_owned(),
            reason: format!("a provider token needs at least {MIN_PROVIDER_TOKEN_LEN} characters"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| KeyFileError::Io {
                path: path.to_owned(),
                reason: format!("no randomness: {e}"),
            })?;
            let token = hex::encode(secret);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            write_private(path, &format!("{token}\n"))?;
            Ok(token)
        }
        Err(e) => Err(io(path, e)),
    }
}

/// Generates a VRF key, writes its seed to `path` (which must not exist; one line of 64 hex
/// digits, mode 0600) and its public key to `path` with extension `.pub` (64 hex digits).
/// Returns the seed.
pub fn generate_vrf(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Io {
        path: path.to_owned(),
        reason: format!("no randomness: {e}"),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    write_private(path, &format!("{}\n", hex::encode(seed)))?;
    let public = path.with_extension("pub");
    let key = kt_core::vrf::VrfSecretKey::from_seed(seed);
    std::fs::write(
        &public,
        format!("{}\n", hex::encode(key.public().as_bytes())),
    )
    .map_err(|e| io(&public, e))?;
    Ok(seed)
}

/// Loads a VRF key file written by [`generate_vrf`]: its 32-byte seed.
pub fn load_vrf(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let bad = |reason: &str| KeyFileError::Parse {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| bad("a VRF key file holds 64 hex digits"))?;
    bytes
        .try_into()
        .map_err(|_| bad("a VRF key file holds 64 hex digits"))
}

/// Shortest provider token accepted, so a token cannot be guessed online.
pub const MIN_PROVIDER_TOKEN_LEN: usize = 16;

/// Loads a signing key and checks that it is named after the log's origin.
pub fn load(path: &Path, origin: &str) -> Result<NoteSigner, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let signer = NoteSigner::parse(text.trim()).map_err(|e| KeyFileError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if signer.name().as_str() != origin {
        return Err(KeyFileError::WrongName {
            path: path.to_owned(),
            found: signer.name().to_string(),
            want: origin.to_owned(),
        });
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_token_is_generated_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/provider.token");
        let token = load_or_create_provider_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(load_or_create_provider_token(&path).unwrap(), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short\n").unwrap();
        assert!(load_or_create_provider_token(&path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, format!("{token}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_provider_token(&path)
                .unwrap_err()
                .to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn generated_vrf_key_is_private_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/vrf.key");
        let seed = generate_vrf(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_vrf(&path).unwrap(), seed);
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let want = kt_core::vrf::VrfSecretKey::from_seed(seed).public();
        assert_eq!(public.trim(), hex::encode(want.as_bytes()));
        assert!(generate_vrf(&path).is_err(), "never overwrites a key");
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(load_vrf(&path), Err(KeyFileError::Parse { .. })));
    }

    #[test]
    fn generated_key_is_private_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/log.key");
        let signer = generate(&path, "example.org/log").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = load(&path, "example.org/log").unwrap();
        assert_eq!(loaded.verifier().to_string(), signer.verifier().to_string());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert_eq!(public.trim(), signer.verifier().to_string());
        assert!(matches!(
            load(&path, "other"),
            Err(KeyFileError::WrongName { .. })
        ));
        assert!(
            generate(&path, "example.org/log").is_err(),
            "never overwrites a key"
        );
    }
}
