//! Counting while running ([`KindStats`], one per kind per client, merged at the end) and the
//! results ([`Report`]), printed as a table or written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::Code;

use crate::config::Kind;

/// Highest value a histogram holds: 10 minutes in nanoseconds (a call has a 30 s deadline by
/// default; anything above is clamped to this).
const MAX_NANOS: u64 = 600_000_000_000;
/// Verification failures kept verbatim in the report (the rest are only counted).
const MAX_EXAMPLES: usize = 5;

fn histogram() -> Histogram<u64> {
    // Three significant digits: 0.1% resolution at every scale, from 1 ns to 10 minutes.
    Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_NANOS)
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The server (or the transport) answered with this code.
    Rpc(Code),
    /// The answer arrived but did not verify, or is not what the run expected.
    Verify(String),
}

/// What a client saw of one operation.
#[derive(Debug, Clone)]
pub struct OpResult {
    pub outcome: Outcome,
    /// Time of the measured call (see each kind for which call that is).
    pub latency: Duration,
    /// Client-side verification of the answer, when it was verified.
    pub verify: Option<Duration>,
    /// Answer sizes (lookups and histories): the encoded response, and without its checkpoint.
    pub answer_bytes: Option<(u64, u64)>,
    /// Whether the identity asked about was found (lookups and histories).
    pub found: Option<bool>,
    /// Records the operation appended (batches).
    pub records: Option<u64>,
}

impl OpResult {
    pub fn new(outcome: Outcome, latency: Duration) -> OpResult {
        OpResult {
            outcome,
            latency,
            verify: None,
            answer_bytes: None,
            found: None,
            records: None,
        }
    }
}

/// The counts of one kind, kept by one client and merged into the run's.
#[derive(Debug, Clone)]
pub struct KindStats {
    ok: u64,
    /// Failed calls by `Code as i32` (`Code` is not `Ord`).
    errors: BTreeMap<i32, u64>,
    verify_failures: u64,
    examples: Vec<String>,
    latency: Histogram<u64>,
    verify: Histogram<u64>,
    answer_bytes: u64,
    answer_bytes_excl_checkpoint: u64,
    answer_bytes_max: u64,
    answers: u64,
    found: u64,
    absent: u64,
    /// Records appended by successful batches.
    records: u64,
}

impl Default for KindStats {
    fn default() -> Self {
        KindStats {
            ok: 0,
            errors: BTreeMap::new(),
            verify_failures: 0,
            examples: Vec::new(),
            latency: histogram(),
            verify: histogram(),
            answer_bytes: 0,
            answer_bytes_excl_checkpoint: 0,
            answer_bytes_max: 0,
            answers: 0,
            found: 0,
            absent: 0,
            records: 0,
        }
    }
}

impl KindStats {
    pub fn record(&mut self, r: &OpResult) {
        match &r.outcome {
            // Latency is of successful calls only: a refused call (say, RESOURCE_EXHAUSTED) is
            // fast and would flatter the percentiles.
            Outcome::Ok => {
                self.ok += 1;
                self.records += r.records.unwrap_or(0);
                self.latency.saturating_record(nanos(r.latency));
            }
            Outcome::Rpc(code) => *self.errors.entry(*code as i32).or_default() += 1,
            Outcome::Verify(why) => {
                self.verify_failures += 1;
                if self.examples.len() < MAX_EXAMPLES {
                    self.examples.push(why.clone());
                }
            }
        }
        if let Some(v) = r.verify {
            self.verify.saturating_record(nanos(v));
        }
        if let Some((total, without_checkpoint)) = r.answer_bytes {
            self.answers += 1;
            self.answer_bytes += total;
            self.answer_bytes_excl_checkpoint += without_checkpoint;
            self.answer_bytes_max = self.answer_bytes_max.max(total);
        }
        match r.found {
            Some(true) => self.found += 1,
            Some(false) => self.absent += 1,
            None => {}
        }
    }

    pub fn merge(&mut self, other: &KindStats) {
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        self.verify_failures += other.verify_failures;
        for e in &other.examples {
            if self.examples.len() < MAX_EXAMPLES {
                self.examples.push(e.clone());
            }
        }
        // Same bounds on both sides, so adding cannot fail.
        self.latency.add(&other.latency).expect("same bounds");
        self.verify.add(&other.verify).expect("same bounds");
        self.answer_bytes += other.answer_bytes;
        self.answer_bytes_excl_checkpoint += other.answer_bytes_excl_checkpoint;
        self.answer_bytes_max = self.answer_bytes_max.max(other.answer_bytes_max);
        self.answers += other.answers;
        self.found += other.found;
        self.absent += other.absent;
        self.records += other.records;
    }

    /// Every recorded operation, whatever its outcome.
    pub fn ops(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>() + self.verify_failures
    }

    fn report(&self, elapsed: f64) -> KindReport {
        let resource_exhausted = self
            .errors
            .get(&(Code::ResourceExhausted as i32))
            .copied()
            .unwrap_or(0);
        KindReport {
            ops: self.ops(),
            ok: self.ok,
            throughput_ops_per_sec: per_second(self.ok, elapsed),
            errors_by_code: errors_by_code(&self.errors),
            resource_exhausted,
            verify_failures: self.verify_failures,
            latency_us: Latency::of(&self.latency),
            verify_us: (!self.verify.is_empty()).then(|| Latency::of(&self.verify)),
            answer_bytes: (self.answers > 0).then(|| AnswerBytes {
                answers: self.answers,
                mean: self.answer_bytes as f64 / self.answers as f64,
                mean_excl_checkpoint: self.answer_bytes_excl_checkpoint as f64
                    / self.answers as f64,
                max: self.answer_bytes_max,
            }),
            found: self.found,
            absent: self.absent,
            records_per_sec: (self.records > 0).then(|| per_second(self.records, elapsed)),
        }
    }
}

fn per_second(n: u64, elapsed: f64) -> f64 {
    if elapsed > 0.0 {
        n as f64 / elapsed
    } else {
        0.0
    }
}

/// Errors by code, RESOURCE_EXHAUSTED left out (it has its own count).
fn errors_by_code(errors: &BTreeMap<i32, u64>) -> BTreeMap<String, u64> {
    errors
        .iter()
        .map(|(code, n)| (Code::from(*code), *n))
        .filter(|(code, _)| *code != Code::ResourceExhausted)
        .map(|(code, n)| (kt_client::code_name(code).to_owned(), n))
        .collect()
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                min: 0.0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Latency {
            count: h.len(),
            min: us(h.min()),
            mean: (h.mean() / 100.0).round() / 10.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Sizes of lookup (or history) answers in bytes, as protobuf-encoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerBytes {
    pub answers: u64,
    pub mean: f64,
    /// Without the `checkpoint` field (the signed note and its cosignatures), which a client
    /// that already holds the epoch's checkpoint would not need again.
    pub mean_excl_checkpoint: f64,
    pub max: u64,
}

/// The results of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindReport {
    /// Recorded operations: `ok` + errors of every code (RESOURCE_EXHAUSTED included) +
    /// verification failures.
    pub ops: u64,
    pub ok: u64,
    pub throughput_ops_per_sec: f64,
    /// Failed calls by gRPC code, RESOURCE_EXHAUSTED left out.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Calls refused by the server's rate limits or queue (RESOURCE_EXHAUSTED).
    pub resource_exhausted: u64,
    /// Answers that did not verify, or were not what the run expected.
    pub verify_failures: u64,
    /// Latency of successful calls.
    pub latency_us: Latency,
    /// Client-side verification of each verified answer.
    pub verify_us: Option<Latency>,
    pub answer_bytes: Option<AnswerBytes>,
    /// Lookups and histories whose identity was registered / not registered.
    pub found: u64,
    pub absent: u64,
    /// Records appended per second by successful batches (`append-batch`).
    pub records_per_sec: Option<f64>,
}

/// What the setup phase did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupReport {
    pub registered: u64,
    pub secs: f64,
    pub registrations_per_sec: f64,
}

/// The machine the load generator ran on (the server is usually on the same one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub nproc: usize,
    /// `/proc/loadavg`'s 1-minute load average before and after the measured phase.
    pub load_avg_before: Option<f64>,
    pub load_avg_after: Option<f64>,
}

impl Machine {
    pub fn load_avg() -> Option<f64> {
        std::fs::read_to_string("/proc/loadavg")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

/// The settings a run used, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    pub server: String,
    pub workload: String,
    pub mix: BTreeMap<String, u32>,
    pub clients: usize,
    pub connections: usize,
    pub duration_secs: Option<f64>,
    pub count: Option<u64>,
    pub warmup_secs: f64,
    pub payload_size: usize,
    pub batch_size: usize,
    pub users: u64,
    pub absent_percent: u8,
    pub key_alg: crate::config::KeyAlg,
    pub verify: bool,
    pub prefix: String,
    pub seed: u64,
}

/// The results of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub settings: RunSettings,
    pub setup: Option<SetupReport>,
    /// Operations during the warm-up (not in any other figure).
    pub warmup_ops: u64,
    /// Length of the measured phase: from its start until the last recorded operation ended.
    pub elapsed_secs: f64,
    /// Every kind together (in JSON, its fields sit at the top level).
    #[serde(flatten)]
    pub total: KindReport,
    /// A few verification failures verbatim.
    pub verify_failure_examples: Vec<String>,
    pub kinds: BTreeMap<String, KindReport>,
    pub machine: Machine,
}

impl Report {
    pub fn build(
        settings: RunSettings,
        setup: Option<SetupReport>,
        warmup_ops: u64,
        elapsed: Duration,
        stats: &BTreeMap<Kind, KindStats>,
        machine: Machine,
    ) -> Report {
        let elapsed = elapsed.as_secs_f64();
        let mut all = KindStats::default();
        for s in stats.values() {
            all.merge(s);
        }
        Report {
            settings,
            setup,
            warmup_ops,
            elapsed_secs: elapsed,
            total: all.report(elapsed),
            verify_failure_examples: all.examples.clone(),
            kinds: stats
                .iter()
                .map(|(k, s)| (k.name().to_owned(), s.report(elapsed)))
                .collect(),
            machine,
        }
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "kt-bench {} against {}: {} clients on {} connections, {}",
            s.workload,
            s.server,
            s.clients,
            s.connections,
            if s.verify {
                "answers verified"
            } else {
                "answers not verified"
            }
        );
        if let Some(setup) = &self.setup {
            let _ = writeln!(
                out,
                "setup: {} identities registered in {:.1} s ({:.0}/s)",
                setup.registered, setup.secs, setup.registrations_per_sec
            );
        }
        let _ = writeln!(
            out,
            "{} ops in {:.2} s ({} warm-up ops before): {:.0} ops/s ok",
            self.total.ops, self.elapsed_secs, self.warmup_ops, self.total.throughput_ops_per_sec
        );
        let _ = writeln!(
            out,
            "{:<9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  (latency µs)",
            "kind", "ok", "ops/s", "p50", "p90", "p99", "p999", "max"
        );
        let row = |out: &mut String, name: &str, k: &KindReport| {
            let l = &k.latency_us;
            let _ = writeln!(
                out,
                "{name:<9} {:>9} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                k.ok, k.throughput_ops_per_sec, l.p50, l.p90, l.p99, l.p999, l.max
            );
        };
        for (name, k) in &self.kinds {
            row(&mut out, name, k);
        }
        if self.kinds.len() > 1 {
            row(&mut out, "all", &self.total);
        }
        for (name, k) in &self.kinds {
            if let Some(v) = &k.verify_us {
                let _ = writeln!(
                    out,
                    "{name}: client verification p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} answers)",
                    v.p50, v.p99, v.max, v.count
                );
            }
            if let Some(b) = &k.answer_bytes {
                let _ = writeln!(
                    out,
                    "{name}: answer {:.0} bytes on average, {:.0} without the checkpoint (max {})",
                    b.mean, b.mean_excl_checkpoint, b.max
                );
            }
            if let Some(rate) = k.records_per_sec {
                let _ = writeln!(out, "{name}: {rate:.0} records/s appended");
            }
            if k.found + k.absent > 0 {
                let _ = writeln!(out, "{name}: {} found, {} absent", k.found, k.absent);
            }
        }
        let total = &self.total;
        let failed = total.ops - total.ok;
        if failed == 0 {
            let _ = writeln!(out, "no errors");
        } else {
            let _ = writeln!(
                out,
                "errors: {failed} ({:?}; RESOURCE_EXHAUSTED {}; verification failures {})",
                total.errors_by_code, total.resource_exhausted, total.verify_failures
            );
            for e in &self.verify_failure_examples {
                let _ = writeln!(out, "  verification failure: {e}");
            }
        }
        if total.resource_exhausted > 0 {
            let _ = writeln!(
                out,
                "warning: RESOURCE_EXHAUSTED answers: start ktd with --read-rate-per-sec 0 --write-rate-per-sec 0 (per-peer limits), or lower --clients"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_outcomes_and_merge() {
        let mut a = KindStats::default();
        let ms = Duration::from_millis;
        a.record(&OpResult::new(Outcome::Ok, ms(1)));
        a.record(&OpResult::new(Outcome::Ok, ms(3)));
        a.record(&OpResult::new(Outcome::Rpc(Code::ResourceExhausted), ms(0)));
        let mut b = KindStats::default();
        b.record(&OpResult::new(Outcome::Rpc(Code::Unavailable), ms(2)));
        b.record(&OpResult::new(Outcome::Verify("bad proof".into()), ms(2)));
        let mut v = OpResult::new(Outcome::Ok, ms(2));
        v.verify = Some(Duration::from_micros(150));
        v.answer_bytes = Some((1000, 600));
        v.found = Some(true);
        b.record(&v);
        a.merge(&b);
        assert_eq!(a.ops(), 6);
        let r = a.report(2.0);
        assert_eq!((r.ok, r.resource_exhausted, r.verify_failures), (3, 1, 1));
        assert_eq!(
            r.errors_by_code,
            BTreeMap::from([("UNAVAILABLE".to_owned(), 1)])
        );
        assert_eq!(r.throughput_ops_per_sec, 1.5);
        assert_eq!(r.latency_us.count, 3);
        assert!(
            (r.latency_us.p50 - 2000.0).abs() < 5.0,
            "{:?}",
            r.latency_us
        );
        assert!(
            (r.latency_us.max - 3000.0).abs() < 5.0,
            "{:?}",
            r.latency_us
        );
        let v = r.verify_us.unwrap();
        assert!((v.p50 - 150.0).abs() < 0.5, "{v:?}");
        let bytes = r.answer_bytes.unwrap();
        assert_eq!(
            (bytes.mean, bytes.mean_excl_checkpoint, bytes.max),
            (1000.0, 600.0, 1000)
        );
        assert_eq!(r.found, 1);
    }
}
