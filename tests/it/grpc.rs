//! The service over real gRPC with a tonic client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use headline_dedup::core::types::{Headline as CoreHeadline, RawHeadline};

use headline_dedup::api::Limits;
use headline_dedup::pb::{self, MatchKind};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

use crate::support::{Row, TestServer, fixture, headline, ingest, model};

const PKK: &str = "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq";

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "headline_dedup.v1.DedupService"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.expect("check").into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_services_in_v1_and_v1alpha() {
    use tokio_stream::StreamExt;
    let server = TestServer::start().await;
    let channel = server.channel().await;

    use tonic_reflection::pb::v1 as r1;
    let mut v1 = r1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = r1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut replies = v1.server_reflection_info(tokio_stream::iter([request])).await.expect("v1").into_inner();
    let reply = replies.next().await.expect("a reply").expect("ok");
    let Some(r1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply.message_response
    else {
        panic!("unexpected v1 reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"headline_dedup.v1.DedupService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    use tonic_reflection::pb::v1alpha as ra;
    let mut v1alpha = ra::server_reflection_client::ServerReflectionClient::new(channel);
    let request = ra::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ra::server_reflection_request::MessageRequest::FileContainingSymbol(
            "headline_dedup.v1.DedupService".into(),
        )),
    };
    let mut replies =
        v1alpha.server_reflection_info(tokio_stream::iter([request])).await.expect("v1alpha").into_inner();
    let reply = replies.next().await.expect("a reply").expect("ok");
    assert!(
        matches!(reply.message_response, Some(ra::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{reply:?}"
    );
}

#[tokio::test]
async fn syndicated_copies_form_one_story_that_get_story_and_get_headline_agree_with() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let assignments = ingest(
        &mut client,
        vec![
            headline("ap-1", PKK, "Associated Press"),
            headline("abc-1", &format!("{PKK} - ABC News"), "ABC News"),
            headline("yahoo-1", PKK, "Yahoo News"),
        ],
    )
    .await;
    assert_eq!(assignments.len(), 3);
    let story_id = assignments[0].story_id.clone();
    assert!(!story_id.is_empty());
    assert!(assignments.iter().all(|a| a.story_id == story_id && a.error.is_none() && a.story_size == 3));
    let kinds: Vec<i32> = assignments.iter().map(|a| a.kind).collect();
    assert_eq!(kinds.iter().filter(|&&k| k == MatchKind::NewStory as i32).count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|&&k| k == MatchKind::ExactDuplicate as i32).count(), 2, "{kinds:?}");
    let first = assignments.iter().find(|a| a.kind == MatchKind::NewStory as i32).expect("a new story");
    for copy in assignments.iter().filter(|a| a.kind == MatchKind::ExactDuplicate as i32) {
        assert_eq!(copy.matched_headline_id, first.headline_id);
        assert_eq!(copy.similarity, 1.0);
    }

    let story = client
        .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: story_id.clone() })
        .await
        .expect("get story")
        .into_inner()
        .story
        .expect("a story");
    assert_eq!(story.size, 3);
    assert_eq!(story.members.len(), 3);
    assert_eq!(story.canonical_headline_id, assignments[0].canonical_headline_id);
    let mut sources: Vec<String> = story.sources.iter().map(|s| s.source.clone()).collect();
    sources.sort();
    assert_eq!(sources, ["ABC News", "Associated Press", "Yahoo News"]);

    for a in &assignments {
        let h = client
            .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: a.headline_id.clone() })
            .await
            .expect("get headline")
            .into_inner();
        assert_eq!(h.story_id, story_id);
        let stored = h.member.expect("the stored headline");
        assert_eq!(stored.kind, a.kind);
        assert_eq!(stored.matched_headline_id, a.matched_headline_id);
        let member = story.members.iter().find(|m| m.headline.as_ref().map(|x| &x.id) == Some(&a.headline_id));
        assert_eq!(member.map(|m| m.kind), Some(a.kind));
    }
}

#[tokio::test]
async fn invalid_items_get_errors_and_the_rest_of_the_batch_is_assigned() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let assignments = ingest(
        &mut client,
        vec![
            headline("ok-1", "Fed raises interest rates by a quarter point", "Reuters"),
            headline("empty", "   ", "Reuters"),
            headline("", "Fed lifts rates again", "Reuters"),
            headline("ok-2", "Cat rescued from tree by firefighters", "Local"),
        ],
    )
    .await;
    assert_eq!(assignments.len(), 4);
    for ok in [&assignments[0], &assignments[3]] {
        assert!(ok.error.is_none());
        assert!(!ok.story_id.is_empty());
    }
    let empty = assignments[1].error.as_ref().expect("blank text rejected");
    assert_eq!(empty.field, "headlines[1].text");
    assert_eq!(empty.code, pb::ItemErrorCode::InvalidArgument as i32);
    assert!(assignments[1].story_id.is_empty());
    let missing = assignments[2].error.as_ref().expect("missing id rejected");
    assert_eq!(missing.field, "headlines[2].id");
    assert!(assignments[2].story_id.is_empty());
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines, 2);
}

#[tokio::test]
async fn retries_replay_and_changed_text_conflicts() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = ingest(&mut client, vec![headline("a", PKK, "Reuters")]).await;
    let again = ingest(&mut client, vec![headline("a", PKK, "Reuters"), headline("a", "Something else", "")]).await;
    assert!(!first[0].replayed);
    assert!(again[0].replayed);
    assert_eq!(again[0].story_id, first[0].story_id);
    assert_eq!(again[0].kind, first[0].kind);
    let conflict = again[1].error.as_ref().expect("conflict");
    assert_eq!(conflict.code, pb::ItemErrorCode::AlreadyExists as i32);
    assert_eq!(conflict.field, "headlines[1].id");
}

#[tokio::test]
async fn missing_things_are_not_found_and_bad_requests_name_the_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    ingest(&mut client, vec![headline("a", PKK, "Reuters")]).await;
    for story_id in ["s999", "nonsense"] {
        let status = client
            .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: story_id.into() })
            .await
            .expect_err("no such story");
        assert_eq!(status.code(), Code::NotFound, "{story_id}");
    }
    let status = client
        .get_headline(pb::GetHeadlineRequest { namespace: "other".into(), id: "a".into() })
        .await
        .expect_err("no such namespace");
    assert_eq!(status.code(), Code::NotFound);

    let status = client
        .ingest(pb::IngestRequest { namespace: "Not Valid".into(), headlines: vec![headline("b", PKK, "")] })
        .await
        .expect_err("bad namespace");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = status.get_details_bad_request().expect("field violations").field_violations;
    assert_eq!(violations[0].field, "namespace");

    let status = client
        .ingest(pb::IngestRequest { namespace: String::new(), headlines: vec![] })
        .await
        .expect_err("empty batch");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn batches_over_the_limit_are_rejected_whole() {
    let server = TestServer::start_with(Default::default(), Limits { max_batch: 2, max_pending: 64 }).await;
    let mut client = server.client().await;
    let status = client
        .ingest(pb::IngestRequest {
            namespace: String::new(),
            headlines: (0..3).map(|i| headline(&i.to_string(), PKK, "")).collect(),
        })
        .await
        .expect_err("too many");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().expect("details").field_violations[0].field, "headlines");
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert!(stats.namespaces.is_empty(), "nothing was applied");
}

#[tokio::test]
async fn deadlines_are_honoured() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batch: Vec<pb::Headline> = (0..1000)
        .map(|i| headline(&i.to_string(), &format!("Headline number {i} about topic {}", i % 37), "Wire"))
        .collect();
    let started = Instant::now();
    client
        .cluster_batch(pb::ClusterBatchRequest { namespace: String::new(), headlines: batch.clone() })
        .await
        .expect("no deadline");
    let full = started.elapsed();

    let mut request = tonic::Request::new(pb::ClusterBatchRequest { namespace: String::new(), headlines: batch });
    request.set_timeout(Duration::from_millis(1));
    let started = Instant::now();
    let status = client.cluster_batch(request).await.expect_err("deadline exceeded");
    assert!(matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded), "{status:?}");
    assert!(started.elapsed() < full, "answered after {:?}, the full call took {full:?}", started.elapsed());
}

#[tokio::test]
async fn gzip_works_both_ways() {
    let server = TestServer::start().await;
    let mut client =
        server.client().await.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
    let assignments = ingest(&mut client, vec![headline("a", PKK, "Reuters")]).await;
    assert_eq!(assignments[0].kind, MatchKind::NewStory as i32);
}

#[tokio::test]
async fn the_stream_answers_each_batch_in_order() {
    use tokio_stream::StreamExt;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let batches = vec![
        pb::IngestStreamRequest {
            namespace: String::new(),
            headlines: vec![headline("1", PKK, "")],
            batch_id: "b1".into(),
        },
        pb::IngestStreamRequest {
            namespace: String::new(),
            headlines: vec![headline("2", PKK, ""), headline("3", "", "")],
            batch_id: "b2".into(),
        },
    ];
    let replies: Vec<pb::IngestStreamResponse> = client
        .ingest_stream(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner()
        .map(|r| r.expect("reply"))
        .collect()
        .await;
    assert_eq!(replies.iter().map(|r| r.batch_id.as_str()).collect::<Vec<_>>(), ["b1", "b2"]);
    assert_eq!(replies[1].assignments[0].kind, MatchKind::ExactDuplicate as i32);
    assert_eq!(replies[1].assignments[0].story_id, replies[0].assignments[0].story_id);
    assert!(replies[1].assignments[1].error.is_some());
}

#[tokio::test]
async fn match_is_a_dry_run_and_cluster_batch_stores_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    ingest(&mut client, vec![headline("a", PKK, "Reuters")]).await;
    let reply = client
        .r#match(pb::MatchRequest {
            namespace: String::new(),
            headline: Some(headline("", &format!("{PKK} | Yahoo"), "")),
            max_candidates: 5,
        })
        .await
        .expect("match")
        .into_inner();
    let assignment = reply.assignment.expect("assignment");
    assert_eq!(assignment.kind, MatchKind::ExactDuplicate as i32);
    assert_eq!(assignment.matched_headline_id, "a");
    let novel = client
        .r#match(pb::MatchRequest {
            namespace: String::new(),
            headline: Some(headline("", "Zebra Technologies to acquire Motorola's enterprise business", "")),
            max_candidates: 5,
        })
        .await
        .expect("match")
        .into_inner();
    let novel_assignment = novel.assignment.expect("assignment");
    assert_eq!(novel_assignment.kind, MatchKind::NewStory as i32);
    assert!(novel_assignment.story_id.is_empty());
    let considered: Vec<&str> = novel.candidates.iter().map(|c| c.headline_id.as_str()).collect();
    assert_eq!(considered, vec!["a"], "the one stored headline was considered, and refused");

    let clustered = client
        .cluster_batch(pb::ClusterBatchRequest {
            namespace: String::new(),
            headlines: vec![
                headline("x", PKK, ""),
                headline("y", &format!("{PKK} - CNN"), ""),
                headline("z", "Cat rescued from tree by firefighters", ""),
            ],
        })
        .await
        .expect("cluster")
        .into_inner();
    assert_eq!(clustered.stories.len(), 2);
    assert_eq!(clustered.stories[0].size, 2);
    assert_eq!(clustered.assignments[0].story_id, clustered.assignments[1].story_id);
    assert_ne!(clustered.assignments[0].story_id, clustered.assignments[2].story_id);

    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces.len(), 1);
    assert_eq!(stats.namespaces[0].headlines, 1, "match and cluster_batch stored nothing");
}

#[tokio::test]
async fn stories_are_listed_in_pages_and_tampered_tokens_are_rejected() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let topics = [
        "Fed raises interest rates by a quarter point",
        "Cat rescued from tree by firefighters",
        "Apple unveils new iPhone with larger screen",
        "Earthquake of magnitude 6 strikes off Chile coast",
        "Scientists unearth 5,000-year-old temple in Peru",
    ];
    let mut batch = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        for copy in 0..=i {
            batch.push(headline(&format!("{i}-{copy}"), topic, &format!("Outlet {copy}")));
        }
    }
    ingest(&mut client, batch).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_stories(pb::ListStoriesRequest {
                order: pb::StoryOrder::Size as i32,
                page_size: 2,
                page_token: token.clone(),
                min_size: 2,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        seen.extend(page.stories.iter().map(|s| s.size));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, [5, 4, 3, 2]);

    let first = client
        .list_stories(pb::ListStoriesRequest { page_size: 1, ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    let tampered = first.next_page_token.replacen('1', "2", 1);
    let status = client
        .list_stories(pb::ListStoriesRequest { page_size: 1, page_token: tampered, ..Default::default() })
        .await
        .expect_err("tampered token");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().expect("details").field_violations[0].field, "page_token");
}

#[tokio::test]
async fn deleted_headlines_leave_their_story() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let assignments = ingest(&mut client, vec![headline("a", PKK, ""), headline("b", PKK, "")]).await;
    let reply = client
        .delete_headlines(pb::DeleteHeadlinesRequest { namespace: String::new(), ids: vec!["a".into(), "zzz".into()] })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(reply.deleted_count, 1);
    assert_eq!(reply.not_found_ids, ["zzz"]);
    let story = client
        .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: assignments[0].story_id.clone() })
        .await
        .expect("story")
        .into_inner()
        .story
        .expect("story");
    assert_eq!(story.size, 1);
    assert_eq!(story.canonical_headline_id, "b");
    client
        .delete_headlines(pb::DeleteHeadlinesRequest { namespace: String::new(), ids: vec!["b".into()] })
        .await
        .expect("delete");
    let status = client
        .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: assignments[0].story_id.clone() })
        .await
        .expect_err("story is gone");
    assert_eq!(status.code(), Code::NotFound);
}

/// B-cubed F1 of a clustering against gold labels (both keyed by item).
fn bcubed_f1(gold: &HashMap<String, String>, predicted: &HashMap<String, String>) -> f64 {
    let mut pair_counts: HashMap<(&str, &str), f64> = HashMap::new();
    let mut gold_sizes: HashMap<&str, f64> = HashMap::new();
    let mut predicted_sizes: HashMap<&str, f64> = HashMap::new();
    for (id, g) in gold {
        let p = predicted[id].as_str();
        *pair_counts.entry((g.as_str(), p)).or_default() += 1.0;
        *gold_sizes.entry(g.as_str()).or_default() += 1.0;
        *predicted_sizes.entry(p).or_default() += 1.0;
    }
    let n = gold.len() as f64;
    let precision: f64 = pair_counts.iter().map(|((_, p), c)| c * c / predicted_sizes[p]).sum::<f64>() / n;
    let recall: f64 = pair_counts.iter().map(|((g, _), c)| c * c / gold_sizes[g]).sum::<f64>() / n;
    2.0 * precision * recall / (precision + recall)
}

#[tokio::test]
async fn a_labelled_file_over_grpc_clusters_well_and_like_the_engine_in_process() {
    use headline_dedup::app::{App, SettingsBook};
    use headline_dedup::core::normalize::stable_hash;

    // Times blurred to noon of the day and shuffled within it, as `eval
    // --order shuffle-day` does: the file's order would give the answer away.
    let mut rows = fixture("uci-2014-03-12-sample.jsonl");
    rows.sort_by_key(|r| stable_hash(format!("shuffle:{}", r.id).as_bytes()));
    for row in &mut rows {
        row.published_at = "2014-03-12T12:00:00Z".into();
    }
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for chunk in rows.chunks(128) {
        let assignments = ingest(&mut client, chunk.iter().map(Row::headline).collect()).await;
        assert!(assignments.iter().all(|a| a.error.is_none()));
    }
    let mut over_grpc = HashMap::new();
    for row in &rows {
        let h = client
            .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: row.id.clone() })
            .await
            .expect("stored")
            .into_inner();
        over_grpc.insert(row.id.clone(), h.story_id);
    }
    let gold: HashMap<String, String> = rows.iter().map(|r| (r.id.clone(), r.story.clone())).collect();
    let f1 = bcubed_f1(&gold, &over_grpc);
    assert!(f1 >= 0.9, "B-cubed F1 {f1:.3}");

    let app = App::in_memory(model(), SettingsBook::default()).expect("app");
    for chunk in rows.chunks(128) {
        let now = headline_dedup::dataset::parse_rfc3339("2014-03-12T12:00:00Z").expect("time");
        let items = chunk
            .iter()
            .map(|r| {
                let raw = RawHeadline { id: &r.id, text: &r.text, source: &r.source, url: "", published: Some(now) };
                CoreHeadline::parse(&raw, now, true)
            })
            .collect();
        app.ingest("default", items).expect("ingest");
    }
    let in_process: HashMap<String, String> = rows
        .iter()
        .map(|r| (r.id.clone(), app.headline("default", &r.id).expect("stored").story_id.to_string()))
        .collect();
    assert_eq!(in_process, over_grpc);
}
