//! Storage: the journal file (the truth), the state derived from it (`kv`: sled, or
//! fjall), the single writer with group commit, and the replay that brings the state up
//! to the journal.
//!
//! Data directory layout:
//! - `journal.log`: the append-only journal, fdatasync'ed once per batch;
//! - `state/` (sled, the default) or `state-fjall/` (fjall): balances, indexes and
//!   idempotency records; never flushed on the write path, because whatever it loses
//!   in a crash is replayed from the journal at the next start;
//! - `LOCK`: held exclusively while a server runs on the directory.

pub mod backup;
mod commit;
pub mod journal;
pub mod keys;
pub mod kv;
pub mod reads;
pub mod snapshot;
pub mod state;
mod undo;
pub mod visible;
pub mod writer;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fs2::FileExt;
use tokio::sync::{mpsc, oneshot};

use crate::ledger::Request;

pub use kv::Engine;
pub use snapshot::FactsReader;
pub use state::SledState;
pub use visible::{Behind, Visible};
pub use writer::{Fresh, Reply, WriteError, Written};

use state::Overlay;
use writer::{Message, Writer};

/// Requests waiting for the writer; beyond this, callers wait (backpressure).
pub const WRITE_QUEUE_DEPTH: usize = 8192;
/// Free space the writer keeps on the data directory's disk by default. Below it, writes
/// are refused (RESOURCE_EXHAUSTED) before anything is written, so that the state's
/// engine, which cannot recover from running out of space without a restart (sled), or
/// stops accepting writes until one (fjall), never does. For fjall it is a margin, not
/// a guarantee: its compactions need temporary space that grows with the state.
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 64 << 20;

/// Choices an operator makes about the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub disk_reserve_bytes: u64,
    /// Which approver level a disbursement's amount needs (`ledger::decide` checks it).
    pub approval_tiers: crate::domain::ApprovalTiers,
    /// The engine of the derived state; `None`: the one the directory has, or sled for
    /// a new directory.
    pub engine: Option<Engine>,
    /// Failures to inject into the commit, for tests; `None` in a server.
    #[doc(hidden)]
    pub faults: Option<&'static Faults>,
}

/// Failures a test arms to see what the writer does when the disk fails it after the
/// journal append: each happens once, to the next batch that reaches it. They stand
/// for what no test can make a real disk do on demand: an `fdatasync` that reports an
/// error, and a state engine that refuses a write.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Faults {
    sync: std::sync::atomic::AtomicBool,
    apply: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// The next batch's `fdatasync` fails (after its frames were written).
    pub fn fail_next_sync(&self) {
        self.sync.store(true, Ordering::SeqCst);
    }

    /// The next batch's apply to the state fails (after its `fdatasync` succeeded),
    /// before any of its keys is written.
    pub fn fail_next_apply(&self) {
        self.apply.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_sync(&self) -> bool {
        self.sync.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn take_apply(&self) -> bool {
        self.apply.swap(false, Ordering::SeqCst)
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            disk_reserve_bytes: DISK_RESERVE_BYTES_DEFAULT,
            approval_tiers: crate::domain::ApprovalTiers::default(),
            engine: None,
            faults: None,
        }
    }
}

/// How long closing waits for the last readers to let go of the store.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long closing waits for sled to write its page-table snapshot ([`snapshot_sled`]):
/// about 0.55 s a million receipts recorded since the last open on the benchmark
/// machine (5.5 s after 10 M).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);
/// Entries replayed into the state per batch at start-up.
const REPLAY_CHUNK_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("state store: {0}")]
    State(#[from] kv::Error),
    #[error("the state does not follow from the journal: {0}")]
    Replay(String),
}

/// Counters of the writer, for logs and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
    pub entries: AtomicU64,
    pub commit_micros: AtomicU64,
    /// Parts of `commit_micros`: the journal's write + fdatasync, and the state's apply.
    pub sync_micros: AtomicU64,
    pub apply_micros: AtomicU64,
    /// Told of every batch and every sync, for histograms the counters above cannot
    /// give; set once by whoever serves metrics. The store knows nothing of them.
    pub hook: std::sync::OnceLock<WriterHook>,
}

/// What the writer reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum WriterEvent {
    /// A batch was answered: how many requests and entries, and how long from its
    /// first request's arrival to its answer.
    Batch {
        requests: usize,
        entries: usize,
        commit: Duration,
    },
    /// One journal write + fdatasync.
    Sync(Duration),
}

pub struct WriterHook(pub Box<dyn Fn(WriterEvent) + Send + Sync>);

impl std::fmt::Debug for WriterHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterHook")
    }
}

impl WriterStats {
    fn record(&self, requests: usize, entries: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.entries.fetch_add(entries as u64, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.tell(WriterEvent::Batch {
            requests,
            entries,
            commit: took,
        });
    }

    pub(crate) fn tell(&self, event: WriterEvent) {
        if let Some(hook) = self.hook.get() {
            (hook.0)(event);
        }
    }
}

/// What request handlers hold: a way to submit writes and to read.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Message>,
    /// The last sequence that is durable and readable; changes wake the change feed.
    /// Closed when the writer stops.
    pub committed: tokio::sync::watch::Receiver<u64>,
    pub reads: SledState,
    /// Every call that reads waits on it first (see [`StoreHandle::write_durable`]).
    pub visible: Visible,
    pub stats: Arc<WriterStats>,
    /// Never sent on: dropped with the handle, so the store sees when all are gone.
    _alive: mpsc::Sender<()>,
}

impl StoreHandle {
    /// Submits a request and waits until it is durable and in the state (or refused),
    /// so that the caller may read what it wrote.
    pub async fn write(&self, request: Request) -> Reply {
        self.submit(request, false).await
    }

    /// Like [`StoreHandle::write`], but a request that makes a new entry is answered
    /// as soon as it is durable, before the state has it: for a caller that answers
    /// from [`Written::fresh`] alone and reads nothing. Later calls see the entry
    /// because every call that reads waits on [`StoreHandle::visible`] first.
    pub async fn write_durable(&self, request: Request) -> Reply {
        self.submit(request, true).await
    }

    async fn submit(&self, request: Request, early: bool) -> Reply {
        let (reply, answer) = oneshot::channel();
        let gone = || WriteError::Unavailable("the server is shutting down".into());
        self.tx
            .send(Message::Write {
                request,
                reply,
                early,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Submits independent requests together and waits until all are durable and in
    /// the state (or refused), so that the caller may read them; the outcomes come
    /// back in order, one a request.
    pub async fn write_many(&self, requests: Vec<Request>) -> Result<Vec<Reply>, WriteError> {
        let replies = self.write_many_durable(requests).await?;
        // Durable outcomes; a failed apply after them leaves them to a restart's replay.
        (self.visible.wait().await)
            .map_err(|behind| WriteError::Unavailable(behind.to_string()))?;
        Ok(replies)
    }

    /// Like [`StoreHandle::write_many`], but answered as soon as every request is
    /// durable, before the state has them: for RecordReceipts, which answers with
    /// sequences and reads nothing.
    pub async fn write_many_durable(
        &self,
        requests: Vec<Request>,
    ) -> Result<Vec<Reply>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let gone = || WriteError::Unavailable("the server is shutting down".into());
        self.tx
            .send(Message::WriteMany { requests, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

/// An open store: the writer thread runs until [`Store::close`].
pub struct Store {
    handle: StoreHandle,
    writer: Option<JoinHandle<()>>,
    /// Yields `None` once every [`StoreHandle`] is gone (each holds a sender), so that
    /// closing knows when nothing reads the state any more.
    handles_gone: mpsc::Receiver<()>,
    held: Held,
    /// Entries the open replayed into the state.
    replayed: u64,
    /// Set when the writer stopped on a fault (the state may lack acknowledged batches).
    poisoned: Arc<std::sync::OnceLock<String>>,
}

/// What closing the state needs, by engine.
enum Held {
    Sled {
        db: sled::Db,
        /// Where sled keeps its files, to know when its background threads have let go.
        state_dir: PathBuf,
        /// LOCK, held for the store's life; the OS releases it if the process dies.
        _lock: Arc<File>,
    },
    /// fjall's tree holds LOCK itself, until its last handle (and its workers) are gone.
    Fjall(kv::Tree),
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(data_dir, StoreOptions::default())
    }

    pub fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let lock = lock(data_dir)?;
        Self::open_locked(data_dir, lock, options)
    }

    /// Rebuilds every balance and index from the journal alone: the old state is moved
    /// aside (to `state.before-rebuild-<unix seconds>`, or `state-fjall.before-…`;
    /// never deleted) and the whole journal is replayed into a new one. Returns the
    /// store, open.
    pub fn rebuild(data_dir: &Path) -> Result<Store, StoreError> {
        Self::rebuild_with(data_dir, StoreOptions::default())
    }

    /// [`Store::rebuild`] into the engine `options` name (by default the one the
    /// directory has, or sled): this is also how a state moves to the other engine.
    /// Every state present, of either engine, is moved aside.
    pub fn rebuild_with(data_dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let lock = lock(data_dir)?;
        // Named, any engine; else the directory's own, refusing to guess between two.
        let engine = match options.engine {
            Some(engine) => engine,
            None => choose_engine(data_dir, None)?,
        };
        let journal_path = data_dir.join("journal.log");
        if !journal_path.exists() {
            return Err(StoreError::DataDir {
                path: data_dir.to_owned(),
                reason: "it has no journal.log to rebuild the state from. Nothing was changed"
                    .into(),
            });
        }
        // The old states are moved aside only once the journal is known to hold every
        // entry they were built from: a rebuild from a journal that lost some would serve
        // a ledger without acknowledged entries, and hand out their sequences again.
        let mut floor = 0;
        for present in states_present(data_dir) {
            floor = floor.max(claimed_end(data_dir, present)?.unwrap_or(0));
        }
        check_frames_below(&journal_path, floor)?;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for present in states_present(data_dir) {
            let state = data_dir.join(present.dir_name());
            let aside = data_dir.join(format!("{}.before-rebuild-{secs}", present.dir_name()));
            fs::rename(&state, &aside).map_err(|e| StoreError::DataDir {
                path: data_dir.to_owned(),
                reason: format!("cannot move the old state aside: {e}"),
            })?;
            tracing::info!(aside = %aside.display(), "moved the old state aside");
        }
        let options = StoreOptions {
            engine: Some(engine),
            ..options
        };
        Self::open_locked(data_dir, lock, options)
    }

    fn open_locked(
        data_dir: &Path,
        lock: File,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let engine = choose_engine(data_dir, options.engine)?;
        let state_dir = data_dir.join(engine.dir_name());
        tracing::info!(engine = %engine, state = %state_dir.display(), "opening the state");
        match engine {
            Engine::Sled => {
                if state_dir.join("db").exists() {
                    // This process holds LOCK, so no other server uses the directory; a
                    // sled lock still held is that of a handle of this process closing
                    // (sled's I/O threads are shared by the process and may be busy
                    // with other work).
                    if let Err(e) = wait_until_sled_lets_go(&state_dir, CLOSE_WAIT) {
                        tracing::warn!(error = %e, "sled's lock is still held; opening anyway");
                    }
                }
                let db = kv::Tree::open_sled_db(&state_dir).map_err(|e| StoreError::DataDir {
                    path: data_dir.to_owned(),
                    reason: format!(
                        "its state cannot be opened ({e}); the state is derived from the journal: run `case-escrow rebuild --data-dir {}` to rebuild it (the old state is moved aside, not deleted)",
                        data_dir.display()
                    ),
                })?;
                // LOCK is let go only after sled, on every path below.
                let lock = Arc::new(lock);
                let started = kv::Tree::sled(&db)
                    .map_err(StoreError::from)
                    .and_then(|tree| {
                        let held = Held::Sled {
                            db: db.clone(),
                            state_dir: state_dir.clone(),
                            _lock: lock.clone(),
                        };
                        Self::start(data_dir, tree, options, held)
                    });
                match started {
                    Ok(store) => Ok(store),
                    Err(e) => {
                        // A refused state (another format, a failed replay) must not
                        // leave sled holding the directory: the operator's next step, or
                        // a test's, is to open it again at once, say with `rebuild`.
                        if let Err(wait) = release_sled(db, &state_dir, CLOSE_WAIT) {
                            tracing::warn!(error = %wait, "sled did not release its files in time");
                        }
                        drop(lock);
                        Err(e)
                    }
                }
            }
            Engine::Fjall => {
                // The state is derived: whatever keeps it from opening (a table damaged
                // by a power loss, say), a rebuild from the journal gets past.
                let tree = kv::Tree::open_fjall(&state_dir, Some(Arc::new(lock))).map_err(|e| {
                    StoreError::DataDir {
                        path: data_dir.to_owned(),
                        reason: format!(
                            "its state cannot be opened ({e}); the state is derived from the journal: run `case-escrow rebuild --data-dir {}` to rebuild it (the old state is moved aside, not deleted)",
                            data_dir.display()
                        ),
                    }
                })?;
                Self::start(data_dir, tree.clone(), options, Held::Fjall(tree))
            }
        }
    }

    fn start(
        data_dir: &Path,
        tree: kv::Tree,
        options: StoreOptions,
        held: Held,
    ) -> Result<Store, StoreError> {
        let dir_err = |reason: String| StoreError::DataDir {
            path: data_dir.to_owned(),
            reason,
        };
        if data_dir.join(backup::RESTORING).exists() {
            return Err(dir_err(format!(
                "a restore into it did not finish ({} is there): remove the directory and restore again",
                backup::RESTORING
            )));
        }
        check_state_format(data_dir, &tree)?;
        let journal_path = data_dir.join("journal.log");
        // Opening creates a missing journal; beside a state built from one, that would
        // stand an empty journal in for the lost one.
        if !journal_path.exists() && tree.get(keys::JOURNAL_END)?.is_some() {
            return Err(dir_err(
                "its state was built from a journal.log that is not there. Nothing was changed. Put back the journal.log (or restore a backup into a new directory); do not run `rebuild`, which has nothing to rebuild from".into(),
            ));
        }
        let (mut journal, reader) = journal::open(&journal_path)?;
        // A batch is applied to the state only once the journal holds it durably. A
        // journal shorter than the batch a crash cut short has lost synced entries,
        // some maybe acknowledged: refused before anything changes, so that every
        // start refuses until the journal that holds them is back.
        if let kv::Tree::Sled(sled) = &tree {
            let pending = undo::unfinished_end(sled).map_err(StoreError::Replay)?;
            if let Some(end) = pending.filter(|end| *end > journal.end()) {
                return Err(dir_err(format!(
                    "its state holds part of a batch that reaches byte {end} of journal.log, which has only {} bytes: entries that were made durable, and maybe acknowledged, are missing from the journal (a disk that lost synced writes, or an older copy of journal.log). Nothing was changed. Keep the directory as it is and do not run `rebuild`, which would drop those entries; put back the journal.log that holds them",
                    journal.end()
                )));
            }
            // That batch was synced before its apply began: its frames read back invalid
            // are damage, and the replay would cut them off as a torn tail.
            if let Some(end) = pending {
                let from = match tree.get(keys::JOURNAL_END)? {
                    Some(bytes) => state::decode::<u64>(&bytes)
                        .map_err(|f| StoreError::Replay(format!("JOURNAL_END: {f}")))?,
                    None => 0,
                };
                if let Some((offset, reason)) = first_invalid_frame(&journal_path, from, end)? {
                    return Err(dir_err(format!(
                        "its frame at byte {offset} of journal.log is invalid ({reason}), in the batch that was synced, and maybe acknowledged, before a crash cut its apply short (it reaches byte {end}): the disk lost synced writes. Nothing was changed. Keep the directory as it is and do not run `rebuild`, which would drop those entries; put back a journal.log that holds them"
                    )));
                }
            }
        }
        // The replay applies what the journal holds, synced or not (after a process
        // crash the tail may be only in the page cache): made durable first, so that
        // the state is never ahead of the journal on disk.
        journal.sync()?;
        let unfinished = match &tree {
            kv::Tree::Sled(sled) => undo::undo_unfinished(sled).map_err(StoreError::Replay)?,
            // A fjall write batch is atomic by itself: there is nothing to undo.
            kv::Tree::Fjall(_) => None,
        };
        if let Some(end) = unfinished {
            tracing::warn!(
                journal_end = end,
                "the last batch was only partly applied to the state when the server stopped; undid it, the replay applies it again"
            );
        }
        let state = SledState {
            tree,
            journal: Arc::new(reader),
        };
        let (replayed, chain_head) = replay(&mut journal, &state)?;
        if replayed > 0 {
            tracing::info!(entries = replayed, "replayed the journal into the state");
            state.tree.flush()?;
        }
        let stats = Arc::new(WriterStats::default());
        let last = state
            .last_sequence()
            .map_err(|f| StoreError::Replay(f.to_string()))?;
        let (committed, committed_rx) = tokio::sync::watch::channel(last);
        let (progress, progress_rx) = tokio::sync::watch::channel(visible::Progress::default());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let poisoned: Arc<std::sync::OnceLock<String>> = Default::default();
        let writer = Writer {
            journal,
            state: state.clone(),
            poisoned: poisoned.clone(),
            metrics: stats.clone(),
            chain_head,
            committed,
            progress,
            data_dir: data_dir.to_owned(),
            disk_reserve_bytes: options.disk_reserve_bytes,
            approval_tiers: options.approval_tiers,
            space_low: false,
            faults: options.faults,
        };
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| dir_err(format!("cannot start the writer thread: {e}")))?;
        let (alive, handles_gone) = mpsc::channel(1);
        Ok(Store {
            handle: StoreHandle {
                tx,
                committed: committed_rx,
                reads: state,
                visible: Visible::new(progress_rx),
                stats,
                _alive: alive,
            },
            writer: Some(thread),
            handles_gone,
            held,
            replayed,
            poisoned,
        })
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Lets the writer finish what is queued, stops it, and flushes the state. Writes that
    /// arrive afterwards are refused as UNAVAILABLE.
    ///
    /// It then waits, up to [`CLOSE_WAIT`], until no handle is left (readers finish, the
    /// change feed notices the writer is gone), so that when it returns the state's
    /// files are closed and the directory can be opened again at once. A sled state
    /// written to since it opened is first opened once more, for its snapshot
    /// ([`snapshot_sled`]).
    pub async fn close(self) {
        let Store {
            handle,
            writer,
            mut handles_gone,
            held,
            replayed,
            poisoned,
        } = self;
        let stats = handle.stats.clone();
        // The writer may be gone already; then there is nothing to stop.
        let _ = handle.tx.send(Message::Stop).await;
        drop(handle);
        let mut writer_ended_well = true;
        if let Some(thread) = writer {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the writer thread ended abnormally");
                writer_ended_well = false;
            }
        }
        // Read once the writer is done: what it wrote last counts too. After a fault the
        // state is left as it is for the next start, which undoes and replays.
        let take_snapshot = writer_ended_well
            && poisoned.get().is_none()
            && (replayed > 0 || stats.entries.load(Ordering::Relaxed) > 0);
        if tokio::time::timeout(CLOSE_WAIT, handles_gone.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                wait_ms = CLOSE_WAIT.as_millis() as u64,
                "readers still hold the store; closing without them"
            );
        }
        // When this returns, the directory can be opened again at once, by this
        // process or another (unless readers still hold the state).
        let closed = tokio::task::spawn_blocking(move || -> Result<(), String> {
            match held {
                Held::Sled { db, state_dir, .. } => {
                    let flushed = db.flush();
                    if let Err(e) = &flushed {
                        tracing::warn!(error = %e, "final flush of the state failed; it is rebuilt from the journal at start");
                    }
                    release_sled(db, &state_dir, CLOSE_WAIT).map_err(|e| e.to_string())?;
                    // Unwritten, the state's log holds nothing the last snapshot lacks,
                    // and a snapshot would cost an open for nothing; on a disk that
                    // failed a flush, it would write more to it.
                    if take_snapshot && flushed.is_ok() {
                        if let Err(e) = snapshot_sled(&state_dir) {
                            tracing::warn!(error = %e, "sled's snapshot was not written at the stop; the next start reads sled's log instead");
                        }
                    }
                    Ok(())
                }
                Held::Fjall(tree) => {
                    if let Err(e) = tree.flush() {
                        tracing::warn!(error = %e, "final flush of the state failed; it is rebuilt from the journal at start");
                    }
                    // The last handle on the engine stops its background threads and
                    // waits for them (fjall's drop), and only then lets LOCK go.
                    drop(tree);
                    Ok(())
                }
            }
        });
        match tokio::time::timeout(2 * CLOSE_WAIT + SNAPSHOT_WAIT, closed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "the state did not let go of its files in time")
            }
            _ => tracing::warn!("the state's engine did not close in time"),
        }
    }
}

/// Drops a sled handle and waits, up to `wait`, until sled has let go of its files.
///
/// sled finishes background writes on threads of its own and closes its files (and
/// releases its lock on `<state_dir>/db`) only then, a moment after the last handle is
/// dropped. Whoever opens the directory next in that moment is refused with
/// `WouldBlock`. Blocks the calling thread.
pub fn release_sled(db: sled::Db, state_dir: &Path, wait: Duration) -> std::io::Result<()> {
    drop(db);
    wait_until_sled_lets_go(state_dir, wait)
}

/// Opens and closes the sled state once more, which is when sled writes its page-table
/// snapshot.
///
/// sled 0.34.7 writes that snapshot only while it opens (its `snapshot_after_ops` has
/// done nothing since 0.31), so an open reads all of sled's log written since the
/// previous open: 8-9 s after a 10 M-receipt run, against the 2 s a start may take.
/// Paying it here moves it from the next start to the stop (5.5 s there instead of
/// 8 s, presumably because the page cache is still warm; not measured), which before
/// a reboot or a maintenance window nobody waits for. A stop cut short (a crash, or
/// SIGKILL during this) only leaves that cost to the next start: sled writes the
/// snapshot to a `.generating` file, syncs it and renames it, and an unfinished one
/// is removed before sled opens (`kv::remove_unfinished_sled_snapshots`).
fn snapshot_sled(state_dir: &Path) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let db = kv::Tree::open_sled_db(state_dir)?;
    release_sled(db, state_dir, CLOSE_WAIT).map_err(|e| StoreError::DataDir {
        path: state_dir.to_owned(),
        reason: format!("sled did not let go of its files after writing its snapshot: {e}"),
    })?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "wrote sled's page-table snapshot, so that the next start need not read its whole log"
    );
    Ok(())
}

/// Waits, up to `wait`, until nothing holds sled's lock on `<state_dir>/db`.
fn wait_until_sled_lets_go(state_dir: &Path, wait: Duration) -> std::io::Result<()> {
    let lock_path = state_dir.join("db");
    let (tx, rx) = std::sync::mpsc::channel();
    // A blocking lock on a thread of its own rather than polling: it returns the
    // moment sled lets go, and the thread ends then too (or when the process does).
    std::thread::Builder::new()
        .name("sled-release".into())
        .spawn(move || {
            // Closing the file at the end of this closure releases the lock again.
            let _ = tx.send(File::open(lock_path).and_then(|f| f.lock_exclusive()));
        })?;
    match rx.recv_timeout(wait) {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("sled still holds {} after {wait:?}", state_dir.display()),
        )),
    }
}

/// The engines whose state directory is in `data_dir`.
fn states_present(data_dir: &Path) -> Vec<Engine> {
    (Engine::ALL.into_iter())
        .filter(|e| data_dir.join(e.dir_name()).exists())
        .collect()
}

/// The engine to open `data_dir`'s state with: the one asked for, if the directory
/// has none or has that one; else the directory's own.
fn choose_engine(data_dir: &Path, wanted: Option<Engine>) -> Result<Engine, StoreError> {
    let present = states_present(data_dir);
    let refuse = |reason: String| StoreError::DataDir {
        path: data_dir.to_owned(),
        reason,
    };
    match (wanted, present.as_slice()) {
        (Some(wanted), []) => Ok(wanted),
        (Some(wanted), present) if present.contains(&wanted) => Ok(wanted),
        (None, []) => Ok(Engine::default()),
        (None, [one]) => Ok(*one),
        (Some(wanted), [other, ..]) => Err(refuse(format!(
            "its state is kept by {other} ({}/), not {wanted}: start it with state engine {other} or auto (--state-engine, CASE_ESCROW_STATE_ENGINE or server.state_engine), or move it with `case-escrow rebuild --state-engine {wanted} --data-dir {}` (the old state is moved aside, not deleted)",
            other.dir_name(),
            data_dir.display()
        ))),
        (None, _) => Err(refuse(format!(
            "it holds a state of each engine ({}): name the one to use (--state-engine, CASE_ESCROW_STATE_ENGINE or server.state_engine), or move the other aside",
            (present.iter())
                .map(|e| format!("{}/ for {e}", e.dir_name()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Creates the data directory if needed and takes its lock: one server per directory.
pub(crate) fn lock(data_dir: &Path) -> Result<File, StoreError> {
    let dir_err = |reason: String| StoreError::DataDir {
        path: data_dir.to_owned(),
        reason,
    };
    let created = !data_dir.exists();
    // Every party, account and amount is in it: readable by the service's user alone
    // (a directory the operator made keeps the mode they gave it).
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
        .create(data_dir)
        .map_err(|e| dir_err(e.to_string()))?;
    // A directory just created exists after a power loss only once its parent's entry
    // for it is durable (those above it were made by someone else, most likely long
    // ago).
    if created {
        let parent = (data_dir.parent())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| dir_err(format!("cannot sync {}: {e}", parent.display())))?;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("LOCK"))
        .map_err(|e| dir_err(e.to_string()))?;
    lock.try_lock_exclusive().map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            dir_err("another case-escrow process is using it (LOCK is held)".into())
        } else {
            dir_err(format!("cannot lock LOCK: {e}"))
        }
    })?;
    Ok(lock)
}

/// How far into journal.log the state of `engine` in `data_dir` says it was built,
/// checked against the journal: refused if the journal is shorter or its entry there is
/// another. `None`: the state cannot be read (which may be why it is being rebuilt).
fn claimed_end(data_dir: &Path, engine: Engine) -> Result<Option<u64>, StoreError> {
    let state_dir = data_dir.join(engine.dir_name());
    let journal_path = data_dir.join("journal.log");
    let refuse = |reason: String| {
        StoreError::DataDir {
        path: data_dir.to_owned(),
        reason: format!("{reason}. Nothing was changed. A rebuild from this journal would drop entries that were made durable, and maybe acknowledged: put back the journal.log that holds them"),
    }
    };
    let reader = Arc::new(journal::open(&journal_path)?.1);
    let journal_len = fs::metadata(&journal_path)
        .map_err(|e| journal::JournalError::Io {
            path: journal_path.clone(),
            source: e,
        })?
        .len();
    // What the state says: the end of its last applied batch (or of a batch a crash cut
    // short, which the journal held durably), and, if this build can read it, its last
    // entry and where that entry lies.
    type Claimed = (u64, Option<(u64, journal::Location)>);
    let read = |tree: kv::Tree| -> Result<Claimed, String> {
        let unfinished = match &tree {
            kv::Tree::Sled(sled) => undo::unfinished_end(sled)?,
            kv::Tree::Fjall(_) => None,
        };
        let state = SledState {
            tree,
            journal: reader.clone(),
        };
        let end = state.journal_end().map_err(|f| f.to_string())?;
        // Another format's records may not decode here; its end still holds.
        let last = (state.last_sequence().ok())
            .and_then(|last| Some((last, state.entry_location(last).ok()??)));
        Ok((end.max(unfinished.unwrap_or(0)), last))
    };
    // A damaged state may make the engine panic rather than fail (sled 0.34 does on some
    // damage): that is a state that cannot be read, which is what a rebuild is for.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match engine {
        Engine::Sled => {
            // This process holds LOCK: a sled lock still held is a handle of ours closing.
            if let Err(e) = wait_until_sled_lets_go(&state_dir, CLOSE_WAIT) {
                tracing::warn!(error = %e, "sled's lock is still held; opening anyway");
            }
            match kv::Tree::open_sled_db(&state_dir) {
                Ok(db) => {
                    let claimed = kv::Tree::sled(&db)
                        .map_err(|e| e.to_string())
                        .and_then(read);
                    if let Err(e) = release_sled(db, &state_dir, CLOSE_WAIT) {
                        tracing::warn!(error = %e, "sled did not release the old state in time");
                    }
                    claimed
                }
                Err(e) => Err(e.to_string()),
            }
        }
        // LOCK is held by the caller; fjall's drop waits for its workers.
        Engine::Fjall => kv::Tree::open_fjall(&state_dir, None)
            .map_err(|e| e.to_string())
            .and_then(read),
    }));
    let (end, last) = match opened {
        Ok(Ok(claimed)) => claimed,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e,
                _ => "its engine panicked opening it".to_owned(),
            };
            tracing::warn!(state = %state_dir.display(), error = %why, "the old state cannot be read; the rebuild cuts an invalid tail of the journal as a start does");
            return Ok(None);
        }
    };
    if journal_len < end {
        return Err(refuse(format!(
            "its state {} was built from {end} bytes of journal.log, which has only {journal_len}",
            engine.dir_name()
        )));
    }
    if let Some((last, loc)) = last {
        let (frame, _) = (reader.read_raw(loc))
            .map_err(|e| refuse(format!("entry {last}, the last of its state: {e}")))?;
        if frame.entry.sequence != last
            || frame.entry_hash != loc.entry_hash
            || frame.chain != loc.chain
        {
            return Err(refuse(format!(
                "entry {last} in journal.log is not the entry its state {} was built from (its hash differs): the journal was replaced or altered",
                engine.dir_name()
            )));
        }
    }
    Ok(Some(end))
}

/// The first invalid frame among those of the journal from `from` (a frame boundary)
/// to `to`, with why it is invalid.
fn first_invalid_frame(
    journal_path: &Path,
    from: u64,
    to: u64,
) -> Result<Option<(u64, String)>, StoreError> {
    match journal::visit_range(journal_path, from, to, |_, _| Ok(())) {
        Ok(()) => Ok(None),
        Err(journal::JournalError::Corrupt { offset, reason, .. }) => Ok(Some((offset, reason))),
        Err(e) => Err(e.into()),
    }
}

/// Before a rebuild: below `floor`, where the old state says the journal reached, an
/// invalid frame is damage, not a batch a crash cut short, and the replay must not cut
/// it off with every entry after it.
fn check_frames_below(journal_path: &Path, floor: u64) -> Result<(), StoreError> {
    let Some((offset, reason)) = first_invalid_frame(journal_path, 0, floor)? else {
        return Ok(());
    };
    Err(StoreError::DataDir {
        path: journal_path.to_owned(),
        reason: format!("its frame at byte {offset} is invalid ({reason}), below byte {floor} that the old state was built from: damage that a rebuild would cut off with every entry after it. Nothing was changed; put back a journal.log that holds those entries"),
    })
}

/// Brings sled up to the end of the journal, from where sled last stood.
/// Returns how many entries were replayed and the chain value at the end.
/// Refuses a state whose records this build would misread; stamps a new one. A
/// non-empty state without a stamp was written before stamps existed, in format 1.
fn check_state_format(data_dir: &Path, tree: &kv::Tree) -> Result<(), StoreError> {
    let found = match tree.get(keys::STATE_FORMAT_KEY)? {
        Some(v) => {
            let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| StoreError::DataDir {
                path: data_dir.to_owned(),
                reason: "the state's format stamp is damaged; run `case-escrow rebuild` to rebuild the state from the journal".into(),
            })?;
            u32::from_be_bytes(bytes)
        }
        // A new, empty state takes this build's format.
        None if tree.is_empty()? => {
            tree.insert(keys::STATE_FORMAT_KEY, keys::STATE_FORMAT.to_be_bytes())?;
            return Ok(());
        }
        // Written before states were stamped: the layout of format 1.
        None => 1,
    };
    if found != keys::STATE_FORMAT {
        return Err(StoreError::DataDir {
            path: data_dir.to_owned(),
            reason: format!(
                "its state was built in format {found}, this build reads format {}; run `case-escrow rebuild --data-dir {}` to rebuild it from the journal (the old state is moved aside, not deleted)",
                keys::STATE_FORMAT,
                data_dir.display()
            ),
        });
    }
    Ok(())
}

pub(crate) fn replay(
    journal: &mut journal::JournalWriter,
    state: &SledState,
) -> Result<(u64, journal::Hash), StoreError> {
    let replay_err = |f: crate::ledger::Fault| StoreError::Replay(f.to_string());
    let from = state.journal_end().map_err(replay_err)?;
    // The scan below may cut a torn tail off the journal, so it must start exactly at
    // the end of the last entry the state holds; anything else means a damaged state,
    // and cutting there could destroy acknowledged entries.
    let last = state.last_sequence().map_err(replay_err)?;
    let mut head = journal::GENESIS;
    if last > 0 {
        let loc = state.entry_location(last).map_err(replay_err)?;
        if loc.map(|l| l.offset + u64::from(l.len)) != Some(from) {
            return Err(StoreError::Replay(format!(
                "the state says it reaches byte {from} of the journal, which is not where its last entry {last} ends; the state is damaged and must be rebuilt from the journal"
            )));
        }
        // The journal must still hold that entry, unchanged: a journal swapped for
        // another, or altered where the state meets it, is refused here. Checking the
        // whole chain would make start-up grow with the ledger; `case-escrow verify`
        // and Journal.VerifyJournal do that.
        if let Some(loc) = loc {
            let (frame, _) = state
                .journal
                .read_raw(loc)
                .map_err(|e| StoreError::Replay(format!("the state's last entry {last}: {e}")))?;
            if frame.entry.sequence != last
                || frame.entry_hash != loc.entry_hash
                || frame.chain != loc.chain
            {
                return Err(StoreError::Replay(format!(
                    "entry {last} in the journal is not the entry the state was built from (its hash differs); the journal was altered or replaced: run `case-escrow verify`"
                )));
            }
        }
        head = loc.map_or(head, |l| l.chain);
    } else if from != 0 {
        return Err(StoreError::Replay(format!(
            "the state holds no entry but claims {from} bytes of journal; it must be rebuilt from the journal"
        )));
    }
    let mut overlay = Overlay::new(state, from, head);
    let mut count = 0u64;
    journal::scan(journal, from, |frame, offset, len| {
        overlay
            .apply_recorded(&frame, offset, len)
            .map_err(|f| f.to_string())?;
        count += 1;
        if overlay.len() >= REPLAY_CHUNK_ENTRIES {
            let next = Overlay::new(state, offset + u64::from(len), frame.chain);
            let (_, batch) = std::mem::replace(&mut overlay, next)
                .into_batch()
                .map_err(|f| f.to_string())?;
            commit::apply(&state.tree, &batch).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let head = overlay.chain_head();
    let (_, batch) = overlay
        .into_batch()
        .map_err(|f| StoreError::Replay(f.to_string()))?;
    commit::apply(&state.tree, &batch)?;
    Ok((count, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sled closes its files a moment after its last handle is dropped; once
    /// `release_sled` returns, the directory opens again at once, every time.
    #[test]
    fn a_released_state_opens_again_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state_dir = dir.path().join("state");
        for i in 0u32..50 {
            let db = sled::open(&state_dir).unwrap_or_else(|e| panic!("open {i}: {e}"));
            db.insert(i.to_be_bytes(), &[0u8; 4096][..])
                .unwrap_or_else(|e| panic!("{e}"));
            db.flush().unwrap_or_else(|e| panic!("{e}"));
            release_sled(db, &state_dir, CLOSE_WAIT).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// While any handle is left, sled keeps its lock: the wait ends in an error, not
    /// in a directory that looks free.
    #[test]
    fn a_state_still_held_is_not_released() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state_dir = dir.path().join("state");
        let db = sled::open(&state_dir).unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree("ledger").unwrap_or_else(|e| panic!("{e}"));
        let waited = release_sled(db, &state_dir, Duration::from_millis(200));
        assert!(
            matches!(&waited, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{waited:?}"
        );
        assert!(sled::open(&state_dir).is_err(), "sled still holds it");
        drop(tree);
    }

    /// sled's page-table snapshots in `state_dir`, by name (`snap.<log position>`).
    fn sled_snapshots(state_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(state_dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("snap."))
            .collect();
        names.sort();
        names
    }

    /// A closed sled state carries a snapshot of all it holds, so the next open reads
    /// none of sled's log before it: opening it again finds nothing newer to take.
    #[tokio::test]
    async fn a_closed_sled_state_has_its_snapshot_taken() {
        use undo::tests::{ledger, receipt};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = dir.path();
        let state_dir = data.join("state");
        ledger(data).await;
        let store = Store::open(data).unwrap_or_else(|e| panic!("{e}"));
        let handle = store.handle();
        for i in 0..200 {
            assert!(handle.write(receipt(1, 9000 + i)).await.is_ok());
        }
        drop(handle);
        store.close().await;
        let at_close = sled_snapshots(&state_dir);
        assert_eq!(at_close.len(), 1, "{at_close:?}");

        let db = sled::open(&state_dir).unwrap_or_else(|e| panic!("{e}"));
        release_sled(db, &state_dir, CLOSE_WAIT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sled_snapshots(&state_dir), at_close);
    }

    /// A snapshot sled began and did not finish (a stop killed while it wrote one) does
    /// not keep the state from opening: sled would take it for the newest and refuse
    /// it. The state opens on the snapshot before it and the log, whole.
    #[tokio::test]
    async fn an_unfinished_sled_snapshot_does_not_keep_the_state_closed() {
        use undo::tests::{digest, ledger};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = dir.path();
        ledger(data).await;
        let unfinished = data.join("state").join("snap.FFFFFFFFFFFFFFFF.generating");
        fs::write(&unfinished, b"cut short").unwrap_or_else(|e| panic!("{e}"));
        let reopened = digest(data, false).await;
        assert!(!unfinished.exists(), "the unfinished snapshot is removed");
        assert_eq!(reopened, digest(data, true).await);
    }

    fn with(engine: Engine) -> StoreOptions {
        StoreOptions {
            engine: Some(engine),
            ..Default::default()
        }
    }

    fn refusal(opened: Result<Store, StoreError>) -> String {
        match opened {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened"),
        }
    }

    /// The same journal gives the same state in either engine; a directory keeps to
    /// the engine its state is in unless rebuilt into the other, which moves it.
    #[tokio::test]
    async fn either_engine_derives_the_same_state_and_a_rebuild_moves_it() {
        use undo::tests::{digest, ledger, receipt};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = dir.path();
        ledger(data).await;
        let in_sled = digest(data, false).await;

        let message = refusal(Store::open_with(data, with(Engine::Fjall)));
        assert!(message.contains("kept by sled"), "{message}");
        assert!(
            message.contains("rebuild --state-engine fjall"),
            "{message}"
        );

        let store =
            Store::rebuild_with(data, with(Engine::Fjall)).unwrap_or_else(|e| panic!("{e}"));
        let reads = store.handle().reads;
        assert_eq!(reads.engine(), Engine::Fjall);
        assert_eq!(reads.content_digest().ok(), Some(in_sled));
        drop(reads);
        store.close().await;
        assert!(!data.join("state").exists(), "sled's state was moved aside");
        let aside = fs::read_dir(data)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.before-rebuild-")
            })
            .count();
        assert_eq!(aside, 1);

        // Without a choice, the directory's own engine; writes go on there.
        let store = Store::open(data).unwrap_or_else(|e| panic!("{e}"));
        let handle = store.handle();
        assert_eq!(handle.reads.engine(), Engine::Fjall);
        for i in 0..20 {
            assert!(handle.write(receipt(1, 7000 + i)).await.is_ok());
        }
        drop(handle);
        store.close().await;
        let in_fjall = digest(data, false).await;
        assert_ne!(in_fjall, in_sled);

        let store = Store::rebuild_with(data, with(Engine::Sled)).unwrap_or_else(|e| panic!("{e}"));
        let reads = store.handle().reads;
        assert_eq!(reads.engine(), Engine::Sled);
        assert_eq!(reads.content_digest().ok(), Some(in_fjall));
        drop(reads);
        store.close().await;
        assert!(!data.join(Engine::Fjall.dir_name()).exists());

        // Both at once (an operator's copy, say): which one is not guessed.
        fs::create_dir(data.join(Engine::Fjall.dir_name())).unwrap_or_else(|e| panic!("{e}"));
        let message = refusal(Store::open(data));
        assert!(message.contains("a state of each engine"), "{message}");
        assert!(message.contains("--state-engine"), "{message}");
    }
}
