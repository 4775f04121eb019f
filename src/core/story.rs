//! A story: its members, the exact sum of their vectors, the exemplars it
//! keeps in the index, its wordings and its canonical headline.

use std::collections::HashMap;

use super::background::Frame;
use super::types::{Millis, StoryId};
use super::vector::{QuantizedVector, VectorSum};

/// How much a wording's syndication (copies of it in the story) adds to its
/// centrality when the canonical headline is chosen: `ln(copies)` times this.
const SYNDICATION_BONUS: f32 = 0.05;

/// One story.
#[derive(Debug, Clone)]
pub struct Story {
    /// The id.
    pub id: StoryId,
    /// Member sequence numbers, ascending.
    pub members: Vec<u64>,
    /// Sum of the members' vectors.
    sum: VectorSum,
    /// Members in the index.
    pub exemplars: usize,
    /// Event time of the newest exemplar.
    pub last_exemplar_time: Millis,
    /// Earliest member event time.
    pub first_seen: Millis,
    /// Latest member event time.
    pub last_seen: Millis,
    /// Earliest event time of a member that is not a copy (exact or near
    /// duplicate) of another: when the story's own coverage began.
    covered_from: Millis,
    /// Latest event time of a member that is not a copy.
    covered_to: Millis,
    /// The normalised wordings (by exact key): copies and first member.
    wordings: HashMap<u64, Wording>,
    /// The canonical member.
    pub canonical: u64,
    /// Stories merged into this one, ascending.
    pub merged: Vec<StoryId>,
    /// Members kept from another story as its look-alike when they came,
    /// ascending.
    pub look_alikes: Vec<u64>,
}

/// One wording of a story's members.
#[derive(Debug, Clone, Copy)]
struct Wording {
    /// Members with this wording.
    copies: u32,
    /// The first of them (the lowest sequence number).
    first: u64,
}

/// What a story needs to know about one member.
#[derive(Debug, Clone, Copy)]
pub struct MemberInfo<'a> {
    /// Event time.
    pub time: Millis,
    /// The exact key of its wording.
    pub key: u64,
    /// Its vector.
    pub vector: &'a [i8],
    /// Whether it is in the index.
    pub exemplar: bool,
    /// Whether it was kept from another story as its look-alike.
    pub look_alike: bool,
    /// Whether it is a copy (exact or near duplicate) of another headline,
    /// a republication, or a rewrite that followed the story past its
    /// window: neither extends the story's coverage.
    pub copy: bool,
}

impl Story {
    /// An empty story.
    pub fn new(id: StoryId, dim: usize) -> Self {
        Self {
            id,
            members: Vec::new(),
            sum: VectorSum::new(dim),
            exemplars: 0,
            last_exemplar_time: Millis::MIN,
            first_seen: Millis::MAX,
            last_seen: Millis::MIN,
            covered_from: Millis::MAX,
            covered_to: Millis::MIN,
            wordings: HashMap::new(),
            canonical: 0,
            merged: Vec::new(),
            look_alikes: Vec::new(),
        }
    }

    /// Adds a member whose sequence number is above every member's.
    pub fn push(&mut self, seq: u64, member: MemberInfo<'_>) {
        if self.members.is_empty() {
            self.canonical = seq;
        }
        self.members.push(seq);
        self.sum.add(member.vector);
        self.count(seq, &member);
    }

    /// Counts member `seq`, above every member counted before.
    fn count(&mut self, seq: u64, member: &MemberInfo<'_>) {
        if member.exemplar {
            self.exemplars += 1;
            self.last_exemplar_time = self.last_exemplar_time.max(member.time);
        }
        self.wordings.entry(member.key).or_insert(Wording { copies: 0, first: seq }).copies += 1;
        if member.look_alike {
            self.look_alikes.push(seq);
        }
        self.first_seen = self.first_seen.min(member.time);
        self.last_seen = self.last_seen.max(member.time);
        if !member.copy {
            self.covered_from = self.covered_from.min(member.time);
            self.covered_to = self.covered_to.max(member.time);
        }
    }

    /// Recomputes everything derived from the members (after a merge or a
    /// removal): sum, exemplar count, wordings, times.
    pub fn rebuild<'a>(&mut self, info: impl Fn(u64) -> Option<MemberInfo<'a>>) {
        self.members.sort_unstable();
        self.members.dedup();
        self.members.retain(|&seq| info(seq).is_some());
        self.sum = VectorSum::new(self.sum.values_len());
        self.exemplars = 0;
        self.last_exemplar_time = Millis::MIN;
        self.first_seen = Millis::MAX;
        self.last_seen = Millis::MIN;
        self.covered_from = Millis::MAX;
        self.covered_to = Millis::MIN;
        self.wordings.clear();
        self.look_alikes.clear();
        for &seq in &self.members.clone() {
            if let Some(member) = info(seq) {
                self.sum.add(member.vector);
                self.count(seq, &member);
            }
        }
    }

    /// Takes over the members, derived fields and merge history of
    /// `other`: the same story as adding its members one by one, except for
    /// the canonical headline, which the caller picks again.
    pub fn absorb(&mut self, other: Story) {
        self.members.extend(other.members);
        // Two ascending runs: the stable sort merges them in linear time.
        self.members.sort();
        self.sum.absorb(&other.sum);
        self.exemplars += other.exemplars;
        self.last_exemplar_time = self.last_exemplar_time.max(other.last_exemplar_time);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.covered_from = self.covered_from.min(other.covered_from);
        self.covered_to = self.covered_to.max(other.covered_to);
        for (key, wording) in other.wordings {
            let mine = self.wordings.entry(key).or_insert(Wording { copies: 0, first: wording.first });
            mine.copies += wording.copies;
            mine.first = mine.first.min(wording.first);
        }
        self.look_alikes.extend(other.look_alikes);
        self.look_alikes.sort();
        self.merged.push(other.id);
        self.merged.extend(other.merged);
        self.merged.sort_unstable();
    }

    /// The event times of the story's own coverage: from its first to its
    /// latest member that is not a copy, or of all its members if every one
    /// left is a copy.
    pub fn coverage(&self) -> (Millis, Millis) {
        if self.covered_from <= self.covered_to {
            (self.covered_from, self.covered_to)
        } else {
            (self.first_seen, self.last_seen)
        }
    }

    /// How far event time `time` is from the story's coverage (0 within it).
    pub fn gap_to(&self, time: Millis) -> Millis {
        let (from, to) = self.coverage();
        from.saturating_sub(time).max(time.saturating_sub(to)).max(0)
    }

    /// How far apart the coverages of two stories are (0 if they overlap).
    pub fn gap_between(&self, other: &Story) -> Millis {
        let (from, to) = self.coverage();
        let (other_from, other_to) = other.coverage();
        other_from.saturating_sub(to).max(from.saturating_sub(other_to)).max(0)
    }

    /// The first member of each wording, ascending.
    pub fn wording_heads(&self) -> Vec<u64> {
        let mut heads: Vec<u64> = self.wordings.values().map(|w| w.first).collect();
        heads.sort_unstable();
        heads
    }

    /// Mean similarity of a vector to the members, both less the
    /// background of `frame` (`offset` is the vector's
    /// [`Frame::offset`]).
    pub fn similarity_in(&self, frame: &Frame<'_>, vector: &[i8], offset: f32) -> f32 {
        frame.relative(self.sum.mean_similarity(vector), offset, frame.offset_of_sum(&self.sum))
    }

    /// Average linkage, the mean similarity over all pairs of members of
    /// the two stories, less the background of `frame`.
    pub fn linkage_in(&self, frame: &Frame<'_>, other: &Story) -> f32 {
        let raw = self.sum.linkage(&other.sum);
        frame.relative(raw, frame.offset_of_sum(&self.sum), frame.offset_of_sum(&other.sum))
    }

    /// The direction of the members' mean, for searching the index.
    pub fn direction(&self) -> QuantizedVector {
        self.sum.direction()
    }

    /// The most central member, preferring the most syndicated wording: the
    /// highest cosine with the members' mean plus `SYNDICATION_BONUS *
    /// ln(copies)` (all copies of a wording share its score), ties to the
    /// earliest. Each wording is scored once, through its first member.
    pub fn pick_canonical<'a>(&self, info: impl Fn(u64) -> Option<MemberInfo<'a>>) -> Option<u64> {
        let norm = self.sum.norm();
        let mut best: Option<(f32, u64)> = None;
        for wording in self.wordings.values() {
            let Some(member) = info(wording.first) else { continue };
            let score =
                self.sum.cosine_with_norm(member.vector, norm) + SYNDICATION_BONUS * (wording.copies as f32).ln();
            let better = best.is_none_or(|(b, first)| score > b || (score == b && wording.first < first));
            if better {
                best = Some((score, wording.first));
            }
        }
        best.map(|(_, seq)| seq)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn absorbing_a_story_equals_adding_its_members_and_so_does_rebuilding() {
        let vectors: Vec<QuantizedVector> =
            (0..6).map(|i| QuantizedVector::new(&[i as f32 * 0.1, 0.7 - i as f32 * 0.1, 0.3])).collect();
        let info = |seq: u64| {
            Some(MemberInfo {
                time: seq as Millis,
                key: seq % 2,
                vector: vectors[seq as usize].values(),
                exemplar: seq.is_multiple_of(3),
                look_alike: false,
                copy: seq == 4,
            })
        };
        let mut whole = Story::new(StoryId(1), 3);
        for seq in 0..6 {
            whole.push(seq, info(seq).expect("member"));
        }
        let (mut a, mut b) = (Story::new(StoryId(1), 3), Story::new(StoryId(2), 3));
        for seq in [0, 2, 5] {
            a.push(seq, info(seq).expect("member"));
        }
        for seq in [1, 3, 4] {
            b.push(seq, info(seq).expect("member"));
        }
        a.absorb(b);
        let mut rebuilt = a.clone();
        rebuilt.rebuild(info);
        for story in [&a, &rebuilt] {
            assert_eq!(story.members, whole.members);
            assert_eq!(story.sum, whole.sum);
            assert_eq!(story.exemplars, whole.exemplars);
            assert_eq!(story.last_exemplar_time, whole.last_exemplar_time);
            assert_eq!((story.first_seen, story.last_seen), (whole.first_seen, whole.last_seen));
            assert_eq!(story.coverage(), whole.coverage());
            let wordings = |s: &Story| {
                let mut w: Vec<(u64, u32, u64)> = s.wordings.iter().map(|(&k, w)| (k, w.copies, w.first)).collect();
                w.sort_unstable();
                w
            };
            assert_eq!(wordings(story), wordings(&whole));
            assert_eq!(story.merged, vec![StoryId(2)]);
            assert_eq!(story.pick_canonical(info), whole.pick_canonical(info));
        }
    }
}
