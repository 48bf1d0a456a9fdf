//! Every workload against a real `ktd` (in-process, RocksDB in a temp dir, 127.0.0.1:0) for a
//! small count: the counts add up, verified answers really were verified, and the binary's JSON
//! report has the fields the docs name. No timing is asserted.

use std::path::Path;

use kt_bench::identities::{is_expected_key, signer_for, user_identifier};
use kt_bench::scale::load_users;
use kt_bench::{run, BenchConfig, KeyAlg, Kind, Mix, Report, Stop, Target, WorkloadName};
use kt_core::vrf::VrfPublicKey;
use ktd::config::{Config, RawConfig};
use ktd::startup::StartupCheck;
use ktd::RunningServer;

const TOKEN: &str = "smoke-provider-token-0123456789";

async fn start(dir: &Path) -> RunningServer {
    let raw = RawConfig {
        data_dir: Some(dir.join("db")),
        grpc_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        origin: Some("bench.keytrail/log".into()),
        epoch_interval_ms: Some(10),
        heartbeat_ms: Some(3_600_000),
        max_batch: Some(1_000),
        queue_depth: Some(10_000),
        startup_check: Some(StartupCheck::Quick),
        provider_token: Some(TOKEN.into()),
        // Every client has the same address: per-peer limits would measure themselves.
        read_rate_per_sec: Some(0),
        write_rate_per_sec: Some(0),
        ..RawConfig::default()
    };
    ktd::start(Config::validate(raw).unwrap()).await.unwrap()
}

fn vrf_key(server: &RunningServer) -> VrfPublicKey {
    let bytes: [u8; 32] = hex::decode(&server.vrf_public_key)
        .unwrap()
        .try_into()
        .unwrap();
    VrfPublicKey::from_bytes(&bytes).unwrap()
}

fn target(server: &RunningServer) -> Target {
    Target {
        server: format!("http://{}", server.grpc_addr),
        log_key: server.verifier_key.clone(),
        vrf_key: vrf_key(server),
        provider_token: Some(TOKEN.into()),
    }
}

fn config(server: &RunningServer, kind: Kind, count: u64) -> BenchConfig {
    let workload = match kind {
        Kind::Append => WorkloadName::Append,
        Kind::AppendBatch => WorkloadName::AppendBatch,
        Kind::Register => WorkloadName::Register,
        Kind::Rotate => WorkloadName::Rotate,
        Kind::Lookup => WorkloadName::Lookup,
        Kind::History => WorkloadName::History,
    };
    let mut c = BenchConfig::new(
        target(server),
        workload,
        Mix::only(kind),
        Stop::Count(count),
    );
    c.clients = 6;
    c.connections = 2;
    c.users = 12;
    c.seed = 42;
    c
}

/// The counts of a run without failures: every operation recorded once, all of `kind`.
fn assert_all_ok(report: &Report, kind: Kind, count: u64) {
    assert_eq!(report.total.ops, count, "{}", report.text());
    assert_eq!(report.total.ok, count, "{}", report.text());
    assert!(
        report.total.errors_by_code.is_empty(),
        "{:?}",
        report.total.errors_by_code
    );
    assert_eq!(
        (
            report.total.resource_exhausted,
            report.total.verify_failures
        ),
        (0, 0)
    );
    assert_eq!(report.kinds.keys().collect::<Vec<_>>(), [kind.name()]);
    let k = &report.kinds[kind.name()];
    assert_eq!((k.ops, k.ok, k.latency_us.count), (count, count, count));
    assert!(k.latency_us.p50 > 0.0 && k.latency_us.p50 <= k.latency_us.max);
}

async fn log_size(server: &RunningServer, state: &Path) -> u64 {
    let mut log = kt_client::LogClient::connect(
        &format!("http://{}", server.grpc_addr),
        &server.verifier_key,
        state,
    )
    .await
    .unwrap();
    log.refresh().await.unwrap();
    log.trusted().unwrap().checkpoint().size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_registrations_land_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let before = log_size(&server, &dir.path().join("kt.json")).await;

    let mut c = config(&server, Kind::Append, 200);
    c.payload_size = 100;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::Append, 200);
    assert!(report.setup.is_none(), "appends need no identities");
    let after_appends = log_size(&server, &dir.path().join("kt.json")).await;
    assert!(after_appends >= before + 200, "{before} -> {after_appends}");

    // Batches: 20 calls of 10 records, every record in the log.
    let mut c = config(&server, Kind::AppendBatch, 20);
    c.batch_size = 10;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::AppendBatch, 20);
    assert!(report.kinds["append-batch"].records_per_sec.unwrap() > 0.0);
    let after_batches = log_size(&server, &dir.path().join("kt.json")).await;
    assert_eq!(
        after_batches,
        after_appends + 200,
        "every record of every batch"
    );
    let after_appends = after_batches;

    let report = run(&config(&server, Kind::Register, 30)).await.unwrap();
    assert_all_ok(&report, Kind::Register, 30);
    let after = log_size(&server, &dir.path().join("kt.json")).await;
    assert_eq!(after, after_appends + 30, "one entry per registration");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_rotations_and_histories_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let grpc = format!("http://{}", server.grpc_addr);

    // Lookups: the setup phase registers 12 identities; a fifth of the lookups are of others.
    let mut c = config(&server, Kind::Lookup, 150);
    c.prefix = "smoke".into();
    c.absent_percent = 20;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::Lookup, 150);
    assert_eq!(report.setup.as_ref().unwrap().registered, 12);
    let k = &report.kinds["lookup"];
    assert_eq!(k.found + k.absent, 150);
    assert!(k.found > 0 && k.absent > 0, "seed 42 draws both: {k:?}");
    assert_eq!(
        k.verify_us.as_ref().unwrap().count,
        150,
        "every answer verified"
    );
    let bytes = k.answer_bytes.as_ref().unwrap();
    assert!(0.0 < bytes.mean_excl_checkpoint && bytes.mean_excl_checkpoint < bytes.mean);

    // What the setup registered is what an independent client finds.
    let mut dir_client = kt_client::directory::DirectoryClient::connect(
        &grpc,
        &server.verifier_key,
        vrf_key(&server),
        dir.path().join("kt.json"),
    )
    .await
    .unwrap();
    let id = user_identifier("smoke", 5);
    let found = dir_client.lookup(&id, None).await.unwrap();
    assert_eq!(
        found.key(),
        Some(&signer_for(&id, 1, KeyAlg::Ed25519).public())
    );

    // Rotations of the same identities (a later run: --skip-setup), to secp256k1 keys.
    let mut c = config(&server, Kind::Rotate, 40);
    c.prefix = "smoke".into();
    c.skip_setup = true;
    c.key_alg = KeyAlg::Secp256k1;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::Rotate, 40);
    assert!(report.setup.is_none());
    let mut versions = 0;
    for i in 0..12 {
        let id = user_identifier("smoke", i);
        let found = dir_client.lookup(&id, None).await.unwrap();
        let current = found.current.as_ref().unwrap();
        assert!(is_expected_key(
            &id,
            current.update.version(),
            found.key().unwrap()
        ));
        versions += current.update.version();
    }
    assert_eq!(versions, 12 + 40, "every rotation is one more version");

    // Histories of the rotated identities verify through every version.
    let mut c = config(&server, Kind::History, 30);
    c.prefix = "smoke".into();
    c.skip_setup = true;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::History, 30);
    assert_eq!(
        report.kinds["history"].verify_us.as_ref().unwrap().count,
        30
    );

    // --no-verify: the same lookups, nothing verified.
    let mut c = config(&server, Kind::Lookup, 20);
    c.prefix = "smoke".into();
    c.skip_setup = true;
    c.verify = false;
    let report = run(&c).await.unwrap();
    assert_all_ok(&report, Kind::Lookup, 20);
    assert!(report.kinds["lookup"].verify_us.is_none());

    // Verification is real: under another log's VRF key every label check fails, and under
    // another log key every checkpoint signature.
    let mut c = config(&server, Kind::Lookup, 20);
    c.prefix = "smoke".into();
    c.skip_setup = true;
    c.target.vrf_key = kt_core::vrf::VrfSecretKey::from_seed([3; 32]).public();
    let report = run(&c).await.unwrap();
    assert_eq!(
        (
            report.total.ops,
            report.total.ok,
            report.total.verify_failures
        ),
        (20, 0, 20)
    );
    assert!(
        report.verify_failure_examples[0].contains("VRF"),
        "{:?}",
        report.verify_failure_examples
    );
    let mut c = config(&server, Kind::Lookup, 20);
    c.prefix = "smoke".into();
    c.skip_setup = true;
    let other = kt_core::note::NoteSigner::from_seed(
        kt_core::note::KeyName::new("bench.keytrail/log").unwrap(),
        [5; 32],
    );
    c.target.log_key = other.verifier().to_string();
    let report = run(&c).await.unwrap();
    assert_eq!(
        (
            report.total.ops,
            report.total.ok,
            report.total.verify_failures
        ),
        (20, 0, 20)
    );
    assert!(
        report.verify_failure_examples[0].contains("checkpoint"),
        "{:?}",
        report.verify_failure_examples
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_a_mix_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let token_file = dir.path().join("provider.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let json = dir.path().join("report.json");
    let args: Vec<String> = [
        "mix",
        "--server",
        &format!("http://{}", server.grpc_addr),
        "--log-key",
        &server.verifier_key,
        "--vrf-key",
        &server.vrf_public_key,
        "--provider-token-file",
        token_file.to_str().unwrap(),
        "--mix",
        "lookup=50,rotate=20,append=20,register=5,history=5",
        "--count",
        "120",
        "--warmup",
        "200ms",
        "--clients",
        "4",
        "--connections",
        "2",
        "--users",
        "8",
        "--seed",
        "7",
        "--json",
        json.to_str().unwrap(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kt-bench"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ops/s") && stdout.contains("no errors"),
        "{stdout}"
    );

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["settings"]["workload"], "mix");
    assert_eq!(v["settings"]["count"], 120);
    assert_eq!(v["setup"]["registered"], 8);
    assert_eq!(v["ops"], 120);
    assert_eq!(v["ok"], 120);
    assert_eq!(v["resource_exhausted"], 0);
    assert_eq!(v["verify_failures"], 0);
    assert_eq!(v["errors_by_code"], serde_json::json!({}));
    for field in ["count", "min", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"][field].is_number(),
            "latency_us.{field}: {v}"
        );
    }
    assert!(v["throughput_ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["elapsed_secs"].is_number() && v["warmup_ops"].is_u64());
    assert!(v["machine"]["nproc"].as_u64().unwrap() >= 1);
    let kinds = v["kinds"].as_object().unwrap();
    let mut sum = 0;
    for (name, k) in kinds {
        assert!(["lookup", "rotate", "append", "register", "history"].contains(&name.as_str()));
        assert_eq!(k["ops"], k["ok"], "{name}: {k}");
        sum += k["ops"].as_u64().unwrap();
    }
    assert_eq!(sum, 120, "the kinds' counts add up to the run's");
    let lookup = &v["kinds"]["lookup"];
    assert!(lookup["verify_us"]["p99"].is_number(), "{lookup}");
    assert!(
        lookup["answer_bytes"]["mean_excl_checkpoint"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(v["kinds"]["append"]["answer_bytes"].is_null());
    server.shutdown().await;
}

/// The scale test's loader: what it registers through the write path of a stopped server is what
/// `--skip-setup` runs find, with every lookup and history verified; loading to the same size
/// again does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_loader_registers_identities_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    start(dir.path()).await.shutdown().await;
    let db = dir.path().join("db");
    let mut progress = Vec::new();
    let stats = load_users(&db, "scale", KeyAlg::Ed25519, 250, 100, |n, to| {
        progress.push((n, to))
    })
    .unwrap()
    .unwrap();
    assert_eq!((stats.registered, stats.epochs), (250, 3));
    assert_eq!(progress, [(100, 250), (200, 250), (250, 250)]);
    assert!(
        load_users(&db, "scale", KeyAlg::Ed25519, 250, 100, |_, _| {})
            .unwrap()
            .is_none()
    );

    let server = start(dir.path()).await;
    assert_eq!(log_size(&server, &dir.path().join("kt.json")).await, 250);
    for (kind, count) in [(Kind::Lookup, 100), (Kind::History, 20)] {
        let mut c = config(&server, kind, count);
        c.prefix = "scale".into();
        c.users = 250;
        c.skip_setup = true;
        let report = run(&c).await.unwrap();
        assert_all_ok(&report, kind, count);
        assert!(report.kinds[kind.name()].found > 0);
    }
    server.shutdown().await;
}
