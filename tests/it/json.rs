//! JSON over HTTP on the gRPC address, driven by curl as pipelines drive
//! it: every unary RPC answers curl as it answers grpcurl, tokens and
//! limits hold, per-item errors stay per item, the bulk NDJSON endpoint
//! answers line for line, and the curl loop of docs/pipelines.md runs.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{Served, grpcurl};

/// The buf binary (for `buf curl`, a Connect client): $BUF, or `buf` on PATH.
fn buf() -> String {
    std::env::var("BUF").unwrap_or_else(|_| "buf".into())
}

/// Runs `program args` with `input` on stdin; its status and stdout, stderr.
fn run(program: &str, args: &[&str], input: impl AsRef<[u8]>) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child.stdin.take().expect("stdin").write_all(input.as_ref()).expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A POST through curl: the HTTP status and the body.
fn curl(addr: &str, path: &str, content_type: &str, body: impl AsRef<[u8]>, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let header = format!("content-type: {content_type}");
    let mut args = vec!["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", &url, "-H", &header];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--data-binary", "@-"]);
    let (ok, out, err) = run("curl", &args, body);
    assert!(ok, "curl failed: {err}");
    let (body, status) = out.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("an HTTP status"), body.to_owned())
}

/// `text` gzipped.
fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A Connect JSON call of `method`.
fn connect(addr: &str, method: &str, body: &str) -> (u16, Value) {
    let (status, body) =
        curl(addr, &format!("/headline_dedup.v1.DedupService/{method}"), "application/json", body, &[]);
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {body}")))
}

/// JSON with every number as a float: grpcurl writes `1`, serde `1.0`.
fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_floats(v))).collect()),
        other => other,
    }
}

/// The calls both clients make, in order, with the gRPC code and HTTP
/// status of the ones that fail.
const CALLS: &[(&str, &str)] = &[
    (
        "Ingest",
        r#"{"namespace": "desk", "headlines": [
            {"id": "h1", "text": "Typhoon Nari makes landfall in southern Japan", "source": "Reuters",
             "publishedTime": "2025-07-14T06:10:00Z"},
            {"id": "h2", "text": "Typhoon Nari makes landfall in southern Japan - ABC News",
             "publishedTime": "2025-07-14T06:40:00Z"},
            {"id": "h3", "text": "Typhoon Nari slams into Japan's Kyushu island, halting trains",
             "publishedTime": "2025-07-14T08:00:00Z"},
            {"id": "h4", "text": "  ", "publishedTime": "2025-07-14T08:05:00Z"}]}"#,
    ),
    (
        "Match",
        r#"{"namespace": "desk", "headline": {"text": "Nari makes landfall in Japan",
            "publishedTime": "2025-07-14T09:00:00Z"}, "maxCandidates": 3}"#,
    ),
    (
        "ClusterBatch",
        r#"{"namespace": "desk", "headlines": [
            {"id": "c1", "text": "Fed raises rates by a quarter point", "publishedTime": "2025-07-14T06:00:00Z"},
            {"id": "c2", "text": "Fed raises rates by quarter point", "publishedTime": "2025-07-14T06:05:00Z"}]}"#,
    ),
    ("GetHeadline", r#"{"namespace": "desk", "id": "h3"}"#),
    ("GetStory", r#"{"namespace": "desk", "storyId": "s1"}"#),
    ("ListStories", r#"{"namespace": "desk", "minSize": 1}"#),
    ("GetStats", r#"{"namespace": "desk"}"#),
    ("DeleteHeadlines", r#"{"namespace": "desk", "ids": ["h3", "nope"]}"#),
    ("ListStoryChanges", r#"{"namespace": "desk", "pageSize": 5}"#),
    ("ListStoryChanges", r#"{"namespace": "desk", "afterSequence": "99"}"#),
    ("CreateNamespace", r#"{"namespace": "wire", "settings": {"embedder": "lexical", "storyThreshold": 0.45}}"#),
    ("CreateNamespace", r#"{"namespace": "wire"}"#),
    ("UpdateNamespace", r#"{"namespace": "desk", "settings": {"candidates": 12, "retentionHours": 48}}"#),
    ("UpdateNamespace", r#"{"namespace": "desk", "settings": {"embedder": "lexical"}}"#),
    ("GetNamespace", r#"{"namespace": "desk"}"#),
    ("ListNamespaces", "{}"),
    ("DeleteNamespace", r#"{"namespace": "wire"}"#),
    ("GetStory", r#"{"namespace": "desk", "storyId": "s404"}"#),
    ("GetHeadline", r#"{"namespace": "Not A Namespace!", "id": "h1"}"#),
];

#[test]
fn every_unary_rpc_answers_curl_as_it_answers_grpcurl() {
    // The same calls on two fresh servers, one through each client.
    let (by_grpcurl, by_curl) = (Served::start(), Served::start());
    for (method, body) in CALLS {
        let full = format!("headline_dedup.v1.DedupService/{method}");
        let (ok, out, err) = run(&grpcurl(), &["-plaintext", "-d", "@", &by_grpcurl.addr, &full], body);
        let (status, answer) = connect(&by_curl.addr, method, body);
        if ok {
            assert_eq!(status, 200, "{method}: grpcurl succeeded, curl got {status}: {answer}");
            let expected: Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
            assert_eq!(numbers_as_floats(answer), numbers_as_floats(expected), "{method} {body}");
        } else {
            // grpcurl prints "Code: NotFound"; Connect names it "not_found".
            let code = err.lines().find_map(|l| l.trim().strip_prefix("Code: ")).expect("grpcurl names the code");
            let connect_code = answer["code"].as_str().expect("a Connect error code").replace('_', "");
            assert_eq!(connect_code, code.to_lowercase(), "{method}: {err} / {answer}");
            let http = match code {
                "NotFound" => 404,
                "InvalidArgument" | "OutOfRange" | "FailedPrecondition" => 400,
                "AlreadyExists" => 409,
                other => panic!("{method}: unexpected code {other}"),
            };
            assert_eq!(status, http, "{method}: {answer}");
            let message = err.lines().find_map(|l| l.trim().strip_prefix("Message: ")).unwrap_or_default();
            assert_eq!(answer["message"], message, "{method}");
        }
    }
    let (_, ingested) = connect(&by_curl.addr, "GetStats", r#"{"namespace": "desk"}"#);
    assert_eq!(ingested["namespaces"][0]["headlines"], "2", "h1 and h2 stay, h3 was deleted: {ingested}");
}

#[test]
fn a_connect_client_calls_it_in_binary_protobuf_over_both_http_versions() {
    let server = Served::start();
    let url = |method: &str| format!("http://{}/headline_dedup.v1.DedupService/{method}", server.addr);
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let ingest = r#"{"namespace": "c", "headlines": [{"id": "x1", "text": "Fed raises rates by a quarter point",
        "publishedTime": "2025-07-14T06:00:00Z"}]}"#;
    let (ok, out, err) = run(&buf(), &["curl", "--schema", schema, "--data", "@-", &url("Ingest")], ingest);
    assert!(ok, "buf curl (Connect, application/proto): {err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["assignments"][0]["kind"], "MATCH_KIND_NEW_STORY", "{out}");
    for extra in [["--protocol", "connect"], ["--http2-prior-knowledge", "--protocol=connect"]] {
        let args =
            ["curl", "--schema", schema, extra[0], extra[1], "--data", r#"{"namespace": "c"}"#, &url("GetStats")];
        let (ok, out, err) = run(&buf(), &args, "");
        assert!(ok, "buf curl {extra:?}: {err}");
        assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON")["namespaces"][0]["headlines"], "1", "{out}");
    }
    let missing = r#"{"namespace": "c", "storyId": "s9"}"#;
    let (ok, _, err) = run(&buf(), &["curl", "--schema", schema, "--data", missing, &url("GetStory")], "");
    assert!(!ok);
    assert!(err.contains("not_found"), "{err}");
}

#[test]
fn json_calls_need_the_token_and_keep_the_limits() {
    let server = Served::start_with(&["--in-memory", "--auth-token", "s3cret", "--max-message-bytes", "2048"]);
    let ingest = "/headline_dedup.v1.DedupService/Ingest";
    let one = r#"{"headlines": [{"id": "a", "text": "Fed raises rates"}]}"#;
    let (status, body) = curl(&server.addr, ingest, "application/json", one, &[]);
    assert_eq!(status, 401, "{body}");
    let refused: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(refused["code"], "unauthenticated", "{body}");

    let bearer = ["-H", "authorization: Bearer s3cret"];
    let (status, body) = curl(&server.addr, ingest, "application/json", one, &bearer);
    assert_eq!(status, 200, "{body}");

    let big = format!(r#"{{"headlines": [{{"id": "b", "text": "{}"}}]}}"#, "x".repeat(4000));
    let (status, body) = curl(&server.addr, ingest, "application/json", &big, &bearer);
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("JSON")["code"], "resource_exhausted");

    // A gzip body that inflates past the limit is refused the same way.
    let zipped = ["-H", "authorization: Bearer s3cret", "-H", "content-encoding: gzip"];
    let (status, body) = curl(&server.addr, ingest, "application/json", gzip(&big), &zipped);
    assert_eq!(status, 413, "{body}");
    let (status, body) = curl(&server.addr, ingest, "application/json", gzip(one), &zipped);
    assert_eq!(status, 200, "a gzip body within the limit: {body}");

    let (status, body) = curl(&server.addr, ingest, "application/json", r#"{"headlines": 7}"#, &bearer);
    assert_eq!(status, 400, "{body}");
    let (status, _) = curl(&server.addr, ingest, "text/plain", one, &bearer);
    assert_eq!(status, 415);
    let (status, _) = curl(&server.addr, "/headline_dedup.v1.DedupService/Nope", "application/json", "{}", &bearer);
    assert_eq!(status, 404);

    let bulk = "/v1/namespaces/wire/headlines:ingest";
    let (status, body) = curl(&server.addr, bulk, "application/x-ndjson", "{\"id\": \"n1\", \"text\": \"x\"}\n", &[]);
    assert_eq!(status, 401, "{body}");
    let refused: Value = serde_json::from_str(&body).expect("google.rpc.Status JSON");
    assert_eq!(refused["code"], 16, "{body}");

    let (status, body) = curl(&server.addr, bulk, "application/x-ndjson", &big, &bearer);
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("JSON")["code"], 8);

    let metrics = crate::support::http_get(&server.web_addr, "/metrics").1;
    let counted = |method: &str, code: &str| {
        metrics.lines().any(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains(&format!("grpc_method=\"{method}\""))
                && l.contains(&format!("grpc_code=\"{code}\""))
        })
    };
    assert!(counted("Ingest", "OK") && counted("Ingest", "ResourceExhausted"), "{metrics}");
    assert!(counted("headlines:ingest", "ResourceExhausted"), "{metrics}");
}

#[test]
fn the_bulk_endpoint_answers_line_for_line_and_a_bad_line_stays_its_own() {
    let server = Served::start();
    let lines = [
        r#"{"id": "w1", "text": "Typhoon Nari makes landfall in southern Japan", "publishedTime": "2025-07-14T06:10:00Z"}"#,
        "this line is not JSON",
        r#"{"id": "w2", "text": "Typhoon Nari makes landfall in southern Japan - ABC News", "publishedTime": "2025-07-14T06:40:00Z"}"#,
        "",
        r#"{"id": "w3", "text": "", "publishedTime": "2025-07-14T06:50:00Z"}"#,
    ];
    let body = lines.join("\n") + "\n";
    let (status, out) = curl(&server.addr, "/v1/namespaces/wire/headlines:ingest", "application/x-ndjson", &body, &[]);
    assert_eq!(status, 200, "{out}");
    let answers: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("an NDJSON line")).collect();
    assert_eq!(answers.len(), 4, "one answer per headline line, the blank line skipped: {out}");
    assert_eq!(answers[0]["kind"], "MATCH_KIND_NEW_STORY");
    assert_eq!(answers[1]["error"]["field"], "lines[1]", "{out}");
    assert_eq!(answers[2]["kind"], "MATCH_KIND_EXACT_DUPLICATE");
    assert_eq!(answers[2]["storyId"], answers[0]["storyId"]);
    assert_eq!(answers[3]["error"]["field"], "lines[4].text", "{out}");

    // A retried body answers the same stories, now as replays.
    let (_, again) = curl(&server.addr, "/v1/namespaces/wire/headlines:ingest", "application/x-ndjson", &body, &[]);
    let again: Vec<Value> = again.lines().map(|l| serde_json::from_str(l).expect("an NDJSON line")).collect();
    assert_eq!(again[2]["storyId"], answers[2]["storyId"]);
    assert_eq!(again[2]["replayed"], true);
}

#[test]
fn the_readme_curl_examples_run() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let blocks: Vec<&str> = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("curl -sS") && !block.contains("grpcurl"))
        .collect();
    assert!(!blocks.is_empty(), "the README has no curl example");
    let server = Served::start();
    for block in blocks {
        let script = block.replace("localhost:50051", &server.addr).replace("curl -sS", "curl -fsS");
        let output = Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output().expect("run curl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{script}\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        // A Connect answer has no newline after it: read a stream of values.
        let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{stdout}: {e}"));
        assert!(!answers.is_empty(), "{script}");
        for answer in answers {
            assert!(answer.get("code").is_none(), "{script}: {answer}");
        }
    }
}

/// The ```sh block of docs/pipelines.md that follows the marker line.
fn pipelines_block(marker: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/pipelines.md")).expect("pipelines.md");
    let after = doc.split(marker).nth(1).unwrap_or_else(|| panic!("docs/pipelines.md has no {marker:?}"));
    let block = after.split("```sh\n").nth(1).expect("a sh block after the marker");
    block.split("```").next().expect("a closed block").to_owned()
}

#[test]
fn the_curl_loop_of_the_pipelines_guide_runs() {
    let server = Served::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let feed = dir.path().join("headlines.ndjson");
    std::fs::write(
        &feed,
        "{\"id\": \"p1\", \"text\": \"Fed raises rates by a quarter point\"}\n\
         {\"id\": \"p2\", \"text\": \"Fed raises rates by a quarter point - Reuters\"}\n\
         {\"id\": \"p3\", \"text\": \"Apple unveils a new iPhone\"}\n",
    )
    .expect("write the feed");
    let script = pipelines_block("<!-- the curl loop -->");
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("HEADLINE_DEDUP", format!("http://{}", server.addr))
        .env("FEED", &feed)
        .env("BATCH", "2")
        .current_dir(dir.path())
        .output()
        .expect("run the loop");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script}\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let answers: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("NDJSON")).collect();
    assert_eq!(answers.len(), 3, "{stdout}");
    assert_eq!(answers[0]["storyId"], answers[1]["storyId"], "one wire headline and its copy: {stdout}");
    assert_ne!(answers[2]["storyId"], answers[0]["storyId"], "{stdout}");
    let copies = answers.iter().filter(|a| a["kind"] == "MATCH_KIND_EXACT_DUPLICATE").count();
    assert_eq!(copies, 1, "{stdout}");
}
