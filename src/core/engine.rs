//! The engine of one namespace: the path of a headline from its normalised
//! text to a story, and the stories themselves.
//!
//! Joining a story compares a headline with the story as a whole: its mean
//! similarity to the members (the dot product with the mean of their
//! vectors), not its nearest member, so that A~B and B~C do not chain A and
//! C. After every batch, the stories it touched are consolidated: pairs of
//! stories whose average linkage (mean similarity across their members)
//! clears the merge threshold are merged, best pair first. Together this
//! is a streaming form of average-linkage clustering whose decisions, once
//! answered, only ever merge.
//!
//! Invariants:
//! - every stored headline belongs to exactly one live story (through the
//!   merge redirects);
//! - exact duplicates never enter the index, and neither do near duplicates
//!   or same-story headlines that add nothing to the story's exemplars;
//! - a batch is processed in event-time order, ties broken by a hash of the
//!   id, so its result does not depend on the order of the request;
//! - nothing here is random: the same input gives the same stories.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;

use super::compare::{near_duplicate_veto, string_similarity};
use super::embed::{Embedder, TermStats};
use super::index::SegmentedIndex;
use super::normalize::{Normalized, normalize, stable_hash};
use super::settings::Settings;
use super::story::{QuantizedVector, Story};
use super::types::{
    Assignment, Candidate, Evidence, Headline, ItemError, MatchKind, Millis, Stats, StoredHeadline, StoryCursor,
    StoryId, StoryOrder, StoryQuery, StoryView,
};

/// A same-story headline whose vector is at least this close to one of the
/// story's exemplars adds nothing to the index.
const EXEMPLAR_REDUNDANCY: f32 = 0.9;
/// The most exemplars one story keeps in the index.
const MAX_EXEMPLARS: usize = 24;

/// A stored headline.
#[derive(Debug)]
struct Record {
    headline: Headline,
    norm: Normalized,
    /// Shared by the exact duplicates of one wording.
    vector: Arc<QuantizedVector>,
    story: StoryId,
    kind: MatchKind,
    matched: Option<u64>,
    similarity: f32,
    evidence: Scores,
}

/// The numbers behind a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Scores {
    vector: f32,
    string: f32,
    story: f32,
    threshold: f32,
    note: &'static str,
}

/// What the engine decided for one headline, before applying it.
#[derive(Debug)]
struct Decision {
    kind: MatchKind,
    story: Option<StoryId>,
    matched: Option<u64>,
    similarity: f32,
    scores: Scores,
    candidates: Vec<ScoredCandidate>,
}

#[derive(Debug, Clone, Copy)]
struct ScoredCandidate {
    seq: u64,
    story: StoryId,
    vector: f32,
    string: f32,
    story_score: f32,
}

/// One namespace's headlines, stories and index.
pub struct Engine {
    settings: Settings,
    embedder: Arc<dyn Embedder>,
    terms: TermStats,
    records: HashMap<u64, Record>,
    by_id: HashMap<String, u64>,
    exact: HashMap<u64, u64>,
    stories: HashMap<StoryId, Story>,
    redirects: HashMap<StoryId, StoryId>,
    index: SegmentedIndex,
    next_seq: u64,
    next_story: u64,
    merges: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.settings)
            .field("headlines", &self.records.len())
            .field("stories", &self.stories.len())
            .field("index", &self.index)
            .finish()
    }
}

impl Engine {
    /// An empty engine.
    pub fn new(settings: Settings, embedder: Arc<dyn Embedder>) -> Self {
        let index = SegmentedIndex::new(settings.story_window);
        Self {
            settings,
            embedder,
            terms: TermStats::default(),
            records: HashMap::new(),
            by_id: HashMap::new(),
            exact: HashMap::new(),
            stories: HashMap::new(),
            redirects: HashMap::new(),
            index,
            next_seq: 0,
            next_story: 1,
            merges: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Assigns and stores a batch. Items that failed validation keep their
    /// error; the answers come back in input order.
    pub fn ingest(&mut self, items: Vec<Result<Headline, ItemError>>) -> Vec<Result<Assignment, ItemError>> {
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| items[i].is_ok()).collect();
        order.sort_by_key(|&i| match &items[i] {
            Ok(h) => (h.published, stable_hash(h.id.as_bytes()), i),
            Err(_) => (Millis::MIN, 0, i),
        });
        let mut outcome: Vec<Option<Result<(u64, bool), ItemError>>> = vec![None; items.len()];
        let mut touched = BTreeSet::new();
        for &i in &order {
            let Ok(headline) = &items[i] else { continue };
            outcome[i] = Some(match self.by_id.get(&headline.id) {
                Some(&seq) if self.records[&seq].headline.text == headline.text => Ok((seq, true)),
                Some(_) => Err(ItemError::conflict(&headline.id)),
                None => {
                    let (seq, story) = self.apply(headline.clone());
                    touched.insert(story);
                    Ok((seq, false))
                }
            });
        }
        self.consolidate(touched);
        items
            .into_iter()
            .zip(outcome)
            .map(|(item, outcome)| match (item, outcome) {
                (Err(e), _) | (Ok(_), Some(Err(e))) => Err(e),
                (Ok(_), Some(Ok((seq, replayed)))) => Ok(self.assignment(seq, replayed)),
                (Ok(h), None) => Err(ItemError::invalid("id", format!("headline {:?} was not processed", h.id))),
            })
            .collect()
    }

    /// The assignment a headline would get, and the candidates considered,
    /// best first. Changes nothing.
    pub fn match_headline(&self, headline: &Headline, max_candidates: usize) -> (Assignment, Vec<Candidate>) {
        let norm = normalize(&headline.text, headline.source.as_deref());
        let vector = self.embed(&norm);
        let decision = self.decide(headline.published, &norm, &vector);
        let story = decision.story.and_then(|id| self.stories.get(&id));
        let assignment = Assignment {
            headline_id: headline.id.clone(),
            story_id: decision.story.unwrap_or(StoryId(0)),
            kind: decision.kind,
            matched_headline_id: decision.matched.map(|seq| self.records[&seq].headline.id.clone()),
            similarity: decision.similarity,
            canonical_headline_id: story.map(|s| self.records[&s.canonical].headline.id.clone()).unwrap_or_default(),
            canonical_text: story.map(|s| self.records[&s.canonical].headline.text.clone()).unwrap_or_default(),
            story_size: story.map_or(0, |s| s.members.len()),
            evidence: evidence(&decision.scores, &norm),
            replayed: false,
        };
        let candidates = decision
            .candidates
            .iter()
            .take(max_candidates)
            .map(|c| Candidate {
                headline_id: self.records[&c.seq].headline.id.clone(),
                text: self.records[&c.seq].headline.text.clone(),
                story_id: c.story,
                vector_similarity: c.vector,
                string_similarity: c.string,
                story_similarity: c.story_score,
            })
            .collect();
        (assignment, candidates)
    }

    fn embed(&self, norm: &Normalized) -> Vec<f32> {
        let mut vector = vec![0.0; self.embedder.dim()];
        self.embedder.embed(norm, &self.terms, &mut vector);
        vector
    }

    fn resolve(&self, mut id: StoryId) -> StoryId {
        while let Some(&next) = self.redirects.get(&id) {
            id = next;
        }
        id
    }

    fn alive_at(&self, story: &Story, time: Millis) -> bool {
        let window = self.settings.story_window;
        story.first_seen.saturating_sub(window) <= time && time <= story.last_seen.saturating_add(window)
    }

    fn decide(&self, time: Millis, norm: &Normalized, vector: &[f32]) -> Decision {
        self.decide_exact(time, norm).unwrap_or_else(|| self.decide_similar(time, norm, vector))
    }

    /// The exact tier: an equal normalised text in a live story.
    fn decide_exact(&self, time: Millis, norm: &Normalized) -> Option<Decision> {
        let (seq, story) = self
            .exact
            .get(&norm.key)
            .and_then(|&seq| self.records.get(&seq).map(|rec| (seq, rec)))
            .filter(|(_, rec)| rec.norm.text == norm.text)
            .map(|(seq, rec)| (seq, self.resolve(rec.story)))
            .filter(|(_, story)| self.stories.get(story).is_some_and(|st| self.alive_at(st, time)))?;
        Some(Decision {
            kind: MatchKind::ExactDuplicate,
            story: Some(story),
            matched: Some(seq),
            similarity: 1.0,
            scores: Scores { vector: 1.0, string: 1.0, story: 1.0, threshold: 1.0, note: "same normalised text" },
            candidates: Vec::new(),
        })
    }

    /// The near-duplicate and same-story tiers, from the index candidates.
    fn decide_similar(&self, time: Millis, norm: &Normalized, vector: &[f32]) -> Decision {
        let s = &self.settings;
        let window = s.story_window;
        let hits = self.index.search(vector, time.saturating_sub(window), time.saturating_add(window), s.candidates);
        let mut candidates: Vec<ScoredCandidate> = Vec::with_capacity(hits.len());
        let mut story_scores: Vec<(StoryId, f32)> = Vec::new();
        for (seq, cos) in hits {
            let Some(rec) = self.records.get(&seq) else { continue };
            let story_id = self.resolve(rec.story);
            let Some(story) = self.stories.get(&story_id).filter(|st| self.alive_at(st, time)) else {
                continue;
            };
            let story_score = match story_scores.iter().find(|(id, _)| *id == story_id) {
                Some(&(_, score)) => score,
                None => {
                    let score = story.mean_similarity(vector);
                    story_scores.push((story_id, score));
                    score
                }
            };
            candidates.push(ScoredCandidate {
                seq,
                story: story_id,
                vector: cos,
                string: string_similarity(&norm.text, &rec.norm.text),
                story_score,
            });
        }
        let near = candidates.iter().find(|c| {
            c.vector >= s.near_vector_threshold
                && c.string >= s.near_string_threshold
                && near_duplicate_veto(&norm.text, &self.records[&c.seq].norm.text).is_none()
        });
        if let Some(c) = near {
            return Decision {
                kind: MatchKind::NearDuplicate,
                story: Some(c.story),
                matched: Some(c.seq),
                similarity: c.vector,
                scores: Scores {
                    vector: c.vector,
                    string: c.string,
                    story: c.story_score,
                    threshold: s.near_vector_threshold,
                    note: "lightly edited copy",
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
                    note: "no story close enough",
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
                string: matched.map_or(0.0, |c| c.string),
                story: score,
                threshold: s.story_threshold,
                note: "mean similarity to the story",
            },
            candidates,
        }
    }

    /// Decides and stores one new headline; returns its sequence number
    /// and story.
    fn apply(&mut self, headline: Headline) -> (u64, StoryId) {
        let norm = normalize(&headline.text, headline.source.as_deref());
        let time = headline.published;
        let exact = self.decide_exact(time, &norm).and_then(|decision| {
            let vector = decision.matched.and_then(|m| self.records.get(&m)).map(|r| Arc::clone(&r.vector))?;
            Some((decision, vector, None))
        });
        let (decision, vector, fresh) = exact.unwrap_or_else(|| {
            let v = self.embed(&norm);
            let decision = self.decide_similar(time, &norm, &v);
            (decision, Arc::new(QuantizedVector::new(&v)), Some(v))
        });
        let seq = self.next_seq;
        self.next_seq += 1;
        let story_id = decision.story.unwrap_or_else(|| {
            let id = StoryId(self.next_story);
            self.next_story += 1;
            self.stories.insert(id, Story::new(id, time, self.embedder.dim()));
            id
        });
        let indexed = fresh.filter(|_| self.worth_indexing(&decision, story_id, time));
        if let Some(v) = &indexed {
            self.index.insert(seq, time, v);
        }
        if decision.kind != MatchKind::ExactDuplicate {
            self.terms.add(&norm);
        }
        if decision.kind != MatchKind::ExactDuplicate {
            // The first headline of a wording in a live story stays the one
            // that its exact copies match.
            self.exact.insert(norm.key, seq);
        }
        if let Some(story) = self.stories.get_mut(&story_id) {
            story.add(seq, time, norm.key, &vector, indexed.is_some());
        }
        self.by_id.insert(headline.id.clone(), seq);
        self.records.insert(
            seq,
            Record {
                headline,
                norm,
                vector,
                story: story_id,
                kind: decision.kind,
                matched: decision.matched,
                similarity: decision.similarity,
                evidence: decision.scores,
            },
        );
        (seq, story_id)
    }

    /// Whether a new headline becomes one of its story's exemplars: the
    /// first of a story always; a same-story headline when it is not close
    /// to an exemplar already (and the story has room), or when the story
    /// has no recent exemplar. Duplicates never.
    fn worth_indexing(&self, decision: &Decision, story_id: StoryId, time: Millis) -> bool {
        match decision.kind {
            MatchKind::NewStory => true,
            MatchKind::SameStory => {
                let story = &self.stories[&story_id];
                let redundant =
                    decision.candidates.iter().any(|c| c.story == story_id && c.vector >= EXEMPLAR_REDUNDANCY);
                let stale = story.last_exemplar_time < time.saturating_sub(self.settings.story_window / 2);
                (!redundant && story.exemplars.len() < MAX_EXEMPLARS) || stale
            }
            MatchKind::ExactDuplicate | MatchKind::NearDuplicate => false,
        }
    }

    /// Merges, best pair first, the stories whose average linkage with one
    /// of `touched` clears the merge threshold; then refreshes the
    /// canonical headline of every story that changed.
    fn consolidate(&mut self, touched: BTreeSet<StoryId>) {
        let mut heap = BinaryHeap::new();
        let mut changed = BTreeSet::new();
        for id in touched {
            let id = self.resolve(id);
            if changed.insert(id) {
                self.push_links(id, &mut heap);
            }
        }
        while let Some(Link { strength, a, b }) = heap.pop() {
            let (a, b) = (self.resolve(a), self.resolve(b));
            if a == b {
                continue;
            }
            let (Some(sa), Some(sb)) = (self.stories.get(&a), self.stories.get(&b)) else { continue };
            let current = sa.linkage(sb);
            if current < strength {
                // One side grew since the link was measured: re-queue it.
                if current >= self.settings.merge_threshold {
                    heap.push(Link { strength: current, a, b });
                }
                continue;
            }
            let survivor = self.merge(a, b);
            changed.insert(survivor);
            self.push_links(survivor, &mut heap);
        }
        for id in changed {
            let id = self.resolve(id);
            self.refresh_canonical(id);
        }
    }

    /// Queues the links of story `id` to its neighbours (found through the
    /// index with the story's mean vector) that clear the merge threshold.
    fn push_links(&self, id: StoryId, heap: &mut BinaryHeap<Link>) {
        let Some(story) = self.stories.get(&id) else { return };
        let window = self.settings.story_window;
        let (from, to) = (story.first_seen.saturating_sub(window), story.last_seen.saturating_add(window));
        let k = self.settings.candidates + story.exemplars.len();
        let mut seen = vec![id];
        for (seq, _) in self.index.search(&story.direction(), from, to, k) {
            let Some(rec) = self.records.get(&seq) else { continue };
            let other = self.resolve(rec.story);
            if seen.contains(&other) {
                continue;
            }
            seen.push(other);
            let Some(neighbour) = self.stories.get(&other) else { continue };
            if neighbour.first_seen > to || neighbour.last_seen < from {
                continue;
            }
            let strength = story.linkage(neighbour);
            if strength >= self.settings.merge_threshold {
                heap.push(Link { strength, a: id, b: other });
            }
        }
    }

    /// Merges two stories: the larger survives (the older on a tie) and the
    /// other redirects to it. Returns the survivor.
    fn merge(&mut self, a: StoryId, b: StoryId) -> StoryId {
        let size = |id: &StoryId| self.stories.get(id).map_or(0, |s| s.members.len());
        let (into, from) = match size(&a).cmp(&size(&b)).then(b.cmp(&a)) {
            Ordering::Less => (b, a),
            _ => (a, b),
        };
        let Some(absorbed) = self.stories.remove(&from) else { return into };
        if let Some(survivor) = self.stories.get_mut(&into) {
            survivor.absorb(absorbed);
        }
        self.redirects.insert(from, into);
        self.merges += 1;
        into
    }

    fn refresh_canonical(&mut self, id: StoryId) {
        let Some(story) = self.stories.get(&id) else { return };
        let canonical = story.pick_canonical(|seq| self.records.get(&seq).map(|r| (r.norm.key, r.vector.as_ref())));
        if let (Some(story), Some(seq)) = (self.stories.get_mut(&id), canonical) {
            story.canonical = seq;
        }
    }

    fn assignment(&self, seq: u64, replayed: bool) -> Assignment {
        let rec = &self.records[&seq];
        let story_id = self.resolve(rec.story);
        let story = &self.stories[&story_id];
        let canonical = &self.records[&story.canonical];
        Assignment {
            headline_id: rec.headline.id.clone(),
            story_id,
            kind: rec.kind,
            matched_headline_id: rec.matched.and_then(|m| self.records.get(&m)).map(|m| m.headline.id.clone()),
            similarity: rec.similarity,
            canonical_headline_id: canonical.headline.id.clone(),
            canonical_text: canonical.headline.text.clone(),
            story_size: story.members.len(),
            evidence: evidence(&rec.evidence, &rec.norm),
            replayed,
        }
    }

    /// A stored headline and its assignment.
    pub fn headline(&self, id: &str) -> Option<StoredHeadline> {
        self.by_id.get(id).map(|&seq| self.stored(seq))
    }

    fn stored(&self, seq: u64) -> StoredHeadline {
        let rec = &self.records[&seq];
        StoredHeadline {
            headline: rec.headline.clone(),
            story_id: self.resolve(rec.story),
            kind: rec.kind,
            matched_headline_id: rec.matched.and_then(|m| self.records.get(&m)).map(|m| m.headline.id.clone()),
            similarity: rec.similarity,
        }
    }

    /// A story with its members; a merged-away id resolves to the survivor.
    pub fn story(&self, id: StoryId) -> Option<StoryView> {
        let story = self.stories.get(&self.resolve(id))?;
        Some(self.view(story, true))
    }

    fn view(&self, story: &Story, with_members: bool) -> StoryView {
        let canonical = &self.records[&story.canonical];
        let mut members: Vec<StoredHeadline> =
            if with_members { story.members.iter().map(|&seq| self.stored(seq)).collect() } else { Vec::new() };
        members.sort_by_key(|m| m.headline.published);
        let mut sources: HashMap<&str, usize> = HashMap::new();
        for seq in &story.members {
            if let Some(source) = self.records[seq].headline.source.as_deref() {
                *sources.entry(source).or_default() += 1;
            }
        }
        let mut sources: Vec<(String, usize)> = sources.into_iter().map(|(s, n)| (s.to_owned(), n)).collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        StoryView {
            id: story.id,
            canonical_headline_id: canonical.headline.id.clone(),
            canonical_text: canonical.headline.text.clone(),
            size: story.members.len(),
            members,
            sources,
            first_seen: story.first_seen,
            last_seen: story.last_seen,
            merged: story.merged.clone(),
        }
    }

    /// One page of stories and the cursor of the next page, if any.
    pub fn list_stories(&self, query: &StoryQuery) -> (Vec<StoryView>, Option<StoryCursor>) {
        let cursor = |s: &Story| StoryCursor { size: s.members.len() as u64, last_seen: s.last_seen, id: s.id };
        let sort_key = |c: &StoryCursor| match query.order {
            StoryOrder::Size => (std::cmp::Reverse(c.size), std::cmp::Reverse(c.last_seen), c.id),
            StoryOrder::Recency => (std::cmp::Reverse(0), std::cmp::Reverse(c.last_seen), c.id),
        };
        let mut matching: Vec<&Story> = self
            .stories
            .values()
            .filter(|s| s.members.len() >= query.min_size)
            .filter(|s| query.start.is_none_or(|t| s.last_seen >= t))
            .filter(|s| query.end.is_none_or(|t| s.first_seen < t))
            .filter(|s| query.after.is_none_or(|after| sort_key(&cursor(s)) > sort_key(&after)))
            .collect();
        matching.sort_by_key(|s| sort_key(&cursor(s)));
        let more = matching.len() > query.limit;
        matching.truncate(query.limit);
        let next = more.then(|| matching.last().map(|s| cursor(s))).flatten();
        (matching.into_iter().map(|s| self.view(s, false)).collect(), next)
    }

    /// Removes headlines; returns how many were removed and the ids that
    /// were not stored.
    pub fn delete(&mut self, ids: &[String]) -> (usize, Vec<String>) {
        let mut deleted = 0;
        let mut missing = Vec::new();
        let mut touched = BTreeSet::new();
        for id in ids {
            let Some(seq) = self.by_id.remove(id) else {
                missing.push(id.clone());
                continue;
            };
            let Some(rec) = self.records.remove(&seq) else { continue };
            deleted += 1;
            if rec.kind != MatchKind::ExactDuplicate {
                self.terms.remove(&rec.norm);
            }
            if self.exact.get(&rec.norm.key) == Some(&seq) {
                self.exact.remove(&rec.norm.key);
            }
            let story_id = self.resolve(rec.story);
            if let Some(story) = self.stories.get_mut(&story_id) {
                story.remove(seq, rec.norm.key, &rec.vector);
                touched.insert(story_id);
            }
        }
        for story_id in touched {
            let times: Vec<Millis> = self.stories[&story_id]
                .members
                .iter()
                .filter_map(|seq| self.records.get(seq).map(|r| r.headline.published))
                .collect();
            if times.is_empty() {
                self.stories.remove(&story_id);
                continue;
            }
            if let Some(story) = self.stories.get_mut(&story_id) {
                story.first_seen = times.iter().copied().min().unwrap_or(story.first_seen);
                story.last_seen = times.iter().copied().max().unwrap_or(story.last_seen);
            }
            self.refresh_canonical(story_id);
        }
        (deleted, missing)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            headlines: self.records.len() as u64,
            stories: self.stories.len() as u64,
            indexed_vectors: self.index.len() as u64,
            merges: self.merges,
            embedder: self.settings.embedder.name().to_owned(),
            ..Stats::default()
        };
        for rec in self.records.values() {
            match rec.kind {
                MatchKind::NewStory => stats.new_stories += 1,
                MatchKind::ExactDuplicate => stats.exact_duplicates += 1,
                MatchKind::NearDuplicate => stats.near_duplicates += 1,
                MatchKind::SameStory => stats.same_story += 1,
            }
        }
        stats
    }
}

fn evidence(scores: &Scores, norm: &Normalized) -> Evidence {
    Evidence {
        vector_similarity: scores.vector,
        string_similarity: scores.string,
        story_similarity: scores.story,
        threshold: scores.threshold,
        normalized_text: norm.text.clone(),
        note: scores.note.to_owned(),
    }
}

/// A candidate merge: the average linkage of two stories.
#[derive(Debug, Clone, Copy)]
struct Link {
    strength: f32,
    a: StoryId,
    b: StoryId,
}

impl PartialEq for Link {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Link {}

impl PartialOrd for Link {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Link {
    /// Strongest first; among equals, the lowest story ids first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.strength.total_cmp(&other.strength).then_with(|| (other.a, other.b).cmp(&(self.a, self.b)))
    }
}
