//! The real binary, driven as users drive it: grpcurl running the README's
//! examples, the `healthcheck` subcommand, and SIGTERM.

use std::process::Command;

use crate::support::{Served, binary};

/// The grpcurl binary: $GRPCURL, or `grpcurl` on PATH.
fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

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
    ] {
        assert!(joined.contains(needed), "the README has no grpcurl example with {needed:?}");
    }
    let server = Served::start();
    let mut outputs = Vec::new();
    for command in &commands {
        // The examples use the default address; the test server has its own.
        let command =
            command.replacen("grpcurl ", &format!("{} ", grpcurl()), 1).replace("localhost:50051", &server.addr);
        let output = Command::new("bash").args(["-c", &command]).output().expect("run grpcurl");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{command}\nfailed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
        outputs.push((command, stdout));
    }
    let find = |needle: &str| outputs.iter().find(|(c, _)| c.contains(needle)).map(|(_, o)| o.as_str()).unwrap_or("");
    assert!(find(" list").contains("headline_dedup.v1.DedupService"));
    assert!(find("describe").contains("rpc Ingest"));
    let ingest = find("DedupService/Ingest");
    assert!(ingest.contains("MATCH_KIND_NEW_STORY") && ingest.contains("MATCH_KIND_EXACT_DUPLICATE"), "{ingest}");
    assert!(find("DedupService/GetStory").contains("\"size\": 3"), "{}", find("DedupService/GetStory"));
    assert!(find("Health/Check").contains("SERVING"));
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
