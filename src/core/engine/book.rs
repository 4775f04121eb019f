//! The story book: the live stories of a namespace, the merge redirects of
//! the stories merged away, and the story numbers.
//!
//! A story id is never reused; an id merged into another resolves to the
//! survivor until the survivor itself is gone, when its redirects go too.
//! The book never reads the index or the ledger: what it knows of a member
//! comes from its caller ([`MemberInfo`]).

use std::cmp::Ordering;

use super::Numbered;
use crate::core::error::CoreError;
use crate::core::story::{MemberInfo, Story};
use crate::core::types::StoryId;

/// Redirect changes since the last [`StoryBook::take_journal`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RedirectJournal {
    /// New redirects: from, to.
    pub(super) added: Vec<(StoryId, StoryId)>,
    /// Redirects dropped with their survivor, by the id they redirected.
    pub(super) dropped: Vec<StoryId>,
}

/// Stories, redirects and story numbers.
pub(super) struct StoryBook {
    stories: Numbered<StoryId, Story>,
    redirects: Numbered<StoryId, StoryId>,
    next_story: u64,
    merges: u64,
    dim: usize,
    journal: RedirectJournal,
}

impl StoryBook {
    /// An empty book of stories of `dim`-dimensional vectors, whose next
    /// story will be number `next_story`.
    pub(super) fn new(dim: usize, next_story: u64, merges: u64) -> Self {
        Self {
            stories: Numbered::default(),
            redirects: Numbered::default(),
            next_story,
            merges,
            dim,
            journal: RedirectJournal::default(),
        }
    }

    /// The number the next new story gets.
    pub(super) fn next_story(&self) -> u64 {
        self.next_story
    }

    /// Merges so far.
    pub(super) fn merges(&self) -> u64 {
        self.merges
    }

    /// A live story.
    pub(super) fn get(&self, id: StoryId) -> Option<&Story> {
        self.stories.get(&id)
    }

    /// Every live story, in no particular order.
    pub(super) fn stories(&self) -> impl Iterator<Item = &Story> {
        self.stories.values()
    }

    /// The ids of the live stories, in no particular order.
    pub(super) fn ids(&self) -> Vec<StoryId> {
        self.stories.keys().copied().collect()
    }

    /// The number of live stories.
    pub(super) fn len(&self) -> usize {
        self.stories.len()
    }

    /// The story that `id` was merged into, through every redirect (`id`
    /// itself if it was never merged); `None` if the redirects form a cycle,
    /// which merges never make (only a damaged store could hold one).
    pub(super) fn try_resolve(&self, mut id: StoryId) -> Option<StoryId> {
        for _ in 0..=self.redirects.len() {
            match self.redirects.get(&id) {
                Some(&next) => id = next,
                None => return Some(id),
            }
        }
        None
    }

    /// The story that `id` was merged into; a cycle (never made by merges,
    /// refused at restore) resolves to `id` itself.
    pub(super) fn resolve(&self, id: StoryId) -> StoryId {
        self.try_resolve(id).unwrap_or(id)
    }

    /// Opens a new, empty story under the next story number.
    pub(super) fn open(&mut self) -> StoryId {
        let id = StoryId(self.next_story);
        self.next_story += 1;
        self.stories.insert(id, Story::new(id, self.dim));
        id
    }

    /// Adds member `seq`, above every member of its story, to the story
    /// `id` resolves to; the story must be live or the member is not added
    /// (restore opens the stories it needs with [`StoryBook::open_stored`]).
    pub(super) fn add(&mut self, id: StoryId, seq: u64, member: MemberInfo<'_>) {
        let id = self.resolve(id);
        if let Some(story) = self.stories.get_mut(&id) {
            story.push(seq, member);
        }
    }

    /// Opens the live story that a stored member of story `id` belongs to
    /// (restore); the story numbers grow past it.
    pub(super) fn open_stored(&mut self, id: StoryId) -> Result<(), CoreError> {
        let live = self
            .try_resolve(id)
            .ok_or_else(|| CoreError::Inconsistent(format!("story {id} is in a cycle of merges")))?;
        self.next_story = self.next_story.max(id.0 + 1);
        let dim = self.dim;
        self.stories.entry(live).or_insert_with(|| Story::new(live, dim));
        Ok(())
    }

    /// Recomputes a story's derived fields from its members and picks its
    /// canonical headline; a story left without members disappears, and
    /// with it the redirects of the stories merged into it.
    pub(super) fn rebuild<'a>(&mut self, id: StoryId, info: impl Fn(u64) -> Option<MemberInfo<'a>>) {
        let Some(mut story) = self.stories.remove(&id) else { return };
        story.rebuild(&info);
        if story.members.is_empty() {
            for merged in story.merged {
                self.redirects.remove(&merged);
                self.journal.dropped.push(merged);
            }
            return;
        }
        if let Some(canonical) = story.pick_canonical(&info) {
            story.canonical = canonical;
        }
        self.stories.insert(id, story);
    }

    /// Picks a story's canonical headline again.
    pub(super) fn refresh_canonical<'a>(&mut self, id: StoryId, info: impl Fn(u64) -> Option<MemberInfo<'a>>) {
        let canonical = self.stories.get(&id).and_then(|story| story.pick_canonical(info));
        if let (Some(story), Some(seq)) = (self.stories.get_mut(&id), canonical) {
            story.canonical = seq;
        }
    }

    /// Merges two live stories; returns the survivor (the larger, the older
    /// on a tie), whose canonical headline the caller picks again. The
    /// other's id redirects to it.
    pub(super) fn merge(&mut self, a: StoryId, b: StoryId) -> StoryId {
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
        self.journal.added.push((from, into));
        self.merges += 1;
        into
    }

    /// Merges story `from` into `into` as another engine did (a follower
    /// applying its leader's facts, where both stories are live): `from`'s
    /// members move to `into`, and `from` redirects there.
    pub(super) fn absorb_into(&mut self, from: StoryId, into: StoryId) {
        let into = self.resolve(into);
        if from == into {
            return;
        }
        let absorbed = self.stories.remove(&from);
        let Some(survivor) = self.stories.get_mut(&into) else {
            if let Some(absorbed) = absorbed {
                self.stories.insert(from, absorbed);
            }
            return;
        };
        match absorbed {
            Some(absorbed) => survivor.absorb(absorbed),
            None => {
                survivor.merged.push(from);
                survivor.merged.sort_unstable();
                survivor.merged.dedup();
            }
        }
        self.redirects.insert(from, into);
        self.next_story = self.next_story.max(from.0 + 1).max(into.0 + 1);
    }

    /// Drops redirects another engine dropped (their survivor went).
    pub(super) fn drop_redirects(&mut self, dropped: &[StoryId]) {
        for from in dropped {
            self.redirects.remove(from);
        }
    }

    /// Takes the story counters another engine reached.
    pub(super) fn set_counters(&mut self, next_story: u64, merges: u64) {
        self.next_story = self.next_story.max(next_story);
        self.merges = merges;
    }

    /// Restores stored redirects (before the stored members are added).
    pub(super) fn restore_redirects(&mut self, redirects: &[(StoryId, StoryId)]) {
        for &(from, to) in redirects {
            self.redirects.insert(from, to);
            self.next_story = self.next_story.max(from.0 + 1).max(to.0 + 1);
        }
    }

    /// After a restore, lists each survivor's merged stories and drops the
    /// redirects whose survivor is gone (journalled, so that the next
    /// commit drops them from the store too).
    pub(super) fn settle_redirects(&mut self) -> Result<(), CoreError> {
        let mut redirected: Vec<StoryId> = self.redirects.keys().copied().collect();
        redirected.sort_unstable();
        for from in redirected {
            let survivor = self
                .try_resolve(from)
                .ok_or_else(|| CoreError::Inconsistent(format!("merge redirects from {from} form a cycle")))?;
            match self.stories.get_mut(&survivor) {
                Some(story) => story.merged.push(from),
                None => self.journal.dropped.push(from),
            }
        }
        for from in &self.journal.dropped {
            self.redirects.remove(from);
        }
        for story in self.stories.values_mut() {
            story.merged.sort_unstable();
            story.merged.dedup();
        }
        Ok(())
    }

    /// Whether redirects changed since the last [`StoryBook::take_journal`].
    pub(super) fn has_changes(&self) -> bool {
        !self.journal.added.is_empty() || !self.journal.dropped.is_empty()
    }

    /// The redirect changes since the last call.
    pub(super) fn take_journal(&mut self) -> RedirectJournal {
        std::mem::take(&mut self.journal)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::vector::QuantizedVector;

    fn vectors() -> Vec<QuantizedVector> {
        [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]].iter().map(|v| QuantizedVector::new(v)).collect()
    }

    fn info<'a>(vectors: &'a [QuantizedVector]) -> impl Fn(u64) -> Option<MemberInfo<'a>> + 'a {
        |seq| {
            Some(MemberInfo {
                time: seq as i64,
                key: seq,
                vector: vectors.get(seq as usize)?.values(),
                exemplar: true,
                look_alike: false,
                copy: false,
            })
        }
    }

    #[test]
    fn a_merge_keeps_the_larger_story_and_redirects_the_other_through_every_hop() {
        let vectors = vectors();
        let member = info(&vectors);
        let mut book = StoryBook::new(2, 1, 0);
        let (a, b, c) = (book.open(), book.open(), book.open());
        book.add(a, 0, member(0).expect("member"));
        book.add(b, 1, member(1).expect("member"));
        book.add(b, 2, member(2).expect("member"));
        book.add(c, 3, member(3).expect("member"));
        assert_eq!(book.merge(a, b), b, "the larger story survives");
        assert_eq!(book.merge(c, b), b);
        assert_eq!((book.resolve(a), book.resolve(c), book.len(), book.merges()), (b, b, 1, 2));
        book.add(a, 4, member(0).expect("member"));
        assert_eq!(
            book.get(b).map(|s| s.members.clone()),
            Some(vec![0, 1, 2, 3, 4]),
            "a member of a merged id joins the survivor"
        );
        assert_eq!(book.take_journal().added, vec![(a, b), (c, b)]);
        let (d, e) = (book.open(), book.open());
        book.add(d, 5, member(0).expect("member"));
        book.add(e, 6, member(1).expect("member"));
        assert_eq!(book.merge(d, e), d, "on a tie the older story survives");
    }

    #[test]
    fn a_story_without_members_goes_and_so_do_the_redirects_to_it() {
        let vectors = vectors();
        let mut book = StoryBook::new(2, 1, 0);
        let (a, b) = (book.open(), book.open());
        book.add(a, 0, info(&vectors)(0).expect("member"));
        book.add(b, 1, info(&vectors)(1).expect("member"));
        let survivor = book.merge(a, b);
        book.take_journal();
        book.rebuild(survivor, |_| None);
        assert!(book.get(survivor).is_none() && book.len() == 0);
        assert_eq!(book.resolve(b), b, "the redirect went with its survivor");
        assert_eq!(book.take_journal().dropped, vec![b]);
        assert_eq!(book.open(), StoryId(3), "story numbers are never reused");
    }

    #[test]
    fn a_cycle_of_stored_redirects_is_refused_and_orphans_are_dropped() {
        let mut book = StoryBook::new(2, 1, 0);
        book.restore_redirects(&[(StoryId(1), StoryId(2)), (StoryId(2), StoryId(1))]);
        assert!(book.open_stored(StoryId(1)).is_err());
        let mut book = StoryBook::new(2, 1, 0);
        book.restore_redirects(&[(StoryId(1), StoryId(3)), (StoryId(2), StoryId(4))]);
        book.open_stored(StoryId(3)).expect("a live story");
        book.settle_redirects().expect("no cycle");
        assert_eq!(book.get(StoryId(3)).map(|s| s.merged.clone()), Some(vec![StoryId(1)]));
        assert_eq!(book.take_journal().dropped, vec![StoryId(2)], "story 4 is gone: its redirect goes");
        assert_eq!(book.next_story(), 5);
    }
}
