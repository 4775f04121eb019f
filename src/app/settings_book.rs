//! The settings of every namespace: defaults, overrides by name from the
//! configuration, and the settings a namespace was given at run time.

use std::collections::BTreeMap;

use super::validate_namespace;
use crate::core::error::CoreError;
use crate::core::settings::Settings;

/// Per-namespace settings: defaults plus overrides by namespace name, and
/// on top of them each namespace's own settings (`key=value`, set at run
/// time and stored with it).
#[derive(Debug, Clone, Default)]
pub struct SettingsBook {
    defaults: Settings,
    overrides: BTreeMap<String, Settings>,
    own: BTreeMap<String, (Vec<String>, Settings)>,
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
        match self.own.get(namespace) {
            Some((_, settings)) => settings,
            None => self.configured(namespace),
        }
    }

    /// A namespace's settings from the configuration alone.
    fn configured(&self, namespace: &str) -> &Settings {
        self.overrides.get(namespace).unwrap_or(&self.defaults)
    }

    /// The settings a namespace holds as its own, in the order set.
    pub fn own(&self, namespace: &str) -> &[String] {
        self.own.get(namespace).map_or(&[], |(own, _)| own.as_slice())
    }

    /// The settings a namespace would have with `own` as its own: the
    /// configuration's, then `own` (later assignments of a key win).
    pub fn with_own(&self, namespace: &str, own: &[String]) -> Result<Settings, CoreError> {
        let mut settings = self.configured(namespace).clone();
        settings.apply_all(own.iter().map(String::as_str))?;
        Ok(settings)
    }

    /// Makes `own` a namespace's own settings (none: it follows the
    /// configuration).
    pub fn set_own(&mut self, namespace: &str, own: Vec<String>) -> Result<(), CoreError> {
        if own.is_empty() {
            self.own.remove(namespace);
            return Ok(());
        }
        let settings = self.with_own(namespace, &own)?;
        self.own.insert(namespace.to_owned(), (own, settings));
        Ok(())
    }
}

/// The key of a `key=value` setting.
pub fn setting_key(spec: &str) -> &str {
    spec.split_once('=').map_or(spec, |(key, _)| key).trim()
}

/// `own` with `changes` applied: each key keeps its latest value, in the
/// order the keys were first set.
pub fn merge_own(own: &[String], changes: &[String]) -> Vec<String> {
    let mut merged: Vec<String> = own.to_vec();
    for change in changes {
        match merged.iter_mut().find(|spec| setting_key(spec) == setting_key(change)) {
            Some(spec) => spec.clone_from(change),
            None => merged.push(change.clone()),
        }
    }
    merged
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

    #[test]
    fn a_namespaces_own_settings_go_on_top_of_the_configuration() {
        let mut book = SettingsBook::parse(["story_threshold=0.4", "fr.candidates=7"]).expect("valid settings");
        book.set_own("fr", vec!["story_threshold=0.6".into()]).expect("valid");
        assert_eq!((book.get("fr").story_threshold, book.get("fr").candidates), (0.6, 7));
        assert_eq!(book.get("de").story_threshold, 0.4);
        assert!(book.set_own("fr", vec!["story_threshold=2".into()]).is_err());
        assert_eq!(book.own("fr"), ["story_threshold=0.6"], "a refused change changes nothing");
        let merged = merge_own(book.own("fr"), &["candidates=9".into(), "story_threshold=0.5".into()]);
        assert_eq!(merged, ["story_threshold=0.5", "candidates=9"]);
        book.set_own("fr", Vec::new()).expect("none");
        assert_eq!(book.get("fr").story_threshold, 0.4);
    }
}
