//! Sequences of operations on one durable application, as pipelines make
//! them: batches with retries, conflicts and repeated ids, event times that
//! jump forwards and backwards across the retention period, deletions,
//! concurrent batches committed as one group, and restarts. After every
//! step, every queued batch has been answered, and every acknowledged
//! headline that is neither deleted nor behind the retention period is
//! still stored with its text; no panic anywhere (libFuzzer aborts on one,
//! even one the application would contain).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::embed::StaticModel;
use headline_dedup::core::types::{Headline, ItemError, ItemErrorKind, RawHeadline};
use headline_dedup::store::Store;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const HOUR: i64 = 3_600_000;
const RETENTION_HOURS: i64 = 48;
/// Arrival time of every call: event times are offsets from it.
const NOW: i64 = 1_400_000_000_000;

/// Texts close to and far from each other, so that stories join, copies
/// match and merges happen.
const TEXTS: [&str; 8] = [
    "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq",
    "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq - ABC News",
    "PKK says withdrawing all forces from Turkey to northern Iraq",
    "Bank of England holds interest rates steady",
    "Fed officials debate the pace of rate rises",
    "Fed raises interest rates by a quarter point",
    "Trump wins Iowa caucuses",
    "Trump wins Ohio primary",
];

#[derive(Debug, Arbitrary)]
struct Item {
    id: u8,
    text: u8,
    /// Hours before the arrival time (negative: in the future).
    hours_ago: i8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// One batch, drained by its caller.
    Ingest(Vec<Item>),
    /// Several batches queued before one drain: one group, one commit.
    Group(Vec<Vec<Item>>),
    Delete(Vec<u8>),
    Restart,
}

fn model() -> Arc<StaticModel> {
    static MODEL: OnceLock<Arc<StaticModel>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| Arc::new(StaticModel::bundled().expect("the bundled model loads"))))
}

fn settings() -> SettingsBook {
    SettingsBook::parse([format!("retention_hours={RETENTION_HOURS}").as_str()]).expect("valid settings")
}

fn open(dir: &std::path::Path) -> App {
    App::open(model(), settings(), Store::open(dir).expect("the store opens")).expect("the state loads")
}

fn parse(item: &Item) -> Result<Headline, ItemError> {
    let id = format!("h{}", item.id % 32);
    let text = TEXTS[usize::from(item.text) % TEXTS.len()];
    let published = NOW - i64::from(item.hours_ago) * HOUR;
    Headline::parse(&RawHeadline { id: &id, text, source: "", url: "", published: Some(published) }, NOW, true)
}

/// What the application has acknowledged, as a client would record it.
#[derive(Default)]
struct Model {
    /// Acknowledged headlines: id → (text, event time).
    stored: BTreeMap<String, (String, i64)>,
    /// The newest acknowledged event time.
    watermark: i64,
}

impl Model {
    /// Checks one batch's answers against what was acknowledged before, and
    /// records what they acknowledge. The engine takes a batch in event-time
    /// order, not request order, so items that share an id are checked
    /// against what the whole batch stored.
    fn answered(
        &mut self,
        items: &[Result<Headline, ItemError>],
        answers: &[Result<headline_dedup::core::types::Assignment, ItemError>],
    ) {
        assert_eq!(items.len(), answers.len(), "one answer per item");
        let before = self.stored.clone();
        for (item, answer) in items.iter().zip(answers) {
            match (item, answer) {
                (Err(_), answer) => assert!(answer.is_err(), "an invalid item was accepted: {answer:?}"),
                (Ok(headline), Ok(a)) if !a.replayed => {
                    assert!(!before.contains_key(&headline.id), "a stored headline was assigned again: {a:?}");
                    let first = self.stored.insert(headline.id.clone(), (headline.text.clone(), headline.published));
                    assert!(first.is_none(), "two items of one batch were stored under {}", headline.id);
                    self.watermark = self.watermark.max(headline.published);
                }
                _ => {}
            }
        }
        for (item, answer) in items.iter().zip(answers) {
            let Ok(headline) = item else { continue };
            let stored = self.stored.get(&headline.id).map(|(text, _)| text);
            match answer {
                Ok(a) => {
                    assert_eq!(a.headline_id, headline.id);
                    assert_eq!(stored, Some(&headline.text), "answered, but not stored with its text: {a:?}");
                }
                Err(e) => match e.kind {
                    ItemErrorKind::AlreadyExists => {
                        assert!(stored.is_some_and(|t| t != &headline.text), "a false conflict: {e:?}");
                    }
                    ItemErrorKind::InvalidArgument => assert_eq!(e.field, "published_time", "{e:?}"),
                    ItemErrorKind::Internal => panic!("an internal error: {e:?}"),
                },
            }
        }
        let cutoff = self.watermark - RETENTION_HOURS * HOUR;
        self.stored.retain(|_, (_, time)| *time >= cutoff);
    }

    /// Every acknowledged, unexpired, undeleted headline is stored, and
    /// nothing else.
    fn check(&self, app: &App) {
        for (id, (text, _)) in &self.stored {
            let stored = app.headline("default", id).unwrap_or_else(|e| panic!("{id} was acknowledged, then lost: {e}"));
            assert_eq!(&stored.headline.text, text);
        }
        let count = app.stats(Some("default")).map_or(0, |s| s.first().map_or(0, |(_, s)| s.headlines));
        assert_eq!(count, self.stored.len() as u64, "the namespace holds other headlines than were acknowledged");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let Ok(dir) = tempfile::Builder::new().tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()) else { return };
    let mut app = open(dir.path());
    let mut model = Model::default();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    for op in ops.iter().take(24) {
        match op {
            Op::Ingest(items) => {
                let items: Vec<_> = items.iter().take(16).map(parse).collect();
                let answers = app.ingest("default", items.clone()).expect("a batch is answered");
                model.answered(&items, &answers);
            }
            Op::Group(batches) => {
                let batches: Vec<Vec<_>> = batches.iter().take(4).map(|b| b.iter().take(8).map(parse).collect()).collect();
                let mut submitted = Vec::new();
                let mut drains = Vec::new();
                for items in &batches {
                    let queued = app.submit("default", items.clone()).expect("queued");
                    drains.extend(queued.drain);
                    submitted.push(queued.answer);
                }
                assert!(drains.len() <= 1, "one drainer per group");
                drains.into_iter().for_each(|d| app.drain(d));
                for (items, answer) in batches.iter().zip(submitted) {
                    let answers = runtime.block_on(answer.answers()).expect("every queued batch is answered");
                    model.answered(items, &answers);
                }
            }
            Op::Delete(ids) => {
                let ids: Vec<String> = ids.iter().take(8).map(|id| format!("h{}", id % 32)).collect();
                if let Ok((deleted, missing)) = app.delete("default", &ids) {
                    for id in &ids {
                        assert_eq!(missing.contains(id), !model.stored.contains_key(id), "{id}");
                    }
                    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
                    assert_eq!(deleted, distinct.iter().filter(|id| model.stored.contains_key(id.as_str())).count());
                    ids.iter().for_each(|id| drop(model.stored.remove(id)));
                }
            }
            Op::Restart => {
                drop(app);
                app = open(dir.path());
            }
        }
        model.check(&app);
    }
});
