//! The lexical embedder: words, word pairs and character n-grams, weighted
//! by inverse document frequency and hashed (with a sign) into a dense
//! vector. It needs no model files.

use super::{Embedder, TermStats, normalize_l2};
use crate::core::normalize::{Normalized, stable_hash};

/// Hashed bag of words, bigrams and character n-grams.
#[derive(Debug, Clone)]
pub struct LexicalEmbedder {
    dim: usize,
}

/// Relative weight of a word pair against its words.
const BIGRAM_WEIGHT: f32 = 0.5;
/// Relative weight of all of a word's character n-grams together.
const CHARGRAM_WEIGHT: f32 = 0.7;
/// Character n-gram length.
const CHARGRAM: usize = 4;

impl LexicalEmbedder {
    /// A lexical embedder of dimension `dim` (at least 8).
    pub fn new(dim: usize) -> Self {
        Self { dim: dim.max(8) }
    }

    fn add(&self, out: &mut [f32], feature: u64, weight: f32) {
        // The modulo keeps the index inside `out`; the top bit picks the sign.
        let index = (feature % self.dim as u64) as usize;
        let sign = if feature >> 63 == 0 { 1.0 } else { -1.0 };
        if let Some(slot) = out.get_mut(index) {
            *slot += sign * weight;
        }
    }
}

impl Embedder for LexicalEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &Normalized, terms: &TermStats, out: &mut [f32]) {
        out.fill(0.0);
        let words: Vec<&str> = text.tokens().collect();
        let weights: Vec<f32> = words.iter().map(|w| terms.weight(w)).collect();
        let mut gram = String::new();
        for (i, (word, &weight)) in words.iter().zip(&weights).enumerate() {
            self.add(out, stable_hash(word.as_bytes()), weight);
            if let (Some(next), Some(&next_weight)) = (words.get(i + 1), weights.get(i + 1)) {
                let pair = stable_hash(format!("{word} {next}").as_bytes());
                self.add(out, pair, BIGRAM_WEIGHT * 0.5 * (weight + next_weight));
            }
            let padded: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
            if padded.len() > CHARGRAM + 1 {
                let grams = padded.windows(CHARGRAM);
                let each = CHARGRAM_WEIGHT * weight / grams.len() as f32;
                for window in grams {
                    gram.clear();
                    gram.push('#');
                    gram.extend(window);
                    self.add(out, stable_hash(gram.as_bytes()), each);
                }
            }
        }
        normalize_l2(out);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::embed::dot as cosine;
    use crate::core::normalize::normalize;

    fn vector(text: &str) -> Vec<f32> {
        let embedder = LexicalEmbedder::new(512);
        let mut out = vec![0.0; embedder.dim()];
        embedder.embed(&normalize(text, None), &TermStats::default(), &mut out);
        out
    }

    #[test]
    fn light_edits_stay_close_and_other_stories_do_not() {
        let a = vector("PKK says withdrawing all forces from Turkey to northern Iraq");
        let b = vector("Kurdish PKK says withdrawing all forces from Turkey to north Iraq");
        let c = vector("5,000-year-old temple unearthed in Peru");
        assert!(cosine(&a, &b) > 0.8, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.2, "{}", cosine(&a, &c));
    }

    #[test]
    fn vectors_are_unit_length_or_zero() {
        let v = vector("Fed raises rates");
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-4);
        assert!(vector("").iter().all(|&x| x == 0.0));
    }
}
