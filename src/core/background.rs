//! The namespace's background: what two unrelated headlines of this feed
//! have in common. In a feed where every headline says "Japan", the vectors
//! share a direction, and two unrelated headlines score high; the story and
//! merge decisions judge similarity after taking that shared direction out.
//!
//! The background is the mean of the stored headlines' vectors (one per
//! wording: exact duplicates do not count), shrunk towards zero while the
//! namespace is young (`prior` headlines of no direction). Similarities are
//! then cosines of the vectors less that mean: for unit vectors `a` and `b`
//! and a mean `m`,
//!
//! ```text
//! (a - m)·(b - m) = a·b - a·m - b·m + m·m,   |a - m|² = 1 - 2 a·m + m·m
//! ```
//!
//! so a story's mean similarity and two stories' average linkage come from
//! the sums the stories keep, with no vector stored twice. The sums are
//! exact integers and the products are taken in a fixed order, so a
//! reloaded namespace, which holds the same headlines, judges the same way.

use super::vector::{SCALE, VectorSum};

/// The stored headlines' vectors, summed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Background {
    sum: Vec<i64>,
    count: u64,
}

impl Background {
    /// No headlines, `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self { sum: vec![0; dim], count: 0 }
    }

    /// Counts a headline's vector.
    pub fn add(&mut self, v: &[i8]) {
        for (s, &x) in self.sum.iter_mut().zip(v) {
            *s += i64::from(x);
        }
        self.count += 1;
    }

    /// Forgets a vector counted before.
    pub fn remove(&mut self, v: &[i8]) {
        for (s, &x) in self.sum.iter_mut().zip(v) {
            *s -= i64::from(x);
        }
        self.count = self.count.saturating_sub(1);
    }

    /// The frame to judge in now, with the mean shrunk by `prior` headlines
    /// of no direction and taken out with `weight` (0 judges raw cosines).
    pub fn frame(&self, prior: f32, weight: f32) -> Frame<'_> {
        let weight = f64::from(weight.clamp(0.0, 1.0));
        let shrunk = (self.count as f64 + f64::from(prior.max(0.0))).max(1.0);
        let factor = weight / (shrunk * f64::from(SCALE));
        let squared: f64 = if factor == 0.0 { 0.0 } else { self.sum.iter().map(|&s| (s as f64) * (s as f64)).sum() };
        Frame { sum: &self.sum, factor, mean_sq: squared * factor * factor }
    }
}

/// The background at one moment: its mean, ready to take out of cosines.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    sum: &'a [i64],
    /// The mean is `factor * sum`, in cosine units.
    factor: f64,
    /// The squared length of the mean: what two headlines drawn at random
    /// from the namespace score, on average.
    mean_sq: f64,
}

impl Frame<'_> {
    /// The background's sum times `values`, in a fixed order.
    fn dot(&self, values: impl Iterator<Item = f64>) -> f64 {
        self.sum.iter().zip(values).map(|(&s, x)| s as f64 * x).sum()
    }

    /// The cosine of a unit vector with the mean's vector (`v·m`).
    pub fn offset(&self, v: &[i8]) -> f32 {
        if self.factor == 0.0 {
            return 0.0;
        }
        (self.dot(v.iter().map(|&x| f64::from(x))) * self.factor / f64::from(SCALE)) as f32
    }

    /// The mean over a sum's vectors of their products with the mean
    /// (`mean(x)·m`).
    pub fn offset_of_sum(&self, sum: &VectorSum) -> f32 {
        if self.factor == 0.0 {
            return 0.0;
        }
        let dot = self.dot(sum.values().iter().map(|&x| f64::from(x)));
        (dot * self.factor / (f64::from(SCALE) * sum.count().max(1) as f64)) as f32
    }

    /// The mean cosine of vectors less the mean, given their raw mean
    /// cosine and each side's mean offset ([`Frame::offset`]).
    pub fn relative(&self, raw: f32, a: f32, b: f32) -> f32 {
        if self.factor == 0.0 {
            return raw;
        }
        let m = self.mean_sq;
        let (a, b) = (f64::from(a), f64::from(b));
        let length = ((1.0 - 2.0 * a + m).max(1e-6) * (1.0 - 2.0 * b + m).max(1e-6)).sqrt();
        ((f64::from(raw) - a - b + m) / length) as f32
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::vector::{QuantizedVector, cosine_i8};

    fn unit(v: &[f32]) -> QuantizedVector {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        QuantizedVector::new(&v.iter().map(|x| x / norm).collect::<Vec<_>>())
    }

    #[test]
    fn a_shared_direction_is_no_evidence() {
        // Every headline shares the first axis; two of them share the second.
        let feed: Vec<QuantizedVector> =
            [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.1]]
                .iter()
                .map(|v| unit(v))
                .collect();
        let mut background = Background::new(4);
        feed.iter().for_each(|v| background.add(v.values()));
        let frame = background.frame(0.0, 1.0);
        let score = |a: &QuantizedVector, b: &QuantizedVector| {
            frame.relative(cosine_i8(a.values(), b.values()), frame.offset(a.values()), frame.offset(b.values()))
        };
        let (unrelated, related) = (score(&feed[1], &feed[2]), score(&feed[0], &feed[3]));
        assert!(cosine_i8(feed[1].values(), feed[2].values()) > 0.4, "raw, unrelated headlines look close");
        assert!(unrelated < 0.0, "{unrelated}");
        assert!(related > 0.5, "{related}");
        let raw = background.frame(0.0, 0.0);
        assert_eq!(raw.relative(0.42, raw.offset(feed[1].values()), 0.0), 0.42, "weight 0 judges raw cosines");
    }

    #[test]
    fn the_mean_of_a_story_is_taken_out_like_each_member() {
        let members = [unit(&[1.0, 0.5, 0.0]), unit(&[1.0, 0.0, 0.5]), unit(&[0.2, 1.0, 1.0])];
        let mut background = Background::new(3);
        let mut sum = VectorSum::new(3);
        for v in &members {
            background.add(v.values());
            sum.add(v.values());
        }
        let frame = background.frame(2.0, 1.0);
        let each: f32 = members.iter().map(|v| frame.offset(v.values())).sum::<f32>() / 3.0;
        assert!((frame.offset_of_sum(&sum) - each).abs() < 1e-5);
        background.remove(members[2].values());
        background.remove(members[1].values());
        background.remove(members[0].values());
        assert_eq!(background, Background::new(3), "removing undoes adding");
    }
}
