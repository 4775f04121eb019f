//! Embedders: a normalised headline in, an L2-normalised vector out.
//!
//! Three kinds sit behind one trait: a lexical one (hashed word and character
//! n-grams), a semantic static model (token vectors, pooled) and a mix of the
//! two. All of them weight words by the namespace's [`TermStats`], an online
//! inverse document frequency, so that words every headline of a feed shares
//! ("iraq" in an Iraq feed) count for little.

mod cases;
mod lexical;
mod static_model;

pub use cases::CaseStats;
pub use lexical::LexicalEmbedder;
pub use static_model::{SemanticEmbedder, StaticModel, StaticModelError};

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::normalize::{Normalized, stable_hash};
use crate::core::settings::{EmbedderKind, Settings};

/// The metric (a histogram, labelled by embedder) of seconds spent
/// embedding one headline.
pub const EMBED_SECONDS: &str = "headline_dedup_embed_seconds";

/// Turns a normalised headline into a unit vector of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// The vector dimension.
    fn dim(&self) -> usize;
    /// Writes the L2-normalised vector of `text` into `out` (`out.len() ==
    /// self.dim()`). A text with no known features gives the zero vector.
    fn embed(&self, text: &Normalized, terms: &TermStats, out: &mut [f32]);
}

/// The embedder that `settings` ask for, on top of the shared static model.
pub fn embedder_for(settings: &Settings, model: &Arc<StaticModel>) -> Arc<dyn Embedder> {
    let semantic = || SemanticEmbedder::new(Arc::clone(model), settings.idf_power);
    let lexical = || LexicalEmbedder::new(settings.lexical_dim);
    match settings.embedder {
        EmbedderKind::Lexical => Arc::new(lexical()),
        EmbedderKind::Semantic => Arc::new(semantic()),
        EmbedderKind::Mixed => Arc::new(MixedEmbedder::new(semantic(), lexical(), settings.semantic_weight)),
    }
}

/// Concatenates a semantic and a lexical embedding, weighted so that the
/// cosine of two mixed vectors is `w * semantic + (1 - w) * lexical`.
pub struct MixedEmbedder {
    semantic: SemanticEmbedder,
    lexical: LexicalEmbedder,
    semantic_weight: f32,
}

impl MixedEmbedder {
    /// Mixes with `semantic_weight` in `[0, 1]`.
    pub fn new(semantic: SemanticEmbedder, lexical: LexicalEmbedder, semantic_weight: f32) -> Self {
        Self { semantic, lexical, semantic_weight: semantic_weight.clamp(0.0, 1.0) }
    }
}

impl Embedder for MixedEmbedder {
    fn dim(&self) -> usize {
        self.semantic.dim() + self.lexical.dim()
    }

    fn embed(&self, text: &Normalized, terms: &TermStats, out: &mut [f32]) {
        let (sem, lex) = out.split_at_mut(self.semantic.dim());
        self.semantic.embed(text, terms, sem);
        self.lexical.embed(text, terms, lex);
        scale(sem, self.semantic_weight.sqrt());
        scale(lex, (1.0 - self.semantic_weight).sqrt());
        normalize_l2(out);
    }
}

/// Online document frequencies of words, hashed into a fixed range of
/// buckets. Counts only grow with new wordings and shrink when headlines
/// leave. Only the buckets in use are kept, so an empty namespace costs
/// nothing and a feed's table grows with its vocabulary.
#[derive(Debug, Clone, Default)]
pub struct TermStats {
    counts: HashMap<u32, u32, foldhash::fast::FixedState>,
    docs: u64,
}

/// Words are counted in `TERM_BUCKETS` buckets (a power of two).
const TERM_BUCKETS: u64 = 1 << 20;

impl TermStats {
    fn bucket(word: &str) -> u32 {
        // The mask keeps the bucket below 2^20, inside u32.
        (stable_hash(word.as_bytes()) & (TERM_BUCKETS - 1)) as u32
    }

    /// Counts one document (each distinct word once).
    pub fn add(&mut self, text: &Normalized) {
        self.docs += 1;
        for word in distinct_words(text) {
            let c = self.counts.entry(Self::bucket(word)).or_default();
            *c = c.saturating_add(1);
        }
    }

    /// Forgets one document previously added.
    pub fn remove(&mut self, text: &Normalized) {
        self.docs = self.docs.saturating_sub(1);
        for word in distinct_words(text) {
            let bucket = Self::bucket(word);
            if let Some(c) = self.counts.get_mut(&bucket) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.counts.remove(&bucket);
                }
            }
        }
    }

    /// The number of documents counted.
    pub fn docs(&self) -> u64 {
        self.docs
    }

    /// The number of documents counted with `word` in them.
    pub fn count(&self, word: &str) -> u32 {
        self.counts.get(&Self::bucket(word)).copied().unwrap_or(0)
    }

    /// The inverse-document-frequency weight of a word: `ln((N + 1) /
    /// (df + 1)) + 1`, so unseen words weigh the most and none weighs zero.
    pub fn weight(&self, word: &str) -> f32 {
        let df = self.count(word) as f32;
        (((self.docs as f32) + 1.0) / (df + 1.0)).ln() + 1.0
    }
}

fn distinct_words(text: &Normalized) -> impl Iterator<Item = &str> {
    let mut words: Vec<&str> = text.tokens().collect();
    words.sort_unstable();
    words.dedup();
    words.into_iter()
}

/// The dot product, written so that the compiler vectorises it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in acc.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length; the zero vector stays zero.
pub fn normalize_l2(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        scale(v, 1.0 / norm);
    }
}

fn scale(v: &mut [f32], factor: f32) {
    v.iter_mut().for_each(|x| *x *= factor);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    #[test]
    fn frequent_words_weigh_less() {
        let mut stats = TermStats::default();
        for i in 0..50 {
            stats.add(&normalize(&format!("iraq news item {i}"), None));
        }
        assert!(stats.weight("iraq") < stats.weight("kurdish"));
        assert!(stats.weight("iraq") > 0.0);
    }

    #[test]
    fn removing_a_document_undoes_adding_it() {
        let mut stats = TermStats::default();
        let text = normalize("Fed raises rates", None);
        let before = stats.weight("fed");
        stats.add(&text);
        stats.remove(&text);
        assert_eq!(stats.weight("fed"), before);
        assert_eq!(stats.docs(), 0);
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
