//! Per-namespace settings: the embedder, the thresholds of each tier and the
//! story window. The defaults are the values chosen on the development data
//! (see `docs/quality.md`).

use super::error::CoreError;
use super::types::{DAY_MS, Millis};

/// The most entries a namespace's change feed keeps.
const MAX_CHANGE_FEED_LENGTH: u64 = 100_000_000;

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
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "lexical" => Ok(Self::Lexical),
            "semantic" => Ok(Self::Semantic),
            "mixed" => Ok(Self::Mixed),
            other => Err(CoreError::setting(
                "embedder",
                format!("unknown embedder {other:?} (expected lexical, semantic or mixed)"),
            )),
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
    /// How much of the namespace's background (the mean of its headlines'
    /// vectors) the story and merge decisions take out of each similarity
    /// (0 judges raw cosines, 1 the full background).
    pub background_weight: f32,
    /// A young namespace's background is shrunk as if this many headlines
    /// with no common direction came first.
    pub background_prior: f32,
    /// Minimum story similarity to join a story.
    pub story_threshold: f32,
    /// The average linkage two large stories need to merge. Smaller ones
    /// need more, up to `story_threshold` for two single headlines: the bar
    /// falls with the square root of the number of cross pairs.
    pub merge_threshold: f32,
    /// How much the merge bar rises for each factor of e by which the
    /// exemplars within the story window of two stories outnumber what a
    /// news feed's window holds ([`crate::core::index::FLAT_LIMIT`]): the
    /// more stories a window holds, the more same-topic stories of other
    /// events a story has for neighbours, and the more linkage a merge
    /// needs to say one event (0 keeps one bar at every density).
    pub merge_crowding: f32,
    /// A story absorbs rewrites at `story_threshold` while their event time
    /// is within this distance of its coverage (from its first to its
    /// latest member that is not a copy).
    pub story_window: Millis,
    /// An exact copy (the same normalised text) of a story's headline joins
    /// it while its event time is within this distance of the story's
    /// coverage: a republished wire headline joins days later, where a
    /// rewrite needs the story window.
    pub copy_window: Millis,
    /// A rewrite past every story's window follows a story within the copy
    /// window when it is close to one of the story's headlines and names
    /// something the story owns: written in two of its wordings or more,
    /// and in at least this share of the namespace's wordings that write
    /// it (0 turns following off).
    pub follow_share: f32,
    /// Candidates fetched from the index per headline.
    pub candidates: usize,
    /// Headlines whose event time is this far behind the newest one leave
    /// memory and disk; `None` keeps everything.
    pub retention: Option<Millis>,
    /// The story change feed keeps this many of its latest entries.
    pub change_feed_length: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            embedder: EmbedderKind::Mixed,
            semantic_weight: 0.5,
            lexical_dim: 384,
            idf_power: 0.0,
            near_vector_threshold: 0.9,
            near_string_threshold: 0.8,
            background_weight: 0.0,
            background_prior: 20.0,
            story_threshold: 0.3,
            merge_threshold: 0.2,
            merge_crowding: 0.06,
            story_window: DAY_MS / 2,
            copy_window: 3 * DAY_MS,
            follow_share: 0.5,
            candidates: 20,
            retention: Some(30 * DAY_MS),
            change_feed_length: 100_000,
        }
    }
}

impl Settings {
    /// Sets one setting by name from text, as in `story_threshold=0.6`.
    /// Durations are in hours. Call [`Settings::validate`] when done.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), CoreError> {
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, CoreError> {
            value.trim().parse().map_err(|_| CoreError::setting(key, format!("{value:?} is not a valid number")))
        }
        fn window(key: &str, value: &str) -> Result<Millis, CoreError> {
            Ok((number::<f64>(key, value)? * 3_600_000.0) as Millis)
        }
        match key {
            "embedder" => self.embedder = value.parse()?,
            "semantic_weight" => self.semantic_weight = number(key, value)?,
            "lexical_dim" => self.lexical_dim = number(key, value)?,
            "idf_power" => self.idf_power = number(key, value)?,
            "near_vector_threshold" => self.near_vector_threshold = number(key, value)?,
            "near_string_threshold" => self.near_string_threshold = number(key, value)?,
            "background_weight" => self.background_weight = number(key, value)?,
            "background_prior" => self.background_prior = number(key, value)?,
            "story_threshold" => self.story_threshold = number(key, value)?,
            "merge_threshold" => self.merge_threshold = number(key, value)?,
            "merge_crowding" => self.merge_crowding = number(key, value)?,
            "story_window_hours" => self.story_window = window(key, value)?,
            "copy_window_hours" => self.copy_window = window(key, value)?,
            "follow_share" => self.follow_share = number(key, value)?,
            "candidates" => self.candidates = number(key, value)?,
            "retention_hours" => {
                let hours: f64 = number(key, value)?;
                self.retention = (hours > 0.0).then_some((hours * 3_600_000.0) as Millis);
            }
            "change_feed_length" => self.change_feed_length = number(key, value)?,
            other => return Err(CoreError::UnknownSetting(other.to_owned())),
        }
        Ok(())
    }

    /// Every setting as `key=value`, in the form [`Settings::set`] reads.
    pub fn specs(&self) -> Vec<String> {
        let hours = |ms: Millis| ms as f64 / 3_600_000.0;
        vec![
            format!("embedder={}", self.embedder.name()),
            format!("semantic_weight={}", self.semantic_weight),
            format!("lexical_dim={}", self.lexical_dim),
            format!("idf_power={}", self.idf_power),
            format!("near_vector_threshold={}", self.near_vector_threshold),
            format!("near_string_threshold={}", self.near_string_threshold),
            format!("background_weight={}", self.background_weight),
            format!("background_prior={}", self.background_prior),
            format!("story_threshold={}", self.story_threshold),
            format!("merge_threshold={}", self.merge_threshold),
            format!("merge_crowding={}", self.merge_crowding),
            format!("story_window_hours={}", hours(self.story_window)),
            format!("copy_window_hours={}", hours(self.copy_window)),
            format!("follow_share={}", self.follow_share),
            format!("candidates={}", self.candidates),
            format!("retention_hours={}", self.retention.map_or(0.0, hours)),
            format!("change_feed_length={}", self.change_feed_length),
        ]
    }

    /// Whether vectors made with `other` can be compared with vectors made
    /// with these settings.
    pub fn same_vectors(&self, other: &Settings) -> bool {
        self.embedder == other.embedder
            && self.semantic_weight == other.semantic_weight
            && self.lexical_dim == other.lexical_dim
            && self.idf_power == other.idf_power
    }

    /// Applies `key=value` assignments in order, then validates.
    pub fn apply_all<'a>(&mut self, assignments: impl IntoIterator<Item = &'a str>) -> Result<(), CoreError> {
        for assignment in assignments {
            let (key, value) = assignment
                .split_once('=')
                .ok_or_else(|| CoreError::setting(assignment, "not of the form key=value"))?;
            self.set(key.trim(), value)?;
        }
        self.validate()
    }

    /// Checks that every threshold is in (0, 1] and every size positive.
    pub fn validate(&self) -> Result<(), CoreError> {
        let unit = [
            ("semantic_weight", self.semantic_weight),
            ("near_vector_threshold", self.near_vector_threshold),
            ("near_string_threshold", self.near_string_threshold),
            ("story_threshold", self.story_threshold),
            ("merge_threshold", self.merge_threshold),
        ];
        for (name, value) in unit {
            if !(value > 0.0 && value <= 1.0) {
                return Err(CoreError::setting(name, format!("must be in (0, 1], got {value}")));
            }
        }
        if self.idf_power < 0.0 || !self.idf_power.is_finite() {
            return Err(CoreError::setting(
                "idf_power",
                format!("must be a non-negative number, got {}", self.idf_power),
            ));
        }
        if !(0.0..=1.0).contains(&self.background_weight) {
            return Err(CoreError::setting(
                "background_weight",
                format!("must be in [0, 1], got {}", self.background_weight),
            ));
        }
        if !(0.0..=1.0).contains(&self.merge_crowding) {
            return Err(CoreError::setting(
                "merge_crowding",
                format!("must be in [0, 1], got {}", self.merge_crowding),
            ));
        }
        if !(0.0..=1.0).contains(&self.follow_share) {
            return Err(CoreError::setting("follow_share", format!("must be in [0, 1], got {}", self.follow_share)));
        }
        if !(0.0..=1e6).contains(&self.background_prior) {
            return Err(CoreError::setting(
                "background_prior",
                format!("must be a number of headlines in [0, 1000000], got {}", self.background_prior),
            ));
        }
        if self.story_window <= 0 {
            return Err(CoreError::setting("story_window_hours", "must be positive"));
        }
        if self.copy_window < self.story_window {
            return Err(CoreError::setting("copy_window_hours", "must be at least story_window_hours"));
        }
        if self.retention.is_some_and(|r| r < self.story_window) {
            return Err(CoreError::setting(
                "retention_hours",
                "must be 0 (keep everything) or at least story_window_hours",
            ));
        }
        if !(8..=4096).contains(&self.lexical_dim) {
            return Err(CoreError::setting("lexical_dim", format!("must be in 8..=4096, got {}", self.lexical_dim)));
        }
        if !(1..=MAX_CHANGE_FEED_LENGTH).contains(&self.change_feed_length) {
            return Err(CoreError::setting(
                "change_feed_length",
                format!("must be in 1..={MAX_CHANGE_FEED_LENGTH}, got {}", self.change_feed_length),
            ));
        }
        if !(1..=200).contains(&self.candidates) {
            return Err(CoreError::setting("candidates", format!("must be in 1..=200, got {}", self.candidates)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        let mut custom = Settings::default();
        custom
            .apply_all([
                "embedder=lexical",
                "story_threshold=0.45",
                "retention_hours=0",
                "story_window_hours=6",
                "copy_window_hours=36",
            ])
            .expect("valid");
        let mut again = Settings::default();
        again.apply_all(custom.specs().iter().map(String::as_str)).expect("valid");
        assert_eq!(again, custom);
        assert_eq!(custom.retention, None);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for bad in [
            "story_threshold=0",
            "story_threshold=1.01",
            "merge_threshold=-1",
            "story_window_hours=0",
            "copy_window_hours=6",
            "retention_hours=1",
            "candidates=0",
            "change_feed_length=0",
            "embedder=magic",
            "story_threshold=abc",
            "nonsense=1",
        ] {
            assert!(Settings::default().apply_all([bad]).is_err(), "{bad}");
        }
    }
}
