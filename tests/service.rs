//! The service as stock tools see it: health, reflection, group commit, and a graceful
//! stop on SIGTERM.

mod common;

use std::sync::atomic::Ordering;

use case_escrow::api::pb;
use common::*;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test]
async fn health_and_reflection_answer_stock_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    // Health checking needs no token.
    let mut health = HealthClient::new(server.plain_channel().await);
    for service in [
        "",
        "case_escrow.v1.CaseLedger",
        "case_escrow.v1.SpecialAccounts",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("a message")
        .expect("not empty");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "case_escrow.v1.CaseLedger",
        "case_escrow.v1.SpecialAccounts",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_syncs() {
    const CLIENTS: usize = 64;
    const EACH: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(
        &mut cases,
        &special.special_account_id,
        "（2024）云0102执1号",
    )
    .await;
    let before_batches = server.stats.batches.load(Ordering::Relaxed);
    let before_requests = server.stats.requests.load(Ordering::Relaxed);
    let channel = server.channel().await;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = pb::case_ledger_client::CaseLedgerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                client
                    .record_receipt(receipt_request(
                        "（2024）云0102执1号",
                        "1.00",
                        &format!("C{c}-{i}"),
                    ))
                    .await
                    .expect("receipt");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // Receipts are answered once durable; the read waits until the state has them,
    // and their batches are counted by then.
    assert_eq!(
        balances(&mut cases, "（2024）云0102执1号").await.received,
        format!("{}.00", CLIENTS * EACH)
    );
    let batches = server.stats.batches.load(Ordering::Relaxed) - before_batches;
    let requests = server.stats.requests.load(Ordering::Relaxed) - before_requests;
    assert_eq!(requests as usize, CLIENTS * EACH);
    // Each batch is one fdatasync; with 64 clients waiting, one sync serves many.
    assert!(
        requests >= 2 * batches,
        "{requests} requests took {batches} syncs: no group commit"
    );
    server.stop().await;
}

#[test]
fn sigterm_stops_gracefully_and_keeps_everything() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("CASE_ESCROW_LOG", "warn")
            .env("CASE_ESCROW_STATE_ENGINE", engine_env(dir.path()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("address line");
        let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
        (child, addr)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut child, addr) = start();
    let sequence = runtime.block_on(async {
        let admin = case_escrow::cli::auth::admin_token(dir.path()).expect("admin.token");
        let channel = common::as_one(common::plain_channel(&addr).await, &admin);
        let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel);
        open_special(&mut specials, "云0102").await.as_of_sequence
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "graceful stop exits 0, got {status}");
    // The lock is released and the data is all there.
    let (mut child, addr) = start();
    let listed = runtime.block_on(async {
        let admin = case_escrow::cli::auth::admin_token(dir.path()).expect("admin.token");
        let channel = common::as_one(common::plain_channel(&addr).await, &admin);
        let mut specials = pb::special_accounts_client::SpecialAccountsClient::new(channel);
        specials
            .list_special_accounts(pb::ListSpecialAccountsRequest::default())
            .await
            .expect("lists")
            .into_inner()
            .special_accounts
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].as_of_sequence, sequence);
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = case_escrow::store::Store::open(dir.path()).expect("first opens");
    let second = case_escrow::store::Store::open(dir.path());
    let Err(err) = second else {
        panic!("a second store opened the same directory");
    };
    assert!(
        err.to_string().contains("another case-escrow process"),
        "{err}"
    );
}
