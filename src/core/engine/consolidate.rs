//! Consolidation: after a batch, stories whose average linkage clears the
//! merge threshold merge, best pair first (the story book decides which
//! survives).
//!
//! A story that gained a headline is checked against the stories near that
//! headline (the candidates of its decision): adding a member `q` to a
//! story moves its linkage with another story by `q`'s similarity to that
//! story, so those are the links that can have grown. A story born of a
//! merge is checked against its neighbours in the index.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::{Engine, frame_of, windowed};
use crate::core::background::Frame;
use crate::core::compare::Words;
use crate::core::index::FLAT_LIMIT;
use crate::core::story::Story;
use crate::core::types::StoryId;

/// How many wordings of the other story a look-alike is checked against.
const LOOK_ALIKE_WORDINGS: usize = 16;

impl Engine {
    /// Merges the stories linked to any of `touched` (each with the stories
    /// near its new headlines), best pair first, then refreshes the
    /// canonical headline of every story that changed.
    pub(super) fn consolidate(&mut self, touched: BTreeMap<StoryId, BTreeSet<StoryId>>) {
        let frame = frame_of(&self.background, &self.settings);
        let mut heap = BinaryHeap::new();
        let mut changed = BTreeSet::new();
        for (id, near) in touched {
            let id = self.book.resolve(id);
            changed.insert(id);
            let Some(story) = self.book.get(id) else { continue };
            for other in near {
                self.push_link(&frame, id, story, self.book.resolve(other), &mut heap);
            }
        }
        while let Some(Link { strength, a, b }) = heap.pop() {
            let (a, b) = (self.book.resolve(a), self.book.resolve(b));
            if a == b {
                continue;
            }
            let (Some(sa), Some(sb)) = (self.book.get(a), self.book.get(b)) else { continue };
            let (current, bar) = (sa.linkage_in(&frame, sb), self.merge_bar(sa, sb));
            if current < strength {
                // One side changed since the link was measured: re-queue it.
                if current >= bar {
                    heap.push(Link { strength: current, a, b });
                }
                continue;
            }
            // A merge can move a story's coverage into a more crowded
            // window, and so raise its bars: every link is checked again.
            if current < bar || self.kept_apart(sa, sb) {
                continue;
            }
            let survivor = self.book.merge(a, b);
            changed.insert(survivor);
            self.push_links(&frame, survivor, &mut heap);
        }
        // A merged-away story resolves to its survivor, which is in the set
        // too: pick each surviving story's canonical headline once.
        let survivors: BTreeSet<StoryId> = changed.into_iter().map(|id| self.book.resolve(id)).collect();
        for id in survivors {
            self.book.refresh_canonical(id, |seq| self.ledger.member(&self.index, seq));
        }
    }

    /// The linkage two stories need to merge: the merge threshold for
    /// large stories, rising to the story threshold for two single
    /// headlines (whose linkage is one similarity, as noisy as a join's),
    /// and raised by [`crate::core::settings::Settings::merge_crowding`] for each factor of e by
    /// which the exemplars within the story window of the later story's
    /// latest reporting outnumber [`FLAT_LIMIT`].
    fn merge_bar(&self, a: &Story, b: &Story) -> f32 {
        let s = &self.settings;
        let pairs = (a.members.len() * b.members.len()).max(1) as f32;
        let latest = a.coverage().1.max(b.coverage().1);
        let (from, to) = windowed(latest, latest, s.story_window);
        let crowd = self.index.count(from, to) as f32 / FLAT_LIMIT as f32;
        s.merge_threshold
            + (s.story_threshold - s.merge_threshold).max(0.0) / pairs.sqrt()
            + s.merge_crowding * crowd.ln().max(0.0)
    }

    /// Whether two stories were kept apart as look-alikes: a wording of
    /// one that the join kept from the other's stories as their look-alike
    /// is a look-alike of one of the other's first wordings, and no wording
    /// of either names both of the names that differ (which would say one
    /// story covers both). Such stories do not merge; other stories, however
    /// alike their wordings, may.
    fn kept_apart(&self, a: &Story, b: &Story) -> bool {
        self.vetoed_against(a, b) || self.vetoed_against(b, a)
    }

    fn vetoed_against(&self, a: &Story, b: &Story) -> bool {
        if a.look_alikes.is_empty() {
            return false;
        }
        let view = self.decision_view();
        let others: Vec<u64> = b.wording_heads().into_iter().take(LOOK_ALIKE_WORDINGS).collect();
        for &head in &a.look_alikes {
            let (Some(vector), Some(words)) = (self.ledger.vector(&self.index, head), view.words_of(head)) else {
                continue;
            };
            for &other in &others {
                if let Some((x, y)) = view.look_alike_with(vector, &words, other) {
                    return !self.named_together(a, (&x, &y)) && !self.named_together(b, (&x, &y));
                }
            }
        }
        false
    }

    /// Whether a wording of `story` names both of two look-alikes' names.
    fn named_together(&self, story: &Story, (x, y): (&str, &str)) -> bool {
        story.wording_heads().into_iter().filter_map(|seq| self.ledger.get(seq)).any(|record| {
            let words = Words::new(&record.norm, Vec::new());
            words.has(x) && words.has(y)
        })
    }

    /// Queues the links of story `id` to its neighbours (found through the
    /// index with the story's mean vector) that clear the merge threshold.
    fn push_links(&self, frame: &Frame<'_>, id: StoryId, heap: &mut BinaryHeap<Link>) {
        let Some(story) = self.book.get(id) else { return };
        let (from, to) = self.alive_span(story);
        let k = self.settings.candidates + story.exemplars;
        let mut seen = vec![id];
        for (seq, _) in self.index.search(story.direction().values(), from, to, k) {
            let Some(rec) = self.ledger.get(seq) else { continue };
            let other = self.book.resolve(rec.story);
            if !seen.contains(&other) {
                seen.push(other);
                self.push_link(frame, id, story, other, heap);
            }
        }
    }

    /// Queues the link of story `id` to story `other` if their coverages
    /// are within the story window of each other and their linkage clears
    /// their merge bar.
    fn push_link(&self, frame: &Frame<'_>, id: StoryId, story: &Story, other: StoryId, heap: &mut BinaryHeap<Link>) {
        if other == id {
            return;
        }
        let Some(neighbour) = self.book.get(other) else { return };
        if story.gap_between(neighbour) > self.settings.story_window {
            return;
        }
        let strength = story.linkage_in(frame, neighbour);
        if strength >= self.merge_bar(story, neighbour) {
            heap.push(Link { strength, a: id, b: other });
        }
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

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::testing::{fixed_engine, item, model_engine};
    use crate::core::types::{DAY_MS, MatchKind, StoryId};

    const HOUR: i64 = 3_600_000;

    const DAY: i64 = 100 * DAY_MS;

    #[test]
    fn two_single_headlines_need_a_join_s_similarity_and_larger_stories_merge_at_less() {
        // a and b are 0.42 apart: too little to join (0.5), and so too
        // little for two single headlines to merge; enough for two stories
        // of two (their bar is 0.3 + 0.2 / 2 = 0.4). c is unrelated.
        let mut engine = fixed_engine(&[
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha again", [1.0, 0.0, 0.0]),
            ("beta", [0.42, 0.9075, 0.0]),
            ("beta again", [0.42, 0.9075, 0.0]),
            ("gamma", [0.0, 0.0, 1.0]),
        ]);
        let answers =
            engine.ingest(&[item("a", "alpha", DAY), item("b", "beta", DAY + 1), item("c", "gamma", DAY + 2)]);
        let kinds: Vec<MatchKind> = answers.iter().map(|a| a.as_ref().map(|a| a.kind).expect("answered")).collect();
        assert_eq!(kinds, vec![MatchKind::NewStory; 3], "nothing joins");
        assert_eq!(engine.stats().merges, 0, "one similarity of 0.42 is not evidence of one event");
        engine.ingest(&[item("a2", "alpha again", DAY + 3), item("b2", "beta again", DAY + 4)]);
        assert_eq!(engine.stats().merges, 1, "four links of 0.42 are");
        assert_eq!(engine.story(StoryId(2)).map(|s| s.id), Some(StoryId(1)), "b's story redirects to a's, the older");
        assert_eq!(engine.story(StoryId(1)).map(|s| s.size), Some(4));
        assert_eq!(engine.story(StoryId(3)).map(|s| s.size), Some(1), "c stays alone");
    }

    #[test]
    fn a_crowded_window_raises_the_merge_bar() {
        // The stories of two of the first test (linkage 0.42, bar 0.4),
        // among 10,000 other exemplars of the window: with a crowding of
        // 0.2 the bar rises by 0.2 * ln(10,004 / 8,192) = 0.04, past their
        // linkage; without it they merge as before.
        let merges = |crowding: f32| {
            let mut engine = fixed_engine(&[
                ("alpha", [1.0, 0.0, 0.0]),
                ("alpha again", [1.0, 0.0, 0.0]),
                ("beta", [0.42, 0.9075, 0.0]),
                ("beta again", [0.42, 0.9075, 0.0]),
            ]);
            engine.settings.merge_crowding = crowding;
            let names: Vec<String> = (0..10_000).map(|i| format!("other {i}")).collect();
            for chunk in names.chunks(1_000) {
                engine.ingest(&chunk.iter().map(|name| item(name, name, DAY - HOUR)).collect::<Vec<_>>());
            }
            engine.ingest(&[item("a", "alpha", DAY), item("b", "beta", DAY + 1)]);
            engine.ingest(&[item("a2", "alpha again", DAY + 3), item("b2", "beta again", DAY + 4)]);
            engine.stats().merges
        };
        assert_eq!(merges(0.0), 1, "four links of 0.42 clear 0.4");
        assert_eq!(merges(0.2), 0, "they do not clear 0.44");
    }

    #[test]
    fn stories_apart_in_time_do_not_merge() {
        let mut engine = fixed_engine(&[
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha again", [1.0, 0.0, 0.0]),
            ("beta", [0.42, 0.9075, 0.0]),
            ("beta again", [0.42, 0.9075, 0.0]),
        ]);
        engine.ingest(&[item("a", "alpha", DAY), item("a2", "alpha again", DAY + 1)]);
        engine.ingest(&[item("b", "beta", DAY + 2 * DAY_MS), item("b2", "beta again", DAY + 2 * DAY_MS + 1)]);
        assert_eq!(engine.stats().merges, 0);
        assert_eq!(engine.stats().stories, 2);
    }

    #[test]
    fn the_strongest_link_merges_first_and_the_survivor_is_measured_again() {
        // Stories of two: b is closer to a (0.45) than to c (0.42), both
        // over the bar of 0.4, and a and c are unrelated: a and b merge, and
        // the merged story's linkage with c ((0.42 + 0) / 2) no longer
        // clears its bar.
        let mut engine = fixed_engine(&[
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha again", [1.0, 0.0, 0.0]),
            ("beta", [0.45, 0.42, 0.7881]),
            ("beta again", [0.45, 0.42, 0.7881]),
            ("gamma", [0.0, 1.0, 0.0]),
            ("gamma again", [0.0, 1.0, 0.0]),
        ]);
        engine.ingest(&[
            item("a", "alpha", DAY),
            item("a2", "alpha again", DAY + 1),
            item("c", "gamma", DAY + 2),
            item("c2", "gamma again", DAY + 3),
        ]);
        engine.ingest(&[item("b", "beta", DAY + 4), item("b2", "beta again", DAY + 5)]);
        assert_eq!(engine.stats().merges, 1);
        let a = engine.headline("a").map(|h| h.story_id);
        assert_eq!(engine.headline("b").map(|h| h.story_id), a, "b went with a");
        assert_ne!(engine.headline("c").map(|h| h.story_id), a);
    }

    #[test]
    fn headlines_of_a_keyed_feed_that_share_only_its_keyword_stay_apart() {
        // keyed-feed/dev.jsonl, July 14: the typhoon's first two wordings,
        // and two stories that say Japan and nothing else in common.
        let mut engine = model_engine();
        let answers = engine.ingest(&[
            item("kf-001", "Typhoon Nari makes landfall in southern Japan, thousands ordered to evacuate", DAY),
            item("kf-005", "Typhoon Nari slams into Japan's Kyushu island, halting trains", DAY + 2 * HOUR),
            item("kf-048", "Japan box office: anime sequel opens at No. 1", DAY + 3 * HOUR),
            item("kf-049", "Nintendo says Switch 2 sales in Japan top 3 million", DAY + 5 * HOUR),
        ]);
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let story = |id: &str| engine.headline(id).map(|h| h.story_id);
        assert_eq!(story("kf-005"), story("kf-001"), "a rewrite of the typhoon joins it");
        assert_ne!(story("kf-048"), story("kf-049"), "box office and game sales are two stories");
        assert_ne!(story("kf-048"), story("kf-001"));
        assert_ne!(story("kf-049"), story("kf-001"));
        assert_eq!(engine.stats().merges, 0);
    }
}
