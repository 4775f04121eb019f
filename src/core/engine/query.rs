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
            similarity: rec.similarity,
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
            similarity: rec.similarity,
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
