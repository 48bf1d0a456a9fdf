//! A run: connect, register the identities the workload needs (setup), warm up, measure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tonic::Code;

use crate::config::{random_u64, BenchConfig, Kind, Stop};
use crate::error::BenchError;
use crate::identities::{absent_identifier, new_identifier, user_identifier};
use crate::ops::{connect, Api, Owned};
use crate::report::{KindStats, Machine, OpResult, Outcome, Report, RunSettings, SetupReport};
use crate::rng::Rng;

/// Tries of one setup registration refused with RESOURCE_EXHAUSTED (rate limits left on).
const SETUP_TRIES: u32 = 20;

/// Runs the workload of `config` against its server and returns the results.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    config.validate()?;
    let mut apis = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let channel = connect(&config.target.server).await?;
        apis.push(Api::new(channel, &config.target, config.timeout)?);
    }
    let (setup, owned) = if config.needs_users() && !config.skip_setup {
        let (report, owned) = setup(config, &apis).await?;
        (Some(report), owned)
    } else {
        (None, Vec::new())
    };
    let load_before = Machine::load_avg();
    let measured = measure(config, &apis, owned).await;
    let machine = Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_avg_before: load_before,
        load_avg_after: Machine::load_avg(),
    };
    Ok(Report::build(
        settings(config),
        setup,
        measured.warmup_ops,
        measured.elapsed,
        &measured.stats,
        machine,
    ))
}

fn settings(c: &BenchConfig) -> RunSettings {
    let (duration_secs, count) = match c.stop {
        Stop::Duration(d) => (Some(d.as_secs_f64()), None),
        Stop::Count(n) => (None, Some(n)),
    };
    RunSettings {
        server: c.target.server.clone(),
        // The name on the command line (`append-batch`, not `appendbatch`).
        workload: clap::ValueEnum::to_possible_value(&c.workload)
            .map_or_else(|| format!("{:?}", c.workload), |v| v.get_name().to_owned()),
        mix: c.mix.weights(),
        clients: c.clients,
        connections: c.connections,
        duration_secs,
        count,
        warmup_secs: c.warmup.as_secs_f64(),
        payload_size: c.payload_size,
        batch_size: c.batch_size,
        users: c.users,
        absent_percent: c.absent_percent,
        key_alg: c.key_alg,
        verify: c.verify,
        prefix: c.prefix.clone(),
        seed: c.seed,
    }
}

fn bar(config: &BenchConfig, len: u64, prefix: &'static str) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}

/// Registers `config.users` identities, spread over the clients. Every one must succeed (a
/// refusal for load is retried): later operations rely on them.
async fn setup(
    config: &BenchConfig,
    apis: &[Api],
) -> Result<(SetupReport, Vec<Owned>), BenchError> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = bar(config, config.users, "setup");
    let mut tasks = Vec::new();
    for c in 0..config.clients.min(config.users as usize) {
        let mut api = apis[c % apis.len()].for_client();
        let (next, done, progress) = (next.clone(), done.clone(), progress.clone());
        let (prefix, users, alg) = (config.prefix.clone(), config.users, config.key_alg);
        tasks.push(tokio::spawn(async move {
            let mut owned = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= users {
                    return Ok(owned);
                }
                let identifier = user_identifier(&prefix, i);
                let mut tries = 0;
                let user = loop {
                    match api.register(&identifier, alg).await {
                        (_, Some(user)) => break user,
                        (r, None)
                            if r.outcome == Outcome::Rpc(Code::ResourceExhausted)
                                && tries < SETUP_TRIES =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        (r, None) => {
                            return Err(BenchError::Setup {
                                identifier,
                                reason: match r.outcome {
                                    Outcome::Rpc(code) => kt_client::code_name(code).to_owned(),
                                    Outcome::Verify(why) => why,
                                    Outcome::Ok => "no receipt".into(),
                                },
                            })
                        }
                    }
                };
                owned.push((i, user));
                progress.set_position(done.fetch_add(1, Relaxed) + 1);
            }
        }));
    }
    let mut owned = Vec::with_capacity(config.users as usize);
    for task in tasks {
        owned.extend(task.await.expect("setup task does not panic")?);
    }
    progress.finish_and_clear();
    owned.sort_by_key(|(i, _)| *i);
    let secs = started.elapsed().as_secs_f64();
    let report = SetupReport {
        registered: owned.len() as u64,
        secs,
        registrations_per_sec: if secs > 0.0 {
            owned.len() as f64 / secs
        } else {
            0.0
        },
    };
    Ok((report, owned.into_iter().map(|(_, u)| u).collect()))
}

/// What the measured phase gives.
struct Measured {
    stats: BTreeMap<Kind, KindStats>,
    warmup_ops: u64,
    elapsed: Duration,
}

/// Counters the progress display reads while clients run.
#[derive(Debug, Default)]
struct Live {
    ok: AtomicU64,
    failed: AtomicU64,
    warmup: AtomicU64,
}

/// What every client task shares.
struct Shared {
    config: BenchConfig,
    live: Live,
    /// Operations claimed in count mode.
    claimed: AtomicU64,
    /// Identities `register` operations have made.
    registered: AtomicU64,
    /// Tag of this run's new identities, so runs with the same `--prefix` do not collide.
    run_tag: u64,
    /// When recording starts (after the warm-up).
    measure_from: Instant,
}

impl Shared {
    /// Whether a client may start another operation, and whether it is recorded.
    fn next(&self) -> Option<bool> {
        let now = Instant::now();
        if now < self.measure_from {
            return Some(false);
        }
        match self.config.stop {
            Stop::Duration(d) => (now < self.measure_from + d).then_some(true),
            Stop::Count(n) => (self.claimed.fetch_add(1, Relaxed) < n).then_some(true),
        }
    }
}

async fn measure(config: &BenchConfig, apis: &[Api], owned: Vec<Owned>) -> Measured {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        config: config.clone(),
        live: Live::default(),
        claimed: AtomicU64::new(0),
        registered: AtomicU64::new(0),
        run_tag: random_u64() & 0xffff_ffff,
        measure_from: start + config.warmup,
    });
    // Identity `i` is rotated only by client `i % clients`: its state is that client's alone.
    let rotates = config.mix.kinds().any(|k| k == Kind::Rotate);
    let mut per_client: Vec<Vec<(u64, Option<Owned>)>> = vec![Vec::new(); config.clients];
    if rotates {
        let mut owned = owned.into_iter();
        for i in 0..config.users {
            per_client[(i % config.clients as u64) as usize].push((i, owned.next()));
        }
    }
    let stop_display = Arc::new(AtomicBool::new(false));
    let display = tokio::spawn(show_progress(shared.clone(), stop_display.clone()));
    let mut tasks = Vec::new();
    for (c, mine) in per_client.into_iter().enumerate() {
        let api = apis[c % apis.len()].for_client();
        let shared = shared.clone();
        tasks.push(tokio::spawn(client(c as u64, api, shared, mine)));
    }
    let mut stats: BTreeMap<Kind, KindStats> = config
        .mix
        .kinds()
        .map(|k| (k, KindStats::default()))
        .collect();
    let mut last_end = shared.measure_from;
    let mut warmup_ops = 0;
    for task in tasks {
        let (client_stats, warmup, end) = task.await.expect("client task does not panic");
        for (kind, s) in &client_stats {
            stats.entry(*kind).or_default().merge(s);
        }
        warmup_ops += warmup;
        last_end = last_end.max(end);
    }
    stop_display.store(true, Relaxed);
    let _ = display.await;
    Measured {
        stats,
        warmup_ops,
        elapsed: last_end.saturating_duration_since(shared.measure_from),
    }
}

/// One client: operations one after another until the run stops.
async fn client(
    c: u64,
    mut api: Api,
    shared: Arc<Shared>,
    mut mine: Vec<(u64, Option<Owned>)>,
) -> (BTreeMap<Kind, KindStats>, u64, Instant) {
    let config = &shared.config;
    let mut rng = Rng::new(config.seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut stats: BTreeMap<Kind, KindStats> = BTreeMap::new();
    let mut payload = vec![0u8; config.payload_size];
    let mut warmup = 0;
    let mut last_end = shared.measure_from;
    let mut turn = 0usize;
    while let Some(recorded) = shared.next() {
        let kind = config.mix.pick(rng.next_u64());
        let result = match kind {
            Kind::Append => {
                rng.fill(&mut payload);
                api.append(&config.namespace, payload.clone()).await
            }
            Kind::AppendBatch => {
                let payloads = (0..config.batch_size)
                    .map(|_| {
                        rng.fill(&mut payload);
                        payload.clone()
                    })
                    .collect();
                api.append_batch(&config.namespace, payloads).await
            }
            Kind::Register => {
                let n = shared.registered.fetch_add(1, Relaxed);
                let tag = format!("{}-r{:08x}", config.prefix, shared.run_tag);
                api.register(&new_identifier(&tag, n), config.key_alg)
                    .await
                    .0
            }
            Kind::Rotate => {
                let at = turn % mine.len();
                let slot = &mut mine[at];
                turn += 1;
                rotate(&mut api, slot, config).await
            }
            Kind::Lookup | Kind::History => {
                let member = rng.below(100) >= u64::from(config.absent_percent);
                let identifier = if member {
                    user_identifier(&config.prefix, rng.below(config.users))
                } else {
                    absent_identifier(&config.prefix, rng.next_u64())
                };
                if kind == Kind::Lookup {
                    api.lookup(&identifier, member, config.verify).await
                } else {
                    api.history(&identifier, member, config.verify).await
                }
            }
        };
        if recorded {
            last_end = Instant::now();
            let counter = if result.outcome == Outcome::Ok {
                &shared.live.ok
            } else {
                &shared.live.failed
            };
            counter.fetch_add(1, Relaxed);
            stats.entry(kind).or_default().record(&result);
        } else {
            warmup += 1;
            shared.live.warmup.fetch_add(1, Relaxed);
        }
    }
    (stats, warmup, last_end)
}

/// A rotation of the identity in `slot`; its state is looked up first when unknown (after an
/// earlier run, or after a failed rotation that may or may not have landed).
async fn rotate(api: &mut Api, slot: &mut (u64, Option<Owned>), config: &BenchConfig) -> OpResult {
    let user = match slot.1.take() {
        Some(user) => user,
        None => match api.resync(&user_identifier(&config.prefix, slot.0)).await {
            Ok(user) => user,
            Err(outcome) => return OpResult::new(outcome, Duration::ZERO),
        },
    };
    let (result, next) = api.rotate(&user, config.key_alg).await;
    // On failure the slot stays empty, so the next rotation of this identity looks it up again.
    slot.1 = next;
    result
}

async fn show_progress(shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let config = &shared.config;
    let len = match config.stop {
        Stop::Duration(d) => d.as_millis() as u64,
        Stop::Count(n) => n,
    };
    let progress = bar(config, len.max(1), "warm-up");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        if now < shared.measure_from {
            progress.set_message(format!(
                "{} ops, {:.0} s left",
                shared.live.warmup.load(Relaxed),
                (shared.measure_from - now).as_secs_f64()
            ));
            continue;
        }
        progress.set_prefix(
            config
                .mix
                .kinds()
                .map(Kind::name)
                .collect::<Vec<_>>()
                .join("+"),
        );
        let (ok, failed) = (
            shared.live.ok.load(Relaxed),
            shared.live.failed.load(Relaxed),
        );
        let secs = (now - shared.measure_from).as_secs_f64().max(1e-3);
        progress.set_position(match config.stop {
            Stop::Duration(_) => (now - shared.measure_from).as_millis() as u64,
            Stop::Count(_) => ok + failed,
        });
        progress.set_message(format!(
            "{} ok, {} failed, {:.0} ops/s",
            ok,
            failed,
            ok as f64 / secs
        ));
    }
    progress.finish_and_clear();
}
