//! The embedded store: one redb file, `headline-dedup.redb`, in the data
//! directory, with the tables `records`, `redirects`, `namespaces` and
//! `story_changes`.
//! Every batch is one transaction, committed durably (fsync) before the
//! batch is answered. Opening verifies the checksums of every page of the
//! file.

use std::path::{Path, PathBuf};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    NamespaceMessage, RecordMessage, Records, StoreError, StoredNamespace, StoredSettings, StoryChangeMessage,
    panic_message,
};
use crate::core::engine::Changes;
use crate::core::types::{ChangePage, StoryId};

const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const REDIRECTS: TableDefinition<(&str, u64), u64> = TableDefinition::new("redirects");
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
const STORY_CHANGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("story_changes");

/// The database file inside the data directory.
pub const DB_FILE: &str = "headline-dedup.redb";

/// The database's page cache. Everything the service answers from is in
/// the engines' memory; the database is written once per batch and read
/// whole only at start, so a large cache (redb's default is 1 GiB) would
/// only hold pages the service does not read again.
const CACHE_BYTES: usize = 32 << 20;
/// Left in the data directory when the database had to be repaired by
/// rolling back: the service then refuses to start until an operator has
/// looked (restored a backup, or accepted the repaired state by deleting it).
pub const DAMAGE_MARKER: &str = "DAMAGED";

/// The embedded store.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

fn damage_explanation(marker: &Path) -> String {
    format!(
        "it was damaged and had to be rolled back to an earlier commit, so acknowledged headlines may be \
         missing; restore the data directory from a backup, or delete {} to accept the repaired state",
        marker.display()
    )
}

/// Runs a database operation, turning a panic inside the database library
/// (which it can raise on some damaged files) into an error.
fn guarded<T, E: From<StoreError>>(path: &Path, operation: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(operation)).unwrap_or_else(|payload| {
        let message = panic_message(payload.as_ref()).to_owned();
        Err(StoreError::Corrupt { place: path.display().to_string(), what: "the file".into(), message }.into())
    })
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        guarded(&dir.join(DB_FILE), || Self::open_unguarded(dir))
    }

    /// A store that keeps everything in memory (`--in-memory`, tests): the
    /// same tables and transactions as on disk, so that a namespace is
    /// committed and rebuilt the same way, without a file.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from("(memory)");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError::Database { place: path.display().to_string(), message: e.to_string() })?;
        Self::with_tables(db, path)
    }

    fn open_unguarded(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory { path: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        // redb would turn an empty file into a new, empty database: refuse
        // it, as it may be a database that was truncated to nothing.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Corrupt {
                place: path.display().to_string(),
                what: "the file".into(),
                message: "it is empty (truncated?); delete it only if this data directory is new".into(),
            });
        }
        let marker = dir.join(DAMAGE_MARKER);
        if marker.exists() {
            return Err(StoreError::Corrupt {
                place: path.display().to_string(),
                what: "the file".into(),
                message: damage_explanation(&marker),
            });
        }
        let mut db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Database { place: path.display().to_string(), message: e.to_string() })?;
        // Verify every page's checksum. After a crash this passes (redb
        // recovers the last commit); a damaged file is either refused or
        // repaired by rolling back to an earlier commit, which may lose
        // acknowledged headlines: that is reported, not accepted silently.
        let clean = db
            .check_integrity()
            .map_err(|e| StoreError::Database { place: path.display().to_string(), message: e.to_string() })?;
        if !clean {
            std::fs::write(&marker, "the database was repaired by rolling back to an earlier commit\n")
                .map_err(|source| StoreError::Directory { path: dir.to_owned(), source })?;
            return Err(StoreError::Corrupt {
                place: path.display().to_string(),
                what: "the file".into(),
                message: damage_explanation(&marker),
            });
        }
        Self::with_tables(db, path)
    }

    /// Creates the tables, so that reads never meet a missing table.
    fn with_tables(db: Database, path: PathBuf) -> Result<Self, StoreError> {
        let store = Self { db, path };
        let txn = store.db.begin_write().map_err(|e| store.error(e))?;
        {
            txn.open_table(RECORDS).map_err(|e| store.error(e))?;
            txn.open_table(REDIRECTS).map_err(|e| store.error(e))?;
            txn.open_table(NAMESPACES).map_err(|e| store.error(e))?;
            txn.open_table(STORY_CHANGES).map_err(|e| store.error(e))?;
        }
        txn.commit().map_err(|e| store.error(e))?;
        Ok(store)
    }

    /// The data directory, for a store on disk.
    pub fn dir(&self) -> Option<PathBuf> {
        self.path.parent().filter(|dir| !dir.as_os_str().is_empty()).map(Path::to_path_buf)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database { place: self.path.display().to_string(), message: e.to_string() }
    }

    fn corrupt(&self, what: String, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { place: self.path.display().to_string(), what, message: message.to_string() }
    }

    /// Reads every namespace, handing `restore` each one with its records
    /// as they are decoded (it may leave them unread), and returns what it
    /// makes of them; the first error, of the store or of `restore`, ends
    /// the load.
    pub fn load_with<T, E: From<StoreError>>(
        &self,
        restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        guarded(&self.path, || self.load_unguarded(restore))
    }

    fn load_unguarded<T, E: From<StoreError>>(
        &self,
        mut restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
        let mut names = Vec::new();
        for entry in namespaces.iter().map_err(|e| self.error(e))? {
            let (name, _) = entry.map_err(|e| self.error(e))?;
            names.push(name.value().to_owned());
        }
        names.iter().filter_map(|name| self.read_namespace(&txn, name, &mut restore).transpose()).collect()
    }

    /// Reads one namespace like [`Store::load_with`]; `None` if it was
    /// never committed.
    pub fn load_namespace<T, E: From<StoreError>>(
        &self,
        name: &str,
        mut restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        guarded(&self.path, || {
            let txn = self.db.begin_read().map_err(|e| self.error(e))?;
            self.read_namespace(&txn, name, &mut restore)
        })
    }

    fn read_namespace<T, E: From<StoreError>>(
        &self,
        txn: &redb::ReadTransaction,
        name: &str,
        restore: &mut impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
        let redirects = txn.open_table(REDIRECTS).map_err(|e| self.error(e))?;
        {
            let Some(value) = namespaces.get(name).map_err(|e| self.error(e))? else { return Ok(None) };
            let name = name.to_owned();
            let mut stored = NamespaceMessage::decode(value.value())
                .map_err(|e| self.corrupt(format!("namespace {name:?}"), e))?
                .into_stored(name);
            let name = stored.name.clone();
            for entry in redirects.range((name.as_str(), 0)..=(name.as_str(), u64::MAX)).map_err(|e| self.error(e))? {
                let (key, value) = entry.map_err(|e| self.error(e))?;
                stored.redirects.push((StoryId(key.value().1), StoryId(value.value())));
            }
            let mut decoded = records
                .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                .map_err(|e| self.error(e))?
                .map(|entry| {
                    let (key, value) = entry.map_err(|e| self.error(e))?;
                    let seq = key.value().1;
                    let what = || format!("record {name}/{seq}");
                    let message = RecordMessage::decode(value.value()).map_err(|e| self.corrupt(what(), e))?;
                    message.into_record(seq).map_err(|e| self.corrupt(what(), e))
                });
            restore(stored, &mut decoded).map(Some)
        }
    }

    /// Up to `limit` entries of a namespace's change feed after `after`
    /// (see [`super::Store::story_changes`]).
    pub fn story_changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Option<ChangePage>, StoreError> {
        guarded(&self.path, || {
            let txn = self.db.begin_read().map_err(|e| self.error(e))?;
            let namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
            let Some(value) = namespaces.get(namespace).map_err(|e| self.error(e))? else { return Ok(None) };
            let counters = NamespaceMessage::decode(value.value())
                .map_err(|e| self.corrupt(format!("namespace {namespace:?}"), e))?
                .into_stored(namespace.to_owned())
                .counters;
            let latest = counters.next_change.saturating_sub(1);
            let feed = txn.open_table(STORY_CHANGES).map_err(|e| self.error(e))?;
            let range = |from: u64| feed.range((namespace, from)..=(namespace, u64::MAX)).map_err(|e| self.error(e));
            let earliest = match range(0)?.next() {
                Some(entry) => entry.map_err(|e| self.error(e))?.0.value().1,
                None => latest + 1,
            };
            let mut changes = Vec::new();
            for entry in range(after.saturating_add(1))?.take(limit) {
                let (key, value) = entry.map_err(|e| self.error(e))?;
                let seq = key.value().1;
                let what = || format!("story change {namespace}/{seq}");
                let message = StoryChangeMessage::decode(value.value()).map_err(|e| self.corrupt(what(), e))?;
                changes.push(message.into_change(seq).map_err(|e| self.corrupt(what(), e))?);
            }
            Ok(Some(ChangePage { changes, earliest, latest }))
        })
    }

    /// Writes one batch's changes of a namespace in one durable transaction.
    pub fn commit(&self, namespace: &str, settings: &StoredSettings, changes: &Changes) -> Result<(), StoreError> {
        guarded(&self.path, || self.commit_unguarded(namespace, settings, changes))
    }

    fn commit_unguarded(
        &self,
        namespace: &str,
        settings: &StoredSettings,
        changes: &Changes,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
            for record in &changes.added {
                let bytes = RecordMessage::from_record(record).encode_to_vec();
                records.insert((namespace, record.seq), bytes.as_slice()).map_err(|e| self.error(e))?;
            }
            for &(seq, _) in &changes.removed {
                records.remove((namespace, seq)).map_err(|e| self.error(e))?;
            }
            let mut redirects = txn.open_table(REDIRECTS).map_err(|e| self.error(e))?;
            for &(from, to) in &changes.redirects {
                redirects.insert((namespace, from.0), to.0).map_err(|e| self.error(e))?;
            }
            for from in &changes.dropped_redirects {
                redirects.remove((namespace, from.0)).map_err(|e| self.error(e))?;
            }
            let mut feed = txn.open_table(STORY_CHANGES).map_err(|e| self.error(e))?;
            for change in &changes.story_changes {
                let bytes = StoryChangeMessage::from_change(change).encode_to_vec();
                feed.insert((namespace, change.seq), bytes.as_slice()).map_err(|e| self.error(e))?;
            }
            feed.retain_in((namespace, 0)..(namespace, changes.story_changes_from), |_, _| false)
                .map_err(|e| self.error(e))?;
            let meta = NamespaceMessage::new(settings, &changes.counters);
            let mut namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
            namespaces.insert(namespace, meta.encode_to_vec().as_slice()).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Removes a namespace and everything it holds, in one durable
    /// transaction.
    pub fn delete_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        guarded(&self.path, || {
            let txn = self.db.begin_write().map_err(|e| self.error(e))?;
            {
                let all = (namespace, 0)..=(namespace, u64::MAX);
                let mut records = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
                records.retain_in(all.clone(), |_, _| false).map_err(|e| self.error(e))?;
                let mut redirects = txn.open_table(REDIRECTS).map_err(|e| self.error(e))?;
                redirects.retain_in(all.clone(), |_, _| false).map_err(|e| self.error(e))?;
                let mut feed = txn.open_table(STORY_CHANGES).map_err(|e| self.error(e))?;
                feed.retain_in(all, |_, _| false).map_err(|e| self.error(e))?;
                let mut namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
                namespaces.remove(namespace).map_err(|e| self.error(e))?;
            }
            txn.commit().map_err(|e| self.error(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{Counters, PersistedRecord};
    use crate::core::types::{ChangeKind, Headline, MatchKind, StoryChange};
    use crate::core::vector::QuantizedVector;
    use crate::store::Store;

    fn record(seq: u64) -> PersistedRecord {
        PersistedRecord {
            seq,
            headline: Headline {
                id: format!("h{seq}"),
                text: "Fed raises rates".into(),
                source: Some("Reuters".into()),
                url: None,
                published: 1_000 + seq as i64,
            },
            story: StoryId(1),
            kind: MatchKind::NewStory,
            matched: None,
            similarity: 0.0,
            vector_similarity: 0.0,
            string_similarity: 0.0,
            story_similarity: 0.1,
            threshold: 0.3,
            note: 4,
            exemplar: true,
            vector: QuantizedVector::new(&[0.6, -0.8]),
        }
    }

    #[test]
    fn committed_changes_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let changes = Changes {
            added: vec![record(0), record(1), record(2)],
            removed: vec![],
            redirects: vec![(StoryId(3), StoryId(1)), (StoryId(5), StoryId(1))],
            dropped_redirects: vec![],
            story_changes: vec![
                StoryChange { canonical_text: "Fed raises rates".into(), size: 3, ..created(1) },
                StoryChange { merged_into: Some(StoryId(1)), ..StoryChange::gone(2, ChangeKind::Merged, StoryId(3)) },
            ],
            story_changes_from: 1,
            counters: Counters { next_seq: 3, next_story: 4, merges: 1, watermark: 1_002, next_change: 3 },
        };
        let settings =
            StoredSettings { effective: vec!["story_threshold=0.4".into()], own: vec!["story_threshold=0.4".into()] };
        store.commit("default", &StoredSettings::default(), &changes).expect("commit");
        store
            .commit(
                "default",
                &settings,
                &Changes {
                    removed: vec![(1, 1001)],
                    dropped_redirects: vec![StoryId(5)],
                    story_changes: vec![created(3)],
                    story_changes_from: 2,
                    counters: Counters { next_change: 4, ..changes.counters },
                    ..Changes::default()
                },
            )
            .expect("commit");
        drop(store);
        let loaded = Store::open(dir.path()).expect("reopen").load().expect("load");
        assert_eq!(loaded.len(), 1);
        let (ns, records) = &loaded[0];
        assert_eq!(ns.name, "default");
        assert_eq!(ns.settings, settings, "the last commit's settings");
        assert_eq!(records, &vec![record(0), record(2)]);
        assert_eq!(ns.redirects, vec![(StoryId(3), StoryId(1))]);
        assert_eq!(ns.counters, Counters { next_change: 4, ..changes.counters });
        let store = Store::open(dir.path()).expect("reopen");
        let page = store.story_changes("default", 0, 10).expect("read").expect("stored");
        assert_eq!((page.earliest, page.latest), (2, 3), "entry 1 was trimmed");
        assert_eq!(page.changes, vec![changes.story_changes[1].clone(), created(3)]);
        assert_eq!(store.story_changes("default", 2, 10).expect("read").map(|p| p.changes), Some(vec![created(3)]));
        assert_eq!(store.story_changes("other", 0, 10).expect("read"), None);
        store.commit("other", &settings, &changes).expect("commit");
        let Store::Redb(redb) = &store else { panic!("an embedded store") };
        redb.delete_namespace("default").expect("delete");
        let loaded = store.load().expect("load");
        assert_eq!(
            loaded.iter().map(|(ns, records)| (ns.name.as_str(), records.len())).collect::<Vec<_>>(),
            [("other", changes.added.len())]
        );
        assert_eq!(store.story_changes("default", 0, 10).expect("read"), None);
        assert_eq!(
            store.story_changes("other", 0, 10).expect("read").map(|p| p.changes),
            Some(changes.story_changes.clone())
        );
    }

    fn created(seq: u64) -> StoryChange {
        StoryChange {
            canonical_headline_id: "h0".into(),
            first_seen: 1_000,
            last_seen: 1_002,
            size: 1,
            ..StoryChange::gone(seq, ChangeKind::Created, StoryId(1))
        }
    }

    #[test]
    fn a_corrupt_record_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Ok(Store::Redb(store)) = Store::open(dir.path()) else { panic!("an embedded store") };
        store
            .commit("default", &StoredSettings::default(), &Changes { added: vec![record(0)], ..Changes::default() })
            .expect("commit");
        let txn = store.db.begin_write().expect("write");
        {
            let mut records = txn.open_table(RECORDS).expect("table");
            records.insert(("default", 7), [0xff, 0xff, 0xff].as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        let err = Store::Redb(store).load().expect_err("corrupt");
        assert!(err.to_string().contains("record default/7 is corrupt"), "{err}");
    }
}
