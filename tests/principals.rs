//! Principals over gRPC: the first administrator's token file, four eyes and approval
//! tiers, the principal in every entry, token rotation, retries by another principal.

mod common;

use case_escrow::api::pb::{self, case_ledger_client::CaseLedgerClient};
use case_escrow::domain::Role;
use common::*;
use tonic::Code;

const CASE: &str = "（2024）云0102执7号";

async fn who(server: &TestServer, token: &str) -> pb::Principal {
    pb::principals_client::PrincipalsClient::new(server.channel_as(token).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner()
}

async fn as_(server: &TestServer, token: &str) -> CaseLedgerClient<Ch> {
    CaseLedgerClient::new(server.channel_as(token).await)
}

/// A token drawn here, as its holder would, and its SHA-256 for the administrator.
fn own_token() -> (String, String) {
    case_escrow::cli::auth::new_token().expect("a token")
}

/// A principal with an approval level, in 云0102, that brought its own token.
async fn approver(server: &TestServer, roles: &[Role], level: u32) -> String {
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let roles = roles
        .iter()
        .map(|r| match r {
            Role::Clerk => pb::Role::Clerk as i32,
            Role::Approver => pb::Role::Approver as i32,
            Role::Finance => pb::Role::Finance as i32,
            Role::Admin => pb::Role::Admin as i32,
            Role::Auditor => pb::Role::Auditor as i32,
        })
        .collect();
    let (token, sha256) = own_token();
    let added = admin
        .add_principal(pb::AddPrincipalRequest {
            request_id: rid(),
            name: format!("p-{}", rid()),
            roles,
            court_scopes: vec!["云0102".into()],
            approval_level: level,
            token_sha256: sha256,
            ..Default::default()
        })
        .await
        .expect("added")
        .into_inner();
    assert!(
        added.token.is_empty(),
        "the administrator is shown no token"
    );
    token
}

async fn ledger(server: &TestServer) {
    let mut specials = server.specials().await;
    let mut cases = server.cases().await;
    let special = open_special(&mut specials, "云0102").await;
    open_case(&mut cases, &special.special_account_id, CASE).await;
    cases
        .record_receipt(receipt_request(CASE, "300000.00", "FUNDS0001"))
        .await
        .expect("funds");
}

fn approve(id: &str) -> pb::ApproveDisbursementRequest {
    pb::ApproveDisbursementRequest {
        request_id: rid(),
        disbursement_id: id.into(),
        approval_ref: "批".into(),
    }
}

fn confirm(id: &str) -> pb::ConfirmDisbursementPaidRequest {
    pb::ConfirmDisbursementPaidRequest {
        request_id: rid(),
        disbursement_id: id.into(),
        bank_ref: rid().replace('-', ""),
        paid_at: None,
    }
}

#[tokio::test]
async fn four_eyes_and_approval_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ledger(&server).await;
    // A requests and could approve; B approves and could pay; C is a senior approver.
    let a = approver(&server, &[Role::Clerk, Role::Approver], 1).await;
    let b = approver(&server, &[Role::Approver, Role::Finance], 1).await;
    let c = approver(&server, &[Role::Approver], 2).await;
    let f = approver(&server, &[Role::Finance], 1).await;
    let d1 = as_(&server, &a)
        .await
        .request_disbursement(disbursement_request(CASE, "10.00"))
        .await
        .expect("requested")
        .into_inner()
        .disbursement_id;
    let refused = as_(&server, &a)
        .await
        .approve_disbursement(approve(&d1))
        .await
        .expect_err("the requester may not approve");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("four eyes"), "{refused:?}");
    as_(&server, &b)
        .await
        .approve_disbursement(approve(&d1))
        .await
        .expect("another approver approves");
    let refused = as_(&server, &b)
        .await
        .confirm_disbursement_paid(confirm(&d1))
        .await
        .expect_err("the approver may not confirm the payment");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    as_(&server, &f)
        .await
        .confirm_disbursement_paid(confirm(&d1))
        .await
        .expect("a third principal confirms");

    // From ¥100,000 up (以上 includes the number) a level-2 approver is needed.
    let d2 = as_(&server, &a)
        .await
        .request_disbursement(disbursement_request(CASE, "100000.00"))
        .await
        .expect("requested")
        .into_inner()
        .disbursement_id;
    let refused = as_(&server, &b)
        .await
        .approve_disbursement(approve(&d2))
        .await
        .expect_err("a level-1 approver may not approve at the tier");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("level 2"), "{refused:?}");
    as_(&server, &c)
        .await
        .approve_disbursement(approve(&d2))
        .await
        .expect("a senior approver approves");
    // A fen below the threshold level 1 suffices.
    let d3 = as_(&server, &a)
        .await
        .request_disbursement(disbursement_request(CASE, "99999.99"))
        .await
        .expect("requested")
        .into_inner()
        .disbursement_id;
    as_(&server, &b)
        .await
        .approve_disbursement(approve(&d3))
        .await
        .expect("level 1 approves below the threshold");

    // A requester who is also finance may not pay its own request.
    let x = approver(&server, &[Role::Clerk, Role::Finance], 1).await;
    let d4 = as_(&server, &x)
        .await
        .request_disbursement(disbursement_request(CASE, "1.00"))
        .await
        .expect("requested")
        .into_inner()
        .disbursement_id;
    as_(&server, &b)
        .await
        .approve_disbursement(approve(&d4))
        .await
        .expect("approved");
    let refused = as_(&server, &x)
        .await
        .confirm_disbursement_paid(confirm(&d4))
        .await
        .expect_err("the requester may not confirm the payment");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn every_entry_records_its_principal_and_a_retry_by_another_gets_the_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ledger(&server).await;
    let clerk = approver(&server, &[Role::Clerk], 1).await;
    let other = approver(&server, &[Role::Clerk], 1).await;
    let clerk_id = who(&server, &clerk).await.principal_id;
    let request = receipt_request(CASE, "5.00", "RETRY0001");
    let first = as_(&server, &clerk)
        .await
        .record_receipt(request.clone())
        .await
        .expect("recorded")
        .into_inner();
    assert_eq!(first.principal_id, clerk_id);
    // The same request id and content from another principal: the original outcome,
    // still made by the first.
    let again = as_(&server, &other)
        .await
        .record_receipt(request)
        .await
        .expect("the retry answers")
        .into_inner();
    assert_eq!(again.sequence, first.sequence);
    assert_eq!(again.principal_id, clerk_id);
    // Every entry of the case names who made it.
    let entries = server
        .cases()
        .await
        .list_entries(pb::ListEntriesRequest {
            case_number: CASE.into(),
            ..Default::default()
        })
        .await
        .expect("entries")
        .into_inner()
        .entries;
    assert!(entries.len() >= 3);
    for e in &entries {
        assert!(
            !e.principal_id.is_empty(),
            "entry {} has no principal",
            e.sequence
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_rotated_token_replaces_the_old_one_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let old = approver(&server, &[Role::Auditor], 1).await;
    let id = who(&server, &old).await.principal_id;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let rotated = admin
        .rotate_token(pb::RotateTokenRequest {
            request_id: rid(),
            principal_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotated")
        .into_inner();
    assert_ne!(rotated.token, old);
    assert_eq!(who(&server, &rotated.token).await.principal_id, id);
    let refused = pb::principals_client::PrincipalsClient::new(server.channel_as(&old).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("the old token is gone");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // After a restart the directory is rebuilt from the journal: same answer.
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    assert_eq!(who(&server, &rotated.token).await.principal_id, id);
    let refused = pb::principals_client::PrincipalsClient::new(server.channel_as(&old).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("the old token is still gone");
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}

#[test]
fn the_first_start_writes_the_admin_token_file_and_logs_only_its_path() {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (stderr, listening) = {
        let _guard = SPAWN_OR_OPEN.blocking_lock();
        let mut child = Command::new(env!("CARGO_BIN_EXE_case-escrow"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("CASE_ESCROW_LOG", "info")
            .env("CASE_ESCROW_STATE_ENGINE", engine_env(&data))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("address line");
        let _ = child.kill();
        let _ = child.wait();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("log");
        (stderr, line)
    };
    assert!(listening.contains("listening"), "{listening}");
    let path = data.join("admin.token");
    let meta = std::fs::metadata(&path).expect("admin.token exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).expect("readable");
    let token = text.strip_suffix('\n').expect("one newline at the end");
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(!stderr.contains(token), "the token was logged");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn the_administrator_is_created_once_and_its_file_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let admin = who(&server, &server.admin_token).await;
    assert_eq!(admin.roles, vec![pb::Role::Admin as i32]);
    assert_eq!(admin.court_scopes, vec!["最高法".to_owned()]);
    let token = server.admin_token.clone();
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    assert_eq!(
        server.admin_token, token,
        "a restart does not replace the token"
    );
    let listed =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await)
            .list_principals(pb::ListPrincipalsRequest::default())
            .await
            .expect("listed")
            .into_inner()
            .principals;
    let admins = listed.iter().filter(|p| p.name == "admin").count();
    assert_eq!(admins, 1);
    server.stop().await;
}

/// A supervisor of a higher court reads the courts below it and writes nowhere there;
/// a principal acting in a higher court writes below it too.
#[tokio::test]
async fn supervisors_read_below_and_do_not_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    ledger(&server).await;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let add = |name: &str, courts: Vec<String>, supervises: Vec<String>| {
        let (token, sha256) = own_token();
        let request = pb::AddPrincipalRequest {
            request_id: rid(),
            name: name.into(),
            roles: vec![pb::Role::Clerk as i32],
            court_scopes: courts,
            supervised_scopes: supervises,
            token_sha256: sha256,
            ..Default::default()
        };
        let mut admin = admin.clone();
        async move {
            admin.add_principal(request).await.expect("added");
            token
        }
    };
    let supervisor = add("云高院监督", vec![], vec!["云".into()]).await;
    let provincial = add("云高院书记员", vec!["云".into()], vec![]).await;
    let mut s = as_(&server, &supervisor).await;
    let read = s
        .get_case_account(pb::GetCaseAccountRequest {
            account: Some(pb::get_case_account_request::Account::CaseNumber(
                CASE.into(),
            )),
            as_of: None,
        })
        .await
        .expect("a supervisor reads below");
    assert_eq!(read.into_inner().case_number, CASE);
    let refused = s
        .record_receipt(receipt_request(CASE, "1.00", "SUPERVISOR1"))
        .await
        .expect_err("a supervisor does not write");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    as_(&server, &provincial)
        .await
        .record_receipt(receipt_request(CASE, "1.00", "PROVINCIAL1"))
        .await
        .expect("a higher court's own principal acts below it");
    // Listing principals pages through all of them, a page at a time.
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let page = admin
            .list_principals(pb::ListPrincipalsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("a page")
            .into_inner();
        seen += page.principals.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // The administrator, the harness's three, and the two added here.
    assert_eq!(seen, 6);
    server.stop().await;
}

/// An administrator cannot disable itself, nor the last enabled administrator of
/// 最高法: bootstrap runs only on an empty directory, so nobody could administer again.
#[tokio::test]
async fn the_last_national_administrator_stays_enabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let me = who(&server, &server.admin_token).await;
    let disable = |id: &str| pb::DisablePrincipalRequest {
        request_id: rid(),
        principal_id: id.into(),
        reason: "离职".into(),
    };
    let refused = admin
        .disable_principal(disable(&me.principal_id))
        .await
        .expect_err("an administrator does not disable itself");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("itself"), "{refused:?}");
    // A second national administrator may disable the first, who then may not
    // disable the second, now the last one.
    let second = admin
        .add_principal(pb::AddPrincipalRequest {
            request_id: rid(),
            name: "admin2".into(),
            roles: vec![pb::Role::Admin as i32],
            court_scopes: vec!["最高法".into()],
            ..Default::default()
        })
        .await
        .expect("a second administrator")
        .into_inner();
    let second_id = second.principal.expect("principal").principal_id;
    let refused =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&second.token).await)
            .disable_principal(disable(&second_id))
            .await
            .expect_err("nor does the second");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    pb::principals_client::PrincipalsClient::new(server.channel_as(&second.token).await)
        .disable_principal(disable(&me.principal_id))
        .await
        .expect("another national administrator remains");
    assert!(who_fails(&server, &server.admin_token).await);
    assert!(!who(&server, &second.token).await.principal_id.is_empty());
    server.stop().await;
}

async fn who_fails(server: &TestServer, token: &str) -> bool {
    pb::principals_client::PrincipalsClient::new(server.channel_as(token).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .is_err()
}

/// A certificate fingerprint is public: registering one that another principal
/// (enabled or not) holds would let the newcomer take over its mutual-TLS logins.
#[tokio::test]
async fn a_client_certificate_belongs_to_one_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let cert = "ab".repeat(32);
    let add = |name: &str, cert: String| pb::AddPrincipalRequest {
        request_id: rid(),
        name: name.into(),
        roles: vec![pb::Role::Clerk as i32],
        court_scopes: vec!["云0102".into()],
        client_cert_sha256: cert,
        ..Default::default()
    };
    let first = admin
        .add_principal(add("holder", cert.clone()))
        .await
        .expect("the first registration")
        .into_inner()
        .principal
        .expect("principal");
    let refused = admin
        .add_principal(add("thief", cert.to_uppercase()))
        .await
        .expect_err("the same fingerprint, however spelt, is taken");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("client certificate"),
        "{refused:?}"
    );
    admin
        .disable_principal(pb::DisablePrincipalRequest {
            request_id: rid(),
            principal_id: first.principal_id,
            reason: "调离".into(),
        })
        .await
        .expect("disabled");
    let refused = admin
        .add_principal(add("heir", cert))
        .await
        .expect_err("a disabled principal keeps its fingerprint");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    admin
        .add_principal(add("other", "cd".repeat(32)))
        .await
        .expect("another fingerprint is free");
    server.stop().await;
}

/// A journal watch outlives the authentication done when it opened: once its
/// principal is disabled it receives nothing written afterwards and ends with
/// UNAUTHENTICATED.
#[tokio::test]
async fn a_watch_ends_when_its_principal_is_disabled() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let auditor = principal(&server, &[Role::Auditor], &["最高法"]).await;
    let auditor_id = who(&server, &auditor).await.principal_id;
    let mut feed = pb::journal_client::JournalClient::new(server.channel_as(&auditor).await)
        .watch_journal(pb::WatchJournalRequest { from_sequence: 1 })
        .await
        .expect("watch")
        .into_inner();
    let bound = Duration::from_secs(20);
    // The watch is live: the entries so far arrive, the auditor's own addition last.
    loop {
        let e = tokio::time::timeout(bound, feed.message())
            .await
            .expect("an entry in time")
            .expect("stream")
            .expect("entry");
        let e = e.entry.expect("entry");
        if e.kind == pb::EntryKind::PrincipalAdded as i32 && e.memo.contains(&auditor_id) {
            break;
        }
    }
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    admin
        .disable_principal(pb::DisablePrincipalRequest {
            request_id: rid(),
            principal_id: auditor_id,
            reason: "调离".into(),
        })
        .await
        .expect("disabled");
    // An entry written after the disable, which the watch must not deliver.
    let later = admin
        .add_principal(pb::AddPrincipalRequest {
            request_id: rid(),
            name: "written-after".into(),
            roles: vec![pb::Role::Clerk as i32],
            court_scopes: vec!["云0102".into()],
            token_sha256: own_token().1,
            ..Default::default()
        })
        .await
        .expect("added")
        .into_inner()
        .principal
        .expect("principal");
    loop {
        let next = tokio::time::timeout(bound, feed.message())
            .await
            .expect("the stream answers in time");
        match next {
            // The disable's own entry may still go out: it commits before the
            // directory hears of it.
            Ok(Some(e)) => {
                let e = e.entry.expect("entry");
                assert!(
                    !e.memo.contains(&later.principal_id),
                    "delivered after the disable: {e:?}"
                );
                assert_eq!(e.kind, pb::EntryKind::PrincipalDisabled as i32, "{e:?}");
            }
            Ok(None) => panic!("the stream ended without UNAUTHENTICATED"),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                break;
            }
        }
    }
    server.stop().await;
}

/// No administrator can act as two people through credentials: it may not hold a
/// role that handles money, it is never shown the token of a principal that does, and
/// the token such a principal brings (only its hash reaching the administrator) signs
/// it in. A principal still rotates its own token and sees the new one.
#[tokio::test]
async fn an_administrator_never_holds_a_token_that_moves_money() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let add = |name: &str, roles: &[pb::Role], sha256: &str| pb::AddPrincipalRequest {
        request_id: rid(),
        name: name.into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        court_scopes: vec!["云0102".into()],
        token_sha256: sha256.into(),
        ..Default::default()
    };
    let refused_naming = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{status:?}"
        );
        status.message().to_owned()
    };
    // Without a hash (or certificate), no clerk, approver or finance principal.
    for role in [pb::Role::Clerk, pb::Role::Approver, pb::Role::Finance] {
        let why = refused_naming(
            admin
                .add_principal(add("no-hash", &[role], ""))
                .await
                .expect_err("needs its holder's own token"),
            "token_sha256",
        );
        assert!(why.contains("new-token"), "{why}");
    }
    // An administrator that approves too is refused, whatever its token.
    let why = refused_naming(
        admin
            .add_principal(add(
                "admin-approver",
                &[pb::Role::Admin, pb::Role::Approver],
                &own_token().1,
            ))
            .await
            .expect_err("separation of duties"),
        "roles",
    );
    assert!(why.contains("separation of duties"), "{why}");
    // Malformed hashes name the field.
    for bad in ["xyz", &"a".repeat(63), &"g".repeat(64), &"数".repeat(32)] {
        refused_naming(
            admin
                .add_principal(add("bad-hash", &[pb::Role::Clerk], bad))
                .await
                .expect_err("not a SHA-256"),
            "token_sha256",
        );
    }
    // The clerk's own token: the administrator sees only its hash and is shown nothing.
    let (clerk_token, clerk_sha) = own_token();
    let request = add("五华区书记员", &[pb::Role::Clerk], &clerk_sha);
    let added = admin
        .add_principal(request.clone())
        .await
        .expect("added")
        .into_inner();
    assert_eq!(added.token, "", "the administrator is shown no token");
    let clerk = added.principal.expect("principal");
    assert_eq!(
        who(&server, &clerk_token).await.principal_id,
        clerk.principal_id
    );
    // A retry is answered as the first time.
    let again = admin
        .add_principal(request)
        .await
        .expect("the same request")
        .into_inner();
    assert_eq!(again.principal, Some(clerk.clone()));
    assert_eq!(again.token, "");
    // Nobody else may register the same token.
    let taken = admin
        .add_principal(add("复制者", &[pb::Role::Auditor], &clerk_sha))
        .await
        .expect_err("a token is one principal's");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    // The administrator may not set a money principal's credential at all: shown a
    // drawn token, or setting one it made itself, it would hold the clerk's identity.
    let rotate = |id: &str, sha256: &str| pb::RotateTokenRequest {
        request_id: rid(),
        principal_id: id.into(),
        token_sha256: sha256.into(),
    };
    let (next_token, next_sha) = own_token();
    for brought in ["", next_sha.as_str()] {
        let refused = admin
            .rotate_token(rotate(&clerk.principal_id, brought))
            .await
            .expect_err("only the clerk sets the clerk's token");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("disable it"), "{refused:?}");
    }
    assert_eq!(
        who(&server, &clerk_token).await.principal_id,
        clerk.principal_id,
        "the refusals changed nothing"
    );
    // The clerk rotates its own token: to one it made (shown to nobody), then to one
    // the server draws, shown to the clerk alone; never to a hash it already holds.
    let mut own =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&clerk_token).await);
    let taken = own
        .rotate_token(rotate(&clerk.principal_id, &clerk_sha))
        .await
        .expect_err("a rotation changes the token");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let rotated = own
        .rotate_token(rotate(&clerk.principal_id, &next_sha))
        .await
        .expect("rotated to the holder's new token")
        .into_inner();
    assert_eq!(rotated.token, "");
    assert!(
        who_fails(&server, &clerk_token).await,
        "the old token is gone"
    );
    assert_eq!(
        who(&server, &next_token).await.principal_id,
        clerk.principal_id
    );
    let mut own =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&next_token).await);
    let mine = own
        .rotate_token(rotate(&clerk.principal_id, ""))
        .await
        .expect("a principal rotates its own token")
        .into_inner();
    assert_eq!(mine.token.len(), 64);
    assert!(who_fails(&server, &next_token).await);
    assert_eq!(
        who(&server, &mine.token).await.principal_id,
        clerk.principal_id
    );
    let admin_id = who(&server, &server.admin_token).await.principal_id;
    let denied = pb::principals_client::PrincipalsClient::new(server.channel_as(&mine.token).await)
        .rotate_token(rotate(&admin_id, &own_token().1))
        .await
        .expect_err("another's token is the administrator's to rotate");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(!who_fails(&server, &server.admin_token).await);
    // An auditor (no money role) may still be given a token the server draws.
    let auditor = admin
        .add_principal(add("审计", &[pb::Role::Auditor], ""))
        .await
        .expect("added")
        .into_inner();
    assert_eq!(auditor.token.len(), 64);
    assert_eq!(
        who(&server, &auditor.token).await.principal_id,
        auditor.principal.expect("principal").principal_id
    );
    // A guessable token's hash is taken (the service never sees the token), but the
    // token signs nobody in: only the generated shape does, refused like any unknown.
    let weak_sha: String = {
        use sha2::{Digest as _, Sha256};
        Sha256::digest(b"1234")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    admin
        .add_principal(add("弱口令", &[pb::Role::Clerk], &weak_sha))
        .await
        .expect("the hash is well-formed");
    let unknown =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&"0".repeat(64)).await)
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect_err("unknown");
    let weak = pb::principals_client::PrincipalsClient::new(server.channel_as("1234").await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("a guessable token signs nobody in");
    assert_eq!(weak.code(), Code::Unauthenticated);
    assert_eq!(weak.message(), unknown.message());
    // All of it holds after a restart, from the journal.
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    assert_eq!(
        who(&server, &mine.token).await.principal_id,
        clerk.principal_id
    );
    assert!(who_fails(&server, &clerk_token).await);
    server.stop().await;
}

/// A principal journaled with admin and a money role before AddPrincipal refused the
/// combination keeps its administration and gets no money call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_administrator_with_a_money_role_moves_no_money() {
    use case_escrow::domain::{text::len, CourtCode, RequestId, Text};
    use case_escrow::ledger::{Command, Request};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    TestServer::start(&data).await.stop().await;
    // Written past the API, as a journal from before the rule would hold it.
    let token = case_escrow::api::auth::new_token().expect("token");
    {
        let _guard = SPAWN_OR_OPEN.lock().await;
        let store = case_escrow::store::Store::open(&data).expect("store");
        store
            .handle()
            .write(Request {
                id: RequestId::parse(&uuid::Uuid::now_v7().to_string()).expect("id"),
                command: Command::AddPrincipal {
                    name: Text::required("旧管理员兼书记员", len::NAME).expect("name"),
                    roles: vec![Role::Admin, Role::Clerk],
                    courts: vec![CourtCode::parse("云0102").expect("court")],
                    supervises: Vec::new(),
                    approval_level: 1,
                    token_hash: case_escrow::domain::principal::token_sha256(&token),
                    cert_sha256: None,
                },
                principal: None,
            })
            .await
            .expect("journaled");
        store.close().await;
    }
    let server = TestServer::start(&data).await;
    pb::principals_client::PrincipalsClient::new(server.channel_as(&token).await)
        .list_principals(pb::ListPrincipalsRequest::default())
        .await
        .expect("its administration stays");
    let refused = CaseLedgerClient::new(server.channel_as(&token).await)
        .open_case_account(pb::OpenCaseAccountRequest::default())
        .await
        .expect_err("no money call");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("separation of duties"),
        "{refused:?}"
    );
    server.stop().await;
}

/// A token the server draws exists only in its answer. Lost on the way, the old one is
/// dead and a retry is refused; for the last national administrator that would lock
/// administration out for good, so it brings its own new token until there is another.
#[tokio::test]
async fn the_last_national_administrator_brings_its_own_new_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin =
        pb::principals_client::PrincipalsClient::new(server.channel_as(&server.admin_token).await);
    let me = who(&server, &server.admin_token).await.principal_id;
    let rotate = |sha256: &str| pb::RotateTokenRequest {
        request_id: rid(),
        principal_id: me.clone(),
        token_sha256: sha256.into(),
    };
    let refused = admin
        .rotate_token(rotate(""))
        .await
        .expect_err("a drawn token for the last national administrator");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("token_sha256"), "{refused:?}");
    assert_eq!(who(&server, &server.admin_token).await.principal_id, me);

    let (mine, mine_sha) = own_token();
    let rotated = admin
        .rotate_token(rotate(&mine_sha))
        .await
        .expect("rotated to a token it holds")
        .into_inner();
    assert_eq!(rotated.token, "");
    assert_eq!(who(&server, &mine).await.principal_id, me);

    let mut admin = pb::principals_client::PrincipalsClient::new(server.channel_as(&mine).await);
    let (_, second_sha) = own_token();
    admin
        .add_principal(pb::AddPrincipalRequest {
            request_id: rid(),
            name: "第二管理员".into(),
            roles: vec![pb::Role::Admin as i32],
            court_scopes: vec!["最高法".into()],
            token_sha256: second_sha,
            ..Default::default()
        })
        .await
        .expect("a second national administrator");
    let drawn = admin
        .rotate_token(rotate(""))
        .await
        .expect("with another, a drawn token is no risk")
        .into_inner();
    assert_eq!(who(&server, &drawn.token).await.principal_id, me);
    server.stop().await;
}
