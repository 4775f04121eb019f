//! Engines for the unit tests: an embedder that gives chosen texts chosen
//! vectors, so that every similarity in a test is known.

use std::collections::HashMap;
use std::sync::Arc;

use super::Engine;
use crate::core::embed::{Embedder, StaticModel, TermStats, embedder_for, normalize_l2};
use crate::core::normalize::Normalized;
use crate::core::settings::Settings;
use crate::core::types::{DAY_MS, Headline, ItemError, Millis};

/// Gives each listed normalised text its vector (unit length after
/// normalising) and every other text the zero vector.
pub(super) struct FixedEmbedder {
    dim: usize,
    vectors: HashMap<String, Vec<f32>>,
}

impl Embedder for FixedEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, text: &Normalized, _: &TermStats, out: &mut [f32]) {
        out.fill(0.0);
        if let Some(vector) = self.vectors.get(&text.text) {
            out.iter_mut().zip(vector).for_each(|(o, v)| *o = *v);
        }
        normalize_l2(out);
    }
}

/// An engine whose embedder gives these texts these vectors, with a story
/// threshold of 0.5, a merge threshold of 0.3, a 12-hour window and no
/// retention.
pub(super) fn fixed_engine<const N: usize>(vectors: &[(&str, [f32; N])]) -> Engine {
    let settings = Settings {
        story_threshold: 0.5,
        merge_threshold: 0.3,
        story_window: DAY_MS / 2,
        retention: None,
        ..Settings::default()
    };
    let vectors = vectors.iter().map(|(text, v)| ((*text).to_owned(), v.to_vec())).collect();
    Engine::new(settings, Arc::new(FixedEmbedder { dim: N, vectors }))
}

/// An engine with the default settings and the bundled model.
pub(super) fn model_engine() -> Engine {
    let settings = Settings::default();
    let model = Arc::new(StaticModel::bundled().expect("the bundled model loads"));
    let embedder = embedder_for(&settings, &model);
    Engine::new(settings, embedder)
}

/// A headline to ingest.
pub(super) fn item(id: &str, text: &str, published: Millis) -> Result<Headline, ItemError> {
    Ok(Headline { id: id.into(), text: text.into(), source: None, url: None, published })
}
