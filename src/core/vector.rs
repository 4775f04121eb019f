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
    dot_i8(a, b) as f32 / SCALE_SQUARED
}

/// The integer dot product of two int8 vectors (over the shorter length).
/// Exact, so every implementation gives the same number: the AVX2 kernel
/// where the CPU has it, the portable loop elsewhere. Vectors of up to
/// 100,000 dimensions of ±127 stay inside `i32`.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return simd::dot_i8_avx2(a, b);
    }
    dot_i8_portable(a, b)
}

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// The AVX2 kernel. The crate's only unsafe code: intrinsics that read the
/// slices through pointers, and the call into a function compiled for AVX2
/// after the CPU was checked for it.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_cvtepi8_epi16, _mm256_madd_epi16,
        _mm256_setzero_si256, _mm256_storeu_si256,
    };

    /// The dot product; the caller has checked that the CPU supports AVX2.
    pub(super) fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: only called after `is_x86_feature_detected!("avx2")`.
        unsafe { dot(a, b) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot(a: &[i8], b: &[i8]) -> i32 {
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
        lanes.iter().sum::<i32>() + super::dot_i8_portable(&a[i..n], &b[i..n])
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

    /// The dimension.
    pub fn values_len(&self) -> usize {
        self.values.len()
    }

    /// The dot product of the sum with `v`, in floats: the sum's exact
    /// integers converted and multiplied in a fixed order, eight lanes at a
    /// time (so that the compiler vectorises it).
    pub fn dot(&self, v: &[i8]) -> f32 {
        let mut lanes = [0.0f32; 8];
        let (sums, values) = (self.values.chunks_exact(8), v.chunks_exact(8));
        let tail: f32 = sums.remainder().iter().zip(values.remainder()).map(|(&s, &x)| s as f32 * f32::from(x)).sum();
        for (s, x) in sums.zip(values) {
            for i in 0..8 {
                lanes[i] += s[i] as f32 * f32::from(x[i]);
            }
        }
        lanes.iter().sum::<f32>() + tail
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
        for len in [0usize, 1, 15, 16, 17, 255, 768, 1000] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37 + 11) % 255) as i32 as i8).collect();
            let b: Vec<i8> = (0..len).map(|i| ((i * 91 + 200) % 255) as i32 as i8).collect();
            assert_eq!(dot_i8(&a, &b), dot_i8_portable(&a, &b), "{len}");
            let extremes = vec![-128i8; len];
            assert_eq!(dot_i8(&extremes, &extremes), dot_i8_portable(&extremes, &extremes), "{len}");
        }
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
