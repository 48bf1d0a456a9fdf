//! Read-only HTTP: the log as C2SP tlog-tiles (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`,
//! `/tile/entries/<N>[.p/<W>]`). Tiles are immutable (the tree only appends, so even a partial
//! tile of width W never changes) and are served with long cache lifetimes, so any CDN can carry
//! the read load.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::HASH_SIZE;
use kt_core::tiles::{encode_bundle, parse_tile_path, tile_width_for, TilePath, TILE_WIDTH};
use tokio::sync::watch;

use crate::limits::{PeerLimits, RpcClass, Throttled};
use crate::storage::Storage;

#[derive(Clone, Debug)]
struct TileState {
    storage: Arc<Storage>,
    latest: watch::Receiver<Arc<SignedCheckpoint>>,
}

/// The tlog-tiles router.
pub fn router(storage: Arc<Storage>, latest: watch::Receiver<Arc<SignedCheckpoint>>) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: this server serves /checkpoint and /tile/...".into(),
            )
        })
        .with_state(TileState { storage, latest })
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn checkpoint(State(state): State<TileState>) -> Response {
    let note = state.latest.borrow().note().to_owned();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        note,
    )
        .into_response()
}

async fn tile(State(state): State<TileState>, Path(path): Path<String>) -> Response {
    let full_path = format!("tile/{path}");
    let tile = match parse_tile_path(&full_path) {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("bad tile path {full_path:?}: {e}"),
            )
        }
    };
    let size = state.latest.borrow().checkpoint().size;
    // On the serving worker, like the gRPC reads (see `service::on_blocking_pool`).
    match read_tile(&state.storage, size, tile) {
        Ok(Some(bytes)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            format!("{full_path} is not in the tree of the latest checkpoint (size {size})"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "tile read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
        }
    }
}

/// The bytes of a tile if the published tree has at least its width.
fn read_tile(
    storage: &Storage,
    size: u64,
    tile: TilePath,
) -> Result<Option<Vec<u8>>, crate::storage::StorageError> {
    match tile {
        TilePath::Hashes {
            level,
            index,
            width,
        } => {
            if tile_width_for(size, level, index) < width {
                return Ok(None);
            }
            let Some(mut bytes) = storage.tile(level, index)? else {
                return Ok(None);
            };
            let want = width as usize * HASH_SIZE;
            if bytes.len() < want {
                return Ok(None);
            }
            bytes.truncate(want);
            Ok(Some(bytes))
        }
        TilePath::Entries { index, width } => {
            if tile_width_for(size, 0, index) < width {
                return Ok(None);
            }
            let start = index * TILE_WIDTH;
            let entries = storage.entries(start, start + u64::from(width))?;
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            let bundle = encode_bundle(&refs).map_err(|e| {
                crate::storage::StorageError::Corrupt(format!("entry bundle {index}: {e}"))
            })?;
            Ok(Some(bundle))
        }
    }
}

/// A request's headers (request line included) must fit in this many bytes: tile paths are short.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields of a request.
pub const MAX_HEADERS: usize = 64;
/// Longest request target (path and query): `tile/entries/x001/234/567.p/255` is 34 bytes.
pub const MAX_URI_BYTES: usize = 1024;
/// A request's headers must arrive within this time, and an idle keep-alive connection is closed
/// after it (hyper starts the timer when it waits for the next request), so slow or silent
/// clients hold a connection only this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer not ready by then is 503 (a tile read stuck behind a slow disk).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections are closed (after their current request) once this old, so none is held forever.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// After shutdown or `MAX_CONNECTION_AGE`, how long a request in progress may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop`, under the peer limits: at most the configured
/// connections per peer and in all, one read token per request (429 with `Retry-After` when the
/// bucket is empty), bodiless requests only (every route is a GET), bounded headers and request
/// targets, and the timeouts above. Returns once every connection has closed.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Arc<PeerLimits>,
    stop: impl std::future::Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES);
    // Connection tasks hold a receiver: shutdown flips the flag, then waits for all of them.
    let (closing, closed) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let slot = match limits
            .http_connections
            .try_acquire(crate::limits::PeerKey::of(Some(peer.ip())))
        {
            Ok(slot) => slot,
            Err(full) => {
                tracing::debug!(%peer, ?full, "HTTP connection refused: too many open");
                continue; // dropping `io` closes it
            }
        };
        let service = {
            let (router, limits) = (router.clone(), limits.clone());
            hyper::service::service_fn(move |req| {
                handle(router.clone(), limits.clone(), peer.ip(), req)
            })
        };
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let mut shutdown = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.wait_for(|closing| *closing) => {}
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        });
    }
    drop(listener);
    drop(closed);
    let _ = closing.send(true);
    closing.closed().await;
}

/// One request, through the limits, then the router.
async fn handle(
    router: Router,
    limits: Arc<PeerLimits>,
    peer: std::net::IpAddr,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Result<Response, std::convert::Infallible> {
    if let Err(throttled) = limits.check(Some(peer), RpcClass::Read) {
        return Ok(too_many(&throttled));
    }
    // Every route is a GET; other methods get the router's 405, their bodies unread (hyper then
    // closes the connection rather than read them).
    let get = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    if get && !http_body::Body::is_end_stream(req.body()) {
        return Ok(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "requests to this server carry no body".into(),
        ));
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Ok(text(
            StatusCode::URI_TOO_LONG,
            format!("the request target has {target} bytes, at most {MAX_URI_BYTES}"),
        ));
    }
    let answer = tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new));
    Ok(match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        ),
    })
}

/// 429 with the back-off in whole seconds (`Retry-After`, rounded up) and in milliseconds
/// (`retry-after-ms`, as on gRPC).
fn too_many(throttled: &Throttled) -> Response {
    let wait = throttled.retry_after();
    let ms = wait.as_millis().max(1);
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{throttled}; retry after {ms} ms"),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(ms.div_ceil(1000) as u64),
    );
    headers.insert(crate::error::RETRY_AFTER_KEY, HeaderValue::from(ms as u64));
    response
}
