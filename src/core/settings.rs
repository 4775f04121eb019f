//! Per-namespace settings: the embedder, the thresholds of each tier and the
//! story window. The defaults are the values chosen on the development data
//! (see `docs/quality.md`).

use super::types::{DAY_MS, Millis};

/// Which embedder a namespace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// Hashed word and character n-grams; needs no model.
    Lexical,
    /// The bundled static semantic model.
    Semantic,
    /// Both, concatenated.
    Mixed,
}

impl EmbedderKind {
    /// The name used in settings and stats.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lexical => "lexical",
            Self::Semantic => "semantic",
            Self::Mixed => "mixed",
        }
    }
}

impl std::str::FromStr for EmbedderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lexical" => Ok(Self::Lexical),
            "semantic" => Ok(Self::Semantic),
            "mixed" => Ok(Self::Mixed),
            other => Err(format!("unknown embedder {other:?} (expected lexical, semantic or mixed)")),
        }
    }
}

/// The settings of one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The embedder.
    pub embedder: EmbedderKind,
    /// Share of the semantic part in the mixed embedder's cosine.
    pub semantic_weight: f32,
    /// Dimension of the lexical vectors.
    pub lexical_dim: usize,
    /// How strongly word rarity weights the semantic pooling (0 = plain mean).
    pub idf_power: f32,
    /// Minimum vector cosine for a near-duplicate.
    pub near_vector_threshold: f32,
    /// Minimum string similarity for a near-duplicate.
    pub near_string_threshold: f32,
    /// Minimum story similarity to join a story.
    pub story_threshold: f32,
    /// Weight of the centroid (against the best members) in story similarity.
    pub centroid_weight: f32,
    /// Minimum similarity of a headline to a second story, and of the two
    /// stories' centroids, to merge them.
    pub merge_threshold: f32,
    /// A story absorbs headlines whose event time is within this distance of
    /// its first and last member.
    pub story_window: Millis,
    /// Candidates fetched from the index per headline.
    pub candidates: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            embedder: EmbedderKind::Mixed,
            semantic_weight: 0.5,
            lexical_dim: 512,
            idf_power: 0.0,
            near_vector_threshold: 0.9,
            near_string_threshold: 0.8,
            story_threshold: 0.3,
            centroid_weight: 0.5,
            merge_threshold: 0.2,
            story_window: DAY_MS / 2,
            candidates: 20,
        }
    }
}

impl Settings {
    /// Sets one setting by name from text, as in `story_threshold=0.6`.
    /// Durations are in hours.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value.trim().parse().map_err(|_| format!("{key}: {value:?} is not a valid number"))
        }
        match key {
            "embedder" => self.embedder = value.parse()?,
            "semantic_weight" => self.semantic_weight = number(key, value)?,
            "lexical_dim" => self.lexical_dim = number(key, value)?,
            "idf_power" => self.idf_power = number(key, value)?,
            "near_vector_threshold" => self.near_vector_threshold = number(key, value)?,
            "near_string_threshold" => self.near_string_threshold = number(key, value)?,
            "story_threshold" => self.story_threshold = number(key, value)?,
            "centroid_weight" => self.centroid_weight = number(key, value)?,
            "merge_threshold" => self.merge_threshold = number(key, value)?,
            "story_window_hours" => {
                let hours: f64 = number(key, value)?;
                self.story_window = (hours * 3_600_000.0) as Millis;
            }
            "candidates" => self.candidates = number(key, value)?,
            other => return Err(format!("unknown setting {other:?}")),
        }
        self.validate()
    }

    /// Applies `key=value` assignments in order.
    pub fn apply_all<'a>(&mut self, assignments: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        for assignment in assignments {
            let (key, value) =
                assignment.split_once('=').ok_or_else(|| format!("{assignment:?} is not of the form key=value"))?;
            self.set(key.trim(), value)?;
        }
        Ok(())
    }

    /// Checks that every threshold is in (0, 1] and every size positive.
    pub fn validate(&self) -> Result<(), String> {
        let unit = [
            ("semantic_weight", self.semantic_weight),
            ("near_vector_threshold", self.near_vector_threshold),
            ("near_string_threshold", self.near_string_threshold),
            ("story_threshold", self.story_threshold),
            ("centroid_weight", self.centroid_weight),
            ("merge_threshold", self.merge_threshold),
        ];
        for (name, value) in unit {
            if !(value > 0.0 && value <= 1.0) {
                return Err(format!("{name} must be in (0, 1], got {value}"));
            }
        }
        if self.idf_power < 0.0 || !self.idf_power.is_finite() {
            return Err(format!("idf_power must be a non-negative number, got {}", self.idf_power));
        }
        if self.story_window <= 0 {
            return Err("story_window must be positive".into());
        }
        if !(8..=4096).contains(&self.lexical_dim) {
            return Err(format!("lexical_dim must be in 8..=4096, got {}", self.lexical_dim));
        }
        if !(1..=200).contains(&self.candidates) {
            return Err(format!("candidates must be in 1..=200, got {}", self.candidates));
        }
        Ok(())
    }
}
