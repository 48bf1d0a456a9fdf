//! A full disk, on a real size-limited filesystem: a 32 MiB tmpfs mounted for the test (this
//! needs root, as on the CI machines; elsewhere the test says so and runs the same checks with
//! an injected ENOSPC instead). Two ways the disk fills:
//!
//! - below the free-space reserve (`min_free_disk_mib`): appends are refused with UNAVAILABLE
//!   and a message naming the reserve, nothing is written or signed, reads keep working, and
//!   appends resume by themselves when space is freed;
//! - past the reserve (reserve off), so RocksDB's own write fails with ENOSPC: the append is
//!   refused with UNAVAILABLE, reads keep working, no checkpoint is served that is not stored,
//!   and when space is freed the sequencer reopens the database, writes the failed (already
//!   signed) epoch again and resumes; a restart with the full check accepts the result.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::log_check::*;
use kt_proto::v1::log_client::LogClient as Rpc;
use kt_proto::v1::GetInclusionProofRequest;
use tonic::Code;

/// A tmpfs mounted on a temp directory, unmounted on drop.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { mount, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Writes a file until the filesystem has at most `leave` bytes free (or none).
fn fill(path: &Path, leave: u64, free: impl Fn() -> u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    while free() > leave {
        let want = (free() - leave).min(chunk.len() as u64) as usize;
        if file.write_all(&chunk[..want.max(1)]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

fn config(dir: &Path, reserve_mib: u64) -> ktd::config::RawConfig {
    ktd::config::RawConfig {
        min_free_disk_mib: Some(reserve_mib),
        ..common::raw_config(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn below_the_reserve_appends_wait_and_reads_work() {
    let Some(fs) = Tmpfs::mount("32m") else {
        eprintln!("SKIPPED on a real filesystem: cannot mount a tmpfs here (not root); the reserve is covered by the injected ENOSPC test below");
        return;
    };
    let server = common::start_with(config(&fs.mount, 8)).await;
    let storage = server.storage().clone();
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    let served = watch_everything(Rpc::connect(common::grpc_url(&server)).await.unwrap());
    let mut acknowledged = BTreeMap::new();
    for i in 0..5 {
        let text = format!("before the disk fills {i}");
        acknowledged.insert(append(&mut rpc, &text).await.unwrap(), record_bytes(&text));
    }
    let before = latest(&mut rpc).await;

    let filler = fs.mount.join("filler");
    fill(&filler, 4 << 20, || storage.free_space().unwrap());
    for _ in 0..3 {
        let refused = append(&mut rpc, "while the disk is full")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(
            refused.message().contains("below the reserve"),
            "{}",
            refused.message()
        );
    }
    // Reads keep working, and nothing was signed.
    assert_eq!(latest(&mut rpc).await, before);
    rpc.get_inclusion_proof(GetInclusionProofRequest {
        index: 1,
        tree_size: before.size,
    })
    .await
    .unwrap();

    std::fs::remove_file(&filler).unwrap();
    let index = append_when_recovered(&mut rpc, "after space returned").await;
    acknowledged.insert(index, record_bytes("after space returned"));
    assert_eq!(index, before.size, "the refused appends took no index");
    check_log(&server, &served, &acknowledged);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_hits_a_full_disk_is_retried_when_space_returns() {
    let fs = Tmpfs::mount("32m");
    let scratch = tempfile::tempdir().unwrap();
    let root = match &fs {
        Some(fs) => fs.mount.clone(),
        None => {
            eprintln!("cannot mount a tmpfs here (not root): injecting ENOSPC instead");
            scratch.path().to_path_buf()
        }
    };
    let server = common::start_with(config(&root, 0)).await;
    let storage = server.storage().clone();
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    let served = watch_everything(Rpc::connect(common::grpc_url(&server)).await.unwrap());
    let mut acknowledged = BTreeMap::new();
    for i in 0..5 {
        let text = format!("before the disk fills {i}");
        acknowledged.insert(append(&mut rpc, &text).await.unwrap(), record_bytes(&text));
    }
    let before = latest(&mut rpc).await;

    let filler = root.join("filler");
    if fs.is_some() {
        fill(&filler, 0, || storage.free_space().unwrap());
    } else {
        storage.inject_fault(ktd::storage::Fault::CommitNoSpace);
    }
    let victim = "x".repeat(16 * 1024);
    let refused = append(&mut rpc, &victim).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("commit"),
        "{}",
        refused.message()
    );
    eprintln!("the append that hit the full disk: {}", refused.message());
    // More appends while the disk is full are refused too, without an index.
    let again = append(&mut rpc, "still full").await.unwrap_err();
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    // Reads keep working: the latest checkpoint is still the last durable one.
    let during = latest(&mut rpc).await;
    assert_eq!(during, before);
    check_log(&server, &served, &acknowledged);

    if fs.is_some() {
        std::fs::remove_file(&filler).unwrap();
    }
    let index = append_when_recovered(&mut rpc, "after space returned").await;
    acknowledged.insert(index, record_bytes("after space returned"));
    // The failed epoch was signed before its write failed: it is written as signed, with the
    // victim at the next index, and the next append follows it.
    let entries = storage.entries(0, index + 1).unwrap();
    assert_eq!(entries[before.size as usize], record_bytes(&victim));
    assert_eq!(index, before.size + 1);
    check_log(&server, &served, &acknowledged);

    let last = latest(&mut rpc).await;
    drop((rpc, storage));
    server.shutdown().await;
    let server = common::start_with(config(&root, 0)).await;
    let mut rpc = Rpc::connect(common::grpc_url(&server)).await.unwrap();
    assert_eq!(latest(&mut rpc).await, last);
    check_log(&server, &served, &acknowledged);
    server.shutdown().await;
    drop(fs);
}
