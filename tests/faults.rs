//! Faults of the disk: when the data directory's filesystem fills up, writes are refused
//! with RESOURCE_EXHAUSTED and a clear log line, reads go on, nothing is corrupted, and
//! writes resume once space returns. When it turns read-only (a failing disk), writes
//! are refused with UNAVAILABLE until it is repaired and the server restarted.
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
        .env("CASE_ESCROW_STATE_ENGINE", engine_env(data_dir))
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

/// A small ext4 filesystem on a loop device, mounted so that a filesystem error turns
/// it read-only (`errors=remount-ro`), as a failing disk under a real server does.
struct Ext4Disk {
    image: PathBuf,
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ext4Disk {
    fn create() -> Ext4Disk {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .expect("image file");
        run(Command::new("mkfs.ext4").arg("-q").arg(&image));
        let disk = Ext4Disk {
            image,
            mount,
            _dir: dir,
        };
        disk.mount_it();
        disk
    }

    fn mount_it(&self) {
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.mount));
    }

    /// Makes ext4 record an error, which remounts it read-only at once: every later
    /// write, even through files already open, fails with EROFS.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&self.mount)
            .output()
            .expect("findmnt runs");
        let source = String::from_utf8(out.stdout).expect("utf-8");
        let device = Path::new(source.trim())
            .file_name()
            .expect("a device")
            .to_owned();
        let trigger = Path::new("/sys/fs/ext4")
            .join(device)
            .join("trigger_fs_error");
        std::fs::write(&trigger, "1").expect("ext4's test trigger");
    }

    /// What an operator does next: unmount, check and repair, mount again.
    fn repair(&self) {
        run(Command::new("umount").arg(&self.mount));
        // e2fsck exits 1 when it corrected something: that is the expected case here.
        let status = Command::new("e2fsck")
            .arg("-fy")
            .arg(&self.image)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("e2fsck runs");
        assert!(
            matches!(status.code(), Some(0 | 1)),
            "e2fsck could not repair: {status:?}"
        );
        self.mount_it();
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("runs");
    assert!(
        status.success(),
        "{command:?} failed (this test needs root, as CI has): {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_refuses_writes_keeps_reads_and_corrupts_nothing() {
    let disk = Ext4Disk::create();
    let logs = tempfile::tempdir().expect("tempdir");
    let data = disk.mount.join("data");
    let server = spawn(&data, logs.path().join("server.log"));
    let admin = case_escrow::cli::auth::admin_token(&data).expect("admin.token");
    let channel = common::crew(server.addr.parse().expect("address"), &admin).await;
    let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel.clone());
    let mut cases = CaseLedgerClient::new(channel);
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let request = receipt_request(CASE, "1.00", &format!("RO-{i}"));
        let entry = cases
            .record_receipt(request.clone())
            .await
            .expect("writes before the fault")
            .into_inner();
        acknowledged.push((request, entry.sequence));
    }

    disk.fail();
    let refused_request = receipt_request(CASE, "1.00", "RO-REFUSED");
    let status = cases
        .record_receipt(refused_request.clone())
        .await
        .expect_err("a read-only disk refuses writes");
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(status.message().contains("read-only"), "{status:?}");
    // Later writes are refused the same way, not half-done.
    let status = cases
        .record_receipt(receipt_request(CASE, "1.00", "RO-LATER"))
        .await
        .expect_err("still refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Reads go on and show exactly what was acknowledged.
    assert_eq!(balances(&mut cases, CASE).await.received, "20.00");
    let listed = specials
        .list_special_accounts(pb::ListSpecialAccountsRequest::default())
        .await
        .expect("reads go on")
        .into_inner();
    assert_eq!(listed.special_accounts.len(), 1);
    drop((specials, cases));
    let log_path = server.log.clone();
    drop(server);
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.contains("data directory is read-only"),
        "no clear log line: {log}"
    );

    // A server will not start on it while it is read-only, and says why.
    let out = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("CASE_ESCROW_LOG", "warn")
        .output()
        .expect("runs");
    assert!(!out.status.success(), "started on a read-only directory");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ead-only"), "does not say why: {stderr}");

    // Repaired and writable again: everything acknowledged is there, the refused write
    // is not, the journal verifies, and writes resume.
    disk.repair();
    let v = case_escrow::store::journal::verify(&data.join("journal.log")).expect("journal reads");
    assert_eq!(v.broken, None, "nothing is corrupted");
    let server = spawn(&data, logs.path().join("again.log"));
    let mut cases =
        CaseLedgerClient::new(common::crew(server.addr.parse().expect("address"), &admin).await);
    assert_eq!(balances(&mut cases, CASE).await.received, "20.00");
    for (request, sequence) in acknowledged {
        let again = cases
            .record_receipt(request)
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(again.sequence, sequence, "an acknowledged write moved");
    }
    cases
        .record_receipt(refused_request)
        .await
        .expect("writes resume");
    assert_eq!(balances(&mut cases, CASE).await.received, "21.00");
}
