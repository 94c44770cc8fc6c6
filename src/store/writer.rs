//! The single writer and its group commit, in two stages.
//!
//! The writer thread owns the journal's append side. It takes requests from a bounded
//! channel, decides and applies as many as are waiting (up to a limit) against an
//! overlay, and appends their frames with one write. The committer thread then makes
//! the batch durable with one `fdatasync`, answers the requests whose answer needs no
//! read of the state, applies the batch to the state (`store::commit`), and then
//! answers the rest (`store::visible` keeps every later read from seeing less than
//! was acknowledged). One sync thus serves every client that was
//! waiting, and while batch N is being synced and applied the writer already decides
//! batch N+1, reading N's writes from its in-flight copy (the profile in
//! BENCHMARKS.md: fdatasync and sled's apply were most of a batch's time).
//!
//! The writer appends batch N+1 only once N's sync has returned, so at most one batch
//! in the file is ever unsynced: a crash still leaves at most one torn batch at the
//! tail, which is what the journal's torn-tail bound assumes.
//!
//! Every answer, even one that wrote nothing (a retry, a refusal), goes through the
//! committer in batch order, so nothing is acknowledged before every batch it may have
//! seen is durable. A failed sync or apply poisons both stages: every later request
//! is refused until a restart replays the journal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::Micros;
use crate::domain::{Balances, Entry};
use crate::ledger::{self, Context, LedgerError, Request, State};

use super::journal::{JournalSyncer, JournalWriter, BATCH_BYTES_SOFT_MAX};
use super::state::{InFlight, IndexCache, Overlay, SledState};
use super::WriterStats;

/// The most requests one batch takes; bounds the latency a batch adds to its first.
pub const BATCH_REQUESTS_MAX: usize = 4096;

pub type Reply = Result<Written, WriteError>;

/// What became of one request.
#[derive(Debug)]
pub struct Written {
    /// The entry that answers the request: its own, or the one recorded before.
    pub sequence: u64,
    /// For a single request that made a new entry: the entry, and its first case's
    /// balances right after it, so that the answer needs no read of what was just
    /// written. A retried request has none and reads its answer as of its entry.
    pub fresh: Option<Box<Fresh>>,
}

#[derive(Debug)]
pub struct Fresh {
    pub entry: Entry,
    pub case_balances: Option<Balances>,
}

/// Why a write was not acknowledged. `Ledger` is the request's own outcome, final.
/// `Unavailable` and `DiskFull` mean the store could not take it now; when the failure
/// came after the journal append, the request may be recorded all the same — a retry
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
        /// Answer a new entry once durable, before the state has it
        /// (`StoreHandle::write_durable`).
        early: bool,
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

/// The outcomes of a `WriteMany`, filled in by the writer and answered by the
/// committer once the batch holding its last request is durable.
struct ManyOutcomes {
    results: Vec<Reply>,
    reply: Option<oneshot::Sender<Vec<Reply>>>,
}

type Shared = Arc<Mutex<ManyOutcomes>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, ManyOutcomes> {
    // Nothing panics while holding it; if something did, the outcomes are still whole.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `WriteMany` on its way through one or more batches.
struct Many {
    requests: std::vec::IntoIter<Request>,
    shared: Shared,
}

/// Who waits for a batch, with the outcomes decided for them.
enum Waiting {
    /// One request; `true` when it may be answered once durable (it made a new entry
    /// and its caller reads nothing).
    One(oneshot::Sender<Reply>, Reply, bool),
    /// `results[from..to]` of a WriteMany were decided in this batch; `last` when
    /// nothing of it is left for later batches.
    Many {
        shared: Shared,
        from: usize,
        to: usize,
        last: bool,
    },
}

/// The batch being formed: its overlay and everyone waiting for it.
struct Batch<'a> {
    overlay: Overlay<'a>,
    waiting: Vec<Waiting>,
    requests: usize,
    /// Why every request of this batch is refused before it is decided (disk space).
    blocked: Option<WriteError>,
}

impl Batch<'_> {
    fn has_room(&self) -> bool {
        self.requests < BATCH_REQUESTS_MAX && self.overlay.frame_bytes() < BATCH_BYTES_SOFT_MAX
    }
}

/// A batch handed from the writer to the committer.
struct Appended {
    number: u64,
    /// The sled writes, when the batch has entries and its frames are in the journal.
    state: Option<Arc<InFlight>>,
    /// The batch's last sequence, announced to the change feed once applied.
    last_sequence: Option<u64>,
    /// Why the batch failed before reaching the committer.
    failed: Option<WriteError>,
    waiting: Vec<Waiting>,
    requests: usize,
    entries: usize,
    started: Instant,
}

/// The number of the last batch whose fdatasync has returned (or that needed none),
/// for the writer to wait on before appending the next.
#[derive(Default)]
struct Settled {
    number: Mutex<u64>,
    changed: Condvar,
}

impl Settled {
    fn set(&self, number: u64) {
        *self.number.lock().unwrap_or_else(|e| e.into_inner()) = number;
        self.changed.notify_all();
    }

    /// Waits until batch `number` is settled; false if the committer is gone.
    fn wait(&self, number: u64, committer: Option<&std::thread::JoinHandle<()>>) -> bool {
        let mut settled = self.number.lock().unwrap_or_else(|e| e.into_inner());
        while *settled < number {
            if committer.is_none_or(|c| c.is_finished()) {
                return false;
            }
            // Timed, so that a committer that died is noticed rather than waited for.
            settled = self
                .changed
                .wait_timeout(settled, std::time::Duration::from_millis(100))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }
}

pub struct Writer {
    pub(crate) journal: JournalWriter,
    pub(crate) state: SledState,
    /// Set after a failed sync or a failed apply (or an append that could not be
    /// undone): the state on disk is uncertain until a restart replays the journal,
    /// so every later write is refused.
    pub(crate) poisoned: Arc<OnceLock<String>>,
    pub(crate) metrics: Arc<WriterStats>,
    /// The chain value after the last appended entry; the next batch links to it.
    pub(crate) chain_head: super::journal::Hash,
    /// Tells change-feed readers the last sequence that is durable and applied.
    pub(crate) committed: tokio::sync::watch::Sender<u64>,
    /// Tells readers how far the state has caught up with the acknowledged batches.
    pub(crate) progress: tokio::sync::watch::Sender<super::visible::Progress>,
    pub(crate) data_dir: std::path::PathBuf,
    /// Free bytes to keep on the disk; below this, writes are refused.
    pub(crate) disk_reserve_bytes: u64,
    pub(crate) approval_tiers: crate::domain::ApprovalTiers,
    /// Whether the last check found the disk below the reserve (to log changes once).
    pub(crate) space_low: bool,
    pub(crate) faults: Option<&'static super::Faults>,
}

fn now() -> Micros {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn poison(poisoned: &OnceLock<String>, why: &str) {
    // The first reason is the one that matters.
    let _ = poisoned.set(format!("{why}; restart the server to recover"));
}

impl Writer {
    /// Runs until [`Message::Stop`] or until every sender is gone; then waits for the
    /// committer to finish every batch handed to it.
    pub fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let applied = Arc::new(AtomicU64::new(0));
        let settled = Arc::new(Settled::default());
        // One batch may wait while the committer works on the one before.
        let (to_committer, committing) = std::sync::mpsc::sync_channel::<Appended>(1);
        // The committer owns the sender: when it ends, the change feed learns so.
        let (placeholder, _) = tokio::sync::watch::channel(0);
        let committed = std::mem::replace(&mut self.committed, placeholder);
        let (placeholder, _) = tokio::sync::watch::channel(Default::default());
        let progress = std::mem::replace(&mut self.progress, placeholder);
        let started = self
            .journal
            .syncer()
            .map_err(|e| e.to_string())
            .and_then(|syncer| {
                let committer = Committer {
                    committed,
                    progress,
                    syncer,
                    tree: self.state.tree.clone(),
                    poisoned: self.poisoned.clone(),
                    metrics: self.metrics.clone(),
                    applied: applied.clone(),
                    settled: settled.clone(),
                    faults: self.faults,
                };
                std::thread::Builder::new()
                    .name("ledger-commit".into())
                    .spawn(move || committer.run(committing))
                    .map_err(|e| e.to_string())
            });
        let committer = match started {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the commit thread; refusing writes");
                poison(
                    &self.poisoned,
                    &format!("cannot start the commit thread: {e}"),
                );
                None
            }
        };
        // The overlay borrows the state while `self` is borrowed mutably to append; the
        // clone shares the same sled tree and journal reader.
        let state = self.state.clone();
        let index_cache = IndexCache::default();
        let mut in_flight: VecDeque<(u64, Arc<InFlight>)> = VecDeque::new();
        let mut number = 0u64;
        let mut stopping = false;
        // A WriteMany that did not fit in the last batch; it goes first into the next.
        let mut spill: Option<Many> = None;
        loop {
            // Batches the committer has applied are in sled now.
            let done = applied.load(Ordering::Acquire);
            while in_flight.front().is_some_and(|(n, _)| *n <= done) {
                in_flight.pop_front();
            }
            let chain = in_flight.iter().map(|(_, f)| f.clone()).collect();
            let mut batch = Batch {
                overlay: Overlay::over(&state, self.journal.end(), self.chain_head, chain)
                    .with_index_cache(&index_cache),
                waiting: Vec::new(),
                requests: 0,
                blocked: None,
            };
            // The space is checked once the batch's first request is here, not while
            // waiting for it: the disk may fill in between.
            let mut full = match spill.take() {
                Some(many) => {
                    batch.blocked = self.check_space();
                    self.take_many(&mut batch, many, &mut spill)
                }
                None if stopping => break,
                None => match rx.blocking_recv() {
                    Some(message) => {
                        batch.blocked = self.check_space();
                        self.take(&mut batch, message, &mut stopping, &mut spill)
                    }
                    None => break,
                },
            };
            while !full && !stopping && batch.has_room() {
                match rx.try_recv() {
                    Ok(message) => full = self.take(&mut batch, message, &mut stopping, &mut spill),
                    Err(_) => break,
                }
            }
            number += 1;
            if !settled.wait(number - 1, committer.as_ref()) {
                poison(&self.poisoned, "the commit thread stopped");
            }
            let appended = self.append(batch, number, &mut in_flight);
            if let Err(lost) = to_committer.send(appended) {
                // The committer is gone (it panicked): nothing can be made durable.
                poison(&self.poisoned, "the commit thread stopped");
                drop(lost);
            }
        }
        drop(to_committer);
        if let Some(thread) = committer {
            if thread.join().is_err() {
                tracing::error!("the commit thread ended abnormally");
                // The state may hold part of a batch: closing must leave it as it is.
                poison(&self.poisoned, "the commit thread stopped");
            }
        }
        if let Err(e) = self.state.tree.flush() {
            tracing::warn!(error = %e, "flushing the state at shutdown failed; it is rebuilt from the journal at start");
        }
    }

    /// Decides one message into the batch. True when the batch cannot take more.
    fn take(
        &self,
        batch: &mut Batch<'_>,
        message: Message,
        stopping: &mut bool,
        spill: &mut Option<Many>,
    ) -> bool {
        match message {
            Message::Stop => {
                *stopping = true;
                true
            }
            Message::Write {
                request,
                reply,
                early,
            } => {
                let result = match &batch.blocked {
                    Some(e) => Err(e.clone()),
                    None => self.decide(&mut batch.overlay, &request, true),
                };
                // A retry is answered from the state, as of its entry: not before the
                // state has the batch.
                let early = early && matches!(&result, Ok(Written { fresh: Some(_), .. }));
                batch.waiting.push(Waiting::One(reply, result, early));
                batch.requests += 1;
                false
            }
            Message::WriteMany { requests, reply } => {
                let many = Many {
                    shared: Arc::new(Mutex::new(ManyOutcomes {
                        results: Vec::with_capacity(requests.len()),
                        reply: Some(reply),
                    })),
                    requests: requests.into_iter(),
                };
                self.take_many(batch, many, spill)
            }
        }
    }

    /// Decides as many of the requests as the batch has bytes for; what is left goes
    /// to `spill` for the next batch. True when some are left over.
    fn take_many(&self, batch: &mut Batch<'_>, mut many: Many, spill: &mut Option<Many>) -> bool {
        let (from, to) = {
            let mut outcomes = lock(&many.shared);
            let from = outcomes.results.len();
            while batch.overlay.frame_bytes() < BATCH_BYTES_SOFT_MAX {
                let Some(request) = many.requests.next() else {
                    break;
                };
                let result = match &batch.blocked {
                    Some(e) => Err(e.clone()),
                    // RecordReceipts answers sequences only.
                    None => self.decide(&mut batch.overlay, &request, false),
                };
                outcomes.results.push(result);
                batch.requests += 1;
            }
            (from, outcomes.results.len())
        };
        let last = many.requests.len() == 0;
        batch.waiting.push(Waiting::Many {
            shared: many.shared.clone(),
            from,
            to,
            last,
        });
        if !last {
            *spill = Some(many);
        }
        !last
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

    fn decide(&self, overlay: &mut Overlay<'_>, request: &Request, answer_fresh: bool) -> Reply {
        if let Some(why) = self.poisoned.get() {
            return Err(WriteError::Unavailable(why.clone()));
        }
        let ctx = Context {
            now: now(),
            new_id: Uuid::now_v7(),
            tiers: self.approval_tiers,
        };
        let (outcome, entry) = ledger::execute(overlay, request, &ctx)?;
        let fresh = match entry {
            Some(entry) if answer_fresh && !outcome.existing => {
                // The overlay holds the case as this entry left it: later requests of
                // the batch are not decided yet. The entry is in the batch whatever
                // this read does; if it fails, the handler reads the answer instead.
                let case_balances = match entry.cases().first() {
                    None => Some(None),
                    Some((id, _)) => overlay.case(*id).ok().flatten().map(|c| Some(c.balances)),
                };
                case_balances.map(|case_balances| {
                    Box::new(Fresh {
                        entry,
                        case_balances,
                    })
                })
            }
            _ => None,
        };
        Ok(Written {
            sequence: outcome.sequence,
            fresh,
        })
    }

    /// Appends the batch's frames to the journal (not yet durable) and hands back what
    /// the committer needs. Later batches read its writes from `in_flight` until sled
    /// has them.
    fn append(
        &mut self,
        batch: Batch<'_>,
        number: u64,
        in_flight: &mut VecDeque<(u64, Arc<InFlight>)>,
    ) -> Appended {
        let Batch {
            overlay,
            waiting,
            requests,
            blocked: _,
        } = batch;
        let started = Instant::now();
        let entries = overlay.len();
        let mut appended = Appended {
            number,
            state: None,
            last_sequence: overlay.last_sequence(),
            failed: None,
            waiting,
            requests,
            entries,
            started,
        };
        if overlay.is_empty() {
            return appended;
        }
        // A sync that failed meanwhile leaves the last batch's bytes in doubt: append
        // nothing after them.
        if let Some(why) = self.poisoned.get() {
            appended.failed = Some(WriteError::Unavailable(why.clone()));
            return appended;
        }
        let head = overlay.chain_head();
        let (frames, flight) = match overlay.into_batch() {
            Ok((frames, batch)) => (frames, Arc::new(batch)),
            Err(f) => {
                appended.failed = Some(WriteError::Unavailable(f.to_string()));
                return appended;
            }
        };
        if let Err(e) = self.journal.append(&frames) {
            // Cut back, the batch left nothing; not cut back, the next start may find
            // some of its frames whole and replay them.
            let outcome = if self.journal.is_broken() {
                "the request may have been recorded: once the server is restarted, retry with the same request_id to learn its outcome"
            } else {
                "the request was not recorded"
            };
            let why = if e.is_read_only() {
                format!("the data directory is read-only; {outcome} ({e})")
            } else {
                format!("journal write failed: {e}")
            };
            if e.is_read_only() {
                tracing::error!(error = %e, "the data directory is read-only; refusing writes until it is writable and the server restarted");
                poison(&self.poisoned, &why);
            } else if self.journal.is_broken() {
                tracing::error!(error = %e, "journal write failed and could not be undone; refusing writes until restart");
                poison(&self.poisoned, &why);
            } else {
                tracing::error!(error = %e, "journal write failed; the batch is refused and writes go on");
            }
            appended.failed = Some(if e.is_disk_full() {
                WriteError::DiskFull(format!(
                    "no space left on the data directory's disk; {outcome} ({why})"
                ))
            } else if self.journal.is_broken() && !e.is_read_only() {
                WriteError::Unavailable(format!("{why}; {outcome}"))
            } else {
                WriteError::Unavailable(why)
            });
            return appended;
        }
        self.chain_head = head;
        in_flight.push_back((number, flight.clone()));
        appended.state = Some(flight);
        appended
    }
}

/// The second stage: makes each batch durable, applies it to sled, answers it.
struct Committer {
    /// Bumped after each applied batch; dropped (closing the feed) when this ends.
    committed: tokio::sync::watch::Sender<u64>,
    /// For `Visible`: dropped when this ends, which readers notice.
    progress: tokio::sync::watch::Sender<super::visible::Progress>,
    syncer: JournalSyncer,
    tree: super::kv::Tree,
    poisoned: Arc<OnceLock<String>>,
    metrics: Arc<WriterStats>,
    /// The number of the last batch applied to sled.
    applied: Arc<AtomicU64>,
    settled: Arc<Settled>,
    faults: Option<&'static super::Faults>,
}

impl Committer {
    fn run(self, batches: std::sync::mpsc::Receiver<Appended>) {
        for mut batch in batches {
            // Durable (so partly acknowledged) but not in the state.
            let mut behind = false;
            let result = match (&batch.failed, self.poisoned.get()) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(why)) => Err(WriteError::Unavailable(why.clone())),
                (None, None) => match batch.state.take() {
                    Some(state) => self
                        .persist(state, batch.number, &mut batch.waiting)
                        .map_err(|failed| {
                            behind = failed.behind;
                            failed.why
                        }),
                    None => Ok(()),
                },
            };
            if let (Ok(()), Some(last)) = (&result, batch.last_sequence) {
                self.committed.send_replace(last);
            }
            // Counted before readers may pass `Visible::wait`, so that a read after the
            // answer finds the batch counted too.
            self.metrics
                .record(batch.requests, batch.entries, batch.started.elapsed());
            self.progress.send_if_modified(|p| {
                if p.stuck {
                    // The state stays where it is until a restart.
                    return false;
                }
                if behind {
                    p.stuck = true;
                } else {
                    // In the state, or nothing of it was acknowledged (refused before
                    // the journal, not synced, or without entries).
                    p.applied = batch.number;
                }
                true
            });
            self.settled.set(batch.number);
            self.applied.store(batch.number, Ordering::Release);
            answer(batch.waiting, &result);
        }
    }

    /// Syncs the batch, answers whoever may be answered once it is durable, then
    /// applies it to the state; `waiting` keeps those still to be answered.
    fn persist(
        &self,
        state: Arc<InFlight>,
        number: u64,
        waiting: &mut Vec<Waiting>,
    ) -> Result<(), CommitFailed> {
        let started = Instant::now();
        let synced = match self.faults.is_some_and(super::Faults::take_sync) {
            true => Err(self.syncer.injected_failure()),
            false => self.syncer.sync(),
        };
        let sync_took = started.elapsed();
        let mut why_failed = None;
        if let Err(e) = &synced {
            // Poisoned, and the batch cut off, before the writer may append after it.
            poison(&self.poisoned, &format!("journal sync failed: {e}"));
            why_failed = Some(match self.syncer.cut_back(state.start()) {
                Ok(()) => format!("journal sync failed: {e}; the request was not recorded (its bytes were cut from the journal); writes are refused until the server restarts: then retry with the same request_id"),
                Err(cut) => {
                    tracing::error!(error = %cut, offset = state.start(), "could not cut the unsynced batch off the journal; the next start may replay it");
                    format!("journal sync failed: {e}; the outcome is unknown until the server restarts: then retry with the same request_id")
                }
            });
        }
        // The writer may append the next batch now, while this one is applied.
        self.settled.set(number);
        if let (Err(e), Some(why)) = (synced, why_failed) {
            tracing::error!(error = %e, "journal fdatasync failed; refusing writes until restart");
            poison(&self.poisoned, &why);
            return Err(CommitFailed {
                why: WriteError::Unavailable(why),
                behind: false,
            });
        }
        // Durable before anyone is told: a call that arrives after an early answer
        // then waits for this batch to reach the state (`Visible::wait`). No reader
        // waits for `durable`, so nobody is woken.
        self.progress.send_if_modified(|p| {
            p.durable = number;
            false
        });
        let (early, late) = std::mem::take(waiting)
            .into_iter()
            .partition(Waiting::is_early);
        *waiting = late;
        answer(early, &Ok(()));
        let started = Instant::now();
        let applied = match self.faults.is_some_and(super::Faults::take_apply) {
            true => Err("a failure injected by a test".to_owned()),
            false => super::commit::apply(&self.tree, &state).map_err(|e| e.to_string()),
        };
        let micros = |d: std::time::Duration| d.as_micros() as u64;
        (self.metrics.sync_micros).fetch_add(micros(sync_took), Ordering::Relaxed);
        self.metrics.tell(super::WriterEvent::Sync(sync_took));
        (self.metrics.apply_micros).fetch_add(micros(started.elapsed()), Ordering::Relaxed);
        if let Err(e) = applied {
            let why = format!("applying the state failed: {e}; the request may be recorded: restart the server, then retry with the same request_id");
            tracing::error!(error = %e, "applying a durable batch to the state failed; refusing writes until restart");
            poison(&self.poisoned, &why);
            return Err(CommitFailed {
                why: WriteError::Unavailable(why),
                behind: true,
            });
        }
        Ok(())
    }
}

/// Why a batch that reached the committer was not committed.
struct CommitFailed {
    why: WriteError,
    /// It is durable, and some of it may be acknowledged, but the state lacks it.
    behind: bool,
}

impl Waiting {
    /// RecordReceipts answers with sequences alone, so all of it may go early.
    fn is_early(&self) -> bool {
        match self {
            Waiting::One(_, _, early) => *early,
            Waiting::Many { .. } => true,
        }
    }
}

/// Answers everyone still waiting for a batch. If the batch failed, every one of them
/// is refused (those answered once it was durable are not among them): a retry with
/// the same request id finds whatever did reach the journal.
fn answer(waiting: Vec<Waiting>, result: &Result<(), WriteError>) {
    let refused = |e: &WriteError| Err(e.clone());
    for w in waiting {
        match w {
            Waiting::One(reply, outcome, _) => {
                let answer = match result {
                    Ok(()) => outcome,
                    Err(why) => refused(why),
                };
                // A client that went away no longer needs its answer.
                let _ = reply.send(answer);
            }
            Waiting::Many {
                shared,
                from,
                to,
                last,
            } => {
                let mut outcomes = lock(&shared);
                if let Err(why) = result {
                    for r in &mut outcomes.results[from..to] {
                        *r = refused(why);
                    }
                }
                if last {
                    let results = std::mem::take(&mut outcomes.results);
                    if let Some(reply) = outcomes.reply.take() {
                        let _ = reply.send(results);
                    }
                }
            }
        }
    }
}
