//! The vectors the engine stores, indexes and compares: unit vectors in 8 bits
//! per dimension with one fixed scale, and exact integer sums of them.
//!
//! A component `x` is stored as `round(x * SCALE)`, clamped to ±127; the
//! cosine of two vectors is their integer dot product divided by `SCALE²`.
//! Integer arithmetic makes every comparison and every story sum exact and
//! independent of the order of the additions, so state rebuilt after a
//! restart has the same numbers, and the index moves a quarter of the bytes
//! that floats would.

/// Quantization scale: a unit vector's components are within ±1, so 127
/// never clips. (A finer scale measured no better on the UCI set.)
pub const SCALE: f32 = 127.0;
const SCALE_SQUARED: f32 = SCALE * SCALE;

/// A unit vector, quantized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedVector {
    values: Box<[i8]>,
}

impl QuantizedVector {
    /// Quantizes a unit vector.
    pub fn new(v: &[f32]) -> Self {
        // The clamp keeps the value in the int8 range before the cast.
        let values = v.iter().map(|x| (x * SCALE).round().clamp(-127.0, 127.0) as i8).collect();
        Self { values }
    }

    /// A vector from its stored values.
    pub fn from_values(values: Box<[i8]>) -> Self {
        Self { values }
    }

    /// The quantized values.
    pub fn values(&self) -> &[i8] {
        &self.values
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.values.len()
    }
}

/// The cosine of two quantized unit vectors given as values.
pub fn cosine_i8(a: &[i8], b: &[i8]) -> f32 {
    cosine_of_dot(dot_i8(a, b))
}

/// The dot product whose cosine is 1 ([`cosine_of_dot`]); quantization can
/// give higher ones.
pub const DOT_OF_COSINE_ONE: i32 = SCALE_SQUARED as i32;

/// The cosine of two quantized unit vectors, given their dot product.
pub fn cosine_of_dot(dot: i32) -> f32 {
    dot as f32 / SCALE_SQUARED
}

/// The integer dot product of two int8 vectors (over the shorter length).
/// Exact, so every implementation gives the same number: the AVX-512 VNNI
/// or AVX2 kernel where the CPU has it (chosen once), the portable loop
/// elsewhere. Vectors of up to 100,000 dimensions of ±127 stay inside
/// `i32`.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    (KERNELS.dot)(a, b)
}

/// Appends to `dots` the dot products of `query` with each row of `rows`:
/// consecutive vectors of `query.len()` values (a partial last row is
/// ignored), in order. The same numbers as [`dot_i8`] row by row, computed
/// several rows at a time.
pub fn dots_i8(query: &[i8], rows: &[i8], dots: &mut Vec<i32>) {
    if !query.is_empty() {
        dots.reserve(rows.len() / query.len());
        (KERNELS.rows)(query, rows, dots);
    }
}

/// Appends to `dots` the dot products of `query` with each of `rows`, in
/// order: the same numbers as [`dot_i8`] row by row, computed several rows
/// at a time (rows of another length than the query's are taken one by
/// one).
pub fn dots_i8_of(query: &[i8], rows: &[&[i8]], dots: &mut Vec<i32>) {
    dots.reserve(rows.len());
    (KERNELS.chosen_rows)(query, rows, dots);
}

/// Words of a [`Code`].
pub const CODE_WORDS: usize = 4;
/// Bits of a [`Code`].
pub const CODE_BITS: usize = CODE_WORDS * 64;
/// A sign code: one bit for each of [`CODE_BITS`] hyperplanes, set when a
/// vector lies on its positive side. The share of bits two codes differ in
/// estimates the angle between their vectors over pi (the index's coarse
/// pass reads codes rather than vectors).
pub type Code = [u64; CODE_WORDS];

/// Appends to `out` the Hamming distance (the bits that differ) of `query`
/// to each of `codes`, in order.
pub fn hamming_distances(query: &Code, codes: &[Code], out: &mut Vec<u16>) {
    out.reserve(codes.len());
    (KERNELS.hamming)(query, codes, out);
}

/// The bits that differ between two codes: at most [`CODE_BITS`].
#[inline]
fn hamming(a: &Code, b: &Code) -> u16 {
    let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
    u16::try_from(bits).unwrap_or(u16::MAX)
}

/// One implementation of the products.
#[derive(Clone, Copy)]
struct Kernels {
    #[cfg(test)]
    name: &'static str,
    dot: fn(&[i8], &[i8]) -> i32,
    /// Appends the dot product of the query (first) with each whole row of
    /// the second argument; the query is not empty.
    rows: fn(&[i8], &[i8], &mut Vec<i32>),
    /// [`dots_i8_of`], the room reserved.
    chosen_rows: fn(&[i8], &[&[i8]], &mut Vec<i32>),
    /// [`VectorSum::dot`]: every implementation makes the same float
    /// operations in the same order, so the results are bit for bit equal.
    sum_dot: fn(&[i32], &[i8]) -> f32,
    /// [`hamming_distances`], the room reserved.
    hamming: fn(&Code, &[Code], &mut Vec<u16>),
}

static KERNELS: std::sync::LazyLock<Kernels> =
    std::sync::LazyLock::new(|| available_kernels().last().copied().unwrap_or(PORTABLE));

const PORTABLE: Kernels = Kernels {
    #[cfg(test)]
    name: "portable",
    dot: dot_i8_portable,
    rows: |query, rows, out| out.extend(rows.chunks_exact(query.len()).map(|row| dot_i8_portable(query, row))),
    chosen_rows: |query, rows, out| out.extend(rows.iter().map(|row| dot_i8_portable(query, row))),
    sum_dot: sum_dot_portable,
    hamming: |query, codes, out| out.extend(codes.iter().map(|code| hamming(query, code))),
};

/// The kernels this CPU can run, slowest first.
fn available_kernels() -> Vec<Kernels> {
    let mut found = vec![PORTABLE];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt") {
            found.push(simd::AVX2);
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            found.push(simd::VNNI);
            if std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
                found.push(simd::VPOPCNTDQ);
            }
        }
    }
    found
}

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// Eight lanes of float products of the integer sums and the values, each
/// lane summed in order, then the lanes in order, then the remainder.
fn sum_dot_portable(sums: &[i32], v: &[i8]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (sums, values) = (sums.chunks_exact(8), v.chunks_exact(8));
    let tail = sum_dot_tail(sums.remainder(), values.remainder());
    for (s, x) in sums.zip(values) {
        for ((lane, &s), &x) in lanes.iter_mut().zip(s).zip(x) {
            *lane += s as f32 * f32::from(x);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn sum_dot_tail(sums: &[i32], v: &[i8]) -> f32 {
    sums.iter().zip(v).map(|(&s, &x)| s as f32 * f32::from(x)).sum()
}

/// The SIMD kernels. The crate's only unsafe code: intrinsics that read the
/// slices through pointers, and the calls into functions compiled for
/// instruction sets after the CPU was checked for them.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m128i, __m256i, __m512i, _mm_loadl_epi64, _mm_loadu_si128, _mm_storeu_si128, _mm256_add_epi32, _mm256_add_ps,
        _mm256_cvtepi8_epi16, _mm256_cvtepi8_epi32, _mm256_cvtepi32_ps, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_mul_ps, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_storeu_ps, _mm256_storeu_si256,
        _mm512_add_epi64, _mm512_cvtepi64_epi16, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_mask_blend_epi64,
        _mm512_maskz_loadu_epi8, _mm512_permutexvar_epi64, _mm512_popcnt_epi64, _mm512_reduce_add_epi32,
        _mm512_set_epi64, _mm512_set1_epi8, _mm512_setzero_si512, _mm512_shuffle_epi32, _mm512_shuffle_i64x2,
        _mm512_sub_epi32, _mm512_xor_si512,
    };

    use super::{Code, Kernels};

    /// AVX2: sixteen products at a time, widened to 16 bits.
    pub(super) const AVX2: Kernels = Kernels {
        #[cfg(test)]
        name: "avx2",
        dot: dot_i8_avx2,
        rows: |query, rows, out| out.extend(rows.chunks_exact(query.len()).map(|row| dot_i8_avx2(query, row))),
        chosen_rows: |query, rows, out| out.extend(rows.iter().map(|row| dot_i8_avx2(query, row))),
        sum_dot: sum_dot_avx2,
        hamming: hamming_popcnt,
    };

    /// AVX-512 VNNI: 64 products per instruction.
    pub(super) const VNNI: Kernels = Kernels {
        #[cfg(test)]
        name: "avx512vnni",
        dot: dot_i8_vnni,
        rows: rows_i8_vnni,
        chosen_rows: chosen_rows_i8_vnni,
        sum_dot: sum_dot_avx2,
        hamming: hamming_popcnt,
    };

    /// AVX-512 VNNI, and the Hamming distances of eight codes at a time.
    pub(super) const VPOPCNTDQ: Kernels = Kernels {
        #[cfg(test)]
        name: "avx512vpopcntdq",
        hamming: hamming_vpopcntdq,
        ..VNNI
    };

    /// Only chosen after the CPU was found to support AVX-512 F and
    /// VPOPCNTDQ.
    fn hamming_vpopcntdq(query: &Code, codes: &[Code], out: &mut Vec<u16>) {
        // SAFETY: see above.
        unsafe { hamming_eights(query, codes, out) }
    }

    /// Eight codes (four registers of two) at a time: each register's bits
    /// that differ from the query are counted per word, the four words of
    /// each code summed into every lane of its half, the halves' lanes
    /// blended into one register and narrowed to 16 bits; the rest one by
    /// one.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    unsafe fn hamming_eights(query: &Code, codes: &[Code], out: &mut Vec<u16>) {
        let q = _mm512_set_epi64(
            query[3] as i64,
            query[2] as i64,
            query[1] as i64,
            query[0] as i64,
            query[3] as i64,
            query[2] as i64,
            query[1] as i64,
            query[0] as i64,
        );
        // The blended lanes hold codes 0, 2, 4, 6, 1, 3, 5, 7.
        let order = _mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0);
        let mut eights = codes.chunks_exact(8);
        for eight in eights.by_ref() {
            let sums: [__m512i; 4] = std::array::from_fn(|pair| {
                // SAFETY: `eight` holds eight codes of 32 bytes, so pair
                // `pair` is 64 readable bytes.
                let two = unsafe { _mm512_loadu_si512(eight.as_ptr().add(2 * pair).cast()) };
                let words = _mm512_popcnt_epi64(_mm512_xor_si512(two, q));
                let halves = _mm512_add_epi64(words, _mm512_shuffle_epi32::<0b0100_1110>(words));
                _mm512_add_epi64(halves, _mm512_shuffle_i64x2::<0b1011_0001>(halves, halves))
            });
            let [a, b, c, d] = sums;
            let blended = _mm512_mask_blend_epi64(
                0b1000_1000,
                _mm512_mask_blend_epi64(0b0100_0100, _mm512_mask_blend_epi64(0b0010_0010, a, b), c),
                d,
            );
            let distances = _mm512_cvtepi64_epi16(_mm512_permutexvar_epi64(order, blended));
            let mut lanes = [0u16; 8];
            // SAFETY: `lanes` is 16 writable bytes.
            unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), distances) };
            out.extend_from_slice(&lanes);
        }
        out.extend(eights.remainder().iter().map(|code| super::hamming(query, code)));
    }

    /// Only chosen after the CPU was found to support POPCNT.
    fn hamming_popcnt(query: &Code, codes: &[Code], out: &mut Vec<u16>) {
        // SAFETY: see above.
        unsafe { hamming_with_popcnt(query, codes, out) }
    }

    /// The portable count, compiled to one instruction per word.
    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_with_popcnt(query: &Code, codes: &[Code], out: &mut Vec<u16>) {
        out.extend(codes.iter().map(|code| super::hamming(query, code)));
    }

    /// Only chosen after the CPU was found to support AVX2.
    fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: see above.
        unsafe { dot_avx2(a, b) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: `i + 16 <= n` keeps both 16-byte loads inside the slices;
            // unaligned loads accept any address.
            let (va, vb) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(i).cast::<__m128i>()),
                    _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>()),
                )
            };
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(va), _mm256_cvtepi8_epi16(vb)));
            i += 16;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes, the size of the store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), acc) };
        lanes.iter().sum::<i32>()
            + super::dot_i8_portable(a.get(i..n).unwrap_or_default(), b.get(i..n).unwrap_or_default())
    }

    /// Only chosen after the CPU was found to support AVX2.
    fn sum_dot_avx2(sums: &[i32], v: &[i8]) -> f32 {
        // SAFETY: see above.
        unsafe { sum_dot_lanes(sums, v) }
    }

    /// The portable loop's eight lanes in one register: the same
    /// conversions, and a multiply then an add (not fused), in the same
    /// order.
    #[target_feature(enable = "avx2")]
    unsafe fn sum_dot_lanes(sums: &[i32], v: &[i8]) -> f32 {
        let n = sums.len().min(v.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n` keeps the 32-byte load of sums and the
            // 8-byte load of values inside their slices.
            let (s, x) = unsafe {
                (
                    _mm256_loadu_si256(sums.as_ptr().add(i).cast::<__m256i>()),
                    _mm_loadl_epi64(v.as_ptr().add(i).cast::<__m128i>()),
                )
            };
            let product = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)));
            acc = _mm256_add_ps(acc, product);
            i += 8;
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is 32 bytes, the size of the store.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes.iter().sum::<f32>()
            + super::sum_dot_tail(sums.get(i..n).unwrap_or_default(), v.get(i..n).unwrap_or_default())
    }

    /// Only chosen after the CPU was found to support AVX-512 F, BW and
    /// VNNI.
    fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: see above.
        unsafe { dot_vnni(a, b) }
    }

    /// Only chosen after the CPU was found to support AVX-512 F, BW and
    /// VNNI.
    fn rows_i8_vnni(query: &[i8], rows: &[i8], out: &mut Vec<i32>) {
        // SAFETY: see above.
        unsafe { rows_vnni(query, rows, out) }
    }

    /// The mask of the bytes of the 64-byte chunk at `offset` that lie below
    /// `len`.
    fn chunk_mask(offset: usize, len: usize) -> u64 {
        match len - offset {
            rest if rest >= 64 => u64::MAX,
            rest => (1u64 << rest) - 1,
        }
    }

    /// `vpdpbusd` multiplies unsigned bytes by signed ones, so `a` is
    /// shifted to unsigned (`a + 128`, an XOR of the sign bit) and `128 * b`
    /// taken off again: exact in 32-bit lanes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_vnni(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut shifted = _mm512_setzero_si512();
        let mut offset = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let mask = chunk_mask(i, n);
            // SAFETY: the mask enables only the bytes below `n`, inside both
            // slices; masked-off bytes are neither read nor faulted on.
            let (va, vb) = unsafe {
                (_mm512_maskz_loadu_epi8(mask, a.as_ptr().add(i)), _mm512_maskz_loadu_epi8(mask, b.as_ptr().add(i)))
            };
            shifted = _mm512_dpbusd_epi32(shifted, _mm512_xor_si512(va, flip), vb);
            offset = _mm512_dpbusd_epi32(offset, flip, vb);
            i += 64;
        }
        _mm512_reduce_add_epi32(_mm512_sub_epi32(shifted, offset))
    }

    /// The rows are shifted to unsigned as they are read and multiplied by
    /// the signed query, four rows per pass over the query; `128 * sum(query)`
    /// is taken off each result.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_vnni(query: &[i8], rows: &[i8], out: &mut Vec<i32>) {
        let dim = query.len();
        let count = rows.len() / dim;
        let correction = 128 * query.iter().map(|&x| i32::from(x)).sum::<i32>();
        let mut row = 0;
        while row + 4 <= count {
            // SAFETY: rows `row..row + 4` are whole rows of `rows`.
            let dots = unsafe { block::<4>(query, std::array::from_fn(|r| rows.as_ptr().add((row + r) * dim))) };
            out.extend(dots.map(|d| d - correction));
            row += 4;
        }
        while row < count {
            // SAFETY: row `row` is a whole row of `rows`.
            let [dot] = unsafe { block::<1>(query, [rows.as_ptr().add(row * dim)]) };
            out.push(dot - correction);
            row += 1;
        }
    }

    /// Only chosen after the CPU was found to support AVX-512 F, BW and
    /// VNNI.
    fn chosen_rows_i8_vnni(query: &[i8], rows: &[&[i8]], out: &mut Vec<i32>) {
        // SAFETY: see above.
        unsafe { chosen_rows_vnni(query, rows, out) }
    }

    /// [`rows_vnni`] on rows anywhere, four at a time; a row of another
    /// length than the query's goes through [`dot_vnni`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn chosen_rows_vnni(query: &[i8], rows: &[&[i8]], out: &mut Vec<i32>) {
        let dim = query.len();
        let correction = 128 * query.iter().map(|&x| i32::from(x)).sum::<i32>();
        let mut blocks = rows.chunks_exact(4);
        for four in blocks.by_ref() {
            if let [a, b, c, d] = four
                && [a, b, c, d].iter().all(|row| row.len() == dim)
            {
                // SAFETY: each of the four rows holds `dim` values.
                let dots = unsafe { block::<4>(query, [a.as_ptr(), b.as_ptr(), c.as_ptr(), d.as_ptr()]) };
                out.extend(dots.map(|d| d - correction));
            } else {
                // SAFETY: the CPU supports what `dot_vnni` needs.
                out.extend(four.iter().map(|row| unsafe { dot_vnni(query, row) }));
            }
        }
        // SAFETY: the CPU supports what `dot_vnni` needs.
        out.extend(blocks.remainder().iter().map(|row| unsafe { dot_vnni(query, row) }));
    }

    /// The dot products, before the correction, of the query with the `R`
    /// rows of `query.len()` values starting at `rows`.
    ///
    /// # Safety
    /// `query.len()` bytes from each of `rows` must be readable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn block<const R: usize>(query: &[i8], rows: [*const i8; R]) -> [i32; R] {
        let dim = query.len();
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc: [__m512i; R] = [_mm512_setzero_si512(); R];
        let mut offset = 0;
        while offset < dim {
            let mask = chunk_mask(offset, dim);
            // SAFETY: the mask keeps every load inside the query and inside
            // its row, which the caller guarantees readable.
            let q = unsafe { _mm512_maskz_loadu_epi8(mask, query.as_ptr().add(offset)) };
            for (row, acc) in rows.iter().zip(acc.iter_mut()) {
                let v = unsafe { _mm512_maskz_loadu_epi8(mask, row.add(offset)) };
                *acc = _mm512_dpbusd_epi32(*acc, _mm512_xor_si512(v, flip), q);
            }
            offset += 64;
        }
        acc.map(|a| _mm512_reduce_add_epi32(a))
    }
}

/// The exact sum of some quantized vectors, and their count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSum {
    values: Vec<i32>,
    count: usize,
}

impl VectorSum {
    /// An empty sum of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self { values: vec![0; dim], count: 0 }
    }

    /// Adds a vector.
    pub fn add(&mut self, v: &[i8]) {
        for (s, &x) in self.values.iter_mut().zip(v) {
            *s += i32::from(x);
        }
        self.count += 1;
    }

    /// Adds every vector of another sum.
    pub fn absorb(&mut self, other: &VectorSum) {
        for (s, &x) in self.values.iter_mut().zip(&other.values) {
            *s += x;
        }
        self.count += other.count;
    }

    /// The summed values.
    pub fn values(&self) -> &[i32] {
        &self.values
    }

    /// How many vectors are summed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The dimension.
    pub fn values_len(&self) -> usize {
        self.values.len()
    }

    /// The dot product of the sum with `v`, in floats: the sum's exact
    /// integers converted and multiplied in a fixed order, eight lanes at a
    /// time, so that every kernel gives the same bits.
    pub fn dot(&self, v: &[i8]) -> f32 {
        (KERNELS.sum_dot)(&self.values, v)
    }

    /// The Euclidean length of the sum, in quantized units.
    pub fn norm(&self) -> f32 {
        (self.values.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()) as f32
    }

    /// The mean cosine of `v` with the summed vectors.
    pub fn mean_similarity(&self, v: &[i8]) -> f32 {
        self.dot(v) / (self.count.max(1) as f32 * SCALE_SQUARED)
    }

    /// The cosine of `v` with the direction of the sum, given the sum's
    /// [`VectorSum::norm`] (computed once by callers that ask many times).
    pub fn cosine_with_norm(&self, v: &[i8], norm: f32) -> f32 {
        if norm == 0.0 { 0.0 } else { self.dot(v) / (norm * SCALE) }
    }

    /// The mean cosine over all pairs of one vector of each sum (average
    /// linkage).
    pub fn linkage(&self, other: &VectorSum) -> f32 {
        let dot: i64 = self.values.iter().zip(&other.values).map(|(&a, &b)| i64::from(a) * i64::from(b)).sum();
        let pairs = (self.count * other.count).max(1) as f64;
        (dot as f64 / (pairs * f64::from(SCALE_SQUARED))) as f32
    }

    /// The unit direction of the mean, quantized (for searching the index).
    pub fn direction(&self) -> QuantizedVector {
        let norm = self.norm();
        if norm == 0.0 {
            return QuantizedVector { values: vec![0; self.values.len()].into() };
        }
        let unit: Vec<f32> = self.values.iter().map(|&x| x as f32 / norm).collect();
        QuantizedVector::new(&unit)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::embed::normalize_l2;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize_l2(&mut v);
        v
    }

    #[test]
    fn every_dot_product_kernel_agrees() {
        let values = |len: usize, step: usize, start: usize| -> Vec<i8> {
            (0..len).map(|i| ((i * step + start) % 255) as i32 as i8).collect()
        };
        let compared: Vec<&str> = available_kernels().iter().map(|k| k.name).collect();
        let missing: Vec<&str> =
            ["portable", "avx2", "avx512vnni"].into_iter().filter(|name| !compared.contains(name)).collect();
        // Shown with --nocapture, and in the failure message below.
        println!("dot product kernels compared: {compared:?}; not on this CPU: {missing:?}");
        assert_eq!(KERNELS.name, compared.last().copied().unwrap_or("portable"), "the fastest kernel is the one used");
        for kernels in available_kernels() {
            let name = kernels.name;
            for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 255, 768, 1000] {
                let (a, b) = (values(len, 37, 11), values(len, 91, 200));
                assert_eq!((kernels.dot)(&a, &b), dot_i8_portable(&a, &b), "{name} {len}");
                assert_eq!((kernels.dot)(&a[..len / 2], &b), dot_i8_portable(&a[..len / 2], &b), "{name} {len}");
                for extreme in [-128i8, 127] {
                    let x = vec![extreme; len];
                    assert_eq!((kernels.dot)(&x, &b), dot_i8_portable(&x, &b), "{name} {len}");
                    assert_eq!((kernels.dot)(&x, &x), dot_i8_portable(&x, &x), "{name} {len}");
                }
            }
            for (dim, count) in [(1usize, 9usize), (16, 5), (64, 4), (100, 7), (768, 13)] {
                let query = values(dim, 53, 7);
                let mut rows = values(dim * count + dim / 2, 29, 3);
                rows[0] = -128;
                let mut dots = Vec::new();
                (kernels.rows)(&query, &rows, &mut dots);
                let expected: Vec<i32> = rows.chunks_exact(dim).map(|row| dot_i8_portable(&query, row)).collect();
                assert_eq!(dots, expected, "{name} rows of {dim}");
                let mut chosen: Vec<&[i8]> = rows.chunks_exact(dim).rev().collect();
                chosen.insert(1, &rows[..dim / 2]);
                let mut dots = Vec::new();
                (kernels.chosen_rows)(&query, &chosen, &mut dots);
                let expected: Vec<i32> = chosen.iter().map(|row| dot_i8_portable(&query, row)).collect();
                assert_eq!(dots, expected, "{name} chosen rows of {dim}");
            }
        }
        for kernels in available_kernels() {
            let name = kernels.name;
            for len in [0usize, 1, 7, 8, 9, 255, 640, 1000] {
                let v = values(len, 37, 11);
                for scale in [1i32, 1000, 1 << 20] {
                    let sums: Vec<i32> = values(len, 91, 200).iter().map(|&x| i32::from(x) * scale + 3).collect();
                    let (got, expected) = ((kernels.sum_dot)(&sums, &v), sum_dot_portable(&sums, &v));
                    assert_eq!(got.to_bits(), expected.to_bits(), "{name} {len} {scale}");
                }
            }
        }
        let codes: Vec<Code> = (0..37u64)
            .map(|i| [i.wrapping_mul(0x9E37_79B9_7F4A_7C15), !i, i << 40, u64::MAX.wrapping_shr(i as u32)])
            .collect();
        for kernels in available_kernels() {
            for query in [[0u64; CODE_WORDS], [u64::MAX; CODE_WORDS], codes[5]] {
                let mut got = Vec::new();
                (kernels.hamming)(&query, &codes, &mut got);
                let expected: Vec<u16> = codes.iter().map(|code| hamming(&query, code)).collect();
                assert_eq!(got, expected, "{} hamming", kernels.name);
            }
        }
        let mut distances = vec![9];
        hamming_distances(&[u64::MAX; CODE_WORDS], &[[0; CODE_WORDS], [u64::MAX, 1, 0, 0]], &mut distances);
        assert_eq!(distances, vec![9, CODE_BITS as u16, 191], "appended to what was there");
        assert_eq!(dot_i8(&[1, -2, 3], &[4, 5, -6]), -24);
        let mut dots = vec![5];
        dots_i8(&[127, 0], &[127, 0, 0, 127, 1], &mut dots);
        assert_eq!(dots, vec![5, 127 * 127, 0], "appended to what was there");
        dots_i8(&[], &[1, 2], &mut dots);
        assert_eq!(dots.len(), 3);
    }

    #[test]
    fn cosines_survive_quantization() {
        let a = unit(&[0.3, -0.2, 0.5, 0.1, 0.0, 0.4]);
        let b = unit(&[0.25, -0.1, 0.45, 0.2, 0.1, 0.3]);
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (qa, qb) = (QuantizedVector::new(&a), QuantizedVector::new(&b));
        let cos = |x: &QuantizedVector, y: &QuantizedVector| cosine_i8(x.values(), y.values());
        assert!((cos(&qa, &qb) - exact).abs() < 0.01, "{} vs {exact}", cos(&qa, &qb));
        assert!((cos(&qa, &qa) - 1.0).abs() < 0.01);
        assert_eq!(QuantizedVector::new(&[2.0, -2.0]).values(), &[127, -127]);
    }

    #[test]
    fn sums_are_exact_and_order_free() {
        let vs: Vec<QuantizedVector> =
            (0..5).map(|i| QuantizedVector::new(&unit(&[i as f32, 1.0, -(i as f32) * 0.5]))).collect();
        let mut forward = VectorSum::new(3);
        vs.iter().for_each(|v| forward.add(v.values()));
        let mut backward = VectorSum::new(3);
        vs.iter().rev().for_each(|v| backward.add(v.values()));
        assert_eq!(forward, backward);
        let mean = forward.mean_similarity(vs[0].values());
        let expected: f32 = vs.iter().map(|v| cosine_i8(vs[0].values(), v.values())).sum::<f32>() / 5.0;
        assert!((mean - expected).abs() < 1e-4);
    }

    #[test]
    fn linkage_is_the_mean_pairwise_cosine() {
        let vs: Vec<QuantizedVector> =
            (0..4).map(|i| QuantizedVector::new(&unit(&[1.0, i as f32 * 0.3, 0.2]))).collect();
        let (mut a, mut b) = (VectorSum::new(3), VectorSum::new(3));
        a.add(vs[0].values());
        a.add(vs[1].values());
        b.add(vs[2].values());
        b.add(vs[3].values());
        let cos = |x: &QuantizedVector, y: &QuantizedVector| cosine_i8(x.values(), y.values());
        let expected = (cos(&vs[0], &vs[2]) + cos(&vs[0], &vs[3]) + cos(&vs[1], &vs[2]) + cos(&vs[1], &vs[3])) / 4.0;
        assert!((a.linkage(&b) - expected).abs() < 1e-4);
        assert!(cos(&a.direction(), &vs[0]) > 0.9);
    }
}
