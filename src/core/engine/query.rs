//! Read-only views of an engine: assignments, headlines, stories, listings
//! and counters.

use std::collections::HashMap;

use super::Engine;
use super::ledger::{KindCounts, Record};
use crate::core::story::Story;
use crate::core::types::{Assignment, Stats, StoredHeadline, StoryCursor, StoryId, StoryOrder, StoryQuery, StoryView};

impl Engine {
    /// The current assignment of a stored headline (its story after merges).
    pub(super) fn assignment(&self, seq: u64, replayed: bool) -> Option<Assignment> {
        let rec = self.ledger.get(seq)?;
        let story_id = self.book.resolve(rec.story);
        let story = self.book.get(story_id);
        let canonical = story.and_then(|s| self.ledger.get(s.canonical));
        Some(Assignment {
            headline_id: rec.headline.id.clone(),
            story_id,
            kind: rec.kind,
            matched_headline_id: self.matched_id(rec),
            similarity: rec.similarity(),
            canonical_headline_id: canonical.map(|c| c.headline.id.clone()).unwrap_or_default(),
            canonical_text: canonical.map(|c| c.headline.text.clone()).unwrap_or_default(),
            story_size: story.map_or(0, |s| s.members.len()),
            evidence: rec.scores.evidence(&rec.norm),
            replayed,
        })
    }

    fn matched_id(&self, rec: &Record) -> Option<String> {
        rec.matched.and_then(|m| self.ledger.get(m)).map(|m| m.headline.id.clone())
    }

    /// A stored headline and its assignment.
    pub fn headline(&self, id: &str) -> Option<StoredHeadline> {
        self.ledger.seq_of(id).and_then(|seq| self.stored(seq))
    }

    fn stored(&self, seq: u64) -> Option<StoredHeadline> {
        let rec = self.ledger.get(seq)?;
        Some(StoredHeadline {
            headline: rec.headline.clone(),
            story_id: self.book.resolve(rec.story),
            kind: rec.kind,
            matched_headline_id: self.matched_id(rec),
            similarity: rec.similarity(),
        })
    }

    /// A story with its members; a merged-away id resolves to the survivor.
    pub fn story(&self, id: StoryId) -> Option<StoryView> {
        let story = self.book.get(self.book.resolve(id))?;
        Some(self.story_view(story, true))
    }

    fn story_view(&self, story: &Story, with_members: bool) -> StoryView {
        let canonical = self.ledger.get(story.canonical);
        let mut members: Vec<StoredHeadline> =
            if with_members { story.members.iter().filter_map(|&seq| self.stored(seq)).collect() } else { Vec::new() };
        members.sort_by_key(|m| m.headline.published);
        let mut sources: HashMap<&str, usize> = HashMap::new();
        for rec in story.members.iter().filter_map(|&seq| self.ledger.get(seq)) {
            if let Some(source) = rec.headline.source.as_deref() {
                *sources.entry(source).or_default() += 1;
            }
        }
        let mut sources: Vec<(String, usize)> = sources.into_iter().map(|(s, n)| (s.to_owned(), n)).collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        StoryView {
            id: story.id,
            canonical_headline_id: canonical.map(|c| c.headline.id.clone()).unwrap_or_default(),
            canonical_text: canonical.map(|c| c.headline.text.clone()).unwrap_or_default(),
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
            .book
            .stories()
            .filter(|s| s.members.len() >= query.min_size)
            .filter(|s| query.start.is_none_or(|t| s.last_seen >= t))
            .filter(|s| query.end.is_none_or(|t| s.first_seen < t))
            .filter(|s| query.after.is_none_or(|after| sort_key(&cursor(s)) > sort_key(&after)))
            .collect();
        matching.sort_by_key(|s| sort_key(&cursor(s)));
        let more = matching.len() > query.limit;
        matching.truncate(query.limit);
        let next = more.then(|| matching.last().map(|s| cursor(s))).flatten();
        (matching.into_iter().map(|s| self.story_view(s, false)).collect(), next)
    }

    /// The number of the story change feed's latest entry (0 before the
    /// first): the state the other reads show.
    pub fn latest_story_change(&self) -> u64 {
        self.next_change.saturating_sub(1)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let KindCounts { new_stories, exact_duplicates, near_duplicates, same_story } = self.ledger.kinds();
        Stats {
            headlines: self.ledger.len() as u64,
            stories: self.book.len() as u64,
            indexed_vectors: self.index.len() as u64,
            new_stories,
            exact_duplicates,
            near_duplicates,
            same_story,
            merges: self.book.merges(),
            embedder: self.settings.embedder.name().to_owned(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::testing::{fixed_engine, item};
    use crate::core::types::{DAY_MS, StoryId, StoryOrder, StoryQuery};

    const DAY: i64 = 100 * DAY_MS;

    /// Five unrelated stories of sizes 1, 2, 3, 1, 2 (a copy of each text
    /// joins its story), an hour apart.
    fn engine() -> crate::core::engine::Engine {
        let texts = ["alpha", "beta", "gamma", "delta", "epsilon"];
        let mut vectors = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let mut v = [0.0f32; 5];
            v[i] = 1.0;
            vectors.push((*text, v));
        }
        let mut engine = fixed_engine(&vectors);
        let sizes = [1, 2, 3, 1, 2];
        for (i, (text, size)) in texts.iter().zip(sizes).enumerate() {
            let at = DAY + i as i64 * 3_600_000;
            let items: Vec<_> = (0..size).map(|k| item(&format!("{text}-{k}"), text, at + k)).collect();
            engine.ingest(&items);
        }
        engine
    }

    fn pages(engine: &crate::core::engine::Engine, order: StoryOrder, limit: usize) -> Vec<Vec<(StoryId, usize)>> {
        let mut query = StoryQuery { start: None, end: None, min_size: 1, order, limit, after: None };
        let mut pages = Vec::new();
        loop {
            let (page, next) = engine.list_stories(&query);
            pages.push(page.iter().map(|s| (s.id, s.size)).collect());
            match next {
                Some(cursor) => query.after = Some(cursor),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_of_stories_cover_each_once_in_order() {
        let engine = engine();
        let by_size: Vec<(StoryId, usize)> = pages(&engine, StoryOrder::Size, 2).concat();
        let sizes: Vec<usize> = by_size.iter().map(|s| s.1).collect();
        assert_eq!(sizes, vec![3, 2, 2, 1, 1], "largest first");
        assert_eq!(by_size[1].0, StoryId(5), "equal sizes: the most recently seen first");
        let by_recency: Vec<StoryId> = pages(&engine, StoryOrder::Recency, 3).concat().iter().map(|s| s.0).collect();
        assert_eq!(by_recency, (1..=5).rev().map(StoryId).collect::<Vec<_>>());
        assert_eq!(pages(&engine, StoryOrder::Size, 2).len(), 3, "five stories in pages of two");
    }

    #[test]
    fn a_listing_filters_by_size_and_time() {
        let engine = engine();
        let query = |min_size, start: Option<i64>, end: Option<i64>| {
            let q = StoryQuery { start, end, min_size, order: StoryOrder::Recency, limit: 10, after: None };
            engine.list_stories(&q).0.iter().map(|s| s.id).collect::<Vec<_>>()
        };
        assert_eq!(query(2, None, None), vec![StoryId(5), StoryId(3), StoryId(2)]);
        assert_eq!(query(1, Some(DAY + 3 * 3_600_000), None), vec![StoryId(5), StoryId(4)]);
        assert_eq!(query(1, None, Some(DAY + 3_600_000)), vec![StoryId(1)]);
    }

    #[test]
    fn a_story_lists_its_members_oldest_first_and_counts_them() {
        let engine = engine();
        let story = engine.story(StoryId(3)).expect("stored");
        assert_eq!(story.size, 3);
        let ids: Vec<&str> = story.members.iter().map(|m| m.headline.id.as_str()).collect();
        assert_eq!(ids, vec!["gamma-0", "gamma-1", "gamma-2"]);
        assert_eq!(story.canonical_headline_id, "gamma-0");
        assert_eq!(engine.stats().stories, 5);
        assert_eq!(engine.stats().exact_duplicates, 4);
    }
}
