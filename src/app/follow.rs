//! Following the namespaces another node leads (PostgreSQL): each commit's
//! facts are applied, in version order, to this node's engine, so that its
//! reads, matches and a takeover start from the leader's state. Facts,
//! not decisions: a follower never judges a headline again, so two
//! versions of the code cannot drift apart.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{App, Namespace, Slot, guarded};
use crate::store::{Commit, Followed, PostgresStore, Store};
use crate::telemetry;

/// How often a follower looks for commits when no wake-up came.
const POLL: Duration = Duration::from_millis(500);

impl App {
    /// On PostgreSQL, starts the thread that keeps every namespace this
    /// node does not lead up to date; it ends with the application.
    pub fn start_following(self: &Arc<Self>) -> std::io::Result<()> {
        if !matches!(self.store, Store::Postgres(_)) {
            return Ok(());
        }
        let app = Arc::downgrade(self);
        std::thread::Builder::new().name("follower".into()).spawn(move || follow(&app)).map(|_| ())
    }

    /// Applies every commit this node has not seen of the namespaces it
    /// does not lead.
    fn catch_up(&self, store: &PostgresStore) {
        let versions = match store.versions() {
            Ok(versions) => versions,
            Err(e) => {
                warn!(error = %e, "cannot read the namespaces' versions");
                return;
            }
        };
        self.forget_deleted(store, &versions);
        for (name, head) in versions {
            let leads = store.leads(&name);
            metrics::gauge!(telemetry::LEADER, "namespace" => name.clone()).set(if leads { 1.0 } else { 0.0 });
            if leads {
                continue;
            }
            match self.followed(&name) {
                Ok(namespace) => self.catch_up_namespace(store, &name, &namespace, head),
                Err(e) => warn!(namespace = name, error = %e, "cannot follow the namespace"),
            }
        }
    }

    /// Drops the namespaces this node has followed that another node
    /// deleted: they have no lease any more.
    fn forget_deleted(&self, store: &PostgresStore, versions: &[(String, u64)]) {
        let Ok(names) = self.namespaces() else { return };
        for name in names {
            if versions.iter().any(|(stored, _)| *stored == name) || store.leads(&name) {
                continue;
            }
            let Ok(namespace) = self.namespace(&name) else { continue };
            let mut slot = namespace.slot();
            // Seen in the store once (a namespace at version 0 may be
            // about to be written here for the first time).
            if matches!(&*slot, Slot::Ready(_, version) if *version > 0) {
                info!(namespace = name, "the namespace was deleted on another node");
                if let Err(e) = self.forget(&name, &mut slot) {
                    warn!(namespace = name, error = %e, "cannot drop the deleted namespace");
                }
            }
        }
    }

    fn catch_up_namespace(&self, store: &PostgresStore, name: &str, namespace: &Namespace, head: u64) {
        let mut slot = namespace.slot();
        loop {
            let version = match &*slot {
                Slot::Ready(_, version) if *version < head => *version,
                Slot::Ready(..) => return,
                Slot::Broken(_) => {
                    // Rebuilt from the store, at its version then.
                    let _ = self.ready(name, &mut slot);
                    return;
                }
                Slot::Deleted => return,
            };
            let fetched = Instant::now();
            let commits = match store.follow(name, version) {
                Ok(Followed::Commits(commits)) if commits.is_empty() => return,
                Ok(Followed::Commits(commits)) => commits,
                Ok(Followed::Trimmed) => {
                    info!(namespace = name, version, "the change log no longer reaches back here; reloading");
                    self.reset(name, &mut slot, "the change log was trimmed past this follower");
                    return;
                }
                Err(e) => {
                    warn!(namespace = name, error = %e, "cannot read the change log");
                    return;
                }
            };
            for Commit { version: committed, changes, settings, age } in commits {
                if settings.own != self.book().own(name) {
                    info!(namespace = name, "the leader changed the namespace's settings; reloading");
                    if let Err(e) = self.book_mut().set_own(name, settings.own) {
                        warn!(namespace = name, error = %e, "the leader's settings are invalid here");
                    }
                    self.reset(name, &mut slot, "the leader changed the namespace's settings");
                    return;
                }
                let Slot::Ready(engine, version) = &mut *slot else { return };
                let applied = guarded("applying a commit", || engine.apply_committed(&changes))
                    .map_err(|e| e.to_string())
                    .and_then(|applied| applied.map_err(|e| e.to_string()));
                if let Err(e) = applied {
                    warn!(namespace = name, error = %e, "a commit does not apply; reloading");
                    self.reset(name, &mut slot, "a leader's commit did not apply");
                    return;
                }
                *version = committed;
                namespace.feed.publish(&changes.story_changes);
                let lag = age + fetched.elapsed();
                metrics::histogram!(telemetry::FOLLOWER_LAG_SECONDS).record(lag.as_secs_f64());
            }
        }
    }
}

/// The follower thread: catch up, then wait for a wake-up or the poll.
fn follow(app: &Weak<App>) {
    loop {
        let Some(app) = app.upgrade() else { return };
        let Store::Postgres(store) = &app.store else { return };
        app.catch_up(store);
        store.wait_for_commits(POLL);
    }
}
