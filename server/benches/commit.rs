//! One epoch through ktd's real write path on RocksDB in a temp directory: the rules for each
//! entry, the map update, the root rebuilt from storage before signing, the signature, and the
//! synced `WriteBatch`. Two kinds of epoch: message-log records (1,000 and 10,000 per epoch) and
//! key registrations (1,000 per epoch, each with its Ed25519 signature checked and a map update).
//!
//! `cargo bench -p ktd --bench commit` (see docs/performance.md). Under `cargo test` each runs
//! once on small epochs.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use kt_core::directory::{KeyUpdate, Label, Op, Role, UserSigner};
use kt_core::entry::{Entry, Namespace, Record};
use kt_core::hash::sha256;
use kt_core::merkle::Frontier;
use kt_core::note::{KeyName, NoteSigner};
use ktd::sequencer::Sequencer;
use ktd::storage::Storage;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A fresh log in a temp directory (kept alive by the returned guard).
fn fresh_log() -> (tempfile::TempDir, Sequencer) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(dir.path()).unwrap());
    let signer = NoteSigner::from_seed(KeyName::new("bench.keytrail/log").unwrap(), [7; 32]);
    let (sequencer, _) = Sequencer::new(storage, signer, Frontier::new(), None).unwrap();
    (dir, sequencer)
}

fn record(n: u64) -> Vec<u8> {
    let record = Record::new(
        Namespace::new("bench").unwrap(),
        format!("record {n} with a payload of about the size of a chat message").into_bytes(),
    );
    Entry::Record(record.unwrap()).encode()
}

fn registration(n: u64) -> Vec<u8> {
    let label = Label::from_bytes(sha256(&n.to_be_bytes()));
    let mut seed = [1u8; 32];
    seed[..8].copy_from_slice(&n.to_be_bytes());
    let user = UserSigner::ed25519_from_seed(seed);
    // Dated now: the sequencer refuses an update more than MAX_UPDATE_SKEW_MS from its epoch.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(user.public()), now_ms)
        .unwrap()
        .sign(Role::NewKey, &user)
        .unwrap()
        .encode()
}

/// A kind of entry: its name, how to make the n-th one, and the epoch sizes to measure.
type EntryKind = (&'static str, fn(u64) -> Vec<u8>, &'static [u64]);

fn epochs(c: &mut Criterion) {
    let mut g = c.benchmark_group("epoch-commit");
    g.sample_size(10);
    let kinds: [EntryKind; 2] = [
        ("records", record, &[1_000, 10_000]),
        ("registrations", registration, &[1_000]),
    ];
    for (kind, make, sizes) in kinds {
        for &size in sizes {
            // Under `cargo test`, one small epoch per case, still named by its real size.
            let id = BenchmarkId::new(kind, size);
            let size = if benchmarking() { size } else { 10 };
            let (_dir, mut sequencer) = fresh_log();
            let mut next = 0u64;
            g.throughput(Throughput::Elements(size));
            g.bench_function(id, |b| {
                b.iter_batched(
                    || {
                        let batch: Vec<Vec<u8>> = (next..next + size).map(make).collect();
                        next += size;
                        batch
                    },
                    |batch| {
                        let outcomes = sequencer.commit_epoch_for_benches(batch).unwrap();
                        assert!(outcomes.iter().all(|o| o.is_ok()));
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, epochs);
criterion_main!(benches);
