//! Namespaces managed at run time: created, read, listed, given other
//! settings (in effect on the next call, stored, kept over a restart),
//! deleted; and a server that creates none by itself.

use headline_dedup::pb::dedup_service_client::DedupServiceClient;
use headline_dedup::pb::{self, NamespaceSettings};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Served, headline};

const TEXT: &str = "Fed raises interest rates by a quarter point";

/// The threshold a `Match` of `text` in `namespace` is judged with.
async fn match_threshold(client: &mut DedupServiceClient<Channel>, namespace: &str, text: &str) -> f64 {
    let request =
        pb::MatchRequest { namespace: namespace.into(), headline: Some(headline("", text, "")), max_candidates: 5 };
    let answer = client.r#match(request).await.expect("match").into_inner();
    answer.assignment.and_then(|a| a.evidence).map(|e| e.threshold).expect("evidence")
}

async fn ingest(client: &mut DedupServiceClient<Channel>, namespace: &str, id: &str, text: &str) -> pb::Assignment {
    let request = pb::IngestRequest { namespace: namespace.into(), headlines: vec![headline(id, text, "")] };
    client.ingest(request).await.expect("ingest").into_inner().assignments.pop().expect("an assignment")
}

async fn get(client: &mut DedupServiceClient<Channel>, namespace: &str) -> Result<pb::Namespace, tonic::Status> {
    let request = pb::GetNamespaceRequest { namespace: namespace.into() };
    client.get_namespace(request).await.map(|r| r.into_inner().namespace.expect("a namespace"))
}

async fn update(
    client: &mut DedupServiceClient<Channel>,
    namespace: &str,
    settings: NamespaceSettings,
) -> Result<pb::Namespace, tonic::Status> {
    let request = pb::UpdateNamespaceRequest { namespace: namespace.into(), settings: Some(settings) };
    client.update_namespace(request).await.map(|r| r.into_inner().namespace.expect("a namespace"))
}

fn settings(namespace: &pb::Namespace) -> NamespaceSettings {
    namespace.settings.clone().expect("settings")
}

#[tokio::test]
async fn a_threshold_raised_through_update_namespace_shows_in_the_next_match_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().display().to_string();
    let mut server = Served::durable(dir.path());
    let mut client = server.client().await;
    ingest(&mut client, "news", "a", TEXT).await;
    assert_eq!(match_threshold(&mut client, "news", "Yellen hints at more hikes").await, 0.3);

    let raised = NamespaceSettings { story_threshold: Some(0.55), ..Default::default() };
    let updated = update(&mut client, "news", raised).await.expect("update");
    assert_eq!(settings(&updated).story_threshold, Some(0.55));
    assert_eq!(updated.own_settings, ["story_threshold"]);
    assert_eq!(updated.stats.map(|s| s.headlines), Some(1), "its headlines stay");
    assert_eq!(match_threshold(&mut client, "news", "Yellen hints at more hikes").await, 0.55);
    let replayed = ingest(&mut client, "news", "a", TEXT).await;
    assert!(replayed.replayed, "what it stored is still there: {replayed:?}");

    assert!(server.terminate().success());
    // The configuration's settings change too; the namespace's own one wins.
    let server = Served::start_with(&["--data-dir", &data_dir, "--set", "story_threshold=0.4,candidates=7"]);
    let mut client = server.client().await;
    let reloaded = get(&mut client, "news").await.expect("get");
    assert_eq!((settings(&reloaded).story_threshold, settings(&reloaded).candidates), (Some(0.55), Some(7)));
    assert_eq!(match_threshold(&mut client, "news", "Yellen hints at more hikes").await, 0.55);
    assert_eq!(match_threshold(&mut client, "other", "Yellen hints at more hikes").await, 0.4);
}

#[tokio::test]
async fn create_get_list_and_the_refusals_of_each() {
    let server = Served::start();
    let mut client = server.client().await;
    let lexical = NamespaceSettings { embedder: Some("lexical".into()), ..Default::default() };
    let request = pb::CreateNamespaceRequest { namespace: "wire".into(), settings: Some(lexical.clone()) };
    let created = client.create_namespace(request.clone()).await.expect("create").into_inner().namespace;
    let created = created.expect("a namespace");
    assert_eq!((created.name.as_str(), settings(&created).embedder.as_deref()), ("wire", Some("lexical")));
    let again = client.create_namespace(request).await.expect_err("it exists");
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    ingest(&mut client, "default", "a", TEXT).await;
    let listed = client.list_namespaces(pb::ListNamespacesRequest {}).await.expect("list").into_inner();
    let names: Vec<&str> = listed.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["default", "wire"]);

    let missing = get(&mut client, "nowhere").await.expect_err("no such namespace");
    assert_eq!(missing.code(), Code::NotFound);
    let embedder = update(&mut client, "default", lexical.clone()).await.expect_err("it holds headlines");
    assert_eq!(embedder.code(), Code::FailedPrecondition, "{embedder:?}");
    assert!(embedder.message().contains("embedder"), "{}", embedder.message());
    let mixed = NamespaceSettings { embedder: Some("mixed".into()), ..Default::default() };
    let empty = update(&mut client, "wire", mixed).await.expect("an empty namespace may change its embedder");
    assert_eq!(settings(&empty).embedder.as_deref(), Some("mixed"));
    let bad = NamespaceSettings { story_threshold: Some(1.5), ..Default::default() };
    let refused = update(&mut client, "default", bad).await.expect_err("out of range");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("settings.story_threshold"), "{}", refused.message());
    assert_eq!(settings(&get(&mut client, "default").await.expect("get")).story_threshold, Some(0.3), "unchanged");
    let nothing = update(&mut client, "default", NamespaceSettings::default()).await.expect_err("no change");
    assert_eq!(nothing.code(), Code::InvalidArgument);
    let named = pb::CreateNamespaceRequest { namespace: "Bad Name".into(), settings: None };
    assert_eq!(client.create_namespace(named).await.expect_err("bad name").code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_deleted_namespace_is_gone_with_its_data_and_stays_gone_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Served::durable(dir.path());
    let mut client = server.client().await;
    ingest(&mut client, "news", "a", TEXT).await;
    ingest(&mut client, "news", "b", "Yellen hints at more hikes").await;
    ingest(&mut client, "sport", "a", "Liverpool beat Chelsea 2-1").await;
    let request = pb::DeleteNamespaceRequest { namespace: "news".into() };
    let deleted = client.delete_namespace(request.clone()).await.expect("delete").into_inner();
    assert_eq!(deleted.headlines, 2);
    assert_eq!(get(&mut client, "news").await.expect_err("gone").code(), Code::NotFound);
    assert_eq!(client.delete_namespace(request).await.expect_err("gone").code(), Code::NotFound);
    let (_, metrics) = crate::support::http_get(&server.web_addr, "/metrics");
    assert!(!metrics.contains("namespace=\"news\""), "its metric series went:\n{metrics}");

    assert!(server.terminate().success());
    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    assert_eq!(get(&mut client, "news").await.expect_err("still gone").code(), Code::NotFound);
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces.iter().map(|n| n.namespace.as_str()).collect::<Vec<_>>(), ["sport"]);
    let fresh = ingest(&mut client, "news", "a", TEXT).await;
    assert!(!fresh.replayed && fresh.story_id == "s1", "a new namespace of the same name: {fresh:?}");
}

#[tokio::test]
async fn without_auto_create_an_unknown_namespace_is_not_found_until_it_is_created() {
    let server = Served::start_with(&["--in-memory", "--auto-create-namespaces", "false"]);
    let mut client = server.client().await;
    let request = pb::IngestRequest { namespace: "news".into(), headlines: vec![headline("a", TEXT, "")] };
    let refused = client.ingest(request.clone()).await.expect_err("no such namespace");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let matched =
        pb::MatchRequest { namespace: "news".into(), headline: Some(headline("", TEXT, "")), max_candidates: 1 };
    assert_eq!(client.r#match(matched).await.expect_err("no such namespace").code(), Code::NotFound);
    let create = pb::CreateNamespaceRequest { namespace: "news".into(), settings: None };
    client.create_namespace(create).await.expect("create");
    let answer = client.ingest(request).await.expect("ingest").into_inner();
    assert!(answer.assignments.iter().all(|a| a.error.is_none()), "{answer:?}");
}

#[tokio::test]
async fn changing_or_deleting_a_namespace_needs_the_admin_token() {
    let server = Served::start_with(&["--in-memory", "--auth-token", "client-secret", "--admin-token", "admin-secret"]);
    let call = |token: &'static str| {
        let addr = server.addr.clone();
        async move {
            let credentials = headline_dedup::client::Credentials { tls_ca: None, auth_token: Some(token.into()) };
            headline_dedup::client::connect(&addr, &credentials).await.expect("connect")
        }
    };
    let mut client = call("client-secret").await;
    let create = pb::CreateNamespaceRequest { namespace: "news".into(), settings: None };
    let refused = client.create_namespace(create.clone()).await.expect_err("not the admin token");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut admin = call("admin-secret").await;
    admin.create_namespace(create).await.expect("the admin token may");
    let raised = NamespaceSettings { story_threshold: Some(0.5), ..Default::default() };
    let request = pb::UpdateNamespaceRequest { namespace: "news".into(), settings: Some(raised) };
    assert_eq!(client.update_namespace(request).await.expect_err("admin").code(), Code::PermissionDenied);
    let request = pb::DeleteNamespaceRequest { namespace: "news".into() };
    assert_eq!(client.delete_namespace(request.clone()).await.expect_err("admin").code(), Code::PermissionDenied);
    client.get_namespace(pb::GetNamespaceRequest { namespace: "news".into() }).await.expect("reading is not");
    admin.delete_namespace(request).await.expect("the admin token may");
}
