//! Consolidation: after a batch, stories whose average linkage clears the
//! merge threshold merge, best pair first. The larger story survives (the
//! older on a tie) and the other's id redirects to it.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use super::Engine;
use crate::core::types::StoryId;

impl Engine {
    /// Merges the stories linked to any of `touched`, best pair first, then
    /// refreshes the canonical headline of every story that changed.
    pub(super) fn consolidate(&mut self, touched: BTreeSet<StoryId>) {
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
                // One side changed since the link was measured: re-queue it.
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
        let k = self.settings.candidates + story.exemplars;
        let mut seen = vec![id];
        let direction = story.direction();
        for (seq, _) in self.index.search(direction.values(), from, to, k) {
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

    /// Merges two stories; returns the survivor.
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
        self.rebuild_story(into);
        self.redirects.insert(from, into);
        self.changes.redirects.push((from, into));
        self.counters.merges += 1;
        into
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
