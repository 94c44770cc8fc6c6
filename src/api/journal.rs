//! service Journal: digests, proofs, verification, the change feed and online backup.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;
use crate::ledger::Fault;
use crate::store::journal::{self, GENESIS};
use crate::store::StoreHandle;

use super::auth::{Credentials, Directory};
use super::convert as cv;
use super::pb::{self, journal_server::Journal};
use super::{authz, error};

/// The most entry hashes one proof carries; a client that saved a digest further away
/// asks for a nearer one.
pub const PROOF_HASHES_MAX: u64 = 100_000;
/// Entries a change-feed stream holds ahead of a slow consumer. The stream's reader
/// waits when it is full, so a slow consumer costs this much memory and never slows
/// the writer.
pub const WATCH_BUFFER_ENTRIES: usize = 256;
/// The most entries one VerifyJournal call recomputes; a whole large journal is checked
/// in ranges, or offline with `case-escrow verify`.
pub const VERIFY_ENTRIES_MAX: u64 = 1_000_000;
/// Bytes per backup chunk.
pub const BACKUP_CHUNK_BYTES: usize = 256 << 10;

/// Backups and verifications at once. Each reads the journal on a thread of the
/// blocking pool (a backup for as long as its client takes to read it), and each may
/// read all of it: more at once only share the disk, and unbounded they could take
/// the pool the store's close needs.
pub const JOURNAL_SCANS_MAX: usize = 4;

pub struct JournalService {
    pub store: StoreHandle,
    /// For WatchJournal, which asks again before each entry whether its caller still
    /// authenticates.
    pub directory: Arc<Directory>,
    /// [`JOURNAL_SCANS_MAX`] permits.
    pub scans: Arc<tokio::sync::Semaphore>,
    /// True once the server has begun to stop.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl JournalService {
    fn scan_place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.scans.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{JOURNAL_SCANS_MAX} backups or verifications are reading the journal; retry once one has ended"
            ))
        })
    }
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

fn journal_entry(store: &StoreHandle, sequence: u64) -> Result<pb::JournalEntry, Status> {
    let (frame, bytes) = store
        .reads
        .journal_entry(sequence)?
        .ok_or_else(|| DomainError::not_found(format!("entry {sequence}")))?;
    Ok(pb::JournalEntry {
        entry: Some(cv::entry(&frame.entry, None)),
        canonical_bytes: bytes,
        entry_hash: frame.entry_hash.to_vec(),
        chain_hash: frame.chain.to_vec(),
    })
}

fn chain_at(store: &StoreHandle, sequence: u64) -> Result<journal::Hash, Status> {
    if sequence == 0 {
        return Ok(GENESIS);
    }
    store
        .reads
        .entry_location(sequence)?
        .map(|l| l.chain)
        .ok_or_else(|| error::fault(Fault(format!("entry {sequence} has no location"))))
}

#[tonic::async_trait]
impl Journal for JournalService {
    async fn get_digest(
        &self,
        request: Request<pb::GetDigestRequest>,
    ) -> Result<Response<pb::Digest>, Status> {
        authz::check(&request, &self.store.reads)?;
        let sequence = self.store.reads.last_sequence()?;
        Ok(Response::new(pb::Digest {
            sequence,
            digest: chain_at(&self.store, sequence)?.to_vec(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::EntryProof>, Status> {
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let last = self.store.reads.last_sequence()?;
        if r.sequence == 0 {
            return Err(DomainError::invalid("sequence", "is required").into());
        }
        if r.sequence > last {
            return Err(DomainError::not_found(format!("entry {}", r.sequence)).into());
        }
        let digest_sequence = match r.digest_sequence {
            0 => last,
            d if d < r.sequence => {
                return Err(DomainError::invalid(
                    "digest_sequence",
                    "must not be before sequence: a digest covers only entries before it",
                )
                .into())
            }
            d if d > last => {
                return Err(DomainError::invalid(
                    "digest_sequence",
                    format!("is beyond the last entry {last}"),
                )
                .into())
            }
            d => d,
        };
        if digest_sequence - r.sequence > PROOF_HASHES_MAX {
            return Err(DomainError::rule(format!(
                "the digest is {} entries after the entry; proofs span at most {PROOF_HASHES_MAX}: check against a digest saved nearer to it",
                digest_sequence - r.sequence
            ))
            .into());
        }
        let following = self
            .store
            .reads
            .entry_locations(r.sequence + 1, digest_sequence)?;
        Ok(Response::new(pb::EntryProof {
            entry: Some(journal_entry(&self.store, r.sequence)?),
            previous_chain_hash: chain_at(&self.store, r.sequence - 1)?.to_vec(),
            following_entry_hashes: following
                .iter()
                .map(|(_, l)| l.entry_hash.to_vec())
                .collect(),
            digest: Some(pb::Digest {
                sequence: digest_sequence,
                digest: chain_at(&self.store, digest_sequence)?.to_vec(),
            }),
        }))
    }

    async fn verify_journal(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let last = self.store.reads.last_sequence()?;
        let from = r.from_sequence.max(1);
        let to = if r.to_sequence == 0 {
            last
        } else {
            r.to_sequence
        };
        if to > last {
            return Err(DomainError::invalid(
                "to_sequence",
                format!("is beyond the last entry {last}"),
            )
            .into());
        }
        if from > to {
            return Err(DomainError::invalid("from_sequence", "is after to_sequence").into());
        }
        if to - from >= VERIFY_ENTRIES_MAX {
            return Err(DomainError::invalid(
                "to_sequence",
                format!(
                    "a call verifies at most {VERIFY_ENTRIES_MAX} entries; ask for a shorter range"
                ),
            )
            .into());
        }
        let start = match from - 1 {
            0 => 0,
            before => self
                .store
                .reads
                .entry_location(before)?
                .map(|l| l.offset + u64::from(l.len))
                .ok_or_else(|| error::fault(Fault(format!("entry {before} has no location"))))?,
        };
        let end = (self.store.reads.entry_location(to)?)
            .map(|l| l.offset + u64::from(l.len))
            .ok_or_else(|| error::fault(Fault(format!("entry {to} has no location"))))?;
        let chain_before = chain_at(&self.store, from - 1)?;
        let path = self.store.reads.journal_path().to_owned();
        let place = self.scan_place()?;
        // Reading a range of the journal is file I/O: keep it off the async workers.
        let v = tokio::task::spawn_blocking(move || {
            let v = journal::verify_range(&path, start, from - 1, chain_before, to, end);
            drop(place);
            v
        })
        .await
        .map_err(|e| error::fault(Fault(format!("verification stopped: {e}"))))?
        .map_err(|e| error::fault(Fault(e.to_string())))?;
        // The file must also agree with the index the server answers proofs from.
        let indexed = chain_at(&self.store, v.last_sequence)?;
        let (ok, broken_sequence, reason) = match (&v.broken, indexed == v.digest) {
            (Some((seq, why)), _) => (false, *seq, why.clone()),
            (None, false) => (
                false,
                v.last_sequence,
                "the journal file and the server's index disagree on the chain".to_owned(),
            ),
            (None, true) if v.last_sequence < to => (
                false,
                v.last_sequence + 1,
                "the journal ends before the entry asked for".to_owned(),
            ),
            (None, true) => (true, 0, String::new()),
        };
        if !ok {
            tracing::error!(broken_sequence, %reason, "journal verification failed");
        }
        Ok(Response::new(pb::VerifyJournalResponse {
            ok,
            checked: v.checked,
            broken_sequence,
            reason,
            digest: Some(pb::Digest {
                sequence: v.last_sequence,
                digest: v.digest.to_vec(),
            }),
        }))
    }

    type WatchJournalStream = Stream<pb::JournalEntry>;

    async fn watch_journal(
        &self,
        request: Request<pb::WatchJournalRequest>,
    ) -> Result<Response<Self::WatchJournalStream>, Status> {
        let credentials = request
            .extensions()
            .get::<Credentials>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("the call is not authenticated"))?;
        let (_, r) = authz::authorize(request, &self.store.reads)?;
        let from = r.from_sequence.max(1);
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER_ENTRIES);
        let caller = Watcher {
            directory: self.directory.clone(),
            credentials,
        };
        tokio::spawn(feed(store, from, tx, caller, self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type BackupStream = Stream<pb::BackupChunk>;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        authz::check(&request, &self.store.reads)?;
        let place = self.scan_place()?;
        let sequence = self.store.reads.last_sequence()?;
        let (bytes, digest) = match sequence {
            0 => (0, GENESIS),
            s => {
                let loc = self
                    .store
                    .reads
                    .entry_location(s)?
                    .ok_or_else(|| error::fault(Fault(format!("entry {s} has no location"))))?;
                (loc.offset + u64::from(loc.len), loc.chain)
            }
        };
        let path = self.store.reads.journal_path().to_owned();
        let (tx, rx) = mpsc::channel(4);
        let header = pb::BackupChunk {
            part: Some(pb::backup_chunk::Part::Header(pb::BackupHeader {
                sequence,
                digest: digest.to_vec(),
                bytes,
            })),
        };
        tokio::task::spawn_blocking(move || {
            if tx.blocking_send(Ok(header)).is_err() {
                return;
            }
            let sent = send_prefix(&path, bytes, &tx);
            // Given back before the stream ends: a client that has read it all may
            // start another.
            drop(place);
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(error::fault(Fault(e.to_string()))));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The journal is append-only, so its first `bytes` bytes (up to a committed entry)
/// are a consistent backup however much is written meanwhile.
fn send_prefix(
    path: &std::path::Path,
    bytes: u64,
    tx: &mpsc::Sender<Result<pb::BackupChunk, Status>>,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?.take(bytes);
    let mut buf = vec![0u8; BACKUP_CHUNK_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let chunk = pb::BackupChunk {
            part: Some(pb::backup_chunk::Part::Data(buf[..n].to_vec())),
        };
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
}

/// Who is watching, and how to ask whether it still may.
struct Watcher {
    directory: Arc<Directory>,
    credentials: Credentials,
}

/// Sends entries from `next` on: what is committed, then whatever commits later. Ends
/// when the consumer goes away or the server stops, and with UNAUTHENTICATED once the
/// caller no longer authenticates (disabled, token rotated): the stream outlives the
/// authentication done when it opened, so each entry is checked before it is sent.
async fn feed(
    store: StoreHandle,
    mut next: u64,
    tx: mpsc::Sender<Result<pb::JournalEntry, Status>>,
    caller: Watcher,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut committed = store.committed.clone();
    let mut closing = store.committed.clone();
    loop {
        let last = *committed.borrow_and_update();
        while next <= last {
            let item = match caller.directory.reauthenticate(&caller.credentials) {
                Ok(()) => journal_entry(&store, next),
                Err(refused) => Err(refused),
            };
            let failed = item.is_err();
            // A consumer that stopped reading must not keep the store open at shutdown.
            tokio::select! {
                sent = tx.send(item) => if sent.is_err() || failed { return },
                () = writer_gone(&mut closing) => return,
                _ = stopping.wait_for(|s| *s) => break,
            }
            next += 1;
        }
        tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => {
                // Said, not left to a dropped connection: the consumer learns the stop
                // is no error of its own and where to resume.
                let _ = tx.try_send(Err(Status::unavailable(format!(
                    "the server is stopping: reconnect and resume from sequence {next}"
                ))));
                return;
            }
            changed = committed.changed() => if changed.is_err() { return },
        }
    }
}

/// Completes when the writer has stopped (its end of the channel is dropped).
async fn writer_gone(committed: &mut tokio::sync::watch::Receiver<u64>) {
    while committed.changed().await.is_ok() {}
}
