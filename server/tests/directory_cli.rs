//! The `kt` key-directory commands against a real server, as two devices of one user would run
//! them: key new → register → lookup → rotate → history → monitor; a second device's monitor
//! raising the first device's rotation and a recover (exit 3), also while following new
//! checkpoints; revoke; a lookup at an old epoch that leaves the trusted state alone; the message
//! log; and a register without the provider's token refused with UNAUTHENTICATED. Then a proxy
//! that hides the latest key (in lookups and histories) is refused with exit 3, and the trusted
//! state is not written.

mod common;

use common::binary;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kt_proto::v1::directory_client::DirectoryClient as Upstream;
use kt_proto::v1::directory_server::{Directory, DirectoryServer};
use kt_proto::v1::{
    HistoryRequest, HistoryResponse, LookupRequest, LookupResponse, UpdateRequest, UpdateResponse,
};
use serde_json::Value;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// One device: its trusted-state file and its key file.
struct Device {
    url: String,
    log_key: PathBuf,
    state: PathBuf,
    keys: PathBuf,
}

impl Device {
    fn new(url: &str, log_key: &Path, dir: &Path, name: &str) -> Device {
        Device {
            url: url.to_owned(),
            log_key: log_key.to_owned(),
            state: dir.join(format!("{name}-state.json")),
            keys: dir.join(name).join("keys.json"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("kt"));
        cmd.args([
            "--server",
            &self.url,
            "--log-key",
            self.log_key.to_str().unwrap(),
            // ktd writes its VRF public key next to its log key.
            "--vrf-key",
            self.log_key.with_file_name("vrf.pub").to_str().unwrap(),
            "--state",
            self.state.to_str().unwrap(),
            "--keys",
            self.keys.to_str().unwrap(),
        ])
        .args(args);
        for var in [
            "KT_PROVIDER_TOKEN",
            "KT_KEYS",
            "KT_STATE",
            "KT_SERVER",
            "KT_LOG_KEY",
            "KT_VRF_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn run_with(&self, args: &[&str], token_env: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        if let Some(token) = token_env {
            cmd.env("KT_PROVIDER_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        eprintln!(
            "$ kt {} -> {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kt {args:?} failed");
        stdout(&out)
    }

    /// Runs a `--json` command that must succeed and parses its output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn key_file(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.keys).unwrap()).unwrap()
    }

    /// The public keys (hex) this device holds for `id`.
    fn publics(&self, id: &str) -> Vec<String> {
        self.key_file()["identities"][id]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["public"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

const ALICE: &str = "alice@example.com";
const TOKEN: &str = common::PROVIDER_TOKEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_manage_and_monitor_a_key_with_kt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let log_key = d.join("db/log.pub");
    let one = Device::new(&url, &log_key, d, "one");
    let two = Device::new(&url, &log_key, d, "two");

    // A key is made on the device, in a private file, without the server.
    let new = one.json(&["key", "new", ALICE]);
    let first_key = new["key"]["public"].as_str().unwrap().to_owned();
    assert_eq!(new["key"]["algorithm"], "ed25519");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&one.keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !one.state.exists(),
        "`kt key new` does not contact the server"
    );

    // Register needs the provider's token: none, or a wrong one, is UNAUTHENTICATED.
    let out = one.run(&["key", "register", ALICE]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("UNAUTHENTICATED"), "{}", stderr(&out));
    let out = one.run(&[
        "key",
        "register",
        ALICE,
        "--provider-token",
        "not-the-provider-token",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("UNAUTHENTICATED"));
    let absent = one.json(&["lookup", ALICE]);
    assert_eq!(absent["registered"], false, "nothing was registered");
    let out = one.run(&["lookup", ALICE]);
    assert!(stdout(&out).contains("not registered (non-membership proven)"));

    let out = one.ok(&["key", "register", ALICE, "--provider-token", TOKEN]);
    assert!(
        out.contains("register of alice@example.com: version 1"),
        "{out}"
    );
    let registered = one.json(&["lookup", ALICE]);
    assert_eq!(registered["registered"], true);
    assert_eq!(registered["key"]["public"], first_key.as_str());
    assert_eq!(registered["current"]["version"], 1);
    assert_eq!(registered["current"]["op"], "register");
    let register_epoch = registered["checkpoint"]["epoch"].as_u64().unwrap();

    // A second device set up from a copy of the first one's key file: it made the register.
    std::fs::create_dir_all(two.keys.parent().unwrap()).unwrap();
    std::fs::copy(&one.keys, &two.keys).unwrap();
    assert!(two.ok(&["monitor", ALICE, "--once"]).contains("ok: "));

    // Rotation: the first device keeps only the new key once the receipt verified.
    let rotated = one.json(&["key", "rotate", ALICE]);
    assert_eq!(rotated["update"]["version"], 2);
    assert_eq!(rotated["update"]["op"], "rotate");
    let second_key = rotated["update"]["key"]["public"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second_key, first_key);
    assert_eq!(one.publics(ALICE), vec![second_key.clone()]);
    assert_eq!(
        one.json(&["lookup", ALICE])["key"]["public"],
        second_key.as_str()
    );

    let history = one.json(&["history", ALICE]);
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["op"], "register");
    assert_eq!(versions[1]["op"], "rotate");
    assert_eq!(versions[1]["prev"], versions[0]["leaf_hash"]);
    assert!(one
        .ok(&["history", ALICE])
        .contains("2 versions (verified)"));

    // The first device made both versions; the second did not make the rotation.
    let out = one.ok(&["monitor", ALICE, "--once"]);
    assert!(out.contains("ok: alice@example.com has 2 versions, all made by this device"));
    let out = two.run(&["monitor", ALICE, "--once"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the second device raises the rotation"
    );
    assert!(stderr(&out).contains("ALERT: alice@example.com version 2 is a rotate"));
    let out = two.run(&["--json", "monitor", ALICE, "--once"]);
    assert_eq!(out.status.code(), Some(3));
    let alert: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(alert["status"], "alert");
    let alerts = alert["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["version"], 2);
    assert_eq!(alerts[0]["recover"], false);
    assert_eq!(alerts[0]["key"]["public"], second_key.as_str());

    // A lookup at the register's epoch shows the first key and leaves the trusted state alone.
    let trusted_before = std::fs::read_to_string(&one.state).unwrap();
    let epoch = register_epoch.to_string();
    let old = one.json(&["lookup", ALICE, "--epoch", &epoch]);
    assert_eq!(old["checkpoint"]["epoch"], register_epoch);
    assert_eq!(old["key"]["public"], first_key.as_str());
    assert_eq!(old["current"]["version"], 1);
    assert_eq!(
        std::fs::read_to_string(&one.state).unwrap(),
        trusted_before,
        "an old epoch does not roll the trusted state back"
    );
    let out = one.run(&["lookup", ALICE, "--epoch", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NOT_FOUND"));

    // Messages, with the sequence found by verified reads.
    let sent = one.json(&["message", "send", ALICE, "-n", "chat/room-1", "hello"]);
    assert_eq!(sent["message"]["sequence"], 1);
    let out = one.ok(&["message", "send", ALICE, "-n", "chat/room-1", "second"]);
    assert!(out.contains("sent message 2 of alice@example.com in chat/room-1 (verified)"));
    let out = one.run(&[
        "message",
        "send",
        ALICE,
        "-n",
        "chat/room-1",
        "skips",
        "--sequence",
        "7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the server refuses a skipped sequence"
    );
    let read = one.json(&["message", "read", ALICE]);
    let messages = read["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["payload"], "hello");
    assert_eq!(messages[1]["payload"], "second");
    assert_eq!(messages[1]["namespace"], "chat/room-1");
    let read = two.json(&["message", "read", ALICE, "--from", "2", "--limit", "5"]);
    assert_eq!(read["messages"].as_array().unwrap().len(), 1);
    assert!(two
        .ok(&["message", "read", ALICE])
        .contains("#1 [chat/room-1] hello"));
    let out = two.run(&["message", "send", ALICE, "-n", "chat/room-1", "from two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds no private key for alice@example.com's current key"),
        "{}",
        stderr(&out)
    );

    // Revoke: no key any more, and no messages either.
    let revoked = one.json(&["key", "revoke", ALICE]);
    assert_eq!(revoked["update"]["op"], "revoke");
    assert_eq!(revoked["update"]["key"], Value::Null);
    let lookup = one.json(&["lookup", ALICE]);
    assert_eq!(lookup["registered"], true);
    assert_eq!(lookup["key"], Value::Null);
    assert!(one
        .ok(&["lookup", ALICE])
        .contains("alice@example.com has no key: revoked at version 3"));
    assert!(one.publics(ALICE).is_empty());
    let out = one.run(&["message", "send", ALICE, "-n", "chat/room-1", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("revoked"));

    // Recover (token from the environment): the device that made it is fine, the other raises a
    // RECOVER.
    let out = one.run_with(&["--json", "key", "recover", ALICE], Some(TOKEN));
    assert!(out.status.success());
    let recovered: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(recovered["update"]["op"], "recover");
    assert_eq!(recovered["update"]["version"], 4);
    let out = one.ok(&["monitor", ALICE, "--once"]);
    assert!(
        out.contains("including 1 recover(s) made by this device"),
        "{out}"
    );
    let out = two.run(&["--json", "monitor", ALICE, "--once"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("version 4 is a RECOVER (authorized by the provider"));
    let alert: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let alerts = alert["alerts"].as_array().unwrap();
    assert_eq!(
        alerts
            .iter()
            .map(|a| a["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(alerts[2]["op"], "recover");
    assert_eq!(alerts[2]["recover"], true);

    // Following new checkpoints: the first device's monitor runs, lets its own rotation pass, and
    // exits 3 naming the recover when someone else (the second device, with the provider's
    // token) recovers the label.
    let mut follower = one
        .command(&["monitor", ALICE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(follower.stdout.as_mut().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(first_line.starts_with("ok: "), "{first_line}");
    // An update by this very device while it follows is not raised: it reads its made-set again.
    let own = one.json(&["key", "rotate", ALICE]);
    assert_eq!(own["update"]["version"], 5);
    let out = two.run(&["key", "recover", ALICE, "--provider-token", TOKEN]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            follower.kill().unwrap();
            panic!("the following monitor did not raise the recover");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = follower.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("$ kt monitor {ALICE} (following)\n{err}");
    assert_eq!(status.code(), Some(3));
    assert!(
        err.contains("ALERT: alice@example.com version 6 is a RECOVER"),
        "{err}"
    );
    assert_eq!(
        err.matches("ALERT").count(),
        1,
        "only the other device's version is raised"
    );

    // A second register of a registered label is refused before anything is sent.
    let three = Device::new(&url, &log_key, d, "three");
    three.ok(&["key", "new", ALICE]);
    let out = three.run(&["key", "register", ALICE, "--provider-token", TOKEN]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already registered"),
        "{}",
        stderr(&out)
    );

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secp256k1_and_bip340_keys_register_rotate_and_sign_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let bob = Device::new(&url, &d.join("db/log.pub"), d, "bob");
    let id = "bob@example.com";

    let new = bob.json(&["key", "new", id, "--alg", "secp256k1"]);
    assert_eq!(new["key"]["algorithm"], "secp256k1");
    bob.ok(&["key", "register", id, "--provider-token", TOKEN]);
    let lookup = bob.json(&["lookup", id]);
    assert_eq!(lookup["key"]["algorithm"], "secp256k1");
    assert_eq!(lookup["key"]["public"].as_str().unwrap().len(), 66);
    bob.ok(&["message", "send", id, "-n", "notes", "signed with ECDSA"]);

    let rotated = bob.json(&["key", "rotate", id, "--alg", "bip340"]);
    assert_eq!(rotated["update"]["key"]["algorithm"], "bip340");
    bob.ok(&["message", "send", id, "-n", "notes", "signed with BIP-340"]);
    let read = bob.json(&["message", "read", id]);
    let messages = read["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["sequence"], 2);
    assert!(bob.ok(&["monitor", id, "--once"]).contains("2 versions"));

    server.shutdown().await;
}

/// A directory in front of the real one that hides the latest update: lookups carry the label's
/// first version (under the honest checkpoint and map proof), histories drop the last version.
#[derive(Clone)]
struct HidingDirectory {
    upstream: Upstream<Channel>,
}

#[tonic::async_trait]
impl Directory for HidingDirectory {
    async fn register(
        &self,
        _: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("read-only proxy"))
    }

    async fn rotate(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("read-only proxy"))
    }

    async fn revoke(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("read-only proxy"))
    }

    async fn recover(&self, _: Request<UpdateRequest>) -> Result<Response<UpdateResponse>, Status> {
        Err(Status::unimplemented("read-only proxy"))
    }

    async fn lookup(
        &self,
        request: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let mut upstream = self.upstream.clone();
        let identifier = request.get_ref().identifier.clone();
        let mut answer = upstream.lookup(request.into_inner()).await?.into_inner();
        let history = upstream
            .history(HistoryRequest { identifier })
            .await?
            .into_inner();
        answer.entry = history.versions.first().cloned();
        Ok(Response::new(answer))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let mut answer = self
            .upstream
            .clone()
            .history(request.into_inner())
            .await?
            .into_inner();
        answer.versions.pop();
        Ok(Response::new(answer))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_hiding_the_latest_key_is_refused_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let log_key = d.join("db/log.pub");
    let owner = Device::new(&url, &log_key, d, "owner");
    owner.ok(&["key", "new", ALICE]);
    owner.ok(&["key", "register", ALICE, "--provider-token", TOKEN]);
    owner.ok(&["key", "rotate", ALICE]);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let proxy = HidingDirectory {
        upstream: Upstream::connect(url.clone()).await.unwrap(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DirectoryServer::new(proxy))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    // A fresh device, so nothing but the directory is asked (no consistency proofs): its state
    // would be trusted on first use, and must not be written when the answer does not verify.
    let victim = Device::new(&proxy_url, &log_key, d, "victim");
    std::fs::create_dir_all(victim.keys.parent().unwrap()).unwrap();
    std::fs::copy(&owner.keys, &victim.keys).unwrap();

    for args in [
        &["lookup", ALICE][..],
        &["history", ALICE],
        &["monitor", ALICE, "--once"],
    ] {
        let out = victim.run(args);
        assert_eq!(out.status.code(), Some(3), "kt {args:?} refuses the lie");
        let err = stderr(&out);
        assert!(err.contains("REFUSED: the server's"), "{err}");
        let evidence: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(evidence["kind"], "bad-answer");
        assert!(evidence["checkpoint_note"]
            .as_str()
            .unwrap()
            .starts_with(common::ORIGIN));
        assert!(!victim.state.exists(), "nothing unverified is trusted");
    }
    let out = victim.run(&["lookup", ALICE]);
    assert!(stderr(&out).contains("does not name the entry given (version 1"));
    let out = victim.run(&["history", ALICE]);
    assert!(stderr(&out).contains("history holds 1 versions, but the map's value is version 2"));

    server.shutdown().await;
}

/// `kt` refuses an identifier that would print like another (`docs/protocol.md` §9.1) before
/// sending anything: nothing connects to the server's port, and the message says which
/// character.
#[test]
fn kt_refuses_a_spoofable_identifier_before_sending() {
    // A port where the server could have been: it counts connections and closes each at once
    // (so a kt that does connect fails fast instead of waiting for an answer).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log_key = dir.path().join("db/log.pub");
    std::fs::create_dir_all(log_key.parent().unwrap()).unwrap();
    let verifier = kt_core::note::NoteSigner::from_seed(
        kt_core::note::KeyName::new(common::ORIGIN).unwrap(),
        [1; 32],
    )
    .verifier();
    std::fs::write(&log_key, verifier.to_string()).unwrap();
    std::fs::write(log_key.with_file_name("vrf.pub"), "11".repeat(32)).unwrap();
    let device = Device::new(&url, &log_key, dir.path(), "one");
    let spoof = "alice\u{200b}@example.com";
    for args in [
        &["lookup", spoof][..],
        &["history", spoof],
        &["monitor", spoof, "--once"],
        &["message", "read", spoof],
        &["key", "register", spoof, "--provider-token", TOKEN],
        &["key", "new", spoof],
    ] {
        let out = device.run(args);
        assert_eq!(out.status.code(), Some(1), "kt {args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("U+200B at byte 5") && err.contains("Unicode Cf"),
            "kt {args:?}: {err}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "kt connected"
    );
    assert!(!device.state.exists() && !device.keys.exists());
}
