//! The decision for one headline: exact, near-duplicate, same-story or new
//! story, with the scores that decided it. The decision reads immutable
//! views of the engine's parts ([`View`]) and changes nothing.

use super::book::StoryBook;
use super::exact::ExactIndex;
use super::ledger::Ledger;
use super::windowed;
use crate::core::compare::{near_duplicate_veto, string_similarity};
use crate::core::index::SegmentedIndex;
use crate::core::normalize::Normalized;
use crate::core::settings::Settings;
use crate::core::story::Story;
use crate::core::types::{Assignment, Candidate, Evidence, Headline, MatchKind, Millis, StoryId};
use crate::core::vector::QuantizedVector;

/// Why a decision was taken, in a word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Note {
    /// Equal normalised texts.
    SameText,
    /// A lightly edited copy.
    LightEdit,
    /// Close enough to a story.
    SameStory,
    /// Nothing close enough.
    #[default]
    NothingClose,
}

impl Note {
    /// The explanation shown to clients.
    pub fn text(self) -> &'static str {
        match self {
            Self::SameText => "same normalised text",
            Self::LightEdit => "lightly edited copy",
            Self::SameStory => "mean similarity to the story",
            Self::NothingClose => "no story close enough",
        }
    }

    /// A stable code for storage.
    pub fn code(self) -> u32 {
        match self {
            Self::SameText => 1,
            Self::LightEdit => 2,
            Self::SameStory => 3,
            Self::NothingClose => 4,
        }
    }

    /// The note of a stored code.
    pub fn from_code(code: u32) -> Option<Self> {
        [Self::SameText, Self::LightEdit, Self::SameStory, Self::NothingClose].into_iter().find(|n| n.code() == code)
    }
}

/// The numbers behind a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Cosine with the matched headline.
    pub vector: f32,
    /// String similarity with the matched headline.
    pub string: f32,
    /// Mean similarity to the story.
    pub story: f32,
    /// The threshold cleared.
    pub threshold: f32,
    /// Why.
    pub note: Note,
}

impl Scores {
    /// The evidence clients see.
    pub fn evidence(&self, norm: &Normalized) -> Evidence {
        Evidence {
            vector_similarity: self.vector,
            string_similarity: self.string,
            story_similarity: self.story,
            threshold: self.threshold,
            normalized_text: norm.text.clone(),
            note: self.note.text().to_owned(),
        }
    }
}

/// What the engine decided for one headline, before applying it.
#[derive(Debug)]
pub struct Decision {
    pub kind: MatchKind,
    pub story: Option<StoryId>,
    pub matched: Option<u64>,
    pub similarity: f32,
    pub scores: Scores,
    pub candidates: Vec<ScoredCandidate>,
}

/// A known headline found near the new one.
#[derive(Debug, Clone, Copy)]
pub struct ScoredCandidate {
    pub seq: u64,
    pub story: StoryId,
    pub vector: f32,
    /// String similarity, computed only where the near-duplicate tier needs
    /// it (edit distance is the costliest comparison).
    pub string: Option<f32>,
    pub story_score: f32,
}

/// What the decision reads: immutable views of the engine's parts. The
/// decision changes nothing.
pub(super) struct View<'a> {
    pub(super) settings: &'a Settings,
    pub(super) ledger: &'a Ledger,
    pub(super) exact: &'a ExactIndex,
    pub(super) book: &'a StoryBook,
    pub(super) index: &'a SegmentedIndex,
}

impl View<'_> {
    /// Whether `story` still absorbs headlines at event time `time`.
    fn alive_at(&self, story: &Story, time: Millis) -> bool {
        let (from, to) = windowed(story.first_seen, story.last_seen, self.settings.story_window);
        from <= time && time <= to
    }

    /// A candidate's string similarity with `norm`, computed if the
    /// decision did not need it.
    pub(super) fn string_similarity(&self, candidate: &ScoredCandidate, norm: &Normalized) -> f32 {
        candidate.string.unwrap_or_else(|| {
            self.ledger.get(candidate.seq).map_or(0.0, |r| string_similarity(&norm.text, &r.norm.text))
        })
    }

    /// The assignment a headline would get, and the candidates considered,
    /// best first, from its decision.
    pub(super) fn explain(
        &self,
        headline: &Headline,
        norm: &Normalized,
        decision: &Decision,
        max_candidates: usize,
    ) -> (Assignment, Vec<Candidate>) {
        let story = decision.story.and_then(|id| self.book.get(id));
        let record = |seq: u64| self.ledger.get(seq);
        let canonical = story.and_then(|s| record(s.canonical));
        let assignment = Assignment {
            headline_id: headline.id.clone(),
            story_id: decision.story.unwrap_or(StoryId(0)),
            kind: decision.kind,
            matched_headline_id: decision.matched.and_then(record).map(|r| r.headline.id.clone()),
            similarity: decision.similarity,
            canonical_headline_id: canonical.map(|r| r.headline.id.clone()).unwrap_or_default(),
            canonical_text: canonical.map(|r| r.headline.text.clone()).unwrap_or_default(),
            story_size: story.map_or(0, |s| s.members.len()),
            evidence: decision.scores.evidence(norm),
            replayed: false,
        };
        let candidates = decision
            .candidates
            .iter()
            .filter_map(|c| {
                let rec = record(c.seq)?;
                Some(Candidate {
                    headline_id: rec.headline.id.clone(),
                    text: rec.headline.text.clone(),
                    story_id: c.story,
                    vector_similarity: c.vector,
                    string_similarity: self.string_similarity(c, norm),
                    story_similarity: c.story_score,
                })
            })
            .take(max_candidates)
            .collect();
        (assignment, candidates)
    }

    /// The exact tier: an equal normalised text in a live story.
    pub(super) fn decide_exact(&self, time: Millis, norm: &Normalized) -> Option<Decision> {
        let (seq, story) = self
            .exact
            .holder(norm.key)
            .and_then(|seq| self.ledger.get(seq).map(|rec| (seq, rec)))
            .filter(|(_, rec)| rec.norm.text == norm.text)
            .map(|(seq, rec)| (seq, self.book.resolve(rec.story)))
            .filter(|(_, story)| self.book.get(*story).is_some_and(|st| self.alive_at(st, time)))?;
        Some(Decision {
            kind: MatchKind::ExactDuplicate,
            story: Some(story),
            matched: Some(seq),
            similarity: 1.0,
            scores: Scores { vector: 1.0, string: 1.0, story: 1.0, threshold: 1.0, note: Note::SameText },
            candidates: Vec::new(),
        })
    }

    /// The near-duplicate and same-story tiers, from the index candidates.
    pub(super) fn decide_similar(&self, time: Millis, norm: &Normalized, vector: &QuantizedVector) -> Decision {
        let s = self.settings;
        let (from, to) = windowed(time, time, s.story_window);
        let hits = self.index.search(vector.values(), from, to, s.candidates);
        let mut candidates: Vec<ScoredCandidate> = Vec::with_capacity(hits.len());
        let mut story_scores: Vec<(StoryId, f32)> = Vec::new();
        for (seq, cos) in hits {
            let Some(rec) = self.ledger.get(seq) else { continue };
            let story_id = self.book.resolve(rec.story);
            let Some(story) = self.book.get(story_id).filter(|st| self.alive_at(st, time)) else {
                continue;
            };
            let story_score = match story_scores.iter().find(|(id, _)| *id == story_id) {
                Some(&(_, score)) => score,
                None => {
                    let score = story.mean_similarity(vector.values());
                    story_scores.push((story_id, score));
                    score
                }
            };
            let string = (cos >= s.near_vector_threshold).then(|| string_similarity(&norm.text, &rec.norm.text));
            candidates.push(ScoredCandidate { seq, story: story_id, vector: cos, string, story_score });
        }
        let near = candidates.iter().find(|c| {
            c.string.is_some_and(|string| string >= s.near_string_threshold)
                && self.ledger.get(c.seq).is_some_and(|r| near_duplicate_veto(&norm.text, &r.norm.text).is_none())
        });
        if let Some(c) = near {
            return Decision {
                kind: MatchKind::NearDuplicate,
                story: Some(c.story),
                matched: Some(c.seq),
                similarity: c.vector,
                scores: Scores {
                    vector: c.vector,
                    string: self.string_similarity(c, norm),
                    story: c.story_score,
                    threshold: s.near_vector_threshold,
                    note: Note::LightEdit,
                },
                candidates,
            };
        }
        story_scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let Some(&(best, score)) = story_scores.first().filter(|(_, score)| *score >= s.story_threshold) else {
            return Decision {
                kind: MatchKind::NewStory,
                story: None,
                matched: None,
                similarity: 0.0,
                scores: Scores {
                    story: story_scores.first().map_or(0.0, |r| r.1),
                    threshold: s.story_threshold,
                    note: Note::NothingClose,
                    ..Scores::default()
                },
                candidates,
            };
        };
        let matched = candidates
            .iter()
            .filter(|c| c.story == best)
            .max_by(|a, b| a.vector.total_cmp(&b.vector).then(b.seq.cmp(&a.seq)))
            .copied();
        Decision {
            kind: MatchKind::SameStory,
            story: Some(best),
            matched: matched.map(|c| c.seq),
            similarity: score,
            scores: Scores {
                vector: matched.map_or(0.0, |c| c.vector),
                string: matched.map_or(0.0, |c| self.string_similarity(&c, norm)),
                story: score,
                threshold: s.story_threshold,
                note: Note::SameStory,
            },
            candidates,
        }
    }
}
