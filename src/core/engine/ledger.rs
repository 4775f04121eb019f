//! The ledger: every stored headline of a namespace as a record, by
//! sequence number, by id and by event time, with counts by kind. What the
//! ledger holds is what is stored; every other part of the engine is
//! derived from it.
//!
//! Invariants: a record is in all three lookups or in none; ids are unique;
//! the counts by kind add up to the number of records. The ledger never
//! decides anything: it is told what to hold.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Numbered;
use super::decide::{Note, Scores};
use super::ids::IdIndex;
use crate::core::index::SegmentedIndex;
use crate::core::normalize::Normalized;
use crate::core::story::MemberInfo;
use crate::core::types::{Headline, MatchKind, Millis, StoryId};
use crate::core::vector::QuantizedVector;

/// A stored headline.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) headline: Headline,
    pub(super) norm: Normalized,
    /// Its vector, shared by the exact duplicates of one wording; `None`
    /// for an exemplar, whose vector the index keeps.
    pub(super) vector: Option<Arc<QuantizedVector>>,
    /// The story it was assigned to (resolve through the redirects).
    pub(super) story: StoryId,
    pub(super) kind: MatchKind,
    pub(super) matched: Option<u64>,
    pub(super) scores: Scores,
}

impl Record {
    /// The similarity its answer gave (a function of its kind and scores,
    /// not stored twice).
    pub(super) fn similarity(&self) -> f32 {
        self.scores.answer_similarity(self.kind)
    }

    /// Whether it is one of its story's exemplars in the index.
    pub(super) fn exemplar(&self) -> bool {
        self.vector.is_none()
    }

    /// Its vector: its own, or, for an exemplar, the one `index` keeps.
    pub(super) fn vector_in<'a>(&'a self, index: &'a SegmentedIndex, seq: u64) -> Option<&'a [i8]> {
        match &self.vector {
            Some(vector) => Some(vector.values()),
            None => index.vector(seq, self.headline.published),
        }
    }
}

/// Stored headlines by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KindCounts {
    pub(super) new_stories: u64,
    pub(super) exact_duplicates: u64,
    pub(super) near_duplicates: u64,
    pub(super) same_story: u64,
}

impl KindCounts {
    fn of(&mut self, kind: MatchKind) -> &mut u64 {
        match kind {
            MatchKind::NewStory => &mut self.new_stories,
            MatchKind::ExactDuplicate => &mut self.exact_duplicates,
            MatchKind::NearDuplicate => &mut self.near_duplicates,
            MatchKind::SameStory => &mut self.same_story,
        }
    }
}

/// The stored headlines of one namespace.
#[derive(Default)]
pub(super) struct Ledger {
    records: Numbered<u64, Record>,
    by_id: IdIndex,
    by_time: BTreeSet<(Millis, u64)>,
    kinds: KindCounts,
}

impl Ledger {
    /// The record of `seq`.
    pub(super) fn get(&self, seq: u64) -> Option<&Record> {
        self.records.get(&seq)
    }

    /// The sequence number of the headline stored under `id`.
    pub(super) fn seq_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id, &self.records)
    }

    /// Adds a record under a new sequence number and a new id; `false` (and
    /// nothing changes) if either is taken.
    pub(super) fn insert(&mut self, seq: u64, record: Record) -> bool {
        if self.records.contains_key(&seq) || self.seq_of(&record.headline.id).is_some() {
            return false;
        }
        self.by_time.insert((record.headline.published, seq));
        *self.kinds.of(record.kind) += 1;
        self.records.insert(seq, record);
        self.by_id.insert(seq, &self.records);
        true
    }

    /// Takes a record out.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Record> {
        let record = self.records.remove(&seq)?;
        *self.kinds.of(record.kind) -= 1;
        self.by_id.remove(&record.headline.id, seq);
        self.by_time.remove(&(record.headline.published, seq));
        Some(record)
    }

    /// The sequence numbers of the records whose event time is before
    /// `cutoff`, oldest first.
    pub(super) fn before(&self, cutoff: Millis) -> Vec<u64> {
        self.by_time.range(..(cutoff, 0)).map(|&(_, seq)| seq).collect()
    }

    /// The number of records.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The records by kind.
    pub(super) fn kinds(&self) -> KindCounts {
        self.kinds
    }

    /// A stored headline's vector: its own, or, for an exemplar, the one
    /// `index` keeps.
    pub(super) fn vector<'a>(&'a self, index: &'a SegmentedIndex, seq: u64) -> Option<&'a [i8]> {
        self.records.get(&seq)?.vector_in(index, seq)
    }

    /// What a story needs to know about a stored headline.
    pub(super) fn member<'a>(&'a self, index: &'a SegmentedIndex, seq: u64) -> Option<MemberInfo<'a>> {
        let record = self.records.get(&seq)?;
        Some(MemberInfo {
            time: record.headline.published,
            key: record.norm.key(),
            vector: self.vector(index, seq)?,
            exemplar: record.exemplar(),
            look_alike: record.scores.note == Note::LookAlike,
            copy: matches!(record.kind, MatchKind::ExactDuplicate | MatchKind::NearDuplicate)
                || record.scores.note == Note::FollowsStory,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    fn record(id: &str, published: Millis, kind: MatchKind) -> Record {
        Record {
            headline: Headline { id: id.into(), text: format!("headline {id}"), source: None, url: None, published },
            norm: normalize(&format!("headline {id}"), None),
            vector: Some(Arc::new(QuantizedVector::new(&[1.0, 0.0]))),
            story: StoryId(1),
            kind,
            matched: None,
            scores: Scores::default(),
        }
    }

    #[test]
    fn every_lookup_agrees_as_records_come_and_go() {
        let mut ledger = Ledger::default();
        assert!(ledger.insert(0, record("a", 30, MatchKind::NewStory)));
        assert!(ledger.insert(1, record("b", 10, MatchKind::ExactDuplicate)));
        assert!(ledger.insert(2, record("c", 20, MatchKind::NewStory)));
        assert!(!ledger.insert(3, record("b", 40, MatchKind::SameStory)), "an id is stored once");
        assert!(!ledger.insert(2, record("d", 40, MatchKind::SameStory)), "a sequence number is used once");
        assert_eq!((ledger.len(), ledger.seq_of("b"), ledger.seq_of("d")), (3, Some(1), None));
        assert_eq!(ledger.before(25), vec![1, 2], "oldest first");
        assert_eq!(ledger.kinds(), KindCounts { new_stories: 2, exact_duplicates: 1, ..KindCounts::default() });
        assert_eq!(ledger.remove(1).map(|r| r.headline.id), Some("b".to_owned()));
        assert!(ledger.remove(1).is_none());
        assert_eq!((ledger.seq_of("b"), ledger.before(25)), (None, vec![2]));
        assert_eq!(ledger.kinds().exact_duplicates, 0);
        assert!(ledger.insert(3, record("b", 40, MatchKind::SameStory)), "a removed id can come back");
        assert_eq!(ledger.seq_of("b"), Some(3));
    }

    #[test]
    fn an_exemplar_reads_its_vector_from_the_index() {
        let mut ledger = Ledger::default();
        let mut index = SegmentedIndex::new(100, 2);
        let mut exemplar = record("x", 5, MatchKind::NewStory);
        exemplar.vector = None;
        index.insert(7, 5, &[0, 127]);
        assert!(ledger.insert(7, exemplar));
        assert!(ledger.insert(8, record("y", 5, MatchKind::SameStory)));
        assert_eq!(ledger.vector(&index, 7), Some([0i8, 127].as_slice()));
        assert_eq!(ledger.vector(&index, 8), Some([127i8, 0].as_slice()));
        let member = ledger.member(&index, 7).expect("a member");
        assert!(member.exemplar && member.time == 5);
        assert!(ledger.vector(&index, 9).is_none());
    }
}
