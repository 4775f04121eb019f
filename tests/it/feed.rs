//! The story change feed: WatchStories and ListStoryChanges, in order,
//! resumed across a SIGKILL, through grpcurl, and with a watcher too slow
//! to keep up.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use headline_dedup::api::Limits;
use headline_dedup::app::{App, SettingsBook};
use headline_dedup::pb::dedup_service_client::DedupServiceClient;
use headline_dedup::pb::watch_stories_response::Event;
use headline_dedup::pb::{self, StoryChangeKind};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::support::{Served, TestServer, fixture, grpcurl, headline, model};

const FIXTURE: &str = "uci-2014-03-12-sample.jsonl";

/// Two stories, then a headline that joins the second and merges the
/// first into it.
const MERGING: [(&str, &str); 3] = [
    ("a", "Fed raises interest rates by a quarter point"),
    ("b", "Yellen says more hikes may follow as inflation climbs"),
    ("c", "Fed raises rates a quarter point as Yellen says more hikes may follow"),
];

/// The longest a test waits for the next message of a stream.
const PATIENCE: Duration = Duration::from_secs(60);

pub async fn watch(
    client: &mut DedupServiceClient<Channel>,
    after_sequence: Option<u64>,
) -> Result<Streaming<pb::WatchStoriesResponse>, tonic::Status> {
    let request = pb::WatchStoriesRequest { namespace: String::new(), after_sequence, progress_interval_ms: 100 };
    client.watch_stories(request).await.map(tonic::Response::into_inner)
}

/// The next message of a stream: a change, a progress, or the error that
/// ended it (`None` at a clean end).
pub async fn next(stream: &mut Streaming<pb::WatchStoriesResponse>) -> Option<Result<Event, tonic::Status>> {
    let message = tokio::time::timeout(PATIENCE, stream.message()).await.expect("the stream answers in time");
    match message {
        Ok(Some(response)) => Some(Ok(response.event.expect("an event"))),
        Ok(None) => None,
        Err(status) => Some(Err(status)),
    }
}

/// The changes of a stream until it reports progress at `sequence` or
/// beyond.
async fn changes_until(stream: &mut Streaming<pb::WatchStoriesResponse>, sequence: u64) -> Vec<pb::StoryChange> {
    let mut changes = Vec::new();
    loop {
        match next(stream).await {
            Some(Ok(Event::Change(change))) => changes.push(change),
            Some(Ok(Event::Progress(progress))) if progress.sequence >= sequence => return changes,
            Some(Ok(Event::Progress(_))) => {}
            other => panic!("the stream ended early: {other:?}"),
        }
    }
}

fn kinds(changes: &[pb::StoryChange]) -> Vec<(StoryChangeKind, String, String)> {
    changes.iter().map(|c| (c.kind(), c.story_id.clone(), c.merged_into_story_id.clone())).collect()
}

async fn ingest_one(client: &mut DedupServiceClient<Channel>, id: &str, text: &str) -> pb::Assignment {
    let request = pb::IngestRequest { namespace: String::new(), headlines: vec![headline(id, text, "")] };
    let mut answer = client.ingest(request).await.expect("ingest").into_inner().assignments;
    answer.pop().expect("an assignment")
}

/// Every stored change after `after`, page by page.
pub async fn listed(client: &mut DedupServiceClient<Channel>, mut after: u64) -> Vec<pb::StoryChange> {
    let mut all = Vec::new();
    loop {
        let request = pb::ListStoryChangesRequest { namespace: String::new(), after_sequence: after, page_size: 7 };
        let page = client.list_story_changes(request).await.expect("list changes").into_inner();
        let Some(last) = page.changes.last() else { return all };
        after = last.sequence;
        all.extend(page.changes);
    }
}

/// The stories a consumer holds after applying `changes` in order: id →
/// (size, canonical headline).
fn applied(changes: &[pb::StoryChange]) -> BTreeMap<String, (u32, String)> {
    let mut stories = BTreeMap::new();
    for change in changes {
        match change.kind() {
            StoryChangeKind::Created | StoryChangeKind::Updated => {
                stories.insert(change.story_id.clone(), (change.size, change.canonical_headline_id.clone()));
            }
            StoryChangeKind::Merged | StoryChangeKind::Deleted => {
                assert!(stories.remove(&change.story_id).is_some(), "{change:?} names a story not held");
            }
            StoryChangeKind::Unspecified => panic!("an unspecified change: {change:?}"),
        }
    }
    stories
}

/// The stories as ListStories gives them, in the form of [`applied`].
async fn current(client: &mut DedupServiceClient<Channel>) -> BTreeMap<String, (u32, String)> {
    let mut stories = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListStoriesRequest { page_size: 1000, page_token, ..Default::default() };
        let page = client.list_stories(request).await.expect("list stories").into_inner();
        for story in page.stories {
            stories.insert(story.story_id, (story.size, story.canonical_headline_id));
        }
        if page.next_page_token.is_empty() {
            return stories;
        }
        page_token = page.next_page_token;
    }
}

fn sequences(changes: &[pb::StoryChange]) -> Vec<u64> {
    changes.iter().map(|c| c.sequence).collect()
}

#[tokio::test]
async fn a_watcher_sees_two_stories_created_then_the_survivor_updated_and_the_other_merged_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let absent = watch(&mut client, None).await.expect_err("an unknown namespace is refused");
    assert_eq!(absent.code(), Code::NotFound, "{absent:?}");
    let first = ingest_one(&mut client, MERGING[0].0, MERGING[0].1).await;
    // From now on: the first story was created before the watch began.
    let mut live = watch(&mut client, None).await.expect("watch");
    assert!(matches!(next(&mut live).await, Some(Ok(Event::Progress(pb::WatchProgress { sequence: 1 })))));
    let second = ingest_one(&mut client, MERGING[1].0, MERGING[1].1).await;
    let third = ingest_one(&mut client, MERGING[2].0, MERGING[2].1).await;
    assert_ne!(first.story_id, second.story_id, "two stories");
    assert_eq!((third.story_id.as_str(), third.story_size), (second.story_id.as_str(), 3), "one story of three");
    let seen = changes_until(&mut live, 4).await;
    use StoryChangeKind::{Created, Merged, Updated};
    let (s1, s2) = (first.story_id.clone(), second.story_id.clone());
    assert_eq!(
        kinds(&seen),
        vec![(Created, s2.clone(), String::new()), (Updated, s2.clone(), String::new()), (Merged, s1.clone(), s2)]
    );
    assert_eq!(sequences(&seen), vec![2, 3, 4]);
    assert_eq!(seen[1].size, 3, "the survivor's size after the merge");

    // From the start, from the store: created, created, updated, merged.
    let mut replay = watch(&mut client, Some(0)).await.expect("watch from the start");
    let all = changes_until(&mut replay, 4).await;
    assert_eq!(kinds(&all)[0], (Created, s1, String::new()));
    assert_eq!(all[1..], seen[..]);
    assert_eq!(listed(&mut client, 0).await, all, "ListStoryChanges gives the same feed");
    assert_eq!(listed(&mut client, 2).await, seen[1..], "and resumes after a sequence");
    assert_eq!(applied(&all), current(&mut client).await, "the feed applied in order is the story list");
    let listing = client.list_stories(pb::ListStoriesRequest::default()).await.expect("list").into_inner();
    assert_eq!(listing.story_change_sequence, 4);

    let ahead = watch(&mut client, Some(5)).await.expect_err("a sequence past the feed is refused");
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
}

#[tokio::test]
async fn resuming_from_a_trimmed_change_fails_out_of_range_with_the_earliest_kept() {
    let settings = SettingsBook::parse(["change_feed_length=2"]).expect("settings");
    let server = TestServer::start_with(settings, Limits { max_batch: 1000, max_pending: 64 }).await;
    let mut client = server.client().await;
    for (id, text) in MERGING {
        ingest_one(&mut client, id, text).await;
    }
    let status = watch(&mut client, Some(1)).await.expect_err("changes 2 and 3 are no longer kept");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("the earliest is 3"), "{}", status.message());
    use tonic_types::StatusExt;
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.metadata.get("earliest_sequence").map(String::as_str), Some("3"));
    let listed = client
        .list_story_changes(pb::ListStoryChangesRequest { after_sequence: 0, ..Default::default() })
        .await
        .expect_err("ListStoryChanges refuses it too");
    assert_eq!(listed.code(), Code::OutOfRange);
    let mut resumed = watch(&mut client, Some(2)).await.expect("from the earliest kept");
    assert_eq!(sequences(&changes_until(&mut resumed, 4).await), vec![3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_never_holds_up_ingest_and_resumes_after_resource_exhausted() {
    let app = App::in_memory(model(), SettingsBook::default()).expect("app").with_watch_buffer(8);
    let server = TestServer::start_app(app, Limits { max_batch: 1000, max_pending: 64 }).await;
    let mut client = server.client().await;
    let rows = fixture(FIXTURE);
    // The file four times over under new ids: every later pass updates
    // the stories the first one created, batch after batch.
    let batches: Vec<Vec<pb::Headline>> = (0..4)
        .flat_map(|pass| {
            rows.chunks(16).map(move |c| {
                c.iter().map(|r| pb::Headline { id: format!("{}-{pass}", r.id), ..r.headline() }).collect()
            })
        })
        .collect();
    let mut batches = batches.into_iter();
    let first = batches.next().expect("a batch");
    client.ingest(pb::IngestRequest { namespace: String::new(), headlines: first }).await.expect("ingest");
    // A client that lets the server send it a kilobyte at a time, and
    // then does not read at all.
    let stalled_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await
        .expect("connect");
    let mut stalled = watch(&mut DedupServiceClient::new(stalled_channel), Some(0)).await.expect("watch");
    let ingest = async {
        for headlines in batches {
            client.ingest(pb::IngestRequest { namespace: String::new(), headlines }).await.expect("ingest");
        }
    };
    tokio::time::timeout(Duration::from_secs(300), ingest).await.expect("ingest finishes with a watcher stalled");
    let latest = listed(&mut client, 0).await.last().map(|c| c.sequence).expect("changes");
    assert!(latest > 500, "enough changes to overflow the buffers: {latest}");

    let mut received = Vec::new();
    let ended = loop {
        match next(&mut stalled).await {
            Some(Ok(Event::Change(change))) => received.push(change),
            Some(Ok(Event::Progress(_))) => {}
            Some(Err(status)) => break status,
            None => panic!("the stream ended without an error after {} changes", received.len()),
        }
    };
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    let seen = received.last().map_or(0, |c| c.sequence);
    assert!(ended.message().contains(&format!("after_sequence {seen}")), "{}", ended.message());
    assert!(seen < latest, "the watcher was ended before it caught up");
    let mut resumed = watch(&mut client, Some(seen)).await.expect("resume");
    received.extend(changes_until(&mut resumed, latest).await);
    assert_eq!(sequences(&received), (1..=latest).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(applied(&received), current(&mut client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_across_a_sigkill_without_a_gap_or_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Served::durable(dir.path());
    let rows = fixture(FIXTURE);
    let batches: Vec<Vec<pb::Headline>> = rows.chunks(16).map(|c| c.iter().map(|r| r.headline()).collect()).collect();
    let ingest = |addr: String, batches: Vec<Vec<pb::Headline>>| async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
        let Ok(channel) = channel.connect().await else { return 0 };
        let mut client = DedupServiceClient::new(channel);
        let mut acknowledged = 0;
        for headlines in batches {
            if client.ingest(pb::IngestRequest { namespace: String::new(), headlines }).await.is_err() {
                break;
            }
            acknowledged += 1;
        }
        acknowledged
    };
    // Half the file, then a watcher from the start, then the rest with a
    // SIGKILL in the middle of it.
    let half = batches.len() / 2;
    assert_eq!(ingest(server.addr.clone(), batches[..half].to_vec()).await, half);
    let mut client = server.client().await;
    let mut stream = watch(&mut client, Some(0)).await.expect("watch");
    let mut received = Vec::new();
    while received.len() < 10 {
        if let Some(Ok(Event::Change(change))) = next(&mut stream).await {
            received.push(change);
        }
    }
    let producer = tokio::spawn(ingest(server.addr.clone(), batches[half..].to_vec()));
    let mut until_kill = 40;
    let ended = loop {
        match next(&mut stream).await {
            Some(Ok(Event::Change(change))) => {
                received.push(change);
                until_kill -= 1;
                if until_kill == 0 {
                    server.kill();
                }
            }
            Some(Ok(Event::Progress(_))) => {}
            Some(Err(status)) => break status,
            None => break tonic::Status::unknown("ended"),
        }
    };
    assert!(until_kill <= 0, "the server was killed mid-stream: {ended:?}");
    let acknowledged = producer.await.expect("producer");
    assert!(half + acknowledged < batches.len(), "the kill cut the ingest short");

    let server = Served::durable(dir.path());
    // The batches that were not acknowledged, again (those that committed
    // answer replayed and change nothing).
    assert_eq!(
        ingest(server.addr.clone(), batches[half + acknowledged..].to_vec()).await,
        batches.len() - half - acknowledged
    );
    let mut client = server.client().await;
    let stored = listed(&mut client, 0).await;
    let latest = stored.last().map(|c| c.sequence).expect("changes");
    let seen = received.last().map(|c| c.sequence).expect("changes");
    let mut resumed = watch(&mut client, Some(seen)).await.expect("resume");
    received.extend(changes_until(&mut resumed, latest).await);
    assert_eq!(sequences(&received), (1..=latest).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(received, stored, "what the watcher saw is what is stored");
    assert_eq!(applied(&received), current(&mut client).await, "and applied in order it is the story list");
}

/// Reads the messages grpcurl prints (one JSON object each) as they come.
fn grpcurl_messages(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for value in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
            let Ok(value) = value else { return };
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn grpcurl_watches_a_takedown_and_an_expiry_each_delete_their_story() {
    let server = Served::start_with(&["--in-memory", "--set", "retention_hours=12"]);
    let call = |method: &str, body: &str| {
        let full = format!("headline_dedup.v1.DedupService/{method}");
        let out =
            Command::new(grpcurl()).args(["-plaintext", "-d", body, &server.addr, &full]).output().expect("grpcurl");
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    let ingest = |id: &str, text: &str, time: &str| {
        let body = format!(r#"{{"headlines": [{{"id": "{id}", "text": "{text}", "publishedTime": "{time}"}}]}}"#);
        call("Ingest", &body)["assignments"][0]["storyId"].as_str().expect("a story").to_owned()
    };
    let fed = ingest("fed", MERGING[0].1, "2026-11-30T08:00:00Z");
    let mut watcher = Command::new(grpcurl())
        .args(["-plaintext", "-d", r#"{"after_sequence": 0, "progress_interval_ms": 200}"#, &server.addr])
        .arg("headline_dedup.v1.DedupService/WatchStories")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("grpcurl");
    let messages = grpcurl_messages(watcher.stdout.take().expect("stdout"));
    let quake = ingest("quake", "Magnitude 6.1 earthquake strikes off the coast of Chile", "2026-11-30T09:00:00Z");
    call("DeleteHeadlines", r#"{"ids": ["quake"]}"#);
    // Thirteen hours on: the Fed story falls behind the retention period.
    let later = ingest("later", "Firefighters rescue a cat from a tree in Ohio", "2026-11-30T22:00:00Z");
    let mut changes = Vec::new();
    while changes.len() < 5 {
        let message = messages.recv_timeout(PATIENCE).expect("grpcurl prints the next message");
        if let Some(change) = message.get("change") {
            changes.push(change.clone());
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let summary: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| {
            let field = |name: &str| c.get(name).and_then(Value::as_str).unwrap_or("");
            (field("kind"), field("storyId"), field("deletionReason"))
        })
        .map(|(kind, story, reason)| (kind.trim_start_matches("STORY_CHANGE_KIND_"), story, reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("CREATED", fed.as_str(), ""),
            ("CREATED", quake.as_str(), ""),
            ("DELETED", quake.as_str(), "DELETION_REASON_TAKEDOWN"),
            ("CREATED", later.as_str(), ""),
            ("DELETED", fed.as_str(), "DELETION_REASON_RETENTION"),
        ]
    );
    assert_eq!(changes[0]["sequence"], "1", "uint64 is a string in JSON");
    assert_eq!(changes[0]["canonicalText"], MERGING[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_ends_every_watch_at_once_with_the_sequence_to_resume_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().display().to_string();
    let mut server = Served::start_with(&["--data-dir", &data_dir, "--grace-period", "120"]);
    let mut client = server.client().await;
    for (id, text) in MERGING {
        ingest_one(&mut client, id, text).await;
    }
    let mut stream = watch(&mut client, Some(0)).await.expect("watch");
    let seen = changes_until(&mut stream, 4).await;
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate()).await.expect("terminate");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "the watch held the shutdown: {:?}", started.elapsed());
    let ended = loop {
        match next(&mut stream).await {
            Some(Ok(_)) => {}
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status"),
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    let last = seen.last().map(|c| c.sequence).expect("changes");
    assert!(ended.message().contains(&format!("after_sequence {last}")), "{}", ended.message());
}
