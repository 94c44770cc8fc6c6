//! Operator tools on a data directory or a running server: verify, backup, restore,
//! rebuild.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::api::pb::{backup_chunk::Part, journal_client::JournalClient, BackupRequest};
use crate::store::backup::{self, Header};
use crate::store::{journal, Store};

pub type Failure = super::client::CliError;

/// Checks the whole journal offline, by itself (not against the state, which a start
/// does); fails if any link is broken. Bytes at the end that are no whole entry are
/// told apart from damage where it can be: they are what a crash leaves.
pub fn verify(data_dir: &Path) -> Result<(), Failure> {
    let path = data_dir.join("journal.log");
    let len = std::fs::metadata(&path).map_err(|e| named(&path, e))?.len();
    let v = journal::verify(&path)?;
    let (Some((seq, why)), Some(at)) = (&v.broken, v.broken_at) else {
        println!(
            "journal verified: {} entries, digest {} at entry {}",
            v.checked,
            backup::hex(&v.digest),
            v.last_sequence
        );
        return Ok(());
    };
    let tail = len.saturating_sub(at);
    if v.broken_unreadable && tail <= journal::TAIL_BYTES_MAX {
        return Err(format!(
            "journal verified up to entry {} (digest {}); from entry {seq} on, its last {tail} bytes are no whole entry ({why}). After a crash that is the batch being written, never acknowledged, which the next start cuts off (keeping its bytes in journal.log.torn-{at}); if entries there were acknowledged, it is damage, which a rebuild refuses. If a server is running on the directory, it may be writing them: `case-escrow journal verify` checks through the server",
            v.last_sequence,
            backup::hex(&v.digest)
        )
        .into());
    }
    Err(format!(
        "journal BROKEN at entry {seq}: {why} ({} entries before it verified)",
        v.checked
    )
    .into())
}

/// Streams an online backup from a running server into `to`, written under a temporary
/// name, synced, then renamed: a backup file either exists whole or not at all.
pub async fn backup(target: &super::client::Target, to: &Path) -> Result<(), Failure> {
    let mut client = JournalClient::new(target.connect(None).await?);
    let mut stream = client.backup(BackupRequest {}).await?.into_inner();
    let header = match stream.message().await?.and_then(|c| c.part) {
        Some(Part::Header(h)) => Header {
            sequence: h.sequence,
            digest: h
                .digest
                .as_slice()
                .try_into()
                .map_err(|_| "the server sent a malformed digest")?,
            bytes: h.bytes,
        },
        _ => return Err("the server's backup did not start with its header".into()),
    };
    // A fresh name, created only if absent: two backups to one path never share it.
    let partial = with_suffix(to, &format!(".{}.partial", uuid::Uuid::new_v4().simple()));
    let kept = receive(&mut stream, &partial, &header)
        .await
        .and_then(|()| {
            // The server sends its journal's bytes as they are: a frame damaged on its
            // disk would be carried into every backup unseen until a restore refused it.
            let (checked, _) = backup::check(&partial)?;
            if checked != header {
                return Err(format!(
                    "the backup's header changed while it was written: {checked:?}, not {header:?}"
                )
                .into());
            }
            Ok(())
        })
        .and_then(|()| std::fs::rename(&partial, to).map_err(|e| named(to, e)));
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("{e}; no backup was written to {}", to.display()).into());
    }
    let dir = (to.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The rename is durable once the directory is.
    (std::fs::File::open(dir).and_then(|d| d.sync_all())).map_err(|e| named(dir, e))?;
    println!(
        "backup written to {}: entries 1..={}, digest {}",
        to.display(),
        header.sequence,
        backup::hex(&header.digest)
    );
    Ok(())
}

/// Writes the header and the stream's journal bytes into a new file at `partial`,
/// durably.
async fn receive(
    stream: &mut tonic::Streaming<crate::api::pb::BackupChunk>,
    partial: &Path,
    header: &Header,
) -> Result<(), Failure> {
    // The whole ledger: readable by the user who took it alone.
    let mut file = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create_new(true),
        0o600,
    )
    .open(partial)
    .map_err(|e| named(partial, e))?;
    file.write_all(header.line().as_bytes())
        .map_err(|e| named(partial, e))?;
    let mut written = 0u64;
    while let Some(chunk) = stream.message().await? {
        if let Some(Part::Data(data)) = chunk.part {
            file.write_all(&data).map_err(|e| named(partial, e))?;
            written += data.len() as u64;
        }
    }
    if written != header.bytes {
        return Err(format!(
            "the backup stream ended after {written} of {} bytes",
            header.bytes
        )
        .into());
    }
    file.sync_all().map_err(|e| named(partial, e))
}

fn named(path: &Path, e: std::io::Error) -> Failure {
    format!("{}: {e}", path.display()).into()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Restores a backup into a new data directory and builds its state.
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    engine: Option<crate::store::Engine>,
) -> Result<(), Failure> {
    let (header, v) = backup::restore(from, data_dir)?;
    let options = crate::store::StoreOptions {
        engine,
        ..Default::default()
    };
    let store = Store::open_with(data_dir, options)?;
    store.close().await;
    println!(
        "restored {} entries into {} (digest {} verified); the state is built",
        v.checked,
        data_dir.display(),
        backup::hex(&header.digest)
    );
    // Said because nothing else would: the restored server writes no new admin.token.
    println!(
        "the principals are restored with their tokens' hashes; their tokens (admin.token too) are not in a backup: the same tokens work here"
    );
    Ok(())
}

/// Rebuilds every balance and index from the journal alone.
pub async fn rebuild(data_dir: &Path, engine: Option<crate::store::Engine>) -> Result<(), Failure> {
    let options = crate::store::StoreOptions {
        engine,
        ..Default::default()
    };
    let store = Store::rebuild_with(data_dir, options)?;
    let reads = store.handle().reads;
    let last = reads.last_sequence()?;
    let engine = reads.engine();
    drop(reads);
    store.close().await;
    println!(
        "rebuilt the state of {} from {last} journal entries, in {engine}",
        data_dir.display()
    );
    Ok(())
}
