//! Properties that must hold for any input: batch order independence,
//! idempotent normalisation, and the same answers after a restart.

use std::collections::BTreeMap;

use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::types::{Headline, RawHeadline};
use proptest::prelude::*;

use crate::support::{Row, fixture, model};

/// A batch of real headlines: 120 of the fixture.
fn batch() -> Vec<Row> {
    let rows = fixture("uci-2014-03-12-sample.jsonl");
    rows.into_iter().step_by(8).take(120).collect()
}

/// A row at `time` (RFC 3339) under `id`.
fn at(row: &Row, id: &str, time: &str) -> Headline {
    let time = headline_dedup::dataset::parse_rfc3339(time).expect("time");
    let raw = RawHeadline { id, text: &row.text, source: &row.source, url: "", published: Some(time) };
    Headline::parse(&raw, time, true).expect("valid")
}

/// A row at noon of the fixture's day.
fn parse(row: &Row) -> Headline {
    at(row, &row.id, "2014-03-12T12:00:00Z")
}

/// Every headline's story, kind and matched headline after one batch.
fn outcome(rows: &[Row]) -> BTreeMap<String, String> {
    let app = App::in_memory(model(), SettingsBook::default()).expect("app");
    let answers = app.ingest("default", rows.iter().map(|r| Ok(parse(r))).collect()).expect("ingest");
    answers
        .into_iter()
        .map(|a| {
            let a = a.expect("assigned");
            (a.headline_id.clone(), format!("{} {:?} {:?}", a.story_id, a.kind, a.matched_headline_id))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_order_of_a_batch_does_not_change_its_result(shuffled in Just(batch()).prop_shuffle()) {
        prop_assert_eq!(outcome(&shuffled), outcome(&batch()));
    }
}

/// Headline-like text: real headlines dressed in the noise feeds add
/// (prefixes, outlet suffixes, invisible characters, odd case and
/// punctuation), or any text at all.
fn noisy_text() -> impl Strategy<Value = String> {
    let real = prop::sample::select(batch().into_iter().map(|r| r.text).collect::<Vec<_>>());
    let prefix = prop::sample::select(vec!["", "UPDATE 2-", "EXCLUSIVE: ", "WATCH - ", "UPDATE 1-BREAKING: "]);
    let suffix = prop::sample::select(vec!["", " - Reuters", " | BBC News", " – The Guardian", "...", " (VIDEO)"]);
    let noise = prop::sample::select(vec!["", "\u{200b}", "\u{202e}", "\u{feff}", "&amp;", "  ", "’s", "\t"]);
    let dressed = (prefix, real, suffix, noise, any::<bool>()).prop_map(|(prefix, text, suffix, noise, upper)| {
        let text = if upper { text.to_uppercase() } else { text };
        format!("{prefix}{text}{noise}{suffix}")
    });
    prop_oneof![3 => dressed, 1 => "\\PC{0,120}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_is_idempotent(text in noisy_text(), source in prop::option::of("[A-Za-z .]{1,20}")) {
        use headline_dedup::core::normalize::normalize;
        let once = normalize(&text, source.as_deref());
        let twice = normalize(&once.text, None);
        prop_assert_eq!(&twice.text, &once.text, "from {:?}", text);
        prop_assert_eq!(twice.key(), once.key());
    }
}

/// Every stored headline's story, kind and matched headline, every story's
/// canonical headline and size, and the namespace's counters.
fn answers(app: &App, ids: &[String]) -> (BTreeMap<String, String>, Vec<String>, String) {
    use headline_dedup::core::types::{StoryOrder, StoryQuery};
    let headlines = ids
        .iter()
        .filter_map(|id| app.headline("default", id).ok())
        .map(|h| (h.headline.id.clone(), format!("{} {:?} {:?}", h.story_id, h.kind, h.matched_headline_id)))
        .collect();
    let query =
        StoryQuery { start: None, end: None, min_size: 1, order: StoryOrder::Size, limit: usize::MAX, after: None };
    let (stories, _, _) = app.list_stories("default", &query).expect("stories");
    let stories = stories.iter().map(|s| format!("{} {} {}", s.id, s.canonical_headline_id, s.size)).collect();
    let stats = format!("{:?}", app.stats(Some("default")).expect("stats"));
    (headlines, stories, stats)
}

/// The answers to a batch, as strings.
fn ingested(app: &App, items: Vec<Headline>) -> Vec<String> {
    let answers = app.ingest("default", items.into_iter().map(Ok).collect()).expect("ingest");
    answers.iter().map(|a| format!("{a:?}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Batches of any size on two days, deletions between them, and a late
    /// batch that sends the first day behind the retention period: a server
    /// started on a copy of the data holds the same stories, and answers
    /// new headlines exactly as the server that never stopped.
    #[test]
    fn a_restart_gives_the_same_answers(
        rows in Just(batch()).prop_shuffle(),
        cuts in prop::collection::vec(1usize..40, 1..6),
        deletions in prop::collection::vec(0usize..120, 0..12),
        late in prop::collection::vec(0usize..120, 0..6),
    ) {
        use headline_dedup::store::{DB_FILE, Store};
        let (dir, copy) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
        let settings = || SettingsBook::parse(["retention_hours=240"]).expect("settings");
        let open = |dir: &std::path::Path| {
            App::open(model(), settings(), Store::open(dir).expect("store")).expect("open")
        };
        let app = open(dir.path());
        let day = |row: &Row| {
            let time = if row.id.len().is_multiple_of(2) { "2014-03-11T06:00:00Z" } else { "2014-03-12T12:00:00Z" };
            at(row, &row.id, time)
        };
        let mut rest: &[Row] = &rows;
        for (n, cut) in cuts.iter().chain(std::iter::once(&usize::MAX)).enumerate() {
            let (batch, after) = rest.split_at((*cut).min(rest.len()));
            if !batch.is_empty() {
                ingested(&app, batch.iter().map(day).collect());
            }
            rest = after;
            let gone: Vec<String> = deletions.iter().skip(n * 2).take(2).map(|&i| rows[i % rows.len()].id.clone()).collect();
            if !gone.is_empty() {
                app.delete("default", &gone).expect("delete");
            }
        }
        let mut ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let late: Vec<Headline> = late
            .iter()
            .map(|&i| at(&rows[i % rows.len()], &format!("late-{i}"), "2014-03-21T12:00:00Z"))
            .collect();
        ids.extend(late.iter().map(|h| h.id.clone()));
        if !late.is_empty() {
            ingested(&app, late);
        }
        std::fs::copy(dir.path().join(DB_FILE), copy.path().join(DB_FILE)).expect("copy");
        let restarted = open(copy.path());
        prop_assert_eq!(answers(&restarted, &ids), answers(&app, &ids));
        let probe: Vec<Headline> = fixture("uci-2014-03-12-sample.jsonl")
            .iter()
            .skip(3)
            .step_by(17)
            .take(40)
            .map(|r| at(r, &format!("probe-{}", r.id), "2014-03-21T13:00:00Z"))
            .collect();
        prop_assert_eq!(ingested(&restarted, probe.clone()), ingested(&app, probe));
        prop_assert_eq!(answers(&restarted, &ids), answers(&app, &ids));
    }
}
