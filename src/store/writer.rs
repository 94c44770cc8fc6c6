//! The single writer and its group commit.
//!
//! One thread owns the journal's append side. It takes requests from a bounded channel,
//! decides and applies as many as are waiting (up to a limit) against an overlay,
//! appends their frames with one write, makes them durable with one `fdatasync`, applies
//! the overlay to sled in one atomic batch, and only then answers every request of the
//! batch. One sync thus serves every client that was waiting.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::Micros;
use crate::ledger::{self, Context, LedgerError, Outcome, Request};

use super::journal::{JournalWriter, BATCH_BYTES_SOFT_MAX};
use super::state::{Overlay, SledState};

/// The most requests one batch takes; bounds the latency a batch adds to its first.
pub const BATCH_REQUESTS_MAX: usize = 4096;

pub type Reply = Result<Outcome, WriteError>;

/// Why a write was not acknowledged. `Ledger` is the request's own outcome, final.
/// `Unavailable` and `DiskFull` mean the store could not take it now; when the failure
/// came after the journal sync, the request may be recorded all the same — a retry
/// with the same request id always learns the one outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the ledger cannot write now: {0}")]
    Unavailable(String),
    /// The disk is full (or below its reserve); retry later with the same request id.
    #[error("the ledger's disk is full: {0}")]
    DiskFull(String),
}

/// Requests are moved into the channel once; boxing them would add an allocation per
/// request for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Write {
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    /// Finish what is queued, then stop.
    Stop,
}

pub struct Writer {
    pub(crate) journal: JournalWriter,
    pub(crate) state: SledState,
    /// Set after a failed sync or a failed apply: the state on disk is uncertain until a
    /// restart replays the journal, so every later write is refused.
    pub(crate) poisoned: Option<String>,
    pub(crate) metrics: std::sync::Arc<super::WriterStats>,
    /// The chain value after the last durable entry; the next batch links to it.
    pub(crate) chain_head: super::journal::Hash,
    /// Tells change-feed readers the last sequence that is durable and applied.
    pub(crate) committed: tokio::sync::watch::Sender<u64>,
    /// The journal holds durable entries the state lacks (applying them ran out of
    /// space). No request is decided until they are replayed: decisions read the state.
    pub(crate) behind: bool,
    pub(crate) data_dir: std::path::PathBuf,
    /// Free bytes to keep on the disk; below this, writes are refused.
    pub(crate) disk_reserve_bytes: u64,
    /// Whether the last check found the disk below the reserve (to log changes once).
    pub(crate) space_low: bool,
}

fn now() -> Micros {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Writer {
    /// Runs until [`Message::Stop`] or until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        // The overlay borrows the state while `self` is borrowed mutably to commit; the
        // clone shares the same sled tree and journal reader.
        let state = self.state.clone();
        let mut stopping = false;
        while !stopping {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let blocked = self.catch_up().or_else(|| self.check_space());
            let mut pending = Vec::new();
            let mut overlay = Overlay::new(&state, self.journal.end(), self.chain_head);
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Stop => {
                        stopping = true;
                        break;
                    }
                    Message::Write { request, reply } => {
                        let result = match &blocked {
                            Some(e) => Err(e.clone()),
                            None => self.decide(&mut overlay, &request),
                        };
                        pending.push((reply, result));
                    }
                }
                if pending.len() < BATCH_REQUESTS_MAX
                    && overlay.frame_bytes() < BATCH_BYTES_SOFT_MAX
                {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(overlay, pending);
        }
        if let Err(e) = self.state.tree.flush() {
            tracing::warn!(error = %e, "flushing the state at shutdown failed; it is rebuilt from the journal at start");
        }
    }

    /// If the state lags the journal, replays the missing entries; returns why writes
    /// must still be refused when that fails.
    fn catch_up(&mut self) -> Option<WriteError> {
        if !self.behind {
            return None;
        }
        match super::replay(&mut self.journal, &self.state) {
            Ok((entries, head)) => {
                tracing::info!(
                    entries,
                    "the state caught up with the journal; writes resume"
                );
                self.behind = false;
                self.chain_head = head;
                if let Ok(last) = self.state.last_sequence() {
                    self.committed.send_replace(last);
                }
                None
            }
            Err(e) => Some(WriteError::DiskFull(format!(
                "no space left on the data directory's disk ({e})"
            ))),
        }
    }

    /// Refuses the batch while the disk is below its reserve. One `statvfs` a batch.
    fn check_space(&mut self) -> Option<WriteError> {
        let free = match fs2::available_space(&self.data_dir) {
            Ok(free) => free,
            // Not knowing is no reason to refuse; a full disk still fails the write.
            Err(_) => return None,
        };
        let low = free < self.disk_reserve_bytes;
        if low != self.space_low {
            if low {
                tracing::error!(free, reserve = self.disk_reserve_bytes, "the data directory's disk is below its free-space reserve; refusing writes until space is freed");
            } else {
                tracing::info!(free, "free space is back above the reserve; writes resume");
            }
            self.space_low = low;
        }
        low.then(|| {
            WriteError::DiskFull(format!(
                "no space left for writes: {free} bytes free on the data directory's disk, below the reserve of {}; writes resume once space is freed",
                self.disk_reserve_bytes
            ))
        })
    }

    fn decide(&self, overlay: &mut Overlay<'_>, request: &Request) -> Reply {
        if let Some(why) = &self.poisoned {
            return Err(WriteError::Unavailable(why.clone()));
        }
        let ctx = Context {
            now: now(),
            new_id: Uuid::now_v7(),
        };
        ledger::execute(overlay, request, &ctx)
            .map(|(outcome, _)| outcome)
            .map_err(WriteError::from)
    }

    /// Makes the batch durable, applies it, then answers. If anything fails, every
    /// request of the batch is refused: none of them was acknowledged, and a retry
    /// with the same request id finds whatever did reach the journal.
    fn commit(&mut self, overlay: Overlay<'_>, pending: Vec<(oneshot::Sender<Reply>, Reply)>) {
        if pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let entries = overlay.len();
        let result = self.persist(overlay);
        self.metrics
            .record(pending.len(), entries, started.elapsed());
        for (reply, outcome) in pending {
            let answer = match &result {
                Ok(()) => outcome,
                Err(e) => Err(e.clone()),
            };
            // A client that went away no longer needs its answer.
            let _ = reply.send(answer);
        }
    }

    fn persist(&mut self, overlay: Overlay<'_>) -> Result<(), WriteError> {
        if overlay.is_empty() {
            return Ok(());
        }
        let head = overlay.chain_head();
        let last = overlay.last_sequence();
        let (frames, batch) = overlay
            .into_parts()
            .map_err(|f| WriteError::Unavailable(f.to_string()))?;
        if let Err(e) = self.journal.append(&frames) {
            let why = format!("journal write failed: {e}");
            if self.journal.is_broken() {
                tracing::error!(error = %e, "journal write failed and could not be undone; refusing writes until restart");
                self.poisoned = Some(format!("{why}; restart the server to recover"));
            } else {
                tracing::error!(error = %e, "journal write failed; the batch is refused and writes go on");
            }
            if e.is_disk_full() {
                return Err(WriteError::DiskFull(format!(
                    "no space left on the data directory's disk; the request was not recorded ({why})"
                )));
            }
            return Err(WriteError::Unavailable(why));
        }
        if let Err(e) = self.journal.sync() {
            let why = format!("journal sync failed: {e}; the outcome is unknown until the server restarts: then retry with the same request_id");
            tracing::error!(error = %e, "journal fdatasync failed; refusing writes until restart");
            self.poisoned = Some(why.clone());
            return Err(WriteError::Unavailable(why));
        }
        if let Err(e) = self.state.tree.apply_batch(batch) {
            // The batch is durable in the journal; only the derived state lags.
            self.chain_head = head;
            if matches!(&e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull) {
                tracing::error!(error = %e, "no space to apply a durable batch to the state; refusing writes until it can be replayed from the journal");
                self.behind = true;
                return Err(WriteError::DiskFull(format!(
                    "no space left on the data directory's disk; the request may be recorded: retry with the same request_id once space is freed ({e})"
                )));
            }
            let why = format!("applying the state failed: {e}; the request may be recorded: restart the server, then retry with the same request_id");
            tracing::error!(error = %e, "applying a durable batch to sled failed; refusing writes until restart");
            self.poisoned = Some(why.clone());
            return Err(WriteError::Unavailable(why));
        }
        self.chain_head = head;
        if let Some(last) = last {
            self.committed.send_replace(last);
        }
        Ok(())
    }
}
