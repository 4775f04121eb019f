//! Overload and faults over real gRPC: load shedding, deadlines and
//! retries, slow stream consumers.

use std::time::{Duration, Instant};

use headline_dedup::api::Limits;
use headline_dedup::app::SettingsBook;
use headline_dedup::pb;
use tonic::Code;

use crate::support::{Row, TestServer, fixture, headline, ingest};

const FIXTURE: &str = "uci-2014-03-12-sample.jsonl";

/// The fixture as request headlines, with ids made unique per copy.
fn batch(rows: &[Row], copy: usize) -> Vec<pb::Headline> {
    rows.iter().map(|r| pb::Headline { id: format!("{copy}-{}", r.id), ..r.headline() }).collect()
}

#[tokio::test]
async fn a_burst_beyond_the_limit_is_shed_quickly_and_accepted_work_completes() {
    let server = TestServer::start_with(SettingsBook::default(), Limits { max_batch: 1000, max_pending: 2 }).await;
    let rows = fixture(FIXTURE);
    let rows = &rows[..500];
    let mut calls = Vec::new();
    for copy in 0..20 {
        let mut client = server.client().await;
        let headlines = batch(rows, copy);
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = client.ingest(pb::IngestRequest { namespace: String::new(), headlines }).await;
            (result.map(|r| r.into_inner().assignments.len()), started.elapsed())
        }));
    }
    let mut accepted = 0;
    let mut shed = 0;
    for call in calls {
        let (result, took) = call.await.expect("call task");
        match result {
            Ok(answers) => accepted += answers,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(took < Duration::from_secs(1), "shed after {took:?}");
                shed += 1;
            }
        }
    }
    assert!(shed > 0, "twenty concurrent batches against a limit of two pending calls");
    assert!(accepted > 0);
    let mut client = server.client().await;
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines as usize, accepted, "every accepted headline is stored, no other");
}

#[tokio::test]
async fn a_retry_after_a_deadline_returns_the_original_assignments() {
    let server = TestServer::start_with(SettingsBook::default(), Limits { max_batch: 5000, max_pending: 64 }).await;
    let rows = fixture(FIXTURE);
    // Long batches of distinct headlines hold the namespace; short ones,
    // whose callers give up after 20 to 320 ms, are sent once those are
    // queued. A short call that is admitted before its deadline is applied
    // whole even after its caller left: its first retry is answered from
    // storage. One that is not admitted leaves nothing: its first retry is
    // assigned anew. Nothing in between.
    let mut long_calls = Vec::new();
    for take in 0..4 {
        let long: Vec<pb::Headline> = batch(&rows[..1000], take)
            .into_iter()
            .flat_map(|h| {
                (0..5).map(move |n| pb::Headline {
                    id: format!("{}-{n}", h.id),
                    text: format!("{} (take {n})", h.text),
                    ..h.clone()
                })
            })
            .collect();
        let mut client = server.client().await;
        long_calls.push(tokio::spawn(async move {
            client.ingest(pb::IngestRequest { namespace: String::new(), headlines: long }).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut short_calls = Vec::new();
    for n in 1..=16u64 {
        let headlines: Vec<pb::Headline> = batch(&rows[..20], 100 + n as usize);
        let mut client = server.client().await;
        short_calls.push(tokio::spawn(async move {
            let mut request =
                tonic::Request::new(pb::IngestRequest { namespace: String::new(), headlines: headlines.clone() });
            request.set_timeout(Duration::from_millis(20 * n));
            (client.ingest(request).await, headlines)
        }));
    }
    let mut timed_out = Vec::new();
    for call in short_calls {
        let (result, headlines) = call.await.expect("task");
        match result {
            Ok(_) => {}
            Err(status) => {
                assert!(matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded), "{status:?}");
                timed_out.push(headlines);
            }
        }
    }
    for call in long_calls {
        let answers = call.await.expect("task").expect("a long batch").into_inner().assignments;
        assert!(answers.iter().all(|a| a.error.is_none()));
    }
    let mut applied_after_the_deadline = 0;
    let mut client = server.client().await;
    for headlines in &timed_out {
        let retried = ingest(&mut client, headlines.clone()).await;
        let replayed = retried.iter().filter(|a| a.replayed).count();
        assert!(
            replayed == 0 || replayed == retried.len(),
            "a batch was applied in part: {replayed} of {}",
            retried.len()
        );
        if replayed == 0 {
            continue;
        }
        applied_after_the_deadline += 1;
        for (answer, sent) in retried.iter().zip(headlines).step_by(5) {
            let stored = client
                .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: sent.id.clone() })
                .await
                .expect("stored")
                .into_inner();
            let kind = stored.member.map(|m| m.kind);
            assert_eq!((Some(answer.kind), &answer.story_id), (kind, &stored.story_id), "{}", sent.id);
        }
    }
    assert!(
        applied_after_the_deadline > 0,
        "none of the {} calls cut short by their deadline had been admitted",
        timed_out.len()
    );
}

/// Headlines stored in namespace `name`.
async fn stored_in(server: &TestServer, name: &str) -> u64 {
    let mut client = server.client().await;
    let stats = client.get_stats(pb::GetStatsRequest { namespace: name.into() }).await.expect("stats").into_inner();
    stats.namespaces.first().map_or(0, |n| n.headlines)
}

#[tokio::test]
async fn a_stream_that_does_not_read_its_answers_is_held_back_and_others_proceed() {
    let server = TestServer::start().await;
    let mut slow = server.client().await;
    let rows = fixture(FIXTURE);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestStreamRequest>(4);
    let _replies = slow.ingest_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("stream");
    // Offer batches and never read an answer: once the unread answers fill
    // the transport's flow-control windows the server stops reading the
    // stream, and the client's sends back up until none gets through for
    // half a second.
    let mut offered = 0;
    let mut blocked_since: Option<Instant> = None;
    while offered < 20_000 {
        let message = pb::IngestStreamRequest {
            namespace: "stream".into(),
            headlines: batch(&rows[..10], offered),
            batch_id: offered.to_string(),
        };
        match tx.try_send(message) {
            Ok(()) => {
                offered += 1;
                blocked_since = None;
            }
            Err(_) if blocked_since.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) => break,
            Err(_) => {
                blocked_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert!(offered < 20_000, "the client never felt back-pressure: {offered} batches went through unread");
    let applied = stored_in(&server, "stream").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_in(&server, "stream").await, applied, "the server went on applying a stream nobody reads");
    assert!(applied < offered as u64 * 10, "the server applied all {offered} batches offered");

    let mut other = server.client().await;
    let started = Instant::now();
    let answers = ingest(&mut other, vec![headline("other", "Cat rescued from tree by firefighters", "")]).await;
    assert!(answers[0].error.is_none());
    assert!(started.elapsed() < Duration::from_secs(2), "another client waited {:?}", started.elapsed());
}
