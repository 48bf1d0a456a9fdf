//! Replays the stored `proto_answers` fuzz corpus (`fuzz/corpus/proto_answers/`) through the
//! conversions, so `make test` catches a regression on any input a fuzzer ever kept.

use std::path::PathBuf;

#[test]
fn every_stored_corpus_input_passes() {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../fuzz/corpus/proto_answers");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| kt_proto::fuzz::answers(&data));
        assert!(outcome.is_ok(), "{} panics", file.display());
    }
}

#[test]
#[ignore = "writes the seed corpus; run by name when formats change"]
fn write_seed_corpus() {
    use kt_core::directory::{LookupAnswer, ProvenEntry};
    use kt_core::map::{MapProof, Terminal};
    use prost::Message;
    let answer = LookupAnswer {
        map_proof: MapProof::new(vec![[3; 32], [0; 32], [4; 32]], Terminal::Empty),
        entry: Some(ProvenEntry {
            index: 5,
            entry: vec![1, 2, 3],
            inclusion: vec![[9; 32]; 3],
        }),
    };
    let lookup = kt_proto::v1::LookupResponse {
        checkpoint: Some(kt_proto::v1::Checkpoint {
            note: b"note\n\n- x y\n".to_vec(),
        }),
        map_proof: answer.map_proof.encode(),
        entry: answer.entry.as_ref().map(Into::into),
        ..Default::default()
    };
    let append = kt_proto::v1::AppendResponse {
        index: 1,
        entry: vec![1, 1, 0],
        checkpoint: Some(kt_proto::v1::Checkpoint {
            note: b"n".to_vec(),
        }),
        inclusion_proof: vec![vec![7; 32]],
    };
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../fuzz/corpus/proto_answers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed-0"), lookup.encode_to_vec()).unwrap();
    std::fs::write(dir.join("seed-1"), append.encode_to_vec()).unwrap();
}
