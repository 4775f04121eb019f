//! Namespaces managed at run time: created with settings of their own,
//! read, listed, given other settings, deleted. A namespace's own settings
//! go on top of the server's configuration and are stored with it, so they
//! outlive restarts; a change of them rebuilds the namespace from the store
//! with them, so it answers as a restart would.

use std::sync::Arc;

use tracing::info;

use super::{App, AppError, Namespace, Slot, merge_own, poisoned, validate_namespace};
use crate::core::settings::Settings;
use crate::core::types::Stats;
use crate::store::StoredSettings;

/// A namespace as the admin calls show it.
#[derive(Debug, Clone)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Every setting it runs with.
    pub settings: Settings,
    /// The settings it holds as its own, `key=value` in the order set.
    pub own: Vec<String>,
    /// Its counters.
    pub stats: Stats,
}

impl App {
    /// Creates an empty namespace with `own` settings (`key=value`) on top
    /// of the configuration's, stored at once.
    pub fn create_namespace(&self, name: &str, own: Vec<String>) -> Result<NamespaceInfo, AppError> {
        validate_namespace(name)?;
        let own = merge_own(&[], &own);
        let settings = self.book().with_own(name, &own).map_err(AppError::setting)?;
        let namespace = {
            let mut map = self.namespaces.write().map_err(poisoned)?;
            if map.contains_key(name) {
                return Err(AppError::NamespaceExists(name.to_owned()));
            }
            self.room_for_one_more(map.len())?;
            let namespace = Namespace::new(self.engine_with(settings), 0);
            map.insert(name.to_owned(), Arc::clone(&namespace));
            namespace
        };
        match self.store_new_namespace(name, &namespace, own) {
            Ok(()) => {}
            // Another node stored it first: it stays, as stored.
            Err(e @ AppError::NamespaceExists(_)) => return Err(e),
            Err(e) => {
                self.namespaces.write().map_err(poisoned)?.remove(name);
                self.book_mut().set_own(name, Vec::new()).map_err(AppError::setting)?;
                return Err(e);
            }
        }
        info!(namespace = name, "namespace created");
        self.namespace_info(name)
    }

    fn store_new_namespace(&self, name: &str, namespace: &Namespace, own: Vec<String>) -> Result<(), AppError> {
        // Before the engine may be built again from the store, with them.
        self.book_mut().set_own(name, own.clone()).map_err(AppError::setting)?;
        let mut slot = namespace.slot();
        self.writable(name, &mut slot)?;
        let engine = match &mut *slot {
            // Having just led it, a node on PostgreSQL read it from the
            // store.
            Slot::Ready(_, version) if *version > 0 => return Err(AppError::NamespaceExists(name.to_owned())),
            Slot::Ready(engine, _) => engine,
            Slot::Broken(_) | Slot::Deleted => return Err(AppError::NamespaceNotFound(name.to_owned())),
        };
        let settings = engine.settings().clone();
        let changes = engine.take_changes();
        let stored = StoredSettings { effective: settings.specs(), own: own.clone() };
        self.store.commit(name, &stored, &changes).map_err(AppError::store).map(|_| ())
    }

    /// A namespace's settings and counters.
    pub fn namespace_info(&self, name: &str) -> Result<NamespaceInfo, AppError> {
        let (settings, stats) = self.read(name, |engine| (engine.settings().clone(), engine.stats()))?;
        Ok(NamespaceInfo { name: name.to_owned(), settings, own: self.book().own(name).to_vec(), stats })
    }

    /// Every namespace, by name.
    pub fn list_namespaces(&self) -> Result<Vec<NamespaceInfo>, AppError> {
        let mut infos = Vec::new();
        for name in self.namespaces()? {
            match self.namespace_info(&name) {
                Ok(info) => infos.push(info),
                // Deleted since the names were read.
                Err(AppError::NamespaceNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(infos)
    }

    /// Gives a namespace `changes` (`key=value`) as its own settings, on
    /// top of those it has: stored, then in effect from the next call.
    /// The embedder settings of a namespace with headlines cannot change
    /// ([`AppError::FailedPrecondition`]): its vectors would no longer
    /// compare.
    pub fn update_namespace(&self, name: &str, changes: &[String]) -> Result<NamespaceInfo, AppError> {
        let namespace = self.namespace(name)?;
        {
            let mut slot = namespace.slot();
            let engine = self.writable(name, &mut slot)?;
            let own = merge_own(self.book().own(name), changes);
            let settings = self.book().with_own(name, &own).map_err(AppError::setting)?;
            if !settings.same_vectors(engine.settings()) && engine.stats().headlines > 0 {
                return Err(AppError::FailedPrecondition(format!(
                    "namespace {name:?} holds headlines: its embedder settings (embedder, semantic_weight, lexical_dim, \
                     idf_power) cannot change; create another namespace for them"
                )));
            }
            let changed = engine.take_changes();
            let stored = StoredSettings { effective: settings.specs(), own: own.clone() };
            if let Err(e) = self.store.commit(name, &stored, &changed) {
                self.reset(name, &mut slot, "a settings change failed to commit");
                return Err(AppError::store(e));
            }
            self.book_mut().set_own(name, own).map_err(AppError::setting)?;
            info!(namespace = name, settings = ?settings.specs(), "namespace settings changed");
            // Built again from the store with them: as a restart would.
            self.reset(name, &mut slot, "its settings changed");
        }
        self.namespace_info(name)
    }

    /// Deletes a namespace: its headlines, stories, change feed and
    /// settings. Calls that still hold it find it gone; its watchers' streams
    /// end.
    /// Returns how many headlines went with it.
    pub fn delete_namespace(&self, name: &str) -> Result<u64, AppError> {
        let namespace = self.namespace(name)?;
        let mut slot = namespace.slot();
        let headlines = self.writable(name, &mut slot)?.stats().headlines;
        self.store.delete_namespace(name).map_err(AppError::store)?;
        self.forget(name, &mut slot)?;
        info!(namespace = name, headlines, "namespace deleted");
        Ok(headlines)
    }

    /// Drops a deleted namespace from memory.
    pub(super) fn forget(&self, name: &str, slot: &mut Slot) -> Result<(), AppError> {
        *slot = Slot::Deleted;
        self.namespaces.write().map_err(poisoned)?.remove(name);
        self.book_mut().set_own(name, Vec::new()).map_err(AppError::setting)?;
        self.health.mark(name, None);
        Ok(())
    }
}
