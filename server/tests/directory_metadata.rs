//! What the server keeps (issue 4, item 5): no identifier appears in anything it stores, serves
//! as tiles, or logs. Users with recognisable identifiers register, rotate, send and read
//! messages, and are looked up (as are identifiers that were never registered); then every
//! stored byte, every tile and entry bundle, and every log line is searched for them.
//!
//! Three views of "stored", strongest first:
//!
//! 1. every key and value of every column family, read through the storage API
//!    (`Storage::every_row`, which lists the column families from the database itself, so a
//!    column family added later is searched too);
//! 2. every HTTP tile (`tile/<L>/<N>`) and entry bundle (`tile/entries/<N>`) of the tree;
//! 3. every raw file in the data directory. RocksDB compresses its table files (LZ4), so a
//!    compressed copy of an identifier would not show here: this is the weaker, second check of
//!    (1), which would still catch an identifier written outside RocksDB or in its write-ahead
//!    log (not compressed).
//!
//! Each view is also searched for the unkeyed hashes of every identifier (SHA-256 of the
//! identifier, and the pre-VRF label `SHA-256("keytrail/v1/label\0" || identifier)`): a store
//! keyed by either would let anyone holding a copy confirm guessed identifiers.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::directory::vrf_key_of;
use kt_client::DirectoryClient;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::directory::{Label, UserSigner};
use kt_core::note::NoteVerifier;
use kt_core::tiles::{tile_width_for, TilePath, TILE_WIDTH};
use sha2::{Digest, Sha256};

/// Every identifier of this test contains this string, so a partial copy is found too.
const MARK: &str = "kt-needle";

fn registered(n: u32) -> String {
    format!("{MARK}-user-{n}@example.org")
}

fn looked_up_only(n: u32) -> String {
    format!("{MARK}-absent-{n}@example.org")
}

/// The byte strings no stored or served byte may contain.
fn needles(identifiers: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(MARK.to_owned(), MARK.as_bytes().to_vec())];
    for id in identifiers {
        out.push((format!("{id} (UTF-8)"), id.as_bytes().to_vec()));
        out.push((
            format!("SHA-256({id})"),
            Sha256::digest(id.as_bytes()).to_vec(),
        ));
        out.push((
            format!("hashed label of {id}"),
            Label::from_identifier(id).unwrap().as_bytes().to_vec(),
        ));
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_clean(what: &str, bytes: &[u8], needles: &[(String, Vec<u8>)]) {
    for (name, needle) in needles {
        assert!(!find(bytes, needle), "{what} contains {name}");
    }
}

/// A tracing writer that keeps every line the server logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn raw_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            raw_files(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_is_stored_served_or_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = common::start(dir).await;
    let url = common::grpc_url(&server);
    let mut client = DirectoryClient::connect(
        &url,
        &server.verifier_key,
        vrf_key_of(&server),
        dir.join("client-state.json"),
    )
    .await
    .unwrap();

    // Users register (the provider names them), rotate, send messages and read them back;
    // others look them up and read their histories; identifiers nobody registered are looked up.
    let users = 12;
    for n in 0..users {
        let id = registered(n);
        let key = UserSigner::ed25519_from_seed([n as u8 + 1; 32]);
        client
            .register(&id, &key, Some(common::PROVIDER_TOKEN))
            .await
            .unwrap();
        let key = if n % 3 == 0 {
            let new = UserSigner::ed25519_from_seed([n as u8 + 101; 32]);
            client.rotate(&id, &key, &new).await.unwrap();
            new
        } else {
            key
        };
        if n % 2 == 0 {
            // (Payloads are public: one that names its author would be found, rightly.)
            let text = format!("message {n}").into_bytes();
            client.send_message(&id, "chat", text, &key).await.unwrap();
            assert_eq!(
                client
                    .read_messages(&id, 1, 10)
                    .await
                    .unwrap()
                    .messages
                    .len(),
                1
            );
        }
    }
    for n in 0..users {
        let found = client.lookup(&registered(n), None).await.unwrap();
        assert!(found.current.is_some());
        assert!(!client
            .history(&registered(n))
            .await
            .unwrap()
            .versions
            .is_empty());
        let absent = client.lookup(&looked_up_only(n), None).await.unwrap();
        assert!(absent.current.is_none());
        client.history(&looked_up_only(n)).await.unwrap();
        client
            .read_messages(&looked_up_only(n), 1, 1)
            .await
            .unwrap();
    }
    let identifiers: Vec<String> = (0..users)
        .flat_map(|n| [registered(n), looked_up_only(n)])
        .collect();
    let needles = needles(&identifiers);

    // (2) Every tile and entry bundle the tree has, over HTTP.
    let http = reqwest::Client::new();
    let base = common::http_url(&server);
    let note = http
        .get(format!("{base}/checkpoint"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_clean("the HTTP checkpoint", &note, &needles);
    let verifier = NoteVerifier::parse(&server.verifier_key).unwrap();
    let size = SignedCheckpoint::open(&note, &server.origin, &verifier)
        .unwrap()
        .checkpoint()
        .size;
    let mut paths = Vec::new();
    for level in 0u8.. {
        if tile_width_for(size, level, 0) == 0 {
            break;
        }
        for index in 0.. {
            let width = tile_width_for(size, level, index);
            if width == 0 {
                break;
            }
            paths.push(TilePath::Hashes {
                level,
                index,
                width,
            });
            if level == 0 {
                paths.push(TilePath::Entries { index, width });
            }
        }
    }
    let mut entry_bytes = 0;
    for path in &paths {
        let resp = http.get(format!("{base}/{path}")).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let body = resp.bytes().await.unwrap();
        if matches!(path, TilePath::Entries { .. }) {
            entry_bytes += body.len();
        }
        assert_clean(&path.to_string(), &body, &needles);
    }
    assert!(size > u64::from(users), "the log holds every update");
    assert!(
        paths.len() >= 2 && entry_bytes > 0,
        "tiles and bundles were fetched"
    );
    assert!(size.div_ceil(TILE_WIDTH) >= 1);

    server.shutdown().await;

    // (1) Every row of every column family, through the storage API.
    let storage = ktd::storage::Storage::open(&dir.join("db")).unwrap();
    let rows = storage.every_row().unwrap();
    let mut families: Vec<&str> = rows.iter().map(|(cf, _, _)| cf.as_str()).collect();
    families.dedup();
    for cf in [
        "entries",
        "tiles",
        "checkpoints",
        "labels",
        "vrf_proofs",
        "messages",
    ] {
        assert!(families.contains(&cf), "rows of {cf} were searched");
    }
    let vrf_rows = rows.iter().filter(|(cf, _, _)| cf == "vrf_proofs").count();
    assert_eq!(
        vrf_rows, users as usize,
        "one stored proof per registered identifier, none for lookups"
    );
    for (cf, key, value) in &rows {
        assert_clean(&format!("a key in {cf}"), key, &needles);
        assert_clean(&format!("a value in {cf}"), value, &needles);
    }
    drop(storage);

    // (3) Every raw file of the data directory (weaker: table files are compressed).
    let mut files = Vec::new();
    raw_files(&dir.join("db"), &mut files);
    assert!(!files.is_empty());
    for (name, bytes) in &files {
        assert_clean(name, bytes, &needles);
    }

    // Every line the server logged, at every level.
    let logged = logs.0.lock().unwrap().clone();
    std::io::stderr()
        .write_all(&logged[..logged.len().min(2000)])
        .ok();
    assert!(!logged.is_empty(), "the log capture works");
    assert_clean("the server's log", &logged, &needles);
}
