//! Who gets in: the bearer token on every call but health checks, and TLS.

use std::path::Path;
use std::process::Command;

use headline_dedup::client::{Credentials, connect};
use headline_dedup::pb;
use tonic::Code;

use crate::support::{Served, binary};

const TOKEN: &str = "s3cret-token_42";

fn ingest_request() -> pb::IngestRequest {
    pb::IngestRequest {
        namespace: String::new(),
        headlines: vec![pb::Headline { id: "a".into(), text: "Fed raises rates".into(), ..Default::default() }],
    }
}

fn healthcheck(addr: &str, args: &[&str]) -> bool {
    Command::new(binary())
        .args(["healthcheck", "--addr", addr])
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn every_call_but_health_needs_the_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let server = Served::start_with(&["--in-memory", "--auth-token-file", &token_file.display().to_string()]);
    assert!(healthcheck(&server.addr, &[]), "health needs no token");

    for token in [None, Some("wrong"), Some("s3cret-token_4"), Some("s3cret-token_42x")] {
        let credentials = Credentials { tls_ca: None, auth_token: token.map(str::to_owned) };
        let mut client = connect(&server.addr, &credentials).await.expect("connect");
        let status = client.ingest(ingest_request()).await.expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        let status = client.get_stats(pb::GetStatsRequest::default()).await.expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
    }
    let mut reflection = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        headline_dedup::client::channel(&server.addr, None).await.expect("channel"),
    );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let status = reflection.server_reflection_info(tokio_stream::iter([request])).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let credentials = Credentials { tls_ca: None, auth_token: Some(TOKEN.into()) };
    let mut client = connect(&server.addr, &credentials).await.expect("connect");
    let answers = client.ingest(ingest_request()).await.expect("the right token").into_inner().assignments;
    assert_eq!(answers[0].kind, pb::MatchKind::NewStory as i32);
}

/// A CA and a certificate it signed for localhost and 127.0.0.1, as PEM
/// files in `dir`: (ca, cert, key).
pub fn certificates(dir: &Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.display().to_string()
    };
    (write("ca.pem", ca.pem()), write("cert.pem", cert.pem()), write("key.pem", key.serialize_pem()))
}

#[tokio::test]
async fn tls_serves_verified_clients_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(dir.path());
    let server = Served::start_checked(
        &["--in-memory", "--tls-cert", &cert, "--tls-key", &key, "--auth-token", TOKEN],
        &["--tls-ca", &ca],
    );
    assert!(healthcheck(&server.addr, &["--tls-ca", &ca]));
    assert!(!healthcheck(&server.addr, &[]), "plaintext is refused");

    let credentials = Credentials { tls_ca: Some(ca.clone().into()), auth_token: Some(TOKEN.into()) };
    let mut client = connect(&server.addr, &credentials).await.expect("connect over TLS");
    let answers = client.ingest(ingest_request()).await.expect("ingest over TLS").into_inner().assignments;
    assert!(answers[0].error.is_none());

    let output = Command::new(binary())
        .args(["stories", "--addr", &server.addr, "--tls-ca", &ca])
        .env("HEADLINE_DEDUP_AUTH_TOKEN", TOKEN)
        .output()
        .expect("stories over TLS");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Fed raises rates"));

    let (other_ca, _, _) = certificates(tempfile::tempdir().expect("temp dir").path());
    assert!(!healthcheck(&server.addr, &["--tls-ca", &other_ca]), "a certificate from another CA is not trusted");
}
