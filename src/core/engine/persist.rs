//! The engine's state as plain data: what a batch changed (to persist it)
//! and everything needed to rebuild an engine (after a restart).

use std::sync::Arc;

use super::book::StoryBook;
use super::decide::{Note, Scores};
use super::ledger::Record;
use super::{Engine, windowed};
use crate::core::embed::Embedder;
use crate::core::error::CoreError;
use crate::core::normalize::normalize;
use crate::core::settings::Settings;
use crate::core::types::{Headline, MatchKind, Millis, StoryId};
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
}

impl Default for Counters {
    fn default() -> Self {
        Self { next_seq: 0, next_story: 1, merges: 0, watermark: Millis::MIN }
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
    /// The counters after the changes.
    pub counters: Counters,
}

/// The headlines the engine added and removed since the last
/// [`Engine::take_changes`] (the story book journals its redirects).
#[derive(Debug, Default)]
pub(super) struct Journal {
    pub(super) added: Vec<u64>,
    pub(super) removed: Vec<(u64, Millis)>,
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
        Changes {
            added,
            removed: journal.removed,
            redirects: redirects.added,
            dropped_redirects: redirects.dropped,
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
        let (from, to) = windowed(engine.watermark, engine.watermark, engine.settings.story_window);
        engine.index.build(from, to);
        Ok(engine)
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
}
