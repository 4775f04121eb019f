//! The nearest-neighbour index: time-bucketed segments of int8 vectors. A
//! search covers only the segments that overlap the query's time range; a
//! segment older than the retention is dropped whole.
//!
//! A search reads a segment in one of three ways, by its size ([`Limits`]):
//! - **Scanned**, up to [`FLAT_LIMIT`] points: every vector's dot product
//!   with the query. At a news feed's density a story window holds a few
//!   thousand exemplars, and a scan of contiguous int8 vectors is exact,
//!   needs nothing beside the vectors and costs less than any index.
//! - **Through its codes**, up to [`CODED_LIMIT`] points: every point
//!   then has a sign code ([`Code`]: the sides of [`CODE_BITS`] fixed
//!   pseudo-random hyperplanes its vector lies on), 32 bytes where its
//!   vector is 640. A segment codes its points as it grows, from half the
//!   scan limit on, two per point added, so that every point has its code
//!   when the segment stops being scanned, and the segments of a news
//!   feed's density have none (nor does their index make the hyperplanes).
//!   A search reads the codes of every such segment it covers, keeps the
//!   points whose codes are nearest the query's (at least [`RERANKED`],
//!   and [`RERANKED_PER_RESULT`] for each result asked for, ties included)
//!   and ranks those by their exact dot products. A firehose's story
//!   window is read this way.
//! - **Through an HNSW graph** (hnsw_rs) past that. A segment's graph
//!   grows with it, a little at every insert, so that no insert or search
//!   ever waits for a whole graph to be built: it starts when the segment
//!   passes half of the coded limit and takes two points per point added,
//!   so it holds every point when the segment stops being read through its
//!   codes. The graph always holds a prefix of the points in insertion
//!   order, so a restart, which inserts the same points in the same order,
//!   builds the same graph and the segment answers as it did before
//!   (hnsw_rs seeds its level generator). A segment that loses points (a
//!   deletion, or the oldest segment as the retention period moves on)
//!   drops its graph, which is built again from the points left when the
//!   segment is next searched or grows: rarely, and only where it is
//!   needed.
//!
//! A segment owns its points' vectors and codes, back to back in insertion
//! order (ascending ids): they are what a search reads, the engine's only
//! copy of an exemplar's vector, and what a graph is built from. Codes
//! depend on the vector alone, so scans and codes answer from the points
//! present, whatever the order they came in.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Mutex, OnceLock, PoisonError};

use hnsw_rs::prelude::{Distance, Hnsw};

use super::types::Millis;
use super::vector::{
    CODE_BITS, CODE_WORDS, Code, DOT_OF_COSINE_ONE, cosine_i8, cosine_of_dot, dots_i8, dots_i8_of, hamming_distances,
};

/// Graph degree (hnsw_rs `max_nb_connection`).
const MAX_CONNECTIONS: usize = 16;
/// Candidate list size while building.
const EF_CONSTRUCTION: usize = 64;
/// Candidate list size while searching.
const EF_SEARCH: usize = 64;
/// Layers.
const MAX_LAYERS: usize = 16;
/// Segments of up to this many points are scanned (docs/performance.md).
pub const FLAT_LIMIT: usize = 8192;
/// Segments of up to this many points are read through their codes, larger
/// ones through a graph (docs/performance.md).
pub const CODED_LIMIT: usize = 1 << 20;
/// The fewest points whose codes are nearest the query's that a search of
/// coded segments ranks by their dot products.
pub const RERANKED: usize = 1024;
/// And the points it ranks for each result asked for, if more.
pub const RERANKED_PER_RESULT: usize = 16;

/// Codes tested at once for whether a search keeps any of them.
const KEEP_TEST_BLOCK: usize = 32;

/// The segment sizes past which a search reads a segment another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Segments of up to this many points are scanned.
    pub scanned: usize,
    /// Larger ones of up to this many points are read through their codes;
    /// larger still, through a graph.
    pub coded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { scanned: FLAT_LIMIT, coded: CODED_LIMIT }
    }
}

impl Limits {
    /// Points a segment of `len` points has in its graph: none up to half
    /// the coded limit, then two more for every point added, every point
    /// once the segment is past the coded limit.
    fn graphed_points(self, len: usize) -> usize {
        len.saturating_sub(self.coded / 2).saturating_mul(2).min(len)
    }

    /// Points a segment of `len` points has codes for, the same way: none
    /// up to half the scan limit, every point past it.
    fn coded_points(self, len: usize) -> usize {
        len.saturating_sub(self.scanned / 2).saturating_mul(2).min(len)
    }
}

/// A segment's vectors grow by an eighth of their number (at least this
/// many points) at a time: little unused capacity in segments that stopped
/// growing, few copies in those that grow.
const MIN_GROWTH: usize = 64;

/// The `k`-th largest of `values` (counting equal values apart), or
/// `i32::MIN` when there are at most `k`; `k` is positive. One pass with a
/// heap of the `k` largest so far: nearly every value of a scan is below
/// its least and costs one comparison.
fn kth_largest(values: &[i32], k: usize) -> i32 {
    let Some((first, rest)) = values.split_at_checked(k).filter(|(_, rest)| !rest.is_empty()) else {
        return i32::MIN;
    };
    let mut largest: BinaryHeap<Reverse<i32>> = first.iter().copied().map(Reverse).collect();
    for &value in rest {
        if let Some(mut least) = largest.peek_mut()
            && value > least.0
        {
            *least = Reverse(value);
        }
    }
    largest.peek().map_or(i32::MIN, |least| least.0)
}

/// The least distance within which at least `keep` of `distances` lie
/// (every one of them when there are fewer), found by halving the range of
/// distances: each step counts the distances within one bound in a pass
/// the compiler vectorises, far less work than a table of counts, whose
/// every increment waits for memory.
fn distance_keeping(distances: &[u16], keep: usize) -> u16 {
    if distances.len() < keep {
        return u16::MAX;
    }
    let (mut low, mut high) = (0u16, CODE_BITS as u16);
    while low < high {
        let middle = low + (high - low) / 2;
        if count_within(distances, middle) >= keep {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    high
}

/// How many of `distances` are at most `bound`: counted in 16-bit lanes,
/// a block of at most `u16::MAX` distances at a time.
fn count_within(distances: &[u16], bound: u16) -> usize {
    let block = |block: &[u16]| usize::from(block.iter().fold(0u16, |count, &d| count + u16::from(d <= bound)));
    distances.chunks(usize::from(u16::MAX)).map(block).sum()
}

/// The hyperplanes of the codes of `dim`-dimensional vectors: [`CODE_BITS`]
/// rows of `dim` values of ±1, from a fixed seed, so that every index of a
/// dimension has the same ones.
fn hyperplanes(dim: usize) -> Vec<i8> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..CODE_BITS * dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state >> 63 == 0 { 1 } else { -1 }
        })
        .collect()
}

/// The code of a vector, of the dimension of `planes` ([`hyperplanes`]):
/// bit `i` is set when its dot product with hyperplane `i` is positive.
fn code_of(vector: &[i8], planes: &[i8]) -> Code {
    let mut sides = Vec::with_capacity(CODE_BITS);
    dots_i8(vector, planes, &mut sides);
    let mut code = [0u64; CODE_WORDS];
    for (bit, _) in sides.iter().enumerate().filter(|&(_, &side)| side > 0) {
        if let Some(word) = code.get_mut(bit / 64) {
            *word |= 1 << (bit % 64);
        }
    }
    code
}

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

/// The points of one time bucket.
#[derive(Default)]
struct Segment {
    /// Point ids, ascending (the order of insertion).
    ids: Vec<u64>,
    /// Their vectors, `dim` values each, in the order of `ids`.
    vectors: Vec<i8>,
    /// The codes of the first points, in the order of `ids`: at least
    /// [`Limits::coded_points`] of them.
    codes: Vec<Code>,
    /// The graph of the first `graphed` points, once the segment is large
    /// enough to have one (`graphed` is locked while points go in, so two
    /// searches never insert the same point).
    graph: OnceLock<Box<Graph>>,
    graphed: Mutex<usize>,
}

impl Segment {
    /// The segment's graph, with at least the first `target` points in
    /// it (inserted in order now if they are not).
    fn graph_of(&self, target: usize, dim: usize, limits: Limits) -> &Graph {
        let graph = self.graph.get_or_init(|| {
            Box::new(Hnsw::new(MAX_CONNECTIONS, limits.coded, MAX_LAYERS, EF_CONSTRUCTION, UnitCosine))
        });
        let mut graphed = self.graphed.lock().unwrap_or_else(PoisonError::into_inner);
        if *graphed < target {
            for (id, v) in self.ids.iter().zip(self.vectors.chunks_exact(dim)).take(target).skip(*graphed) {
                graph.insert_slice((v, *id as usize));
            }
            *graphed = target;
        }
        graph
    }

    /// Inserts into the graph the points it should have at the segment's
    /// size.
    fn grow_graph(&mut self, dim: usize, limits: Limits) {
        let target = limits.graphed_points(self.ids.len());
        if target > 0 {
            self.graph_of(target, dim, limits);
        }
    }

    /// Appends a point whose id is above every id in the segment; `vector`
    /// has `dim` values. Codes the points the segment's size asks for
    /// (`planes`: the index's, made when first needed); removals never
    /// leave more than two to code.
    fn push(&mut self, id: u64, vector: &[i8], planes: &OnceLock<Vec<i8>>, dim: usize, limits: Limits) {
        if self.vectors.capacity() - self.vectors.len() < dim {
            self.vectors.reserve_exact((self.ids.len() / 8).max(MIN_GROWTH) * dim);
        }
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        let target = limits.coded_points(self.ids.len());
        while self.codes.len() < target {
            let Some(row) = self.row(self.codes.len(), dim) else { break };
            let code = code_of(row, planes.get_or_init(|| hyperplanes(dim)));
            self.codes.push(code);
        }
        self.grow_graph(dim, limits);
    }

    /// Removes the points of `ids` (ascending). A graph, which cannot lose
    /// points, is dropped, to be built again from the points left when the
    /// segment is next searched or grows: the same graph a restart would
    /// build.
    fn remove(&mut self, ids: &[u64], dim: usize) {
        let keep: Vec<bool> = self.ids.iter().map(|id| ids.binary_search(id).is_err()).collect();
        if keep.iter().all(|&kept| kept) {
            return;
        }
        let rows = self.vectors.chunks_exact(dim).zip(&keep).filter(|(_, kept)| **kept);
        self.vectors = rows.flat_map(|(row, _)| row.iter().copied()).collect();
        let mut kept = keep.iter();
        self.codes.retain(|_| kept.next().copied().unwrap_or(true));
        let mut kept = keep.iter();
        self.ids.retain(|_| kept.next().copied().unwrap_or(true));
        (self.graph, self.graphed) = (OnceLock::new(), Mutex::new(0));
    }

    fn vector(&self, id: u64, dim: usize) -> Option<&[i8]> {
        let row = self.ids.binary_search(&id).ok()?;
        self.row(row, dim)
    }

    fn row(&self, row: usize, dim: usize) -> Option<&[i8]> {
        self.vectors.get(row * dim..(row + 1) * dim)
    }

    /// The `k` best (id, cosine) of this segment's graph of every point.
    fn search_graph(&self, query: &[i8], k: usize, dim: usize, limits: Limits) -> impl Iterator<Item = (u64, f32)> {
        let graph = self.graph_of(self.ids.len(), dim, limits);
        graph.search(query, k, EF_SEARCH.max(k)).into_iter().map(|n| (n.d_id as u64, 1.0 - n.distance))
    }
}

/// How a search reads a segment past the scan limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Search {
    /// Through its codes or its graph, as its size says (approximate).
    #[default]
    Approximate,
    /// By scanning every point (exact), to measure what the codes and the
    /// graphs miss.
    Scan,
}

/// Higher cosine first, then lower id.
fn best_first(a: &(u64, f32), b: &(u64, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Point ids are the caller's (headline sequence numbers), inserted in
/// ascending order.
pub struct SegmentedIndex {
    bucket_ms: Millis,
    dim: usize,
    limits: Limits,
    /// The codes' hyperplanes ([`hyperplanes`]), made when a segment first
    /// needs codes: 160 KB at 640 dimensions that a feed's index never
    /// uses.
    planes: OnceLock<Vec<i8>>,
    segments: BTreeMap<Millis, Segment>,
}

impl std::fmt::Debug for SegmentedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedIndex")
            .field("bucket_ms", &self.bucket_ms)
            .field("dim", &self.dim)
            .field("limits", &self.limits)
            .field("segments", &self.segments.len())
            .field("points", &self.len())
            .finish()
    }
}

impl SegmentedIndex {
    /// An empty index of `dim`-dimensional vectors whose segments each
    /// cover `bucket_ms` of event time.
    pub fn new(bucket_ms: Millis, dim: usize) -> Self {
        Self::with_limits(bucket_ms, dim, Limits::default())
    }

    /// [`Self::new`], reading segments by other size limits (a coded limit
    /// below the scan limit is the scan limit).
    pub fn with_limits(bucket_ms: Millis, dim: usize, limits: Limits) -> Self {
        let dim = dim.max(1);
        let limits = Limits { coded: limits.coded.max(limits.scanned), ..limits };
        Self { bucket_ms: bucket_ms.max(1), dim, limits, planes: OnceLock::new(), segments: BTreeMap::new() }
    }

    /// The codes' hyperplanes, made now if no segment needed them before.
    fn planes(&self) -> &[i8] {
        self.planes.get_or_init(|| hyperplanes(self.dim))
    }

    fn bucket(&self, time: Millis) -> Millis {
        time.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// A vector cut or padded with zeros to the index's dimension.
    fn fitted<'v>(&self, vector: &'v [i8]) -> Cow<'v, [i8]> {
        if vector.len() == self.dim {
            Cow::Borrowed(vector)
        } else {
            let mut fitted = vector.to_vec();
            fitted.resize(self.dim, 0);
            Cow::Owned(fitted)
        }
    }

    /// Adds point `id`, above every id inserted before, with quantized unit
    /// vector `vector` at event time `time`. A vector of another dimension
    /// is cut or padded with zeros to the index's.
    pub fn insert(&mut self, id: u64, time: Millis, vector: &[i8]) {
        let vector = self.fitted(vector);
        let (bucket, dim, limits) = (self.bucket(time), self.dim, self.limits);
        self.segments.entry(bucket).or_default().push(id, &vector, &self.planes, dim, limits);
    }

    /// The vector of point `id`, inserted at event time `time`.
    pub fn vector(&self, id: u64, time: Millis) -> Option<&[i8]> {
        self.segments.get(&self.bucket(time))?.vector(id, self.dim)
    }

    fn overlapping(&self, from: Millis, to: Millis) -> impl Iterator<Item = &Segment> {
        self.segments.range(self.bucket(from)..=self.bucket(to)).map(|(_, s)| s)
    }

    /// The `k` nearest points to `vector` with event times in the buckets
    /// that overlap `[from, to]`, as (id, cosine), best first. A vector of
    /// another dimension is cut or padded with zeros to the index's.
    ///
    /// The dot products of the scanned segments' points, and of the points
    /// the coded segments' codes keep, are gathered and their k-th best is
    /// found once, among plain integers: only the points that reach it
    /// (ties included) become candidates, and so do all whose cosine rounds
    /// up to 1, which are ordered by id alone.
    pub fn search(&self, vector: &[i8], from: Millis, to: Millis, k: usize) -> Vec<(u64, f32)> {
        self.search_by(vector, from, to, k, Search::Approximate)
    }

    /// [`Self::search`], reading the segments past the scan limit `how`.
    pub fn search_by(&self, vector: &[i8], from: Millis, to: Millis, k: usize, how: Search) -> Vec<(u64, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let vector = self.fitted(vector);
        let vector = vector.as_ref();
        let mut found: Vec<(u64, f32)> = Vec::new();
        let (mut scanned, mut coded): (Vec<&Segment>, Vec<&Segment>) = (Vec::new(), Vec::new());
        let mut dots: Vec<i32> = Vec::new();
        let mut distances: Vec<u16> = Vec::new();
        let mut query_code: Option<Code> = None;
        for segment in self.overlapping(from, to) {
            let len = segment.ids.len();
            if len <= self.limits.scanned || how == Search::Scan {
                dots_i8(vector, &segment.vectors, &mut dots);
                scanned.push(segment);
            } else if len <= self.limits.coded {
                let query_code = query_code.get_or_insert_with(|| code_of(vector, self.planes()));
                hamming_distances(query_code, &segment.codes, &mut distances);
                coded.push(segment);
            } else {
                found.extend(segment.search_graph(vector, k, self.dim, self.limits));
            }
        }
        let picked = self.nearest_codes(vector, &coded, &distances, k);
        dots.extend(picked.iter().map(|&(_, _, dot)| dot));
        let floor = kth_largest(&dots, k).min(DOT_OF_COSINE_ONE);
        let mut rest = dots.as_slice();
        for segment in scanned {
            let (dots, after) = rest.split_at(segment.ids.len().min(rest.len()));
            rest = after;
            let reached = segment.ids.iter().zip(dots).filter(|&(_, &dot)| dot >= floor);
            found.extend(reached.map(|(&id, &dot)| (id, cosine_of_dot(dot).min(1.0))));
        }
        let reached = picked.into_iter().filter(|&(_, _, dot)| dot >= floor);
        let ids = reached.filter_map(|(segment, row, dot)| Some((*coded.get(segment)?.ids.get(row)?, dot)));
        found.extend(ids.map(|(id, dot)| (id, cosine_of_dot(dot).min(1.0))));
        found.sort_by(best_first);
        found.truncate(k);
        found
    }

    /// The points of the `coded` segments, whose codes are at `distances`
    /// from the query's (segment after segment), nearest enough to be
    /// ranked for `k` results, as (segment in `coded`, row) with their dot
    /// products with `vector`: an id is read only for the few points that
    /// reach the results' floor.
    fn nearest_codes(
        &self,
        vector: &[i8],
        coded: &[&Segment],
        distances: &[u16],
        k: usize,
    ) -> Vec<(usize, usize, i32)> {
        if coded.is_empty() {
            return Vec::new();
        }
        let within = distance_keeping(distances, RERANKED.max(k.saturating_mul(RERANKED_PER_RESULT)));
        let (mut places, mut rows): (Vec<(usize, usize)>, Vec<&[i8]>) = (Vec::new(), Vec::new());
        let mut rest = distances;
        for (position, segment) in coded.iter().enumerate() {
            let (mine, after) = rest.split_at(segment.codes.len().min(rest.len()));
            rest = after;
            // Few codes are kept: a block of them is first tested whole,
            // without a branch per code.
            for (block, distances) in mine.chunks(KEEP_TEST_BLOCK).enumerate() {
                if !distances.iter().fold(false, |any, &distance| any | (distance <= within)) {
                    continue;
                }
                for (offset, _) in distances.iter().enumerate().filter(|&(_, &distance)| distance <= within) {
                    let row = block * KEEP_TEST_BLOCK + offset;
                    if let Some(values) = segment.row(row, self.dim) {
                        places.push((position, row));
                        rows.push(values);
                    }
                }
            }
        }
        let mut dots = Vec::new();
        dots_i8_of(vector, &rows, &mut dots);
        places.into_iter().zip(dots).map(|((segment, row), dot)| (segment, row, dot)).collect()
    }

    /// Removes points, each given with the event time it was inserted at.
    pub fn remove(&mut self, points: &[(u64, Millis)]) {
        let mut by_segment: BTreeMap<Millis, Vec<u64>> = BTreeMap::new();
        for &(id, time) in points {
            by_segment.entry(self.bucket(time)).or_default().push(id);
        }
        let dim = self.dim;
        for (bucket, mut ids) in by_segment {
            ids.sort_unstable();
            if let Some(segment) = self.segments.get_mut(&bucket) {
                segment.remove(&ids, dim);
                if segment.ids.is_empty() {
                    self.segments.remove(&bucket);
                }
            }
        }
    }

    /// Drops every segment that ends at or before `time`; returns how many
    /// points went with them.
    pub fn drop_before(&mut self, time: Millis) -> usize {
        let keep_from = self.bucket(time);
        let kept = self.segments.split_off(&keep_from);
        let dropped: usize = self.segments.values().map(|s| s.ids.len()).sum();
        self.segments = kept;
        dropped
    }

    /// The number of points in the buckets that overlap `[from, to]`.
    pub fn count(&self, from: Millis, to: Millis) -> usize {
        self.overlapping(from, to).map(|s| s.ids.len()).sum()
    }

    /// The number of indexed points.
    pub fn len(&self) -> usize {
        self.segments.values().map(|s| s.ids.len()).sum()
    }

    /// Whether the index holds no points.
    pub fn is_empty(&self) -> bool {
        self.segments.values().all(|s| s.ids.is_empty())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::embed::normalize_l2;
    use crate::core::types::DAY_MS;
    use crate::core::vector::QuantizedVector;

    #[test]
    fn kth_largest_counts_equal_values_apart() {
        let values: Vec<i32> = (0..300).map(|i: i32| (i * 7919) % 101 - 50).collect();
        for k in [1, 2, 20, 299] {
            let mut sorted = values.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(kth_largest(&values, k), sorted[k - 1], "k = {k}");
        }
        assert_eq!(kth_largest(&[3, 3, 1], 2), 3);
        assert_eq!(kth_largest(&values, 300), i32::MIN);
    }

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

    #[test]
    fn finds_the_exact_point_and_tolerates_duplicates() {
        let mut index = SegmentedIndex::new(DAY_MS, 32);
        for id in 0..300 {
            index.insert(id, 0, &unit(id, 32));
        }
        index.insert(1000, 0, &unit(7, 32));
        let hits = index.search(&unit(7, 32), 0, 0, 2);
        let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, vec![7, 1000]);
        assert!(hits[0].1 > 0.98, "{hits:?}");
    }

    #[test]
    fn search_is_limited_to_the_time_range_and_old_segments_drop() {
        let mut index = SegmentedIndex::new(DAY_MS, 16);
        index.insert(1, 0, &unit(1, 16));
        index.insert(2, 10 * DAY_MS, &unit(2, 16));
        let hits = index.search(&unit(1, 16), 9 * DAY_MS, 11 * DAY_MS, 5);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(index.drop_before(5 * DAY_MS), 1);
        assert_eq!(index.len(), 1);
        assert!(index.search(&unit(1, 16), -DAY_MS, DAY_MS, 5).is_empty());
        assert_eq!(index.vector(1, 0), None);
    }

    #[test]
    fn removed_points_leave_as_if_they_had_never_come() {
        for limits in [Limits::default(), CODED] {
            removed_points_leave(limits);
        }
    }

    fn removed_points_leave(limits: Limits) {
        let mut index = SegmentedIndex::with_limits(DAY_MS, 16, limits);
        let mut fresh = SegmentedIndex::with_limits(DAY_MS, 16, limits);
        for id in 0..600u64 {
            index.insert(id, (id as Millis % 3) * DAY_MS, &unit(id, 16));
            if id % 5 != 0 {
                fresh.insert(id, (id as Millis % 3) * DAY_MS, &unit(id, 16));
            }
        }
        let removed: Vec<(u64, Millis)> = (0..600u64).step_by(5).map(|id| (id, (id as Millis % 3) * DAY_MS)).collect();
        index.remove(&removed);
        assert_eq!(index.len(), fresh.len());
        assert_eq!(index.vector(5, 2 * DAY_MS), None);
        assert_eq!(index.vector(7, DAY_MS), Some(unit(7, 16).as_slice()));
        for probe in [5u64, 77, 1234] {
            let query = unit(probe, 16);
            assert_eq!(index.search(&query, 0, 2 * DAY_MS, 10), fresh.search(&query, 0, 2 * DAY_MS, 10));
        }
        index.remove(&(0..600u64).map(|id| (id, (id as Millis % 3) * DAY_MS)).collect::<Vec<_>>());
        assert!(index.is_empty() && index.segments.is_empty(), "empty segments go");
    }

    /// Limits that make graphs of a few thousand points.
    const GRAPHED: Limits = Limits { scanned: 256, coded: 2048 };

    #[test]
    fn a_large_segment_that_loses_a_point_builds_the_graph_a_restart_would() {
        let n = GRAPHED.coded as u64 + 200;
        let index = || SegmentedIndex::with_limits(DAY_MS, 8, GRAPHED);
        let (mut kept, mut restarted) = (index(), index());
        for id in 0..n {
            kept.insert(id, 0, &unit(id, 8));
            if id != 42 {
                restarted.insert(id, 0, &unit(id, 8));
            }
        }
        kept.remove(&[(42, 0)]);
        let segment = kept.segments.values().next().expect("one segment");
        assert!(segment.graph.get().is_none(), "the graph waits for the next search");
        for probe in [7u64, 1234, n + 99] {
            let query = unit(probe, 8);
            assert_eq!(kept.search(&query, 0, 0, 10), restarted.search(&query, 0, 0, 10));
        }
    }

    /// Limits that read segments of more than 64 points through their
    /// codes.
    const CODED: Limits = Limits { scanned: 64, coded: CODED_LIMIT };

    #[test]
    fn a_segment_codes_its_points_from_half_the_scan_limit_on() {
        let mut index = SegmentedIndex::with_limits(DAY_MS, 16, CODED);
        let codes = |index: &SegmentedIndex| index.segments.values().map(|s| s.codes.len()).sum::<usize>();
        for id in 0..32u64 {
            index.insert(id, 0, &unit(id, 16));
        }
        assert_eq!(codes(&index), 0, "a feed's segments have none");
        assert!(index.planes.get().is_none(), "nor does their index make the hyperplanes");
        index.insert(32, 0, &unit(32, 16));
        assert_eq!(codes(&index), 2);
        for id in 33..64u64 {
            index.insert(id, 0, &unit(id, 16));
        }
        assert_eq!(codes(&index), 64, "every point at the scan limit");
        index.remove(&(20..40u64).map(|id| (id, 0)).collect::<Vec<_>>());
        for id in 64..90u64 {
            index.insert(id, 0, &unit(id, 16));
        }
        let segment = &index.segments[&0];
        assert_eq!(segment.codes.len(), segment.ids.len());
        for (row, code) in segment.codes.iter().enumerate() {
            assert_eq!(*code, code_of(segment.row(row, 16).unwrap_or_default(), index.planes()), "row {row}");
        }
    }

    #[test]
    fn points_are_ranked_exactly_once_their_codes_keep_them() {
        // Fewer points than a search ranks: every one is kept, and the
        // answer is the scan's, ties by id included.
        let mut index = SegmentedIndex::with_limits(DAY_MS, 16, CODED);
        for id in 0..RERANKED as u64 - 1 {
            let vector = if id % 67 == 3 { unit(5, 16) } else { unit(id, 16) };
            index.insert(id, 0, &vector);
        }
        for (probe, k) in [(5u64, 20), (99_999, 20), (99_999, 1)] {
            let query = unit(probe, 16);
            assert_eq!(index.search(&query, 0, 0, k), index.search_by(&query, 0, 0, k, Search::Scan));
        }
    }

    #[test]
    fn coded_segments_find_the_nearest_points_among_many() {
        let n = 40 * RERANKED as u64;
        let mut index = SegmentedIndex::with_limits(DAY_MS / 4, 32, CODED);
        for id in 0..n {
            index.insert(id, (id as Millis % 4) * DAY_MS / 4, &unit(id, 32));
        }
        let (mut found, mut asked) = (0, 0);
        for probe in (0..n).step_by(997) {
            // A point near a stored one: the stored one first.
            let mut near: Vec<f32> = unit(probe, 32)
                .iter()
                .zip(unit(probe + n, 32))
                .map(|(&a, b)| 4.0 * f32::from(a) + f32::from(b))
                .collect();
            normalize_l2(&mut near);
            let query = QuantizedVector::new(&near).values().to_vec();
            let (coded, exact) =
                (index.search(&query, 0, DAY_MS, 10), index.search_by(&query, 0, DAY_MS, 10, Search::Scan));
            assert_eq!(coded.first().map(|hit| hit.0), Some(probe));
            for (id, cos) in &coded {
                assert_eq!(*cos, cosine_i8(&query, &unit(*id, 32)).min(1.0), "exact cosines");
            }
            found += coded.iter().filter(|hit| exact.contains(hit)).count();
            asked += exact.len();
        }
        assert!(found as f32 >= 0.95 * asked as f32, "{found} of the exact scan's {asked} nearest");
    }

    #[test]
    fn the_distance_keeping_some_points_counts_ties_in() {
        assert_eq!(distance_keeping(&[7, 3, 3, 9, 0], 1), 0);
        assert_eq!(distance_keeping(&[7, 3, 3, 9, 0], 2), 3);
        assert_eq!(distance_keeping(&[7, 3, 3, 9, 0], 3), 3);
        assert_eq!(distance_keeping(&[7, 3, 3, 9, 0], 4), 7);
        assert_eq!(distance_keeping(&[7, 3, 3, 9, 0], 6), u16::MAX, "fewer than asked: all of them");
        assert_eq!(distance_keeping(&[CODE_BITS as u16], 1), CODE_BITS as u16);
        // More distances than one block of 16-bit counts holds.
        let many: Vec<u16> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u16).collect();
        let mut sorted = many.clone();
        sorted.sort_unstable();
        for keep in [1, 1024, 70_000, 199_999, 200_000] {
            assert_eq!(distance_keeping(&many, keep), sorted[keep - 1], "keeping {keep}");
        }
    }

    #[test]
    fn a_scan_of_a_large_segment_finds_the_exact_best() {
        let n = FLAT_LIMIT as u64 + 300;
        let mut index = SegmentedIndex::new(DAY_MS, 8);
        for id in 0..n {
            index.insert(id, 0, &unit(id, 8));
        }
        for probe in [3u64, 5000, n + 7] {
            let query = unit(probe, 8);
            let mut exact: Vec<(u64, f32)> = (0..n).map(|id| (id, cosine_i8(&query, &unit(id, 8)).min(1.0))).collect();
            exact.sort_by(best_first);
            exact.truncate(10);
            assert_eq!(index.search_by(&query, 0, 0, 10, Search::Scan), exact);
        }
    }

    #[test]
    fn every_point_keeps_its_vector() {
        let mut index = SegmentedIndex::new(DAY_MS, 16);
        for id in 0..500u64 {
            index.insert(id, (id as Millis % 3) * DAY_MS, &unit(id, 16));
        }
        for id in [0u64, 1, 250, 499] {
            assert_eq!(index.vector(id, (id as Millis % 3) * DAY_MS), Some(unit(id, 16).as_slice()));
            assert_eq!(index.vector(id, (id as Millis % 3 + 1) * DAY_MS), None);
        }
        index.insert(500, 0, &[1, 2]);
        assert_eq!(index.vector(500, 0).map(<[i8]>::len), Some(16));
    }

    #[test]
    fn a_small_segment_is_scanned_exactly() {
        let mut index = SegmentedIndex::new(DAY_MS, 16);
        for id in 0..2000 {
            index.insert(id, 0, &unit(id, 16));
        }
        let query = unit(123_456, 16);
        let mut all: Vec<(u64, f32)> = (0..2000).map(|id| (id, cosine_i8(&query, &unit(id, 16)).min(1.0))).collect();
        all.sort_by(best_first);
        all.truncate(15);
        assert_eq!(index.search(&query, 0, 0, 15), all);
    }

    #[test]
    fn scanned_segments_answer_as_one_exact_scan_with_ties_by_id() {
        let mut index = SegmentedIndex::new(DAY_MS, 16);
        let mut points: Vec<(u64, Vec<i8>)> = Vec::new();
        for id in 0..2000u64 {
            // 30 copies of one vector, more than k, spread over the segments.
            let vector = if id % 67 == 3 { unit(5, 16) } else { unit(id, 16) };
            index.insert(id, (id as Millis % 7) * DAY_MS, &vector);
            points.push((id, vector));
        }
        for (query, k) in [(unit(5, 16), 20), (unit(99_999, 16), 20), (unit(99_999, 16), 1)] {
            let mut all: Vec<(u64, f32)> = points.iter().map(|(id, v)| (*id, cosine_i8(&query, v).min(1.0))).collect();
            all.sort_by(best_first);
            all.truncate(k);
            assert_eq!(index.search(&query, 0, 6 * DAY_MS, k), all);
        }
        assert!(index.search(&unit(5, 16), 0, 6 * DAY_MS, 0).is_empty());
    }

    #[test]
    fn a_segment_grows_its_graph_a_little_at_every_insert_into_the_graph_built_in_one_go() {
        let n = GRAPHED.coded as u64 + 300;
        let mut index = SegmentedIndex::with_limits(DAY_MS, 8, GRAPHED);
        let mut before = 0;
        for id in 0..n {
            index.insert(id, 0, &unit(id, 8));
            let segment = index.segments.values().next().expect("one segment");
            let graphed = *segment.graphed.lock().expect("graphed");
            assert!(graphed <= before + 2, "at most two graph inserts per insert");
            assert_eq!(graphed, GRAPHED.graphed_points(segment.ids.len()));
            before = graphed;
            if segment.ids.len() == GRAPHED.coded / 2 {
                assert!(segment.graph.get().is_none(), "no graph while the segment is small");
            }
            if segment.ids.len() == GRAPHED.coded + 1 {
                assert_eq!(graphed, segment.ids.len(), "every point is in the graph once it is searched");
            }
        }
        let whole = Hnsw::new(MAX_CONNECTIONS, GRAPHED.coded, MAX_LAYERS, EF_CONSTRUCTION, UnitCosine);
        for id in 0..n {
            whole.insert_slice((unit(id, 8).as_slice(), id as usize));
        }
        for probe in [5u64, 1234, n - 1] {
            assert_eq!(index.search(&unit(probe, 8), 0, 0, 1)[0].0, probe);
            let query = unit(probe + 50_000, 8);
            let mut one_go: Vec<(u64, f32)> =
                whole.search(&query, 10, EF_SEARCH).into_iter().map(|n| (n.d_id as u64, 1.0 - n.distance)).collect();
            one_go.sort_by(best_first);
            assert_eq!(index.search(&query, 0, 0, 10), one_go);
        }
    }
}
