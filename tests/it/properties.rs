//! Properties that must hold for any input: batch order independence,
//! idempotent normalisation, and the same answers after a restart.

use std::collections::BTreeMap;

use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::types::{Headline, RawHeadline};
use proptest::prelude::*;

use crate::support::{Row, fixture, model};

/// A batch of real headlines: 120 of the fixture, all on one day.
fn batch() -> Vec<Row> {
    let rows = fixture("uci-2014-03-12-sample.jsonl");
    rows.into_iter().step_by(8).take(120).collect()
}

fn parse(row: &Row) -> Headline {
    let time = headline_dedup::dataset::parse_rfc3339("2014-03-12T12:00:00Z").expect("time");
    let raw = RawHeadline { id: &row.id, text: &row.text, source: &row.source, url: "", published: Some(time) };
    Headline::parse(&raw, time, true).expect("valid")
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
        prop_assert_eq!(twice.key, once.key);
    }
}

/// Every stored headline's story, kind and matched headline, and every
/// story's canonical headline and size.
fn answers(app: &App, rows: &[Row]) -> (BTreeMap<String, String>, Vec<String>) {
    use headline_dedup::core::types::{StoryOrder, StoryQuery};
    let headlines = rows
        .iter()
        .filter_map(|r| app.headline("default", &r.id).ok())
        .map(|h| (h.headline.id.clone(), format!("{} {:?} {:?}", h.story_id, h.kind, h.matched_headline_id)))
        .collect();
    let query =
        StoryQuery { start: None, end: None, min_size: 1, order: StoryOrder::Size, limit: usize::MAX, after: None };
    let (stories, _) = app.list_stories("default", &query).expect("stories");
    let stories = stories.iter().map(|s| format!("{} {} {}", s.id, s.canonical_headline_id, s.size)).collect();
    (headlines, stories)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn a_restart_gives_the_same_answers(
        rows in Just(batch()).prop_shuffle(),
        cuts in prop::collection::vec(1usize..40, 1..6),
    ) {
        use headline_dedup::store::Store;
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || App::open(model(), SettingsBook::default(), Store::open(dir.path()).expect("store")).expect("open");
        let app = open();
        let mut rest: &[Row] = &rows;
        for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let (batch, after) = rest.split_at((*cut).min(rest.len()));
            if !batch.is_empty() {
                app.ingest("default", batch.iter().map(|r| Ok(parse(r))).collect()).expect("ingest");
            }
            rest = after;
        }
        let before = answers(&app, &rows);
        drop(app);
        prop_assert_eq!(answers(&open(), &rows), before);
    }
}
