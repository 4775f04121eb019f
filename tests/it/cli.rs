//! The real binary, driven as users drive it: grpcurl running the README's
//! examples, the `healthcheck` subcommand, and SIGTERM.

use std::process::Command;

use crate::support::{Served, binary, grpcurl};

/// The grpcurl examples of the README: every ```sh block that starts with
/// `grpcurl` is one command.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.starts_with("grpcurl "))
        .map(|block| block.trim_end().to_owned())
        .collect()
}

#[test]
fn grpcurl_runs_the_readme_examples() {
    let commands = readme_commands();
    let joined = commands.join("\n");
    for needed in [
        " list",
        "describe headline_dedup.v1.DedupService",
        "DedupService/Ingest",
        "DedupService/GetStory",
        "grpc.health.v1.Health/Check",
        "DedupService/WatchStories",
        "DedupService/UpdateNamespace",
    ] {
        assert!(joined.contains(needed), "the README has no grpcurl example with {needed:?}");
    }
    let server = Served::start();
    let mut outputs = Vec::new();
    for command in &commands {
        // The examples use the default address; the test server has its own.
        let command =
            command.replacen("grpcurl ", &format!("{} ", grpcurl()), 1).replace("localhost:50051", &server.addr);
        // A watch streams until it is stopped: it runs for a few seconds.
        let streams = command.contains("/WatchStories");
        let command = if streams { format!("timeout 3 {command}") } else { command };
        let output = Command::new("bash").args(["-c", &command]).output().expect("run grpcurl");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stopped = streams && output.status.code() == Some(124);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() || stopped, "{command}\nfailed: {stderr}\n{stdout}");
        outputs.push((command, stdout));
    }
    let find = |needle: &str| outputs.iter().find(|(c, _)| c.contains(needle)).map(|(_, o)| o.as_str()).unwrap_or("");
    assert!(find(" list").contains("headline_dedup.v1.DedupService"));
    assert!(find("describe").contains("rpc Ingest"));
    let ingest = find("DedupService/Ingest");
    assert!(ingest.contains("MATCH_KIND_NEW_STORY") && ingest.contains("MATCH_KIND_EXACT_DUPLICATE"), "{ingest}");
    assert!(find("DedupService/GetStory").contains("\"size\": 3"), "{}", find("DedupService/GetStory"));
    assert!(find("Health/Check").contains("SERVING"));
    let watched = find("DedupService/WatchStories");
    assert!(watched.contains("STORY_CHANGE_KIND_CREATED") && watched.contains("\"progress\""), "{watched}");
    assert!(find("DedupService/UpdateNamespace").contains("\"storyThreshold\": 0.4"), "{}", find("UpdateNamespace"));
}

#[test]
fn sigterm_drains_and_exits_cleanly_and_healthcheck_follows() {
    let mut server = Served::start();
    assert!(server.healthy());
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(!server.healthy(), "healthcheck must fail once the server is gone");
}

#[test]
fn bad_configuration_exits_with_one_clear_line() {
    let output =
        Command::new(binary()).args(["serve", "--in-memory", "--set", "story_threshold=7"]).output().expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("story_threshold"), "{stderr}");
}

#[test]
fn the_load_generator_drives_a_server_it_starts_and_reports() {
    for mode in ["unary", "stream"] {
        let output = Command::new(binary())
            .args([
                "bench",
                "--file",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uci-2014-03-12-sample.jsonl"),
            ])
            .args([
                "--limit",
                "300",
                "--preload",
                "100",
                "--concurrency",
                "3",
                "--batch",
                "40",
                "--json",
                "--mode",
                mode,
            ])
            .env("RUST_LOG", "off")
            .output()
            .expect("run bench");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        assert_eq!(report["headlines"], 200, "{report}");
        assert_eq!(report["calls"], 5, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert!(report["headlines_per_second"].as_f64().is_some_and(|r| r > 0.0), "{report}");
        assert!(report["p99_ms"].as_f64() >= report["p50_ms"].as_f64(), "{report}");
        assert!(report["server_peak_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{report}");
    }
}

#[test]
fn the_load_generator_soaks_at_a_steady_rate_with_reads_and_interval_reports() {
    let output = Command::new(binary())
        .args(["bench", "--file", concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uci-2014-03-12-sample.jsonl")])
        .args(["--duration", "3", "--rate", "200", "--batch", "20", "--reads", "2", "--report-every", "1", "--json"])
        .args(["--set", "retention_hours=48"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let headlines = report["headlines"].as_u64().expect("headlines");
    assert!((400..=640).contains(&headlines), "about 200 a second for 3 seconds: {report}");
    assert_eq!(report["reads"].as_u64(), report["calls"].as_u64().map(|c| 2 * c), "{report}");
    assert_eq!((report["errors"].as_u64(), report["shed"].as_u64()), (Some(0), Some(0)), "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let intervals = stderr.lines().filter(|l| l.contains("write p99") && l.contains("server RSS")).count();
    assert!(intervals >= 2, "{stderr}");
}

/// The assignments an `ingest --out` file holds, by id.
fn assignments_file(path: &std::path::Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("assignments file")
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .map(|value| (value["id"].as_str().expect("an id").to_owned(), value))
        .collect()
}

#[tokio::test]
async fn ingest_streams_a_file_and_a_rerun_is_answered_from_storage() {
    use crate::support::fixture;
    let server = Served::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("headlines.jsonl");
    let mut lines: Vec<String> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uci-2014-03-12-sample.jsonl"))
            .expect("fixture")
            .lines()
            .map(str::to_owned)
            .collect();
    lines.push(r#"{"id":"blank","text":"   "}"#.into());
    lines.push(r#"{"id":"bad-time","text":"A headline","published_at":"yesterday"}"#.into());
    std::fs::write(&file, lines.join("\n")).expect("write the file");
    let rows = fixture("uci-2014-03-12-sample.jsonl");

    let run = |out: &str| {
        let output = Command::new(binary())
            .args(["ingest", &file.display().to_string(), "--addr", &server.addr, "--batch", "100", "--out", out])
            .output()
            .expect("run ingest");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let first_out = dir.path().join("first.jsonl");
    let summary = run(&first_out.display().to_string());
    let first = assignments_file(&first_out);
    assert_eq!(first.len(), rows.len() + 2);
    let kinds = |kind: &str| first.values().filter(|a| a["kind"] == kind).count();
    let expected = format!(
        "{} headlines: {} new stories, {} exact duplicates, {} near duplicates, {} same story; 0 already stored; 2 rejected",
        rows.len() + 2,
        kinds("new_story"),
        kinds("exact_duplicate"),
        kinds("near_duplicate"),
        kinds("same_story"),
    );
    assert!(summary.contains(&expected), "{summary}\nexpected {expected}");
    assert!(kinds("new_story") > 0 && kinds("exact_duplicate") > 0, "{summary}");
    let blank_field = first["blank"]["error"]["field"].as_str().unwrap_or_default();
    assert!(blank_field.starts_with("headlines[") && blank_field.ends_with("].text"), "{}", first["blank"]);
    assert_eq!(first["bad-time"]["error"]["field"], "published_at");

    let mut client = server.client().await;
    for row in rows.iter().step_by(97) {
        let stored = client
            .get_headline(headline_dedup::pb::GetHeadlineRequest { namespace: String::new(), id: row.id.clone() })
            .await
            .expect("stored")
            .into_inner();
        let matched = stored.member.map(|m| m.matched_headline_id).unwrap_or_default();
        assert_eq!(first[&row.id]["matched"], matched.as_str(), "{}", row.id);
    }

    let second_out = dir.path().join("second.jsonl");
    let summary = run(&second_out.display().to_string());
    assert!(
        summary.contains(&format!(
            "0 new stories, 0 exact duplicates, 0 near duplicates, 0 same story; {} already stored",
            rows.len()
        )),
        "{summary}"
    );
    let second = assignments_file(&second_out);
    for (id, answer) in &first {
        if answer.get("error").is_none() {
            let again = &second[id];
            assert_eq!(
                (&again["kind"], &again["matched"], &again["replayed"]),
                (&answer["kind"], &answer["matched"], &serde_json::Value::Bool(true)),
                "{id}"
            );
        }
    }
}

#[tokio::test]
async fn stories_prints_the_largest_stories() {
    use crate::support::{Row, fixture, ingest};
    use headline_dedup::pb;
    let server = Served::start();
    let mut client = server.client().await;
    for chunk in fixture("uci-2014-03-12-sample.jsonl").chunks(500) {
        ingest(&mut client, chunk.iter().map(Row::headline).collect()).await;
    }
    let largest = client
        .list_stories(pb::ListStoriesRequest { page_size: 3, order: pb::StoryOrder::Size.into(), ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .stories;
    let output =
        Command::new(binary()).args(["stories", "--addr", &server.addr, "--top", "3"]).output().expect("run stories");
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "a header and three stories:\n{table}");
    assert!(rows[0].contains("SIZE") && rows[0].contains("HEADLINE"));
    for (row, story) in rows[1..].iter().zip(&largest) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], story.size.to_string(), "{row}");
        assert_eq!(cells[1], story.story_id, "{row}");
        assert!(row.ends_with(&story.canonical_text), "{row}");
    }
}
