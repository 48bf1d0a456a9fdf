//! The scale test's loader: registers millions of identities in a stopped `ktd`'s storage
//! through the sequencer's real write path (the directory's rules with each signature checked,
//! the map update, the root rebuilt from storage before signing, the signed checkpoint, one
//! synced `WriteBatch` per epoch). Only gRPC is bypassed: at a few thousand registrations a
//! second, ten million would take hours over the API, and the scale test measures reads.
//!
//! Identities are the ones `kt-bench --skip-setup` expects (see [`crate::identities`]), so a
//! load generator run against the loaded server verifies every key it is shown.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use kt_core::directory::{KeyUpdate, Op, Role};
use ktd::config::{Config, KeySource, RawConfig};
use ktd::sequencer::{now_ms, Sequencer};
use ktd::startup::{recover, StartupCheck};
use ktd::storage::Storage;
use ktd::vrf_labels::{LabelProof, VrfLabels};

use crate::config::KeyAlg;
use crate::error::BenchError;
use crate::identities::{signer_for, user_identifier};

/// Identities prepared per unit of work handed to a preparing thread.
const CHUNK: u64 = 1_000;

/// One registration, ready to sequence, and the VRF proof to store once it is in the log.
struct Prepared {
    entry: Vec<u8>,
    identifier: String,
    proof: LabelProof,
}

/// What loading took.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub registered: u64,
    pub epochs: u64,
    /// Wall-clock time of the whole load.
    pub secs: f64,
    /// Time in the sequencer's commit (rules, signature checks, map update, signing, sync).
    pub commit_secs: f64,
    /// Commit time per entry over the last tenth of the load, in µs: the cost of a map update
    /// at this size, not averaged with the cheaper updates of a smaller map.
    pub commit_us_per_entry_at_end: f64,
}

fn err(what: impl std::fmt::Display) -> BenchError {
    BenchError::Scale(what.to_string())
}

/// Registers identities of `prefix` (version 1, keys of `alg`) in the stopped server's data
/// directory, in epochs of `epoch_size`, until its log holds `to` entries. The log must hold
/// nothing else than this loader's registrations of `prefix`, in order: the log's size says
/// how many are loaded already. `progress` is called after each epoch with the log's size and
/// `to`. `None` when nothing was left to load.
pub fn load_users(
    data_dir: &Path,
    prefix: &str,
    alg: KeyAlg,
    to: u64,
    epoch_size: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Option<LoadStats>, BenchError> {
    let storage = Arc::new(Storage::open(data_dir).map_err(err)?);
    // The log's own origin (a new log records it on its first start), which names its key.
    let origin = storage.meta("origin").map_err(err)?.ok_or_else(|| {
        err(format!(
            "{} has no log: start ktd on it once first, so that it makes its keys",
            data_dir.display()
        ))
    })?;
    let config = Config::validate(RawConfig {
        data_dir: Some(data_dir.to_owned()),
        origin: Some(origin),
        ..RawConfig::default()
    })
    .map_err(err)?;
    let (KeySource::File(key_file), KeySource::File(_)) = (&config.key, &config.vrf_key) else {
        return Err(err(format!(
            "{} has a log but not its keys in the default places",
            data_dir.display()
        )));
    };
    let signer = ktd::keys::load(key_file, &config.origin).map_err(err)?;
    let vrf = ktd::vrf_labels::load_or_create(&config.vrf_key).map_err(err)?;
    let recovered = recover(
        &storage,
        &config.origin,
        &signer.verifier(),
        StartupCheck::Quick,
    )
    .map_err(err)?;
    let from = recovered.frontier.size();
    if from >= to {
        return Ok(None);
    }
    let (mut sequencer, _) = Sequencer::new(
        storage.clone(),
        signer,
        recovered.frontier,
        recovered.latest,
    )
    .map_err(err)?;

    let started = Instant::now();
    let mut stats = LoadStats::default();
    let tail_from = to - (to - from) / 10;
    let (mut tail_entries, mut tail_secs) = (0u64, 0f64);
    let next_chunk = AtomicU64::new(from);
    let preparers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| -> Result<(), BenchError> {
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<Prepared>, BenchError>>(2 * preparers);
        for _ in 0..preparers {
            let (tx, vrf, storage, next_chunk) = (tx.clone(), &vrf, &storage, &next_chunk);
            scope.spawn(move || loop {
                let start = next_chunk.fetch_add(CHUNK, Ordering::Relaxed);
                if start >= to {
                    return;
                }
                let chunk = (start..(start + CHUNK).min(to))
                    .map(|i| prepare(vrf, storage, &user_identifier(prefix, i), alg))
                    .collect();
                if tx.send(chunk).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut pending: Vec<Prepared> = Vec::new();
        let mut more = true;
        while more {
            match rx.recv() {
                Ok(chunk) => pending.extend(chunk?),
                Err(_) => more = false,
            }
            while pending.len() >= epoch_size || (!more && !pending.is_empty()) {
                let take = pending.len().min(epoch_size);
                let batch: Vec<Prepared> = pending.drain(..take).collect();
                let entries = batch.iter().map(|p| p.entry.clone()).collect();
                let commit_started = Instant::now();
                let outcomes = sequencer.commit_epoch_for_benches(entries).map_err(err)?;
                let secs = commit_started.elapsed().as_secs_f64();
                if let Some((p, Err(why))) = batch.iter().zip(&outcomes).find(|(_, o)| o.is_err()) {
                    return Err(err(format!(
                        "registering {}: {why} (load into a fresh data directory, or use \
                         another --prefix)",
                        p.identifier
                    )));
                }
                // As the server does after a registration lands: keep its proof for lookups.
                for p in &batch {
                    vrf.remember(&storage, &p.identifier, &p.proof)
                        .map_err(err)?;
                }
                stats.registered += batch.len() as u64;
                stats.epochs += 1;
                stats.commit_secs += secs;
                if from + stats.registered > tail_from {
                    tail_entries += batch.len() as u64;
                    tail_secs += secs;
                }
                progress(from + stats.registered, to);
            }
        }
        Ok(())
    })?;
    stats.secs = started.elapsed().as_secs_f64();
    stats.commit_us_per_entry_at_end = if tail_entries > 0 {
        tail_secs * 1e6 / tail_entries as f64
    } else {
        0.0
    };
    Ok(Some(stats))
}

/// `identifier`'s label (a VRF output, as the server computes it) and its signed registration.
fn prepare(
    vrf: &VrfLabels,
    storage: &Storage,
    identifier: &str,
    alg: KeyAlg,
) -> Result<Prepared, BenchError> {
    let proof = vrf.label(storage, identifier).map_err(err)?;
    let signer = signer_for(identifier, 1, alg);
    let entry = KeyUpdate::new(
        proof.label,
        1,
        [0; 32],
        Op::Register,
        Some(signer.public()),
        now_ms(),
    )
    .and_then(|u| u.sign(Role::NewKey, &signer))
    .map_err(err)?
    .encode();
    Ok(Prepared {
        entry,
        identifier: identifier.to_owned(),
        proof,
    })
}
