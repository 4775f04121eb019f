//! A story: its members, the centroid of their vectors, the exemplars it
//! keeps in the index, its wordings and its canonical headline.

use std::collections::HashMap;

use super::embed::{dot, normalize_l2};
use super::types::{Millis, StoryId};

/// How much a wording's syndication (copies of it in the story) adds to its
/// centrality when the canonical headline is chosen: `ln(copies)` times this.
const SYNDICATION_BONUS: f32 = 0.05;

/// A unit vector stored in 8 bits per dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedVector {
    scale: f32,
    values: Box<[i8]>,
}

impl QuantizedVector {
    /// Quantizes `v` (symmetric, one scale for the vector).
    pub fn new(v: &[f32]) -> Self {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        // The division keeps every value within [-127, 127].
        let values = v.iter().map(|x| (x / scale).round() as i8).collect();
        Self { scale, values }
    }

    /// Adds `factor` times this vector to `sum`.
    pub fn add_to(&self, sum: &mut [f32], factor: f32) {
        let f = factor * self.scale;
        for (s, &q) in sum.iter_mut().zip(self.values.iter()) {
            *s += f * f32::from(q);
        }
    }

    /// The dot product with a float vector.
    pub fn dot(&self, other: &[f32]) -> f32 {
        let sum: f32 = self.values.iter().zip(other).map(|(&q, &x)| f32::from(q) * x).sum();
        sum * self.scale
    }
}

/// One story.
#[derive(Debug, Clone)]
pub struct Story {
    /// The id.
    pub id: StoryId,
    /// Member sequence numbers, in arrival order.
    pub members: Vec<u64>,
    /// Sum of the members' vectors.
    sum: Vec<f32>,
    /// Members in the index.
    pub exemplars: Vec<u64>,
    /// Event time of the newest exemplar.
    pub last_exemplar_time: Millis,
    /// Earliest member event time.
    pub first_seen: Millis,
    /// Latest member event time.
    pub last_seen: Millis,
    /// Copies per normalised wording (by exact key).
    wordings: HashMap<u64, u32>,
    /// The canonical member.
    pub canonical: u64,
    /// Stories merged into this one.
    pub merged: Vec<StoryId>,
}

impl Story {
    /// An empty story first seen at `time`.
    pub fn new(id: StoryId, time: Millis, dim: usize) -> Self {
        Self {
            id,
            members: Vec::new(),
            sum: vec![0.0; dim],
            exemplars: Vec::new(),
            last_exemplar_time: Millis::MIN,
            first_seen: time,
            last_seen: time,
            wordings: HashMap::new(),
            canonical: 0,
            merged: Vec::new(),
        }
    }

    /// Adds a member.
    pub fn add(&mut self, seq: u64, time: Millis, key: u64, vector: &QuantizedVector, indexed: bool) {
        if self.members.is_empty() {
            self.canonical = seq;
        }
        self.members.push(seq);
        vector.add_to(&mut self.sum, 1.0);
        if indexed {
            self.exemplars.push(seq);
            self.last_exemplar_time = self.last_exemplar_time.max(time);
        }
        *self.wordings.entry(key).or_default() += 1;
        self.first_seen = self.first_seen.min(time);
        self.last_seen = self.last_seen.max(time);
    }

    /// Removes a member (its times are recomputed by the caller).
    pub fn remove(&mut self, seq: u64, key: u64, vector: &QuantizedVector) {
        self.members.retain(|&m| m != seq);
        self.exemplars.retain(|&m| m != seq);
        vector.add_to(&mut self.sum, -1.0);
        if let Some(count) = self.wordings.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.wordings.remove(&key);
            }
        }
    }

    /// Takes over every member of `other`.
    pub fn absorb(&mut self, other: Story) {
        self.members.extend(other.members);
        for (s, o) in self.sum.iter_mut().zip(&other.sum) {
            *s += o;
        }
        self.exemplars.extend(other.exemplars);
        self.last_exemplar_time = self.last_exemplar_time.max(other.last_exemplar_time);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for (key, count) in other.wordings {
            *self.wordings.entry(key).or_default() += count;
        }
        self.merged.push(other.id);
        self.merged.extend(other.merged);
    }

    /// Mean similarity of a unit vector to the members: its dot product
    /// with the mean of their vectors.
    pub fn mean_similarity(&self, vector: &[f32]) -> f32 {
        dot(vector, &self.sum) / self.members.len().max(1) as f32
    }

    /// Average linkage: the mean similarity over all pairs of members of
    /// the two stories.
    pub fn linkage(&self, other: &Story) -> f32 {
        let pairs = (self.members.len() * other.members.len()).max(1) as f32;
        dot(&self.sum, &other.sum) / pairs
    }

    /// The unit direction of the members' mean.
    pub fn direction(&self) -> Vec<f32> {
        let mut d = self.sum.clone();
        normalize_l2(&mut d);
        d
    }

    /// The most central member, preferring the most syndicated wording: the
    /// highest `cos(member, mean) + SYNDICATION_BONUS * ln(copies)` over the
    /// members (all copies of a wording share its score), ties to the earliest. `info` gives a
    /// member's wording key and vector.
    pub fn pick_canonical<'a>(&self, info: impl Fn(u64) -> Option<(u64, &'a QuantizedVector)>) -> Option<u64> {
        let norm = dot(&self.sum, &self.sum).sqrt().max(f32::MIN_POSITIVE);
        let mut scores: HashMap<u64, f32> = HashMap::new();
        let mut best: Option<(f32, u64)> = None;
        for &seq in &self.members {
            let Some((key, vector)) = info(seq) else { continue };
            let score = *scores.entry(key).or_insert_with(|| {
                let copies = self.wordings.get(&key).copied().unwrap_or(1).max(1);
                vector.dot(&self.sum) / norm + SYNDICATION_BONUS * (copies as f32).ln()
            });
            if best.is_none_or(|(b, s)| score > b || (score == b && seq < s)) {
                best = Some((score, seq));
            }
        }
        best.map(|(_, seq)| seq)
    }
}
