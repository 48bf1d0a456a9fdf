//! The hot paths of the protocol, one group each: log hashing, log proofs, the map (update per
//! key and proofs), user signatures (and Ed25519 in batches), checkpoints, VRF labels, the
//! whole client check of one lookup answer, and the chain checked across a gap of epochs.
//!
//! `cargo bench -p kt-core --bench core` (see docs/performance.md). Under `cargo test` (which
//! `make test` runs with `--all-targets`) every benchmark runs once on small inputs, so the
//! large set-ups (a map of 10^6 labels) are built only when benchmarking.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use kt_core::checkpoint::{Checkpoint, CheckpointOpener, SignedCheckpoint};
use kt_core::directory::{
    apply_update, verify_label, verify_lookup, KeyUpdate, Label, LabelState, LookupAnswer, Op,
    ProvenEntry, Role, UserSigner,
};
use kt_core::hash::{leaf_hash, node_hash, sha256, Hash};
use kt_core::map::{self, MapValue, MemoryMap};
use kt_core::merkle::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, HashReader, NodeId,
};
use kt_core::note::{KeyName, NoteSigner};
use kt_core::vrf::VrfSecretKey;

/// Whether criterion runs as a benchmark (`cargo bench`) rather than once under `cargo test`.
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A complete in-memory tree: every level's nodes, for building proofs of any size.
struct Tree(Vec<Vec<Hash>>);

impl Tree {
    fn new(leaves: u64) -> Tree {
        let mut levels = vec![(0..leaves)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect::<Vec<_>>()];
        while levels.last().unwrap().len() > 1 {
            let next = levels
                .last()
                .unwrap()
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        Tree(levels)
    }

    fn root(&self, size: u64) -> Hash {
        kt_core::merkle::root_hash(self, size).unwrap()
    }
}

impl HashReader for Tree {
    type Error = std::convert::Infallible;
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        Ok(ids
            .iter()
            .map(|id| self.0[id.level as usize][id.index as usize])
            .collect())
    }
}

fn log_hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("log-hashing");
    g.throughput(Throughput::Elements(1));
    let entry = vec![0x5a; 200];
    g.bench_function("leaf hash (200-byte entry)", |b| {
        b.iter(|| leaf_hash(black_box(&entry)))
    });
    let (l, r) = ([1u8; 32], [2u8; 32]);
    g.bench_function("node hash (65 bytes)", |b| {
        b.iter(|| node_hash(black_box(&l), black_box(&r)))
    });
    g.finish();
}

fn log_proofs(c: &mut Criterion) {
    let size: u64 = if benchmarking() { 1 << 20 } else { 1 << 10 };
    let tree = Tree::new(size);
    let root = tree.root(size);
    let old = size / 3 + 7;
    let old_root = tree.root(old);
    let index = size / 2 + 3;
    let leaf = leaf_hash(&index.to_be_bytes());
    let mut g = c.benchmark_group("log-proofs");
    g.bench_function(BenchmarkId::new("inclusion proof build", size), |b| {
        b.iter(|| inclusion_proof(&tree, black_box(index), size).unwrap())
    });
    let proof = inclusion_proof(&tree, index, size).unwrap();
    g.bench_function(BenchmarkId::new("inclusion proof verify", size), |b| {
        b.iter(|| verify_inclusion(&leaf, index, size, black_box(&proof), &root).unwrap())
    });
    g.bench_function(BenchmarkId::new("consistency proof build", size), |b| {
        b.iter(|| consistency_proof(&tree, black_box(old), size).unwrap())
    });
    let proof = consistency_proof(&tree, old, size).unwrap();
    g.bench_function(BenchmarkId::new("consistency proof verify", size), |b| {
        b.iter(|| verify_consistency(old, size, black_box(&proof), &old_root, &root).unwrap())
    });
    g.finish();
}

fn label(n: u64) -> Label {
    Label::from_bytes(sha256(&n.to_be_bytes()))
}

fn value(n: u64, version: u64) -> MapValue {
    MapValue::new(
        version,
        sha256(&[n.to_be_bytes(), version.to_be_bytes()].concat()),
        n,
    )
}

/// A map of `n` labels, built in epochs of 10,000.
fn map_of(n: u64) -> MemoryMap {
    let mut m = MemoryMap::new();
    let mut start = 0;
    while start < n {
        let end = (start + 10_000).min(n);
        m.apply(&(start..end).map(|i| (label(i), value(i, 1))).collect());
        start = end;
    }
    m
}

fn map_ops(c: &mut Criterion) {
    let sizes: &[u64] = if benchmarking() {
        &[10_000, 1_000_000]
    } else {
        &[1_000]
    };
    let mut g = c.benchmark_group("map");
    for &n in sizes {
        let m = map_of(n);
        // One epoch's updates: 1,000 labels, half rotated (existing) and half new.
        let updates: BTreeMap<Label, MapValue> = (0..1_000u64)
            .map(|i| {
                if i % 2 == 0 {
                    let old = (i * 7_919) % n;
                    (label(old), value(old, 2))
                } else {
                    (label(n + i), value(n + i, 1))
                }
            })
            .collect();
        g.throughput(Throughput::Elements(updates.len() as u64));
        g.bench_function(BenchmarkId::new("update 1,000 keys (per key)", n), |b| {
            b.iter(|| map::apply_updates(&m, black_box(&updates)).unwrap())
        });
        g.throughput(Throughput::Elements(1));
        let present = label(n / 2);
        g.bench_function(BenchmarkId::new("prove a member", n), |b| {
            b.iter(|| map::prove(&m, black_box(&present)).unwrap())
        });
        let proof = map::prove(&m, &present).unwrap();
        let root = m.root();
        g.bench_function(BenchmarkId::new("verify a member", n), |b| {
            b.iter(|| map::verify(&root, &present, black_box(&proof)).unwrap())
        });
        println!(
            "map of {n} labels: member proof {} bytes ({} siblings)",
            proof.encode().len(),
            proof.siblings().len()
        );
    }
    g.finish();
}

fn signers() -> [(&'static str, UserSigner, UserSigner); 3] {
    let (a, b) = ([3u8; 32], [4u8; 32]);
    [
        (
            "ed25519",
            UserSigner::ed25519_from_seed(a),
            UserSigner::ed25519_from_seed(b),
        ),
        (
            "secp256k1-ecdsa",
            UserSigner::secp256k1_ecdsa_from_secret(a).unwrap(),
            UserSigner::secp256k1_ecdsa_from_secret(b).unwrap(),
        ),
        (
            "bip340",
            UserSigner::bip340_from_secret(a).unwrap(),
            UserSigner::bip340_from_secret(b).unwrap(),
        ),
    ]
}

fn signatures(c: &mut Criterion) {
    let mut g = c.benchmark_group("signatures");
    g.throughput(Throughput::Elements(1));
    let l = label(1);
    for (name, old, new) in signers() {
        let register = KeyUpdate::new(l, 1, [0; 32], Op::Register, Some(old.public()), 1)
            .unwrap()
            .sign(Role::NewKey, &old)
            .unwrap();
        let state: LabelState =
            apply_update(None, &register, leaf_hash(&register.encode()), 0).unwrap();
        let rotate = KeyUpdate::new(l, 2, state.leaf_hash, Op::Rotate, Some(new.public()), 2)
            .unwrap()
            .sign(Role::PreviousKey, &old)
            .unwrap()
            .sign(Role::NewKey, &new)
            .unwrap();
        let hash = leaf_hash(&rotate.encode());
        g.bench_function(
            BenchmarkId::new("rotate: rules + two signatures", name),
            |b| b.iter(|| apply_update(Some(&state), black_box(&rotate), hash, 1).unwrap()),
        );
        // What the server pays before the rules: the update's bytes decoded, the new key
        // decoded and checked (canonical, not of small order).
        let bytes = rotate.encode();
        g.bench_function(BenchmarkId::new("rotate: decode", name), |b| {
            b.iter(|| KeyUpdate::decode(black_box(&bytes)).unwrap())
        });
    }
    // Ed25519 one by one and in batches of 1,024 (ed25519-dalek's batch verification), the
    // cost the sequencer could get per signature by checking an epoch's signatures together.
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let keys: Vec<SigningKey> = (0..1_024u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..1_024u32)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    let sigs: Vec<_> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let publics: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
    g.bench_function("ed25519 verify (one)", |b| {
        b.iter(|| {
            publics[0]
                .verify(black_box(&messages[0]), &sigs[0])
                .unwrap()
        })
    });
    g.bench_function("ed25519 verify_strict (one)", |b| {
        b.iter(|| {
            publics[0]
                .verify_strict(black_box(&messages[0]), &sigs[0])
                .unwrap()
        })
    });
    // What KeyTrail runs (users' keys, notes, cosignatures): verify_strict's verdicts, compared
    // in projective coordinates instead of compressing R' (kt_core's edwards.rs).
    let user = UserSigner::ed25519_from_seed([7; 32]);
    let (user_key, user_sig) = (user.public(), user.sign(&messages[0]));
    g.bench_function("ed25519 UserKey::verify (one)", |b| {
        b.iter(|| user_key.verify(black_box(&messages[0]), &user_sig).unwrap())
    });
    g.throughput(Throughput::Elements(1_024));
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    g.bench_function("ed25519 verify_batch (1,024)", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &publics).unwrap())
    });
    g.finish();
}

fn checkpoints(c: &mut Criterion) {
    let signer = NoteSigner::from_seed(KeyName::new("bench.keytrail/log").unwrap(), [9; 32]);
    let verifier = signer.verifier();
    let cp = Checkpoint {
        origin: "bench.keytrail/log".into(),
        size: 123_456_789,
        root: [1; 32],
        epoch: 987_654,
        map_root: [2; 32],
        prev: [3; 32],
        time_ms: 1_800_000_000_000,
    };
    let mut g = c.benchmark_group("checkpoints");
    g.bench_function("sign", |b| {
        b.iter(|| SignedCheckpoint::sign(black_box(cp.clone()), &signer).unwrap())
    });
    let signed = SignedCheckpoint::sign(cp, &signer).unwrap();
    let note = signed.note().as_bytes().to_vec();
    g.bench_function("open (parse + verify)", |b| {
        b.iter(|| {
            SignedCheckpoint::open(black_box(&note), "bench.keytrail/log", &verifier).unwrap()
        })
    });
    g.finish();
}

fn vrf(c: &mut Criterion) {
    let key = VrfSecretKey::from_seed([5; 32]);
    let public = key.public();
    let mut g = c.benchmark_group("vrf");
    g.bench_function("label: prove", |b| {
        b.iter(|| Label::prove(&key, black_box("alice@example.org")).unwrap())
    });
    let (_, proof) = Label::prove(&key, "alice@example.org").unwrap();
    let proof = proof.to_bytes();
    g.bench_function("label: verify", |b| {
        b.iter(|| verify_label(&public, black_box("alice@example.org"), &proof).unwrap())
    });
    g.finish();
}

/// Everything a client checks in one lookup answer of a registered user: the checkpoint's
/// signature, the VRF label, the map proof, and the entry's inclusion in the log. The map holds
/// `n` labels and the log 2^20 entries (2^10 under `cargo test`).
fn lookup_answer(c: &mut Criterion) {
    let n: u64 = if benchmarking() { 1_000_000 } else { 1_000 };
    let log_size: u64 = if benchmarking() { 1 << 20 } else { 1 << 10 };
    let vrf_key = VrfSecretKey::from_seed([5; 32]);
    let (l, proof) = Label::prove(&vrf_key, "alice@example.org").unwrap();
    let user = UserSigner::ed25519_from_seed([6; 32]);
    let update = KeyUpdate::new(l, 1, [0; 32], Op::Register, Some(user.public()), 1)
        .unwrap()
        .sign(Role::NewKey, &user)
        .unwrap();
    let entry = update.encode();
    // The log: the update's leaf at `index`, synthetic leaves elsewhere.
    let index = log_size / 2 + 1;
    let mut tree = Tree::new(log_size);
    tree.0[0][index as usize] = leaf_hash(&entry);
    for level in 1..tree.0.len() {
        let below = &tree.0[level - 1];
        let parent = (index >> level) as usize;
        let hash = node_hash(&below[2 * parent], &below[2 * parent + 1]);
        tree.0[level][parent] = hash;
    }
    let mut m = map_of(n);
    m.apply(
        &[(l, MapValue::new(1, leaf_hash(&entry), index))]
            .into_iter()
            .collect(),
    );
    let signer = NoteSigner::from_seed(KeyName::new("bench.keytrail/log").unwrap(), [9; 32]);
    let verifier = signer.verifier();
    let cp = Checkpoint {
        origin: "bench.keytrail/log".into(),
        size: log_size,
        root: tree.root(log_size),
        epoch: 42,
        map_root: m.root(),
        prev: [3; 32],
        time_ms: 1_800_000_000_000,
    };
    let note = SignedCheckpoint::sign(cp, &signer)
        .unwrap()
        .note()
        .as_bytes()
        .to_vec();
    let answer = LookupAnswer {
        map_proof: map::prove(&m, &l).unwrap(),
        entry: Some(ProvenEntry {
            index,
            entry,
            inclusion: inclusion_proof(&tree, index, log_size).unwrap(),
        }),
    };
    let vrf_public = vrf_key.public();
    let proof = proof.to_bytes();
    // A client opens each epoch's checkpoint once (`CheckpointOpener`); the first answer of an
    // epoch pays for the signature, the others find the same note already opened.
    let opener = CheckpointOpener::new("bench.keytrail/log", verifier.clone());
    let check_with = |opener: &CheckpointOpener| {
        let cp = opener.open(&note).unwrap();
        let label = verify_label(&vrf_public, "alice@example.org", &proof).unwrap();
        verify_lookup(cp.checkpoint(), &label, &answer)
            .unwrap()
            .unwrap()
    };
    // A new opener each time: the checkpoint's signature is verified for every answer.
    let check = || {
        check_with(&CheckpointOpener::new(
            "bench.keytrail/log",
            verifier.clone(),
        ))
    };
    assert_eq!(check().update, update, "the answer verifies");
    assert_eq!(check_with(&opener).update, update);
    assert!(opener.remembers(&note));
    println!(
        "lookup answer at {n} labels: map proof {} bytes, inclusion proof {} hashes, entry {} bytes, VRF proof 80 bytes",
        answer.map_proof.encode().len(),
        answer.entry.as_ref().unwrap().inclusion.len(),
        answer.entry.as_ref().unwrap().entry.len()
    );
    let mut g = c.benchmark_group("client");
    g.bench_function(BenchmarkId::new("verify one lookup answer", n), |b| {
        b.iter_batched(|| (), |_| check(), BatchSize::SmallInput)
    });
    g.bench_function(
        BenchmarkId::new("verify one lookup answer, checkpoint already opened", n),
        |b| b.iter(|| check_with(&opener)),
    );
    g.finish();
}

/// The chain a client checks across a gap of epochs (`trust::verify_chain`): `n` bodies between
/// two signed checkpoints, as a week offline at 500 ms epochs makes 1.2 M of them. Prints the
/// bytes each gap costs on the wire.
fn epoch_gaps(c: &mut Criterion) {
    let signer = NoteSigner::from_seed(KeyName::new("bench.keytrail/log").unwrap(), [4; 32]);
    let sizes: &[u64] = if benchmarking() {
        &[10, 1_000, 100_000]
    } else {
        &[10, 1_000]
    };
    let mut g = c.benchmark_group("epoch-gaps");
    g.sample_size(10);
    for &n in sizes {
        // Epochs 1_000_000 .. +n+1 of a busy log: the older and newer checkpoints are signed, the
        // n bodies from the older one's epoch up to the one before the newer one's are served.
        let mut cp = Checkpoint {
            origin: "bench.keytrail/log".into(),
            size: 123_456_789,
            root: [1; 32],
            epoch: 1_000_000,
            map_root: [2; 32],
            prev: [3; 32],
            time_ms: 1_800_000_000_000,
        };
        let older = SignedCheckpoint::sign(cp.clone(), &signer).unwrap();
        let mut chain = Vec::with_capacity(n as usize);
        for _ in 0..n {
            chain.push(cp.body());
            cp = Checkpoint {
                size: cp.size + 7,
                root: sha256(&cp.root),
                epoch: cp.epoch + 1,
                map_root: sha256(&cp.map_root),
                prev: cp.body_hash(),
                time_ms: cp.time_ms + 500,
                ..cp
            };
        }
        let newer = SignedCheckpoint::sign(cp, &signer).unwrap();
        let body_bytes: usize = chain.iter().map(String::len).sum();
        // On the wire: each body a protobuf length-delimited field (a tag byte and a 2-byte
        // length), in pages of 1,000, each page a gRPC message (5-byte prefix).
        let pages = n.div_ceil(1_000) as usize;
        let wire = body_bytes + 3 * chain.len() + 5 * pages;
        eprintln!(
            "epoch gap of {n}: bodies {body_bytes} B ({} B each), on the wire {wire} B in \
             {pages} page(s); signed note {} B",
            body_bytes / chain.len(),
            newer.note().len()
        );
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("verify chain", n), |b| {
            b.iter(|| kt_core::trust::verify_chain(&older, &newer, black_box(&chain)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    log_hashing,
    log_proofs,
    map_ops,
    signatures,
    checkpoints,
    vrf,
    lookup_answer,
    epoch_gaps
);
criterion_main!(benches);
