//! Replays every stored fuzz corpus input (`fuzz/corpus/<target>/`) through the same entry
//! points the libFuzzer targets call, so `make test` catches a regression on any input a fuzzer
//! ever kept. `write_seed_corpus` (ignored; run it by name) regenerates the seeds from real
//! encodings; see `docs/testing.md`.

use kt_core::checkpoint::{Checkpoint, SignedCheckpoint};
use kt_core::cosignature::Cosigner;
use kt_core::directory::{KeyUpdate, Label, Message, Op, Role, UserSigner};
use kt_core::entry::{Entry, Namespace, Record};
use kt_core::fuzz;
use kt_core::hash::leaf_hash;
use kt_core::map::{self, MapValue, MemoryMap, PagePath, PageReader};
use kt_core::merkle::{inclusion_proof, HashReader, NodeId};
use kt_core::note::{KeyName, NoteSigner};
use kt_core::tiles::encode_bundle;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A fuzz target: its corpus folder name and entry point.
type Target = (&'static str, fn(&[u8]));

/// Every fuzz target.
const TARGETS: &[Target] = &[
    ("entry", fuzz::entry),
    ("note", fuzz::note),
    ("checkpoint_body", fuzz::checkpoint_body),
    ("cosignature_line", fuzz::cosignature_line),
    ("map_proof", fuzz::map_proof),
    ("map_page", fuzz::map_page),
    ("tiles", fuzz::tiles),
    ("merkle_proofs", fuzz::merkle_proofs),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_stored_corpus_input_passes() {
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", file.display());
        }
    }
}

/// The in-memory tree of a few leaves, as a `HashReader` for building a seed proof.
struct Leaves(Vec<[u8; 32]>);
impl HashReader for Leaves {
    type Error = ();
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<[u8; 32]>, ()> {
        Ok(ids
            .iter()
            .map(|id| {
                let width = 1usize << id.level;
                let start = id.index as usize * width;
                kt_core::merkle::root_of_leaf_hashes(&self.0[start..start + width])
            })
            .collect())
    }
}

#[test]
#[ignore = "writes the seed corpus; run by name when formats change"]
fn write_seed_corpus() {
    let mut seeds: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    let alice = UserSigner::ed25519_from_seed([1; 32]);
    let bob = UserSigner::secp256k1_ecdsa_from_secret([2; 32]).unwrap();
    let label = Label::from_identifier("alice@example.org").unwrap();
    let register = KeyUpdate::new(label, 1, [0; 32], Op::Register, Some(alice.public()), 5)
        .unwrap()
        .sign(Role::NewKey, &alice)
        .unwrap();
    let rotate = KeyUpdate::new(
        label,
        2,
        register.leaf_hash(),
        Op::Rotate,
        Some(bob.public()),
        6,
    )
    .unwrap()
    .sign(Role::PreviousKey, &alice)
    .unwrap()
    .sign(Role::NewKey, &bob)
    .unwrap();
    let revoke = KeyUpdate::new(label, 3, rotate.leaf_hash(), Op::Revoke, None, 7)
        .unwrap()
        .sign(Role::PreviousKey, &bob)
        .unwrap();
    let ns = Namespace::new("chat/room-1").unwrap();
    let message = Message::sign(ns.clone(), label, 1, b"hello".to_vec(), &alice).unwrap();
    let record = Entry::Record(Record::new(ns, b"a record".to_vec()).unwrap());
    seeds.insert(
        "entry",
        vec![
            record.encode(),
            register.encode(),
            rotate.encode(),
            revoke.encode(),
            message.encode(),
        ],
    );

    let key = NoteSigner::from_seed(KeyName::new("fuzz.example/log").unwrap(), [7; 32]);
    let cp = Checkpoint {
        origin: "fuzz.example/log".into(),
        size: 3,
        root: [0xab; 32],
        epoch: 9,
        map_root: [0xcd; 32],
        prev: [0xef; 32],
        time_ms: 1_700_000_000_000,
    };
    let signed = SignedCheckpoint::sign(cp.clone(), &key).unwrap();
    let witness = Cosigner::from_seed(KeyName::new("witness.example").unwrap(), [9; 32]);
    let cosig = witness.cosign(&cp.body(), 1_700_000_001).unwrap();
    let cosigned = format!("{}{}\n", signed.note(), cosig.to_line());
    seeds.insert(
        "note",
        vec![signed.note().as_bytes().to_vec(), cosigned.into_bytes()],
    );
    seeds.insert(
        "checkpoint_body",
        vec![
            cp.body().into_bytes(),
            Checkpoint::genesis("o/x", 1).body().into_bytes(),
        ],
    );
    seeds.insert("cosignature_line", vec![cosig.to_line().into_bytes()]);

    let mut m = MemoryMap::new();
    let values: BTreeMap<Label, MapValue> = (0..64u64)
        .map(|i| {
            let l = Label::from_identifier(&format!("user-{i}")).unwrap();
            let v = MapValue::new(i + 1, leaf_hash(&i.to_be_bytes()), i);
            (l, v)
        })
        .collect();
    m.apply(&values);
    let present = *values.keys().next().unwrap();
    let absent = Label::from_identifier("nobody").unwrap();
    seeds.insert(
        "map_proof",
        vec![
            map::prove(&m, &present).unwrap().encode(),
            map::prove(&m, &absent).unwrap().encode(),
        ],
    );
    let root_page = m.read_page(&PagePath::root()).unwrap().unwrap();
    let leaf_page = m
        .read_page(&PagePath::of_label(&present, 1))
        .unwrap()
        .unwrap_or_else(|| root_page.clone());
    seeds.insert("map_page", vec![root_page.encode(), leaf_page.encode()]);

    seeds.insert(
        "tiles",
        vec![
            b"tile/0/x001/234.p/5".to_vec(),
            b"tile/entries/000".to_vec(),
            encode_bundle(&[b"one".as_slice(), b"two".as_slice()]).unwrap(),
        ],
    );

    let leaves: Vec<[u8; 32]> = (0..7u8).map(|i| leaf_hash(&[i])).collect();
    let proof = inclusion_proof(&Leaves(leaves.clone()), 3, 7).unwrap();
    let mut input = Vec::new();
    for word in [3u64, 4, 7] {
        input.extend_from_slice(&word.to_be_bytes());
    }
    input.extend_from_slice(&leaves[3]);
    input.extend_from_slice(&kt_core::merkle::root_of_leaf_hashes(&leaves));
    for h in &proof {
        input.extend_from_slice(h);
    }
    seeds.insert("merkle_proofs", vec![input]);

    for (target, _) in TARGETS {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds[target].iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
