//! The witness (c2sp.org/tlog-cosignature v1): `kt-audit --witness-key <file>` cosigns each
//! checkpoint only after the audit step for it passed (signature, chain link, every entry, the
//! root, the server's consistency proof, the directory replay and the map root), and submits the
//! cosignature to the log's `Witnessing` service.
//!
//! What it cosigned is kept in `witness-state.json` next to the audit state, written atomically
//! (temporary file, fsync, rename) *before* the cosignature is made, so that after a crash or a
//! restart it never cosigns a checkpoint that conflicts with one it may already have released:
//! not a second checkpoint for a cosigned epoch, not one whose tree does not extend the cosigned
//! one. The state is separate from the audit state on purpose: a witness whose audit state is lost
//! or reset still holds its promise. Being asked to break it is a finding, with both notes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::cosignature::{Cosignature, Cosigner};
use kt_core::note::{KeyName, Note, NoteVerifier};
use serde::{Deserialize, Serialize};

/// File name of the witness state in the state directory.
pub const WITNESS_STATE_FILE: &str = "witness-state.json";

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    log_key: String,
    witness_key: String,
    /// The newest checkpoint this witness cosigned: the log's signature and this witness's
    /// cosignature line (what the witness gives out as gossip).
    cosigned: Option<String>,
}

/// A witness's key and what it cosigned.
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    path: PathBuf,
    cosigned: Option<SignedCheckpoint>,
}

impl Witness {
    /// Loads the witness state in `state_dir` for this key and log, or starts an empty one.
    pub fn open(
        cosigner: Cosigner,
        state_dir: &Path,
        log_key: &NoteVerifier,
    ) -> anyhow::Result<Self> {
        let path = state_dir.join(WITNESS_STATE_FILE);
        let cosigned = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let disk: OnDisk = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{} is not a witness state: {e}", path.display())
                })?;
                anyhow::ensure!(
                    disk.log_key == log_key.to_string(),
                    "{} is for log key {}, not {log_key}",
                    path.display(),
                    disk.log_key
                );
                anyhow::ensure!(
                    disk.witness_key == cosigner.verifier().to_string(),
                    "{} is for witness key {}, not {}",
                    path.display(),
                    disk.witness_key,
                    cosigner.verifier()
                );
                disk.cosigned
                    .map(|n| SignedCheckpoint::open(n.as_bytes(), log_key.name().as_str(), log_key))
                    .transpose()?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
        };
        Ok(Witness {
            cosigner,
            path,
            cosigned,
        })
    }

    /// The newest checkpoint this witness cosigned, carrying the log's signature and this
    /// witness's cosignature (and no other): its answer to "what did you cosign last?".
    pub fn cosigned(&self) -> Option<&SignedCheckpoint> {
        self.cosigned.as_ref()
    }

    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// Cosigns `cp` at the current time and records it durably; only then may the caller
    /// release the cosignature.
    pub(crate) fn commit_and_cosign(
        &mut self,
        cp: &SignedCheckpoint,
        log_key: &NoteVerifier,
    ) -> anyhow::Result<Cosignature> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cosignature = self.cosigner.cosign(&cp.checkpoint().body(), now)?;
        let note = own_note(cp, log_key, &cosignature)?;
        let signed = SignedCheckpoint::open(note.as_bytes(), log_key.name().as_str(), log_key)?;
        let disk = OnDisk {
            version: 1,
            log_key: log_key.to_string(),
            witness_key: self.cosigner.verifier().to_string(),
            cosigned: Some(note),
        };
        kt_client::write_atomically(&self.path, &serde_json::to_vec_pretty(&disk)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path.display()))?;
        self.cosigned = Some(signed);
        Ok(cosignature)
    }
}

/// The latest checkpoint the witness whose state is in `state_dir` cosigned, as it gives it out
/// (the log's signature and the witness's cosignature), read from its state file; `None` before
/// the first cosignature. Read-only: safe while the witness runs (the file is replaced
/// atomically).
pub fn read_latest(state_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = state_dir.join(WITNESS_STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let disk: OnDisk = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a witness state: {e}", path.display()))?;
            Ok(disk.cosigned)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    }
}

/// Serves `GET /checkpoint` on `listener`: the witness's latest cosigned checkpoint
/// ([`read_latest`]), `404` before the first one. This is what clients gossip with
/// (`kt check-witness`, `docs/protocol.md` §13.4). Runs until the task is dropped.
pub async fn serve_latest(
    listener: tokio::net::TcpListener,
    state_dir: PathBuf,
) -> anyhow::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/checkpoint",
        axum::routing::get(move || {
            let dir = state_dir.clone();
            async move {
                let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
                match tokio::task::spawn_blocking(move || read_latest(&dir)).await {
                    Ok(Ok(Some(note))) => (
                        StatusCode::OK,
                        [
                            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                            (header::CACHE_CONTROL, "no-store"),
                        ],
                        note,
                    )
                        .into_response(),
                    Ok(Ok(None)) => {
                        (StatusCode::NOT_FOUND, text, "nothing cosigned yet\n").into_response()
                    }
                    _ => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        text,
                        "cannot read the witness state\n",
                    )
                        .into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// `cp`'s body with the log's signature line and `cosignature`'s line only.
fn own_note(
    cp: &SignedCheckpoint,
    log_key: &NoteVerifier,
    cosignature: &Cosignature,
) -> anyhow::Result<String> {
    let note = Note::parse(cp.note().as_bytes())?;
    let log_sig = note
        .signatures()
        .iter()
        .find(|s| s.name() == log_key.name() && s.key_id() == log_key.key_id())
        .ok_or_else(|| anyhow::anyhow!("the checkpoint has no signature of the log"))?;
    let mut raw = log_sig.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(log_sig.signature());
    Ok(format!(
        "{}\n\u{2014} {} {}\n{}\n",
        note.text(),
        log_key.name(),
        B64.encode(raw),
        cosignature.to_line()
    ))
}

/// Reads a witness key file (`kt-audit witness-keygen` writes one), which must not be readable by
/// group or others.
pub fn load_key(path: &Path) -> anyhow::Result<Cosigner> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("witness key {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "witness key {} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let _ = meta;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("witness key {}: {e}", path.display()))?;
    Cosigner::parse(&text).map_err(|e| anyhow::anyhow!("witness key {}: {e}", path.display()))
}

/// Writes a new witness key to `path` (mode 0600; refuses to overwrite) and its verifier key to
/// `<path>.pub`.
pub fn generate_key(path: &Path, name: &str) -> anyhow::Result<Cosigner> {
    anyhow::ensure!(
        !path.exists(),
        "{} exists; a witness key is never overwritten",
        path.display()
    );
    let name = KeyName::new(name)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let cosigner = Cosigner::from_seed(name, seed);
    kt_client::write_private_atomically(
        path,
        format!("{}\n", cosigner.to_private_string()).as_bytes(),
    )?;
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    kt_client::write_atomically(
        Path::new(&public),
        format!("{}\n", cosigner.verifier()).as_bytes(),
    )?;
    Ok(cosigner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.key");
        let made = generate_key(&path, "witness.example/w1").unwrap();
        let public = std::fs::read_to_string(dir.path().join("w.key.pub")).unwrap();
        assert_eq!(public.trim(), made.verifier().to_string());
        assert_eq!(load_key(&path).unwrap().verifier(), made.verifier());
        assert!(generate_key(&path, "witness.example/w1").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                load_key(&path).is_err(),
                "a key readable by others is refused"
            );
        }
        assert!(generate_key(&dir.path().join("x.key"), "bad name").is_err());
    }

    #[test]
    fn state_is_for_one_log_and_one_key() {
        use kt_core::checkpoint::Checkpoint;
        use kt_core::note::NoteSigner;
        let dir = tempfile::tempdir().unwrap();
        let log = NoteSigner::from_seed(KeyName::new("log.example").unwrap(), [1; 32]);
        let w = Cosigner::from_seed(KeyName::new("w1").unwrap(), [2; 32]);
        let cp = SignedCheckpoint::sign(Checkpoint::genesis("log.example", 5), &log).unwrap();
        let mut witness = Witness::open(w.clone(), dir.path(), &log.verifier()).unwrap();
        assert!(witness.cosigned().is_none());
        let cosig = witness.commit_and_cosign(&cp, &log.verifier()).unwrap();
        // Written before the cosignature is returned; reopened, it holds the log's signature
        // and this witness's line only.
        let reopened = Witness::open(w.clone(), dir.path(), &log.verifier()).unwrap();
        let note = reopened.cosigned().unwrap().note().to_owned();
        assert!(note.ends_with(&format!("{}\n", cosig.to_line())));
        assert_eq!(note.matches('\u{2014}').count(), 2);
        let parsed = Note::parse(note.as_bytes()).unwrap();
        w.verifier().verify_note(&parsed).unwrap();
        // Another witness key or another log: refused.
        let other = Cosigner::from_seed(KeyName::new("w2").unwrap(), [3; 32]);
        assert!(Witness::open(other, dir.path(), &log.verifier()).is_err());
        let other_log = NoteSigner::from_seed(KeyName::new("log.example").unwrap(), [4; 32]);
        assert!(Witness::open(w, dir.path(), &other_log.verifier()).is_err());
    }
}
