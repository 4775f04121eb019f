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
                    similarity: rec.similarity,
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
            similarity: stored.similarity,
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
