//! Hostile or careless clients against the real binary: retries across the
//! retention period, refused items, made-up method names, namespaces by the
//! thousand and a flood of board calls. None of them may wedge, corrupt or
//! exhaust the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headline_dedup::api::timestamp;
use headline_dedup::pb::{self, MatchKind};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::support::{Row, Served, fixture, http_get};

const DAY_MS: i64 = 24 * 3_600_000;
const PKK: &str = "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq";
const FED: &str = "Fed raises interest rates by a quarter point";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn dated(id: &str, text: &str, published: i64) -> pb::Headline {
    pb::Headline { id: id.into(), text: text.into(), published_time: Some(timestamp(published)), ..Default::default() }
}

fn request(namespace: &str, headlines: Vec<pb::Headline>) -> pb::IngestRequest {
    pb::IngestRequest { namespace: namespace.into(), headlines }
}

fn get(id: &str) -> pb::GetHeadlineRequest {
    pb::GetHeadlineRequest { namespace: String::new(), id: id.into() }
}

#[tokio::test]
async fn a_retry_of_an_old_headline_beside_a_new_one_is_answered_and_the_namespace_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Served::durable(dir.path());
    let mut client = server.client().await;
    let now = now_ms();
    let old = dated("a", PKK, now - 40 * DAY_MS);
    client.ingest(request("", vec![old.clone()])).await.expect("an empty namespace takes any time");
    let answers = client
        .ingest(request("", vec![old, dated("b", FED, now)]))
        .await
        .expect("the retry and the new headline are answered")
        .into_inner()
        .assignments;
    assert!(answers[0].replayed && answers[0].error.is_none(), "{:?}", answers[0]);
    assert_eq!((answers[1].kind, &answers[1].error), (MatchKind::NewStory as i32, &None));
    // Every later call on the namespace is answered, and health says so.
    for i in 0..5 {
        let mut call = tonic::Request::new(request("", vec![dated(&format!("c{i}"), PKK, now)]));
        call.set_timeout(Duration::from_secs(5));
        let answers = client.ingest(call).await.expect("the namespace still answers").into_inner().assignments;
        assert!(answers[0].error.is_none(), "{:?}", answers[0]);
    }
    assert_eq!(
        client
            .get_headline(get("b"))
            .await
            .expect("b is stored")
            .into_inner()
            .member
            .and_then(|m| m.headline)
            .map(|h| h.id),
        Some("b".into())
    );
    assert_eq!(client.get_headline(get("a")).await.expect_err("a left with the retention").code(), Code::NotFound);
    assert!(server.healthy());
    assert!(server.terminate().success());
    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    assert!(client.get_headline(get("c4")).await.is_ok(), "what was acknowledged survives a restart");
}

#[tokio::test]
async fn a_refused_conflict_does_not_move_the_retention_clock_nor_does_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Served::durable(dir.path());
    let mut client = server.client().await;
    let k2 = now_ms() - 2 * DAY_MS;
    let stored = vec![dated("k1", PKK, k2 - 29 * DAY_MS), dated("k2", FED, k2)];
    client.ingest(request("", stored)).await.expect("stored");
    let refused = client
        .ingest(request("", vec![dated("k2", "Another text under the same id", k2 + 2 * DAY_MS)]))
        .await
        .expect("answered")
        .into_inner()
        .assignments;
    let error = refused[0].error.as_ref().expect("a conflict");
    assert_eq!(error.code, pb::ItemErrorCode::AlreadyExists as i32);
    assert!(client.get_headline(get("k1")).await.is_ok(), "k1 expired because of a refused item");
    // The newest headline goes, and the clock stays where it was, after a
    // restart too: k1 is still inside the retention period and a headline
    // 31 days older than k2 is still refused.
    let deleted = pb::DeleteHeadlinesRequest { namespace: String::new(), ids: vec!["k2".into()] };
    client.delete_headlines(deleted).await.expect("deleted");
    assert!(server.terminate().success());
    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    let late = client
        .ingest(request("", vec![dated("old", "Cat rescued from tree by firefighters", k2 - 31 * DAY_MS)]))
        .await
        .expect("answered")
        .into_inner()
        .assignments;
    assert_eq!(late[0].error.as_ref().map(|e| e.field.as_str()), Some("headlines[0].published_time"));
    assert!(client.get_headline(get("k1")).await.is_ok());
}

/// The number of series of a metric family in a `/metrics` page.
fn series(metrics: &str, name: &str) -> usize {
    metrics.lines().filter(|line| line.starts_with(&format!("{name}{{"))).count()
}

#[tokio::test]
async fn made_up_method_names_add_no_metric_series_and_are_refused_before_anything_else_without_the_token() {
    const TOKEN: &str = "t0ken";
    let server = Served::start_with(&["--in-memory", "--auth-token", TOKEN]);
    let channel = headline_dedup::client::channel(&server.addr, None).await.expect("channel");
    let mut grpc = tonic::client::Grpc::new(channel);
    let (_, before) = http_get(&server.web_addr, "/metrics");
    for (i, authorised) in (0..300).map(|i| (i, i % 2 == 0)) {
        grpc.ready().await.expect("ready");
        let mut call = tonic::Request::new(pb::GetStatsRequest::default());
        if authorised {
            call.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().expect("header"));
        }
        let path = PathAndQuery::try_from(format!("/made.up.Service{i}/Method{i}")).expect("path");
        let status = grpc
            .unary(call, path, tonic_prost::ProstCodec::<pb::GetStatsRequest, pb::GetStatsResponse>::default())
            .await
            .expect_err("no such method");
        let expected = if authorised { Code::Unimplemented } else { Code::Unauthenticated };
        assert_eq!(status.code(), expected, "{status:?}");
    }
    let (_, after) = http_get(&server.web_addr, "/metrics");
    for name in ["grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds_count"] {
        assert!(series(&after, name) <= series(&before, name) + 1, "{name}: {} series", series(&after, name));
    }
    assert!(
        after.contains(r#"grpc_service="unknown",grpc_method="unknown""#),
        "authorised calls are counted as unknown"
    );
}

#[tokio::test]
async fn namespaces_past_the_limit_are_refused_and_the_others_keep_working() {
    let server = Served::start_with(&["--in-memory", "--max-namespaces", "3"]);
    let mut client = server.client().await;
    for name in ["a", "b", "c"] {
        let answers = client.ingest(request(name, vec![dated("x", FED, now_ms())])).await.expect("created");
        assert!(answers.into_inner().assignments[0].error.is_none());
    }
    let status = client.ingest(request("d", vec![dated("x", FED, now_ms())])).await.expect_err("one too many");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--max-namespaces"), "{}", status.message());
    let answers = client.ingest(request("b", vec![dated("y", PKK, now_ms())])).await.expect("existing ones work");
    assert!(answers.into_inner().assignments[0].error.is_none());
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces.iter().map(|n| n.namespace.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_flood_of_board_calls_is_bounded_and_every_call_is_answered() {
    let server = Served::start();
    let mut client = server.client().await;
    let rows = fixture("uci-2014-03-12-sample.jsonl");
    for chunk in rows.chunks(500) {
        client.ingest(request("", chunk.iter().map(Row::headline).collect())).await.expect("stored");
    }
    let start = std::sync::Arc::new(std::sync::Barrier::new(64));
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let (addr, start) = (server.web_addr.clone(), std::sync::Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                http_get(&addr, "/api/stories?limit=200&order=size")
            })
        })
        .collect();
    let statuses: Vec<u16> = calls.into_iter().map(|c| c.join().expect("answered").0).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(refused > 0 && refused < 64, "{refused} of 64 simultaneous calls refused");
    let (status, _) = http_get(&server.web_addr, "/api/stories?limit=200");
    assert_eq!(status, 200, "the board answers again once the flood is over");
}
