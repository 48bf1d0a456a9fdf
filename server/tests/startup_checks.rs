//! The server refuses to serve storage that does not match its last signed checkpoint.

mod common;

use kt_client::LogClient;

async fn log_with_entries(dir: &std::path::Path, n: usize) {
    let server = common::start(dir).await;
    let mut client = LogClient::connect(
        &common::grpc_url(&server),
        &server.verifier_key,
        dir.join("c.json"),
    )
    .await
    .unwrap();
    for i in 0..n {
        client
            .append("startup", format!("entry {i}").into_bytes())
            .await
            .unwrap();
    }
    server.shutdown().await;
}

async fn start_error(dir: &std::path::Path) -> String {
    let config = ktd::config::Config::validate(common::raw_config(dir)).unwrap();
    match ktd::start(config).await {
        Ok(_) => panic!("the server started on tampered storage"),
        Err(e) => format!("{e:#}"),
    }
}

fn open_db(dir: &std::path::Path) -> ktd::storage::Storage {
    ktd::storage::Storage::open(&dir.join("db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_entry_byte_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 5).await;
    {
        let db = open_db(dir.path());
        let mut entry = db.entry(2).unwrap().unwrap();
        let last = entry.len() - 1;
        entry[last] ^= 1;
        db.raw_put("entries", &2u64.to_be_bytes(), &entry).unwrap();
    }
    let err = start_error(dir.path()).await;
    assert!(err.contains("disagrees") || err.contains("root"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tile_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 3).await;
    open_db(dir.path())
        .raw_delete("tiles", &[0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("tile 0/0 is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_log_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 4).await;
    open_db(dir.path())
        .raw_delete("entries", &3u64.to_be_bytes())
        .unwrap();
    let err = start_error(dir.path()).await;
    assert!(err.contains("entry 3 is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 1).await;
    let other = dir.path().join("other.key");
    ktd::keys::generate(&other, common::ORIGIN).unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.key_file = Some(other);
    let config = ktd::config::Config::validate(raw).unwrap();
    let err = format!("{:#}", ktd::start(config).await.unwrap_err());
    assert!(err.contains("verifier_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 3).await;
    let server = common::start(dir.path()).await;
    server.shutdown().await;
}

/// A map page below the root, altered at the latest epoch: the root page still gives the signed
/// map root, so only the full check's walk of every page notices. Each page is stored twice (its
/// history under the epoch, its latest copy under the path alone): altering one makes the two
/// differ, and altering both alike is caught by the walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_map_page_below_the_root_refuses_a_full_start() {
    use common::directory::{next_update, signer, TestDirectory};
    use kt_core::directory::Op;
    use kt_core::map::{Child, PagePath, PageReader};

    for altered in [
        &["map_pages"][..],
        &["map_latest"],
        &["map_pages", "map_latest"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = common::start(dir.path()).await;
        let mut directory = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
        // Enough labels that the root page has subpages.
        for n in 0..200u64 {
            let label = directory.label(&format!("user{n}@example.org")).await;
            let update = next_update(&label, None, Op::Register, None, Some(&signer(n)));
            directory.submit(&update).await.unwrap();
        }
        server.shutdown().await;

        {
            let db = open_db(dir.path());
            let (epoch, _) = db.latest_checkpoint().unwrap().unwrap();
            let map = db.map_at(epoch);
            let root = map.read_page(&PagePath::root()).unwrap().unwrap();
            let slot = root
                .children
                .iter()
                .position(|c| matches!(c, Some(Child::Subpage(_))))
                .expect("200 labels fill more than the root page");
            let path = PagePath::root().child(slot).unwrap();
            let mut page = map.read_page(&path).unwrap().unwrap();
            let child = page.children.iter_mut().flatten().next().unwrap();
            match child {
                Child::Leaf { value, .. } => value.version += 1,
                Child::Subpage(hash) => hash[0] ^= 1,
            }
            // The page's newest version was written at some epoch up to the latest: overwrite
            // the row that is there (its epoch is in the latest copy's first 8 bytes).
            let latest_row = db
                .every_row()
                .unwrap()
                .into_iter()
                .find(|(cf, k, _)| cf == "map_latest" && **k == path.key()[..])
                .expect("every page has a latest copy");
            let written = &latest_row.2[..8];
            if altered.contains(&"map_pages") {
                let key = [&path.key()[..], written].concat();
                db.raw_put("map_pages", &key, &page.encode()).unwrap();
            }
            if altered.contains(&"map_latest") {
                let value = [written, &page.encode()[..]].concat();
                db.raw_put("map_latest", &path.key(), &value).unwrap();
            }
        }
        let err = start_error(dir.path()).await;
        assert!(
            err.contains("map page") && err.contains("corrupt"),
            "{altered:?}: {err}"
        );
    }
}

/// The inner nodes kept for a full tile are derived data that proofs are built from: one that
/// no longer matches its tile refuses a full start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_inner_nodes_of_a_full_tile_refuse_a_full_start() {
    use kt_core::merkle::{HashReader, NodeId};

    let dir = tempfile::tempdir().unwrap();
    log_with_entries(dir.path(), 260).await;
    {
        let db = open_db(dir.path());
        // A node inside the first tile, which is full: reading it keeps the tile's inner nodes.
        let node = db.read_hashes(&[NodeId { level: 4, index: 3 }]).unwrap()[0];
        let key = [0u8; 9]; // tile level 0, index 0
        let row = db
            .every_row()
            .unwrap()
            .into_iter()
            .find(|(cf, k, _)| cf == "tile_nodes" && **k == key)
            .expect("the inner nodes of the full tile 0/0 are stored");
        let mut altered = row.2.to_vec();
        altered[0] ^= 1;
        db.raw_put("tile_nodes", &key, &altered).unwrap();
        // The altered hash (level 1, node 0) is not below this node: reads of it are unchanged,
        // so only a check of every row notices.
        assert_eq!(
            db.read_hashes(&[NodeId { level: 4, index: 3 }]).unwrap()[0],
            node
        );
    }
    let err = start_error(dir.path()).await;
    assert!(err.contains("inner nodes of tile 0/0"), "{err}");
}

/// A database of another storage format is refused at start, never misread: one without the
/// `storage_format` record that holds a log was written by a ktd of format 1 (48-byte map values,
/// before the map counted messages), and a later format is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_another_storage_format_refuses_start() {
    for (stored, found) in [(None, "1"), (Some("3"), "3")] {
        let dir = tempfile::tempdir().unwrap();
        log_with_entries(dir.path(), 2).await;
        {
            let db = open_db(dir.path());
            assert_eq!(db.meta("storage_format").unwrap().as_deref(), Some("2"));
            match stored {
                None => db.raw_delete("meta", b"storage_format").unwrap(),
                Some(v) => db.raw_put("meta", b"storage_format", v.as_bytes()).unwrap(),
            }
        }
        let err = start_error(dir.path()).await;
        let want =
            format!("has storage format {found}, but this ktd reads and writes only format 2");
        assert!(err.contains(&want), "{err}");
        let err = ktd::storage::Storage::open(&dir.path().join("db")).unwrap_err();
        assert!(
            matches!(err, ktd::storage::StorageError::Format { .. }),
            "{err}"
        );
    }
}
