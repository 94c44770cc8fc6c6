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
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

/// Writes the journal of backup `from` into `data_dir` (which must be missing or empty)
/// and verifies it against the header. The state is built by the first open.
pub fn restore(from: &Path, data_dir: &Path) -> Result<(Header, Verification), RestoreError> {
    if data_dir.exists() && fs::read_dir(data_dir)?.next().is_some() {
        return Err(RestoreError::Refused(format!(
            "{} is not empty: restore only into a new data directory",
            data_dir.display()
        )));
    }
    let mut reader = BufReader::new(File::open(from)?);
    let mut line = String::new();
    reader.by_ref().take(256).read_line(&mut line)?;
    let header = Header::parse(&line).map_err(RestoreError::Refused)?;
    fs::create_dir_all(data_dir)?;
    // Written under another name and renamed only once verified, so that a failed
    // restore never leaves a journal a server would start on.
    let path = data_dir.join("journal.log.restoring");
    let mut out = File::create(&path)?;
    let copied = std::io::copy(&mut reader.by_ref().take(header.bytes), &mut out)?;
    let mut extra = [0u8; 1];
    if copied != header.bytes || reader.read(&mut extra)? != 0 {
        return Err(RestoreError::Refused(format!(
            "the backup should hold {} journal bytes after its header but holds {}",
            header.bytes,
            if copied == header.bytes {
                "more".to_owned()
            } else {
                copied.to_string()
            }
        )));
    }
    out.flush()?;
    out.sync_all()?;
    File::open(data_dir)?.sync_all()?;
    let v = journal::verify(&path)?;
    if let Some((seq, why)) = &v.broken {
        return Err(RestoreError::Refused(format!(
            "the backup's journal breaks at entry {seq}: {why}"
        )));
    }
    if v.last_sequence != header.sequence || v.digest != header.digest {
        return Err(RestoreError::Refused(format!(
            "the backup's journal ends at entry {} with digest {}, but its header promises entry {} with digest {}",
            v.last_sequence,
            hex(&v.digest),
            header.sequence,
            hex(&header.digest)
        )));
    }
    fs::rename(&path, data_dir.join("journal.log"))?;
    File::open(data_dir)?.sync_all()?;
    Ok((header, v))
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
