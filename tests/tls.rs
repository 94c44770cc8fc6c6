//! TLS and mutual TLS with certificates generated here: a TLS client with a token is
//! served; a plain client against a TLS server fails cleanly and the server goes on;
//! under mutual TLS a registered client certificate authenticates its principal, an
//! unregistered one does not, and a certificate from another CA is refused. The command
//! line reaches a TLS server with --tls-ca, and authenticates by certificate with
//! --tls-cert and --tls-key. A connection that never finishes its handshake is closed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use case_escrow::api::pb::{self, principals_client::PrincipalsClient};
use case_escrow::server::{Server, ServerConfig, TlsConfig};
use common::SPAWN_OR_OPEN;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    sha256_hex: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            sha256_hex: Sha256::digest(cert.der().as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

struct Running {
    addr: SocketAddr,
    admin_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), case_escrow::server::ServerError>>,
}

async fn start(dir: &std::path::Path, tls: TlsConfig) -> Running {
    let guard = SPAWN_OR_OPEN.lock().await;
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_owned(),
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    })
    .await
    .expect("server starts")
    .with_tls(tls);
    drop(guard);
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        admin_token: case_escrow::cli::auth::admin_token(dir).expect("admin.token"),
        stop,
        task,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("stops cleanly");
    }

    async fn tls_channel(&self, ca: &Ca, identity: Option<&Leaf>) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
        }
        Channel::from_shared(format!("https://{}", self.addr))
            .expect("uri")
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))
    }
}

fn config(server: &Leaf, client_ca: Option<&Ca>) -> TlsConfig {
    TlsConfig {
        cert_pem: server.cert_pem.clone().into_bytes(),
        key_pem: server.key_pem.clone().into_bytes(),
        client_ca_pem: client_ca.map(|c| c.pem().into_bytes()),
        handshake_timeout: case_escrow::server::TLS_HANDSHAKE_TIMEOUT,
    }
}

async fn who_am_i(channel: Channel, token: Option<&str>) -> Result<pb::Principal, tonic::Status> {
    let ch = match token {
        Some(t) => case_escrow::cli::auth::ByRole::new(channel, &[], t).expect("token"),
        None => case_escrow::cli::auth::ByRole::without_token(channel),
    };
    PrincipalsClient::new(ch)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_serves_tls_clients_and_a_plain_client_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server_leaf = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let server = start(dir.path(), config(&server_leaf, None)).await;

    let channel = server.tls_channel(&ca, None).await.expect("TLS connects");
    let me = who_am_i(channel.clone(), Some(&server.admin_token))
        .await
        .expect("served over TLS");
    assert_eq!(me.name, "admin");
    let refused = who_am_i(channel, None)
        .await
        .expect_err("a token is still needed");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A plain-text client gets an error, promptly, and the server goes on.
    let plain = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .expect("uri")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        who_am_i(channel, Some(&server.admin_token))
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), plain)
        .await
        .expect("a plain client is answered, not left hanging");
    assert!(outcome.is_err(), "a plain client was served: {outcome:?}");
    let again = server
        .tls_channel(&ca, None)
        .await
        .expect("TLS connects again");
    who_am_i(again, Some(&server.admin_token))
        .await
        .expect("the server still serves TLS clients");
    server.stop().await;
}

/// A peer that connects and never starts its handshake is closed once the handshake's
/// time is up, and clients that do speak TLS are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server_leaf = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let tls = TlsConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config(&server_leaf, None)
    };
    let server = start(dir.path(), tls).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("TCP connects");
    let channel = server.tls_channel(&ca, None).await.expect("TLS connects");
    who_am_i(channel, Some(&server.admin_token))
        .await
        .expect("served while another connection stalls");
    // The bound is far above the handshake's time: it only keeps a failure finite.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut byte))
        .await
        .expect("the silent connection is closed by the server");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server sent something: {read:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_maps_a_registered_client_certificate_to_its_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server_leaf = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let clerk_leaf = ca.leaf("clerk", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger_leaf = ca.leaf("stranger", ExtendedKeyUsagePurpose::ClientAuth);
    let server = start(dir.path(), config(&server_leaf, Some(&ca))).await;

    // Register the clerk's certificate, as the administrator over TLS with a token.
    let admin_channel = server.tls_channel(&ca, None).await.expect("TLS connects");
    let admin = case_escrow::cli::auth::ByRole::new(admin_channel, &[], &server.admin_token)
        .expect("token");
    let added = PrincipalsClient::new(admin)
        .add_principal(pb::AddPrincipalRequest {
            request_id: "add-clerk".into(),
            name: "clerk by certificate".into(),
            roles: vec![pb::Role::Clerk as i32],
            court_scopes: vec!["云0102".into()],
            client_cert_sha256: clerk_leaf.sha256_hex.clone(),
            ..Default::default()
        })
        .await
        .expect("added")
        .into_inner();
    // A clerk signs in by its certificate: the administrator is shown no token.
    assert_eq!(added.token, "");
    let clerk = added.principal.expect("principal");
    assert_eq!(clerk.client_cert_sha256, clerk_leaf.sha256_hex);

    // The certificate alone authenticates the clerk.
    let channel = server
        .tls_channel(&ca, Some(&clerk_leaf))
        .await
        .expect("mTLS connects");
    let me = who_am_i(channel, None)
        .await
        .expect("the certificate authenticates");
    assert_eq!(me.principal_id, clerk.principal_id);

    // A certificate of the right CA that no principal holds is not enough.
    let channel = server
        .tls_channel(&ca, Some(&stranger_leaf))
        .await
        .expect("mTLS connects");
    let refused = who_am_i(channel, None).await.expect_err("unregistered");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A certificate from another CA does not get through the handshake.
    let other_ca = Ca::new("other CA");
    let forged = other_ca.leaf("clerk", ExtendedKeyUsagePurpose::ClientAuth);
    let attempt = async {
        let channel = server.tls_channel(&ca, Some(&forged)).await?;
        who_am_i(channel, None)
            .await
            .map_err(|s| format!("{:?}", s.code()))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("answered promptly");
    assert!(
        outcome.is_err(),
        "a foreign certificate was accepted: {outcome:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_speaks_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("test CA");
    let server_leaf = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let clerk_leaf = ca.leaf("clerk", ExtendedKeyUsagePurpose::ClientAuth);
    let server = start(dir.path(), config(&server_leaf, Some(&ca))).await;
    let file = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let ca_file = file("ca.pem", &ca.pem());
    let cert_file = file("clerk.pem", &clerk_leaf.cert_pem);
    let key_file = file("clerk.key", &clerk_leaf.key_pem);
    let token_file = dir.path().join("admin.token").display().to_string();
    let https = format!("https://127.0.0.1:{}", server.addr.port());
    let cli = |extra: &[&str]| {
        // The command first: the connection flags belong to the subcommands.
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend(["--server".to_owned(), https.clone()]);
        common::run_cli(args)
    };
    let text = |o: &std::process::Output| {
        format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // The CA, and the name the server's certificate carries (it is reached by address).
    let trust = ["--tls-ca", ca_file.as_str(), "--tls-domain", "localhost"];
    let admin = ["--token-file", token_file.as_str()];
    let clerk = [
        "--tls-cert",
        cert_file.as_str(),
        "--tls-key",
        key_file.as_str(),
    ];
    fn with<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
        parts.concat()
    }

    let out = cli(&with(&[&["principal", "whoami", "--json"], &trust, &admin])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"admin\""),
        "{}",
        text(&out)
    );

    // The administrator registers the clerk's certificate from the command line too.
    let add = [
        "principal",
        "add",
        "--name",
        "clerk by certificate",
        "--role",
        "clerk",
        "--court",
        "云0102",
        "--cert-sha256",
        clerk_leaf.sha256_hex.as_str(),
        "--json",
    ];
    let out = cli(&with(&[&add, &trust, &admin])).await;
    assert!(out.status.success(), "{}", text(&out));

    // The certificate alone, no token, authenticates the clerk.
    let out = cli(&with(&[&["principal", "whoami", "--json"], &trust, &clerk])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("clerk by certificate"),
        "{}",
        text(&out)
    );

    // An https:// server without --tls-ca is a mistake named before connecting; a CA
    // for an http:// server too; a key without its certificate too.
    let out = cli(&["principal", "whoami", "--token-file", &token_file]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-ca"),
        "{}",
        text(&out)
    );
    let out = common::run_cli(
        [
            "health",
            "--server",
            &format!("http://{}", server.addr),
            "--tls-ca",
            &ca_file,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("https://"),
        "{}",
        text(&out)
    );
    let out = cli(&[
        "principal",
        "whoami",
        "--tls-ca",
        &ca_file,
        "--tls-key",
        &key_file,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{}",
        text(&out)
    );

    // A CA that did not sign the server's certificate: the handshake fails, the
    // command says it cannot reach the server, exit 4.
    let other = file("other-ca.pem", &Ca::new("other CA").pem());
    let untrusting = ["--tls-ca", other.as_str(), "--tls-domain", "localhost"];
    let out = cli(&with(&[&["principal", "whoami"], &untrusting, &admin])).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    server.stop().await;
}
