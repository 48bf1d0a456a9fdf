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
    ///
    /// Several `kt` processes may share the file (a following `kt monitor` next to other
    /// commands), and the file never moves back: if another process has meanwhile stored a later
    /// epoch, that one stays on disk (this process keeps `checkpoint` in memory; both were
    /// verified, and the next process to load the file checks the server against the later one).
    /// An exclusive lock on `<file>.lock` makes reading the stored epoch and replacing it one
    /// step: without it, a process could read an old epoch, another store a later one, and the
    /// first then replace it with its earlier one, and a fork seen only in between would go
    /// unnoticed.
    pub fn store(&mut self, checkpoint: &SignedCheckpoint) -> Result<(), StateError> {
        let _lock = lock_beside(&self.path).map_err(|e| StateError::Io {
            path: self.path.clone(),
            reason: format!("locking it: {e}"),
        })?;
        if let Some(stored) = self.stored_epoch() {
            if stored > checkpoint.checkpoint().epoch {
                self.checkpoint = Some(checkpoint.clone());
                return Ok(());
            }
        }
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

    /// The epoch of the checkpoint on disk now, if the file holds a valid one for this log.
    fn stored_epoch(&self) -> Option<u64> {
        let verifier = NoteVerifier::parse(&self.log_key).ok()?;
        TrustedStateFile::open(self.path.clone(), &verifier)
            .ok()?
            .checkpoint
            .map(|c| c.checkpoint().epoch)
    }
}

/// An exclusive lock on `<path>.lock`, held until the file returned is dropped (a lock file
/// beside `path` rather than `path` itself, which each store replaces by renaming).
fn lock_beside(path: &Path) -> std::io::Result<std::fs::File> {
    let mut name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?
        .to_os_string();
    name.push(".lock");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_file_name(name))?;
    file.lock()?;
    Ok(file)
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
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);

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
    // A temporary name of this process and call alone: two processes writing the same file must
    // not write (or rename away) each other's temporary file. `create_new` makes a fresh file,
    // so a private file is born with mode 0600 (a mode applies only to a file being created).
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = parent {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::checkpoint::Checkpoint;
    use kt_core::note::{KeyName, NoteSigner};

    fn signed(signer: &NoteSigner, epoch: u64) -> SignedCheckpoint {
        let mut cp = Checkpoint::genesis(signer.name().as_str(), 1_000 + epoch);
        cp.epoch = epoch;
        SignedCheckpoint::sign(cp, signer).unwrap()
    }

    #[test]
    fn the_stored_checkpoint_never_moves_back_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let signer = NoteSigner::from_seed(KeyName::new("example.com/log").unwrap(), [1; 32]);
        let verifier = signer.verifier();
        // Two handles on one file, as two `kt` processes would hold.
        let mut a = TrustedStateFile::open(path.clone(), &verifier).unwrap();
        let mut b = TrustedStateFile::open(path.clone(), &verifier).unwrap();
        a.store(&signed(&signer, 1)).unwrap();
        b.store(&signed(&signer, 5)).unwrap();
        a.store(&signed(&signer, 3)).unwrap();
        assert_eq!(a.checkpoint().unwrap().checkpoint().epoch, 3, "in memory");
        let on_disk = TrustedStateFile::open(path.clone(), &verifier).unwrap();
        assert_eq!(on_disk.checkpoint().unwrap().checkpoint().epoch, 5);
        a.store(&signed(&signer, 6)).unwrap();
        let on_disk = TrustedStateFile::open(path, &verifier).unwrap();
        assert_eq!(on_disk.checkpoint().unwrap().checkpoint().epoch, 6);
    }

    #[test]
    fn concurrent_stores_never_move_the_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let signer = NoteSigner::from_seed(KeyName::new("example.com/log").unwrap(), [1; 32]);
        let verifier = signer.verifier();
        let notes: Vec<SignedCheckpoint> = (0..120).map(|e| signed(&signer, e)).collect();
        // Four handles, as four `kt` processes would hold, each storing epochs that interleave
        // with the others'. After each store returns, the file holds that epoch or a later one.
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let (path, verifier, notes) = (path.clone(), verifier.clone(), &notes);
                scope.spawn(move || {
                    let mut mine = TrustedStateFile::open(path.clone(), &verifier).unwrap();
                    for epoch in (t..120).step_by(4) {
                        mine.store(&notes[epoch as usize]).unwrap();
                        let on_disk = TrustedStateFile::open(path.clone(), &verifier).unwrap();
                        let stored = on_disk.checkpoint().unwrap().checkpoint().epoch;
                        assert!(
                            stored >= epoch,
                            "stored {epoch}, the file went back to {stored}"
                        );
                    }
                });
            }
        });
        let on_disk = TrustedStateFile::open(path, &verifier).unwrap();
        assert_eq!(on_disk.checkpoint().unwrap().checkpoint().epoch, 119);
    }

    #[test]
    fn concurrent_atomic_writes_neither_fail_nor_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.json");
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomically(&path, &[t; 4096]).unwrap();
                        write_private_atomically(&path, &[t; 4096]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content.len(), 4096);
        assert!(
            content.iter().all(|&b| b == content[0]),
            "one writer's bytes"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
    }
}
