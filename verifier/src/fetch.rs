//! Downloading the log's entries ahead of the replay.

use kt_client::{ClientError, LogApi};
use tokio::task::JoinHandle;

/// Entries fetched per call (the server's limit).
const ENTRY_BATCH: u64 = 10_000;

type Download = JoinHandle<Result<Vec<Vec<u8>>, ClientError>>;

/// The entries of `[start, end)` in chunks of [`ENTRY_BATCH`]. Each chunk's download starts
/// when the chunk before it is handed out, so the server's reads and the transfer overlap with
/// the caller's work on that chunk (on a multi-threaded runtime). At most two chunks are held.
pub(crate) struct EntryChunks {
    api: LogApi,
    next: u64,
    end: u64,
    pending: Option<(u64, Download)>,
}

impl EntryChunks {
    pub(crate) fn new(api: &LogApi, start: u64, end: u64) -> EntryChunks {
        let mut chunks = EntryChunks {
            api: api.clone(),
            next: start,
            end,
            pending: None,
        };
        chunks.download_next();
        chunks
    }

    fn download_next(&mut self) {
        if self.next >= self.end {
            return;
        }
        let (start, end) = (self.next, (self.next + ENTRY_BATCH).min(self.end));
        let api = self.api.clone();
        let download = tokio::spawn(async move { api.entries(start, end).await });
        self.pending = Some((start, download));
        self.next = end;
    }

    /// The next chunk with the index of its first entry, or `None` after the last one.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<(u64, Vec<Vec<u8>>)>> {
        let Some((start, download)) = self.pending.take() else {
            return Ok(None);
        };
        let entries = download.await??;
        self.download_next();
        Ok(Some((start, entries)))
    }
}

impl Drop for EntryChunks {
    fn drop(&mut self) {
        if let Some((_, download)) = &self.pending {
            download.abort();
        }
    }
}
