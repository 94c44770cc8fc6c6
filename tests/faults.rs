//! Faults of the disk: when the data directory's filesystem fills up, writes are refused
//! with RESOURCE_EXHAUSTED and a clear log line, reads go on, nothing is corrupted, and
//! writes resume once space returns.
//!
//! The server keeps a free-space reserve and refuses writes below it, before anything is
//! written; the test fills a small tmpfs of its own into that reserve (it runs as root,
//! as CI does).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use case_escrow::api::pb::{self, case_ledger_client::CaseLedgerClient};
use common::*;

const CASE: &str = "（2024）云0102执700号";
/// Bounds the loop that writes until the disk is full.
const WRITES_MAX: usize = 5_000;

/// A tmpfs mounted for the test's life.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs and needs root to do so"
        );
        SmallDisk {
            path: dir.path().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

struct ServerProcess {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data_dir: &Path, log: PathBuf) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--disk-reserve-mb",
            "2",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("CASE_ESCROW_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("address line");
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    ServerProcess { child, addr, log }
}

/// Fills the filesystem with a file until less than `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..10_000 {
        if fs2::available_space(dir).expect("statvfs") < leave {
            break;
        }
        file.write_all(&chunk).expect("filler grows");
    }
    file.sync_all().expect("filler synced");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let disk = SmallDisk::mount("8m");
    let logs = tempfile::tempdir().expect("tempdir");
    let data = disk.path.join("data");
    let server = spawn(&data, logs.path().join("server.log"));
    let admin = case_escrow::cli::auth::admin_token(&data).expect("admin.token");
    let channel = common::crew(server.addr.parse().expect("address"), &admin).await;
    let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel.clone());
    let mut cases = CaseLedgerClient::new(channel);
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;

    let filler = fill(&disk.path, 1 << 20);
    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..WRITES_MAX {
        let request = receipt_request(CASE, "1.00", &format!("FULL-{i}"));
        match cases.record_receipt(request.clone()).await {
            Ok(_) => accepted += 1,
            Err(status) => {
                refused = Some((request, status));
                break;
            }
        }
    }
    let (refused_request, status) = refused.expect("a full disk refuses writes");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("space"), "{status:?}");
    // Refused before anything was written: the first write after the disk filled.
    assert_eq!(accepted, 0, "writes went on into the reserve");
    // Reads of everything else go on too.
    let listed = specials
        .list_special_accounts(pb::ListSpecialAccountsRequest::default())
        .await
        .expect("reads go on")
        .into_inner();
    assert_eq!(listed.special_accounts.len(), 1);

    // Reads go on, and show exactly what was acknowledged.
    let bal = balances(&mut cases, CASE).await;
    assert_eq!(bal.received, format!("{accepted}.00"));

    // Space returns; writes resume, and the refused request lands once.
    std::fs::remove_file(&filler).expect("free space");
    let entry = cases
        .record_receipt(refused_request.clone())
        .await
        .expect("writes resume")
        .into_inner();
    let again = cases
        .record_receipt(refused_request)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(entry.sequence, again.sequence);
    assert_eq!(
        balances(&mut cases, CASE).await.received,
        format!("{}.00", accepted + 1)
    );

    let log = std::fs::read_to_string(&server.log).expect("log");
    assert!(
        log.contains("below its free-space reserve"),
        "no clear log line: {log}"
    );
    drop((specials, cases));
    drop(server);
    let v = case_escrow::store::journal::verify(&data.join("journal.log")).expect("journal reads");
    assert_eq!(v.broken, None, "nothing is corrupted");
    assert_eq!(v.last_sequence, entry.sequence);
}
