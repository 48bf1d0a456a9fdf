//! The `kt` and `kt-audit` binaries against a real server, as a person would use them: human and
//! JSON output, and a restore from a stale backup (the Venafi 2017 failure) refused by `kt` with
//! evidence (exit 3) and reported by `kt-audit` (exit 2, evidence file).

mod common;

use common::{binary, copy_dir};

use std::path::Path;
use std::process::{Command, Output};

fn run(name: &str, args: &[&str]) -> Output {
    let out = Command::new(binary(name)).args(args).output().unwrap();
    eprintln!(
        "$ {name} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `kt` against `url` with the log key file and trusted-state file given.
fn kt(url: &str, key_file: &Path, state: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "--server",
        url,
        "--log-key",
        key_file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run("kt", &all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kt_and_kt_audit_catch_a_restore_from_a_stale_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let key_file = d.join("db/log.pub");
    let state = d.join("kt.json");
    let kt_here = |args: &[&str]| kt(&url, &key_file, &state, args);

    let out = kt_here(&["append", "-n", "cli", "first record"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("appended entry 0 (verified)"));
    let out = kt_here(&["--json", "append", "-n", "cli", "second record"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["index"], 1);
    assert_eq!(json["checkpoint"]["size"], 2);

    let out = kt_here(&["prove", "0"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("payload   first record"));
    let out = kt_here(&["verify"]);
    assert!(out.status.success(), "verify passes on an honest log");

    let audit_dir = d.join("audit");
    let audit = |url: &str| {
        run(
            "kt-audit",
            &[
                "--server",
                url,
                "--log-key",
                key_file.to_str().unwrap(),
                "--state-dir",
                audit_dir.to_str().unwrap(),
                "--once",
            ],
        )
    };
    let out = audit(&url);
    assert!(out.status.success());
    assert!(stdout(&out).contains("audit passed"));

    // Back up the stopped log, then let it move on and be seen by the client and the auditor.
    server.shutdown().await;
    copy_dir(&d.join("db"), &d.join("backup"));
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let kt_here = |args: &[&str]| kt(&url, &key_file, &state, args);
    assert!(kt_here(&["append", "-n", "cli", "third record"])
        .status
        .success());
    assert!(audit(&url).status.success());
    server.shutdown().await;

    // The operator restores the stale backup and restarts: it starts (the backup is internally
    // consistent), but everyone who saw the newer checkpoint refuses it.
    std::fs::remove_dir_all(d.join("db")).unwrap();
    copy_dir(&d.join("backup"), &d.join("db"));
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let trusted_before = std::fs::read_to_string(&state).unwrap();
    let out = kt(&url, &key_file, &state, &["checkpoint"]);
    assert_eq!(out.status.code(), Some(3), "kt refuses the rollback");
    let evidence: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(evidence["kind"], "rollback");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REFUSED"));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        trusted_before,
        "state unchanged"
    );

    let out = audit(&url);
    assert_eq!(out.status.code(), Some(2), "kt-audit reports the violation");
    let evidence_file = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("evidence-")
        })
        .expect("an evidence file");
    let evidence: serde_json::Value =
        serde_json::from_slice(&std::fs::read(evidence_file).unwrap()).unwrap();
    assert_eq!(evidence["kind"], "rollback");
    assert_eq!(evidence["checkpoints"].as_array().unwrap().len(), 2);
    server.shutdown().await;
}

#[test]
fn ktd_rejects_a_bad_config_before_binding() {
    let out = run(
        "ktd",
        &[
            "--grpc-addr",
            "not-an-address",
            "--data-dir",
            "/nonexistent/x",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("grpc_addr"));
}

#[test]
fn ktd_keygen_writes_a_private_key_and_prints_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let out = run(
        "ktd",
        &[
            "keygen",
            "--out",
            key.to_str().unwrap(),
            "--origin",
            "example.com/log",
        ],
    );
    assert!(out.status.success());
    let verifier = stdout(&out).trim().to_owned();
    assert!(verifier.starts_with("example.com/log+"));
    kt_core::note::NoteVerifier::parse(&verifier).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// `kt append` of `payload` with its stdout going to `out`.
fn append_with_stdout(
    url: &str,
    key_file: &Path,
    state: &Path,
    payload: &str,
    out: std::process::Stdio,
) -> Output {
    Command::new(binary("kt"))
        .args(["--server", url, "--log-key", key_file.to_str().unwrap()])
        .args(["--state", state.to_str().unwrap()])
        .args(["append", "-n", "cli", payload])
        .stdout(out)
        .output()
        .unwrap()
}

/// `kt ... | head -1` closes kt's output early: kt must not panic, must still do its work, and
/// must exit with the status of its result. Any other failure to write the output is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kt_with_a_closed_output_still_does_its_work_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = common::start(d).await;
    let url = common::grpc_url(&server);
    let key_file = d.join("db/log.pub");
    let state = d.join("kt.json");

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to kt's stdout now fails with a broken pipe
    let out = append_with_stdout(&url, &key_file, &state, "written unseen", writer.into());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The append happened, and the trusted state was saved.
    let out = kt(&url, &key_file, &state, &["prove", "0"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("entry 0 is in the log (verified)"));

    // Output that fails otherwise (a full disk: Linux's /dev/full) is reported and makes the
    // run exit 1, though the work was done: a script must not take a truncated file as whole.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = append_with_stdout(
        &url,
        &key_file,
        &state,
        "written to a full disk",
        full.into(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kt: writing the output"), "{stderr}");
    let out = kt(&url, &key_file, &state, &["prove", "1"]);
    assert!(out.status.success());
    server.shutdown().await;
}
