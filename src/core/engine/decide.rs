//! The decision for one headline: exact, near-duplicate, same-story or new
//! story, with the scores that decided it. The decision reads immutable
//! views of the engine's parts ([`View`]) and changes nothing.

use super::book::StoryBook;
use super::exact::ExactIndex;
use super::ledger::Ledger;
use super::windowed;
use crate::core::background::Frame;
use crate::core::compare::{LOOK_ALIKE_COSINE, Words, is_variant, look_alike, near_duplicate_veto, string_similarity};
use crate::core::embed::{CaseStats, TermStats};
use crate::core::index::{Search, SegmentedIndex};
use crate::core::normalize::Normalized;
use crate::core::settings::Settings;
use crate::core::story::Story;
use crate::core::types::{Assignment, Candidate, Evidence, Headline, MatchKind, Millis, StoryId};
use crate::core::vector::{QuantizedVector, cosine_i8};

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
    /// The stories close enough are look-alikes: a headline of theirs is
    /// the same wording with other names.
    LookAlike,
    /// Close enough to a story, past closer ones that are look-alikes.
    SameStoryPastLookAlike,
    /// A rewrite past the story's window that names what the story's own
    /// headlines name.
    FollowsStory,
}

impl Note {
    const ALL: [Self; 7] = [
        Self::SameText,
        Self::LightEdit,
        Self::SameStory,
        Self::NothingClose,
        Self::LookAlike,
        Self::SameStoryPastLookAlike,
        Self::FollowsStory,
    ];

    /// The explanation shown to clients.
    pub fn text(self) -> &'static str {
        match self {
            Self::SameText => "same normalised text",
            Self::LightEdit => "lightly edited copy",
            Self::SameStory => "mean similarity to the story",
            Self::NothingClose => "no story close enough",
            Self::LookAlike => "the stories close enough are look-alikes: the same wording with other names",
            Self::SameStoryPastLookAlike => {
                "mean similarity to the story; closer stories are look-alikes: the same wording with other names"
            }
            Self::FollowsStory => {
                "past the story's window: close to one of its headlines and names what its own headlines name"
            }
        }
    }

    /// A stable code for storage.
    pub fn code(self) -> u32 {
        match self {
            Self::SameText => 1,
            Self::LightEdit => 2,
            Self::SameStory => 3,
            Self::NothingClose => 4,
            Self::LookAlike => 5,
            Self::SameStoryPastLookAlike => 6,
            Self::FollowsStory => 7,
        }
    }

    /// The note of a stored code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.code() == code)
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
    /// The similarity an answer of kind `kind` gives: 1 for an exact copy
    /// (its vector score), the cosine with its original for a near copy,
    /// the story similarity for a rewrite, 0 for a new story.
    pub fn answer_similarity(&self, kind: MatchKind) -> f32 {
        match kind {
            MatchKind::ExactDuplicate | MatchKind::NearDuplicate => self.vector,
            MatchKind::SameStory => self.story,
            MatchKind::NewStory => 0.0,
        }
    }

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
    pub scores: Scores,
    pub candidates: Vec<ScoredCandidate>,
    /// The stories it was kept from as their look-alike: they must not
    /// merge with its story either.
    pub vetoed: Vec<StoryId>,
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

/// How many of a story's wordings (the earliest) are read for the names
/// it owns.
const FOLLOW_WORDINGS: usize = 16;

/// How many of a story's look-alike members are checked against the
/// other close stories.
const LOOK_ALIKE_HEADS: usize = 4;

/// What the decision reads: immutable views of the engine's parts. The
/// decision changes nothing.
pub(super) struct View<'a> {
    pub(super) settings: &'a Settings,
    pub(super) ledger: &'a Ledger,
    pub(super) exact: &'a ExactIndex,
    pub(super) book: &'a StoryBook,
    pub(super) index: &'a SegmentedIndex,
    /// How the index is searched.
    pub(super) search: Search,
    pub(super) cases: &'a CaseStats,
    /// How many of the namespace's wordings write each word.
    pub(super) terms: &'a TermStats,
    /// The background similarities are judged in.
    pub(super) frame: Frame<'a>,
}

impl<'a> View<'a> {
    /// Whether `story` absorbs rewrites at event time `time`: while it is
    /// within the story window of the story's coverage.
    fn alive_at(&self, story: &Story, time: Millis) -> bool {
        story.gap_to(time) <= self.settings.story_window
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
            similarity: decision.scores.answer_similarity(decision.kind),
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

    /// The exact tier: an equal normalised text in a story whose coverage
    /// is within the copy window: a republished copy joins days later.
    pub(super) fn decide_exact(&self, time: Millis, norm: &Normalized) -> Option<Decision> {
        let (seq, story) = self
            .exact
            .holder(norm.key())
            .and_then(|seq| self.ledger.get(seq).map(|rec| (seq, rec)))
            .filter(|(_, rec)| rec.norm.text == norm.text)
            .map(|(seq, rec)| (seq, self.book.resolve(rec.story)))
            .filter(|(_, story)| {
                self.book.get(*story).is_some_and(|st| st.gap_to(time) <= self.settings.copy_window)
            })?;
        Some(Decision {
            kind: MatchKind::ExactDuplicate,
            story: Some(story),
            matched: Some(seq),
            scores: Scores { vector: 1.0, string: 1.0, story: 1.0, threshold: 1.0, note: Note::SameText },
            candidates: Vec::new(),
            vetoed: Vec::new(),
        })
    }

    /// A stored headline's words, with which of them are names as the feed
    /// writes them now.
    pub(super) fn words_of(&self, seq: u64) -> Option<Words<'a>> {
        let record = self.ledger.get(seq)?;
        Some(Words::new(&record.norm, self.cases.names(&record.norm)))
    }

    /// The two names that differ where stored headline `other` is a
    /// look-alike of `words` (a headline whose vector is `vector`), if it is
    /// close enough to be checked and is one.
    pub(super) fn look_alike_with(&self, vector: &[i8], words: &Words<'_>, other: u64) -> Option<(String, String)> {
        let record = self.ledger.get(other)?;
        let close = self.ledger.vector(self.index, other).is_some_and(|v| cosine_i8(vector, v) >= LOOK_ALIKE_COSINE);
        if !close || !words.may_look_alike(&record.norm) {
            return None;
        }
        let theirs = self.words_of(other)?;
        look_alike(words, &theirs).map(|(mine, its)| (mine.to_owned(), its.to_owned()))
    }

    /// The names that the candidates (of the stories close enough to join)
    /// that are look-alikes of the headline name where the headline names
    /// another (`Toyota` for a headline that says `Honda` in the same
    /// wording).
    fn swapped_names(&self, words: &Words<'_>, candidates: &[ScoredCandidate]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for candidate in candidates.iter().filter(|c| c.vector >= LOOK_ALIKE_COSINE) {
            // Most candidates fail the cheap test and need no more.
            if !self.ledger.get(candidate.seq).is_some_and(|record| words.may_look_alike(&record.norm)) {
                continue;
            }
            let Some(theirs) = self.words_of(candidate.seq) else { continue };
            if let Some((_, theirs)) = look_alike(words, &theirs)
                && !names.iter().any(|n| n == theirs)
            {
                names.push(theirs.to_owned());
            }
        }
        names
    }

    /// The stories the headline is kept from as their look-alike, given the
    /// stories close enough to join (see [`Self::swapped_names`] and
    /// [`Self::rivals`]).
    fn look_alike_vetoes(
        &self,
        norm: &Normalized,
        close: &[StoryId],
        story_scores: &[(StoryId, f32)],
        candidates: &[ScoredCandidate],
    ) -> Vec<StoryId> {
        let words = Words::new(norm, self.cases.names(norm));
        let of_close: Vec<ScoredCandidate> = candidates.iter().filter(|c| close.contains(&c.story)).copied().collect();
        let swapped = self.swapped_names(&words, &of_close);
        let mut vetoed: Vec<StoryId> = if swapped.is_empty() {
            Vec::new()
        } else {
            story_scores
                .iter()
                .map(|(story, _)| *story)
                .filter(|&story| self.names_any(candidates, story, &swapped))
                .collect()
        };
        for story in self.rivals(&words, close, candidates) {
            if !vetoed.contains(&story) {
                vetoed.push(story);
            }
        }
        vetoed
    }

    /// The close stories that a close story was kept apart from as its
    /// look-alike, where the headline names what that story names and not
    /// what they name: a rewrite of the Chile quake ("Strong quake shakes
    /// central Chile") is kept from the Japan quake's story once the two
    /// stories are known look-alikes, however close it is to that story.
    fn rivals(&self, words: &Words<'_>, close: &[StoryId], candidates: &[ScoredCandidate]) -> Vec<StoryId> {
        let mut rivals = Vec::new();
        for &story in close {
            let Some(kept) = self.book.get(story) else { continue };
            for &head in kept.look_alikes.iter().take(LOOK_ALIKE_HEADS) {
                let (Some(vector), Some(theirs)) = (self.ledger.vector(self.index, head), self.words_of(head)) else {
                    continue;
                };
                for other in candidates.iter().filter(|c| c.story != story && close.contains(&c.story)) {
                    let Some((mine, its)) = self.look_alike_with(vector, &theirs, other.seq) else { continue };
                    let loser = match (words.has(&mine), words.has(&its)) {
                        (true, false) => other.story,
                        (false, true) => story,
                        _ => continue,
                    };
                    if !rivals.contains(&loser) {
                        rivals.push(loser);
                    }
                }
            }
        }
        rivals
    }

    /// Whether a candidate of `story` names one of `names`.
    fn names_any(&self, candidates: &[ScoredCandidate], story: StoryId, names: &[String]) -> bool {
        candidates
            .iter()
            .filter(|c| c.story == story)
            .filter_map(|c| self.ledger.get(c.seq))
            .any(|record| record.norm.tokens().any(|token| names.iter().any(|name| is_variant(name, token))))
    }

    /// The story a rewrite that no story within its window takes follows
    /// past its window, if one owns a name of the headline (see
    /// [`Settings::follow_share`]): the best of its headlines found in the
    /// copy window must clear the story threshold, and none may be the
    /// headline's look-alike. `near` are the candidates within the window,
    /// kept as the decision's, and `past` the headlines found within it
    /// whose stories are past their window.
    fn follow(
        &self,
        time: Millis,
        norm: &Normalized,
        vector: &QuantizedVector,
        near: &[ScoredCandidate],
        past: &[(u64, f32)],
    ) -> Option<Decision> {
        let s = self.settings;
        if s.follow_share <= 0.0 {
            return None;
        }
        let flags = self.cases.names(norm);
        let forms = self.ownable_forms(norm, &flags);
        if forms.is_empty() {
            return None;
        }
        let words = Words::new(norm, flags);
        // The stories past their window that a headline follows began
        // before it: their headlines in its window were found already, the
        // earlier ones are searched back to the copy window.
        let (from, to) = (time.saturating_sub(s.copy_window), time.saturating_sub(s.story_window + 1));
        let mut hits = self.index.search_by(vector.values(), from, to, s.candidates, self.search);
        hits.extend_from_slice(past);
        // Per story past its window: its best headline, then its look-alikes.
        let mut best: Vec<(StoryId, u64, f32)> = Vec::new();
        let mut refused: Vec<StoryId> = Vec::new();
        for (seq, cos) in hits.into_iter().filter(|&(_, cos)| cos >= s.story_threshold) {
            let Some(rec) = self.ledger.get(seq) else { continue };
            let story_id = self.book.resolve(rec.story);
            let Some(story) = self.book.get(story_id) else { continue };
            if self.alive_at(story, time) || story.gap_to(time) > s.copy_window || refused.contains(&story_id) {
                continue;
            }
            if self.look_alike_with(vector.values(), &words, seq).is_some() {
                refused.push(story_id);
                best.retain(|(id, _, _)| *id != story_id);
                continue;
            }
            match best.iter_mut().find(|(id, _, _)| *id == story_id) {
                Some(entry) if cos > entry.2 => *entry = (story_id, seq, cos),
                Some(_) => {}
                None => best.push((story_id, seq, cos)),
            }
        }
        best.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        let (story_id, seq, cos) = best.into_iter().find(|&(id, _, _)| self.owns_a_form(id, &forms))?;
        let story = self.book.get(story_id)?;
        let score = story.similarity_in(&self.frame, vector.values(), self.frame.offset(vector.values()));
        let matched = ScoredCandidate { seq, story: story_id, vector: cos, string: None, story_score: score };
        Some(Decision {
            kind: MatchKind::SameStory,
            story: Some(story_id),
            matched: Some(seq),
            scores: Scores {
                vector: cos,
                string: self.string_similarity(&matched, norm),
                story: score,
                threshold: s.story_threshold,
                note: Note::FollowsStory,
            },
            candidates: near.to_vec(),
            vetoed: Vec::new(),
        })
    }

    /// The forms of the headline's names that a story can own: each name,
    /// its possessive or plural (`nari` for "Nari's"), written in two of
    /// the namespace's wordings or more, and in few enough that the
    /// wordings a story is read for can be the share
    /// [`Settings::follow_share`] of them.
    fn ownable_forms(&self, norm: &Normalized, flags: &[bool]) -> Vec<(String, u32)> {
        let most = FOLLOW_WORDINGS as f32 / self.settings.follow_share;
        let mut forms: Vec<(String, u32)> = Vec::new();
        for (name, _) in norm.tokens().zip(flags).filter(|(_, flag)| **flag) {
            let plural = format!("{name}s");
            let candidates = [Some(name), Some(plural.as_str()), name.strip_suffix('s')];
            for form in candidates.into_iter().flatten() {
                let count = self.terms.count(form);
                if count >= 2 && count as f32 <= most && !forms.iter().any(|(f, _)| f == form) {
                    forms.push((form.to_owned(), count));
                }
            }
        }
        forms
    }

    /// Whether `story` owns one of `forms` (each with the number of the
    /// namespace's wordings that write it): two of its first
    /// `FOLLOW_WORDINGS` wordings or more write it, and they are at least
    /// [`Settings::follow_share`] of the namespace's.
    fn owns_a_form(&self, story: StoryId, forms: &[(String, u32)]) -> bool {
        let Some(story) = self.book.get(story) else { return false };
        let heads: Vec<&Normalized> = story
            .wording_heads()
            .into_iter()
            .take(FOLLOW_WORDINGS)
            .filter_map(|seq| self.ledger.get(seq).map(|r| &r.norm))
            .collect();
        forms.iter().any(|(form, count)| {
            let own = heads.iter().filter(|norm| norm.tokens().any(|t| t == form)).count() as f32;
            own >= 2.0 && own >= self.settings.follow_share * *count as f32
        })
    }

    /// The near-duplicate and same-story tiers, from the index candidates.
    pub(super) fn decide_similar(&self, time: Millis, norm: &Normalized, vector: &QuantizedVector) -> Decision {
        let s = self.settings;
        let (from, to) = windowed(time, time, s.story_window);
        let hits = self.index.search_by(vector.values(), from, to, s.candidates, self.search);
        let mut candidates: Vec<ScoredCandidate> = Vec::with_capacity(hits.len());
        let mut story_scores: Vec<(StoryId, f32)> = Vec::new();
        let offset = self.frame.offset(vector.values());
        let mut past: Vec<(u64, f32)> = Vec::new();
        for (seq, cos) in hits {
            let Some(rec) = self.ledger.get(seq) else { continue };
            let story_id = self.book.resolve(rec.story);
            let Some(story) = self.book.get(story_id) else { continue };
            if !self.alive_at(story, time) {
                past.push((seq, cos));
                continue;
            }
            let story_score = match story_scores.iter().find(|(id, _)| *id == story_id) {
                Some(&(_, score)) => score,
                None => {
                    let score = story.similarity_in(&self.frame, vector.values(), offset);
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
                scores: Scores {
                    vector: c.vector,
                    string: self.string_similarity(c, norm),
                    story: c.story_score,
                    threshold: s.near_vector_threshold,
                    note: Note::LightEdit,
                },
                candidates,
                vetoed: Vec::new(),
            };
        }
        story_scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // The best story that clears the threshold and that the headline is
        // not kept from as its look-alike.
        let close: Vec<StoryId> =
            story_scores.iter().take_while(|(_, score)| *score >= s.story_threshold).map(|(story, _)| *story).collect();
        let vetoed = if close.is_empty() {
            Vec::new()
        } else {
            self.look_alike_vetoes(norm, &close, &story_scores, &candidates)
        };
        let chosen = story_scores
            .iter()
            .take_while(|(_, score)| *score >= s.story_threshold)
            .find(|(story, _)| !vetoed.contains(story));
        let Some(&(best, score)) = chosen else {
            if vetoed.is_empty()
                && let Some(follows) = self.follow(time, norm, vector, &candidates, &past)
            {
                return follows;
            }
            return Decision {
                kind: MatchKind::NewStory,
                story: None,
                matched: None,
                scores: Scores {
                    story: story_scores.first().map_or(0.0, |r| r.1),
                    threshold: s.story_threshold,
                    note: if vetoed.is_empty() { Note::NothingClose } else { Note::LookAlike },
                    ..Scores::default()
                },
                candidates,
                vetoed,
            };
        };
        let passed = story_scores.iter().take_while(|(id, _)| *id != best).any(|(id, _)| vetoed.contains(id));
        let matched = candidates
            .iter()
            .filter(|c| c.story == best)
            .max_by(|a, b| a.vector.total_cmp(&b.vector).then(b.seq.cmp(&a.seq)))
            .copied();
        Decision {
            kind: MatchKind::SameStory,
            story: Some(best),
            matched: matched.map(|c| c.seq),
            scores: Scores {
                vector: matched.map_or(0.0, |c| c.vector),
                string: matched.map_or(0.0, |c| self.string_similarity(&c, norm)),
                story: score,
                threshold: s.story_threshold,
                note: if passed { Note::SameStoryPastLookAlike } else { Note::SameStory },
            },
            candidates,
            vetoed,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::Note;
    use crate::core::engine::testing::{fixed_engine, item};
    use crate::core::types::{Assignment, DAY_MS, MatchKind};

    const DAY: i64 = 100 * DAY_MS;
    const HOUR: i64 = DAY_MS / 24;
    const JAPAN: &str = "Magnitude 6.1 earthquake strikes off coast of Japan";
    const CHILE: &str = "Magnitude 6.1 earthquake strikes off coast of Chile";
    const SHAKES: &str = "Strong quake shakes central Chile";

    /// The normalised texts of the headlines above, with vectors: the two
    /// look-alikes 0.9 apart, the rewrite of the second closer to the
    /// first (0.8) than to the second (0.65).
    fn quakes() -> crate::core::engine::Engine {
        fixed_engine(&[
            ("magnitude 6.1 earthquake strikes off coast of japan", [1.0, 0.0, 0.0]),
            ("magnitude 6.1 earthquake strikes off coast of chile", [0.9, 0.4359, 0.0]),
            ("strong quake shakes central chile", [0.8, -0.1, 0.5916]),
        ])
    }

    fn answer(engine: &mut crate::core::engine::Engine, id: &str, text: &str, time: i64) -> Assignment {
        engine.ingest(&[item(id, text, time)]).remove(0).expect("answered")
    }

    #[test]
    fn a_look_alike_starts_its_own_story_and_the_evidence_says_why() {
        let mut engine = quakes();
        let japan = answer(&mut engine, "j", JAPAN, DAY);
        let chile = answer(&mut engine, "c", CHILE, DAY + 60_000);
        assert_eq!(chile.kind, MatchKind::NewStory, "0.9 would join, but the place differs");
        assert_ne!(chile.story_id, japan.story_id);
        assert_eq!(chile.evidence.note, Note::LookAlike.text());
        assert_eq!(engine.stats().merges, 0, "kept apart, the two stories do not merge either");
    }

    #[test]
    fn a_rewrite_joins_the_story_of_its_place_past_a_closer_look_alike() {
        let mut engine = quakes();
        let japan = answer(&mut engine, "j", JAPAN, DAY);
        let chile = answer(&mut engine, "c", CHILE, DAY + 60_000);
        let shakes = answer(&mut engine, "s", SHAKES, DAY + 120_000);
        assert_eq!(shakes.kind, MatchKind::SameStory);
        assert_eq!(shakes.story_id, chile.story_id, "it names Chile, whose look-alike the Japan story is");
        assert_ne!(shakes.story_id, japan.story_id);
        assert_eq!(shakes.evidence.note, Note::SameStoryPastLookAlike.text());
    }

    #[test]
    fn a_rewrite_naming_the_same_place_joins() {
        let mut engine = fixed_engine(&[
            ("trump wins ohio primary", [1.0, 0.0, 0.0]),
            ("trump cruises to victory in ohio primary", [0.8, 0.6, 0.0]),
        ]);
        let wins = answer(&mut engine, "w", "Trump wins Ohio primary", DAY);
        let cruises = answer(&mut engine, "c", "Trump cruises to victory in Ohio primary", DAY + 60_000);
        assert_eq!(cruises.kind, MatchKind::SameStory);
        assert_eq!(cruises.story_id, wins.story_id);
        assert_eq!(cruises.evidence.note, Note::SameStory.text());
    }

    #[test]
    fn a_republished_copy_joins_its_story_days_later_and_does_not_reopen_it_to_rewrites() {
        // keyed-feed/dev.jsonl: the typhoon's first wording, a rewrite, and
        // the first wording again two days later.
        const LANDFALL: &str = "Typhoon Nari makes landfall in southern Japan, thousands ordered to evacuate";
        let mut engine = fixed_engine(&[
            ("typhoon nari makes landfall in southern japan thousands ordered to evacuate", [1.0, 0.0]),
            ("typhoon nari slams into japans kyushu island halting trains", [0.8, 0.6]),
            ("clean up begins in kyushu as floodwaters recede", [0.8, 0.6]),
        ]);
        let first = answer(&mut engine, "kf-001", LANDFALL, DAY);
        let slams = answer(
            &mut engine,
            "kf-005",
            "Typhoon Nari slams into Japan's Kyushu island, halting trains",
            DAY + 2 * HOUR,
        );
        assert_eq!(slams.story_id, first.story_id);
        let again = answer(&mut engine, "kf-013", LANDFALL, DAY + 54 * HOUR);
        assert_eq!(again.kind, MatchKind::ExactDuplicate, "a copy joins within the copy window");
        assert_eq!(again.story_id, first.story_id);
        assert_eq!(again.matched_headline_id.as_deref(), Some("kf-001"));
        let clean_up =
            answer(&mut engine, "kf-014", "Clean-up begins in Kyushu as floodwaters recede", DAY + 55 * HOUR);
        assert_eq!(
            clean_up.kind,
            MatchKind::NewStory,
            "a rewrite that names nothing of the story's own needs the story window of its coverage"
        );
        let early = answer(&mut engine, "early", LANDFALL, DAY - 30 * HOUR);
        assert_eq!(early.kind, MatchKind::ExactDuplicate, "out of order, a copy joins as well");
        assert_eq!(early.story_id, first.story_id);
        let late = answer(&mut engine, "late", LANDFALL, DAY + 2 * HOUR + 73 * HOUR);
        assert_eq!(late.kind, MatchKind::NewStory, "past the copy window a copy starts a story");
    }

    /// keyed-feed/dev.jsonl: the typhoon's first day (two wordings that
    /// name Nari), the next day's Nikkei close after the first day's, and
    /// rewrites a day and more later.
    fn typhoon_and_nikkei() -> crate::core::engine::Engine {
        fixed_engine(&[
            ("typhoon nari makes landfall in southern japan thousands ordered to evacuate", [1.0, 0.0, 0.0]),
            ("typhoon nari slams into japans kyushu island halting trains", [0.8, 0.6, 0.0]),
            ("death toll from typhoon nari in japan rises to five", [0.7, 0.5, 0.5]),
            ("clean up begins in kyushu as naris floodwaters recede", [0.6, 0.6, 0.53]),
            ("flights cancelled as the storm moves north", [0.7, 0.5, 0.5]),
            ("nikkei closes higher as weaker yen lifts exporters", [0.0, 0.0, 1.0]),
            ("nikkei closes lower as stronger yen weighs on exporters", [0.0, 0.3, 0.95]),
        ])
    }

    #[test]
    fn a_rewrite_days_later_that_names_the_storys_own_name_follows_it_without_reopening_it() {
        let mut engine = typhoon_and_nikkei();
        let first = answer(
            &mut engine,
            "kf-001",
            "Typhoon Nari makes landfall in southern Japan, thousands ordered to evacuate",
            DAY,
        );
        let slams =
            answer(&mut engine, "kf-005", "Typhoon Nari slams into Japan's Kyushu island, halting trains", DAY + HOUR);
        assert_eq!(slams.story_id, first.story_id);
        let toll =
            answer(&mut engine, "kf-040", "Death toll from Typhoon Nari in Japan rises to five", DAY + 50 * HOUR);
        assert_eq!(toll.kind, MatchKind::SameStory);
        assert_eq!(toll.story_id, first.story_id, "it names Nari, which only the typhoon's wordings write");
        assert_eq!(toll.evidence.note, Note::FollowsStory.text());
        let clean_up =
            answer(&mut engine, "kf-044", "Clean-up begins in Kyushu as Nari's floodwaters recede", DAY + 56 * HOUR);
        assert_eq!(clean_up.story_id, first.story_id, "the possessive is the same name");
        assert_eq!(clean_up.evidence.note, Note::FollowsStory.text());
        let unnamed = answer(&mut engine, "other", "Flights cancelled as the storm moves north", DAY + 57 * HOUR);
        assert_eq!(unnamed.kind, MatchKind::NewStory, "a follower does not reopen the story to rewrites");
        let late = answer(&mut engine, "late", "Death toll from Typhoon Nari in Japan rises to five", DAY + 76 * HOUR);
        assert_ne!(late.story_id, first.story_id, "past the copy window of the coverage nothing follows");
    }

    #[test]
    fn a_name_only_one_wording_of_a_story_writes_is_not_its_own() {
        let mut engine = typhoon_and_nikkei();
        let monday = answer(&mut engine, "kf-029", "Nikkei closes higher as weaker yen lifts exporters", DAY);
        let tuesday =
            answer(&mut engine, "kf-031", "Nikkei closes lower as stronger yen weighs on exporters", DAY + 24 * HOUR);
        assert_eq!(tuesday.kind, MatchKind::NewStory, "a daily close is the next day's story");
        assert_ne!(tuesday.story_id, monday.story_id);
    }
}
