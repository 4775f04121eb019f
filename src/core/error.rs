//! The core's errors: settings that cannot be taken, and stored state that
//! a namespace cannot be rebuilt from. Per-item errors of a batch are
//! [`ItemError`](super::types::ItemError)s, answers rather than failures.

/// Why the core refused a setting or a stored state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No setting has this name.
    #[error("unknown setting {0:?}")]
    UnknownSetting(String),
    /// A setting's value is malformed or out of range.
    #[error("{key}: {reason}")]
    InvalidSetting {
        /// The setting (`story_threshold`, or `namespace.story_threshold`).
        key: String,
        /// Why.
        reason: String,
    },
    /// Stored state contradicts itself: a record out of order or stored
    /// twice, a vector of the wrong size, a cycle of merges.
    #[error("stored state is inconsistent: {0}")]
    Inconsistent(String),
}

impl CoreError {
    /// A malformed or out-of-range setting.
    pub fn setting(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidSetting { key: key.into(), reason: reason.into() }
    }
}
