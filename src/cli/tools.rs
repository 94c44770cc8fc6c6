//! Operator tools on a data directory or a running server: verify, backup, restore,
//! rebuild.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::api::pb::{backup_chunk::Part, journal_client::JournalClient, BackupRequest};
use crate::store::backup::{self, Header};
use crate::store::{journal, Store};

pub type Failure = super::client::CliError;

/// Checks the whole journal offline; fails if any link is broken.
pub fn verify(data_dir: &Path) -> Result<(), Failure> {
    let v = journal::verify(&data_dir.join("journal.log"))?;
    match v.broken {
        None => {
            println!(
                "journal verified: {} entries, digest {} at entry {}",
                v.checked,
                backup::hex(&v.digest),
                v.last_sequence
            );
            Ok(())
        }
        Some((seq, why)) => Err(format!(
            "journal BROKEN at entry {seq}: {why} ({} entries before it verified)",
            v.checked
        )
        .into()),
    }
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
    let partial = with_suffix(to, ".partial");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(header.line().as_bytes())?;
    let mut written = 0u64;
    while let Some(chunk) = stream.message().await? {
        if let Some(Part::Data(data)) = chunk.part {
            file.write_all(&data)?;
            written += data.len() as u64;
        }
    }
    if written != header.bytes {
        return Err(format!(
            "the backup stream ended after {written} of {} bytes; nothing was kept",
            header.bytes
        )
        .into());
    }
    file.sync_all()?;
    std::fs::rename(&partial, to)?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    println!(
        "backup written to {}: entries 1..={}, digest {}",
        to.display(),
        header.sequence,
        backup::hex(&header.digest)
    );
    Ok(())
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
