//! Back-pressure under load (issue 5, item 5).
//!
//! `flood_is_refused_per_peer_and_memory_stays_bounded`: the real `ktd` binary with low per-peer
//! limits, flooded over 32 connections from 127.0.0.2 (gRPC reads and appends, HTTP tiles, and
//! more never-read streams than a peer may hold open), in three waves. Loopback is 127.0.0.0/8,
//! so the flood binds its own source address while the server listens on 127.0.0.1 only, and
//! per-peer limits see two peers. The flood is refused with `RESOURCE_EXHAUSTED` / 429 and a
//! back-off hint; a well-behaved client on 127.0.0.1 appends, verifies and reads tiles
//! throughout; no more is accepted than the limits allow; every accepted append is in the log;
//! and the server's resident memory stays under a bound and stops growing after the first wave.
//!
//! `a_reader_that_never_reads_stalls_nobody`: streams whose reader never reads (entries and
//! checkpoints) while the sequencer signs hundreds of epochs and another client appends and
//! reads; the stalled streams then deliver everything, in order.
//!
//! No assertion depends on timing: the good client stays within its burst, so it never waits
//! for tokens, and the bound on what the flood got through is computed from the measured time.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kt_client::{ClientError, LogApi, LogClient};
use kt_proto::v1::log_client::LogClient as RawLog;
use kt_proto::v1::{
    AppendRequest, GetCheckpointRequest, GetEntriesRequest, WatchCheckpointsRequest,
};
use ktd::limits::MAX_OPEN_STREAMS_PER_PEER;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const ORIGIN: &str = "flood.keytrail/log";
/// The flooding peer, and the one that opens more connections than it may.
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOARDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

const READ_RATE: u64 = 5;
const READ_BURST: u64 = 400;
const WRITE_RATE: u64 = 2;
const WRITE_BURST: u64 = 60;
const MAX_CONNECTIONS_PER_PEER: usize = 40;

const FLOOD_CONNECTIONS: usize = 32;
/// Per connection and wave: one append and two reads per round.
const ROUNDS: usize = 100;
const HTTP_REQUESTS_PER_WAVE: usize = 500;
const WAVES: usize = 3;
/// The well-behaved client's appends: with its reads, well within both bursts.
const GOOD_APPENDS: u64 = 20;

/// Resident memory the server may reach under the flood.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// How much it may still grow between the end of the first wave and the end of the last.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

/// The `ktd` child, killed on drop.
struct Ktd {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    log_key: String,
}

impl Drop for Ktd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ktd {
    fn spawn(dir: &Path) -> Ktd {
        let s = |n: u64| n.to_string();
        let mut child = Command::new(common::binary("ktd"))
            // No KTD_* variable of the caller's environment may change the server under test.
            .env_clear()
            .env("RUST_LOG", "warn")
            .arg("--data-dir")
            .arg(dir.join("db"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--origin", ORIGIN])
            .args(["--epoch-interval-ms", "20", "--heartbeat-ms", "3600000"])
            .args(["--read-rate-per-sec", &s(READ_RATE)])
            .args(["--read-burst", &s(READ_BURST)])
            .args(["--write-rate-per-sec", &s(WRITE_RATE)])
            .args(["--write-burst", &s(WRITE_BURST)])
            .args([
                "--max-connections-per-peer",
                &MAX_CONNECTIONS_PER_PEER.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        // Drains stdout until ktd exits, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut grpc, mut http, mut log_key) = (None, None, None);
        while grpc.is_none() || http.is_none() || log_key.is_none() {
            // No deadline: ktd either serves or exits, which closes its stdout.
            let Ok(line) = lines.recv() else {
                panic!("ktd exited before serving: {:?}", child.wait());
            };
            // `  gRPC        127.0.0.1:PORT (plaintext)`, `  HTTP tiles  http://ADDR/checkpoint`
            let mut words = line.split_whitespace();
            let parsed = match (words.next(), words.next(), words.next()) {
                (Some("gRPC"), Some(addr), _) => addr.parse().map(|a| grpc = Some(a)),
                (Some("HTTP"), Some("tiles"), Some(url)) => {
                    let addr = url.trim_start_matches("http://");
                    let addr = addr.trim_end_matches("/checkpoint");
                    addr.parse().map(|a| http = Some(a))
                }
                (Some("log"), Some("key"), Some(key)) => {
                    log_key = Some(key.to_owned());
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = parsed {
                let _ = child.kill();
                panic!("unexpected line from ktd {line:?}: {e}");
            }
        }
        Ktd {
            child,
            grpc: grpc.unwrap(),
            http: http.unwrap(),
            log_key: log_key.unwrap(),
        }
    }

    /// The child's resident set (VmRSS), in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS in /proc/<pid>/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A gRPC connection to `server` from the source address `local`.
async fn channel_from(
    local: Ipv4Addr,
    server: SocketAddr,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(local), 0))?;
            let stream = socket.connect(server).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }))
        .await
}

/// What one kind of request got.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    /// RESOURCE_EXHAUSTED (gRPC) or 429 (HTTP).
    refused: AtomicU64,
    /// Refusals that carried a back-off hint in the message and in metadata or headers.
    hinted: AtomicU64,
    other: AtomicU64,
    first_other: Mutex<Option<String>>,
}

impl Tally {
    fn grpc<T>(&self, result: Result<T, tonic::Status>) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let says = status.message().contains("; retry after ");
                // The client library reads the hint from the metadata.
                let hint = ClientError::from(status).retry_after();
                if says && hint.is_some_and(|d| d.as_millis() > 0) {
                    self.hinted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(status) => self.unexpected(format!("{status:?}")),
        }
    }

    fn unexpected(&self, what: String) {
        self.other.fetch_add(1, Ordering::Relaxed);
        self.first_other.lock().unwrap().get_or_insert(what);
    }

    fn get(&self) -> (u64, u64, u64, u64) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            l(&self.ok),
            l(&self.refused),
            l(&self.hinted),
            l(&self.other),
        )
    }
}

#[derive(Debug, Default)]
struct Flood {
    writes: Tally,
    reads: Tally,
    http: Tally,
}

/// One wave: every connection appends and reads as fast as it is answered, while an HTTP client
/// bound to the same address asks for the checkpoint.
async fn wave(channels: &[Channel], http: &reqwest::Client, tiles: &str, flood: &Arc<Flood>) {
    let mut tasks = Vec::new();
    for (c, channel) in channels.iter().enumerate() {
        let (log, flood) = (RawLog::new(channel.clone()), flood.clone());
        tasks.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let (mut a, mut b, mut d) = (log.clone(), log.clone(), log.clone());
                let (append, latest, genesis) = tokio::join!(
                    a.append(AppendRequest {
                        namespace: "flood".into(),
                        payload: format!("connection {c} round {r}").into_bytes(),
                    }),
                    b.get_checkpoint(GetCheckpointRequest { epoch: None }),
                    d.get_checkpoint(GetCheckpointRequest { epoch: Some(0) }),
                );
                flood.writes.grpc(append);
                flood.reads.grpc(latest);
                flood.reads.grpc(genesis);
            }
        }));
    }
    let url = format!("{tiles}/checkpoint");
    let http_flood = futures::stream::iter(0..HTTP_REQUESTS_PER_WAVE)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(url).send().await }
        })
        .buffer_unordered(16)
        .for_each(|answer| {
            let tally = &flood.http;
            match answer {
                Ok(a) if a.status() == 200 => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(a) if a.status() == 429 => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    let header = |name: &str| {
                        a.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                    };
                    if header("retry-after").is_some_and(|s| s >= 1)
                        && header("retry-after-ms").is_some_and(|ms| ms >= 1)
                    {
                        tally.hinted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(a) => tally.unexpected(format!("HTTP {}", a.status())),
                Err(e) => tally.unexpected(format!("HTTP error {e}")),
            }
            async {}
        });
    http_flood.await;
    for t in tasks {
        t.await.unwrap();
    }
}

/// The well-behaved client on 127.0.0.1: verified appends, a verified refresh, tiles, and the
/// HTTP limits on request shape. Everything must succeed.
async fn good_client(ktd: &Ktd, state: &Path) -> u64 {
    let mut client = LogClient::connect(&format!("http://{}", ktd.grpc), &ktd.log_key, state)
        .await
        .unwrap();
    for i in 0..GOOD_APPENDS {
        let receipt = client
            .append("good", format!("well-behaved record {i}").into_bytes())
            .await
            .unwrap();
        assert!(receipt.index < receipt.checkpoint.checkpoint().size);
    }
    client.verify().await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", ktd.http);
    let checkpoint = http.get(format!("{base}/checkpoint")).send().await.unwrap();
    assert_eq!(checkpoint.status(), 200);
    assert!(checkpoint.text().await.unwrap().starts_with(ORIGIN));
    let with_body = http
        .get(format!("{base}/checkpoint"))
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(with_body.status(), 413, "a GET carries no body");
    let long = format!("{base}/tile/0/{}", "x001/".repeat(400));
    assert_eq!(http.get(long).send().await.unwrap().status(), 414);
    let mut many = http.get(format!("{base}/checkpoint"));
    for i in 0..100 {
        many = many.header(format!("x-filler-{i}"), "x");
    }
    assert_eq!(
        many.send().await.unwrap().status(),
        431,
        "at most 64 header fields"
    );
    GOOD_APPENDS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flood_is_refused_per_peer_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ktd = Ktd::spawn(dir.path());
    let rss_start = ktd.rss_kib();
    let started = Instant::now();

    // Streams the flooder opens and never reads: a peer may hold MAX_OPEN_STREAMS_PER_PEER.
    let stall_channel = channel_from(FLOODER, ktd.grpc).await.unwrap();
    let mut stalled = Vec::new();
    let mut refused_streams = 0;
    for _ in 0..MAX_OPEN_STREAMS_PER_PEER + 8 {
        match RawLog::new(stall_channel.clone())
            .watch_checkpoints(WatchCheckpointsRequest { after_epoch: None })
            .await
        {
            Ok(stream) => stalled.push(stream.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("streaming calls open"),
                    "{status:?}"
                );
                refused_streams += 1;
            }
        }
    }
    assert_eq!(stalled.len(), MAX_OPEN_STREAMS_PER_PEER as usize);
    assert_eq!(refused_streams, 8);

    // A peer that opens more connections than it may: those past the cap are closed at once.
    let mut hoard = Vec::new();
    let mut refused_connections = 0;
    for _ in 0..MAX_CONNECTIONS_PER_PEER + 5 {
        let served = match channel_from(HOARDER, ktd.grpc).await {
            Ok(channel) => {
                let answer = RawLog::new(channel.clone())
                    .get_checkpoint(GetCheckpointRequest { epoch: None })
                    .await;
                hoard.push(channel);
                answer.is_ok()
            }
            Err(_) => false,
        };
        if !served {
            refused_connections += 1;
        }
    }
    assert_eq!(refused_connections, 5);

    let mut channels = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        channels.push(channel_from(FLOODER, ktd.grpc).await.unwrap());
    }
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(FLOODER))
        .build()
        .unwrap();
    let tiles = format!("http://{}", ktd.http);
    let flood = Arc::new(Flood::default());
    let mut rss = Vec::new();
    let mut good = 0;
    let good_state = dir.path().join("good.json");
    for w in 0..WAVES {
        if w == 1 {
            // The good client runs during the second wave.
            let (n, ()) = tokio::join!(
                good_client(&ktd, &good_state),
                wave(&channels, &http, &tiles, &flood)
            );
            good = n;
        } else {
            wave(&channels, &http, &tiles, &flood).await;
        }
        rss.push(ktd.rss_kib());
    }
    let elapsed = started.elapsed().as_secs_f64();

    let (w_ok, w_refused, w_hinted, w_other) = flood.writes.get();
    let (r_ok, r_refused, r_hinted, r_other) = flood.reads.get();
    let (h_ok, h_refused, h_hinted, h_other) = flood.http.get();
    println!(
        "flood: {} gRPC appends ({w_ok} accepted, {w_refused} RESOURCE_EXHAUSTED), {} gRPC reads \
         ({r_ok} answered, {r_refused} RESOURCE_EXHAUSTED), {} HTTP GETs ({h_ok} answered, \
         {h_refused} 429), {} stalled streams held ({refused_streams} more refused), \
         {refused_connections} connections over the cap closed; the good client's {good} verified \
         appends and its reads all succeeded; {elapsed:.1} s; ktd RSS {} KiB at start, after \
         each wave {:?} KiB",
        w_ok + w_refused + w_other,
        r_ok + r_refused + r_other,
        h_ok + h_refused + h_other,
        stalled.len(),
        rss_start,
        rss,
    );
    for (what, other, tally) in [
        ("appends", w_other, &flood.writes),
        ("reads", r_other, &flood.reads),
        ("HTTP", h_other, &flood.http),
    ] {
        assert_eq!(
            other,
            0,
            "flood {what}: only success or back-pressure, got {:?}",
            tally.first_other.lock().unwrap()
        );
    }
    // (a) The flood is refused, and every refusal says when to come back.
    assert!(w_refused > 0 && r_refused > 0 && h_refused > 0);
    assert_eq!(
        w_hinted, w_refused,
        "every refused append carries a back-off hint"
    );
    assert_eq!(
        r_hinted, r_refused,
        "every refused read carries a back-off hint"
    );
    assert_eq!(
        h_hinted, h_refused,
        "every 429 carries Retry-After and retry-after-ms"
    );
    // No more got through than the buckets allow over the time the flood took (+1 for a token
    // that came back while the clock was read).
    let allowed = |rate: u64, burst: u64| burst as f64 + rate as f64 * elapsed + 1.0;
    assert!(
        (w_ok as f64) <= allowed(WRITE_RATE, WRITE_BURST),
        "{w_ok} appends accepted"
    );
    // The flooder's reads: stream opens, gRPC reads and HTTP GETs share one bucket.
    let flooder_reads = r_ok + h_ok + stalled.len() as u64;
    assert!(
        (flooder_reads as f64) <= allowed(READ_RATE, READ_BURST),
        "{flooder_reads} reads answered"
    );

    // (b) The sequencer kept committing: every accepted append, the flood's and the good
    // client's, is in the log.
    let api = LogApi::connect(&format!("http://{}", ktd.grpc), &ktd.log_key)
        .await
        .unwrap();
    let latest = api.checkpoint(None).await.unwrap();
    assert_eq!(latest.checkpoint().size, w_ok + good);

    // (c) Memory stays bounded and stops growing once the first wave has shown the peak.
    let last = *rss.last().unwrap();
    assert!(last < RSS_BOUND_KIB, "ktd RSS {last} KiB");
    assert!(
        last <= rss[0] + RSS_GROWTH_KIB,
        "ktd RSS grew from {} KiB after the first wave to {last} KiB",
        rss[0]
    );
    drop(stalled);
    drop(hoard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_never_reads_stalls_nobody() {
    const FIRST: u64 = 300;
    const MORE: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let url = common::grpc_url(&server);
    let key = server.verifier_key.clone();
    // 1 KiB payloads: the stalled entries stream holds far more than HTTP/2's 64 KiB window and
    // the server's stream buffer.
    let payload = |i: u64| format!("{i:06}").repeat(170).into_bytes();
    let writer = LogApi::connect(&url, &key).await.unwrap();
    let appends = futures::stream::iter(0..FIRST)
        .map(|i| {
            let writer = writer.clone();
            async move {
                let record = kt_core::entry::Record::new(
                    kt_core::entry::Namespace::new("stall").unwrap(),
                    payload(i),
                )
                .unwrap();
                writer.append(&record).await.unwrap().index
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(appends.len() as u64, FIRST);

    // The slow reader: its own connection, two streams it does not read.
    let reader = RawLog::new(
        Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut entries = reader
        .clone()
        .get_entries(GetEntriesRequest {
            start: 0,
            end: FIRST,
        })
        .await
        .unwrap()
        .into_inner();
    let mut checkpoints = reader
        .clone()
        .watch_checkpoints(WatchCheckpointsRequest {
            after_epoch: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let epoch_before = writer.checkpoint(None).await.unwrap().checkpoint().epoch;

    // Meanwhile: one verified append per epoch, and reads, all answered.
    let mut client = LogClient::connect(&url, &key, dir.path().join("client.json"))
        .await
        .unwrap();
    for i in 0..MORE {
        client.append("busy", payload(FIRST + i)).await.unwrap();
    }
    client.verify().await.unwrap();
    let got = writer.entries(0, 10).await.unwrap();
    assert_eq!(got.len(), 10);
    let latest = writer.checkpoint(None).await.unwrap();
    assert_eq!(latest.checkpoint().size, FIRST + MORE);
    // Every one of those appends had an epoch of its own: the sequencer signed at least MORE
    // checkpoints while the reader was stalled, more than its stream buffers hold.
    assert!(latest.checkpoint().epoch >= epoch_before + MORE);

    // The stalled streams lost nothing: every entry and every checkpoint, in order.
    let mut made_for = Vec::new();
    for i in 0..FIRST {
        let entry = entries.next().await.unwrap().unwrap();
        assert_eq!(entry.index, i);
        let kt_core::entry::Entry::Record(record) =
            kt_core::entry::Entry::decode(&entry.data).unwrap()
        else {
            panic!("entry {i} is not a record")
        };
        // The concurrent appends landed in any order; each payload says which one it was.
        let n: u64 = std::str::from_utf8(&record.payload()[..6])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(record.payload(), payload(n).as_slice());
        made_for.push(n);
    }
    made_for.sort_unstable();
    assert_eq!(made_for, (0..FIRST).collect::<Vec<_>>());
    assert!(
        entries.next().await.is_none(),
        "the stream ends after its range"
    );
    let mut expect = 1;
    while expect <= latest.checkpoint().epoch {
        let note = checkpoints.next().await.unwrap().unwrap().note;
        let cp = writer.open(&note).unwrap();
        assert_eq!(cp.checkpoint().epoch, expect);
        expect += 1;
    }
    drop((entries, checkpoints));
    server.shutdown().await;
}
