//! The story change feed: what each commit did to the stories it touched,
//! as numbered entries ([`StoryChange`]) that a consumer applies in order to
//! keep a copy of the namespace's stories.
//!
//! An entry is a commit's net effect on one story, judged from the stories
//! live before and after it: a story that appeared is `Created`, one that is
//! still live and was touched is `Updated`, one merged away is `Merged` into
//! its survivor as of the end of the commit, and one that lost its last
//! member is `Deleted`. A story that appeared and went within one commit
//! was never seen by anyone and has no entry. Within a commit the entries
//! come created, updated, merged, deleted, each by story id, so a copy that
//! applies them in order holds every survivor before a story is merged
//! into it.

use std::collections::{BTreeMap, BTreeSet};

use super::Engine;
use crate::core::types::{ChangeKind, Removal, StoryChange, StoryId};

/// The stories touched since the last [`Engine::take_changes`].
#[derive(Debug, Default)]
pub(super) struct StoryJournal {
    /// Every story a headline joined or left, or a merge involved.
    touched: BTreeSet<StoryId>,
    /// The stories opened (not live before).
    opened: BTreeSet<StoryId>,
    /// Why headlines left each story, where some did.
    removals: BTreeMap<StoryId, Removal>,
}

impl StoryJournal {
    /// A headline joined `story`, which it opened if `opened`.
    pub(super) fn joined(&mut self, story: StoryId, opened: bool) {
        self.touched.insert(story);
        if opened {
            self.opened.insert(story);
        }
    }

    /// A headline left `story` (live until now) because of `why`.
    pub(super) fn left(&mut self, story: StoryId, why: Removal) {
        self.touched.insert(story);
        self.removals.entry(story).or_insert(why);
    }
}

impl Engine {
    /// The feed's entries for the stories in `journal` and the merges
    /// made since the last commit, numbered from the feed's next number.
    pub(super) fn story_changes(&mut self, journal: StoryJournal, merges: &[(StoryId, StoryId)]) -> Vec<StoryChange> {
        let StoryJournal { mut touched, opened, removals } = journal;
        touched.extend(merges.iter().flat_map(|&(from, into)| [from, into]));
        let mut entries: Vec<StoryChange> = Vec::new();
        for id in touched {
            let was_live = !opened.contains(&id);
            let change = match (was_live, self.book.get(id)) {
                (false, Some(_)) => self.state_of(id, ChangeKind::Created),
                (true, Some(_)) => self.state_of(id, ChangeKind::Updated),
                (true, None) => {
                    let survivor = self.book.resolve(id);
                    Some(if survivor != id && self.book.get(survivor).is_some() {
                        StoryChange { merged_into: Some(survivor), ..StoryChange::gone(0, ChangeKind::Merged, id) }
                    } else {
                        let removal = removals.get(&id).copied().unwrap_or(Removal::Retention);
                        StoryChange { removal: Some(removal), ..StoryChange::gone(0, ChangeKind::Deleted, id) }
                    })
                }
                (false, None) => None,
            };
            entries.extend(change);
        }
        entries.sort_by_key(|change| (change.kind.code(), change.story));
        entries
            .into_iter()
            .map(|mut change| {
                change.seq = self.next_change;
                self.next_change += 1;
                change
            })
            .collect()
    }

    /// An entry of `kind` carrying the live story `id` as it is now.
    fn state_of(&self, id: StoryId, kind: ChangeKind) -> Option<StoryChange> {
        let story = self.book.get(id)?;
        let canonical = self.ledger.get(story.canonical);
        Some(StoryChange {
            seq: 0,
            kind,
            story: id,
            merged_into: None,
            removal: None,
            size: story.members.len(),
            canonical_headline_id: canonical.map(|c| c.headline.id.clone()).unwrap_or_default(),
            canonical_text: canonical.map(|c| c.headline.text.clone()).unwrap_or_default(),
            first_seen: story.first_seen,
            last_seen: story.last_seen,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::testing::{fixed_engine, item};
    use super::*;
    use crate::core::types::DAY_MS;

    const DAY: i64 = 50 * DAY_MS;

    fn engine() -> Engine {
        fixed_engine(&[
            ("alpha", [1.0, 0.0, 0.0]),
            ("alpha again", [1.0, 0.0, 0.0]),
            ("beta", [0.42, 0.9075, 0.0]),
            ("beta again", [0.42, 0.9075, 0.0]),
            ("cat", [0.0, 0.0, 1.0]),
        ])
    }

    /// The entries of one commit: number, kind, story, survivor, size.
    fn commit(engine: &mut Engine) -> Vec<(u64, ChangeKind, u64, Option<u64>, usize)> {
        let changes = engine.take_changes();
        changes.story_changes.iter().map(|c| (c.seq, c.kind, c.story.0, c.merged_into.map(|s| s.0), c.size)).collect()
    }

    #[test]
    fn two_stories_then_the_headline_that_merges_them() {
        use ChangeKind::{Created, Merged, Updated};
        let mut engine = engine();
        engine.ingest(&[item("a", "alpha", DAY), item("a2", "alpha again", DAY + 1)]);
        assert_eq!(commit(&mut engine), vec![(1, Created, 1, None, 2)]);
        engine.ingest(&[item("b", "beta", DAY + 2)]);
        assert_eq!(commit(&mut engine), vec![(2, Created, 2, None, 1)]);
        engine.ingest(&[item("b2", "beta again", DAY + 3)]);
        // b2 joins story 2, which then merges into story 1 (as large, and
        // older): the survivor's new state, then the merge.
        assert_eq!(commit(&mut engine), vec![(3, Updated, 1, None, 4), (4, Merged, 2, Some(1), 0)]);
        assert_eq!(engine.latest_story_change(), 4);
        engine.ingest(&[item("a", "alpha", DAY)]);
        assert_eq!(commit(&mut engine), vec![], "a replay changes no story");
    }

    #[test]
    fn a_created_story_carries_its_canonical_headline_and_times() {
        let mut engine = engine();
        engine.ingest(&[item("c", "cat", DAY + 5)]);
        let changes = engine.take_changes().story_changes;
        let created = &changes[0];
        assert_eq!((created.canonical_headline_id.as_str(), created.canonical_text.as_str()), ("c", "cat"));
        assert_eq!((created.first_seen, created.last_seen), (DAY + 5, DAY + 5));
    }

    #[test]
    fn a_takedown_and_an_expiry_each_delete_their_story_with_the_reason() {
        use ChangeKind::{Created, Deleted, Updated};
        let mut engine = engine();
        engine.settings.retention = Some(30 * DAY_MS);
        engine.ingest(&[item("a", "alpha", DAY), item("a2", "alpha again", DAY + 1), item("c", "cat", DAY + 2)]);
        commit(&mut engine);
        engine.delete(&["a2".to_owned()]);
        assert_eq!(commit(&mut engine), vec![(3, Updated, 1, None, 1)], "a story that keeps a member is updated");
        engine.delete(&["c".to_owned()]);
        let deleted = engine.take_changes().story_changes;
        assert_eq!(
            (deleted[0].kind, deleted[0].story, deleted[0].removal),
            (Deleted, StoryId(2), Some(Removal::Takedown))
        );
        engine.ingest(&[item("late", "cat", DAY + 31 * DAY_MS)]);
        let changes = engine.take_changes().story_changes;
        let summary: Vec<_> = changes.iter().map(|c| (c.seq, c.kind, c.story.0, c.removal)).collect();
        assert_eq!(summary, vec![(5, Created, 3, None), (6, Deleted, 1, Some(Removal::Retention))]);
    }

    #[test]
    fn the_feed_keeps_its_latest_entries_and_numbers_go_on_after_a_restore() {
        let mut engine = engine();
        engine.settings.change_feed_length = 2;
        for (i, text) in ["alpha", "beta", "cat"].into_iter().enumerate() {
            engine.ingest(&[item(&format!("h{i}"), text, DAY + 20 * DAY_MS * i as i64)]);
        }
        let changes = engine.take_changes();
        assert_eq!(changes.story_changes.len(), 3);
        assert_eq!(changes.story_changes_from, 2, "of 1 to 3, the latest two are kept");
        assert_eq!(changes.counters.next_change, 4);
    }
}
