//! Read-only HTTP: the log as C2SP tlog-tiles (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`,
//! `/tile/entries/<N>[.p/<W>]`). Tiles are immutable (the tree only appends, so even a partial
//! tile of width W never changes) and are served with long cache lifetimes, so any CDN can carry
//! the read load.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::HASH_SIZE;
use kt_core::tiles::{encode_bundle, parse_tile_path, tile_width_for, TilePath, TILE_WIDTH};
use tokio::sync::watch;

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
    let storage = state.storage.clone();
    let result = tokio::task::spawn_blocking(move || read_tile(&storage, size, tile)).await;
    match result {
        Ok(Ok(Some(bytes))) => (
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
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            format!("{full_path} is not in the tree of the latest checkpoint (size {size})"),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "tile read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
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
