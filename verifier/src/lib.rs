//! `kt-audit`: the standalone auditor. It trusts nothing the server says that it cannot check:
//! it downloads every entry, recomputes the tree, and checks every checkpoint's signature, chain
//! link (consecutive epochs, `prev` hash, growing tree, non-decreasing time), root, and the
//! server's consistency proofs. It replays every entry through the directory's rules and
//! recomputes every checkpoint's map root ([`replay`]). Optionally it compares the HTTP tiles
//! with what it recomputed. On any violation it writes an evidence file that anyone can re-check
//! with the log's key.
//!
//! The on-disk state keeps the last audited checkpoint and the tree's right border, not the
//! directory: on every start the directory is replayed from entry 0 up to the stored checkpoint
//! (whose root the re-downloaded entries must give, and whose map root the replay must give),
//! then the audit continues epoch by epoch (`docs/operations.md`, "Auditing").
//!
//! With a witness key ([`Auditor::set_witness`]) it is also a witness: see [`witness`].

mod evidence;
mod fetch;
pub mod replay;
mod state;
mod tiles;
pub mod witness;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kt_client::{LogApi, TlsOptions};
use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::hash::{empty_root, leaf_hash, Hash};
use kt_core::merkle::{verify_consistency, verify_inclusion, Frontier, NodeId};
use kt_core::note::NoteVerifier;
use kt_core::tiles::{stored_position, TILE_WIDTH};
use kt_core::trust;

pub use evidence::{ClockEvidence, EntryEvidence, Finding, MapChange, ReplayEvidence};
use fetch::EntryChunks;
pub use replay::{Replay, ReplayViolation};
pub use state::AuditState;
use tiles::TileChecker;
use witness::Witness;

/// The state is saved at least every this many checkpoints (and whenever entries were added).
const SAVE_EVERY: u64 = 256;

/// A fetched chunk of entries prepared on every core for the replay, or nothing once the replay
/// has found a violation (the rest of the walk only recomputes the tree).
fn prepare_unless(
    violation_found: bool,
    entries: &[Vec<u8>],
) -> std::vec::IntoIter<replay::PreparedEntry> {
    if violation_found {
        Vec::new().into_iter()
    } else {
        replay::prepare_entries(entries).into_iter()
    }
}

/// Where and what to audit.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub server: String,
    pub log_key: String,
    pub state_dir: PathBuf,
    pub evidence_dir: PathBuf,
    /// Base URL of the HTTP tiles (e.g. `http://127.0.0.1:8080`); compared when given.
    pub tiles_url: Option<String>,
    pub progress: bool,
}

/// How an audit ended.
#[derive(Debug)]
pub enum Outcome {
    /// Everything up to this checkpoint verified.
    Clean { epoch: u64, size: u64 },
    /// The log misbehaved; the evidence is in the file.
    Violation {
        finding: Box<Finding>,
        evidence_file: PathBuf,
    },
}

/// The auditor.
#[derive(Debug)]
pub struct Auditor {
    api: LogApi,
    verifier: NoteVerifier,
    state: AuditState,
    state_path: PathBuf,
    evidence_dir: PathBuf,
    tiles: Option<TileChecker>,
    progress: ProgressBar,
    unsaved: u64,
    /// The directory as of `state.frontier` (rebuilt on start: see [`Auditor::resume_replay`]).
    replay: Replay,
    /// Set when this auditor is also a witness.
    witness: Option<Witness>,
    /// How far a checkpoint's time may be ahead of this auditor's clock ([`Auditor::set_max_ahead`]).
    max_ahead: Duration,
}

impl Auditor {
    /// Connects and loads the state of a previous run, if any.
    pub async fn new(config: AuditConfig) -> anyhow::Result<Self> {
        Self::with_tls(config, &TlsOptions::default()).await
    }

    /// [`Auditor::new`] with TLS options, for an `https://` server and tiles URL.
    pub async fn with_tls(config: AuditConfig, tls: &TlsOptions) -> anyhow::Result<Self> {
        let api = LogApi::connect_tls(&config.server, &config.log_key, tls).await?;
        let tiles = match config.tiles_url {
            Some(url) => Some(TileChecker::new(
                url,
                api.verifier().clone(),
                // Same timeouts for every kind of read; get_bounded enforces them again.
                tls.http_client(tiles::ENTRY_BUNDLE_LIMIT.client_builder())?,
            )),
            None => None,
        };
        let verifier = api.verifier().clone();
        std::fs::create_dir_all(&config.state_dir)?;
        let state_path = config.state_dir.join("audit-state.json");
        let state = AuditState::load(&state_path, &verifier)?;
        let progress = if config.progress {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        progress.set_style(
            ProgressStyle::with_template(
                "{spinner} epoch {msg} [{bar:30}] {pos}/{len} entries ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Ok(Auditor {
            api,
            tiles,
            verifier,
            state,
            state_path,
            evidence_dir: config.evidence_dir,
            progress,
            unsaved: 0,
            replay: Replay::new(),
            witness: None,
            max_ahead: kt_client::DEFAULT_MAX_AHEAD,
        })
    }

    /// Makes this auditor a witness: from now on each checkpoint whose audit step passes is
    /// cosigned with `cosigner` and submitted to the server. The witness state lives in the
    /// state directory ([`witness::WITNESS_STATE_FILE`]).
    pub fn set_witness(&mut self, cosigner: kt_core::cosignature::Cosigner) -> anyhow::Result<()> {
        let dir = self
            .state_path
            .parent()
            .expect("the state file is in the state directory");
        self.witness = Some(Witness::open(cosigner, dir, &self.verifier)?);
        Ok(())
    }

    /// How far ahead of this auditor's clock a checkpoint's `time` may be (default
    /// [`kt_client::DEFAULT_MAX_AHEAD`]): a checkpoint dated later is a `future-checkpoint`
    /// finding, and a witness does not cosign it. Checked against the clock at the moment of
    /// auditing, so auditing an old log later never flags its honest checkpoints.
    pub fn set_max_ahead(&mut self, max_ahead: Duration) {
        self.max_ahead = max_ahead;
    }

    /// The total timeout of each HTTP read of the tiles (default
    /// [`kt_client::http::DEFAULT_TIMEOUT`]; `kt-audit --http-timeout`).
    pub fn set_http_timeout(&mut self, timeout: Duration) {
        if let Some(tiles) = &mut self.tiles {
            tiles.set_timeout(timeout);
        }
    }

    /// [`trust::check_not_ahead`] against this auditor's clock, as a finding.
    fn future_finding(&self, cp: &SignedCheckpoint, what: &str) -> Option<Finding> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let future =
            trust::check_not_ahead(cp.checkpoint(), now, self.max_ahead.as_millis() as u64)
                .err()?;
        Some(Finding::future(&future, cp, format!("{future}; {what}")))
    }

    /// The witness, if this auditor is one.
    pub fn witness(&self) -> Option<&Witness> {
        self.witness.as_ref()
    }

    /// The verified state.
    pub fn state(&self) -> &AuditState {
        &self.state
    }

    /// Audits every checkpoint up to the latest one published when the call starts.
    pub async fn run_once(&mut self) -> anyhow::Result<Outcome> {
        let latest = self.api.checkpoint(None).await?;
        self.progress.set_length(latest.checkpoint().size);
        self.progress.set_position(self.state.frontier.size());
        let target = latest.checkpoint().epoch;
        let outcome = self.audit_until(Some(target)).await?;
        if let (Outcome::Clean { .. }, Some(tiles)) = (&outcome, &self.tiles) {
            if let Some(cp) = &self.state.checkpoint {
                if let Err(finding) = tiles.check_tail(cp, &self.state.pending_tiles).await? {
                    return self.report(finding);
                }
            }
        }
        self.progress.finish_and_clear();
        Ok(outcome)
    }

    /// Audits everything, then each new checkpoint as it is published; returns only on a
    /// violation or an error.
    pub async fn follow(&mut self) -> anyhow::Result<Outcome> {
        self.audit_until(None).await
    }

    async fn audit_until(&mut self, target: Option<u64>) -> anyhow::Result<Outcome> {
        if let Some(finding) = self.recheck_stored().await? {
            return self.report(finding);
        }
        if let Some(finding) = self.resume_replay().await? {
            return self.report(finding);
        }
        if self.state.checkpoint.is_none() {
            let genesis = self.api.checkpoint(Some(0)).await?;
            if let Some(finding) = self.audit_checkpoint(genesis).await? {
                return self.report(finding);
            }
        }
        // The last audited checkpoint may not have been cosigned (or its cosignature may not
        // have reached the server) before a restart.
        if let Some(cp) = self.state.checkpoint.clone() {
            if let Some(finding) = self.cosign(&cp).await? {
                return self.report(finding);
            }
        }
        let after = self.state.checkpoint.as_ref().map(|c| c.checkpoint().epoch);
        if target.is_some_and(|t| Some(t) <= after) {
            self.save()?;
            return Ok(self.clean());
        }
        let mut stream = Box::pin(self.api.watch(after).await?);
        while let Some(item) = stream.next().await {
            let cp = item?;
            let epoch = cp.checkpoint().epoch;
            let again = self
                .state
                .checkpoint
                .as_ref()
                .is_some_and(|done| done.checkpoint() == cp.checkpoint());
            if again {
                // The server delivers a checkpoint again when it gains a cosignature: the body
                // was audited (and cosigned) already.
            } else {
                if let Some(finding) = self.audit_checkpoint(cp.clone()).await? {
                    return self.report(finding);
                }
                if let Some(finding) = self.cosign(&cp).await? {
                    return self.report(finding);
                }
            }
            if target.is_some_and(|t| epoch >= t) {
                break;
            }
        }
        self.save()?;
        Ok(self.clean())
    }

    fn clean(&self) -> Outcome {
        let cp = self.state.checkpoint.as_ref().map(|c| c.checkpoint());
        Outcome::Clean {
            epoch: cp.map_or(0, |c| c.epoch),
            size: cp.map_or(0, |c| c.size),
        }
    }

    /// After a restart: the server must still serve the checkpoint we audited for its epoch.
    async fn recheck_stored(&mut self) -> anyhow::Result<Option<Finding>> {
        let Some(stored) = self.state.checkpoint.clone() else {
            return Ok(None);
        };
        let latest = self.api.checkpoint(None).await?;
        if latest.checkpoint().epoch < stored.checkpoint().epoch {
            return Ok(trust::advance(&stored, &latest, &[])
                .err()
                .map(Finding::from));
        }
        let served = self.api.checkpoint(Some(stored.checkpoint().epoch)).await?;
        Ok(trust::advance(&stored, &served, &[])
            .err()
            .map(Finding::from))
    }

    /// Rebuilds the directory up to the stored checkpoint, which the state file does not keep:
    /// downloads entries 0 to its size again, requires them to give its root, replays them and
    /// requires the replay to give its map root. The map roots of earlier epochs were checked
    /// when they were audited; the map's root does not depend on how updates were cut into
    /// epochs, so the whole prefix replays as one. A no-op when the replay is already there.
    async fn resume_replay(&mut self) -> anyhow::Result<Option<Finding>> {
        let Some(stored) = self.state.checkpoint.clone() else {
            return Ok(None);
        };
        let cp = stored.checkpoint();
        if self.replay.last_epoch() == Some(cp.epoch) && self.replay.next_index() == cp.size {
            return Ok(None);
        }
        self.replay = Replay::new();
        self.progress
            .set_message(format!("{} (replaying the directory)", cp.epoch));
        self.progress.set_position(0);
        let mut frontier = Frontier::new();
        let mut violation = None;
        let mut chunks = EntryChunks::new(&self.api, 0, cp.size);
        while let Some((start, entries)) = chunks.next().await? {
            let mut prepared = prepare_unless(violation.is_some(), &entries);
            for (i, entry) in entries.into_iter().enumerate() {
                let index = start + i as u64;
                frontier.append(leaf_hash(&entry));
                if let (None, Some(ready)) = (&violation, prepared.next()) {
                    if let Err(v) = self.replay.apply_prepared(index, &entry, ready) {
                        violation = Some((v, entry));
                    }
                }
            }
            self.progress.set_position(frontier.size());
        }
        if frontier.root() != cp.root {
            return Ok(Some(Finding::single(
                "root-mismatch",
                format!(
                    "the {} entries downloaded again on resume do not give the root of the audited checkpoint",
                    cp.size
                ),
                &stored,
            )));
        }
        let violation = match violation {
            Some((v, entry)) => Some((v, Some(entry))),
            None => self.replay.finish_epoch(cp).err().map(|v| (v, None)),
        };
        match violation {
            Some((v, entry)) => Ok(Some(
                self.replay_finding(v, entry.as_deref(), &[&stored]).await?,
            )),
            None => Ok(None),
        }
    }

    /// Turns a replay violation into a finding, adding the server's inclusion proofs of the
    /// offending entry and of the entry it was compared with in the last of `checkpoints`.
    /// Proofs are best effort (checked, and left out if they do not verify), so that a server
    /// refusing them cannot suppress the finding.
    async fn replay_finding(
        &self,
        v: ReplayViolation,
        entry: Option<&[u8]>,
        checkpoints: &[&SignedCheckpoint],
    ) -> anyhow::Result<Finding> {
        anyhow::ensure!(v.is_log_violation(), "auditor bug: {v}");
        let last = checkpoints
            .last()
            .expect("a replay finding names its checkpoint")
            .checkpoint();
        let mut offending = None;
        if let (Some(index), Some(bytes)) = (v.index(), entry) {
            offending = Some(self.proven_entry(index, bytes, last).await);
        }
        let mut prior = None;
        if let Some(index) = v.prior() {
            if let Ok(mut bytes) = self.api.entries(index, index + 1).await {
                if let Some(bytes) = bytes.pop() {
                    // Only bytes whose inclusion verifies are evidence.
                    prior = Some(self.proven_entry(index, &bytes, last).await)
                        .filter(|e| e.inclusion_proof.is_some());
                }
            }
        }
        Ok(Finding::from_replay(
            &v,
            checkpoints,
            offending.zip(entry),
            prior,
            self.replay.refused_changes(),
        ))
    }

    /// An entry with the server's inclusion proof in `cp`, if that proof verifies.
    async fn proven_entry(&self, index: u64, bytes: &[u8], cp: &Checkpoint) -> EntryEvidence {
        let proof = match self.api.inclusion_proof(index, cp.size).await {
            Ok(proof)
                if verify_inclusion(&leaf_hash(bytes), index, cp.size, &proof, &cp.root)
                    .is_ok() =>
            {
                Some(proof)
            }
            _ => None,
        };
        EntryEvidence::new(index, bytes, proof.as_deref())
    }

    /// Checks one checkpoint against everything audited before it.
    async fn audit_checkpoint(&mut self, cp: SignedCheckpoint) -> anyhow::Result<Option<Finding>> {
        let prev = self.state.checkpoint.clone();
        match &prev {
            None => {
                let c = cp.checkpoint();
                if c.epoch != 0 || c.size != 0 || c.root != empty_root() || c.prev != [0u8; 32] {
                    return Ok(Some(Finding::single(
                        "bad-genesis",
                        "the first checkpoint must be epoch 0 of the empty tree with a zero prev hash",
                        &cp,
                    )));
                }
            }
            Some(p) => {
                if let Err(v) = trust::check_link(p, &cp) {
                    return Ok(Some(v.into()));
                }
            }
        }
        let what = if self.witness.is_some() {
            "not cosigned"
        } else {
            "refused"
        };
        if let Some(finding) = self.future_finding(&cp, what) {
            return Ok(Some(finding));
        }
        let target = cp.checkpoint().size;
        self.progress.set_message(cp.checkpoint().epoch.to_string());
        if target > self.progress.length().unwrap_or(0) {
            self.progress.set_length(target);
        }
        // The first entry the directory refuses. It is reported only once the checkpoint's root
        // is known to commit to it, so the evidence is about what the log signed.
        let mut violation = None;
        // This checkpoint first includes the entries below: key updates' times are held to its.
        self.replay.begin_epoch(cp.checkpoint());
        let mut chunks = EntryChunks::new(&self.api, self.state.frontier.size(), target);
        while let Some((start, entries)) = chunks.next().await? {
            let mut prepared = prepare_unless(violation.is_some(), &entries);
            for (i, entry) in entries.into_iter().enumerate() {
                let index = start + i as u64;
                if let (None, Some(ready)) = (&violation, prepared.next()) {
                    if let Err(v) = self.replay.apply_prepared(index, &entry, ready) {
                        violation = Some((v, entry.clone()));
                    }
                }
                for (node, hash) in self.state.frontier.append(leaf_hash(&entry)) {
                    if let Some(finding) = self.record_tile_hash(node, hash, &cp).await? {
                        return Ok(Some(finding));
                    }
                }
            }
            self.progress.set_position(self.state.frontier.size());
        }
        if self.state.frontier.root() != cp.checkpoint().root {
            return Ok(Some(Finding::single(
                "root-mismatch",
                format!(
                    "the root recomputed from the {target} downloaded entries differs from the signed root"
                ),
                &cp,
            )));
        }
        if let Some(p) = &prev {
            let (old, new) = (p.checkpoint(), cp.checkpoint());
            if old.size > 0 && old.size < new.size {
                let proof = self.api.consistency_proof(old.size, new.size).await?;
                if let Err(e) = verify_consistency(old.size, new.size, &proof, &old.root, &new.root)
                {
                    return Ok(Some(Finding::pair(
                        "bad-consistency-proof",
                        format!("the server's consistency proof does not verify: {e}"),
                        p,
                        &cp,
                        &proof,
                    )));
                }
            }
        }
        let violation = match violation {
            Some((v, entry)) => Some((v, Some(entry))),
            None => self
                .replay
                .finish_epoch(cp.checkpoint())
                .err()
                .map(|v| (v, None)),
        };
        if let Some((v, entry)) = violation {
            let checkpoints: Vec<&SignedCheckpoint> = prev.iter().chain([&cp]).collect();
            return Ok(Some(
                self.replay_finding(v, entry.as_deref(), &checkpoints)
                    .await?,
            ));
        }
        let grew = prev.as_ref().map(|p| p.checkpoint().size) != Some(target);
        self.state.checkpoint = Some(cp);
        self.unsaved += 1;
        if grew || self.unsaved >= SAVE_EVERY {
            self.save()?;
        }
        Ok(None)
    }

    /// The witness step, for a checkpoint whose audit step just passed: refuse it if it conflicts
    /// with the checkpoint this witness cosigned last (same epoch and another body, or a tree
    /// that is not proven to extend it), else record it durably, cosign it and submit the
    /// cosignature. A checkpoint older than the cosigned one (an audit catching up after its own
    /// state was lost) is not cosigned; the walk reaches the cosigned epoch, where any other
    /// body is a fork. A server that refuses the cosignature is reported, not a finding.
    async fn cosign(&mut self, cp: &SignedCheckpoint) -> anyhow::Result<Option<Finding>> {
        let Some(witness) = &self.witness else {
            return Ok(None);
        };
        // Audited already, but perhaps before a restart, when it was not yet this far ahead.
        if let Some(finding) = self.future_finding(cp, "this witness does not cosign it") {
            let epoch = cp.checkpoint().epoch;
            tracing::warn!(epoch, "refusing to cosign: {}", finding.detail);
            eprintln!(
                "kt-audit: refusing to cosign epoch {epoch}: {}",
                finding.detail
            );
            return Ok(Some(finding));
        }
        if let Some(prev) = witness.cosigned().cloned() {
            let (p, n) = (prev.checkpoint(), cp.checkpoint());
            if n.epoch < p.epoch {
                return Ok(None);
            }
            let proof = if n.epoch > p.epoch && p.size > 0 && p.size < n.size {
                self.api.consistency_proof(p.size, n.size).await?
            } else {
                Vec::new()
            };
            if let Err(v) = trust::advance(&prev, cp, &proof) {
                let mut finding = Finding::from(v);
                finding.detail = format!(
                    "asked to cosign a checkpoint that conflicts with the one this witness cosigned: {}",
                    finding.detail
                );
                return Ok(Some(finding));
            }
        }
        let witness = self.witness.as_mut().expect("checked above");
        let cosignature = witness.commit_and_cosign(cp, &self.verifier)?;
        let epoch = cp.checkpoint().epoch;
        if let Err(e) = self.api.add_cosignature(epoch, cosignature.to_line()).await {
            tracing::warn!(epoch, error = %e, "the server did not take the cosignature");
            eprintln!("kt-audit: the server did not take the cosignature of epoch {epoch}: {e}");
        }
        Ok(None)
    }

    /// Collects the hashes of tile levels; compares each tile with the server's once it is full.
    async fn record_tile_hash(
        &mut self,
        node: NodeId,
        hash: Hash,
        cp: &SignedCheckpoint,
    ) -> anyhow::Result<Option<Finding>> {
        let Some((tile_level, index, _)) = stored_position(node) else {
            return Ok(None);
        };
        let level = tile_level as usize;
        if self.state.pending_tiles.len() <= level {
            self.state.pending_tiles.resize(level + 1, Vec::new());
        }
        self.state.pending_tiles[level].push(hash);
        if self.state.pending_tiles[level].len() as u64 == TILE_WIDTH {
            let hashes = std::mem::take(&mut self.state.pending_tiles[level]);
            if let Some(tiles) = &self.tiles {
                if let Err(finding) = tiles.check_tile(tile_level, index, &hashes, cp).await? {
                    return Ok(Some(finding));
                }
            }
        }
        Ok(None)
    }

    fn save(&mut self) -> anyhow::Result<()> {
        self.state.save(&self.state_path, &self.verifier)?;
        self.unsaved = 0;
        Ok(())
    }

    fn report(&mut self, finding: Finding) -> anyhow::Result<Outcome> {
        self.progress.abandon();
        std::fs::create_dir_all(&self.evidence_dir)?;
        let path = self.evidence_dir.join(format!(
            "evidence-epoch-{}-{}.json",
            finding.epoch, finding.kind
        ));
        let json = serde_json::to_vec_pretty(&finding)?;
        kt_client::write_atomically(&path, &json)?;
        Ok(Outcome::Violation {
            finding: Box::new(finding),
            evidence_file: path,
        })
    }
}
