//! Properties of the engine that must hold for any input order.

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
    let app = App::in_memory(model(), SettingsBook::default());
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
