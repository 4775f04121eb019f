//! Durable state: the facts of every namespace, in an embedded database
//! (redb, the default, [`redb`]) or in PostgreSQL ([`postgres`], where
//! several nodes share them and one at a time leads each namespace).
//!
//! Both keep the same facts, encoded the same way:
//! - records: (namespace, sequence number) → a headline with its
//!   assignment, evidence and quantized vector (protobuf-encoded);
//! - redirects: (namespace, merged story) → surviving story;
//! - namespaces: namespace → its settings and counters;
//! - story changes: (namespace, number) → an entry of its story change
//!   feed, the latest `change_feed_length` of them.
//!
//! Stories, the exact-text map, term counts and index graphs are derived
//! from the records when a namespace is loaded. Every batch is one
//! transaction, committed durably before the batch is answered.

pub mod postgres;
pub mod redb;

use std::path::{Path, PathBuf};

use crate::core::engine::{Changes, Counters, PersistedRecord};
use crate::core::types::{ChangeKind, ChangePage, Headline, MatchKind, Removal, StoryChange, StoryId};
use crate::core::vector::QuantizedVector;

pub use self::postgres::{Commit, Followed, PostgresOptions, PostgresStore};
pub use self::redb::{DAMAGE_MARKER, DB_FILE, RedbStore};

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
    /// The database reported an error (I/O, corruption, a second process,
    /// a lost connection).
    #[error("database {place}: {message}")]
    Database {
        /// The database file, or the PostgreSQL server.
        place: String,
        /// What went wrong.
        message: String,
    },
    /// A stored value could not be decoded.
    #[error("database {place}: {what} is corrupt: {message}")]
    Corrupt {
        /// The database file, or the PostgreSQL server.
        place: String,
        /// Which value.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// Another node leads the namespace: only it may write.
    #[error("namespace {namespace:?} is led by another node ({leader})")]
    NotLeader {
        /// The namespace.
        namespace: String,
        /// Where the leader says it can be reached.
        leader: String,
    },
}

/// A stored headline, as encoded in the `records` table.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RecordMessage {
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
pub(crate) struct NamespaceMessage {
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
    /// The change feed's next number (absent before the feed was kept).
    #[prost(uint64, optional, tag = "6")]
    next_change: Option<u64>,
    /// The settings the namespace holds as its own (`StoredSettings::own`).
    #[prost(string, repeated, tag = "7")]
    own_settings: Vec<String>,
}

/// An entry of a namespace's story change feed, as encoded in the
/// `story_changes` table.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StoryChangeMessage {
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(uint64, tag = "2")]
    story: u64,
    #[prost(uint64, optional, tag = "3")]
    merged_into: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    removal: Option<u32>,
    #[prost(uint64, tag = "5")]
    size: u64,
    #[prost(string, tag = "6")]
    canonical_headline_id: String,
    #[prost(string, tag = "7")]
    canonical_text: String,
    #[prost(sint64, tag = "8")]
    first_seen: i64,
    #[prost(sint64, tag = "9")]
    last_seen: i64,
}

impl StoryChangeMessage {
    pub(crate) fn from_change(c: &StoryChange) -> Self {
        Self {
            kind: c.kind.code(),
            story: c.story.0,
            merged_into: c.merged_into.map(|id| id.0),
            removal: c.removal.map(Removal::code),
            size: c.size as u64,
            canonical_headline_id: c.canonical_headline_id.clone(),
            canonical_text: c.canonical_text.clone(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
        }
    }

    pub(crate) fn into_change(self, seq: u64) -> Result<StoryChange, String> {
        let kind = ChangeKind::from_code(self.kind).ok_or_else(|| format!("unknown change kind {}", self.kind))?;
        let removal = self
            .removal
            .map(|code| Removal::from_code(code).ok_or_else(|| format!("unknown removal {code}")))
            .transpose()?;
        Ok(StoryChange {
            seq,
            kind,
            story: StoryId(self.story),
            merged_into: self.merged_into.map(StoryId),
            removal,
            size: usize::try_from(self.size).unwrap_or(usize::MAX),
            canonical_headline_id: self.canonical_headline_id,
            canonical_text: self.canonical_text,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        })
    }
}

impl RecordMessage {
    pub(crate) fn from_record(r: &PersistedRecord) -> Self {
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

    pub(crate) fn into_record(self, seq: u64) -> Result<PersistedRecord, String> {
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

/// The settings a namespace is stored with, as `key=value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSettings {
    /// Every setting, as the namespace was last written with it.
    pub effective: Vec<String>,
    /// The ones set for it at run time (CreateNamespace, UpdateNamespace),
    /// in the order set: they outlive restarts, where the others follow
    /// the server's configuration.
    pub own: Vec<String>,
}

/// A namespace as stored, apart from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNamespace {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: StoredSettings,
    /// Its counters.
    pub counters: Counters,
    /// Its merge redirects: from, to.
    pub redirects: Vec<(StoryId, StoryId)>,
    /// Its commits so far, where the store counts them (PostgreSQL; 0 in
    /// the embedded store): where a follower's change log resumes.
    pub version: u64,
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Namespaces.
    pub namespaces: usize,
    /// Headlines, over every namespace.
    pub headlines: u64,
}

/// Records written to a backup per transaction.
const BACKUP_CHUNK: usize = 8192;

/// The records of one namespace, in ascending sequence order, read and
/// decoded one at a time.
pub type Records<'a> = dyn Iterator<Item = Result<PersistedRecord, StoreError>> + 'a;

impl NamespaceMessage {
    pub(crate) fn new(settings: &StoredSettings, counters: &Counters) -> Self {
        Self {
            settings: settings.effective.clone(),
            own_settings: settings.own.clone(),
            next_seq: counters.next_seq,
            next_story: counters.next_story,
            merges: counters.merges,
            watermark: Some(counters.watermark),
            next_change: Some(counters.next_change),
        }
    }

    /// The namespace `name` as stored, with no redirects yet.
    pub(crate) fn into_stored(self, name: String) -> StoredNamespace {
        StoredNamespace {
            counters: Counters {
                next_seq: self.next_seq,
                next_story: self.next_story,
                merges: self.merges,
                watermark: self.watermark.unwrap_or(i64::MIN),
                next_change: self.next_change.unwrap_or(1),
            },
            settings: StoredSettings { effective: self.settings, own: self.own_settings },
            redirects: Vec::new(),
            version: 0,
            name,
        }
    }
}

/// Whether this node may write a namespace, as [`Store::lead`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// It already led the namespace: its memory is current.
    Held,
    /// It has just become the leader: what it holds in memory may be older
    /// than the store, so it must rebuild the namespace from the store
    /// before it writes.
    Acquired,
}

/// The durable store: one of the two implementations.
#[derive(Debug)]
pub enum Store {
    /// The embedded database in a data directory (or in memory).
    Redb(RedbStore),
    /// PostgreSQL, shared by several nodes.
    Postgres(Box<PostgresStore>),
}

impl Store {
    /// Opens (or creates) the embedded store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        RedbStore::open(dir).map(Self::Redb)
    }

    /// An embedded store that keeps everything in memory (`--in-memory`,
    /// tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        RedbStore::in_memory().map(Self::Redb)
    }

    /// Connects to PostgreSQL and creates the schema if it is missing.
    pub fn postgres(options: PostgresOptions) -> Result<Self, StoreError> {
        PostgresStore::connect(options).map(|store| Self::Postgres(Box::new(store)))
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
        match self {
            Self::Redb(store) => store.load_with(restore),
            Self::Postgres(store) => store.load_with(restore),
        }
    }

    /// Reads one namespace like [`Store::load_with`]; `None` if it was
    /// never committed.
    pub fn load_namespace<T, E: From<StoreError>>(
        &self,
        name: &str,
        restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        match self {
            Self::Redb(store) => store.load_namespace(name, restore),
            Self::Postgres(store) => store.load_namespace(name, restore),
        }
    }

    /// Makes sure this node may write `namespace`, becoming its leader if
    /// no live node is; [`StoreError::NotLeader`] if another one is. The
    /// embedded store has one writer, always.
    pub fn lead(&self, namespace: &str) -> Result<Lead, StoreError> {
        match self {
            Self::Redb(_) => Ok(Lead::Held),
            Self::Postgres(store) => store.lead(namespace),
        }
    }

    /// Writes one batch's changes of a namespace in one durable
    /// transaction; the namespace's version after it (see
    /// [`StoredNamespace::version`]). On PostgreSQL the transaction is
    /// fenced: it commits only if this node still leads the namespace.
    pub fn commit(&self, namespace: &str, settings: &StoredSettings, changes: &Changes) -> Result<u64, StoreError> {
        match self {
            Self::Redb(store) => store.commit(namespace, settings, changes).map(|()| 0),
            Self::Postgres(store) => store.commit(namespace, settings, changes),
        }
    }

    /// Removes a namespace and everything it holds, in one transaction (on
    /// PostgreSQL fenced like a commit).
    pub fn delete_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        match self {
            Self::Redb(store) => store.delete_namespace(namespace),
            Self::Postgres(store) => store.delete_namespace(namespace),
        }
    }

    /// Up to `limit` entries of a namespace's story change feed after
    /// number `after`, with the range still stored, read in one
    /// transaction; `None` if the namespace was never committed.
    pub fn story_changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Option<ChangePage>, StoreError> {
        match self {
            Self::Redb(store) => store.story_changes(namespace, after, limit),
            Self::Postgres(store) => store.story_changes(namespace, after, limit),
        }
    }

    /// Writes a snapshot of every namespace into a new embedded store in
    /// `dir` (missing or empty): every batch committed before the call,
    /// none in part, read in one transaction as the store is read at start
    /// while writers go on. The copy is an embedded database whichever
    /// store this is, so `serve --data-dir` restores it. The change feed's
    /// entries are not copied: the copy's feed goes on from the snapshot's
    /// latest number.
    pub fn back_up(&self, dir: &Path) -> Result<Snapshot, StoreError> {
        let copy = RedbStore::open(dir)?;
        let mut snapshot = Snapshot::default();
        self.load_with(|stored, records| {
            let mut changes =
                Changes { redirects: stored.redirects.clone(), counters: stored.counters, ..Changes::default() };
            for record in records {
                changes.added.push(record?);
                if changes.added.len() == BACKUP_CHUNK {
                    copy.commit(&stored.name, &stored.settings, &changes)?;
                    snapshot.headlines += changes.added.len() as u64;
                    changes.added.clear();
                    changes.redirects.clear();
                }
            }
            copy.commit(&stored.name, &stored.settings, &changes)?;
            snapshot.headlines += changes.added.len() as u64;
            snapshot.namespaces += 1;
            Ok::<(), StoreError>(())
        })?;
        Ok(snapshot)
    }

    /// What the embedded store in `dir` holds, checked as `serve` checks
    /// it at start: every page's checksum, every namespace and record
    /// decoded.
    pub fn verify_backup(dir: &Path) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        RedbStore::open(dir)?.load_with(|_, records| {
            for record in records {
                record?;
                snapshot.headlines += 1;
            }
            snapshot.namespaces += 1;
            Ok::<(), StoreError>(())
        })?;
        Ok(snapshot)
    }

    /// Where scratch files of this store go: beside the database file of
    /// an embedded store on disk (the same file system), else the system's
    /// temporary directory.
    pub fn scratch_dir(&self) -> PathBuf {
        match self {
            Self::Redb(store) => store.dir().unwrap_or_else(std::env::temp_dir),
            Self::Postgres(_) => std::env::temp_dir(),
        }
    }

    /// Gives up every namespace this node leads, so that another node takes
    /// them over at once (at an orderly shutdown).
    pub fn release(&self) {
        if let Self::Postgres(store) = self {
            store.release();
        }
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure")
}
