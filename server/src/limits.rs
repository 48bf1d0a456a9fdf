//! Back-pressure at the edge, before a request reaches a handler: per-peer token buckets for
//! reads and writes, per-peer caps on connections and on open streaming calls, and the transport
//! limits of both listeners (`docs/operations.md`, "Limits").
//!
//! A peer is an IP address; IPv6 peers are keyed by their /64 prefix, the block one subscriber
//! usually gets, so that one host cannot mint a fresh bucket per address. Every gRPC call passes
//! through [`GrpcLimitLayer`] (one layer on the whole server, so no RPC is missed), every HTTP
//! request through [`PeerLimits::check`] in `crate::http::serve`. A refusal is
//! `RESOURCE_EXHAUSTED` (HTTP 429) with the time after which the peer's bucket has a token again,
//! in the message and as `retry-after-ms` metadata (`crate::error`).
//!
//! The limiter's own memory is bounded: buckets of peers idle long enough to be full again are
//! pruned every [`PRUNE_INTERVAL`], and at most [`MAX_TRACKED_PEERS`] peers have their own
//! bucket; past that, new peers share one overflow bucket until pruning makes room, so a flood
//! from many addresses degrades newcomers, not the peers already known.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpIncoming};

use crate::error::ApiError;

/// Default reads per second of one peer; the burst defaults to twice the rate.
pub const DEFAULT_READ_RATE_PER_SEC: u32 = 2_000;
/// Default writes per second of one peer. One peer (the identity provider registering users,
/// say) gets half of what the sequencer commits at its defaults (1,000 entries per 500 ms epoch),
/// so no single peer keeps the append queue full, and a busy provider is not throttled first.
pub const DEFAULT_WRITE_RATE_PER_SEC: u32 = 1_000;
/// Default open connections of one peer, per listener.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 128;
/// Default open connections of all peers, per listener (each costs a file descriptor).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4_096;

/// Most concurrent HTTP/2 streams (calls) on one gRPC connection (SETTINGS_MAX_CONCURRENT_STREAMS;
/// a client queues the rest).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// Most server-streaming calls (`GetEntries`, `WatchCheckpoints`, health `Watch`, reflection) one
/// peer may have open at once. A stream whose reader stopped reading holds its buffered messages
/// until the connection goes, so this bounds what one peer can pin in memory.
pub const MAX_OPEN_STREAMS_PER_PEER: u32 = 32;
/// Most server-streaming calls open at once, all peers together.
pub const MAX_OPEN_STREAMS: u32 = 4_096;
/// Most peers with a bucket of their own (about 50 bytes each, per class).
pub const MAX_TRACKED_PEERS: usize = 100_000;
/// How often buckets that are full again are dropped.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10);
/// What a refusal for too many open streams asks the peer to wait.
const STREAMS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// HTTP/2 pings on idle gRPC connections, so dead peers (and their streams) are noticed.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A ping not answered by then closes the connection.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive on accepted gRPC connections (a peer that vanished without a FIN).
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Largest header block of a gRPC request (hyper's default, stated).
pub const MAX_GRPC_HEADER_LIST: u32 = 16 * 1024;
/// After `max_connection_age`, how long a connection's calls may go on before it is closed.
pub const CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);

/// How long a unary call may take. An append waits for its epoch, so the bound grows with the
/// epoch interval. Streams are not cut: the timeout ends when the answer's headers are sent.
pub fn request_timeout(epoch_interval: Duration) -> Duration {
    Duration::from_secs(30) + epoch_interval.saturating_mul(2)
}

/// A token bucket: `per_second` tokens come back each second, up to `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The validated limits (`crate::config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Reads of one peer: every RPC but the writes, and every HTTP request. `None`: unlimited
    /// (for a server behind a proxy that limits, where every request has the proxy's address).
    pub read: Option<Rate>,
    /// Writes of one peer: [`WRITE_RPCS`].
    pub write: Option<Rate>,
    /// Open connections of one peer, per listener.
    pub max_connections_per_peer: u32,
    /// Open connections of all peers, per listener.
    pub max_connections: u32,
    /// gRPC connections older than this are closed (after [`CONNECTION_AGE_GRACE`]). `None`:
    /// never, since `kt monitor` and `kt-audit --follow` keep one stream open and do not
    /// reconnect.
    pub max_connection_age: Option<Duration>,
}

/// `per_second` with a burst of twice that, or `None` for 0.
pub fn default_rate(per_second: u32) -> Option<Rate> {
    Some(Rate {
        per_second: NonZeroU32::new(per_second)?,
        burst: NonZeroU32::new(per_second.saturating_mul(2))?,
    })
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            read: default_rate(DEFAULT_READ_RATE_PER_SEC),
            write: default_rate(DEFAULT_WRITE_RATE_PER_SEC),
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connection_age: None,
        }
    }
}

/// Whom a limit applies to: an IPv4 address, an IPv6 /64, or a shared key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    V4(std::net::Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Prefix(u64),
    /// A connection without a peer address (not TCP).
    Unknown,
    /// Every new peer while [`MAX_TRACKED_PEERS`] have a bucket.
    Overflow,
}

impl PeerKey {
    pub fn of(ip: Option<IpAddr>) -> PeerKey {
        match ip {
            None => PeerKey::Unknown,
            Some(IpAddr::V4(v4)) => PeerKey::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4),
                None => PeerKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerKey::V4(ip) => write!(f, "{ip}"),
            PeerKey::V6Prefix(p) => {
                let ip = std::net::Ipv6Addr::from(u128::from(*p) << 64);
                write!(f, "{ip}/64")
            }
            PeerKey::Unknown => f.write_str("a peer without an address"),
            PeerKey::Overflow => f.write_str("new peers (too many peers are being tracked)"),
        }
    }
}

/// Reads and writes, by RPC (`docs/operations.md` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcClass {
    Read,
    Write,
}

impl std::fmt::Display for RpcClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RpcClass::Read => "read",
            RpcClass::Write => "write",
        })
    }
}

/// Every RPC that changes state. Every other path, known or not (health, reflection, an
/// unknown method answered `UNIMPLEMENTED`), is a read.
pub const WRITE_RPCS: &[&str] = &[
    "/keytrail.v1.Log/Append",
    // One token for the call here; its handler takes one more per record after the first.
    "/keytrail.v1.Log/AppendBatch",
    "/keytrail.v1.Directory/Register",
    "/keytrail.v1.Directory/Rotate",
    "/keytrail.v1.Directory/Revoke",
    "/keytrail.v1.Directory/Recover",
    "/keytrail.v1.Messages/Send",
    "/keytrail.v1.Witnessing/AddCosignature",
];

/// The calls whose answers are streams, counted against [`MAX_OPEN_STREAMS_PER_PEER`] while
/// open.
pub const STREAMING_RPCS: &[&str] = &[
    "/keytrail.v1.Log/GetEntries",
    "/keytrail.v1.Log/WatchCheckpoints",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

pub fn classify(path: &str) -> RpcClass {
    if WRITE_RPCS.contains(&path) {
        RpcClass::Write
    } else {
        RpcClass::Read
    }
}

/// Why a request was refused before it reached a handler.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Throttled {
    #[error(
        "too many {class}s from {peer}: at most {per_second} per second, in bursts of {burst}"
    )]
    Rate {
        class: RpcClass,
        peer: PeerKey,
        per_second: u32,
        burst: u32,
        retry_after: Duration,
    },
    #[error(
        "a batch of {n} {class}s is more than this server's burst of {burst} {class}s per peer: \
         send at most {burst} per call"
    )]
    BatchAboveBurst { class: RpcClass, n: u32, burst: u32 },
    #[error("{peer} has {limit} streaming calls open, the most one peer may have")]
    Streams { peer: PeerKey, limit: u32 },
    #[error("{limit} streaming calls are open, the most the server allows")]
    AllStreams { limit: u32 },
}

impl Throttled {
    /// When the peer may expect to succeed again: its bucket's next token, at least 1 ms.
    pub fn retry_after(&self) -> Duration {
        match self {
            Throttled::Rate { retry_after, .. } => (*retry_after).max(Duration::from_millis(1)),
            Throttled::Streams { .. } | Throttled::AllStreams { .. } => STREAMS_RETRY_AFTER,
            // Waiting does not help; a smaller batch does.
            Throttled::BatchAboveBurst { .. } => Duration::from_millis(1),
        }
    }
}

/// The keyed state of one class: governor's `HashMap` store, with new keys sent to
/// [`PeerKey::Overflow`] once `cap` keys are held.
struct CappedStore {
    inner: HashMapStateStore<PeerKey>,
    cap: usize,
}

impl StateStore for CappedStore {
    type Key = PeerKey;

    fn measure_and_replace<T, F, E>(&self, key: &PeerKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Racing inserts can pass the cap by at most the number of threads checking at once.
        let key = {
            let map = self.inner.lock();
            if map.len() >= self.cap && !map.contains_key(key) {
                PeerKey::Overflow
            } else {
                *key
            }
        };
        self.inner.measure_and_replace(&key, f)
    }
}

impl ShrinkableKeyedStateStore<PeerKey> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.inner.retain_recent(drop_below)
    }
    fn shrink_to_fit(&self) {
        self.inner.shrink_to_fit()
    }
    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.inner)
    }
    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.inner)
    }
}

type Buckets = RateLimiter<PeerKey, CappedStore, DefaultClock>;

struct Limiter {
    rate: Rate,
    buckets: Buckets,
}

impl Limiter {
    fn new(rate: Rate, cap: usize) -> Limiter {
        Limiter::with_quota(
            rate,
            Quota::per_second(rate.per_second).allow_burst(rate.burst),
            cap,
        )
    }

    fn with_quota(rate: Rate, quota: Quota, cap: usize) -> Limiter {
        let store = CappedStore {
            inner: HashMapStateStore::default(),
            cap,
        };
        Limiter {
            rate,
            buckets: RateLimiter::new(quota, store, DefaultClock::default()),
        }
    }
}

/// Open connections or streams, per peer and in all: [`PeerGauge::try_acquire`] hands out a
/// guard that gives its slot back when dropped. Only peers with something open have an entry.
#[derive(Debug)]
pub struct PeerGauge {
    per_peer: u32,
    total: u32,
    state: Mutex<GaugeState>,
}

#[derive(Debug, Default)]
struct GaugeState {
    open: u32,
    by_peer: HashMap<PeerKey, u32>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeFull {
    Peer,
    All,
}

impl PeerGauge {
    pub fn new(per_peer: u32, total: u32) -> Arc<PeerGauge> {
        Arc::new(PeerGauge {
            per_peer,
            total,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GaugeState> {
        // The state is two counters updated together: a panic cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn try_acquire(self: &Arc<Self>, peer: PeerKey) -> Result<GaugeGuard, GaugeFull> {
        let mut state = self.lock();
        if state.open >= self.total {
            return Err(GaugeFull::All);
        }
        let count = state.by_peer.entry(peer).or_insert(0);
        if *count >= self.per_peer {
            return Err(GaugeFull::Peer);
        }
        *count += 1;
        state.open += 1;
        Ok(GaugeGuard {
            gauge: self.clone(),
            peer,
        })
    }

    /// Slots in use, all peers together.
    pub fn open(&self) -> u32 {
        self.lock().open
    }
}

/// A slot of a [`PeerGauge`], given back on drop.
#[derive(Debug)]
pub struct GaugeGuard {
    gauge: Arc<PeerGauge>,
    peer: PeerKey,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        let mut state = self.gauge.lock();
        state.open -= 1;
        if let Some(count) = state.by_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                state.by_peer.remove(&self.peer);
            }
        }
    }
}

/// Every limit of a running server, shared by both listeners.
pub struct PeerLimits {
    config: LimitsConfig,
    read: Option<Limiter>,
    write: Option<Limiter>,
    clock: DefaultClock,
    last_prune: Mutex<Instant>,
    /// Connections of the gRPC listener.
    pub grpc_connections: Arc<PeerGauge>,
    /// Connections of the HTTP listener.
    pub http_connections: Arc<PeerGauge>,
    /// Open server-streaming calls.
    pub streams: Arc<PeerGauge>,
}

impl std::fmt::Debug for PeerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimits")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PeerLimits {
    pub fn new(config: &LimitsConfig) -> Arc<PeerLimits> {
        let limiter = |rate: Option<Rate>| rate.map(|r| Limiter::new(r, MAX_TRACKED_PEERS));
        PeerLimits::with_limiters(config, limiter(config.read), limiter(config.write))
    }

    fn with_limiters(
        config: &LimitsConfig,
        read: Option<Limiter>,
        write: Option<Limiter>,
    ) -> Arc<PeerLimits> {
        let connections =
            || PeerGauge::new(config.max_connections_per_peer, config.max_connections);
        Arc::new(PeerLimits {
            config: config.clone(),
            read,
            write,
            clock: DefaultClock::default(),
            last_prune: Mutex::new(Instant::now()),
            grpc_connections: connections(),
            http_connections: connections(),
            streams: PeerGauge::new(MAX_OPEN_STREAMS_PER_PEER, MAX_OPEN_STREAMS),
        })
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Takes one token of `class` from the peer's bucket.
    pub fn check(&self, peer: Option<IpAddr>, class: RpcClass) -> Result<(), Throttled> {
        match self.limiter(class) {
            Some(limiter) => self.take(limiter, peer, class, NonZeroU32::MIN),
            None => Ok(()),
        }
    }

    /// For a call that carries a batch of `n`: the tokens beyond the one [`PeerLimits::check`]
    /// took for the call, all or none. A batch larger than the burst can never pass.
    pub fn check_batch(
        &self,
        peer: Option<IpAddr>,
        class: RpcClass,
        n: u32,
    ) -> Result<(), Throttled> {
        let Some(limiter) = self.limiter(class) else {
            return Ok(());
        };
        let burst = limiter.rate.burst.get();
        if n > burst {
            return Err(Throttled::BatchAboveBurst { class, n, burst });
        }
        match NonZeroU32::new(n.saturating_sub(1)) {
            Some(extra) => self.take(limiter, peer, class, extra),
            None => Ok(()),
        }
    }

    fn limiter(&self, class: RpcClass) -> Option<&Limiter> {
        match class {
            RpcClass::Read => self.read.as_ref(),
            RpcClass::Write => self.write.as_ref(),
        }
    }

    /// Takes `n` (at most the burst) tokens from the peer's bucket, or none.
    fn take(
        &self,
        limiter: &Limiter,
        peer: Option<IpAddr>,
        class: RpcClass,
        n: NonZeroU32,
    ) -> Result<(), Throttled> {
        self.maybe_prune();
        let peer = PeerKey::of(peer);
        let burst = limiter.rate.burst.get();
        match limiter.buckets.check_key_n(&peer, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Throttled::Rate {
                    class,
                    peer,
                    per_second: limiter.rate.per_second.get(),
                    burst,
                    // Whole milliseconds, rounded up, so a client that waits exactly this long
                    // finds its tokens.
                    retry_after: Duration::from_millis(wait.as_nanos().div_ceil(1_000_000) as u64),
                })
            }
            Err(_) => Err(Throttled::BatchAboveBurst {
                class,
                n: n.get(),
                burst,
            }),
        }
    }

    /// A slot for one server-streaming call of the peer, held until the answer's body is dropped.
    pub fn open_stream(&self, peer: Option<IpAddr>) -> Result<GaugeGuard, Throttled> {
        let peer = PeerKey::of(peer);
        self.streams.try_acquire(peer).map_err(|full| match full {
            GaugeFull::Peer => Throttled::Streams {
                peer,
                limit: MAX_OPEN_STREAMS_PER_PEER,
            },
            GaugeFull::All => Throttled::AllStreams {
                limit: MAX_OPEN_STREAMS,
            },
        })
    }

    /// Peers with a bucket of their own, reads and writes (a test and a debugging aid).
    pub fn tracked_peers(&self) -> usize {
        [&self.read, &self.write]
            .into_iter()
            .flatten()
            .map(|l| l.buckets.len())
            .sum()
    }

    /// Drops the buckets that are full again, at most once per [`PRUNE_INTERVAL`]; the request
    /// that finds the interval over does it (in microseconds for thousands of peers).
    fn maybe_prune(&self) {
        let Ok(mut last) = self.last_prune.try_lock() else {
            return; // another request is pruning
        };
        if last.elapsed() < PRUNE_INTERVAL {
            return;
        }
        *last = Instant::now();
        self.prune();
    }

    /// Drops the buckets that are full again (indistinguishable from new ones).
    pub fn prune(&self) {
        for limiter in [&self.read, &self.write].into_iter().flatten() {
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
        }
    }
}

/// The peer's IP address of a gRPC request, plaintext or TLS: tonic keeps it in the request's
/// extensions under a type that depends on the transport, and `tonic::Request::remote_addr` knows
/// them all, so the extensions visit a `tonic::Request` for the lookup.
fn remote_ip<B>(req: &mut http::Request<B>) -> Option<IpAddr> {
    let mut probe = tonic::Request::new(());
    *probe.extensions_mut() = std::mem::take(req.extensions_mut());
    let addr = probe.remote_addr();
    *req.extensions_mut() = std::mem::take(probe.extensions_mut());
    addr.map(|a| a.ip())
}

/// The tower layer that puts every gRPC call through [`PeerLimits`].
#[derive(Debug, Clone)]
pub struct GrpcLimitLayer {
    limits: Arc<PeerLimits>,
}

impl GrpcLimitLayer {
    pub fn new(limits: Arc<PeerLimits>) -> Self {
        GrpcLimitLayer { limits }
    }
}

impl<S> tower::Layer<S> for GrpcLimitLayer {
    type Service = GrpcLimit<S>;
    fn layer(&self, inner: S) -> GrpcLimit<S> {
        GrpcLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

/// See [`GrpcLimitLayer`].
#[derive(Debug, Clone)]
pub struct GrpcLimit<S> {
    inner: S,
    limits: Arc<PeerLimits>,
}

type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcLimit<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = GrpcResponse>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<GrpcResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let peer = remote_ip(&mut req);
        let path = req.uri().path();
        let refuse = |throttled: Throttled| -> Self::Future {
            tracing::debug!(%throttled, "refused");
            let status = tonic::Status::from(ApiError::from(throttled));
            Box::pin(futures::future::ready(Ok(status.into_http())))
        };
        if let Err(throttled) = self.limits.check(peer, classify(path)) {
            return refuse(throttled);
        }
        let slot = if STREAMING_RPCS.contains(&path) {
            match self.limits.open_stream(peer) {
                Ok(slot) => Some(slot),
                Err(throttled) => return refuse(throttled),
            }
        } else {
            None
        };
        // The service that was polled ready answers; a clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let answer = inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(match slot {
                Some(slot) => response.map(|body| tonic::body::Body::new(HoldSlot { body, slot })),
                None => response,
            })
        })
    }
}

/// An answer's body that holds a stream slot until the answer ends or is dropped.
struct HoldSlot {
    body: tonic::body::Body,
    #[allow(dead_code)] // held for its Drop
    slot: GaugeGuard,
}

type Frame = http_body::Frame<<tonic::body::Body as http_body::Body>::Data>;

impl http_body::Body for HoldSlot {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection that holds its slot of a [`PeerGauge`] while open.
#[derive(Debug)]
pub struct Tracked<IO> {
    io: IO,
    #[allow(dead_code)] // held for its Drop
    slot: GaugeGuard,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Tracked<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The gRPC listener's connections: TCP_NODELAY (small request/answer exchanges would otherwise
/// wait on delayed ACKs), TCP keepalive, and at most the configured connections per peer and in
/// all. A connection over a limit is closed as soon as it is accepted.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: Arc<PeerLimits>,
) -> impl Stream<Item = std::io::Result<Tracked<TcpStream>>> + Send + 'static {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE))
        .filter_map(move |accepted| {
            let gauge = limits.grpc_connections.clone();
            async move {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => return Some(Err(e)),
                };
                let peer = PeerKey::of(stream.peer_addr().ok().map(|a| a.ip()));
                match gauge.try_acquire(peer) {
                    Ok(slot) => Some(Ok(Tracked { io: stream, slot })),
                    Err(full) => {
                        tracing::debug!(%peer, ?full, "gRPC connection refused: too many open");
                        None
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Option<Rate> {
        Some(Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    /// A bucket of `burst` tokens that comes back one token a day: within a test, exactly
    /// `burst` calls pass, however slow the machine.
    fn slow(burst: u32) -> Limiter {
        slow_capped(burst, MAX_TRACKED_PEERS)
    }

    fn slow_capped(burst: u32, cap: usize) -> Limiter {
        let burst = NonZeroU32::new(burst).unwrap();
        let quota = Quota::with_period(Duration::from_secs(86_400))
            .unwrap()
            .allow_burst(burst);
        let shown = Rate {
            per_second: NonZeroU32::MIN,
            burst,
        };
        Limiter::with_quota(shown, quota, cap)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn buckets_are_per_peer_and_per_class() {
        let limits =
            PeerLimits::with_limiters(&LimitsConfig::default(), Some(slow(3)), Some(slow(2)));
        for _ in 0..3 {
            limits.check(ip("10.0.0.1"), RpcClass::Read).unwrap();
        }
        let refused = limits.check(ip("10.0.0.1"), RpcClass::Read).unwrap_err();
        assert!(refused.retry_after() > Duration::ZERO);
        assert!(refused.to_string().contains("too many reads from 10.0.0.1"));
        // Another peer, and the same peer's writes, have their own buckets.
        limits.check(ip("10.0.0.2"), RpcClass::Read).unwrap();
        limits.check(ip("10.0.0.1"), RpcClass::Write).unwrap();
        limits.check(ip("10.0.0.1"), RpcClass::Write).unwrap();
        assert!(limits.check(ip("10.0.0.1"), RpcClass::Write).is_err());
    }

    #[test]
    fn ipv6_peers_share_their_slash_64() {
        let limits = PeerLimits::with_limiters(&LimitsConfig::default(), Some(slow(1)), None);
        limits.check(ip("2001:db8:1:2::1"), RpcClass::Read).unwrap();
        assert!(limits
            .check(ip("2001:db8:1:2::ffff"), RpcClass::Read)
            .is_err());
        limits.check(ip("2001:db8:1:3::1"), RpcClass::Read).unwrap();
        // An IPv4-mapped address is the IPv4 peer.
        limits.check(ip("192.0.2.1"), RpcClass::Read).unwrap();
        assert!(limits
            .check(ip("::ffff:192.0.2.1"), RpcClass::Read)
            .is_err());
        // No limit configured: writes always pass.
        for _ in 0..1000 {
            limits.check(ip("192.0.2.1"), RpcClass::Write).unwrap();
        }
    }

    #[test]
    fn the_limiter_holds_at_most_its_cap_of_peers() {
        let limiter = slow_capped(1, 100);
        for i in 0..10_000u32 {
            let _ = limiter
                .buckets
                .check_key(&PeerKey::V4(std::net::Ipv4Addr::from(i)));
        }
        // 100 peers and the shared overflow bucket.
        assert_eq!(limiter.buckets.len(), 101);
        // Past the cap, new peers share one bucket: the first newcomer took its token.
        assert!(limiter
            .buckets
            .check_key(&PeerKey::V4(std::net::Ipv4Addr::new(10, 9, 9, 9)))
            .is_err());
    }

    #[test]
    fn pruning_drops_buckets_that_are_full_again() {
        // 1,000 tokens a second: a bucket that gave one token is full again after 1 ms.
        let limits = PeerLimits::new(&LimitsConfig {
            read: rate(1_000, 1),
            write: None,
            ..LimitsConfig::default()
        });
        for i in 0..500u32 {
            limits
                .check(Some(IpAddr::V4(i.into())), RpcClass::Read)
                .unwrap();
        }
        assert_eq!(limits.tracked_peers(), 500);
        std::thread::sleep(Duration::from_millis(20));
        limits.prune();
        assert_eq!(limits.tracked_peers(), 0);
    }

    #[test]
    fn gauges_count_per_peer_and_in_all_and_forget_idle_peers() {
        let gauge = PeerGauge::new(2, 3);
        let a = PeerKey::of(ip("10.0.0.1"));
        let b = PeerKey::of(ip("10.0.0.2"));
        let a1 = gauge.try_acquire(a).unwrap();
        let _a2 = gauge.try_acquire(a).unwrap();
        assert_eq!(gauge.try_acquire(a).unwrap_err(), GaugeFull::Peer);
        let _b1 = gauge.try_acquire(b).unwrap();
        assert_eq!(gauge.try_acquire(b).unwrap_err(), GaugeFull::All);
        drop(a1);
        let _b2 = gauge.try_acquire(b).unwrap();
        assert_eq!(gauge.open(), 3);
        drop((_a2, _b1, _b2));
        assert_eq!(gauge.open(), 0);
        assert!(gauge.lock().by_peer.is_empty());
    }

    /// Every RPC of the .proto files is classified: a new write RPC must be added to
    /// [`WRITE_RPCS`] (or here, as a read), and a new streaming one to [`STREAMING_RPCS`].
    #[test]
    fn every_rpc_is_classified() {
        const READS: &[&str] = &[
            "/keytrail.v1.Log/GetCheckpoint",
            "/keytrail.v1.Log/GetCheckpointBodies",
            "/keytrail.v1.Log/GetInclusionProof",
            "/keytrail.v1.Log/GetConsistencyProof",
            "/keytrail.v1.Log/GetEntries",
            "/keytrail.v1.Log/WatchCheckpoints",
            "/keytrail.v1.Directory/Lookup",
            "/keytrail.v1.Directory/History",
            "/keytrail.v1.Messages/Read",
        ];
        let protos = [
            include_str!("../../proto/keytrail/v1/log.proto"),
            include_str!("../../proto/keytrail/v1/directory.proto"),
        ];
        let mut seen = 0;
        for proto in protos {
            let mut service = None;
            for line in proto.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next();
                }
                let Some(rest) = line.strip_prefix("rpc ") else {
                    continue;
                };
                let method = rest.split('(').next().unwrap().trim();
                let path = format!("/keytrail.v1.{}/{method}", service.unwrap());
                let (read, write) = (
                    READS.contains(&path.as_str()),
                    WRITE_RPCS.contains(&path.as_str()),
                );
                assert!(read != write, "{path} must be exactly one of read or write");
                assert_eq!(
                    classify(&path),
                    if write {
                        RpcClass::Write
                    } else {
                        RpcClass::Read
                    }
                );
                let streams = rest.contains("returns (stream");
                assert_eq!(
                    STREAMING_RPCS.contains(&path.as_str()),
                    streams,
                    "{path}: streaming calls are listed in STREAMING_RPCS"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, READS.len() + WRITE_RPCS.len());
    }
}
