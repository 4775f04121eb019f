//! The semantic static embedder: a model2vec-style table of token vectors
//! (distilled from all-MiniLM-L6-v2, see `models/`), a BERT WordPiece
//! tokenizer, and weighted mean pooling.
//!
//! The model is two files: `vocab.txt` (one token per line, the line number
//! is the id) and `vectors.safetensors` holding `vectors` (int8, tokens x
//! dim) and `scales` (f32, one per token). The default model is compiled
//! into the binary, so the service works offline with no files around it.

use std::collections::HashMap;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{Embedder, TermStats, normalize_l2};
use crate::core::normalize::Normalized;

/// The bundled model: all-MiniLM-L6-v2 distilled to 256 dimensions.
const BUNDLED_VOCAB: &str = include_str!("../../../models/minilm-l6-static-256/vocab.txt");
const BUNDLED_VECTORS: &[u8] = include_bytes!("../../../models/minilm-l6-static-256/vectors.safetensors");

/// Longest word WordPiece will split; longer words are unknown.
const MAX_WORD_CHARS: usize = 100;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StaticModelError {
    /// The files are not a valid model.
    #[error("invalid model: {0}")]
    Invalid(String),
}

/// Token vectors plus the tokenizer that produces their ids.
pub struct StaticModel {
    vocab: HashMap<String, u32>,
    unknown: Option<u32>,
    vectors: Vec<i8>,
    scales: Vec<f32>,
    dim: usize,
}

impl std::fmt::Debug for StaticModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticModel").field("tokens", &self.scales.len()).field("dim", &self.dim).finish()
    }
}

impl StaticModel {
    /// The model compiled into the binary.
    pub fn bundled() -> Result<Self, StaticModelError> {
        Self::from_parts(BUNDLED_VOCAB, BUNDLED_VECTORS)
    }

    /// Builds a model from the text of `vocab.txt` and the bytes of
    /// `vectors.safetensors`.
    pub fn from_parts(vocab_text: &str, tensor_bytes: &[u8]) -> Result<Self, StaticModelError> {
        let invalid = |m: String| StaticModelError::Invalid(m);
        let tensors = safetensors::SafeTensors::deserialize(tensor_bytes).map_err(|e| invalid(e.to_string()))?;
        let vectors = tensors.tensor("vectors").map_err(|e| invalid(format!("vectors: {e}")))?;
        let scales = tensors.tensor("scales").map_err(|e| invalid(format!("scales: {e}")))?;
        let (&[tokens, dim], &[scale_count]) = (vectors.shape(), scales.shape()) else {
            return Err(invalid("vectors must be 2-d and scales 1-d".into()));
        };
        if vectors.dtype() != safetensors::Dtype::I8 || scales.dtype() != safetensors::Dtype::F32 {
            return Err(invalid("vectors must be int8 and scales float32".into()));
        }
        let vocab: HashMap<String, u32> =
            vocab_text.lines().enumerate().map(|(i, token)| (token.to_owned(), i as u32)).collect();
        let vocab_len = vocab_text.lines().count();
        if scale_count != tokens || vocab_len != tokens || dim == 0 {
            return Err(invalid(format!(
                "{vocab_len} vocabulary lines, {tokens} vectors of dimension {dim}, {scale_count} scales"
            )));
        }
        let vectors = vectors.data().iter().map(|&b| b as i8).collect();
        let scales =
            scales.data().chunks_exact(4).filter_map(|b| <[u8; 4]>::try_from(b).ok()).map(f32::from_le_bytes).collect();
        let unknown = vocab.get("[UNK]").copied();
        Ok(Self { vocab, unknown, vectors, scales, dim })
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Mean of the token vectors of `text`, each word's tokens weighted by
    /// its inverse document frequency raised to `idf_power` (0 gives the
    /// plain mean), L2-normalised into `out`.
    pub fn pool(&self, text: &Normalized, terms: &TermStats, idf_power: f32, out: &mut [f32]) {
        out.fill(0.0);
        let mut ids = Vec::new();
        for word in text.tokens() {
            let weight = if idf_power == 0.0 { 1.0 } else { terms.weight(word).powf(idf_power) };
            ids.clear();
            for piece in Self::words(word) {
                self.word_pieces(&piece, &mut ids);
            }
            for &id in ids.iter().filter(|&&id| Some(id) != self.unknown) {
                let row = id as usize * self.dim;
                let (Some(&scale), Some(values)) =
                    (self.scales.get(id as usize), self.vectors.get(row..row + self.dim))
                else {
                    continue;
                };
                let factor = weight * scale;
                for (o, &q) in out.iter_mut().zip(values) {
                    *o += factor * f32::from(q);
                }
            }
        }
        normalize_l2(out);
    }

    /// The WordPiece ids of one word (an empty list if it has no known
    /// pieces).
    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            return;
        }
        let start_len = out.len();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.extend(chars.get(start..end).unwrap_or_default());
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(start_len);
                    return;
                }
            }
            start = end;
        }
    }

    /// BERT's pre-tokenisation of already lower-cased text: accents
    /// stripped, split on whitespace and around punctuation.
    fn words(text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut current = String::new();
        for c in text.nfd().filter(|&c| !is_combining_mark(c)) {
            if c.is_whitespace() || c.is_control() {
                words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            } else if is_punctuation(c) {
                words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
                words.push(c.to_string());
            } else {
                current.extend(c.to_lowercase());
            }
        }
        words.extend((!current.is_empty()).then_some(current));
        words
    }
}

/// BERT's notion of punctuation: ASCII symbols and Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace() && !c.is_control() && !c.is_ascii())
}

/// The static model as an [`Embedder`], with its word weighting.
#[derive(Debug, Clone)]
pub struct SemanticEmbedder {
    model: Arc<StaticModel>,
    idf_power: f32,
}

impl SemanticEmbedder {
    /// Pools `model`'s token vectors with word weights raised to `idf_power`.
    pub fn new(model: Arc<StaticModel>, idf_power: f32) -> Self {
        Self { model, idf_power }
    }
}

impl Embedder for SemanticEmbedder {
    fn dim(&self) -> usize {
        self.model.dim
    }

    fn embed(&self, text: &Normalized, terms: &TermStats, out: &mut [f32]) {
        self.model.pool(text, terms, self.idf_power, out);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::embed::dot as cosine;
    use crate::core::normalize::normalize;

    fn model() -> StaticModel {
        StaticModel::bundled().expect("bundled model loads")
    }

    fn vector(model: &StaticModel, text: &str) -> Vec<f32> {
        let mut out = vec![0.0; model.dim()];
        model.pool(&normalize(text, None), &TermStats::default(), 0.0, &mut out);
        out
    }

    #[test]
    fn wordpiece_splits_like_bert() {
        let m = model();
        let mut ids = Vec::new();
        m.word_pieces("tapering", &mut ids);
        assert!(!ids.is_empty());
        let mut plain = Vec::new();
        m.word_pieces("the", &mut plain);
        assert_eq!(plain.len(), 1);
        let mut none = Vec::new();
        m.word_pieces(&"x".repeat(MAX_WORD_CHARS + 1), &mut none);
        assert!(none.is_empty());
        assert_eq!(StaticModel::words("café 0.25"), vec!["cafe", "0", ".", "25"]);
    }

    #[test]
    fn paraphrases_are_closer_than_unrelated_headlines() {
        let m = model();
        let fed = vector(&m, "Fed raises interest rates by a quarter point");
        let rewrite = vector(&m, "Federal Reserve hikes rates 25 basis points");
        let cat = vector(&m, "Cat rescued from tree by firefighters");
        assert!(cosine(&fed, &rewrite) > 0.5, "{}", cosine(&fed, &rewrite));
        assert!(cosine(&fed, &cat) < 0.2, "{}", cosine(&fed, &cat));
    }

    #[test]
    fn broken_model_files_are_rejected() {
        assert!(StaticModel::from_parts("a\nb\n", b"not safetensors").is_err());
        let err = StaticModel::from_parts("only-one-token\n", BUNDLED_VECTORS).expect_err("sizes differ");
        assert!(err.to_string().contains("vocabulary lines"), "{err}");
    }
}
