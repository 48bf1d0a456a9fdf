//! The key directory end to end over loopback gRPC with RocksDB: a thousand users register,
//! rotate, revoke and recover; every lookup and history verifies; the map survives a restart;
//! the auditor passes; bad requests are refused with the right status and change nothing.

mod common;

use std::collections::BTreeMap;

use common::directory::{code, next_update, signer, state_after, TestDirectory};
use kt_audit::{Auditor, Outcome};
use kt_core::directory::{LabelState, Op, UserSigner};
use tonic::Code;

const USERS: u64 = 1_000;

/// What the test expects of one user at the end.
struct User {
    identifier: String,
    state: Option<LabelState>,
    signer: Option<UserSigner>,
    updates: u64,
}

/// A small deterministic generator, so a failure is reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Runs one user's life: register, some rotations, maybe a revoke, maybe a recover.
async fn live(mut dir: TestDirectory, n: u64, seed: u64) -> User {
    let mut rng = Lcg(seed);
    let identifier = format!("user-{n}@example.org");
    let label = dir.label(&identifier).await;
    let mut key_no = n * 100;
    let mut current = signer(key_no);
    let v = dir
        .submit(&next_update(
            &label,
            None,
            Op::Register,
            None,
            Some(&current),
        ))
        .await
        .unwrap();
    let mut state = state_after(&v);
    let mut updates = 1;
    for _ in 0..rng.next(4) {
        key_no += 1;
        let new = signer(key_no);
        let v = dir
            .submit(&next_update(
                &label,
                Some(&state),
                Op::Rotate,
                Some(&current),
                Some(&new),
            ))
            .await
            .unwrap();
        state = state_after(&v);
        current = new;
        updates += 1;
    }
    let mut live_signer = Some(current.clone());
    if rng.next(10) == 0 {
        let v = dir
            .submit(&next_update(
                &label,
                Some(&state),
                Op::Revoke,
                Some(&current),
                None,
            ))
            .await
            .unwrap();
        state = state_after(&v);
        live_signer = None;
        updates += 1;
    }
    if rng.next(12) == 0 {
        key_no += 1;
        let new = signer(key_no);
        let v = dir
            .submit(&next_update(
                &label,
                Some(&state),
                Op::Recover,
                None,
                Some(&new),
            ))
            .await
            .unwrap();
        state = state_after(&v);
        live_signer = Some(new);
        updates += 1;
    }
    User {
        identifier,
        state: Some(state),
        signer: live_signer,
        updates,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_and_everything_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;

    // 50 users at a time, so epochs hold many updates of different users.
    let mut users = Vec::new();
    for wave in 0..USERS / 50 {
        let tasks: Vec<_> = (wave * 50..(wave + 1) * 50)
            .map(|n| tokio::spawn(live(client.clone(), n, n ^ 0x5eed)))
            .collect();
        for t in tasks {
            users.push(t.await.unwrap());
        }
    }
    let revoked = users.iter().filter(|u| u.signer.is_none()).count();
    let recovered = users
        .iter()
        .filter(|u| u.state.as_ref().unwrap().recovered)
        .count();
    assert!(
        revoked > 0 && recovered > 0,
        "the mix covers revoke ({revoked}) and recover ({recovered})"
    );

    let mut client = client;
    let (first_cp, _) = client.lookup("user-0@example.org", None).await;
    for u in &users {
        let (_, found) = client.lookup(&u.identifier, None).await;
        let found = found.expect("registered user is in the map");
        let want = u.state.as_ref().unwrap();
        assert_eq!(found.update.version(), want.version);
        assert_eq!(found.leaf_hash, want.leaf_hash);
        assert_eq!(
            found.update.key(),
            u.signer.as_ref().map(|s| s.public()).as_ref()
        );
        let (versions, state) = client.history(&u.identifier).await;
        assert_eq!(versions.len() as u64, u.updates);
        assert_eq!(state.as_ref(), Some(want));
    }
    // Unknown users get a verified non-membership answer, and an empty verified history.
    for n in 0..50 {
        let id = format!("nobody-{n}@example.org");
        assert!(client.lookup(&id, None).await.1.is_none());
        assert_eq!(client.history(&id).await.0.len(), 0);
    }
    // A lookup at an old epoch verifies against that epoch's map.
    let (cp, found) = client.lookup("user-0@example.org", Some(1)).await;
    assert_eq!(cp.epoch, 1);
    assert!(found.is_none() || found.unwrap().update.version() == 1);

    // The auditor replays everything and agrees.
    let audit = common::audit_config(&server, &dir.path().join("audit"));
    let mut auditor = Auditor::new(audit).await.unwrap();
    match auditor.run_once().await.unwrap() {
        Outcome::Clean { .. } => {}
        Outcome::Violation { finding, .. } => panic!("clean directory flagged: {finding:?}"),
    }

    // After a restart (full start-up check) the stored map gives the same root and answers.
    let latest_root = client.lookup("user-1@example.org", None).await.0.map_root;
    server.shutdown().await;
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let (cp, _) = client.lookup("user-1@example.org", None).await;
    assert_eq!(cp.map_root, latest_root);
    for u in users.iter().step_by(37) {
        let found = client.lookup(&u.identifier, None).await.1.unwrap();
        assert_eq!(found.update.version(), u.state.as_ref().unwrap().version);
    }
    assert!(first_cp.epoch <= cp.epoch);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_updates_are_refused_with_the_right_status_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let (alice, bob, mallory) = (signer(1), signer(2), signer(3));
    let id = "alice@example.org";
    let label = client.label(id).await;

    let reg = next_update(&label, None, Op::Register, None, Some(&alice));
    // No token, then a wrong token: UNAUTHENTICATED.
    let mut no_token = TestDirectory::connect(&server, "").await;
    let req = tonic::Request::new(kt_proto::v1::UpdateRequest {
        entry: reg.encode(),
        identifier: id.into(),
    });
    assert_eq!(
        no_token.grpc.register(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut wrong = TestDirectory::connect(&server, "not-the-provider-token").await;
    wrong.label(id).await;
    assert_eq!(code(wrong.submit(&reg).await), Code::Unauthenticated);
    // The provider vouches for an identifier: a register must name it, and the entry must be for
    // its VRF label (here: Bob's identifier with Alice's entry, and no identifier at all).
    for identifier in ["bob@example.org", ""] {
        let mut req = tonic::Request::new(kt_proto::v1::UpdateRequest {
            entry: reg.encode(),
            identifier: identifier.into(),
        });
        let value = format!("Bearer {}", common::PROVIDER_TOKEN)
            .parse()
            .unwrap();
        req.metadata_mut().insert("authorization", value);
        let err = client.grpc.register(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{identifier:?}: {err}");
    }
    // A label that is not a VRF label at all (the plain hash of the identifier).
    let hashed = kt_core::directory::Label::from_identifier(id).unwrap();
    let mut req = tonic::Request::new(kt_proto::v1::UpdateRequest {
        entry: next_update(&hashed, None, Op::Register, None, Some(&alice)).encode(),
        identifier: id.into(),
    });
    let value = format!("Bearer {}", common::PROVIDER_TOKEN)
        .parse()
        .unwrap();
    req.metadata_mut().insert("authorization", value);
    assert_eq!(
        client.grpc.register(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let before = client.lookup(id, None).await;
    assert!(before.1.is_none(), "nothing was registered");

    let v1 = client.submit(&reg).await.unwrap();
    let s1 = state_after(&v1);
    assert_eq!(code(client.submit(&reg).await), Code::AlreadyExists);

    // A rotation signed by someone else's key instead of Alice's.
    let forged = next_update(
        &label,
        Some(&s1),
        Op::Rotate,
        Some(&mallory),
        Some(&mallory),
    );
    assert_eq!(code(client.submit(&forged).await), Code::PermissionDenied);
    // A rotation that skips a version.
    let mut skipping = s1.clone();
    skipping.version += 1;
    let skip = next_update(
        &label,
        Some(&skipping),
        Op::Rotate,
        Some(&alice),
        Some(&bob),
    );
    assert_eq!(code(client.submit(&skip).await), Code::FailedPrecondition);
    // A rotation with a wrong prev.
    let mut wrong_prev = s1.clone();
    wrong_prev.leaf_hash = [7; 32];
    let bad_prev = next_update(
        &label,
        Some(&wrong_prev),
        Op::Rotate,
        Some(&alice),
        Some(&bob),
    );
    assert_eq!(
        code(client.submit(&bad_prev).await),
        Code::FailedPrecondition
    );
    // A register entry sent to Rotate; garbage bytes.
    req = tonic::Request::new(kt_proto::v1::UpdateRequest {
        entry: reg.encode(),
        identifier: String::new(),
    });
    assert_eq!(
        client.grpc.rotate(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    req = tonic::Request::new(kt_proto::v1::UpdateRequest {
        entry: vec![1, 2, 3],
        identifier: String::new(),
    });
    assert_eq!(
        client.grpc.revoke(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Unknown identifier format.
    let err = client
        .grpc
        .lookup(kt_proto::v1::LookupRequest {
            identifier: String::new(),
            epoch: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // None of that changed Alice.
    let (_, found) = client.lookup(id, None).await;
    assert_eq!(found.unwrap().leaf_hash, s1.leaf_hash);
    let (versions, _) = client.history(id).await;
    assert_eq!(versions.len(), 1);

    // The real rotation works, and the old epoch still shows the old key.
    let v2 = client
        .submit(&next_update(
            &label,
            Some(&s1),
            Op::Rotate,
            Some(&alice),
            Some(&bob),
        ))
        .await
        .unwrap();
    let (now_cp, now) = client.lookup(id, None).await;
    assert_eq!(now.unwrap().leaf_hash, v2.leaf_hash);
    // No heartbeats in tests, so the latest epoch is v2's, and the one before it still maps
    // Alice to v1: a lookup at a past epoch proves against that epoch's map.
    let (_, at_v1) = client.lookup(id, Some(now_cp.epoch - 1)).await;
    assert_eq!(at_v1.unwrap().leaf_hash, s1.leaf_hash);
    assert!(before.0.epoch < now_cp.epoch);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_fits_in_one_verified_answer() {
    // 650 versions with their inclusion proofs (~10 hashes each here) are ~300 KB: more than
    // the 256 KiB a request may be, within what an answer may be (MAX_GRPC_ANSWER).
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let id = "frequent-rotator@example.org";
    let label = client.label(id).await;
    let mut key = signer(3_000);
    let mut state = state_after(
        &client
            .submit(&next_update(&label, None, Op::Register, None, Some(&key)))
            .await
            .unwrap(),
    );
    for n in 1..650 {
        let new = signer(3_000 + n * 3);
        let update = next_update(&label, Some(&state), Op::Rotate, Some(&key), Some(&new));
        state = state_after(&client.submit(&update).await.unwrap());
        key = new;
    }
    let (versions, last) = client.history(id).await;
    assert_eq!(versions.len(), 650);
    assert_eq!(last.unwrap().version, 650);
    let bytes: usize = versions.iter().map(|v| v.update.encode().len() + 320).sum();
    assert!(
        bytes > ktd::MAX_GRPC_MESSAGE,
        "{bytes} bytes do not test the limit"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_sequenced_signed_and_read_back_with_proofs() {
    use kt_core::directory::{verify_label, verify_messages, Message};
    use kt_core::entry::Namespace;
    use kt_proto::v1::messages_client::MessagesClient;
    use kt_proto::v1::{ReadMessagesRequest, SendMessageRequest};

    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let alice = signer(9);
    let id = "alice@example.org";
    let label = client.label(id).await;
    client
        .submit(&next_update(&label, None, Op::Register, None, Some(&alice)))
        .await
        .unwrap();
    let mut messages = MessagesClient::connect(common::grpc_url(&server))
        .await
        .unwrap();
    let ns = Namespace::new("chat/general").unwrap();
    let mut sent = BTreeMap::new();
    for seq in 1..=5u64 {
        let msg = Message::sign(
            ns.clone(),
            label,
            seq,
            format!("hello {seq}").into_bytes(),
            &alice,
        )
        .unwrap();
        let resp = messages
            .send(SendMessageRequest {
                entry: msg.encode(),
            })
            .await
            .unwrap()
            .into_inner();
        let cp = client.open(&resp.checkpoint.unwrap().note);
        let proven = (&resp.entry.unwrap()).try_into().unwrap();
        kt_core::directory::verify::verify_proven_entry(&cp, &proven).unwrap();
        sent.insert(seq, msg);
    }
    // A replayed sequence and a message signed by another key are refused.
    let replay = Message::sign(ns.clone(), label, 5, b"again".to_vec(), &alice).unwrap();
    let err = messages
        .send(SendMessageRequest {
            entry: replay.encode(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let forged = Message::sign(ns, label, 6, b"forged".to_vec(), &signer(10)).unwrap();
    let err = messages
        .send(SendMessageRequest {
            entry: forged.encode(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let resp = messages
        .read(ReadMessagesRequest {
            author: id.into(),
            from_sequence: 2,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let cp = client.open(&resp.checkpoint.unwrap().note);
    // The read carries the author's VRF proof: the label of the messages is checked, not trusted.
    let proof = kt_proto::directory::vrf_proof_from_wire(&resp.vrf_proof).unwrap();
    assert_eq!(verify_label(&client.vrf_key, id, &proof).unwrap(), label);
    assert!(verify_label(&client.vrf_key, "bob@example.org", &proof).is_err());
    let proven: Vec<_> = resp
        .messages
        .iter()
        .map(|m| m.try_into().unwrap())
        .collect();
    let read = verify_messages(&cp, &label, 2, &proven).unwrap();
    assert_eq!(read.len(), 4);
    for m in &read {
        assert_eq!(&m.message, &sent[&m.message.sequence()]);
    }
    server.shutdown().await;
}

/// Labels depend on the VRF key, so a log keeps its key for life: a database is never served
/// under another VRF key, and an existing log whose VRF key file is gone does not get a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_never_served_under_another_vrf_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let published = std::fs::read_to_string(dir.path().join("db/vrf.pub")).unwrap();
    assert_eq!(published.trim(), server.vrf_public_key);
    server.shutdown().await;

    let other = dir.path().join("other-vrf.key");
    ktd::keys::generate_vrf(&other).unwrap();
    let mut raw = common::raw_config(dir.path());
    raw.vrf_key_file = Some(other);
    let config = ktd::config::Config::validate(raw).unwrap();
    let err = ktd::start(config).await.unwrap_err();
    assert!(format!("{err:#}").contains("vrf_public_key"), "{err:#}");

    std::fs::remove_file(dir.path().join("db/vrf.key")).unwrap();
    match ktd::config::Config::validate(common::raw_config(dir.path())) {
        Err(ktd::config::ConfigError::Invalid { field, .. }) => assert_eq!(field, "vrf_key_file"),
        other => panic!("expected the missing VRF key to be refused, got {other:?}"),
    }
}

/// A register request from the identity provider, naming `identifier`.
fn vouched(entry: Vec<u8>, identifier: &str) -> tonic::Request<kt_proto::v1::UpdateRequest> {
    let mut req = tonic::Request::new(kt_proto::v1::UpdateRequest {
        entry,
        identifier: identifier.into(),
    });
    let value = format!("Bearer {}", common::PROVIDER_TOKEN)
        .parse()
        .unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

/// Identifiers that print like another (`docs/protocol.md` §9.1): the server refuses every
/// request naming one with INVALID_ARGUMENT and a message that says which character, and
/// appends nothing; canonically equivalent spellings are one identifier with one label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofable_identifiers_are_refused_and_equivalent_ones_are_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let alice = signer(1);
    let honest = "alice@example.com";
    let label = client.label(honest).await;
    let (before, _) = client.lookup(honest, None).await;

    for spoof in [
        "alice\u{200b}@example.com",
        "alice\u{2060}@example.com",
        "al\u{ad}ice@example.com",
        "\u{202e}moc.elpmaxe@ecila",
        "alice@example.com\u{feff}",
        "alice@example.com\u{a0}",
        "alice\u{85}@example.com",
    ] {
        // A register naming it, with an entry for any label: the identifier is refused first.
        let entry = next_update(&label, None, Op::Register, None, Some(&alice)).encode();
        let err = client
            .grpc
            .register(vouched(entry, spoof))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{spoof:?}: {err}");
        let ch = spoof.chars().find(|c| !c.is_ascii()).unwrap();
        let code_point = format!("U+{:04X}", u32::from(ch));
        assert!(
            err.message().contains(&code_point) && err.message().contains("Unicode"),
            "{spoof:?}: {}",
            err.message()
        );
        // Every read naming it is refused the same way.
        let lookup = client
            .grpc
            .lookup(kt_proto::v1::LookupRequest {
                identifier: spoof.into(),
                epoch: None,
            })
            .await
            .unwrap_err();
        assert_eq!(lookup.code(), Code::InvalidArgument, "{spoof:?}");
        assert!(lookup.message().contains(&code_point), "{lookup}");
        let history = client
            .grpc
            .history(kt_proto::v1::HistoryRequest {
                identifier: spoof.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(history.code(), Code::InvalidArgument, "{spoof:?}");
        let mut messages =
            kt_proto::v1::messages_client::MessagesClient::connect(common::grpc_url(&server))
                .await
                .unwrap();
        let read = messages
            .read(kt_proto::v1::ReadMessagesRequest {
                author: spoof.into(),
                from_sequence: 1,
                limit: 10,
            })
            .await
            .unwrap_err();
        assert_eq!(read.code(), Code::InvalidArgument, "{spoof:?}");
    }
    let (after, found) = client.lookup(honest, None).await;
    assert_eq!((after.size, after.epoch), (before.size, before.epoch));
    assert!(found.is_none(), "nothing was appended");

    // NFC: José registered as e + U+0301 is José as U+00E9, one label, one key.
    let (nfd, nfc) = ("jose\u{301}@example.com", "jos\u{e9}@example.com");
    let jose = client.label(nfd).await;
    assert_eq!(client.label(nfc).await, jose);
    let reg = next_update(&jose, None, Op::Register, None, Some(&alice));
    client
        .grpc
        .register(vouched(reg.encode(), nfd))
        .await
        .unwrap();
    let (_, found) = client.lookup(nfc, None).await;
    assert_eq!(found.unwrap().leaf_hash, reg.leaf_hash());
    // A second register under the other spelling is the same label's second register.
    let again = next_update(&jose, None, Op::Register, None, Some(&signer(2)));
    let err = client
        .grpc
        .register(vouched(again.encode(), nfc))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    server.shutdown().await;
}

/// `time_ms` of a key update must be within 5 minutes of its epoch's time (§9.3): the values
/// an independent client sent (0 and 2^64 - 1) and anything just outside the bound are refused
/// with INVALID_ARGUMENT and the bound, and nothing is appended; an honest client's clock passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_updates_dated_far_from_their_epoch_are_refused() {
    use kt_core::directory::{KeyUpdate, Role, MAX_UPDATE_SKEW_MS};
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let mut client = TestDirectory::connect(&server, common::PROVIDER_TOKEN).await;
    let carol = signer(3);
    let id = "carol@example.com";
    let label = client.label(id).await;
    let (before, _) = client.lookup(id, None).await;
    let dated = |time_ms: u64| {
        KeyUpdate::new(
            label,
            1,
            [0; 32],
            Op::Register,
            Some(carol.public()),
            time_ms,
        )
        .unwrap()
        .sign(Role::NewKey, &carol)
        .unwrap()
    };
    let now = ktd::sequencer::now_ms();
    let hour = 3_600_000;
    for time_ms in [
        0,
        u64::MAX,
        now - hour,
        now + hour,
        now + MAX_UPDATE_SKEW_MS + 60_000,
    ] {
        let err = client.submit(&dated(time_ms)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{time_ms}: {err}");
        assert!(
            err.message()
                .contains(&format!("update time_ms {time_ms} is more than 300000 ms"))
                && err.message().contains("allowed:"),
            "{}",
            err.message()
        );
    }
    let (after, found) = client.lookup(id, None).await;
    assert_eq!(after.size, before.size);
    assert!(found.is_none(), "nothing appended");
    // The client's clock, as kt-client sets it.
    let v1 = client
        .submit(&dated(ktd::sequencer::now_ms()))
        .await
        .unwrap();
    assert_eq!(v1.update.version(), 1);
    server.shutdown().await;
}
