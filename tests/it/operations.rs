//! Operating the real binary: the Prometheus endpoint after real traffic,
//! and the story board page rendered by a real headless browser.

use std::process::Command;

use headline_dedup::pb::{self, MatchKind};
use tonic::Code;

use crate::support::{Row, Served, fixture, headline, http_get, ingest};

const FIXTURE: &str = "uci-2014-03-12-sample.jsonl";

/// The value of the first sample of `name` that carries every label.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_the_server_did() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Served::durable(dir.path());
    let mut client = server.client().await;
    let mut batch: Vec<pb::Headline> = fixture(FIXTURE)[..300].iter().map(Row::headline).collect();
    batch.push(headline("blank", "   ", ""));
    let assignments = ingest(&mut client, batch).await;
    let missing = client
        .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: "s999999".into() })
        .await
        .expect_err("no such story");
    assert_eq!(missing.code(), Code::NotFound);

    let (status, metrics) = http_get(&server.web_addr, "/metrics");
    assert_eq!(status, 200);
    let count = |kind: MatchKind| assignments.iter().filter(|a| a.error.is_none() && a.kind == kind as i32).count();
    let kinds = [
        ("new_story", MatchKind::NewStory),
        ("exact_duplicate", MatchKind::ExactDuplicate),
        ("near_duplicate", MatchKind::NearDuplicate),
        ("same_story", MatchKind::SameStory),
    ];
    for (label, kind) in kinds {
        let expected = count(kind) as f64;
        let got = sample(&metrics, "headline_dedup_headlines_total", &[("namespace", "default"), ("kind", label)]);
        assert_eq!(got.unwrap_or(0.0), expected, "{label}");
    }
    let ns = [("namespace", "default")];
    assert_eq!(sample(&metrics, "headline_dedup_headlines_total", &[ns[0], ("kind", "rejected")]), Some(1.0));
    assert_eq!(sample(&metrics, "headline_dedup_stored_headlines", &ns), Some(300.0));
    let stories = assignments.iter().filter_map(|a| (a.error.is_none()).then_some(&a.story_id));
    let distinct: std::collections::HashSet<_> = stories.collect();
    assert_eq!(sample(&metrics, "headline_dedup_stories", &ns), Some(distinct.len() as f64));
    assert!(
        sample(&metrics, "headline_dedup_indexed_vectors", &ns).is_some_and(|n| n >= count(MatchKind::NewStory) as f64)
    );
    assert!(sample(&metrics, "headline_dedup_merges_total", &ns).is_some());
    let embedded = (300 - count(MatchKind::ExactDuplicate)) as f64;
    assert_eq!(sample(&metrics, "headline_dedup_embed_seconds_count", &[("embedder", "mixed")]), Some(embedded));
    assert_eq!(sample(&metrics, "headline_dedup_commit_seconds_count", &[]), Some(1.0));

    let rpc = |method: &'static str| [("grpc_service", "headline_dedup.v1.DedupService"), ("grpc_method", method)];
    assert_eq!(sample(&metrics, "grpc_server_started_total", &rpc("Ingest")), Some(1.0));
    let handled = |method, code| {
        let [service, method] = rpc(method);
        sample(&metrics, "grpc_server_handled_total", &[service, method, ("grpc_code", code)])
    };
    assert_eq!(handled("Ingest", "OK"), Some(1.0));
    assert_eq!(handled("GetStory", "NotFound"), Some(1.0));
    assert_eq!(sample(&metrics, "grpc_server_handling_seconds_count", &rpc("Ingest")), Some(1.0));
    assert!(metrics.contains("# TYPE grpc_server_handling_seconds histogram"), "{metrics}");
}

/// The text of `text` as it appears in serialised HTML.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\u{a0}', "&nbsp;")
}

/// The DOM of `url` after its scripts ran, from headless Chromium
/// (`$CHROMIUM`, or `chromium` on PATH).
fn rendered_dom(url: &str) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new("timeout")
        .arg("120")
        .arg(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {chromium} (install Debian's chromium, or set CHROMIUM): {e}"));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_story_board_shows_the_live_stories_in_a_browser() {
    let server = Served::start();
    let mut client = server.client().await;
    let rows = fixture(FIXTURE);
    ingest(&mut client, rows[..400].iter().map(Row::headline).collect()).await;
    let listed = client
        .list_stories(pb::ListStoriesRequest {
            page_size: 100,
            order: pb::StoryOrder::Recency.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .stories;
    let largest = listed.iter().max_by_key(|s| s.size).expect("stories");
    assert!(largest.size >= 3, "the fixture has a story with several headlines");
    let opened = client
        .get_story(pb::GetStoryRequest { namespace: String::new(), story_id: largest.story_id.clone() })
        .await
        .expect("story")
        .into_inner()
        .story
        .expect("a story");

    let dom = rendered_dom(&format!("http://{}/#story={}", server.web_addr, largest.story_id));
    let (_, table) = dom.split_once("<tbody>").expect("the stories table");
    assert_eq!(table.matches("<tr class=\"story\"").count(), listed.len(), "one row per live story");
    let mut last = 0;
    for story in &listed {
        let canonical = format!("<td class=\"canonical\">{}</td>", html_text(&story.canonical_text));
        let at = table.find(&canonical).unwrap_or_else(|| panic!("{canonical} is not on the board"));
        assert!(at >= last, "the board lists stories in the API's order");
        last = at;
    }
    let (_, members) = table.split_once("<tr class=\"members\"").expect("the opened story's headlines");
    for member in &opened.members {
        let id = &member.headline.as_ref().expect("headline").id;
        assert!(members.contains(&format!("data-headline=\"{id}\"")), "headline {id} of the opened story");
    }
    assert!(dom.contains(&format!("{} stories", listed.len())), "the status line counts the stories");
}
