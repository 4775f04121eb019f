//! The engine's state as plain data: what a batch changed (to persist it)
//! and everything needed to rebuild an engine (after a restart).

use std::sync::Arc;

use super::Engine;
use super::book::StoryBook;
use super::decide::{Note, Scores};
use super::feed::StoryJournal;
use super::ledger::Record;
use crate::core::embed::Embedder;
use crate::core::error::CoreError;
use crate::core::normalize::normalize;
use crate::core::settings::Settings;
use crate::core::types::{Headline, MatchKind, Millis, Removal, StoryChange, StoryId};
use crate::core::vector::QuantizedVector;

/// Counters that survive a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// The next headline sequence number.
    pub next_seq: u64,
    /// The next story number.
    pub next_story: u64,
    /// Merges so far.
    pub merges: u64,
    /// The latest event time ever accepted: the retention clock, which
    /// never moves backwards (not even when that headline is deleted).
    pub watermark: Millis,
    /// The number of the story change feed's next entry.
    pub next_change: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Self { next_seq: 0, next_story: 1, merges: 0, watermark: Millis::MIN, next_change: 1 }
    }
}

/// A stored headline as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedRecord {
    /// Sequence number, unique in the namespace, in arrival order.
    pub seq: u64,
    /// The headline as ingested.
    pub headline: Headline,
    /// The story it was assigned to (before any later merge).
    pub story: StoryId,
    /// How it was assigned.
    pub kind: MatchKind,
    /// The headline that decided it.
    pub matched: Option<u64>,
    /// The deciding similarity.
    pub similarity: f32,
    /// Cosine with the matched headline.
    pub vector_similarity: f32,
    /// String similarity with the matched headline.
    pub string_similarity: f32,
    /// Mean similarity to the story.
    pub story_similarity: f32,
    /// The threshold cleared.
    pub threshold: f32,
    /// Why (a [`Note`] code).
    pub note: u32,
    /// Whether it is in the index.
    pub exemplar: bool,
    /// Its vector.
    pub vector: QuantizedVector,
}

/// What changed since the last [`Engine::take_changes`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// New headlines.
    pub added: Vec<PersistedRecord>,
    /// Removed headlines: sequence number and event time.
    pub removed: Vec<(u64, Millis)>,
    /// New merge redirects: from, to.
    pub redirects: Vec<(StoryId, StoryId)>,
    /// Merge redirects dropped (their survivor disappeared), by the story
    /// they redirected.
    pub dropped_redirects: Vec<StoryId>,
    /// The story change feed's new entries, in order.
    pub story_changes: Vec<StoryChange>,
    /// The feed's entries before this number are no longer kept.
    pub story_changes_from: u64,
    /// The counters after the changes.
    pub counters: Counters,
}

/// The headlines the engine added and removed since the last
/// [`Engine::take_changes`] (the story book journals its redirects).
#[derive(Debug, Default)]
pub(super) struct Journal {
    pub(super) added: Vec<u64>,
    pub(super) removed: Vec<(u64, Millis)>,
    /// The stories they touched.
    pub(super) stories: StoryJournal,
}

impl Engine {
    /// The changes since the last call, as data to persist.
    pub fn take_changes(&mut self) -> Changes {
        let journal = std::mem::take(&mut self.journal);
        let redirects = self.book.take_journal();
        let added = journal
            .added
            .iter()
            .filter_map(|&seq| {
                let rec = self.ledger.get(seq)?;
                let vector = QuantizedVector::from_values(self.ledger.vector(&self.index, seq)?.into());
                Some(PersistedRecord {
                    seq,
                    headline: rec.headline.clone(),
                    story: rec.story,
                    kind: rec.kind,
                    matched: rec.matched,
                    similarity: rec.similarity(),
                    vector_similarity: rec.scores.vector,
                    string_similarity: rec.scores.string,
                    story_similarity: rec.scores.story,
                    threshold: rec.scores.threshold,
                    note: rec.scores.note.code(),
                    exemplar: rec.exemplar(),
                    vector,
                })
            })
            .collect();
        let story_changes = self.story_changes(journal.stories, &redirects.added);
        Changes {
            added,
            removed: journal.removed,
            redirects: redirects.added,
            dropped_redirects: redirects.dropped,
            story_changes,
            story_changes_from: self.next_change.saturating_sub(self.settings.change_feed_length).max(1),
            counters: self.counters(),
        }
    }

    /// Forgets the journal of changes (when nothing persists them).
    pub fn discard_changes(&mut self) {
        self.journal = Journal::default();
        self.book.take_journal();
    }

    /// Whether anything changed since the last [`Engine::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.journal.added.is_empty() || !self.journal.removed.is_empty() || self.book.has_changes()
    }

    /// Rebuilds an engine from its stored state: the counters and merge
    /// redirects, then the records in ascending sequence order, taken one
    /// at a time so that the stored state is never in memory twice. Fails
    /// on the first record that cannot be read, a stored vector that does
    /// not fit the embedder, or a record that is inconsistent
    /// ([`CoreError::Inconsistent`]).
    pub fn restore<E: From<CoreError>>(
        settings: Settings,
        embedder: Arc<dyn Embedder>,
        counters: Counters,
        redirects: &[(StoryId, StoryId)],
        records: impl IntoIterator<Item = Result<PersistedRecord, E>>,
    ) -> Result<Self, E> {
        let dim = embedder.dim();
        let mut engine = Self::new(settings, embedder);
        engine.book = StoryBook::new(dim, counters.next_story, counters.merges);
        engine.book.restore_redirects(redirects);
        for stored in records {
            engine.restore_record(stored?, dim)?;
        }
        engine.book.settle_redirects()?;
        for id in engine.book.ids() {
            engine.book.refresh_canonical(id, |seq| engine.ledger.member(&engine.index, seq));
        }
        engine.next_seq = engine.next_seq.max(counters.next_seq);
        engine.watermark = engine.watermark.max(counters.watermark);
        engine.next_change = engine.next_change.max(counters.next_change);
        Ok(engine)
    }

    /// Applies the facts another engine wrote for one commit (a follower
    /// of the namespace's leader), so that this engine becomes the one a
    /// restore of the store after that commit would build: the new
    /// headlines with their assignments, then the merges in the direction
    /// they were made, then the removals. Nothing is decided and nothing is
    /// journalled. Fails, leaving the engine to be rebuilt, on facts that do
    /// not follow from its state.
    pub fn apply_committed(&mut self, changes: &Changes) -> Result<(), CoreError> {
        let dim = self.embedder.dim();
        let mut touched = std::collections::BTreeSet::new();
        for stored in &changes.added {
            touched.insert(stored.story);
            self.restore_record(stored.clone(), dim)?;
        }
        for &(from, into) in &changes.redirects {
            self.book.absorb_into(from, into);
        }
        let removed: Vec<u64> = changes.removed.iter().map(|&(seq, _)| seq).collect();
        self.remove(&removed, Removal::Retention);
        self.book.drop_redirects(&changes.dropped_redirects);
        for id in touched.into_iter().chain(changes.redirects.iter().map(|&(_, into)| into)) {
            let live = self.book.resolve(id);
            self.book.refresh_canonical(live, |seq| self.ledger.member(&self.index, seq));
        }
        self.next_seq = self.next_seq.max(changes.counters.next_seq);
        self.watermark = self.watermark.max(changes.counters.watermark);
        self.next_change = self.next_change.max(changes.counters.next_change);
        self.book.set_counters(changes.counters.next_story, changes.counters.merges);
        if let Some(cutoff) = self.settings.retention.map(|r| self.watermark.saturating_sub(r)) {
            self.index.drop_before(cutoff);
        }
        self.discard_changes();
        Ok(())
    }

    /// Adds one stored record while restoring; the sequence numbers grow
    /// past it.
    fn restore_record(&mut self, stored: PersistedRecord, dim: usize) -> Result<(), CoreError> {
        let id = &stored.headline.id;
        if stored.vector.dim() != dim {
            return Err(CoreError::Inconsistent(format!(
                "headline {id:?} has a vector of dimension {}, the embedder makes {dim}",
                stored.vector.dim()
            )));
        }
        if self.next_seq > stored.seq {
            return Err(CoreError::Inconsistent(format!("headline {id:?} is out of sequence order ({})", stored.seq)));
        }
        let note = Note::from_code(stored.note).ok_or_else(|| {
            CoreError::Inconsistent(format!("headline {id:?} has an unknown note code {}", stored.note))
        })?;
        if self.ledger.seq_of(id).is_some() {
            return Err(CoreError::Inconsistent(format!("headline {id:?} is stored twice")));
        }
        self.next_seq = stored.seq + 1;
        self.book.open_stored(stored.story)?;
        if stored.exemplar {
            self.index.insert(stored.seq, stored.headline.published, stored.vector.values());
        }
        let record = Record {
            norm: normalize(&stored.headline.text, stored.headline.source.as_deref()),
            headline: stored.headline,
            vector: (!stored.exemplar).then(|| Arc::new(stored.vector)),
            story: stored.story,
            kind: stored.kind,
            matched: stored.matched,
            scores: Scores {
                vector: stored.vector_similarity,
                string: stored.string_similarity,
                story: stored.story_similarity,
                threshold: stored.threshold,
                note,
            },
        };
        if !self.store(stored.seq, record) {
            return Err(CoreError::Inconsistent(format!("record {} cannot be stored", stored.seq)));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::testing::{fixed_engine, item};
    use super::*;
    use crate::core::types::{DAY_MS, StoryOrder, StoryQuery};

    /// What a store holds after applying every change.
    #[derive(Default)]
    struct Stored {
        records: BTreeMap<u64, PersistedRecord>,
        redirects: BTreeMap<StoryId, StoryId>,
        counters: Counters,
    }

    impl Stored {
        fn apply(&mut self, changes: Changes) {
            for record in changes.added {
                self.records.insert(record.seq, record);
            }
            for (seq, _) in changes.removed {
                self.records.remove(&seq);
            }
            self.redirects.extend(changes.redirects);
            for from in changes.dropped_redirects {
                self.redirects.remove(&from);
            }
            self.counters = changes.counters;
        }
    }

    fn everything(engine: &Engine) -> (Vec<String>, Vec<String>) {
        let mut headlines: Vec<String> = engine
            .ledger
            .before(Millis::MAX)
            .into_iter()
            .filter_map(|seq| engine.ledger.get(seq))
            .filter_map(|r| engine.headline(&r.headline.id))
            .map(|h| format!("{} {} {:?} {:?}", h.headline.id, h.story_id, h.kind, h.matched_headline_id))
            .collect();
        headlines.sort();
        let query =
            StoryQuery { start: None, end: None, min_size: 1, order: StoryOrder::Size, limit: usize::MAX, after: None };
        let stories = engine
            .list_stories(&query)
            .0
            .iter()
            .map(|s| format!("{} {} {}", s.id, s.canonical_headline_id, s.size))
            .collect();
        (headlines, stories)
    }

    #[test]
    fn the_stored_changes_restore_the_same_engine() {
        let vectors = [
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha two", [0.95, 0.31, 0.0]),
            ("beta", [0.4, 0.9165, 0.0]),
            ("gamma", [0.0, 0.0, 1.0]),
        ];
        let mut engine = fixed_engine(&vectors);
        let mut store = Stored::default();
        let day = 10 * DAY_MS;
        let batches = [
            vec![item("a", "alpha", day), item("g", "gamma", day)],
            vec![item("a2", "alpha", day + 1), item("b", "beta", day + 2)],
            vec![item("a3", "alpha two", day + 3), item("g2", "gamma", day + 4 * DAY_MS)],
        ];
        for batch in &batches {
            engine.ingest(batch);
            store.apply(engine.take_changes());
        }
        engine.delete(&["g".to_owned()]);
        store.apply(engine.take_changes());
        assert!(engine.stats().merges > 0, "the history has a merge");
        let redirects: Vec<(StoryId, StoryId)> = store.redirects.iter().map(|(a, b)| (*a, *b)).collect();
        let records = store.records.values().cloned().map(Ok::<_, CoreError>);
        let restored =
            Engine::restore(engine.settings.clone(), Arc::clone(&engine.embedder), store.counters, &redirects, records)
                .expect("restored");
        assert_eq!(everything(&restored), everything(&engine));
        assert_eq!(restored.counters(), engine.counters());
        assert_eq!(restored.stats(), engine.stats());
    }

    #[test]
    fn an_inconsistent_store_is_refused() {
        let mut engine = fixed_engine(&[("alpha", [1.0, 0.0, 0.0])]);
        engine.ingest(&[item("a", "alpha", 0), item("b", "alpha", 1)]);
        let changes = engine.take_changes();
        let restore = |records: Vec<PersistedRecord>| {
            let records = records.into_iter().map(Ok::<_, CoreError>);
            Engine::restore(engine.settings.clone(), Arc::clone(&engine.embedder), changes.counters, &[], records)
                .map(|_| ())
        };
        let mut backwards = changes.added.clone();
        backwards.reverse();
        assert!(matches!(restore(backwards), Err(CoreError::Inconsistent(_))));
        let mut twice = changes.added.clone();
        twice[1].headline.id = "a".into();
        assert!(matches!(restore(twice), Err(CoreError::Inconsistent(_))));
        let mut short = changes.added.clone();
        short[0].vector = QuantizedVector::new(&[1.0]);
        assert!(matches!(restore(short), Err(CoreError::Inconsistent(_))));
        assert!(restore(changes.added.clone()).is_ok());
    }

    /// Headlines of the repository's UCI fixture: text and source.
    fn fixture_texts() -> Vec<(String, Option<String>)> {
        include_str!("../../../tests/fixtures/uci-2014-03-12-sample.jsonl")
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|row| (row["text"].as_str().unwrap_or("").to_owned(), row["source"].as_str().map(str::to_owned)))
            .collect()
    }

    /// One step of a leader's history.
    #[derive(Debug, Clone)]
    enum Step {
        /// Ingest `len` fixture headlines from `start`, `day` days on.
        Ingest { start: usize, len: usize, day: i64 },
        /// Delete the headlines ingested at these positions of the history.
        Delete(Vec<usize>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0usize..1000, 5usize..60, 0i64..5).prop_map(|(start, len, day)| Step::Ingest { start, len, day }),
            1 => proptest::collection::vec(0usize..400, 1..6).prop_map(Step::Delete),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

        /// A follower that applies each commit's facts is the engine a
        /// restore of the store builds and the leader's own, and answers
        /// the next batch as the leader does: merges, deletions and expiry
        /// (a two-day retention) included.
        #[test]
        fn a_follower_applying_the_facts_equals_the_leader_and_a_restore(
            steps in proptest::collection::vec(step(), 1..8)
        ) {
            let texts = fixture_texts();
            proptest::prop_assert!(texts.len() > 1040, "the fixture has its headlines");
            let settings = Settings { retention: Some(2 * DAY_MS), ..Settings::default() };
            let mut leader = super::super::testing::model_engine();
            leader.settings = settings.clone();
            let mut follower = Engine::new(settings.clone(), Arc::clone(&leader.embedder));
            let mut store = Stored::default();
            let mut ingested: Vec<String> = Vec::new();
            for (n, step) in steps.iter().enumerate() {
                match step {
                    Step::Ingest { start, len, day } => {
                        let batch: Vec<_> = (*start..(start + len).min(texts.len()))
                            .filter_map(|i| texts.get(i).map(|t| (i, t)))
                            .map(|(i, (text, source))| {
                                let id = format!("h{n}-{i}");
                                ingested.push(id.clone());
                                Ok(Headline {
                                    id,
                                    text: text.clone(),
                                    source: source.clone(),
                                    url: None,
                                    published: 10 * DAY_MS + day * DAY_MS + (i as i64) * 60_000,
                                })
                            })
                            .collect();
                        leader.ingest(&batch);
                    }
                    Step::Delete(positions) => {
                        let ids: Vec<String> = positions.iter().filter_map(|&p| ingested.get(p).cloned()).collect();
                        leader.delete(&ids);
                    }
                }
                let changes = leader.take_changes();
                follower.apply_committed(&changes).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                store.apply(changes);
            }
            let redirects: Vec<(StoryId, StoryId)> = store.redirects.iter().map(|(a, b)| (*a, *b)).collect();
            let records = store.records.values().cloned().map(Ok::<_, CoreError>);
            let mut restored = Engine::restore(settings, Arc::clone(&leader.embedder), store.counters, &redirects, records)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(everything(&follower), everything(&leader));
            proptest::prop_assert_eq!(everything(&restored), everything(&leader));
            proptest::prop_assert_eq!(follower.counters(), leader.counters());
            proptest::prop_assert_eq!(follower.stats(), leader.stats());
            let next: Vec<_> = (0..40)
                .filter_map(|i| texts.get(1000 + i).map(|(text, source)| (i, text, source)))
                .map(|(i, text, source)| {
                    Ok(Headline {
                        id: format!("next-{i}"),
                        text: text.clone(),
                        source: source.clone(),
                        url: None,
                        published: 13 * DAY_MS + (i as i64) * 60_000,
                    })
                })
                .collect();
            let answers = leader.ingest(&next);
            proptest::prop_assert_eq!(follower.ingest(&next), answers.clone());
            proptest::prop_assert_eq!(restored.ingest(&next), answers);
        }
    }
}
