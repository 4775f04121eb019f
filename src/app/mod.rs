//! The application: a registry of namespaces, each with its engine, its
//! settings and its queue of ingest batches, all kept in one store.
//! Synchronous and free of gRPC types; the API layer runs these calls off
//! the async executor.
//!
//! Nothing a request does can leave a namespace unusable: a panic while a
//! batch is applied fails that batch alone (the rest of its group is
//! applied again on the namespace as the store holds it), a failed commit
//! throws the namespace's memory away and rebuilds it from the store, and
//! a namespace that cannot be rebuilt answers UNAVAILABLE, is tried again
//! on its next call, and turns the service's health NOT_SERVING until then.

mod admin;
mod follow;
mod queue;
mod settings_book;

pub use admin::NamespaceInfo;
use settings_book::merge_own;
pub use settings_book::{SettingsBook, setting_key};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use queue::{Queue, Reply};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{error, info};

use crate::core::embed::{StaticModel, embedder_for};
use crate::core::engine::Engine;
use crate::core::error::CoreError;
use crate::core::settings::Settings;
use crate::core::types::{
    Assignment, Candidate, ChangePage, Headline, ItemError, Stats, StoredHeadline, StoryChange, StoryCursor, StoryId,
    StoryOrder, StoryQuery, StoryView,
};
use crate::store::{Lead, Records, Snapshot, Store, StoreError, StoredNamespace, StoredSettings, panic_message};
use crate::telemetry;

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The most namespaces a server holds unless told otherwise.
pub const DEFAULT_MAX_NAMESPACES: u32 = 1000;

/// The story changes kept in memory for a namespace's watchers unless told
/// otherwise: a watcher that falls this far behind is ended.
pub const DEFAULT_WATCH_BUFFER: u32 = 1024;

/// Errors of the application layer. The API maps each to a gRPC status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppError {
    /// A request field is malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field path.
        field: String,
        /// Why.
        reason: String,
    },
    /// The namespace has never been written to.
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),
    /// No such story (or it lost all its members).
    #[error("story {0:?} not found")]
    StoryNotFound(String),
    /// No such headline.
    #[error("headline {0:?} not found")]
    HeadlineNotFound(String),
    /// A server limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The change could not be made durable, or the namespace could not be
    /// read from the store; nothing was applied.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The server is shutting down: it takes no new watchers.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The service failed while answering; nothing was applied.
    #[error("internal error: {0}")]
    Internal(String),
    /// A change feed position that is not stored: trimmed, or not written
    /// yet.
    #[error("{reason}")]
    OutOfRange {
        /// Why.
        reason: String,
        /// The earliest entry still stored.
        earliest: u64,
        /// The latest entry written.
        latest: u64,
    },
    /// CreateNamespace named a namespace that exists.
    #[error("namespace {0:?} already exists")]
    NamespaceExists(String),
    /// The change cannot be made in the namespace's present state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another node leads the namespace (PostgreSQL): a write goes there;
    /// nothing was applied here.
    #[error("namespace {namespace:?} is led by another node ({leader})")]
    NotLeader {
        /// The namespace.
        namespace: String,
        /// Where the leader can be reached ("" while none is known).
        leader: String,
    },
}

impl AppError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// A setting refused, named as a field of the request's `settings`.
    fn setting(error: CoreError) -> Self {
        match error {
            CoreError::InvalidSetting { key, reason } => Self::invalid(format!("settings.{key}"), reason),
            CoreError::UnknownSetting(key) => Self::invalid(format!("settings.{key}"), "unknown setting"),
            other => Self::invalid("settings", other.to_string()),
        }
    }

    /// A store failure, as callers see it.
    fn store(error: StoreError) -> Self {
        match error {
            StoreError::NotLeader { namespace, leader } => Self::NotLeader { namespace, leader },
            other => Self::Unavailable(other.to_string()),
        }
    }

    /// The class of the failure, which the edge turns into one gRPC code
    /// and one HTTP status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::NamespaceNotFound(_) | Self::StoryNotFound(_) | Self::HeadlineNotFound(_) => ErrorCode::NotFound,
            Self::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Self::OutOfRange { .. } => ErrorCode::OutOfRange,
            Self::NamespaceExists(_) => ErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Self::Unavailable(_) | Self::ShuttingDown | Self::NotLeader { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The classes of failure clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; a field is named.
    InvalidArgument,
    /// The namespace, story or headline does not exist.
    NotFound,
    /// A limit was reached; retry later or ask less.
    ResourceExhausted,
    /// A position outside what is stored.
    OutOfRange,
    /// What the call would create exists.
    AlreadyExists,
    /// The state does not allow the change.
    FailedPrecondition,
    /// The store cannot take or give the data now; retry.
    Unavailable,
    /// The service failed; nothing was applied.
    Internal,
}

fn embedder_specs(settings: &Settings) -> String {
    format!(
        "embedder={} semantic_weight={} lexical_dim={} idf_power={}",
        settings.embedder.name(),
        settings.semantic_weight,
        settings.lexical_dim,
        settings.idf_power
    )
}

/// Checks a namespace name: 1 to 64 of `a-z 0-9 _ -`.
pub fn validate_namespace(name: &str) -> Result<(), AppError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(AppError::invalid("namespace", "must be 1 to 64 characters of a-z, 0-9, '_' and '-'")) }
}

/// The namespace a request names ("" is the default one).
pub fn namespace_or_default(name: &str) -> Result<&str, AppError> {
    if name.is_empty() {
        return Ok(DEFAULT_NAMESPACE);
    }
    validate_namespace(name)?;
    Ok(name)
}

/// The answers to one ingest batch, in its order.
pub type Answers = Vec<Result<Assignment, ItemError>>;

/// One ingest batch, as validated at the edge.
type Batch = Vec<Result<Headline, ItemError>>;

/// A namespace's engine with the store's version of the namespace it
/// reflects (see [`crate::store::StoredNamespace::version`]), or why it has
/// none right now.
enum Slot {
    Ready(Box<Engine>, u64),
    /// Thrown away (after a failed commit or apply) and not yet rebuilt.
    Broken(String),
    /// The namespace was deleted: a call that still holds it finds it gone.
    Deleted,
}

/// One namespace: its engine, and the ingest batches waiting for it.
///
/// Ingest batches commit in groups (see [`Queue`]): the drainer applies
/// every queued batch in queue order, makes them durable in one
/// transaction and answers them all. Each batch is applied exactly as if it
/// came alone, but concurrent callers share one commit (one fsync).
struct Namespace {
    engine: Mutex<Slot>,
    queue: Queue<Batch, Result<Answers, AppError>>,
    /// The story changes of each commit, to the namespace's watchers.
    feed: Feed,
}

impl Namespace {
    fn new(engine: Engine, version: u64) -> Arc<Self> {
        Arc::new(Self {
            engine: Mutex::new(Slot::Ready(Box::new(engine), version)),
            queue: Queue::default(),
            feed: Feed::default(),
        })
    }

    /// The engine's slot. Every change to an engine runs under
    /// `catch_unwind` and is undone by a rebuild if it fails, so a poisoned
    /// lock can only come from a bug outside that: the engine is then
    /// thrown away, to be rebuilt from the store.
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.engine.lock().unwrap_or_else(|poisoned: PoisonError<_>| {
            let mut slot = poisoned.into_inner();
            *slot = Slot::Broken("a request failed while holding the namespace".into());
            self.engine.clear_poison();
            slot
        })
    }
}

/// A namespace's story changes on their way to its watchers: a ring of the
/// latest entries, which exists only while somebody watches. Publishing
/// never waits; a watcher that falls a whole ring behind learns it on its
/// next receive.
#[derive(Default)]
struct Feed(Mutex<Option<broadcast::Sender<StoryChange>>>);

impl Feed {
    fn sender(&self) -> MutexGuard<'_, Option<broadcast::Sender<StoryChange>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of every entry published from now on, with a ring of
    /// `capacity` entries (when it is the first).
    fn subscribe(&self, capacity: usize) -> broadcast::Receiver<StoryChange> {
        let mut sender = self.sender();
        match &*sender {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(capacity.max(1));
                *sender = Some(tx);
                rx
            }
        }
    }

    /// Hands committed entries to the watchers; the ring goes with the
    /// last of them.
    fn publish(&self, changes: &[StoryChange]) {
        let mut sender = self.sender();
        let Some(tx) = &*sender else { return };
        if tx.receiver_count() == 0 {
            *sender = None;
            return;
        }
        for change in changes {
            let _ = tx.send(change.clone());
        }
    }

    /// Lets every watcher go: each receives what was published, then the
    /// end of the feed.
    fn close(&self) {
        *self.sender() = None;
    }
}

/// Which namespaces cannot be served, and the health that follows: SERVING
/// while every namespace can.
struct Health {
    broken: Mutex<BTreeSet<String>>,
    serving: watch::Sender<bool>,
}

impl Health {
    fn mark(&self, namespace: &str, broken: Option<&str>) {
        let mut set = self.broken.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match broken {
            Some(_) => set.insert(namespace.to_owned()),
            None => set.remove(namespace),
        };
        if !changed {
            return;
        }
        match broken {
            Some(reason) => error!(namespace, reason, "namespace cannot be served; health is NOT_SERVING"),
            None => info!(namespace, "namespace rebuilt from the store"),
        }
        let serving = set.is_empty();
        if self.serving.send_replace(serving) != serving && serving {
            info!("every namespace can be served; health is SERVING");
        }
    }
}

/// All namespaces, and the store that keeps them.
pub struct App {
    model: Arc<StaticModel>,
    settings: RwLock<SettingsBook>,
    store: Store,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    max_namespaces: usize,
    /// Whether an ingest creates the namespace it names.
    auto_create: bool,
    watch_buffer: usize,
    /// Set by [`App::close_feeds`]: no new watcher is taken.
    feeds_closed: AtomicBool,
    health: Health,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// A queue of ingest batches that the caller must drain with
/// [`App::drain`] because nobody else is.
pub struct Drain {
    name: String,
    namespace: Arc<Namespace>,
}

/// An ingest batch queued by [`App::submit`].
pub struct Submitted {
    /// The batch's answers, once it is durable.
    pub answer: Answer,
    /// Set when the caller must run [`App::drain`] with it (off the async
    /// executor) for the answer to come.
    pub drain: Option<Drain>,
}

/// The answers to a submitted ingest batch, to wait for.
pub struct Answer(oneshot::Receiver<Result<Answers, AppError>>);

impl Answer {
    /// Waits for the answers.
    pub async fn answers(self) -> Result<Answers, AppError> {
        self.0.await.unwrap_or_else(|_| Err(unanswered()))
    }
}

/// The error of a caller whose batch was dropped without an answer.
fn unanswered() -> AppError {
    AppError::Internal("the batch was dropped unanswered; nothing of it was stored".into())
}

/// Runs `work`, turning a panic into an error.
fn guarded<T>(what: &str, work: impl FnOnce() -> T) -> Result<T, AppError> {
    catch_unwind(AssertUnwindSafe(work))
        .map_err(|payload| AppError::Internal(format!("{what} failed: {}", panic_message(payload.as_ref()))))
}

/// Counts a batch's answers by kind.
fn count_answers(namespace: &str, results: &[Result<Assignment, ItemError>]) {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for result in results {
        let kind = match result {
            Err(_) => "rejected",
            Ok(a) if a.replayed => "replayed",
            Ok(a) => a.kind.name(),
        };
        *counts.entry(kind).or_default() += 1;
    }
    for (kind, count) in counts {
        metrics::counter!(telemetry::HEADLINES, "namespace" => namespace.to_owned(), "kind" => kind).increment(count);
    }
}

fn poisoned<T>(_: T) -> AppError {
    AppError::Internal("the namespace registry is unusable after a failure".into())
}

impl App {
    /// An application that keeps everything in memory.
    pub fn in_memory(model: Arc<StaticModel>, settings: SettingsBook) -> anyhow::Result<Self> {
        Self::open(model, settings, Store::in_memory()?)
    }

    /// An application on a store, with every stored namespace loaded.
    /// Fails if the store cannot be read or a namespace's stored vectors
    /// do not fit its configured embedder.
    pub fn open(model: Arc<StaticModel>, mut settings: SettingsBook, store: Store) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let loaded = store.load_with(|stored, records| {
            let name = stored.name.clone();
            let (engine, version) = Self::restore(&model, &mut settings, stored, records)?;
            let stats = engine.stats();
            info!(namespace = %name, headlines = stats.headlines, stories = stats.stories, "namespace loaded");
            anyhow::Ok((name, Namespace::new(engine, version)))
        })?;
        let namespaces: HashMap<_, _> = loaded.into_iter().collect();
        info!(namespaces = namespaces.len(), elapsed_ms = started.elapsed().as_millis() as u64, "state loaded");
        Ok(Self {
            model,
            settings: RwLock::new(settings),
            store,
            namespaces: RwLock::new(namespaces),
            max_namespaces: DEFAULT_MAX_NAMESPACES as usize,
            auto_create: true,
            watch_buffer: DEFAULT_WATCH_BUFFER as usize,
            feeds_closed: AtomicBool::new(false),
            health: Health { broken: Mutex::new(BTreeSet::new()), serving: watch::Sender::new(true) },
        })
    }

    /// The most namespaces this application holds; an ingest that would
    /// create one more is refused with [`AppError::ResourceExhausted`].
    /// Namespaces already stored always load.
    pub fn with_max_namespaces(mut self, max: usize) -> Self {
        self.max_namespaces = max;
        self
    }

    /// Whether an ingest that names an unknown namespace creates it (the
    /// default) or is refused with [`AppError::NamespaceNotFound`], as are
    /// matches and batch clustering in one: then only
    /// [`App::create_namespace`] makes namespaces.
    pub fn with_auto_create(mut self, auto_create: bool) -> Self {
        self.auto_create = auto_create;
        self
    }

    /// Keeps `entries` story changes in memory for each watched namespace
    /// (see [`App::watch`]).
    pub fn with_watch_buffer(mut self, entries: usize) -> Self {
        self.watch_buffer = entries;
        self
    }

    /// Whether every namespace can be served, as it changes.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.health.serving.subscribe()
    }

    /// A namespace's engine from what the store holds; its own settings
    /// go into `book`, on top of the configuration's.
    fn restore(
        model: &Arc<StaticModel>,
        book: &mut SettingsBook,
        stored: StoredNamespace,
        records: &mut Records<'_>,
    ) -> anyhow::Result<(Engine, u64)> {
        let name = &stored.name;
        book.set_own(name, stored.settings.own)
            .map_err(|e| anyhow::anyhow!("namespace {name:?}: its stored settings are invalid here: {e}"))?;
        let configured = book.get(name).clone();
        let mut previous = Settings::default();
        previous
            .apply_all(stored.settings.effective.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("namespace {name:?}: stored settings are invalid: {e}"))?;
        if !configured.same_vectors(&previous) {
            anyhow::bail!(
                "namespace {name:?} was built with other embedder settings ({}); its vectors cannot be compared \
                 with the configured ones ({}): keep the embedder settings of an existing namespace",
                embedder_specs(&previous),
                embedder_specs(&configured)
            );
        }
        if configured != previous {
            info!(namespace = %name, settings = ?configured.specs(), "namespace settings changed");
        }
        let embedder = embedder_for(&configured, model);
        let records = records.map(|record| record.map_err(anyhow::Error::from));
        Engine::restore(configured, embedder, stored.counters, &stored.redirects, records)
            .map(|engine| (engine, stored.version))
            .map_err(|e: anyhow::Error| e.context(format!("namespace {name:?}")))
    }

    fn new_engine(&self, namespace: &str) -> Engine {
        self.engine_with(self.book().get(namespace).clone())
    }

    fn engine_with(&self, settings: Settings) -> Engine {
        let embedder = embedder_for(&settings, &self.model);
        Engine::new(settings, embedder)
    }

    fn book(&self) -> std::sync::RwLockReadGuard<'_, SettingsBook> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn book_mut(&self) -> std::sync::RwLockWriteGuard<'_, SettingsBook> {
        self.settings.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a namespace is stored with: its engine's settings and its own.
    fn stored_settings(&self, name: &str, settings: &Settings) -> StoredSettings {
        StoredSettings { effective: settings.specs(), own: self.book().own(name).to_vec() }
    }

    /// The namespace as the store holds it (empty if it was never
    /// committed).
    fn rebuild(&self, name: &str) -> Result<(Engine, u64), String> {
        #[cfg(test)]
        faults::on_rebuild()?;
        let restored = guarded("reading the namespace", || {
            self.store.load_namespace(name, |stored, records| {
                Self::restore(&self.model, &mut self.book_mut(), stored, records)
            })
        });
        match restored {
            Ok(Ok(Some(restored))) => Ok(restored),
            Ok(Ok(None)) => Ok((self.new_engine(name), 0)),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The engine of a slot, rebuilt from the store first if it was thrown
    /// away.
    fn ready<'s>(&self, name: &str, slot: &'s mut Slot) -> Result<&'s mut Engine, AppError> {
        if let Slot::Broken(why) = slot {
            match self.rebuild(name) {
                Ok((engine, version)) => {
                    *slot = Slot::Ready(Box::new(engine), version);
                    self.health.mark(name, None);
                }
                Err(e) => {
                    let reason = format!("{why}, and rebuilding it from the store failed: {e}");
                    self.health.mark(name, Some(&reason));
                    return Err(AppError::Unavailable(format!("namespace {name:?} cannot be read: {e}")));
                }
            }
        }
        match slot {
            Slot::Ready(engine, _) => Ok(engine),
            Slot::Broken(why) => Err(AppError::Unavailable(why.clone())),
            Slot::Deleted => Err(AppError::NamespaceNotFound(name.to_owned())),
        }
    }

    /// The engine of a slot, to write: this node must lead the namespace
    /// (always, on the embedded store); having just become its leader, it
    /// first rebuilds the namespace from the store, where the previous
    /// leader's last commits are.
    fn writable<'s>(&self, name: &str, slot: &'s mut Slot) -> Result<&'s mut Engine, AppError> {
        match self.store.lead(name) {
            Ok(Lead::Held) => {}
            Ok(Lead::Acquired) => *slot = Slot::Broken("this node has just become the namespace's leader".into()),
            Err(e) => return Err(AppError::store(e)),
        }
        self.ready(name, slot)
    }

    /// Gives up the namespaces this node leads, for another node to take
    /// over at once (at an orderly shutdown, once no call is in flight).
    pub fn release(&self) {
        self.store.release();
    }

    /// Throws a namespace's memory away and rebuilds it from the store.
    fn reset(&self, name: &str, slot: &mut Slot, why: &str) {
        *slot = Slot::Broken(why.to_owned());
        // A failure is recorded in the health and retried on the next call.
        let _ = self.ready(name, slot);
    }

    /// Makes the changes of a namespace's engine durable, or, if that
    /// fails, rebuilds the namespace from the store and reports the
    /// failure, so memory never holds what the store does not.
    fn commit(&self, name: &str, slot: &mut Slot, feed: &Feed) -> Result<(), AppError> {
        let engine = self.ready(name, slot)?;
        if !engine.has_changes() {
            return Ok(());
        }
        let changes = engine.take_changes();
        let started = std::time::Instant::now();
        let committed = self.store.commit(name, &self.stored_settings(name, engine.settings()), &changes);
        metrics::histogram!(telemetry::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        let e = match committed {
            Ok(version) => {
                if let Slot::Ready(_, held) = slot {
                    *held = version;
                }
                feed.publish(&changes.story_changes);
                return Ok(());
            }
            Err(e) => e,
        };
        error!(namespace = name, error = %e, "commit failed; rebuilding the namespace from the store");
        self.reset(name, slot, "a commit failed");
        Err(AppError::store(e))
    }

    fn namespace(&self, name: &str) -> Result<Arc<Namespace>, AppError> {
        let map = self.namespaces.read().map_err(poisoned)?;
        map.get(name).cloned().ok_or_else(|| AppError::NamespaceNotFound(name.to_owned()))
    }

    fn namespace_or_create(&self, name: &str) -> Result<Arc<Namespace>, AppError> {
        if let Ok(namespace) = self.namespace(name) {
            return Ok(namespace);
        }
        let mut map = self.namespaces.write().map_err(poisoned)?;
        if let Some(namespace) = map.get(name) {
            return Ok(Arc::clone(namespace));
        }
        if !self.auto_create {
            return Err(AppError::NamespaceNotFound(name.to_owned()));
        }
        self.room_for_one_more(map.len())?;
        let namespace = Namespace::new(self.new_engine(name), 0);
        map.insert(name.to_owned(), Arc::clone(&namespace));
        Ok(namespace)
    }

    /// Refuses a new namespace when the server holds `held`, its limit.
    fn room_for_one_more(&self, held: usize) -> Result<(), AppError> {
        if held < self.max_namespaces {
            return Ok(());
        }
        Err(AppError::ResourceExhausted(format!(
            "the server holds its limit of {} namespaces (--max-namespaces)",
            self.max_namespaces
        )))
    }

    /// A namespace another node leads, created here (empty, at version 0)
    /// the first time this node sees it: stored namespaces always load,
    /// whatever the limit on new ones.
    fn followed(&self, name: &str) -> Result<Arc<Namespace>, AppError> {
        if let Ok(namespace) = self.namespace(name) {
            return Ok(namespace);
        }
        let mut map = self.namespaces.write().map_err(poisoned)?;
        let namespace = map.entry(name.to_owned()).or_insert_with(|| Namespace::new(self.new_engine(name), 0));
        Ok(Arc::clone(namespace))
    }

    /// Runs a read on a namespace's engine.
    fn read<T>(&self, name: &str, read: impl FnOnce(&Engine) -> T) -> Result<T, AppError> {
        let namespace = self.namespace(name)?;
        let mut slot = namespace.slot();
        let engine = self.ready(name, &mut slot)?;
        guarded("the read", || read(engine))
    }

    /// Assigns and stores a batch (creating the namespace if needed); the
    /// answers come once the batch is durable, possibly in one commit with
    /// concurrent batches (see [`Namespace`]). Blocks until then.
    pub fn ingest(&self, namespace: &str, items: Vec<Result<Headline, ItemError>>) -> Result<Answers, AppError> {
        let ns = self.namespace_or_create(namespace)?;
        let (reply, answer) = std::sync::mpsc::channel();
        if ns.queue.push(items, Reply::Blocking(reply)) {
            self.drain(Drain { name: namespace.to_owned(), namespace: ns });
        }
        answer.recv().unwrap_or_else(|_| Err(unanswered()))
    }

    /// Queues a batch for [`App::ingest`]'s work without waiting: the
    /// answer comes on [`Submitted::answer`], once somebody has drained the
    /// queue (the caller itself when [`Submitted::drain`] is set).
    pub fn submit(&self, namespace: &str, items: Vec<Result<Headline, ItemError>>) -> Result<Submitted, AppError> {
        let ns = self.namespace_or_create(namespace)?;
        let (reply, answer) = oneshot::channel();
        let drain =
            ns.queue.push(items, Reply::Async(reply)).then(|| Drain { name: namespace.to_owned(), namespace: ns });
        Ok(Submitted { answer: Answer(answer), drain })
    }

    /// Applies, commits and answers queued ingest batches, a group at a
    /// time, until the queue is empty. Every batch is answered.
    pub fn drain(&self, work: Drain) {
        let Drain { name, namespace } = work;
        namespace.queue.drain(|group| self.apply_group(&name, &namespace, &group), || Err(unanswered()));
    }

    /// Applies a group of batches and commits them in one transaction. A
    /// batch whose apply panics fails alone: the namespace is rebuilt from
    /// the store and the group's other batches are applied again, each as
    /// it would have been (the engine is deterministic and none of them has
    /// been answered yet).
    fn apply_group(&self, name: &str, namespace: &Namespace, group: &[Batch]) -> Vec<Result<Answers, AppError>> {
        let mut slot = namespace.slot();
        let mut answers: Vec<Option<Result<Answers, AppError>>> = vec![None; group.len()];
        loop {
            let engine = match self.writable(name, &mut slot) {
                Ok(engine) => engine,
                Err(e) => {
                    answers.iter_mut().filter(|a| a.is_none()).for_each(|a| *a = Some(Err(e.clone())));
                    break;
                }
            };
            let mut applied = Vec::new();
            let mut failed = None;
            for (i, batch) in group.iter().enumerate() {
                if answers.get(i).is_some_and(Option::is_some) {
                    continue;
                }
                let apply = || {
                    #[cfg(test)]
                    faults::on_apply(batch);
                    engine.ingest(batch)
                };
                match guarded("applying the batch", apply) {
                    Ok(answered) => applied.push((i, answered)),
                    Err(e) => {
                        failed = Some((i, e));
                        break;
                    }
                }
            }
            if let Some((i, e)) = failed {
                error!(namespace = name, error = %e, "a batch failed; rebuilding the namespace from the store");
                if let Some(answer) = answers.get_mut(i) {
                    *answer = Some(Err(e));
                }
                self.reset(name, &mut slot, "a batch failed while it was applied");
                continue;
            }
            let committed = self.commit(name, &mut slot, &namespace.feed);
            for (i, answered) in applied {
                if let Some(answer) = answers.get_mut(i) {
                    *answer = Some(committed.clone().map(|()| {
                        count_answers(name, &answered);
                        answered
                    }));
                }
            }
            break;
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(unanswered()))).collect()
    }

    /// The assignment a headline would get; nothing changes. A namespace
    /// that does not exist yet answers as an empty one would.
    pub fn match_headline(
        &self,
        namespace: &str,
        headline: &Headline,
        max_candidates: usize,
    ) -> Result<(Assignment, Vec<Candidate>), AppError> {
        match self.read(namespace, |engine| engine.match_headline(headline, max_candidates)) {
            Err(AppError::NamespaceNotFound(_)) if self.auto_create => {
                guarded("the match", || self.new_engine(namespace).match_headline(headline, max_candidates))
            }
            other => other,
        }
    }

    /// Clusters a batch among itself with the namespace's settings, storing
    /// nothing. Returns the assignments and the stories, largest first.
    pub fn cluster_batch(
        &self,
        namespace: &str,
        items: &[Result<Headline, ItemError>],
    ) -> Result<(Answers, Vec<StoryView>), AppError> {
        if !self.auto_create {
            self.namespace(namespace)?;
        }
        guarded("clustering the batch", || {
            let mut engine = self.new_engine(namespace);
            let assignments = engine.ingest(items);
            let query = StoryQuery {
                start: None,
                end: None,
                min_size: 1,
                order: StoryOrder::Size,
                limit: usize::MAX,
                after: None,
            };
            let (stories, _) = engine.list_stories(&query);
            let stories = stories.into_iter().filter_map(|s| engine.story(s.id)).collect();
            (assignments, stories)
        })
    }

    /// A stored headline.
    pub fn headline(&self, namespace: &str, id: &str) -> Result<StoredHeadline, AppError> {
        self.read(namespace, |engine| engine.headline(id))?.ok_or_else(|| AppError::HeadlineNotFound(id.to_owned()))
    }

    /// A story with its members.
    pub fn story(&self, namespace: &str, id: &str) -> Result<StoryView, AppError> {
        let story_id: StoryId = id.parse().map_err(|()| AppError::StoryNotFound(id.to_owned()))?;
        self.read(namespace, |engine| engine.story(story_id))?.ok_or_else(|| AppError::StoryNotFound(id.to_owned()))
    }

    /// One page of stories, the cursor of the next one, and the latest
    /// story change the page reflects.
    pub fn list_stories(
        &self,
        namespace: &str,
        query: &StoryQuery,
    ) -> Result<(Vec<StoryView>, Option<StoryCursor>, u64), AppError> {
        self.read(namespace, |engine| {
            let (page, next) = engine.list_stories(query);
            (page, next, engine.latest_story_change())
        })
    }

    /// One page of stories with their members, read under one lock.
    pub fn list_stories_with_members(&self, namespace: &str, query: &StoryQuery) -> Result<Vec<StoryView>, AppError> {
        self.read(namespace, |engine| {
            let (page, _) = engine.list_stories(query);
            page.into_iter().filter_map(|story| engine.story(story.id)).collect()
        })
    }

    /// Deletes headlines; returns the count deleted and the ids not found.
    pub fn delete(&self, name: &str, ids: &[String]) -> Result<(usize, Vec<String>), AppError> {
        let namespace = self.namespace(name)?;
        let mut slot = namespace.slot();
        let engine = self.writable(name, &mut slot)?;
        match guarded("the deletion", || engine.delete(ids)) {
            Ok(result) => {
                self.commit(name, &mut slot, &namespace.feed)?;
                Ok(result)
            }
            Err(e) => {
                error!(namespace = name, error = %e, "a deletion failed; rebuilding the namespace from the store");
                self.reset(name, &mut slot, "a deletion failed while it was applied");
                Err(e)
            }
        }
    }

    /// Up to `limit` entries of a namespace's story change feed after
    /// number `after` (0: from the first), with the range still stored;
    /// [`AppError::OutOfRange`] if entries after `after` were trimmed, or
    /// `after` is past the latest entry.
    pub fn story_changes(&self, name: &str, after: u64, limit: usize) -> Result<ChangePage, AppError> {
        self.namespace(name)?;
        let stored = self.store.story_changes(name, after, limit).map_err(AppError::store)?;
        let page = stored.unwrap_or(ChangePage { changes: Vec::new(), earliest: 1, latest: 0 });
        let (earliest, latest) = (page.earliest, page.latest);
        if after > latest {
            let reason = format!("after_sequence {after} is past the latest story change, {latest}");
            return Err(AppError::OutOfRange { reason, earliest, latest });
        }
        if after.saturating_add(1) < earliest {
            let reason = format!(
                "the story changes after {after} are no longer kept (change_feed_length): the earliest is {earliest}; \
                 read the stories again (ListStories) and go on from its story_change_sequence"
            );
            return Err(AppError::OutOfRange { reason, earliest, latest });
        }
        Ok(page)
    }

    /// Every story change of a namespace committed from now on, as it
    /// commits, through a ring of the latest entries (`with_watch_buffer`):
    /// a receiver that falls a whole ring behind gets
    /// [`broadcast::error::RecvError::Lagged`].
    pub fn watch(&self, name: &str) -> Result<broadcast::Receiver<StoryChange>, AppError> {
        let receiver = self.namespace(name)?.feed.subscribe(self.watch_buffer);
        // After subscribing: a close that began before is seen here, and
        // one that begins after reaches this receiver.
        if self.feeds_closed.load(Ordering::SeqCst) {
            return Err(AppError::ShuttingDown);
        }
        Ok(receiver)
    }

    /// Ends every watch when the server shuts down, so that no stream
    /// outlives it: each watcher gets what was committed, then the end of
    /// its namespace's feed, and no new watcher is taken.
    pub fn close_feeds(&self) -> Result<(), AppError> {
        self.feeds_closed.store(true, Ordering::SeqCst);
        for namespace in self.namespaces.read().map_err(poisoned)?.values() {
            namespace.feed.close();
        }
        Ok(())
    }

    /// The names of the namespaces, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>, AppError> {
        let mut names: Vec<String> = self.namespaces.read().map_err(poisoned)?.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// A new directory for a backup, removed when the handle drops.
    pub fn backup_dir(&self) -> Result<tempfile::TempDir, AppError> {
        let scratch = self.store.scratch_dir();
        tempfile::Builder::new()
            .prefix(".backup-")
            .tempdir_in(&scratch)
            .map_err(|e| AppError::Internal(format!("cannot make a backup directory in {}: {e}", scratch.display())))
    }

    /// Writes a snapshot of every namespace into an embedded store in
    /// `dir` (see [`Store::back_up`]), then reads it back as `serve` reads
    /// a data directory at start: what it holds, or why it is unusable.
    pub fn back_up(&self, dir: &Path) -> Result<Snapshot, AppError> {
        let written = self.store.back_up(dir).map_err(AppError::store)?;
        let read = Store::verify_backup(dir).map_err(AppError::store)?;
        if read != written {
            return Err(AppError::Internal(format!("the backup reads back as {read:?}, not the {written:?} written")));
        }
        info!(namespaces = written.namespaces, headlines = written.headlines, "backup written and verified");
        Ok(written)
    }

    /// Counters of one namespace, or of all (by name) when `namespace` is
    /// `None`.
    pub fn stats(&self, namespace: Option<&str>) -> Result<Vec<(String, Stats)>, AppError> {
        let names = match namespace {
            Some(name) => vec![name.to_owned()],
            None => self.namespaces()?,
        };
        names
            .into_iter()
            .map(|name| {
                let stats = self.read(&name, Engine::stats)?;
                Ok((name, stats))
            })
            .collect()
    }

    /// Sets the per-namespace gauges (stored headlines, stories, index
    /// size) and the merge counters from the current state.
    pub fn publish_metrics(&self) -> Result<(), AppError> {
        for (namespace, stats) in self.stats(None)? {
            let label = || ("namespace", namespace.clone());
            metrics::gauge!(telemetry::STORED, &[label()]).set(stats.headlines as f64);
            metrics::gauge!(telemetry::STORIES, &[label()]).set(stats.stories as f64);
            metrics::gauge!(telemetry::INDEXED, &[label()]).set(stats.indexed_vectors as f64);
            metrics::counter!(telemetry::MERGES, &[label()]).absolute(stats.merges);
        }
        Ok(())
    }
}

/// Faults the tests below inject into the thread that drains.
#[cfg(test)]
mod faults {
    use std::cell::Cell;

    use super::Batch;

    thread_local! {
        /// A batch holding this headline id panics while it is applied.
        pub static PANIC_ON: Cell<Option<&'static str>> = const { Cell::new(None) };
        /// Rebuilding a namespace from the store fails.
        pub static NO_REBUILD: Cell<bool> = const { Cell::new(false) };
    }

    pub fn on_apply(batch: &Batch) {
        if let Some(id) = PANIC_ON.get() {
            assert!(!batch.iter().flatten().any(|h| h.id == id), "a fault injected into {id}");
        }
    }

    pub fn on_rebuild() -> Result<(), String> {
        if NO_REBUILD.get() { Err("an injected fault".into()) } else { Ok(()) }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::types::{DAY_MS, MatchKind};

    fn app() -> App {
        let model = Arc::new(StaticModel::bundled().expect("model"));
        App::in_memory(model, SettingsBook::default()).expect("app")
    }

    fn headline(id: &str, text: &str, published: i64) -> Result<Headline, ItemError> {
        Ok(Headline { id: id.into(), text: text.into(), source: None, url: None, published })
    }

    fn wait(answer: Answer) -> Result<Answers, AppError> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(answer.answers())
    }

    const PKK: &str = "Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq";
    const FED: &str = "Fed raises interest rates by a quarter point";
    const NOW: i64 = 100 * DAY_MS;

    #[test]
    fn a_retried_old_headline_beside_a_new_one_leaves_the_namespace_answering() {
        let app = app();
        app.ingest("default", vec![headline("a", PKK, NOW - 40 * DAY_MS)]).expect("first");
        let answers = app
            .ingest("default", vec![headline("a", PKK, NOW - 40 * DAY_MS), headline("b", FED, NOW)])
            .expect("the retry with a new headline is answered");
        assert!(answers[0].as_ref().is_ok_and(|a| a.replayed), "{answers:?}");
        assert!(answers[1].as_ref().is_ok_and(|a| a.kind == MatchKind::NewStory), "{answers:?}");
        let later = app.ingest("default", vec![headline("c", "Cat rescued from tree by firefighters", NOW)]);
        assert!(later.is_ok_and(|a| a[0].is_ok()));
        assert!(app.headline("default", "b").is_ok());
        assert!(*app.serving().borrow());
    }

    #[test]
    fn a_batch_that_panics_fails_alone_and_its_group_is_applied_as_if_it_never_came() {
        let app = app();
        app.ingest("default", vec![headline("old", PKK, NOW)]).expect("first");
        // Three batches in one group: the middle one panics.
        let first = app.submit("default", vec![headline("x1", FED, NOW)]).expect("submit");
        let bad = app.submit("default", vec![headline("boom", "Markets slide", NOW)]).expect("submit");
        let last = app.submit("default", vec![headline("x2", PKK, NOW + 1)]).expect("submit");
        assert!(bad.drain.is_none() && last.drain.is_none());
        faults::PANIC_ON.set(Some("boom"));
        app.drain(first.drain.expect("the first submitter drains"));
        faults::PANIC_ON.set(None);
        assert!(matches!(wait(bad.answer), Err(AppError::Internal(_))));
        let x1 = wait(first.answer).expect("answered");
        let x2 = wait(last.answer).expect("answered");
        assert_eq!(x1[0].as_ref().map(|a| a.kind), Ok(MatchKind::NewStory));
        assert_eq!(
            x2[0].as_ref().map(|a| (a.kind, a.matched_headline_id.as_deref())),
            Ok((MatchKind::ExactDuplicate, Some("old")))
        );
        assert!(app.headline("default", "boom").is_err(), "nothing of the failed batch is stored");
        let again = app.ingest("default", vec![headline("boom", "Markets slide", NOW)]).expect("answers again");
        assert!(again[0].as_ref().is_ok_and(|a| !a.replayed));
        assert_eq!(app.stats(Some("default")).expect("stats")[0].1.headlines, 4);
    }

    #[test]
    fn a_namespace_that_cannot_be_rebuilt_is_not_served_until_it_can() {
        let app = app();
        app.ingest("default", vec![headline("a", PKK, NOW)]).expect("first");
        let health = app.serving();
        faults::PANIC_ON.set(Some("boom"));
        faults::NO_REBUILD.set(true);
        let failed = app.ingest("default", vec![headline("boom", FED, NOW)]);
        faults::PANIC_ON.set(None);
        assert!(matches!(failed, Err(AppError::Internal(_))), "{failed:?}");
        assert!(!*health.borrow(), "health is NOT_SERVING while the namespace cannot be rebuilt");
        assert!(matches!(app.headline("default", "a"), Err(AppError::Unavailable(_))));
        faults::NO_REBUILD.set(false);
        assert_eq!(app.headline("default", "a").map(|h| h.headline.id), Ok("a".to_owned()));
        assert!(*health.borrow(), "SERVING again once rebuilt");
    }

    #[test]
    fn namespace_names_are_checked() {
        assert_eq!(namespace_or_default(""), Ok(DEFAULT_NAMESPACE));
        assert_eq!(namespace_or_default("news-fr_2"), Ok("news-fr_2"));
        for bad in ["News", "a b", "x".repeat(65).as_str(), "é"] {
            assert!(namespace_or_default(bad).is_err(), "{bad}");
        }
    }
}
