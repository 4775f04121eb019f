//! The nearest-neighbour index: HNSW graphs (hnsw_rs) in time-bucketed
//! segments. A search covers only the segments that overlap the query's
//! time range; a segment older than the retention is dropped whole, because
//! hnsw_rs cannot delete points.

use std::collections::BTreeMap;

use hnsw_rs::prelude::{Distance, Hnsw};

use super::embed::dot;
use super::types::Millis;

/// Graph degree (hnsw_rs `max_nb_connection`).
const MAX_CONNECTIONS: usize = 16;
/// Candidate list size while building.
const EF_CONSTRUCTION: usize = 64;
/// Candidate list size while searching.
const EF_SEARCH: usize = 64;
/// Layers.
const MAX_LAYERS: usize = 16;

/// `1 - dot` for unit vectors, clamped at zero: rounding can push the dot
/// of two equal vectors past 1, which must not make a negative distance.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

struct Segment {
    graph: Hnsw<'static, f32, UnitCosine>,
    len: usize,
}

/// Point ids are the caller's (headline sequence numbers).
pub struct SegmentedIndex {
    bucket_ms: Millis,
    segments: BTreeMap<Millis, Segment>,
}

impl std::fmt::Debug for SegmentedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedIndex")
            .field("bucket_ms", &self.bucket_ms)
            .field("segments", &self.segments.len())
            .field("points", &self.len())
            .finish()
    }
}

impl SegmentedIndex {
    /// An empty index whose segments each cover `bucket_ms` of event time.
    pub fn new(bucket_ms: Millis) -> Self {
        Self { bucket_ms: bucket_ms.max(1), segments: BTreeMap::new() }
    }

    fn bucket(&self, time: Millis) -> Millis {
        time.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// Adds the unit vector `vector` of point `id` at event time `time`.
    pub fn insert(&mut self, id: u64, time: Millis, vector: &[f32]) {
        let bucket = self.bucket(time);
        let segment = self.segments.entry(bucket).or_insert_with(|| Segment {
            graph: Hnsw::new(MAX_CONNECTIONS, 4096, MAX_LAYERS, EF_CONSTRUCTION, UnitCosine),
            len: 0,
        });
        segment.graph.insert_slice((vector, id as usize));
        segment.len += 1;
    }

    /// The `k` nearest points to `vector` with event times in the buckets
    /// that overlap `[from, to]`, as (id, cosine), best first.
    pub fn search(&self, vector: &[f32], from: Millis, to: Millis, k: usize) -> Vec<(u64, f32)> {
        let mut found: Vec<(u64, f32)> = self
            .segments
            .range(self.bucket(from)..=self.bucket(to))
            .flat_map(|(_, segment)| segment.graph.search(vector, k, EF_SEARCH.max(k)))
            .map(|n| (n.d_id as u64, 1.0 - n.distance))
            .collect();
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        found.truncate(k);
        found
    }

    /// Drops every segment that ends before `time`.
    pub fn drop_before(&mut self, time: Millis) -> usize {
        let keep_from = self.bucket(time);
        let kept = self.segments.split_off(&keep_from);
        let dropped: usize = self.segments.values().map(|s| s.len).sum();
        self.segments = kept;
        dropped
    }

    /// The number of indexed points.
    pub fn len(&self) -> usize {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Whether the index holds no points.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::embed::normalize_l2;
    use crate::core::types::DAY_MS;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        normalize_l2(&mut v);
        v
    }

    #[test]
    fn finds_the_exact_point_and_tolerates_duplicates() {
        let mut index = SegmentedIndex::new(DAY_MS);
        for id in 0..300 {
            index.insert(id, 0, &unit(id, 32));
        }
        index.insert(1000, 0, &unit(7, 32));
        let hits = index.search(&unit(7, 32), 0, 0, 2);
        let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, vec![7, 1000]);
        assert!(hits[0].1 > 0.999);
    }

    #[test]
    fn search_is_limited_to_the_time_range_and_old_segments_drop() {
        let mut index = SegmentedIndex::new(DAY_MS);
        index.insert(1, 0, &unit(1, 16));
        index.insert(2, 10 * DAY_MS, &unit(1, 16));
        let hits = index.search(&unit(1, 16), 9 * DAY_MS, 11 * DAY_MS, 5);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(index.drop_before(5 * DAY_MS), 1);
        assert_eq!(index.len(), 1);
        assert!(index.search(&unit(1, 16), -DAY_MS, DAY_MS, 5).is_empty());
    }
}
