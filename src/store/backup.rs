//! Backup files: the journal up to one committed entry, behind a one-line header that
//! states which entry and its chain digest. The journal verifies itself (checksums and
//! the hash chain), so a restore checks everything before it trusts anything.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::journal::{self, Hash, Verification};

const MAGIC: &str = "case-escrow-backup v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The last entry in the backup.
    pub sequence: u64,
    /// The chain value after it.
    pub digest: Hash,
    /// Journal bytes that follow the header.
    pub bytes: u64,
}

impl Header {
    pub fn line(&self) -> String {
        format!(
            "{MAGIC} sequence={} digest={} bytes={}\n",
            self.sequence,
            hex(&self.digest),
            self.bytes
        )
    }

    pub fn parse(line: &str) -> Result<Header, String> {
        let rest = line
            .trim_end()
            .strip_prefix(MAGIC)
            .ok_or_else(|| format!("not a case-escrow backup (expected {MAGIC:?})"))?;
        let mut sequence = None;
        let mut digest = None;
        let mut bytes = None;
        for field in rest.split_whitespace() {
            match field.split_once('=') {
                Some(("sequence", v)) => sequence = v.parse().ok(),
                Some(("digest", v)) => digest = unhex(v),
                Some(("bytes", v)) => bytes = v.parse().ok(),
                _ => return Err(format!("unknown header field {field:?}")),
            }
        }
        Ok(Header {
            sequence: sequence.ok_or("header lacks a valid sequence")?,
            digest: digest.ok_or("header lacks a valid digest")?,
            bytes: bytes.ok_or("header lacks a valid byte count")?,
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// An I/O error on `path`, named.
fn at(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The name a restore writes the journal under until it is verified. A start refuses
/// a directory holding one: a restore that did not finish.
pub const RESTORING: &str = "journal.log.restoring";

/// Checks a whole backup file: its header, its length, every frame and link of its
/// journal, and that the journal ends at the entry and digest the header names.
pub fn check(file: &Path) -> Result<(Header, Verification), RestoreError> {
    let mut reader = BufReader::new(File::open(file).map_err(at(file))?);
    let mut line = String::new();
    (reader.by_ref().take(256).read_line(&mut line)).map_err(at(file))?;
    let header = Header::parse(&line)
        .map_err(|why| RestoreError::Refused(format!("{}: {why}", file.display())))?;
    let len = fs::metadata(file).map_err(at(file))?.len();
    let start = line.len() as u64;
    if len != start + header.bytes {
        return Err(RestoreError::Refused(format!(
            "{}: the backup should hold {} journal bytes after its header but holds {}",
            file.display(),
            header.bytes,
            len.saturating_sub(start)
        )));
    }
    let v = journal::verify_range(file, start, 0, journal::GENESIS, u64::MAX, u64::MAX)?;
    if let Some((seq, why)) = &v.broken {
        return Err(RestoreError::Refused(format!(
            "{}: the backup's journal breaks at entry {seq}: {why}",
            file.display()
        )));
    }
    if v.last_sequence != header.sequence || v.digest != header.digest {
        return Err(RestoreError::Refused(format!(
            "{}: the backup's journal ends at entry {} with digest {}, but its header promises entry {} with digest {}",
            file.display(),
            v.last_sequence,
            hex(&v.digest),
            header.sequence,
            hex(&header.digest)
        )));
    }
    Ok((header, v))
}

/// Writes the journal of backup `from` into `data_dir` (which must be missing or empty)
/// and verifies it against the header. The state is built by the first open. The
/// directory's LOCK is held throughout, so that no server starts on it meanwhile.
pub fn restore(from: &Path, data_dir: &Path) -> Result<(Header, Verification), RestoreError> {
    let not_empty = || {
        RestoreError::Refused(format!(
            "{} is not empty: restore only into a new data directory (a restore that did not finish leaves {RESTORING} there: remove the directory and restore again)",
            data_dir.display()
        ))
    };
    let only_lock = |dir: &Path| -> Result<bool, RestoreError> {
        Ok((fs::read_dir(dir).map_err(at(dir))?)
            .filter_map(Result::ok)
            .all(|e| e.file_name() == "LOCK"))
    };
    if data_dir.exists() && !only_lock(data_dir)? {
        return Err(not_empty());
    }
    let (header, v) = check(from)?;
    let lock = super::lock(data_dir)?;
    // Again, under the lock: a server may have started on it since.
    if !only_lock(data_dir)? {
        return Err(not_empty());
    }
    // Written under another name and renamed only once verified, so that a failed
    // restore never leaves a journal a server would start on.
    let path = data_dir.join(RESTORING);
    let written = copy_journal(from, &path, &header);
    let restored = written.and_then(|()| {
        let copied = journal::verify(&path)?;
        if copied != v {
            return Err(RestoreError::Refused(format!(
                "{}: the backup changed while it was restored",
                from.display()
            )));
        }
        let journal = data_dir.join("journal.log");
        fs::rename(&path, &journal).map_err(at(&journal))?;
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(at(data_dir))
    });
    if restored.is_err() {
        let _ = fs::remove_file(&path);
    }
    drop(lock);
    restored.map(|()| (header, v))
}

/// Copies the journal bytes of backup `from` (after its header) into `to`, durably.
fn copy_journal(from: &Path, to: &Path, header: &Header) -> Result<(), RestoreError> {
    let mut reader = BufReader::new(File::open(from).map_err(at(from))?);
    let mut line = String::new();
    (reader.by_ref().take(256).read_line(&mut line)).map_err(at(from))?;
    let mut out = File::create(to).map_err(at(to))?;
    let copied =
        std::io::copy(&mut reader.by_ref().take(header.bytes), &mut out).map_err(at(from))?;
    if copied != header.bytes {
        return Err(RestoreError::Refused(format!(
            "{}: the backup changed while it was restored",
            from.display()
        )));
    }
    (out.flush().and_then(|()| out.sync_all())).map_err(at(to))?;
    let dir = to.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            sequence: 42,
            digest: [7; 32],
            bytes: 12345,
        };
        assert_eq!(Header::parse(&h.line()), Ok(h));
        assert!(Header::parse("something else").is_err());
        assert!(Header::parse(&h.line().replace("digest=07", "digest=zz")).is_err());
    }
}
