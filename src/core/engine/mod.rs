//! The engine of one namespace: the path of a headline from its normalised
//! text to a story. It wires parts that each own one thing:
//!
//! - the [`ledger`](ledger::Ledger): the stored headlines (by sequence
//!   number, id and time, counts by kind);
//! - the [`exact index`](exact::ExactIndex): which stored headline holds
//!   each normalised wording;
//! - the [`story book`](book::StoryBook): stories, merge redirects, story
//!   numbers;
//! - the vector index ([`SegmentedIndex`]): the exemplars' vectors, by time;
//! - the namespace's word statistics ([`TermStats`]).
//!
//! The decision ([`decide::View`]) reads immutable views of them; applying
//! a decision, consolidating stories ([`consolidate`]), removing headlines
//! and restoring ([`persist`]) are the engine's own.
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
//! - nothing here is random, and everything derived (story sums, the exact
//!   map, term counts, index graphs) is a function of the stored records, so
//!   the same input gives the same stories before and after a reload.

mod book;
mod consolidate;
mod decide;
mod exact;
mod feed;
mod ids;
mod ledger;
mod persist;
mod query;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use book::StoryBook;
use decide::{Decision, View};
use exact::ExactIndex;
use ledger::{Ledger, Record};
use persist::Journal;
pub use persist::{Changes, Counters, PersistedRecord};

use super::background::{Background, Frame};
use super::embed::{CaseStats, Embedder, TermStats};
use super::index::{Search, SegmentedIndex};
use super::normalize::{Normalized, normalize, stable_hash};
use super::settings::Settings;
use super::story::Story;
use super::types::{Assignment, Candidate, Headline, ItemError, MatchKind, Millis, Removal, StoryId};
use super::vector::QuantizedVector;

/// A same-story headline whose vector is at least this close to one of the
/// story's exemplars adds nothing to the index.
const EXEMPLAR_REDUNDANCY: f32 = 0.9;
/// The most exemplars one story keeps in the index.
const MAX_EXEMPLARS: usize = 24;
/// Index segments per story window. A search of `±window` reads every
/// segment it overlaps, on average `2 * window` plus one segment's span:
/// a quarter-window segment reads 2.25 windows' points where a
/// window-wide one reads 3.
const SEGMENTS_PER_WINDOW: Millis = 4;

/// A map keyed by numbers the engine assigns itself (sequence numbers,
/// story ids): no client chooses these keys, so a fast fixed hasher serves.
type Numbered<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The event times within `window` of `[first, last]`.
fn windowed(first: Millis, last: Millis, window: Millis) -> (Millis, Millis) {
    (first.saturating_sub(window), last.saturating_add(window))
}

/// The background `settings` judge similarities in.
fn frame_of<'a>(background: &'a Background, settings: &Settings) -> Frame<'a> {
    background.frame(settings.background_prior, settings.background_weight)
}

/// The error of a new headline older than the retention period.
fn too_old() -> ItemError {
    ItemError::invalid("published_time", "older than the namespace's retention period behind its newest headline")
}

/// One namespace's headlines, stories and index.
pub struct Engine {
    settings: Settings,
    embedder: Arc<dyn Embedder>,
    terms: TermStats,
    /// How the namespace writes its words: which are names.
    cases: CaseStats,
    /// What the namespace's headlines have in common.
    background: Background,
    ledger: Ledger,
    exact: ExactIndex,
    book: StoryBook,
    index: SegmentedIndex,
    /// The next headline sequence number.
    next_seq: u64,
    /// The latest event time ever accepted: the retention clock, which
    /// never moves backwards (not even when that headline is deleted).
    watermark: Millis,
    /// The number of the story change feed's next entry.
    next_change: u64,
    /// The headlines added and removed since the last
    /// [`Engine::take_changes`].
    journal: Journal,
    /// When on, each decision through the index is taken again with every
    /// segment scanned, and the two compared.
    scan_check: Option<ScanCheck>,
}

/// How often the index's approximate reads (codes, graphs) gave the decision an
/// exact scan gives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanCheck {
    /// Decisions taken through the index.
    pub decisions: u64,
    /// Of them, those an exact scan took the same way (kind, story and
    /// matched headline).
    pub agreed: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("settings", &self.settings)
            .field("headlines", &self.ledger.len())
            .field("stories", &self.book.len())
            .field("index", &self.index)
            .finish()
    }
}

impl Engine {
    /// An empty engine.
    pub fn new(settings: Settings, embedder: Arc<dyn Embedder>) -> Self {
        let counters = Counters::default();
        let dim = embedder.dim();
        let index = SegmentedIndex::new(settings.story_window / SEGMENTS_PER_WINDOW, dim);
        let book = StoryBook::new(dim, counters.next_story, counters.merges);
        Self {
            settings,
            embedder,
            terms: TermStats::default(),
            cases: CaseStats::default(),
            background: Background::new(dim),
            ledger: Ledger::default(),
            exact: ExactIndex::default(),
            book,
            index,
            next_seq: counters.next_seq,
            watermark: counters.watermark,
            next_change: counters.next_change,
            journal: Journal::default(),
            scan_check: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters that survive a reload.
    fn counters(&self) -> Counters {
        Counters {
            next_seq: self.next_seq,
            next_story: self.book.next_story(),
            merges: self.book.merges(),
            watermark: self.watermark,
            next_change: self.next_change,
        }
    }

    /// From now on, takes every decision through the index a second time
    /// with every segment scanned and counts how often the two agree (a
    /// measurement: it doubles the cost of a decision).
    pub fn check_against_scan(&mut self) {
        self.scan_check = Some(ScanCheck::default());
    }

    /// What [`Self::check_against_scan`] counted, if it is on.
    pub fn scan_check(&self) -> Option<ScanCheck> {
        self.scan_check
    }

    /// The background to judge similarities in now.
    fn frame(&self) -> Frame<'_> {
        frame_of(&self.background, &self.settings)
    }

    /// What the decision reads.
    fn decision_view(&self) -> View<'_> {
        self.view_searching(Search::Approximate)
    }

    /// What the decision reads, with the index searched `search`.
    fn view_searching(&self, search: Search) -> View<'_> {
        View {
            settings: &self.settings,
            ledger: &self.ledger,
            exact: &self.exact,
            book: &self.book,
            index: &self.index,
            search,
            cases: &self.cases,
            terms: &self.terms,
            frame: self.frame(),
        }
    }

    /// Assigns and stores a batch. Items that failed validation keep their
    /// error; the answers come back in input order.
    ///
    /// The batch is processed in event-time order (ties by a hash of the
    /// id). Only the items the batch accepts move the retention clock (see
    /// [`Engine::batch_cutoff`]); the answers are taken before the headlines
    /// that fell behind it leave, so a retried headline is answered even if
    /// it leaves with this very batch.
    pub fn ingest(&mut self, items: &[Result<Headline, ItemError>]) -> Vec<Result<Assignment, ItemError>> {
        let mut order: Vec<(usize, &Headline)> =
            items.iter().enumerate().filter_map(|(i, item)| item.as_ref().ok().map(|h| (i, h))).collect();
        order.sort_by_key(|&(i, h)| (h.published, stable_hash(h.id.as_bytes()), i));
        let cutoff = self.batch_cutoff(order.iter().map(|&(_, h)| h));
        let mut outcome: Vec<Option<Result<(u64, bool), ItemError>>> = vec![None; items.len()];
        let mut touched: BTreeMap<StoryId, BTreeSet<StoryId>> = BTreeMap::new();
        for (i, headline) in order {
            let stored = self.ledger.seq_of(&headline.id).map(|seq| (seq, self.ledger.get(seq)));
            let decided = match stored {
                Some((seq, Some(record))) if record.headline.text == headline.text => Ok((seq, true)),
                Some(_) => Err(ItemError::conflict(&headline.id)),
                None if cutoff.is_some_and(|c| headline.published < c) => Err(too_old()),
                None => match self.apply(headline.clone()) {
                    Some((seq, story, near)) => {
                        touched.entry(story).or_default().extend(near);
                        Ok((seq, false))
                    }
                    None => Err(ItemError::internal(&headline.id)),
                },
            };
            if let Some(slot) = outcome.get_mut(i) {
                *slot = Some(decided);
            }
        }
        self.consolidate(touched);
        let answers = items
            .iter()
            .zip(outcome)
            .map(|(item, outcome)| match (item, outcome) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(Err(e))) => Err(e),
                (Ok(h), Some(Ok((seq, replayed)))) => {
                    self.assignment(seq, replayed).ok_or_else(|| ItemError::internal(&h.id))
                }
                (Ok(h), None) => Err(ItemError::internal(&h.id)),
            })
            .collect();
        if let Some(cutoff) = cutoff {
            self.expire(cutoff);
        }
        answers
    }

    /// The retention cutoff for a batch whose valid items come in
    /// processing order: its newest accepted event time (or the
    /// namespace's watermark, if later) minus the retention period. A
    /// replay or a conflict is not accepted, and neither is an item older
    /// than the cutoff, so none of them moves the clock; an id that comes
    /// twice counts once, where it is first accepted. Raising the cutoff
    /// can only move an id's first accepted time later, never drop the
    /// newest one, so the loop reaches its fixed point in a few rounds.
    fn batch_cutoff<'h>(&self, order: impl Iterator<Item = &'h Headline> + Clone) -> Option<Millis> {
        let retention = self.settings.retention?;
        let mut newest = self.watermark;
        loop {
            let cutoff = newest.saturating_sub(retention);
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            let accepted = order
                .clone()
                .filter(|h| h.published >= cutoff && self.ledger.seq_of(&h.id).is_none())
                .filter(|h| seen.insert(h.id.as_str()))
                .map(|h| h.published)
                .fold(self.watermark, Millis::max);
            if accepted <= newest {
                return Some(cutoff);
            }
            newest = accepted;
        }
    }

    /// The assignment a headline would get, and the candidates considered,
    /// best first. Changes nothing.
    pub fn match_headline(&self, headline: &Headline, max_candidates: usize) -> (Assignment, Vec<Candidate>) {
        let norm = normalize(&headline.text, headline.source.as_deref());
        let view = self.decision_view();
        let decision = view
            .decide_exact(headline.published, &norm)
            .unwrap_or_else(|| view.decide_similar(headline.published, &norm, &self.embed(&norm)));
        view.explain(headline, &norm, &decision, max_candidates)
    }

    /// The vector of a normalised text, as the engine stores and compares
    /// it: embedded, then quantized.
    fn embed(&self, norm: &Normalized) -> QuantizedVector {
        let started = std::time::Instant::now();
        let mut vector = vec![0.0; self.embedder.dim()];
        self.embedder.embed(norm, &self.terms, &mut vector);
        metrics::histogram!(super::embed::EMBED_SECONDS, "embedder" => self.settings.embedder.name())
            .record(started.elapsed().as_secs_f64());
        QuantizedVector::new(&vector)
    }

    /// A stored headline's vector, to share with an exact duplicate.
    fn shared_vector(&self, seq: u64) -> Option<Arc<QuantizedVector>> {
        match &self.ledger.get(seq)?.vector {
            Some(vector) => Some(Arc::clone(vector)),
            None => self.ledger.vector(&self.index, seq).map(|v| Arc::new(QuantizedVector::from_values(v.into()))),
        }
    }

    /// The event times at which a story absorbs rewrites at the story
    /// threshold, and merges: its coverage, widened by the story window.
    fn alive_span(&self, story: &Story) -> (Millis, Millis) {
        let (from, to) = story.coverage();
        windowed(from, to, self.settings.story_window)
    }

    /// Decides and stores one new headline; returns its sequence number,
    /// its story and the stories of its candidates (`None` if it could not
    /// be stored, which only an inconsistent engine would do).
    fn apply(&mut self, headline: Headline) -> Option<(u64, StoryId, Vec<StoryId>)> {
        let norm = normalize(&headline.text, headline.source.as_deref());
        let time = headline.published;
        let view = self.decision_view();
        let exact = view.decide_exact(time, &norm).and_then(|decision| {
            let vector = decision.matched.and_then(|m| self.shared_vector(m))?;
            Some((decision, vector))
        });
        let mut agreed = None;
        let (decision, vector) = exact.unwrap_or_else(|| {
            let vector = self.embed(&norm);
            let decision = view.decide_similar(time, &norm, &vector);
            if self.scan_check.is_some() {
                let scanned = self.view_searching(Search::Scan).decide_similar(time, &norm, &vector);
                let answer = |d: &Decision| (d.kind, d.story, d.matched);
                agreed = Some(answer(&decision) == answer(&scanned));
            }
            (decision, Arc::new(vector))
        });
        if let (Some(check), Some(agreed)) = (self.scan_check.as_mut(), agreed) {
            check.decisions += 1;
            check.agreed += u64::from(agreed);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let story_id = decision.story.unwrap_or_else(|| self.book.open());
        let exemplar = self.worth_indexing(&decision, story_id, time);
        let near =
            decision.candidates.iter().map(|c| c.story).filter(|story| !decision.vetoed.contains(story)).collect();
        if exemplar {
            self.index.insert(seq, time, vector.values());
        }
        let record = Record {
            headline,
            norm,
            vector: (!exemplar).then_some(vector),
            story: story_id,
            kind: decision.kind,
            matched: decision.matched,
            scores: decision.scores,
        };
        if !self.store(seq, record) {
            return None;
        }
        self.journal.added.push(seq);
        self.journal.stories.joined(story_id, decision.story.is_none());
        Some((seq, story_id, near))
    }

    /// Adds a record to every part (the engine's own additions and
    /// reloaded ones alike); its story must be live, and its vector in the
    /// index if it is an exemplar. `false`, with nothing changed, if its
    /// sequence number or id is taken.
    fn store(&mut self, seq: u64, record: Record) -> bool {
        let story = record.story;
        if !self.ledger.insert(seq, record) {
            return false;
        }
        let Some(record) = self.ledger.get(seq) else { return false };
        if record.kind != MatchKind::ExactDuplicate {
            self.terms.add(&record.norm);
            self.cases.add(&record.norm);
            self.exact.insert(record.norm.key(), seq);
            if let Some(vector) = self.ledger.vector(&self.index, seq) {
                self.background.add(vector);
            }
        }
        self.watermark = self.watermark.max(record.headline.published);
        if let Some(member) = self.ledger.member(&self.index, seq) {
            self.book.add(story, seq, member);
        }
        true
    }

    /// Whether a new headline becomes one of its story's exemplars: the
    /// first of a story always; a same-story headline when it is not close
    /// to an exemplar already (and the story has room), or when the story
    /// has no recent exemplar. Duplicates never.
    fn worth_indexing(&self, decision: &Decision, story_id: StoryId, time: Millis) -> bool {
        match decision.kind {
            MatchKind::NewStory => true,
            MatchKind::SameStory => {
                let Some(story) = self.book.get(story_id) else { return true };
                let redundant =
                    decision.candidates.iter().any(|c| c.story == story_id && c.vector >= EXEMPLAR_REDUNDANCY);
                let stale = story.last_exemplar_time < time.saturating_sub(self.settings.story_window / 2);
                (!redundant && story.exemplars < MAX_EXEMPLARS) || stale
            }
            MatchKind::ExactDuplicate | MatchKind::NearDuplicate => false,
        }
    }

    /// Removes headlines by id; returns how many were removed and the ids
    /// that were not stored.
    pub fn delete(&mut self, ids: &[String]) -> (usize, Vec<String>) {
        let mut seqs = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.ledger.seq_of(id) {
                Some(seq) => seqs.push(seq),
                None => missing.push(id.clone()),
            }
        }
        seqs.sort_unstable();
        seqs.dedup();
        (self.remove(&seqs, Removal::Takedown), missing)
    }

    /// Removes every headline whose event time is before `cutoff`; returns
    /// how many. Index segments that hold only such headlines are dropped.
    pub fn expire(&mut self, cutoff: Millis) -> usize {
        let old = self.ledger.before(cutoff);
        let removed = self.remove(&old, Removal::Retention);
        self.index.drop_before(cutoff);
        removed
    }

    fn remove(&mut self, seqs: &[u64], why: Removal) -> usize {
        let mut touched = BTreeSet::new();
        let mut removed = 0;
        let mut points = Vec::new();
        for &seq in seqs {
            let Some(record) = self.ledger.remove(seq) else { continue };
            removed += 1;
            if record.exemplar() {
                points.push((seq, record.headline.published));
            }
            if record.kind != MatchKind::ExactDuplicate {
                self.terms.remove(&record.norm);
                self.cases.remove(&record.norm);
                self.exact.forget(record.norm.key(), seq);
                // An exemplar's vector is still in the index, which forgets
                // the removed points below.
                if let Some(vector) = record.vector_in(&self.index, seq) {
                    self.background.remove(vector);
                }
            }
            let story = self.book.resolve(record.story);
            touched.insert(story);
            self.journal.stories.left(story, why);
            self.journal.removed.push((seq, record.headline.published));
        }
        // The index forgets them too, so that it is the index a restart
        // would build from what is left.
        self.index.remove(&points);
        for id in touched {
            self.book.rebuild(id, |seq| self.ledger.member(&self.index, seq));
        }
        removed
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::embed::{StaticModel, embedder_for};
    use crate::core::types::{DAY_MS, ItemErrorKind};

    fn engine() -> Engine {
        let settings = Settings { retention: None, ..Settings::default() };
        let model = Arc::new(StaticModel::bundled().expect("model"));
        let embedder = embedder_for(&settings, &model);
        Engine::new(settings, embedder)
    }

    fn headline(id: &str, published: Millis) -> Result<Headline, ItemError> {
        let text = "Apple unveils a larger iPhone with a curved screen".to_owned();
        Ok(Headline { id: id.into(), text, source: None, url: None, published })
    }

    fn answer(engine: &mut Engine, id: &str, published: Millis) -> (MatchKind, Option<String>) {
        let mut answers = engine.ingest(&[headline(id, published)]);
        let assignment = answers.pop().and_then(Result::ok).expect("assignment");
        (assignment.kind, assignment.matched_headline_id)
    }

    #[test]
    fn a_deleted_wording_falls_back_to_its_previous_holder() {
        let mut engine = engine();
        // Ten days apart, each copy is a new story of its own.
        for (id, day) in [("a", 0), ("b", 10), ("c", 20)] {
            assert_eq!(answer(&mut engine, id, day * DAY_MS).0, MatchKind::NewStory, "{id}");
        }
        assert_eq!(answer(&mut engine, "c2", 20 * DAY_MS + 1).1.as_deref(), Some("c"));
        for (gone, id, day, holder) in [("c", "b2", 10, "b"), ("b", "a2", 0, "a")] {
            assert_eq!(engine.delete(&[gone.to_owned()]).0, 1);
            let (kind, matched) = answer(&mut engine, id, day * DAY_MS + 1);
            assert_eq!((kind, matched.as_deref()), (MatchKind::ExactDuplicate, Some(holder)), "{id}");
        }
        engine.delete(&["a".to_owned()]);
        assert_ne!(answer(&mut engine, "a3", 2).0, MatchKind::ExactDuplicate);
    }

    fn dated(id: &str, text: &str, published: Millis) -> Result<Headline, ItemError> {
        Ok(Headline { id: id.into(), text: text.into(), source: None, url: None, published })
    }

    #[test]
    fn the_check_against_a_scan_counts_decisions_and_changes_no_answer() {
        let texts = [
            "Fed raises rates by a quarter point",
            "Fed raises interest rates by quarter point",
            "Fed raises rates by a quarter point",
            "Apple unveils a larger iPhone",
        ];
        let items: Vec<_> =
            texts.iter().enumerate().map(|(i, t)| dated(&i.to_string(), t, DAY_MS + i as i64)).collect();
        let (mut plain, mut checked) = (testing::model_engine(), testing::model_engine());
        checked.check_against_scan();
        let answers = |engine: &mut Engine| -> Vec<_> {
            engine.ingest(&items).into_iter().map(|a| a.map(|a| (a.kind, a.story_id, a.matched_headline_id))).collect()
        };
        assert_eq!(answers(&mut checked), answers(&mut plain));
        assert_eq!(plain.scan_check(), None);
        // The exact copy is decided without the index; the three others go
        // through it, and with every segment under the scan limit the two
        // searches are one.
        assert_eq!(checked.scan_check(), Some(ScanCheck { decisions: 3, agreed: 3 }));
    }

    #[test]
    fn a_retry_of_an_old_headline_beside_a_new_one_answers_both() {
        let mut engine = testing::model_engine();
        let now = 100 * DAY_MS;
        let old = "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq";
        assert!(engine.ingest(&[dated("a", old, now - 40 * DAY_MS)]).into_iter().all(|a| a.is_ok()));
        let answers = engine.ingest(&[
            dated("a", old, now - 40 * DAY_MS),
            dated("b", "Fed raises interest rates by a quarter point", now),
        ]);
        let replay = answers[0].as_ref().expect("the retry is answered");
        assert!(replay.replayed);
        assert_eq!(answers[1].as_ref().map(|a| a.kind), Ok(MatchKind::NewStory));
        // The retried headline has now left with the retention period.
        assert!(engine.headline("a").is_none());
        assert!(engine.headline("b").is_some());
    }

    #[test]
    fn a_refused_item_does_not_move_the_retention_clock() {
        let mut engine = testing::model_engine();
        let k2_time = 200 * DAY_MS;
        let answers = engine.ingest(&[
            dated("k1", "Apple unveils a larger iPhone with a curved screen", k2_time - 29 * DAY_MS),
            dated("k2", "Fed raises interest rates by a quarter point", k2_time),
        ]);
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let conflict = engine.ingest(&[dated("k2", "Another text for the same id", k2_time + 2 * DAY_MS)]);
        assert_eq!(conflict[0].as_ref().map_err(|e| e.kind), Err(ItemErrorKind::AlreadyExists));
        assert!(engine.headline("k1").is_some(), "k1 expired because of a refused item");
        assert_eq!(engine.watermark, k2_time);
    }

    #[test]
    fn a_merge_redirect_goes_when_its_survivor_expires() {
        let mut engine = testing::fixed_engine(&[
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha again", [1.0, 0.0, 0.0]),
            ("beta", [0.42, 0.9075, 0.0]),
            ("beta again", [0.42, 0.9075, 0.0]),
            ("cat", [0.0, 0.0, 1.0]),
        ]);
        engine.settings.retention = Some(30 * DAY_MS);
        let day = 50 * DAY_MS;
        engine.ingest(&[dated("a", "alpha", day), dated("a2", "alpha again", day + 1)]);
        engine.ingest(&[dated("b", "beta", day + 2), dated("b2", "beta again", day + 3)]);
        assert_eq!(engine.stats().merges, 1, "the two stories merged");
        let (survivor, merged) = (StoryId(1), StoryId(2));
        assert_eq!(engine.story(merged).map(|s| s.id), Some(survivor));
        engine.take_changes();
        engine.ingest(&[dated("later", "cat", day + 31 * DAY_MS)]);
        assert!(engine.story(survivor).is_none() && engine.story(merged).is_none());
        assert_eq!(engine.book.resolve(merged), merged, "the redirect went with its survivor");
        assert_eq!(engine.take_changes().dropped_redirects, vec![merged]);
    }

    #[test]
    fn stats_count_the_stored_headlines_by_kind() {
        let mut engine = engine();
        for (id, time) in [("a", 0), ("a2", 1), ("b", DAY_MS * 10), ("b2", DAY_MS * 10 + 1)] {
            answer(&mut engine, id, time);
        }
        let by_kind = |engine: &Engine| {
            let s = engine.stats();
            (s.headlines, [s.new_stories, s.exact_duplicates, s.near_duplicates, s.same_story])
        };
        assert_eq!(by_kind(&engine), (4, [2, 2, 0, 0]));
        engine.delete(&["a".to_owned(), "b2".to_owned()]);
        assert_eq!(by_kind(&engine), (2, [1, 1, 0, 0]));
        answer(&mut engine, "b3", DAY_MS * 10 + 2);
        assert_eq!(by_kind(&engine), (3, [1, 2, 0, 0]));
    }
}
