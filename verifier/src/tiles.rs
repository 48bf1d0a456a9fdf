//! Compares the server's C2SP tiles (read-only HTTP) with what the auditor recomputed.
//!
//! Every read is bounded in bytes (the largest valid answer of its kind) and in time
//! ([`kt_client::http::get_bounded`]).

use kt_client::http::{get_bounded, HttpLimits};
use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::{leaf_hash, Hash};
use kt_core::note::NoteVerifier;
use kt_core::tiles::{decode_bundle, TilePath, TILE_WIDTH};

use crate::evidence::Finding;

/// A full hash tile: 256 hashes.
pub const HASH_TILE_LIMIT: HttpLimits = HttpLimits::new(TILE_WIDTH * 32);

/// A full entry bundle: 256 entries of the largest size, each with its 2-byte length.
pub const ENTRY_BUNDLE_LIMIT: HttpLimits =
    HttpLimits::new(TILE_WIDTH * (2 + kt_core::entry::MAX_ENTRY_LEN as u64));

/// The HTTP checkpoint: a note with its signature and cosignatures.
pub const CHECKPOINT_LIMIT: HttpLimits = HttpLimits::new(64 * 1024);

/// Reads tiles over HTTP.
#[derive(Debug, Clone)]
pub struct TileChecker {
    http: reqwest::Client,
    base: String,
    verifier: NoteVerifier,
    timeout: std::time::Duration,
}

impl TileChecker {
    /// Reads the tiles under `base` with `http` (which carries the TLS options of an https://
    /// URL).
    pub fn new(base: String, verifier: NoteVerifier, http: reqwest::Client) -> Self {
        TileChecker {
            http,
            base: base.trim_end_matches('/').to_owned(),
            verifier,
            timeout: kt_client::http::DEFAULT_TIMEOUT,
        }
    }

    /// Sets the total timeout of every read (default [`kt_client::http::DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: std::time::Duration) {
        self.timeout = timeout;
    }

    async fn get(&self, path: &str, limits: &HttpLimits) -> anyhow::Result<Option<Vec<u8>>> {
        let url = format!("{}/{path}", self.base);
        let limits = limits.with_timeout(self.timeout);
        Ok(get_bounded(&self.http, &url, &limits).await?)
    }

    /// Compares one hash tile (and, at level 0, the entry bundle) with the recomputed hashes.
    pub async fn check_tile(
        &self,
        level: u8,
        index: u64,
        hashes: &[Hash],
        cp: &SignedCheckpoint,
    ) -> anyhow::Result<Result<(), Finding>> {
        let width = hashes.len() as u16;
        let expected = hashes.concat();
        let path = TilePath::Hashes {
            level,
            index,
            width,
        }
        .to_string();
        let served = self.get(&path, &HASH_TILE_LIMIT).await?;
        if served.as_deref() != Some(&expected[..]) {
            return Ok(Err(Finding::tile(
                "tile-mismatch",
                format!("HTTP tile {path} differs from the hashes recomputed from the entries"),
                cp,
                path,
                served.as_deref().unwrap_or_default(),
                &expected,
            )));
        }
        if level == 0 {
            let path = TilePath::Entries { index, width }.to_string();
            let served = self
                .get(&path, &ENTRY_BUNDLE_LIMIT)
                .await?
                .unwrap_or_default();
            let matches = decode_bundle(&served).is_ok_and(|entries| {
                entries.len() == hashes.len()
                    && entries.iter().zip(hashes).all(|(e, h)| leaf_hash(e) == *h)
            });
            if !matches {
                return Ok(Err(Finding::tile(
                    "entry-tile-mismatch",
                    format!("HTTP entry bundle {path} differs from the entries served over gRPC"),
                    cp,
                    path,
                    &served,
                    &expected,
                )));
            }
        }
        Ok(Ok(()))
    }

    /// At the end of an audit: the partial tiles of the audited tree, and the HTTP checkpoint.
    pub async fn check_tail(
        &self,
        cp: &SignedCheckpoint,
        pending: &[Vec<Hash>],
    ) -> anyhow::Result<Result<(), Finding>> {
        let size = cp.checkpoint().size;
        for (level, hashes) in pending.iter().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            let nodes = size >> (8 * level as u32);
            let index = nodes / TILE_WIDTH;
            if let Err(f) = self.check_tile(level as u8, index, hashes, cp).await? {
                return Ok(Err(f));
            }
        }
        let Some(note) = self.get("checkpoint", &CHECKPOINT_LIMIT).await? else {
            return Ok(Err(Finding::single(
                "http-checkpoint-missing",
                "the HTTP endpoint serves no checkpoint",
                cp,
            )));
        };
        let http = SignedCheckpoint::open(&note, self.verifier.name().as_str(), &self.verifier)
            .map_err(|e| anyhow::anyhow!("HTTP checkpoint does not verify: {e}"))?;
        if http.checkpoint().epoch <= cp.checkpoint().epoch {
            if let Err(v) = kt_core::trust::advance(cp, &http, &[]) {
                return Ok(Err(v.into()));
            }
        }
        Ok(Ok(()))
    }
}
