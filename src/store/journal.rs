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

/// The payload format; bumped if the encoding of [`Entry`] ever changes shape.
const FORMAT_V1: u8 = 1;
const HEADER_BYTES: usize = 8;
/// No entry comes near this; a larger length in a header means a damaged frame.
pub const FRAME_BYTES_MAX: u32 = 4 << 20;
/// The writer closes a batch once its frames pass this size.
pub const BATCH_BYTES_SOFT_MAX: usize = 8 << 20;
/// The most a torn (unsynced) batch can span: the soft limit plus one frame over it.
pub const TAIL_BYTES_MAX: u64 = (BATCH_BYTES_SOFT_MAX as u64) + (FRAME_BYTES_MAX as u64);

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

/// Where an entry's frame lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub offset: u64,
    pub len: u32,
}

pub fn encode_frame(entry: &Entry, out: &mut Vec<u8>) -> Result<Location, String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    out.push(FORMAT_V1);
    *out = postcard::to_extend(entry, std::mem::take(out)).map_err(|e| e.to_string())?;
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
    })
}

fn decode_payload(payload: &[u8]) -> Result<Entry, String> {
    match payload.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown entry format {v}")),
        None => Err("empty frame".into()),
    }
}

/// Checks one frame (header and payload) and decodes its entry.
pub fn decode_frame(frame: &[u8]) -> Result<Entry, String> {
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
    pub fn read(&self, loc: Location) -> Result<Entry, JournalError> {
        let mut buf = vec![0u8; loc.len as usize];
        self.file
            .read_exact_at(&mut buf, loc.offset)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        decode_frame(&buf).map_err(|reason| JournalError::Corrupt {
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
    let existed = path.exists();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io)?;
    if !existed {
        // A new file's directory entry must be durable too, or a crash could lose the
        // whole journal along with its first acknowledged batch.
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
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
    mut each: impl FnMut(Entry, Location) -> Result<(), String>,
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
            Ok(entry) => {
                let loc = Location {
                    offset,
                    len: frame.len() as u32,
                };
                each(entry, loc).map_err(|reason| corrupt(offset, reason))?;
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
) -> Result<Entry, String> {
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

/// Reads every entry of a journal file without changing it, for verification and
/// tests. Any invalid frame, even at the tail, is reported.
pub fn read_all(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut offset, mut frame, mut entries) = (0u64, Vec::new(), Vec::new());
    while offset < len {
        let entry = read_frame(&mut reader, len - offset, &mut frame).map_err(|reason| {
            JournalError::Corrupt {
                path: path.to_owned(),
                offset,
                reason,
            }
        })?;
        entries.push(entry);
        offset += frame.len() as u64;
    }
    Ok(entries)
}
