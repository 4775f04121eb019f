//! Durable state in an embedded database (redb) in the data directory.
//!
//! One file, `headline-dedup.redb`, with three tables:
//! - `records`: (namespace, sequence number) → a headline with its
//!   assignment, evidence and quantized vector (protobuf-encoded);
//! - `redirects`: (namespace, merged story) → surviving story;
//! - `namespaces`: namespace → its settings and counters.
//!
//! Stories, the exact-text map, term counts and index graphs are derived
//! from the records when a namespace is loaded. Every batch is one
//! transaction, committed durably (fsync) before the batch is answered.
//! Opening verifies the checksums of every page of the file.

use std::path::{Path, PathBuf};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::core::engine::{Changes, Counters, PersistedRecord};
use crate::core::types::{Headline, MatchKind, StoryId};
use crate::core::vector::QuantizedVector;

const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
const REDIRECTS: TableDefinition<(&str, u64), u64> = TableDefinition::new("redirects");
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");

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

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or opened.
    #[error("data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database reported an error (I/O, corruption, a second process).
    #[error("database {path}: {message}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A stored value could not be decoded.
    #[error("database {path}: {what} is corrupt: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which value.
        what: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A stored headline, as encoded in the `records` table.
#[derive(Clone, PartialEq, prost::Message)]
struct RecordMessage {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    text: String,
    #[prost(string, optional, tag = "3")]
    source: Option<String>,
    #[prost(string, optional, tag = "4")]
    url: Option<String>,
    #[prost(sint64, tag = "5")]
    published: i64,
    #[prost(uint64, tag = "6")]
    story: u64,
    #[prost(uint32, tag = "7")]
    kind: u32,
    #[prost(uint64, optional, tag = "8")]
    matched: Option<u64>,
    #[prost(float, tag = "9")]
    similarity: f32,
    #[prost(float, tag = "10")]
    vector_similarity: f32,
    #[prost(float, tag = "11")]
    string_similarity: f32,
    #[prost(float, tag = "12")]
    story_similarity: f32,
    #[prost(float, tag = "13")]
    threshold: f32,
    #[prost(uint32, tag = "14")]
    note: u32,
    #[prost(bool, tag = "15")]
    exemplar: bool,
    /// The quantized vector (`core::vector`), one byte per dimension.
    #[prost(bytes = "vec", tag = "16")]
    vector: Vec<u8>,
}

/// A namespace's settings and counters, as encoded in the `namespaces` table.
#[derive(Clone, PartialEq, prost::Message)]
struct NamespaceMessage {
    #[prost(string, repeated, tag = "1")]
    settings: Vec<String>,
    #[prost(uint64, tag = "2")]
    next_seq: u64,
    #[prost(uint64, tag = "3")]
    next_story: u64,
    #[prost(uint64, tag = "4")]
    merges: u64,
    /// The retention clock (absent in files written before it was kept).
    #[prost(sint64, optional, tag = "5")]
    watermark: Option<i64>,
}

impl RecordMessage {
    fn from_record(r: &PersistedRecord) -> Self {
        Self {
            id: r.headline.id.clone(),
            text: r.headline.text.clone(),
            source: r.headline.source.clone(),
            url: r.headline.url.clone(),
            published: r.headline.published,
            story: r.story.0,
            kind: r.kind.code(),
            matched: r.matched,
            similarity: r.similarity,
            vector_similarity: r.vector_similarity,
            string_similarity: r.string_similarity,
            story_similarity: r.story_similarity,
            threshold: r.threshold,
            note: r.note,
            exemplar: r.exemplar,
            vector: r.vector.values().iter().map(|&v| v as u8).collect(),
        }
    }

    fn into_record(self, seq: u64) -> Result<PersistedRecord, String> {
        let kind = MatchKind::from_code(self.kind).ok_or_else(|| format!("unknown kind {}", self.kind))?;
        if self.vector.is_empty() {
            return Err("missing vector".into());
        }
        Ok(PersistedRecord {
            seq,
            headline: Headline {
                id: self.id,
                text: self.text,
                source: self.source,
                url: self.url,
                published: self.published,
            },
            story: StoryId(self.story),
            kind,
            matched: self.matched,
            similarity: self.similarity,
            vector_similarity: self.vector_similarity,
            string_similarity: self.string_similarity,
            story_similarity: self.story_similarity,
            threshold: self.threshold,
            note: self.note,
            exemplar: self.exemplar,
            vector: QuantizedVector::from_values(self.vector.iter().map(|&v| v as i8).collect()),
        })
    }
}

/// A namespace as stored, apart from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNamespace {
    /// Its name.
    pub name: String,
    /// The settings it was last written with, as `key=value`.
    pub settings: Vec<String>,
    /// Its counters.
    pub counters: Counters,
    /// Its merge redirects: from, to.
    pub redirects: Vec<(StoryId, StoryId)>,
}

/// The records of one namespace, in ascending sequence order, read and
/// decoded one at a time.
pub type Records<'a> = dyn Iterator<Item = Result<PersistedRecord, StoreError>> + 'a;

/// The durable store.
#[derive(Debug)]
pub struct Store {
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
        Err(StoreError::Corrupt { path: path.to_owned(), what: "the file".into(), message }.into())
    })
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure")
}

impl Store {
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
            .map_err(|e| StoreError::Database { path: path.clone(), message: e.to_string() })?;
        Self::with_tables(db, path)
    }

    fn open_unguarded(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory { path: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        // redb would turn an empty file into a new, empty database: refuse
        // it, as it may be a database that was truncated to nothing.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Corrupt {
                path,
                what: "the file".into(),
                message: "it is empty (truncated?); delete it only if this data directory is new".into(),
            });
        }
        let marker = dir.join(DAMAGE_MARKER);
        if marker.exists() {
            return Err(StoreError::Corrupt { path, what: "the file".into(), message: damage_explanation(&marker) });
        }
        let mut db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Database { path: path.clone(), message: e.to_string() })?;
        // Verify every page's checksum. After a crash this passes (redb
        // recovers the last commit); a damaged file is either refused or
        // repaired by rolling back to an earlier commit, which may lose
        // acknowledged headlines: that is reported, not accepted silently.
        let clean =
            db.check_integrity().map_err(|e| StoreError::Database { path: path.clone(), message: e.to_string() })?;
        if !clean {
            std::fs::write(&marker, "the database was repaired by rolling back to an earlier commit\n")
                .map_err(|source| StoreError::Directory { path: dir.to_owned(), source })?;
            return Err(StoreError::Corrupt { path, what: "the file".into(), message: damage_explanation(&marker) });
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
        }
        txn.commit().map_err(|e| store.error(e))?;
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database { path: self.path.clone(), message: e.to_string() }
    }

    fn corrupt(&self, what: String, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), what, message: message.to_string() }
    }

    /// Every namespace with all its records.
    pub fn load(&self) -> Result<Vec<(StoredNamespace, Vec<PersistedRecord>)>, StoreError> {
        self.load_with(|namespace, records| Ok((namespace, records.collect::<Result<_, _>>()?)))
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
            let meta =
                NamespaceMessage::decode(value.value()).map_err(|e| self.corrupt(format!("namespace {name:?}"), e))?;
            let mut stored = StoredNamespace {
                counters: Counters {
                    next_seq: meta.next_seq,
                    next_story: meta.next_story,
                    merges: meta.merges,
                    watermark: meta.watermark.unwrap_or(i64::MIN),
                },
                settings: meta.settings,
                redirects: Vec::new(),
                name,
            };
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

    /// Writes one batch's changes of a namespace in one durable transaction.
    pub fn commit(&self, namespace: &str, settings: &[String], changes: &Changes) -> Result<(), StoreError> {
        guarded(&self.path, || self.commit_unguarded(namespace, settings, changes))
    }

    fn commit_unguarded(&self, namespace: &str, settings: &[String], changes: &Changes) -> Result<(), StoreError> {
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
            let meta = NamespaceMessage {
                settings: settings.to_vec(),
                next_seq: changes.counters.next_seq,
                next_story: changes.counters.next_story,
                merges: changes.counters.merges,
                watermark: Some(changes.counters.watermark),
            };
            let mut namespaces = txn.open_table(NAMESPACES).map_err(|e| self.error(e))?;
            namespaces.insert(namespace, meta.encode_to_vec().as_slice()).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            counters: Counters { next_seq: 3, next_story: 4, merges: 1, watermark: 1_002 },
        };
        store.commit("default", &["story_threshold=0.3".into()], &changes).expect("commit");
        store
            .commit(
                "default",
                &[],
                &Changes {
                    removed: vec![(1, 1001)],
                    dropped_redirects: vec![StoryId(5)],
                    counters: changes.counters,
                    ..Changes::default()
                },
            )
            .expect("commit");
        drop(store);
        let loaded = Store::open(dir.path()).expect("reopen").load().expect("load");
        assert_eq!(loaded.len(), 1);
        let (ns, records) = &loaded[0];
        assert_eq!(ns.name, "default");
        assert_eq!(records, &vec![record(0), record(2)]);
        assert_eq!(ns.redirects, vec![(StoryId(3), StoryId(1))]);
        assert_eq!(ns.counters, changes.counters);
    }

    #[test]
    fn a_corrupt_record_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.commit("default", &[], &Changes { added: vec![record(0)], ..Changes::default() }).expect("commit");
        let txn = store.db.begin_write().expect("write");
        {
            let mut records = txn.open_table(RECORDS).expect("table");
            records.insert(("default", 7), [0xff, 0xff, 0xff].as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
        let err = store.load().expect_err("corrupt");
        assert!(err.to_string().contains("record default/7 is corrupt"), "{err}");
    }
}
