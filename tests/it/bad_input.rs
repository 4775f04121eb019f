//! Bad input over real gRPC: each case gets a specific status or a per-item
//! error naming the field, the rest of the batch proceeds and the server
//! stays up.

use headline_dedup::pb::wkt::Timestamp;
use headline_dedup::pb::{self, MatchKind};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::support::{TestServer, headline, ingest};

const TEXT: &str = "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq";

/// The server still answers a good batch.
async fn still_serves(server: &TestServer) {
    let mut client = server.client().await;
    let answer = ingest(&mut client, vec![headline("still-ok", "Cat rescued from tree by firefighters", "")]).await;
    assert!(answer[0].error.is_none());
}

#[tokio::test]
async fn a_message_over_the_size_cap_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let status = client
        .ingest(pb::IngestRequest { namespace: String::new(), headlines: vec![headline("big", &huge, "")] })
        .await
        .expect_err("over the 4 MiB cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    let batch = pb::IngestStreamRequest { headlines: vec![headline("big", &huge, "")], ..Default::default() };
    let mut replies = client.ingest_stream(tokio_stream::iter([batch])).await.expect("stream opens").into_inner();
    let status = replies.message().await.expect_err("over the cap on a stream");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    still_serves(&server).await;
}

/// `Headline` with `text` as raw bytes, to send what a string field must
/// not hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawHeadline {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(bytes = "vec", tag = "2")]
    text: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawIngestRequest {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(message, repeated, tag = "2")]
    headlines: Vec<RawHeadline>,
}

#[tokio::test]
async fn a_string_that_is_not_utf8_is_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let request = RawIngestRequest {
        namespace: String::new(),
        headlines: vec![RawHeadline { id: "bad-utf8".into(), text: vec![b'F', b'e', b'd', 0xff, 0xfe] }],
    };
    let status = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static("/headline_dedup.v1.DedupService/Ingest"),
            tonic_prost::ProstCodec::<RawIngestRequest, pb::IngestResponse>::default(),
        )
        .await
        .expect_err("not UTF-8");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Headline.text"), "{}", status.message());
    still_serves(&server).await;
}

#[tokio::test]
async fn overlong_fields_are_per_item_errors() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let answers = ingest(
        &mut client,
        vec![
            headline("long-text", &"word ".repeat(400), ""),
            headline(&"i".repeat(300), TEXT, ""),
            headline("long-source", TEXT, &"s".repeat(3000)),
            headline("fine", TEXT, ""),
        ],
    )
    .await;
    let fields: Vec<&str> = answers.iter().map(|a| a.error.as_ref().map_or("", |e| e.field.as_str())).collect();
    assert_eq!(fields, ["headlines[0].text", "headlines[1].id", "headlines[2].source", ""]);
    assert_eq!(answers[3].kind, MatchKind::NewStory as i32);
}

#[tokio::test]
async fn invisible_characters_are_ignored_for_matching_and_kept_in_the_original() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let dirty =
        "Kurdish rebel\u{200b} group PKK says it is\u{202e} withdrawing its fighters\u{0007} from Turkey to Iraq";
    ingest(&mut client, vec![headline("clean", TEXT, "")]).await;
    let answer = ingest(&mut client, vec![headline("dirty", dirty, "")]).await;
    assert_eq!(answer[0].kind, MatchKind::ExactDuplicate as i32, "{:?}", answer[0]);
    assert_eq!(answer[0].matched_headline_id, "clean");
    let stored = client
        .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: "dirty".into() })
        .await
        .expect("stored")
        .into_inner();
    assert_eq!(stored.member.and_then(|m| m.headline).expect("headline").text, dirty);
}

#[tokio::test]
async fn homoglyphs_are_not_an_exact_match() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // Cyrillic А, е and о inside Latin words.
    let spoofed = "Kurdish rebel group PKK says it is withdrаwing its fightеrs frоm Turkey to Iraq";
    let answers = ingest(&mut client, vec![headline("latin", TEXT, ""), headline("mixed", spoofed, "")]).await;
    assert!(answers.iter().all(|a| a.error.is_none()));
    assert_ne!(answers[1].kind, MatchKind::ExactDuplicate as i32, "{:?}", answers[1]);
}

#[tokio::test]
async fn duplicate_ids_in_one_batch_are_a_no_op_or_a_conflict() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let answers = ingest(
        &mut client,
        vec![headline("a", TEXT, ""), headline("a", TEXT, ""), headline("a", "Cat rescued from tree", "")],
    )
    .await;
    assert!(answers[0].error.is_none() && !answers[0].replayed);
    assert!(answers[1].error.is_none() && answers[1].replayed, "{:?}", answers[1]);
    assert_eq!(answers[1].story_id, answers[0].story_id);
    let conflict = answers[2].error.as_ref().expect("a conflict");
    assert_eq!((conflict.code, conflict.field.as_str()), (pb::ItemErrorCode::AlreadyExists as i32, "headlines[2].id"));
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines, 1);
}

#[tokio::test]
async fn timestamps_missing_far_future_and_far_past() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let at = |seconds: i64, id: &str, text: &str| pb::Headline {
        published_time: Some(Timestamp { seconds, nanos: 0 }),
        ..headline(id, text, "")
    };
    let answers = ingest(
        &mut client,
        vec![
            headline("no-time", TEXT, ""),
            at(now + 3 * 86_400, "future", "Cat rescued from tree by firefighters"),
            at(now - 3 * 86_400, "recent", "Apple unveils a new iPhone"),
            at(now - 400 * 86_400, "ancient", "Storm hits the coast"),
            pb::Headline {
                published_time: Some(Timestamp { seconds: 0, nanos: -5 }),
                ..headline("bad-nanos", TEXT, "")
            },
        ],
    )
    .await;
    let field = |i: usize| answers[i].error.as_ref().map_or("", |e| e.field.as_str());
    assert_eq!(field(0), "", "a missing time is the arrival time");
    assert_eq!(field(1), "headlines[1].published_time", "more than a day ahead");
    assert_eq!(field(2), "");
    assert_eq!(field(3), "headlines[3].published_time", "older than the retention behind the newest headline");
    assert_eq!(field(4), "headlines[4].published_time", "nanos out of range");
    let stored = client
        .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: "no-time".into() })
        .await
        .expect("stored")
        .into_inner();
    let seconds = stored.member.and_then(|m| m.headline).and_then(|h| h.published_time).map_or(0, |t| t.seconds);
    assert!((seconds - now).abs() < 60, "stored with its arrival time: {seconds} vs {now}");
}
