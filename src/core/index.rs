//! The nearest-neighbour index: time-bucketed segments, each searched
//! exhaustively while it is small and through an HNSW graph (hnsw_rs) once
//! it grows past [`FLAT_LIMIT`]. A search covers only the segments that
//! overlap the query's time range; a segment older than the retention is
//! dropped whole, because hnsw_rs cannot delete points.
//!
//! A segment remembers its points in insertion order and builds its body
//! lazily: after a restart only the segments that are searched are rebuilt,
//! and rebuilding inserts the same points in the same order, so the segment
//! answers as it did before (hnsw_rs seeds its level generator).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hnsw_rs::prelude::{Distance, Hnsw};

use super::types::Millis;
use super::vector::cosine_i8;

/// Graph degree (hnsw_rs `max_nb_connection`).
const MAX_CONNECTIONS: usize = 16;
/// Candidate list size while building.
const EF_CONSTRUCTION: usize = 64;
/// Candidate list size while searching.
const EF_SEARCH: usize = 64;
/// Layers.
const MAX_LAYERS: usize = 16;
/// Segments of up to this many points are scanned rather than searched
/// through a graph: at the sizes a story window holds in a news feed, a
/// scan of contiguous int8 vectors is exact, needs no graph memory and
/// costs less than a graph's search plus insert (docs/performance.md).
pub const FLAT_LIMIT: usize = 8192;

/// `1 - cosine` of quantized unit vectors, clamped at zero: quantization can
/// push the cosine of two equal vectors past 1, which must not make a
/// negative distance.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<i8> for UnitCosine {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        (1.0 - cosine_i8(a, b)).max(0.0)
    }
}

type Graph = Hnsw<'static, i8, UnitCosine>;

/// Gives a point's quantized vector, for building a segment's body.
pub type VectorOf<'a> = &'a dyn Fn(u64) -> Option<Vec<i8>>;

/// How a segment is searched.
enum Body {
    /// Every vector, back to back, in the order of `ids`.
    Flat { ids: Vec<u64>, vectors: Vec<i8> },
    /// An HNSW graph.
    Graph(Box<Graph>),
}

impl Body {
    fn flat(points: &[u64], vector_of: VectorOf<'_>) -> Self {
        let mut ids = Vec::with_capacity(points.len());
        let mut vectors = Vec::new();
        for &id in points {
            if let Some(v) = vector_of(id) {
                ids.push(id);
                vectors.extend_from_slice(&v);
            }
        }
        Self::Flat { ids, vectors }
    }

    /// A graph of the points, inserted in order.
    fn graph<'v>(points: impl ExactSizeIterator<Item = (u64, &'v [i8])>) -> Self {
        let graph = Hnsw::new(MAX_CONNECTIONS, points.len().max(FLAT_LIMIT), MAX_LAYERS, EF_CONSTRUCTION, UnitCosine);
        for (id, v) in points {
            graph.insert_slice((v, id as usize));
        }
        Self::Graph(Box::new(graph))
    }

    /// The body for `points`, as their number calls for.
    fn build(points: &[u64], vector_of: VectorOf<'_>) -> Self {
        let flat = Self::flat(points, vector_of);
        if points.len() <= FLAT_LIMIT { flat } else { flat.into_graph() }
    }

    /// A flat body turned into a graph of the same points, in the same
    /// order.
    fn into_graph(self) -> Self {
        match self {
            Self::Flat { ids, vectors } => {
                let dim = if ids.is_empty() { 1 } else { vectors.len() / ids.len() };
                Self::graph(ids.iter().copied().zip(vectors.chunks_exact(dim.max(1))))
            }
            graph @ Self::Graph(_) => graph,
        }
    }

    /// The `k` best (id, cosine) of this segment, in no particular order.
    fn search(&self, vector: &[i8], k: usize) -> Vec<(u64, f32)> {
        match self {
            Self::Flat { ids, vectors } => {
                let mut scored: Vec<(u64, f32)> = ids
                    .iter()
                    .zip(vectors.chunks_exact(vector.len().max(1)))
                    .map(|(&id, v)| (id, cosine_i8(vector, v).min(1.0)))
                    .collect();
                if scored.len() > k {
                    scored.select_nth_unstable_by(k, best_first);
                    scored.truncate(k);
                }
                scored
            }
            Self::Graph(graph) => graph
                .search(vector, k, EF_SEARCH.max(k))
                .into_iter()
                .map(|n| (n.d_id as u64, 1.0 - n.distance))
                .collect(),
        }
    }
}

/// Higher cosine first, then lower id.
fn best_first(a: &(u64, f32), b: &(u64, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

#[derive(Default)]
struct Segment {
    points: Vec<u64>,
    body: OnceLock<Body>,
}

impl Segment {
    /// The body, built from the points on first use. `vector_of` gives a
    /// point's vector; points without one are skipped.
    fn body(&self, vector_of: VectorOf<'_>) -> &Body {
        self.body.get_or_init(|| Body::build(&self.points, vector_of))
    }

    fn insert(&mut self, id: u64, vector: &[i8], vector_of: VectorOf<'_>) {
        self.body(vector_of);
        self.points.push(id);
        if self.points.len() > FLAT_LIMIT
            && matches!(self.body.get(), Some(Body::Flat { .. }))
            && let Some(flat) = self.body.take()
        {
            self.body = OnceLock::from(flat.into_graph());
        }
        match self.body.get_mut() {
            Some(Body::Flat { ids, vectors }) => {
                ids.push(id);
                vectors.extend_from_slice(vector);
            }
            Some(Body::Graph(graph)) => graph.insert_slice((vector, id as usize)),
            None => {}
        }
    }
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

    /// Adds point `id` with quantized unit vector `vector` at event time
    /// `time`.
    /// `vector_of` gives earlier points' vectors if the segment's graph has
    /// not been built yet.
    pub fn insert(&mut self, id: u64, time: Millis, vector: &[i8], vector_of: VectorOf<'_>) {
        let bucket = self.bucket(time);
        self.segments.entry(bucket).or_default().insert(id, vector, vector_of);
    }

    /// Records point `id` at `time` without building its segment's body:
    /// the body is built on first search. Only for reloading state, before
    /// any search or insert.
    pub fn add_unbuilt(&mut self, id: u64, time: Millis) {
        let bucket = self.bucket(time);
        self.segments.entry(bucket).or_default().points.push(id);
    }

    /// Builds the bodies of the segments that overlap `[from, to]`.
    pub fn build(&self, from: Millis, to: Millis, vector_of: VectorOf<'_>) {
        for segment in self.segments.range(self.bucket(from)..=self.bucket(to)).map(|(_, s)| s) {
            segment.body(vector_of);
        }
    }

    /// The `k` nearest points to `vector` with event times in the buckets
    /// that overlap `[from, to]`, as (id, cosine), best first.
    pub fn search(
        &self,
        vector: &[i8],
        from: Millis,
        to: Millis,
        k: usize,
        vector_of: VectorOf<'_>,
    ) -> Vec<(u64, f32)> {
        let mut found: Vec<(u64, f32)> = self
            .segments
            .range(self.bucket(from)..=self.bucket(to))
            .flat_map(|(_, segment)| segment.body(vector_of).search(vector, k))
            .collect();
        found.sort_by(best_first);
        found.truncate(k);
        found
    }

    /// Drops every segment that ends at or before `time`; returns how many
    /// points went with them.
    pub fn drop_before(&mut self, time: Millis) -> usize {
        let keep_from = self.bucket(time);
        let kept = self.segments.split_off(&keep_from);
        let dropped: usize = self.segments.values().map(|s| s.points.len()).sum();
        self.segments = kept;
        dropped
    }

    /// The number of indexed points.
    pub fn len(&self) -> usize {
        self.segments.values().map(|s| s.points.len()).sum()
    }

    /// Whether the index holds no points.
    pub fn is_empty(&self) -> bool {
        self.segments.values().all(|s| s.points.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::embed::normalize_l2;
    use crate::core::types::DAY_MS;
    use crate::core::vector::QuantizedVector;

    fn unit(seed: u64, dim: usize) -> Vec<i8> {
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
        QuantizedVector::new(&v).values().to_vec()
    }

    fn vectors(dim: usize) -> impl Fn(u64) -> Option<Vec<i8>> {
        move |id| Some(unit(if id >= 1000 { id - 993 } else { id }, dim))
    }

    #[test]
    fn finds_the_exact_point_and_tolerates_duplicates() {
        let mut index = SegmentedIndex::new(DAY_MS);
        let of = vectors(32);
        for id in 0..300 {
            index.insert(id, 0, &unit(id, 32), &of);
        }
        index.insert(1000, 0, &unit(7, 32), &of);
        let hits = index.search(&unit(7, 32), 0, 0, 2, &of);
        let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, vec![7, 1000]);
        assert!(hits[0].1 > 0.98, "{hits:?}");
    }

    #[test]
    fn search_is_limited_to_the_time_range_and_old_segments_drop() {
        let mut index = SegmentedIndex::new(DAY_MS);
        let of = vectors(16);
        index.insert(1, 0, &unit(1, 16), &of);
        index.insert(2, 10 * DAY_MS, &unit(2, 16), &of);
        let hits = index.search(&unit(1, 16), 9 * DAY_MS, 11 * DAY_MS, 5, &of);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(index.drop_before(5 * DAY_MS), 1);
        assert_eq!(index.len(), 1);
        assert!(index.search(&unit(1, 16), -DAY_MS, DAY_MS, 5, &of).is_empty());
    }

    #[test]
    fn a_lazily_built_segment_answers_like_an_eager_one() {
        let of = vectors(24);
        let mut eager = SegmentedIndex::new(DAY_MS);
        let mut lazy = SegmentedIndex::new(DAY_MS);
        for id in 0..500 {
            eager.insert(id, 0, &unit(id, 24), &of);
            lazy.add_unbuilt(id, 0);
        }
        for probe in [3u64, 77, 400] {
            let query = unit(probe + 10_000, 24);
            assert_eq!(eager.search(&query, 0, 0, 10, &of), lazy.search(&query, 0, 0, 10, &of));
        }
    }

    #[test]
    fn a_small_segment_is_scanned_exactly() {
        let of = vectors(16);
        let mut index = SegmentedIndex::new(DAY_MS);
        for id in 0..2000 {
            index.insert(id, 0, &unit(id, 16), &of);
        }
        let query = unit(123_456, 16);
        let mut all: Vec<(u64, f32)> = (0..2000).map(|id| (id, cosine_i8(&query, &unit(id, 16)).min(1.0))).collect();
        all.sort_by(best_first);
        all.truncate(15);
        assert_eq!(index.search(&query, 0, 0, 15, &of), all);
    }

    #[test]
    fn a_segment_that_outgrows_the_scan_gets_a_graph_that_reloads_the_same() {
        let of = |id: u64| Some(unit(id, 8));
        let mut eager = SegmentedIndex::new(DAY_MS);
        let mut lazy = SegmentedIndex::new(DAY_MS);
        let n = FLAT_LIMIT as u64 + 300;
        for id in 0..n {
            eager.insert(id, 0, &unit(id, 8), &of);
            lazy.add_unbuilt(id, 0);
        }
        let segment = eager.segments.values().next().expect("one segment");
        assert!(matches!(segment.body.get(), Some(Body::Graph(_))));
        assert_eq!(eager.len(), n as usize);
        for probe in [5u64, 4321, n - 1] {
            assert_eq!(eager.search(&unit(probe, 8), 0, 0, 1, &of)[0].0, probe);
            let query = unit(probe + 50_000, 8);
            assert_eq!(eager.search(&query, 0, 0, 10, &of), lazy.search(&query, 0, 0, 10, &of));
        }
    }
}
