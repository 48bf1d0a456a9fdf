//! Compares the server's C2SP tiles (read-only HTTP) with what the auditor recomputed.

use kt_core::checkpoint::SignedCheckpoint;
use kt_core::hash::{leaf_hash, Hash};
use kt_core::note::NoteVerifier;
use kt_core::tiles::{decode_bundle, TilePath, TILE_WIDTH};

use crate::evidence::Finding;

/// Reads tiles over HTTP.
#[derive(Debug, Clone)]
pub struct TileChecker {
    http: reqwest::Client,
    base: String,
    verifier: NoteVerifier,
}

impl TileChecker {
    /// Reads the tiles under `base` with `http` (which carries the TLS options of an https://
    /// URL).
    pub fn new(base: String, verifier: NoteVerifier, http: reqwest::Client) -> Self {
        TileChecker {
            http,
            base: base.trim_end_matches('/').to_owned(),
            verifier,
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let resp = self
            .http
            .get(format!("{}/{path}", self.base))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp.error_for_status()?;
        Ok(Some(resp.bytes().await?.to_vec()))
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
        let served = self.get(&path).await?;
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
            let served = self.get(&path).await?.unwrap_or_default();
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
        let Some(note) = self.get("checkpoint").await? else {
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
