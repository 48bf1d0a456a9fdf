//! The trusted state on disk: which log, and the last checkpoint verified for it. Written
//! atomically (temporary file, fsync, rename) so a crash leaves the old or the new state.

use std::path::{Path, PathBuf};

use kt_core::checkpoint::SignedCheckpoint;
use kt_core::note::NoteVerifier;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("trusted state {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("trusted state {path} is for log key {stored}, not {given}; use another --state file")]
    OtherLog {
        path: PathBuf,
        stored: String,
        given: String,
    },
    #[error("trusted state {path} holds a checkpoint that does not verify: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    log_key: String,
    checkpoint: Option<String>,
}

/// The trusted state file.
#[derive(Debug)]
pub struct TrustedStateFile {
    path: PathBuf,
    log_key: String,
    checkpoint: Option<SignedCheckpoint>,
}

impl TrustedStateFile {
    /// Loads the state for the log of `verifier`, or starts an empty one (written on first store).
    pub fn open(path: PathBuf, verifier: &NoteVerifier) -> Result<Self, StateError> {
        let log_key = verifier.to_string();
        let io = |e: std::io::Error| StateError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TrustedStateFile {
                    path,
                    log_key,
                    checkpoint: None,
                })
            }
            Err(e) => return Err(io(e)),
        };
        let disk: OnDisk = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if disk.log_key != log_key {
            return Err(StateError::OtherLog {
                path,
                stored: disk.log_key,
                given: log_key,
            });
        }
        let checkpoint =
            disk.checkpoint
                .map(|note| {
                    SignedCheckpoint::open(note.as_bytes(), verifier.name().as_str(), verifier)
                        .map_err(|e| StateError::Corrupt {
                            path: path.clone(),
                            reason: e.to_string(),
                        })
                })
                .transpose()?;
        Ok(TrustedStateFile {
            path,
            log_key,
            checkpoint,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.checkpoint.as_ref()
    }

    /// Replaces the trusted checkpoint, durably. Callers verify the step first.
    pub fn store(&mut self, checkpoint: &SignedCheckpoint) -> Result<(), StateError> {
        let disk = OnDisk {
            version: 1,
            log_key: self.log_key.clone(),
            checkpoint: Some(checkpoint.note().to_owned()),
        };
        let json = serde_json::to_string_pretty(&disk).expect("plain data serializes");
        write_atomically(&self.path, json.as_bytes()).map_err(|e| StateError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, false)
}

/// [`write_atomically`] for secrets: on Unix the file is created with mode 0600 (the temporary
/// file is born with it, so the secret is never readable by anyone else, not even briefly), and a
/// missing parent directory is created with mode 0700.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, true)
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn write_atomically_with(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = parent {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        // A mode applies only to a file being created: a leftover temporary file (a crash
        // mid-write) could have any mode, so it goes first.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        options.create_new(true).mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = parent {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
