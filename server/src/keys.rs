//! The log's signing key on disk: one line in the signed-note private key format, mode 0600.

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
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| io(path, e))?;
    writeln!(file, "{}", signer.to_private_string()).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))?;
    let public = path.with_extension("pub");
    std::fs::write(&public, format!("{}\n", signer.verifier())).map_err(|e| io(&public, e))?;
    Ok(signer)
}

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
