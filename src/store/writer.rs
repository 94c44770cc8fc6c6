//! The single writer and its group commit.
//!
//! One thread owns the journal's append side. It takes requests from a bounded channel,
//! decides and applies as many as are waiting (up to a limit) against an overlay,
//! appends their frames with one write, makes them durable with one `fdatasync`, applies
//! the overlay to sled in one atomic batch, and only then answers every request of the
//! batch. One sync thus serves every client that was waiting.

use std::sync::atomic::Ordering;
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

/// Why a write was not done. `Ledger` is the request's own outcome; `Unavailable` means
/// the store could not take it now and nothing of it was kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the ledger cannot write now: {0}")]
    Unavailable(String),
}

/// Requests are moved into the channel once; boxing them would add an allocation per
/// request for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Write {
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    /// Independent requests submitted together (RecordReceipts): each has its own
    /// outcome, answered in order once all of them are durable. They join the batch
    /// being formed and spill into the next batches when it is full, so no batch grows
    /// past the journal's bound on a torn tail.
    WriteMany {
        requests: Vec<Request>,
        reply: oneshot::Sender<Vec<Reply>>,
    },
    /// Finish what is queued, then stop.
    Stop,
}

/// A `WriteMany` on its way through one or more batches.
struct Many {
    requests: std::vec::IntoIter<Request>,
    results: Vec<Reply>,
    reply: oneshot::Sender<Vec<Reply>>,
}

/// Who waits for the batch being formed, with the outcomes decided for them.
enum Waiting {
    One(oneshot::Sender<Reply>, Reply),
    /// `results[from..]` were decided in this batch.
    Many(Many, usize),
}

/// The batch being formed: its overlay and everyone waiting for it.
struct Batch<'a> {
    overlay: Overlay<'a>,
    waiting: Vec<Waiting>,
    requests: usize,
}

impl Batch<'_> {
    fn has_room(&self) -> bool {
        self.requests < BATCH_REQUESTS_MAX && self.overlay.frame_bytes() < BATCH_BYTES_SOFT_MAX
    }
}

pub struct Writer {
    pub(crate) journal: JournalWriter,
    pub(crate) state: SledState,
    /// Set after a failed sync or a failed apply: the state on disk is uncertain until a
    /// restart replays the journal, so every later write is refused.
    pub(crate) poisoned: Option<String>,
    pub(crate) metrics: std::sync::Arc<super::WriterStats>,
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
        // A WriteMany that did not fit in the last batch; it goes first into the next.
        let mut spill: Option<Many> = None;
        loop {
            let mut batch = Batch {
                overlay: Overlay::new(&state, self.journal.end()),
                waiting: Vec::new(),
                requests: 0,
            };
            let mut full = match spill.take() {
                Some(many) => self.take_many(&mut batch, many),
                None if stopping => break,
                None => match rx.blocking_recv() {
                    Some(message) => self.take(&mut batch, message, &mut stopping),
                    None => break,
                },
            };
            while !full && !stopping && batch.has_room() {
                match rx.try_recv() {
                    Ok(message) => full = self.take(&mut batch, message, &mut stopping),
                    Err(_) => break,
                }
            }
            spill = self.commit(batch);
        }
        if let Err(e) = self.state.tree.flush() {
            tracing::warn!(error = %e, "flushing the state at shutdown failed; it is rebuilt from the journal at start");
        }
    }

    /// Decides one message into the batch. True when the batch cannot take more.
    fn take<'a>(&self, batch: &mut Batch<'a>, message: Message, stopping: &mut bool) -> bool {
        match message {
            Message::Stop => {
                *stopping = true;
                true
            }
            Message::Write { request, reply } => {
                let result = self.decide(&mut batch.overlay, &request);
                batch.waiting.push(Waiting::One(reply, result));
                batch.requests += 1;
                false
            }
            Message::WriteMany { requests, reply } => {
                let many = Many {
                    results: Vec::with_capacity(requests.len()),
                    requests: requests.into_iter(),
                    reply,
                };
                self.take_many(batch, many)
            }
        }
    }

    /// Decides as many of the requests as the batch has bytes for. True when some are
    /// left over for the next batch.
    fn take_many(&self, batch: &mut Batch<'_>, mut many: Many) -> bool {
        let from = many.results.len();
        while batch.overlay.frame_bytes() < BATCH_BYTES_SOFT_MAX {
            let Some(request) = many.requests.next() else {
                break;
            };
            many.results.push(self.decide(&mut batch.overlay, &request));
            batch.requests += 1;
        }
        let left_over = many.requests.len() > 0;
        batch.waiting.push(Waiting::Many(many, from));
        left_over
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
    /// with the same request id finds whatever did reach the journal. Returns a
    /// WriteMany that still has requests to decide.
    fn commit(&mut self, batch: Batch<'_>) -> Option<Many> {
        let Batch {
            overlay,
            waiting,
            requests,
        } = batch;
        if waiting.is_empty() {
            return None;
        }
        let started = Instant::now();
        let entries = overlay.len();
        let result = self.persist(overlay);
        self.metrics.record(requests, entries, started.elapsed());
        let refused = |why: &String| Err(WriteError::Unavailable(why.clone()));
        let mut spill = None;
        for w in waiting {
            match w {
                Waiting::One(reply, outcome) => {
                    let answer = match &result {
                        Ok(()) => outcome,
                        Err(why) => refused(why),
                    };
                    // A client that went away no longer needs its answer.
                    let _ = reply.send(answer);
                }
                Waiting::Many(mut many, from) => {
                    if let Err(why) = &result {
                        for r in &mut many.results[from..] {
                            *r = refused(why);
                        }
                    }
                    if many.requests.len() > 0 {
                        spill = Some(many);
                    } else {
                        let _ = many.reply.send(many.results);
                    }
                }
            }
        }
        spill
    }

    fn persist(&mut self, overlay: Overlay<'_>) -> Result<(), String> {
        if overlay.is_empty() {
            return Ok(());
        }
        let (frames, batch) = overlay.into_parts().map_err(|f| f.to_string())?;
        if let Err(e) = self.journal.append(&frames) {
            let why = format!("journal write failed: {e}");
            if self.journal.is_broken() {
                tracing::error!(error = %e, "journal write failed and could not be undone; refusing writes until restart");
                self.poisoned = Some(format!("{why}; restart the server to recover"));
            } else {
                tracing::error!(error = %e, "journal write failed; the batch is refused and writes go on");
            }
            return Err(why);
        }
        let started = Instant::now();
        let synced = self.journal.sync();
        let sync_took = started.elapsed();
        if let Err(e) = synced {
            let why = format!("journal sync failed: {e}; restart the server to recover");
            tracing::error!(error = %e, "journal fdatasync failed; refusing writes until restart");
            self.poisoned = Some(why.clone());
            return Err(why);
        }
        let started = Instant::now();
        let applied = self.state.tree.apply_batch(batch);
        let micros = |d: std::time::Duration| d.as_micros() as u64;
        (self.metrics.sync_micros).fetch_add(micros(sync_took), Ordering::Relaxed);
        (self.metrics.apply_micros).fetch_add(micros(started.elapsed()), Ordering::Relaxed);
        if let Err(e) = applied {
            let why = format!("applying the state failed: {e}; restart the server to recover");
            tracing::error!(error = %e, "applying a durable batch to sled failed; refusing writes until restart");
            self.poisoned = Some(why.clone());
            return Err(why);
        }
        Ok(())
    }
}
