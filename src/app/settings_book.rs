//! The settings of every namespace: defaults, and overrides by name.

use std::collections::BTreeMap;

use super::validate_namespace;
use crate::core::error::CoreError;
use crate::core::settings::Settings;

/// Per-namespace settings: defaults plus overrides by namespace name.
#[derive(Debug, Clone, Default)]
pub struct SettingsBook {
    defaults: Settings,
    overrides: BTreeMap<String, Settings>,
}

impl SettingsBook {
    /// Parses `key=value` (all namespaces) and `namespace.key=value` (one
    /// namespace) assignments, in order.
    pub fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self, CoreError> {
        let mut book = Self::default();
        let mut scoped: Vec<(&str, &str, &str)> = Vec::new();
        for spec in specs {
            let (key, value) =
                spec.split_once('=').ok_or_else(|| CoreError::setting(spec, "not of the form key=value"))?;
            match key.split_once('.') {
                Some((namespace, key)) => {
                    validate_namespace(namespace).map_err(|e| CoreError::setting(spec, e.to_string()))?;
                    scoped.push((namespace, key, value));
                }
                None => book.defaults.set(key.trim(), value)?,
            }
        }
        book.defaults.validate()?;
        let in_namespace = |namespace: &str, error: CoreError| match error {
            CoreError::InvalidSetting { key, reason } => CoreError::setting(format!("{namespace}.{key}"), reason),
            CoreError::UnknownSetting(key) => CoreError::UnknownSetting(format!("{namespace}.{key}")),
            other => other,
        };
        for (namespace, key, value) in scoped {
            let settings = book.overrides.entry(namespace.to_owned()).or_insert_with(|| book.defaults.clone());
            settings.set(key.trim(), value).map_err(|e| in_namespace(namespace, e))?;
        }
        for (namespace, settings) in &book.overrides {
            settings.validate().map_err(|e| in_namespace(namespace, e))?;
        }
        Ok(book)
    }

    /// The settings of a namespace.
    pub fn get(&self, namespace: &str) -> &Settings {
        self.overrides.get(namespace).unwrap_or(&self.defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_to_all_or_one_namespace() {
        let book = SettingsBook::parse(["story_threshold=0.4", "fr.story_threshold=0.5", "fr.embedder=lexical"])
            .expect("valid settings");
        assert_eq!(book.get("default").story_threshold, 0.4);
        assert_eq!(book.get("fr").story_threshold, 0.5);
        assert_eq!(book.get("fr").embedder.name(), "lexical");
        assert!(SettingsBook::parse(["story_threshold=1.5"]).is_err());
        assert!(SettingsBook::parse(["Bad Name.story_threshold=0.5"]).is_err());
        assert!(SettingsBook::parse(["nonsense"]).is_err());
    }
}
