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
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let headlines = batch(&fixture(FIXTURE)[..1000], 0);
    let mut request = tonic::Request::new(pb::IngestRequest { namespace: String::new(), headlines: headlines.clone() });
    request.set_timeout(Duration::from_millis(1));
    let status = client.ingest(request).await.expect_err("deadline exceeded");
    assert!(matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded), "{status:?}");

    // The batch was admitted before the deadline passed: it is applied
    // whole, and the retry is answered from storage.
    let retried = loop {
        let answers = ingest(&mut client, headlines.clone()).await;
        if answers.iter().all(|a| a.replayed) {
            break answers;
        }
        assert!(answers.iter().all(|a| a.error.is_none()), "a retry is never rejected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (answer, sent) in retried.iter().zip(&headlines).step_by(50) {
        let stored = client
            .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: sent.id.clone() })
            .await
            .expect("stored")
            .into_inner();
        assert_eq!((answer.kind, &answer.story_id), (stored.kind, &stored.story_id), "{}", sent.id);
    }
}

#[tokio::test]
async fn a_stream_that_does_not_read_its_answers_holds_a_bounded_buffer_and_others_proceed() {
    let server = TestServer::start().await;
    let mut slow = server.client().await;
    let rows = fixture(FIXTURE);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::IngestStreamRequest>(1000);
    let _replies = slow.ingest_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("stream");
    // Offer many batches and never read an answer: the server stops reading
    // once its few answers are buffered, so the client's sends back up.
    let mut offered = 0;
    for copy in 0..200 {
        let message = pb::IngestStreamRequest {
            headlines: batch(&rows[..10], copy),
            batch_id: copy.to_string(),
            ..Default::default()
        };
        if tx.try_send(message).is_err() {
            break;
        }
        offered += 1;
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut other = server.client().await;
    let started = Instant::now();
    let answers = ingest(&mut other, vec![headline("other", "Cat rescued from tree by firefighters", "")]).await;
    assert!(answers[0].error.is_none());
    assert!(started.elapsed() < Duration::from_secs(2), "another client waited {:?}", started.elapsed());
    let stats = other.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    let stored = stats.namespaces[0].headlines as usize - 1;
    assert!(
        stored < offered * 10,
        "the server applied {stored} of {} offered headlines without answers being read",
        offered * 10
    );
}
