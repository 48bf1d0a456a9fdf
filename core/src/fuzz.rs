//! Fuzzing entry points: one function per parser of untrusted bytes, shared by the libFuzzer
//! targets in `fuzz/` and by `core/tests/fuzz_corpus.rs`, which replays every stored corpus
//! input in `make test`. See `docs/testing.md`.
//!
//! Each function must never panic on any input. Where the format is canonical, it also checks
//! the round trip: bytes that decode must re-encode to exactly themselves, because a second
//! encoding of one value would be a second leaf hash (or signed text) for it.

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::cosignature::Cosignature;
use crate::directory::{KeyUpdate, Label, Message};
use crate::entry::Entry;
use crate::hash::Hash;
use crate::map::{self, MapProof, Page};
use crate::merkle::{verify_consistency, verify_inclusion};
use crate::note::{KeyName, Note, NoteSigner};
use crate::tiles::{decode_bundle, encode_bundle, parse_tile_path};

/// The fixed key fuzzed notes and checkpoints are opened with.
fn log_key() -> NoteSigner {
    NoteSigner::from_seed(
        KeyName::new("fuzz.example/log").expect("valid name"),
        [7; 32],
    )
}

/// Any entry kind: decodes only canonical bytes.
pub fn entry(data: &[u8]) {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(
            e.encode(),
            data,
            "an entry decoded from non-canonical bytes"
        );
    }
    if let Ok(u) = KeyUpdate::decode(data) {
        assert_eq!(
            u.encode(),
            data,
            "a key update decoded from non-canonical bytes"
        );
        let _ = u.signed_bytes();
    }
    if let Ok(m) = Message::decode(data) {
        assert_eq!(
            m.encode(),
            data,
            "a message decoded from non-canonical bytes"
        );
    }
}

/// A signed note, and a checkpoint inside it, opened with the fixed log key.
pub fn note(data: &[u8]) {
    if let Ok(n) = Note::parse(data) {
        assert!(n.text().ends_with('\n'));
        let _ = n.verify(&[log_key().verifier()]);
        for sig in n.signatures() {
            let _ = Cosignature::from_note_signature(sig);
        }
    }
    let _ = SignedCheckpoint::open(data, "fuzz.example/log", &log_key().verifier());
}

/// A checkpoint body: parses only what `Checkpoint::body` prints.
pub fn checkpoint_body(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(
            cp.body(),
            text,
            "a checkpoint body parsed from non-canonical text"
        );
    }
}

/// A cosignature signature line.
pub fn cosignature_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cosignature::parse_line(line) {
        assert_eq!(
            c.to_line(),
            line,
            "a cosignature line parsed from non-canonical text"
        );
    }
}

/// A map proof, verified for a fixed label against a fixed root.
pub fn map_proof(data: &[u8]) {
    if let Ok(p) = MapProof::decode(data) {
        assert_eq!(
            p.encode(),
            data,
            "a map proof decoded from non-canonical bytes"
        );
        let _ = map::verify(&[1; 32], &Label::from_bytes([2; 32]), &p);
    }
}

/// A stored map page.
pub fn map_page(data: &[u8]) {
    if let Ok(p) = Page::decode(data) {
        assert_eq!(
            p.encode(),
            data,
            "a map page decoded from non-canonical bytes"
        );
    }
}

/// A tlog-tiles path and an entry bundle.
pub fn tiles(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(p) = parse_tile_path(path) {
            assert_eq!(
                p.to_string(),
                path,
                "a tile path parsed from non-canonical text"
            );
        }
    }
    if let Ok(entries) = decode_bundle(data) {
        assert_eq!(encode_bundle(&entries).expect("re-encodes"), data);
    }
}

/// RFC 9162 proof verification on arbitrary sizes, indexes and hashes: the first 24 bytes are
/// index, old/new size; the rest is read as hashes (a root, then proof hashes).
pub fn merkle_proofs(data: &[u8]) {
    if data.len() < 24 + 64 {
        return;
    }
    let word = |i: usize| u64::from_be_bytes(data[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (index, old, new) = (word(0), word(1), word(2));
    let hashes: Vec<Hash> = data[24..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let (a, b, proof) = (hashes[0], hashes[1], &hashes[2..]);
    let _ = verify_inclusion(&a, index, new, proof, &b);
    let _ = verify_consistency(old, new, proof, &a, &b);
}
