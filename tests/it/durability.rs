//! Durability: SIGKILL at random moments, idempotent retries across
//! restarts, determinism across a reload, bounded retention, and damaged
//! data directories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::types::{DAY_MS, Headline as CoreHeadline, RawHeadline};
use headline_dedup::pb;
use headline_dedup::store::{DB_FILE, Store};
use tonic::Code;

use crate::support::{Row, Served, binary, fixture, model};

const FIXTURE: &str = "uci-2014-03-12-sample.jsonl";

/// A small deterministic generator for kill delays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Checks that every acknowledged headline is stored in the story it was
/// acknowledged with (or the story that absorbed it).
async fn verify(server: &Served, acked: &HashMap<String, String>) {
    let mut client = server.client().await;
    let mut resolved: HashMap<String, String> = HashMap::new();
    for (id, acked_story) in acked {
        let stored = client
            .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: id.clone() })
            .await
            .unwrap_or_else(|s| panic!("acknowledged headline {id} is missing: {s:?}"))
            .into_inner();
        if !resolved.contains_key(acked_story) {
            let story = client
                .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: acked_story.clone() })
                .await
                .unwrap_or_else(|s| panic!("acknowledged story {acked_story} is missing: {s:?}"))
                .into_inner()
                .story
                .expect("story");
            resolved.insert(acked_story.clone(), story.story_id);
        }
        assert_eq!(stored.story_id, resolved[acked_story], "headline {id} left its acknowledged story {acked_story}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_headlines_survive_sigkill_and_retries_complete_exactly_once() {
    let cycles: usize = std::env::var("HEADLINE_DEDUP_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = fixture(FIXTURE);
    let batches: Vec<Vec<pb::Headline>> = rows.chunks(8).map(|c| c.iter().map(Row::headline).collect()).collect();
    let mut acked: HashMap<String, String> = HashMap::new();
    // Headlines of the calls cut short by a kill: each may or may not have
    // been committed before the kill.
    let mut unanswered: HashSet<String> = HashSet::new();
    let mut next = 0usize;
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    // Cycles in which the kill cut a stream of acknowledged batches short,
    // rather than landing before the first answer.
    let mut kills_mid_stream = 0;
    for _ in 0..cycles {
        let mut acked_this_cycle = 0;
        let mut server = Served::durable(dir.path());
        verify(&server, &acked).await;
        let pid = server.child.id();
        let delay = Duration::from_millis(20 + rng.next(150));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
        });
        let mut client = server.client().await;
        loop {
            let batch = &batches[next % batches.len()];
            let request = pb::IngestRequest { namespace: String::new(), headlines: batch.clone() };
            match client.ingest(request).await {
                Ok(reply) => {
                    for a in reply.into_inner().assignments {
                        assert!(a.error.is_none(), "{a:?}");
                        let previous = acked.insert(a.headline_id.clone(), a.story_id.clone());
                        // A replay names the story the headline is in now,
                        // which may have absorbed the first one.
                        if previous.is_some() {
                            assert!(a.replayed, "{a:?}");
                        }
                    }
                    next += 1;
                    acked_this_cycle += 1;
                }
                Err(_) => {
                    unanswered.extend(batch.iter().map(|h| h.id.clone()));
                    if acked_this_cycle > 0 {
                        kills_mid_stream += 1;
                    }
                    break;
                }
            }
        }
        killer.join().expect("killer");
        server.kill();
    }
    assert!(kills_mid_stream >= cycles / 2, "the server was killed mid-stream only {kills_mid_stream} times");

    let server = Served::durable(dir.path());
    verify(&server, &acked).await;
    let mut client = server.client().await;
    for batch in &batches {
        let reply = client
            .ingest(pb::IngestRequest { namespace: String::new(), headlines: batch.clone() })
            .await
            .expect("ingest")
            .into_inner();
        for a in reply.assignments {
            let previous = acked.insert(a.headline_id.clone(), a.story_id.clone());
            if previous.is_some() || !unanswered.contains(&a.headline_id) {
                assert_eq!(a.replayed, previous.is_some(), "{a:?}");
            }
        }
    }
    verify(&server, &acked).await;
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines, rows.len() as u64, "every headline stored exactly once");
}

#[tokio::test]
async fn retries_and_conflicts_hold_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = fixture(FIXTURE);
    let batch: Vec<pb::Headline> = rows[..50].iter().map(Row::headline).collect();
    let mut server = Served::durable(dir.path());
    let first = server
        .client()
        .await
        .ingest(pb::IngestRequest { namespace: String::new(), headlines: batch.clone() })
        .await
        .expect("ingest")
        .into_inner()
        .assignments;
    assert!(server.terminate().success());

    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    let mut changed = batch[0].clone();
    changed.text.push_str(" (updated)");
    let mut again = batch.clone();
    again.push(changed);
    let second = client
        .ingest(pb::IngestRequest { namespace: String::new(), headlines: again })
        .await
        .expect("ingest")
        .into_inner()
        .assignments;
    for (a, b) in first.iter().zip(&second) {
        assert!(b.replayed, "{b:?}");
        assert_eq!((&a.headline_id, a.kind, &a.matched_headline_id), (&b.headline_id, b.kind, &b.matched_headline_id));
    }
    let conflict = second[50].error.as_ref().expect("conflict");
    assert_eq!(conflict.code, pb::ItemErrorCode::AlreadyExists as i32);
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines, 50);

    // A deletion is durable too.
    let deleted = client
        .delete_headlines(pb::DeleteHeadlinesRequest { namespace: String::new(), ids: vec![batch[0].id.clone()] })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted_count, 1);
    drop(client);
    drop(server);
    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    let status = client
        .get_headline(pb::GetHeadlineRequest { namespace: String::new(), id: batch[0].id.clone() })
        .await
        .expect_err("deleted");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let stats = client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    assert_eq!(stats.namespaces[0].headlines, 49);
}

fn core_headline(row: &Row, id_prefix: &str, shift: i64) -> CoreHeadline {
    let time = headline_dedup::dataset::parse_rfc3339(&row.published_at).expect("time") + shift;
    let id = format!("{id_prefix}{}", row.id);
    let raw = RawHeadline { id: &id, text: &row.text, source: &row.source, url: "", published: Some(time) };
    CoreHeadline::parse(&raw, time, true).expect("valid")
}

/// Every headline's story and every story's canonical headline.
fn outcome(app: &App, rows: &[Row]) -> BTreeMap<String, (String, String)> {
    rows.iter()
        .map(|row| {
            let stored = app.headline("default", &row.id).expect("stored");
            let story = app.story("default", &stored.story_id.to_string()).expect("story");
            (row.id.clone(), (story.id.to_string(), story.canonical_headline_id))
        })
        .collect()
}

#[test]
fn a_reloaded_namespace_continues_exactly_as_one_that_never_stopped() {
    continues_exactly_as_one_that_never_stopped(SettingsBook::default);
}

#[test]
fn a_reloaded_namespace_that_judges_against_its_background_continues_exactly_as_one_that_never_stopped() {
    continues_exactly_as_one_that_never_stopped(|| {
        SettingsBook::parse(["background_weight=1", "merge_threshold=0.1"]).expect("valid settings")
    });
}

/// The fixture, then the same headlines republished two days later (the
/// time shift of each row), every other one cut short by its last word: the
/// copies join their stories across days, the ones cut short do not.
fn a_day_and_its_republication() -> Vec<(Row, i64)> {
    let rows = fixture(FIXTURE);
    let later: Vec<(Row, i64)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let text = match row.text.rsplit_once(' ') {
                Some((cut, _)) if i % 2 == 0 => format!("{cut} ..."),
                _ => row.text.clone(),
            };
            (Row { id: format!("later-{}", row.id), text, ..row.clone() }, 2 * DAY_MS)
        })
        .collect();
    rows.into_iter().map(|row| (row, 0)).chain(later).collect()
}

fn continues_exactly_as_one_that_never_stopped(settings: impl Fn() -> SettingsBook) {
    let shifted = a_day_and_its_republication();
    let rows: Vec<Row> = shifted.iter().map(|(row, _)| row.clone()).collect();
    let batches: Vec<&[(Row, i64)]> = shifted.chunks(64).collect();
    let ingest = |app: &App, batch: &[(Row, i64)]| {
        let items = batch.iter().map(|(r, shift)| Ok(core_headline(r, "", *shift))).collect();
        assert!(app.ingest("default", items).expect("ingest").iter().all(Result::is_ok));
    };

    let straight_dir = tempfile::tempdir().expect("tempdir");
    let straight = App::open(model(), settings(), Store::open(straight_dir.path()).expect("store")).expect("open");
    for batch in &batches {
        ingest(&straight, batch);
    }

    let restarted_dir = tempfile::tempdir().expect("tempdir");
    let open = || App::open(model(), settings(), Store::open(restarted_dir.path()).expect("store")).expect("open");
    let mut app = open();
    for (i, batch) in batches.iter().enumerate() {
        if i % 5 == 4 {
            drop(app);
            app = open();
        }
        ingest(&app, batch);
    }
    let stats = app.stats(Some("default")).expect("stats");
    assert!(stats[0].1.merges > 0, "the run should include merges");
    let answers = outcome(&app, &rows);
    let by_id: HashMap<&str, &Row> = rows.iter().map(|row| (row.id.as_str(), row)).collect();
    let copies: Vec<&Row> = rows
        .iter()
        .filter(|row| row.id.strip_prefix("later-").and_then(|id| by_id.get(id)).is_some_and(|o| o.text == row.text))
        .collect();
    let strays: Vec<&str> = copies
        .iter()
        .filter(|row| answers.get(&row.id) != row.id.strip_prefix("later-").and_then(|id| answers.get(id)))
        .map(|row| row.id.as_str())
        .collect();
    assert!(!copies.is_empty() && strays.is_empty(), "copies two days later join their stories: {strays:?}");
    assert_eq!(answers, outcome(&straight, &rows));
}

#[test]
fn concurrent_batches_are_each_applied_once_answered_and_durable() {
    let rows = fixture(FIXTURE);
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || App::open(model(), SettingsBook::default(), Store::open(dir.path()).expect("store")).expect("open");
    let app = open();
    // Eight threads send one headline per call, so that calls queue behind
    // each other's commits and are applied and committed in groups.
    let acked: HashMap<String, String> = std::thread::scope(|scope| {
        let workers: Vec<_> = rows
            .chunks(rows.len().div_ceil(8))
            .map(|share| {
                let app = &app;
                scope.spawn(move || {
                    share
                        .iter()
                        .map(|row| {
                            let answers = app.ingest("default", vec![Ok(core_headline(row, "", 0))]).expect("ingest");
                            let [Ok(answer)] = answers.as_slice() else {
                                panic!("one answer per headline: {answers:?}")
                            };
                            assert_eq!(answer.headline_id, row.id);
                            (row.id.clone(), answer.story_id.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("worker")).collect()
    });
    let ids: HashSet<&String> = rows.iter().map(|r| &r.id).collect();
    assert_eq!(acked.len(), ids.len());
    assert_eq!(app.stats(Some("default")).expect("stats")[0].1.headlines, ids.len() as u64);

    let before = outcome(&app, &rows);
    drop(app);
    let app = open();
    assert_eq!(outcome(&app, &rows), before, "the reloaded namespace differs");
    for (id, story) in &acked {
        let resolved = app.story("default", story).expect("an acknowledged story exists or redirects");
        assert_eq!(app.headline("default", id).expect("stored").story_id, resolved.id, "{id}");
    }
}

#[test]
fn retention_keeps_memory_and_disk_bounded_over_many_windows() {
    let rows = fixture(FIXTURE);
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = SettingsBook::parse(["retention_hours=24"]).expect("settings");
    let app = App::open(model(), settings, Store::open(dir.path()).expect("store")).expect("open");
    let file_size = || std::fs::metadata(dir.path().join(DB_FILE)).expect("db file").len();
    let mut sizes = Vec::new();
    for day in 0..24i64 {
        let prefix = format!("d{day}-");
        let items: Vec<_> = rows.iter().map(|r| Ok(core_headline(r, &prefix, day * DAY_MS))).collect();
        for chunk in items.chunks(128) {
            let answers = app.ingest("default", chunk.to_vec()).expect("ingest");
            assert!(answers.iter().all(Result::is_ok));
        }
        let stats = app.stats(Some("default")).expect("stats")[0].1.clone();
        assert!(stats.headlines <= 2 * rows.len() as u64, "day {day}: {} headlines stored", stats.headlines);
        sizes.push(file_size());
    }
    assert!(app.headline("default", &format!("d0-{}", rows[0].id)).is_err(), "old headlines are gone");
    assert!(app.headline("default", &format!("d23-{}", rows[0].id)).is_ok());
    // The database file grows in steps (redb doubles its regions): by the
    // middle of the run it has taken the steps two days of headlines need,
    // and with retention it takes none after that. Kept forever, 24 days
    // would take at least one more.
    let settled = sizes[..sizes.len() / 2].iter().copied().max().unwrap_or_default();
    let last = *sizes.last().expect("sizes");
    assert!(last <= settled, "the data file keeps growing: {sizes:?}");
    drop(app);
    let reopened = App::open(model(), SettingsBook::default(), Store::open(dir.path()).expect("store")).expect("open");
    let stats = reopened.stats(Some("default")).expect("stats")[0].1.clone();
    assert!(stats.headlines <= 2 * rows.len() as u64);
}

/// Runs a command that is expected to exit by itself within seconds.
fn run_briefly(command: &mut Command) -> std::process::Output {
    let mut child =
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A damaged database file on which the database library panics (found by
/// the `data_dir` fuzz target).
fn fuzz_found_damage() -> Vec<u8> {
    use std::io::Read;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/damaged-redb-panics.redb.gz");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture")).read_to_end(&mut bytes).expect("gzip");
    bytes
}

#[test]
fn damaged_data_directories_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let app = App::open(model(), SettingsBook::default(), Store::open(dir.path()).expect("store")).expect("open");
        let rows = fixture(FIXTURE);
        let items = rows[..200].iter().map(|r| Ok(core_headline(r, "", 0))).collect();
        app.ingest("default", items).expect("ingest");
    }
    let file = dir.path().join(DB_FILE);
    let original = std::fs::read(&file).expect("read");
    let intact = Store::open(dir.path()).expect("open").load().expect("load");
    assert_eq!(intact[0].1.len(), 200);

    // The binary refuses to start, with one line naming the file.
    let damages: [(&str, Vec<u8>); 4] = [
        ("truncated", original[..original.len() / 3].to_vec()),
        ("garbage", (0..original.len()).map(|i| (i * 7919 % 251) as u8).collect()),
        ("empty", Vec::new()),
        ("found by fuzzing: the database library panics on it", fuzz_found_damage()),
    ];
    for (name, bytes) in &damages {
        std::fs::write(&file, bytes).expect("write");
        let output = run_briefly(
            Command::new(binary())
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir.path().display().to_string()])
                .env("RUST_LOG", "off"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(DB_FILE), "{name}: {stderr}");
    }

    // Damage anywhere in the file is either refused or harmless: the store
    // never returns altered data and never panics.
    let mut refused = 0;
    for offset in (0..original.len()).step_by(1531) {
        let mut copy = original.clone();
        for byte in &mut copy[offset..(offset + 8).min(original.len())] {
            *byte ^= 0x5a;
        }
        std::fs::write(&file, &copy).expect("write");
        match Store::open(dir.path()).and_then(|store| store.load()) {
            Ok(loaded) => {
                assert_eq!(loaded.len(), 1, "offset {offset}");
                assert_eq!(loaded[0], intact[0], "offset {offset}: data altered");
            }
            Err(e) => {
                assert!(e.to_string().contains(DB_FILE), "offset {offset}: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no damage was detected at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_cleanly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Served::durable(dir.path());
    let rows = fixture(FIXTURE);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut clients = Vec::new();
    for client_no in 0..4 {
        let mut client = server.client().await;
        let (rows, acked) = (rows.clone(), std::sync::Arc::clone(&acked));
        clients.push(tokio::spawn(async move {
            let mut refused = 0;
            for (batch_no, chunk) in rows.chunks(50).cycle().take(400).enumerate() {
                let headlines = chunk
                    .iter()
                    .map(|r| pb::Headline { id: format!("{client_no}-{batch_no}-{}", r.id), ..r.headline() });
                let request = pb::IngestRequest { namespace: String::new(), headlines: headlines.collect() };
                match client.ingest(request).await {
                    Ok(reply) => {
                        let mut acked = acked.lock().expect("acked");
                        for a in reply.into_inner().assignments {
                            assert!(a.error.is_none(), "{a:?}");
                            acked.insert(a.headline_id, a.story_id);
                        }
                    }
                    Err(status) => {
                        assert!(
                            matches!(status.code(), Code::Unavailable | Code::Cancelled | Code::Unknown),
                            "{status:?}"
                        );
                        refused += 1;
                        if refused > 3 {
                            break;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = acked.lock().expect("acked").len();
    assert!(during > 0, "the load was running");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    })
    .await
    .expect("terminate");
    assert!(status.0.success(), "exit status {:?}", status.0);
    for client in clients {
        client.await.expect("client");
    }
    let acked = acked.lock().expect("acked").clone();
    let restarted = Served::durable(dir.path());
    verify(&restarted, &acked).await;
}

/// `headline-dedup backup` against the server at `addr` into `out`, with extra
/// arguments: its status and stderr.
fn back_up(addr: &str, out: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(["backup", "--addr", addr, "--out", &out.display().to_string()])
        .args(extra)
        .env_remove("HEADLINE_DEDUP_AUTH_TOKEN")
        .output()
        .expect("run backup");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A data directory holding the backup file `file` as its database.
fn restored(file: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join(format!("restored-{}", file.file_name().and_then(|n| n.to_str()).unwrap_or("backup")));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::copy(file, data.join(DB_FILE)).expect("copy the backup in");
    data
}

async fn stats(server: &Served) -> Vec<pb::NamespaceStats> {
    let mut client = server.client().await;
    client.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner().namespaces
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_ingest_holds_every_acknowledged_batch_whole_and_restores_with_the_same_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Served::durable(&dir.path().join("data"));
    let rows = fixture(FIXTURE);
    let batches: Vec<Vec<pb::Headline>> = rows.chunks(8).map(|c| c.iter().map(Row::headline).collect()).collect();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let mut client = server.client().await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&answered);
    let ingest = tokio::spawn(async move {
        // Every batch acknowledged, with its answers, in order.
        let mut acked: Vec<Vec<pb::Assignment>> = Vec::new();
        for batch in batches.iter().cycle() {
            if *stopped.borrow_and_update() || acked.len() == batches.len() {
                break;
            }
            let request = pb::IngestRequest { namespace: "wire".into(), headlines: batch.clone() };
            let reply = client.ingest(request).await.expect("ingest").into_inner();
            acked.push(reply.assignments);
            counted.store(acked.len(), std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    });
    // The backup starts once ingest is well under way, however slow the
    // machine.
    let under_way = async {
        while answered.load(std::sync::atomic::Ordering::SeqCst) <= 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), under_way).await.expect("ingest gets under way");
    let during = dir.path().join("during.redb");
    // Every batch answered before the backup begins is in it; the batches
    // answered while it runs may be too, each whole or not at all.
    let answered_before = answered.load(std::sync::atomic::Ordering::SeqCst);
    let (addr, out) = (server.addr.clone(), during.clone());
    let backed_up = tokio::task::spawn_blocking(move || back_up(&addr, &out, &[])).await.expect("backup");
    assert!(backed_up.0, "backup during ingest: {}", backed_up.1);
    stop.send(true).expect("stop");
    let acked = ingest.await.expect("ingest task");
    assert!(acked.len() > 5, "ingest went on: {} batches", acked.len());

    let copy = Served::durable(&restored(&during, dir.path()));
    let mut restored_client = copy.client().await;
    let mut whole = 0;
    for answers in &acked {
        let mut present = 0;
        for a in answers {
            let found = restored_client
                .get_headline(pb::GetHeadlineRequest { namespace: "wire".into(), id: a.headline_id.clone() })
                .await;
            present += usize::from(found.is_ok());
        }
        assert!(
            present == 0 || present == answers.len(),
            "a batch is in the backup in part: {present}/{}",
            answers.len()
        );
        whole += usize::from(present == answers.len());
    }
    assert!(whole >= answered_before, "{answered_before} batches were answered before the backup, {whole} are in it");
    assert!(answered_before > 0, "ingest had begun");
    // The batches in it come in the order they were acknowledged: a prefix.
    let replayed: Vec<pb::Headline> = rows.iter().take(whole * 8).map(Row::headline).collect();
    for chunk in replayed.chunks(8) {
        let reply = restored_client
            .ingest(pb::IngestRequest { namespace: "wire".into(), headlines: chunk.to_vec() })
            .await
            .expect("ingest on the restored copy")
            .into_inner();
        assert!(reply.assignments.iter().all(|a| a.replayed), "{:?}", reply.assignments);
    }
    drop(copy);

    // With ingest stopped, a backup restores with the very same stats.
    let after = dir.path().join("after.redb");
    let (ok, err) = back_up(&server.addr, &after, &[]);
    assert!(ok, "{err}");
    let copy = Served::durable(&restored(&after, dir.path()));
    assert_eq!(stats(&copy).await, stats(&server).await);
}

#[test]
fn only_the_admin_token_takes_a_backup_and_a_backup_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Served::start_with(&["--in-memory", "--auth-token", "ingest-token", "--admin-token", "admin-token"]);
    let out = dir.path().join("b.redb");
    let (ok, err) = back_up(&server.addr, &out, &[]);
    assert!(!ok && err.contains("Unauthenticated"), "{err}");
    let (ok, err) = back_up(&server.addr, &out, &["--auth-token", "ingest-token"]);
    assert!(!ok && err.contains("PermissionDenied"), "{err}");
    assert!(!out.exists());
    let (ok, err) = back_up(&server.addr, &out, &["--auth-token", "admin-token"]);
    assert!(ok, "{err}");
    let (ok, err) = back_up(&server.addr, &out, &["--auth-token", "admin-token"]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(leftovers.len(), 1, "only the backup is left behind: {leftovers:?}");
}
