//! The whole-log checks shared by the fault, full-disk and crash tests: what every served
//! checkpoint, every acknowledged entry and the stored chain must satisfy after a failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kt_core::checkpoint::Checkpoint;
use kt_core::merkle::verify_consistency;
use kt_proto::v1::log_client::LogClient as Rpc;
use kt_proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

pub fn body_of(note: &[u8]) -> Checkpoint {
    let text = std::str::from_utf8(note).unwrap();
    let body = format!("{}\n", text.split("\n\n").next().unwrap());
    Checkpoint::parse_body(&body).unwrap()
}

/// Every checkpoint body a watcher was ever sent, by epoch.
pub type Served = Arc<Mutex<BTreeMap<u64, Vec<String>>>>;

pub fn watch_everything(mut rpc: Rpc<Channel>) -> Served {
    let served: Served = Arc::default();
    let record = served.clone();
    tokio::spawn(async move {
        let mut stream = rpc
            .watch_checkpoints(WatchCheckpointsRequest {
                after_epoch: Some(0),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(Ok(cp)) = stream.next().await {
            let body = body_of(&cp.note);
            let mut served = record.lock().unwrap();
            let bodies = served.entry(body.epoch).or_default();
            let text = body.body();
            if !bodies.contains(&text) {
                bodies.push(text);
            }
        }
    });
    served
}

pub async fn append(rpc: &mut Rpc<Channel>, text: &str) -> Result<u64, tonic::Status> {
    rpc.append(AppendRequest {
        namespace: "faults".into(),
        payload: text.as_bytes().to_vec(),
    })
    .await
    .map(|r| r.into_inner().index)
}

/// Appends `text`, retrying while the server answers UNAVAILABLE (it is recovering).
pub async fn append_when_recovered(rpc: &mut Rpc<Channel>, text: &str) -> u64 {
    for _ in 0..200 {
        match append(rpc, text).await {
            Ok(index) => return index,
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("unexpected refusal while recovering: {s:?}"),
        }
    }
    panic!("the sequencer did not recover from the fault");
}

pub fn record_bytes(text: &str) -> Vec<u8> {
    use kt_core::entry::{Entry, Namespace, Record};
    let record = Record::new(Namespace::new("faults").unwrap(), text.as_bytes().to_vec());
    Entry::Record(record.unwrap()).encode()
}

pub async fn latest(rpc: &mut Rpc<Channel>) -> Checkpoint {
    let note = rpc
        .get_checkpoint(GetCheckpointRequest { epoch: None })
        .await
        .unwrap()
        .into_inner()
        .checkpoint
        .unwrap()
        .note;
    body_of(&note)
}

/// The whole-log check: storage's checkpoints form an unbroken chain, each is the only one ever
/// served for its epoch, the newest's root is the root of every stored entry, and every
/// acknowledged entry sits at its index.
pub fn check_log(
    server: &ktd::RunningServer,
    served: &Served,
    acknowledged: &BTreeMap<u64, Vec<u8>>,
) {
    let storage = server.storage();
    let (last_epoch, last_note) = storage.latest_checkpoint().unwrap().unwrap();
    let last = body_of(&last_note);
    let mut prev: Option<Checkpoint> = None;
    for epoch in 0..=last_epoch {
        let note = storage.log_checkpoint(epoch).unwrap().unwrap();
        let cp = body_of(&note);
        if let Some(prev) = &prev {
            cp.follows(prev).unwrap();
            let proof = kt_core::merkle::consistency_proof(&**storage, prev.size, cp.size);
            if prev.size > 0 {
                verify_consistency(prev.size, cp.size, &proof.unwrap(), &prev.root, &cp.root)
                    .unwrap();
            }
        }
        prev = Some(cp);
    }
    for (epoch, bodies) in served.lock().unwrap().iter() {
        assert_eq!(bodies.len(), 1, "epoch {epoch} was served as {bodies:#?}");
        let stored = storage
            .log_checkpoint(*epoch)
            .unwrap()
            .unwrap_or_else(|| panic!("epoch {epoch} was served but is not stored"));
        assert_eq!(body_of(&stored).body(), bodies[0], "epoch {epoch}");
    }
    let entries = storage.entries(0, last.size).unwrap();
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| kt_core::hash::leaf_hash(e))
        .collect();
    assert_eq!(kt_core::merkle::root_of_leaf_hashes(&leaves), last.root);
    for (index, bytes) in acknowledged {
        assert_eq!(
            &entries[*index as usize], bytes,
            "acknowledged entry {index}"
        );
    }
}
