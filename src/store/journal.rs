//! The journal: an append-only file of our own, the source of truth.
//!
//! Each entry is one frame: `len: u32 LE | crc32: u32 LE | payload`, where the payload
//! is a format byte followed by the postcard encoding of the [`Entry`]. The writer
//! appends a whole batch of frames with one `write_all` and makes it durable with one
//! `fdatasync` before anything in the batch is acknowledged.
//!
//! Only the batch being written when the process died can be incomplete, so an invalid
//! frame within [`TAIL_BYTES_MAX`] of the end is a torn tail and is cut off (it was never
//! acknowledged); an invalid frame earlier than that is corruption and stops start-up.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::domain::Entry;

/// The payload format; bumped when the encoding of [`Entry`] changes shape. Version 1
/// entries have no principal; they still decode (as `principal: None`), so journals
/// written before principals replay and verify. The chain covers the bytes as stored.
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const HEADER_BYTES: usize = 8;
/// Format byte and chain hash, ahead of the entry's bytes.
const PREFIX_BYTES: usize = 1 + 32;
/// No entry comes near this; a larger length in a header means a damaged frame.
pub const FRAME_BYTES_MAX: u32 = 4 << 20;
/// The writer closes a batch once its frames pass this size.
pub const BATCH_BYTES_SOFT_MAX: usize = 8 << 20;
/// The most a torn (unsynced) batch can span: the soft limit plus one frame over it.
pub const TAIL_BYTES_MAX: u64 = (BATCH_BYTES_SOFT_MAX as u64) + (FRAME_BYTES_MAX as u64);

pub type Hash = [u8; 32];
/// The chain's value before the first entry.
pub const GENESIS: Hash = [0; 32];

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl JournalError {
    /// ENOSPC or a quota: the write may succeed once space returns.
    pub fn is_disk_full(&self) -> bool {
        match self {
            JournalError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    || source.kind() == std::io::ErrorKind::QuotaExceeded
            }
            JournalError::Corrupt { .. } => false,
        }
    }

    /// EROFS: the filesystem went read-only under us (ext4 does so on an error, with
    /// `errors=remount-ro`); only an operator can make it writable again.
    pub fn is_read_only(&self) -> bool {
        match self {
            JournalError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::ReadOnlyFilesystem
            }
            JournalError::Corrupt { .. } => false,
        }
    }
}

/// Where an entry's frame lies in the file, and its hashes: what a proof needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub offset: u64,
    pub len: u32,
    /// SHA-256 of the entry's canonical bytes.
    pub entry_hash: Hash,
    /// The chain after this entry: H(previous chain ‖ entry hash).
    pub chain: Hash,
}

/// One decoded frame: the entry, the chain hash stored with it, and the hash of its
/// bytes as read (recomputed, never trusted from the file).
#[derive(Debug, Clone)]
pub struct Frame {
    pub entry: Entry,
    pub entry_hash: Hash,
    pub chain: Hash,
}

/// The hash of an entry's canonical bytes (its postcard encoding).
pub fn entry_hash(bytes: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"case-escrow/entry/v1\0");
    h.update(bytes);
    h.finalize().into()
}

/// The hash of a stored entry: over its canonical bytes, which for format 2 on are the
/// format byte followed by the body. Without the format byte in the hash, a frame's
/// format could be turned from 2 back to 1 (with its CRC recomputed, which is no
/// secret) and its body read as a format-1 entry, dropping the principal unnoticed.
fn stored_entry_hash(format: u8, body: &[u8]) -> Hash {
    entry_hash(&canonical_bytes(format, body))
}

/// What a client hashes to check an entry (journal.proto's `canonical_bytes`).
pub fn canonical_bytes(format: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + 1);
    if format != FORMAT_V1 {
        bytes.push(format);
    }
    bytes.extend_from_slice(body);
    bytes
}

/// One link of the chain. Changing any byte of any entry changes every later link.
pub fn chain(previous: &Hash, entry_hash: &Hash) -> Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"case-escrow/chain/v1\0");
    h.update(previous);
    h.update(entry_hash);
    h.finalize().into()
}

/// Appends the frame of `entry` to `out`, chained to `previous`. The location's offset
/// is relative to the start of `out`.
pub fn encode_frame(entry: &Entry, previous: &Hash, out: &mut Vec<u8>) -> Result<Location, String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out.push(FORMAT_V2);
    out.extend_from_slice(&[0u8; 32]);
    let body = start + HEADER_BYTES + PREFIX_BYTES;
    *out = postcard::to_extend(entry, std::mem::take(out)).map_err(|e| e.to_string())?;
    let e_hash = stored_entry_hash(FORMAT_V2, &out[body..]);
    let c_hash = chain(previous, &e_hash);
    out[start + HEADER_BYTES + 1..body].copy_from_slice(&c_hash);
    let payload_len = out.len() - start - HEADER_BYTES;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|l| *l <= FRAME_BYTES_MAX)
        .ok_or_else(|| format!("entry {} is too large to journal", entry.sequence))?;
    let crc = crc32fast::hash(&out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(Location {
        offset: start as u64,
        len: len + HEADER_BYTES as u32,
        entry_hash: e_hash,
        chain: c_hash,
    })
}

fn decode_payload(payload: &[u8]) -> Result<Frame, String> {
    let Some((&format, rest)) = payload.split_first() else {
        return Err("empty frame".into());
    };
    if format != FORMAT_V1 && format != FORMAT_V2 {
        return Err(format!("unknown entry format {format}"));
    }
    if rest.len() < 32 {
        return Err("frame too short for its chain hash".into());
    }
    let (stored, body) = rest.split_at(32);
    // Every byte of the body must belong to the entry: postcard would ignore a tail.
    let (entry, tail) = match format {
        FORMAT_V1 => {
            postcard::take_from_bytes::<EntryV1>(body).map(|(e, tail)| (Entry::from(e), tail))
        }
        _ => postcard::take_from_bytes::<Entry>(body),
    }
    .map_err(|e| e.to_string())?;
    if !tail.is_empty() {
        return Err(format!(
            "{} bytes after the entry's end in its frame",
            tail.len()
        ));
    }
    let mut chain = [0u8; 32];
    chain.copy_from_slice(stored);
    Ok(Frame {
        entry,
        entry_hash: stored_entry_hash(format, body),
        chain,
    })
}

/// An entry as format 1 encoded it: before principals.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct EntryV1 {
    sequence: u64,
    request_id: crate::domain::RequestId,
    request_hash: [u8; 32],
    recorded_at: crate::domain::Micros,
    op: crate::domain::Op,
    postings: Vec<crate::domain::Posting>,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry {
            sequence: e.sequence,
            request_id: e.request_id,
            request_hash: e.request_hash,
            recorded_at: e.recorded_at,
            op: e.op,
            postings: e.postings,
            principal: None,
        }
    }
}

/// Checks one frame (header and checksum) and decodes it.
pub fn decode_frame(frame: &[u8]) -> Result<Frame, String> {
    if frame.len() < HEADER_BYTES {
        return Err("frame shorter than its header".into());
    }
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let payload = &frame[HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!(
            "frame length {len} does not match {}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    decode_payload(payload)
}

/// The append side, owned by the writer thread alone.
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    end: u64,
    /// A failed write could not be cut back: appending more would bury garbage.
    broken: bool,
}

/// A second handle on the journal file, for the thread that makes batches durable while
/// the writer appends the next ones. `fdatasync` on it covers every byte written to the
/// file before the call, through whichever handle.
pub struct JournalSyncer {
    file: File,
    path: PathBuf,
}

impl JournalSyncer {
    /// The barrier: `fdatasync`. Nothing is acknowledged before this returns.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Cuts the journal back to `offset` and makes the new length durable: for a batch
    /// whose `fdatasync` failed. Linux may have marked its pages clean though they never
    /// reached the disk (reporting the failure once, to the handle that synced), so the
    /// next start would read them from the page cache, sync "successfully", and replay
    /// a batch the disk may not hold. Cut, it was never written: nobody was told it was.
    pub fn cut_back(&self, offset: u64) -> Result<(), JournalError> {
        (self.file.set_len(offset))
            .and_then(|()| self.file.sync_all())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// What a failed [`JournalSyncer::sync`] returns, for a test that injects one.
    pub(crate) fn injected_failure(&self) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("a failure injected by a test"),
        }
    }
}

/// The read side, shared by every reader: positioned reads need no lock.
pub struct JournalReader {
    file: File,
    path: PathBuf,
}

impl JournalWriter {
    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends a batch of frames. On failure the file is cut back to where it was, so a
    /// failed batch leaves no trace for the next one to land after.
    pub fn append(&mut self, frames: &[u8]) -> Result<(), JournalError> {
        if frames.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all(frames) {
            self.broken = self.file.set_len(self.end).is_err();
            return Err(self.io(source));
        }
        self.end += frames.len() as u64;
        Ok(())
    }

    pub fn syncer(&self) -> Result<JournalSyncer, JournalError> {
        Ok(JournalSyncer {
            file: self.file.try_clone().map_err(|e| self.io(e))?,
            path: self.path.clone(),
        })
    }

    /// The barrier: `fdatasync`. Nothing is acknowledged before this returns.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl JournalReader {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The frame at `loc` and the entry's canonical bytes (what its hash covers).
    pub fn read_raw(&self, loc: Location) -> Result<(Frame, Vec<u8>), JournalError> {
        let mut buf = vec![0u8; loc.len as usize];
        self.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        let frame = decode_frame(&buf).map_err(|reason| JournalError::Corrupt {
            path: self.path.clone(),
            offset: loc.offset,
            reason,
        })?;
        let format = buf[HEADER_BYTES];
        let body = buf.split_off(HEADER_BYTES + PREFIX_BYTES);
        Ok((frame, canonical_bytes(format, &body)))
    }

    pub fn read(&self, loc: Location) -> Result<Entry, JournalError> {
        let mut buf = vec![0u8; loc.len as usize];
        self.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        decode_frame(&buf)
            .map(|f| f.entry)
            .map_err(|reason| JournalError::Corrupt {
                path: self.path.clone(),
                offset: loc.offset,
                reason,
            })
    }
}

/// Opens (creating if needed) the journal for appending and for reading.
pub fn open(path: &Path) -> Result<(JournalWriter, JournalReader), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io)?;
    // The file's directory entry must be durable too, or a crash could lose the whole
    // journal along with its first acknowledged batch. At every open, not only when
    // this one created it: the one that did may have died before its sync.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    let end = file.metadata().map_err(io)?.len();
    let reader = File::open(path).map_err(io)?;
    Ok((
        JournalWriter {
            file,
            path: path.to_owned(),
            end,
            broken: false,
        },
        JournalReader {
            file: reader,
            path: path.to_owned(),
        },
    ))
}

/// Reads frames from `from` to the end, handing each entry and its location to `each`.
/// Returns the end of the last valid frame. A torn tail is cut off; corruption before
/// the tail is an error.
pub fn scan(
    writer: &mut JournalWriter,
    from: u64,
    mut each: impl FnMut(Frame, u64, u32) -> Result<(), String>,
) -> Result<u64, JournalError> {
    let path = writer.path.clone();
    let corrupt = |offset, reason| JournalError::Corrupt {
        path: path.clone(),
        offset,
        reason,
    };
    let file_len = writer.end;
    if from > file_len {
        return Err(corrupt(
            from,
            format!("the state was built from {from} bytes of journal but only {file_len} exist"),
        ));
    }
    let mut reader =
        BufReader::with_capacity(1 << 20, File::open(&path).map_err(|e| writer.io(e))?);
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(from)).map_err(|e| writer.io(e))?;
    let mut offset = from;
    let mut frame = Vec::new();
    while offset < file_len {
        match read_frame(&mut reader, file_len - offset, &mut frame) {
            Ok(decoded) => {
                each(decoded, offset, frame.len() as u32)
                    .map_err(|reason| corrupt(offset, reason))?;
                offset += frame.len() as u64;
            }
            Err(reason) if file_len - offset <= TAIL_BYTES_MAX => {
                let kept = keep_torn_tail(&path, offset).map_err(|e| writer.io(e))?;
                tracing::warn!(
                    offset,
                    bytes = file_len - offset,
                    %reason,
                    kept = %kept.display(),
                    "cut the torn tail off the journal: a batch that was never acknowledged; its bytes are kept for inspection"
                );
                writer.file.set_len(offset).map_err(|e| writer.io(e))?;
                writer.file.sync_all().map_err(|e| writer.io(e))?;
                writer.end = offset;
                return Ok(offset);
            }
            Err(reason) => return Err(corrupt(offset, reason)),
        }
    }
    Ok(offset)
}

/// Copies the bytes about to be cut into `journal.log.torn-<offset>` (durably) so that
/// nothing leaves the data directory unseen, should a tail ever be cut that held more
/// than an unacknowledged batch.
fn keep_torn_tail(path: &Path, offset: u64) -> std::io::Result<PathBuf> {
    let mut source = File::open(path)?;
    std::io::Seek::seek(&mut source, std::io::SeekFrom::Start(offset))?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{offset}"));
    let kept = PathBuf::from(name);
    let mut target = File::create(&kept)?;
    std::io::copy(&mut source, &mut target)?;
    target.sync_all()?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(kept)
}

fn read_frame(
    reader: &mut impl Read,
    remaining: u64,
    frame: &mut Vec<u8>,
) -> Result<Frame, String> {
    frame.clear();
    frame.resize(HEADER_BYTES, 0);
    if remaining < HEADER_BYTES as u64 {
        return Err("incomplete frame header".into());
    }
    reader.read_exact(frame).map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    if len > FRAME_BYTES_MAX || u64::from(len) + HEADER_BYTES as u64 > remaining {
        return Err(format!("frame length {len} runs past the end"));
    }
    frame.resize(HEADER_BYTES + len as usize, 0);
    reader
        .read_exact(&mut frame[HEADER_BYTES..])
        .map_err(|e| e.to_string())?;
    decode_frame(frame)
}

/// Visits every frame of a journal file in order without changing it, handing each to
/// `each` with its offset. Any invalid frame, even at the tail, is an error.
pub fn visit(
    path: &Path,
    each: impl FnMut(Frame, u64) -> Result<(), String>,
) -> Result<(), JournalError> {
    visit_range(path, 0, u64::MAX, each)
}

/// Like [`visit`], over the frames that start at `from` (a frame boundary) and end at
/// or before `to` (or the end of the file).
pub fn visit_range(
    path: &Path,
    from: u64,
    to: u64,
    mut each: impl FnMut(Frame, u64) -> Result<(), String>,
) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len().min(to);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(from)).map_err(io)?;
    let (mut offset, mut frame) = (from, Vec::new());
    while offset < len {
        let corrupt = |reason| JournalError::Corrupt {
            path: path.to_owned(),
            offset,
            reason,
        };
        let decoded = read_frame(&mut reader, len - offset, &mut frame).map_err(corrupt)?;
        each(decoded, offset).map_err(corrupt)?;
        offset += frame.len() as u64;
    }
    Ok(())
}

/// Reads every entry of a journal file, for verification and tests.
pub fn read_all(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let mut entries = Vec::new();
    visit(path, |frame, _| {
        entries.push(frame.entry);
        Ok(())
    })?;
    Ok(entries)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose frame, sequence and chain link were checked.
    pub checked: u64,
    /// The last sequence and chain value that verified.
    pub last_sequence: u64,
    pub digest: Hash,
    /// The first broken link: the sequence where it broke (or would be next) and why.
    pub broken: Option<(u64, String)>,
    /// The byte where the frame of that link starts.
    pub broken_at: Option<u64>,
    /// Whether that frame does not read whole (its length or checksum), as a batch a
    /// crash cut short does not, rather than reading whole and not following on.
    pub broken_unreadable: bool,
}

/// Recomputes the chain over the whole journal: every frame's checksum, every sequence
/// (1, 2, 3, … without gaps), every entry's hash and every link. Reports the first
/// broken link rather than stopping with an error, so an auditor learns where.
pub fn verify(path: &Path) -> Result<Verification, JournalError> {
    verify_range(path, 0, 0, GENESIS, u64::MAX, u64::MAX)
}

/// Verifies the frames that start at byte `from` — the end of entry `before` whose chain
/// value is `chain_before` — up to and including entry `to`, reading no byte at or past
/// `end`: on a live journal, the frame after the last committed one may be half
/// written, and must not be read as damage.
pub fn verify_range(
    path: &Path,
    from: u64,
    before: u64,
    chain_before: Hash,
    to: u64,
    end: u64,
) -> Result<Verification, JournalError> {
    let mut v = Verification {
        checked: 0,
        last_sequence: before,
        digest: chain_before,
        broken: None,
        broken_at: None,
        broken_unreadable: false,
    };
    let mut unlinked = false;
    let visited = visit_range(path, from, end, |frame, _| {
        let want = v.last_sequence + 1;
        if want > to {
            return Err(STOP.into());
        }
        if frame.entry.sequence != want {
            unlinked = true;
            return Err(format!(
                "entry {want} expected, entry {} found",
                frame.entry.sequence
            ));
        }
        let link = chain(&v.digest, &frame.entry_hash);
        if link != frame.chain {
            unlinked = true;
            return Err(format!(
                "entry {want} does not match its chain hash: the entry or an earlier one was altered"
            ));
        }
        v.checked += 1;
        v.last_sequence = want;
        v.digest = link;
        Ok(())
    });
    match visited {
        Ok(()) => Ok(v),
        Err(JournalError::Corrupt { reason, .. }) if reason == STOP => Ok(v),
        Err(JournalError::Corrupt { offset, reason, .. }) => {
            v.broken = Some((v.last_sequence + 1, format!("at byte {offset}: {reason}")));
            v.broken_at = Some(offset);
            v.broken_unreadable = !unlinked;
            Ok(v)
        }
        Err(e) => Err(e),
    }
}

/// Ends a visit early without it being an error.
const STOP: &str = "\0stop";

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::domain::{Micros, Op, RequestId, Text};

    fn entry(principal: Option<uuid::Uuid>) -> Entry {
        Entry {
            sequence: 1,
            request_id: RequestId::parse("r-1").unwrap_or_else(|e| panic!("{e}")),
            request_hash: [7; 32],
            recorded_at: Micros(1_700_000_000_000_000),
            op: Op::PrincipalDisabled {
                principal_id: uuid::Uuid::nil(),
                reason: Text::default(),
            },
            postings: Vec::new(),
            principal,
        }
    }

    /// A frame written before principals existed still decodes, with no principal,
    /// and its hash is over the bytes as stored.
    #[test]
    fn a_format_1_frame_decodes_without_a_principal() {
        let e = entry(None);
        let v1 = EntryV1 {
            sequence: e.sequence,
            request_id: e.request_id.clone(),
            request_hash: e.request_hash,
            recorded_at: e.recorded_at,
            op: e.op.clone(),
            postings: Vec::new(),
        };
        let body = postcard::to_stdvec(&v1).unwrap_or_else(|e| panic!("{e}"));
        let mut payload = vec![FORMAT_V1];
        payload.extend_from_slice(&chain(&GENESIS, &entry_hash(&body)));
        payload.extend_from_slice(&body);
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let decoded = decode_frame(&frame).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.entry, e);
        assert_eq!(decoded.entry_hash, entry_hash(&body));
    }

    /// Verifying up to an entry reads nothing past it: on a live journal the next frame
    /// may be half written, which is no damage of the range asked for.
    #[test]
    fn a_range_is_verified_without_reading_the_frame_after_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("journal.log");
        let (mut out, mut head, mut ends) = (Vec::new(), GENESIS, Vec::new());
        for sequence in 1..=6 {
            let e = Entry {
                sequence,
                ..entry(None)
            };
            head = encode_frame(&e, &head, &mut out)
                .unwrap_or_else(|e| panic!("{e}"))
                .chain;
            ends.push(out.len() as u64);
        }
        // Half of the sixth frame, as a reader may find it while the writer appends.
        out.truncate((ends[4] + (ends[5] - ends[4]) / 2) as usize);
        std::fs::write(&path, &out).unwrap_or_else(|e| panic!("{e}"));
        let v = verify_range(&path, 0, 0, GENESIS, 5, ends[4]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v.broken, v.last_sequence, v.checked), (None, 5, 5));
        let whole = verify(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            whole.broken.map(|(seq, _)| seq),
            Some(6),
            "past the range, it is seen"
        );
    }

    /// Turning a format-2 frame into a format-1 one (CRC recomputed) would drop the
    /// principal; the entry hash covers the format byte, so the chain no longer holds.
    #[test]
    fn a_frame_turned_back_to_format_1_breaks_the_chain() {
        let e = entry(Some(uuid::Uuid::from_u128(42)));
        let mut out = Vec::new();
        let loc = encode_frame(&e, &GENESIS, &mut out).unwrap_or_else(|e| panic!("{e}"));
        out[HEADER_BYTES] = FORMAT_V1;
        let crc = crc32fast::hash(&out[HEADER_BYTES..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        match decode_frame(&out) {
            Err(_) => {}
            Ok(f) => {
                assert_ne!(
                    f.entry_hash, loc.entry_hash,
                    "the altered frame hashes the same"
                );
                assert_ne!(
                    chain(&GENESIS, &f.entry_hash),
                    f.chain,
                    "the link still holds"
                );
            }
        }
    }

    #[test]
    fn a_format_2_frame_keeps_its_principal() {
        let e = entry(Some(uuid::Uuid::from_u128(42)));
        let mut out = Vec::new();
        encode_frame(&e, &GENESIS, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out[HEADER_BYTES], FORMAT_V2);
        let decoded = decode_frame(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.entry, e);
    }
}
