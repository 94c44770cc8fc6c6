//! A new receipt is acknowledged as soon as it is durable, before the state has it
//! (`StoreHandle::write_durable`); every call that reads first waits until the state
//! holds what was acknowledged when the call arrived. So a client that reads right
//! after its receipt is acknowledged always sees it, however the batches fall.

mod common;

use case_escrow::api::pb;
use common::*;

const CLIENTS: usize = 16;
const ROUNDS: usize = 40;

fn case_number(client: usize) -> String {
    format!("（2024）云0102执{}号", 800 + client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_an_acknowledged_receipt_sees_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut specials = server.specials().await;
    let special = open_special(&mut specials, "云0102").await;
    let mut setup = server.cases().await;
    for c in 0..CLIENTS {
        open_case(&mut setup, &special.special_account_id, &case_number(c)).await;
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        // A connection each, so that receipts of several clients share batches.
        let mut cases = server.cases().await;
        clients.push(tokio::spawn(async move {
            let case = case_number(c);
            for round in 1..=ROUNDS {
                let bank_ref = format!("RYW-{c}-{round}");
                let entry = cases
                    .record_receipt(receipt_request(&case, "1.00", &bank_ref))
                    .await
                    .expect("receipt")
                    .into_inner();
                let account = cases
                    .get_case_account(get_case_request(&case))
                    .await
                    .expect("read")
                    .into_inner();
                assert!(
                    account.as_of_sequence >= entry.sequence,
                    "{case}: read as of {} after entry {}",
                    account.as_of_sequence,
                    entry.sequence
                );
                let received = account.balances.map(|b| b.received);
                assert_eq!(received, Some(format!("{round}.00")), "{case}");
                let lines = cases
                    .list_entries(pb::ListEntriesRequest {
                        case_number: case.clone(),
                        page_size: 100,
                        ..Default::default()
                    })
                    .await
                    .expect("statement")
                    .into_inner();
                assert!(
                    lines.entries.iter().any(|e| e.sequence == entry.sequence),
                    "{case}: the statement lacks entry {}",
                    entry.sequence
                );
            }
        }));
    }
    for client in clients {
        client.await.expect("a client");
    }
    drop((specials, setup));
    server.stop().await;
}
