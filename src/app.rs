//! The application: namespaces, each with its own engine and settings, and
//! the operations the API exposes. Synchronous and free of gRPC types; the
//! API layer runs these calls off the async executor.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, mpsc};

use tokio::sync::oneshot;
use tracing::info;

use crate::core::embed::{StaticModel, embedder_for};
use crate::core::engine::Engine;
use crate::core::settings::Settings;
use crate::core::types::{
    Assignment, Candidate, Headline, ItemError, Stats, StoredHeadline, StoryCursor, StoryId, StoryQuery, StoryView,
};
use crate::store::{Records, Store, StoredNamespace};
use crate::telemetry;

/// The namespace used when a request names none.
pub const DEFAULT_NAMESPACE: &str = "default";

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
    /// The change could not be made durable; nothing was applied.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A lock was poisoned by a panic in another request.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}

/// Per-namespace settings: defaults plus overrides by namespace name.
#[derive(Debug, Clone, Default)]
pub struct SettingsBook {
    defaults: Settings,
    overrides: BTreeMap<String, Settings>,
}

impl SettingsBook {
    /// Parses `key=value` (all namespaces) and `namespace.key=value` (one
    /// namespace) assignments, in order.
    pub fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut book = Self::default();
        let mut scoped: Vec<(&str, &str, &str)> = Vec::new();
        for spec in specs {
            let (key, value) = spec.split_once('=').ok_or_else(|| format!("{spec:?} is not of the form key=value"))?;
            match key.split_once('.') {
                Some((namespace, key)) => {
                    validate_namespace(namespace).map_err(|e| format!("{spec:?}: {e}"))?;
                    scoped.push((namespace, key, value));
                }
                None => book.defaults.set(key.trim(), value)?,
            }
        }
        book.defaults.validate()?;
        for (namespace, key, value) in scoped {
            let settings = book.overrides.entry(namespace.to_owned()).or_insert_with(|| book.defaults.clone());
            settings.set(key.trim(), value).map_err(|e| format!("{namespace}.{e}"))?;
        }
        for (namespace, settings) in &book.overrides {
            settings.validate().map_err(|e| format!("namespace {namespace}: {e}"))?;
        }
        Ok(book)
    }

    /// The settings of a namespace.
    pub fn get(&self, namespace: &str) -> &Settings {
        self.overrides.get(namespace).unwrap_or(&self.defaults)
    }
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

/// All namespaces, and the store that keeps them.
pub struct App {
    model: Arc<StaticModel>,
    settings: SettingsBook,
    store: Option<Store>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
}

/// The answers to one ingest batch, in its order.
pub type Answers = Vec<Result<Assignment, ItemError>>;

/// One namespace: its engine, and the ingest batches waiting for it.
///
/// Ingest batches commit in groups: a call queues its batch, and if nobody
/// is draining the queue it becomes the drainer (see [`App::drain`]), which
/// applies every queued batch in queue order, makes them durable in one
/// transaction, answers them all, and goes on while batches keep coming.
/// Each batch is applied exactly as if it came alone, but concurrent
/// callers share one commit (one fsync) instead of waiting for one each,
/// and a caller whose batch someone else drains just waits for its answer.
struct Namespace {
    engine: Mutex<Engine>,
    pending: Mutex<Pending>,
}

/// The batches waiting for a namespace's engine.
#[derive(Default)]
struct Pending {
    batches: Vec<Queued>,
    /// Somebody is draining `batches`.
    draining: bool,
}

/// A batch waiting for the engine, and where its answers go.
struct Queued {
    items: Vec<Result<Headline, ItemError>>,
    reply: Reply,
}

/// Where a queued batch's answers go: a thread or a task waits for them.
enum Reply {
    Blocking(mpsc::Sender<Result<Answers, AppError>>),
    Async(oneshot::Sender<Result<Answers, AppError>>),
}

impl Reply {
    /// Every caller waits for its answer until it gets it, unless it went
    /// away (a cancelled call), so a failed send needs no handling.
    fn send(self, answer: Result<Answers, AppError>) {
        let _ = match self {
            Self::Blocking(tx) => tx.send(answer).map_err(drop),
            Self::Async(tx) => tx.send(answer).map_err(drop),
        };
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

/// The error of a caller whose batch was dropped without an answer (only
/// a panic while it was applied does that).
fn unanswered() -> AppError {
    AppError::Internal("the batch was dropped unanswered".into())
}

impl Namespace {
    fn new(engine: Engine) -> Arc<Self> {
        Arc::new(Self { engine: Mutex::new(engine), pending: Mutex::new(Pending::default()) })
    }

    /// Queues a batch; true if the caller must drain the queue.
    fn enqueue(&self, items: Vec<Result<Headline, ItemError>>, reply: Reply) -> Result<bool, AppError> {
        let mut pending = self.pending.lock().map_err(poisoned)?;
        pending.batches.push(Queued { items, reply });
        Ok(!std::mem::replace(&mut pending.draining, true))
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("settings", &self.settings).finish_non_exhaustive()
    }
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
    AppError::Internal("a previous request failed while holding the namespace lock".into())
}

impl App {
    /// An application that keeps everything in memory.
    pub fn in_memory(model: Arc<StaticModel>, settings: SettingsBook) -> Self {
        Self { model, settings, store: None, namespaces: RwLock::new(HashMap::new()) }
    }

    /// An application on a durable store, with every stored namespace
    /// loaded. Fails if the store cannot be read or a namespace's stored
    /// vectors do not fit its configured embedder.
    pub fn open(model: Arc<StaticModel>, settings: SettingsBook, store: Store) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let loaded = store.load_with(|stored, records| {
            let name = stored.name.clone();
            let engine = Self::restore(&model, &settings, stored, records)?;
            let stats = engine.stats();
            info!(namespace = %name, headlines = stats.headlines, stories = stats.stories, "namespace loaded");
            anyhow::Ok((name, Namespace::new(engine)))
        })?;
        let namespaces: HashMap<_, _> = loaded.into_iter().collect();
        info!(namespaces = namespaces.len(), elapsed_ms = started.elapsed().as_millis() as u64, "state loaded");
        Ok(Self { model, settings, store: Some(store), namespaces: RwLock::new(namespaces) })
    }

    fn restore(
        model: &Arc<StaticModel>,
        settings: &SettingsBook,
        stored: StoredNamespace,
        records: &mut Records<'_>,
    ) -> anyhow::Result<Engine> {
        let name = &stored.name;
        let configured = settings.get(name).clone();
        let mut previous = Settings::default();
        previous
            .apply_all(stored.settings.iter().map(String::as_str))
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
        Engine::restore(configured, embedder, stored.counters, &stored.redirects, records)
            .map_err(|e| anyhow::anyhow!("namespace {name:?}: stored state is inconsistent: {e}"))
    }

    fn new_engine(&self, namespace: &str) -> Engine {
        let settings = self.settings.get(namespace).clone();
        let embedder = embedder_for(&settings, &self.model);
        Engine::new(settings, embedder)
    }

    /// Makes a batch's changes durable, or, if that fails, puts the
    /// namespace back to its stored state and reports the failure.
    fn commit(&self, namespace: &str, engine: &mut Engine) -> Result<(), AppError> {
        let Some(store) = &self.store else {
            engine.discard_changes();
            return Ok(());
        };
        if !engine.has_changes() {
            return Ok(());
        }
        let changes = engine.take_changes();
        let started = std::time::Instant::now();
        let committed = store.commit(namespace, &engine.settings().specs(), &changes);
        metrics::histogram!(telemetry::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        let Err(error) = committed else { return Ok(()) };
        tracing::error!(namespace, error = %error, "commit failed; reloading the namespace");
        let reloaded = store
            .load_with(|stored, records| {
                if stored.name != namespace {
                    return Ok(None);
                }
                Self::restore(&self.model, &self.settings, stored, records).map(Some)
            })
            .map(|engines| engines.into_iter().flatten().next().unwrap_or_else(|| self.new_engine(namespace)));
        match reloaded {
            Ok(fresh) => *engine = fresh,
            Err(e) => return Err(AppError::Internal(format!("commit failed ({error}) and reloading failed ({e:#})"))),
        }
        Err(AppError::Unavailable(error.to_string()))
    }

    fn engine(&self, namespace: &str) -> Result<Arc<Namespace>, AppError> {
        let map = self.namespaces.read().map_err(poisoned)?;
        map.get(namespace).cloned().ok_or_else(|| AppError::NamespaceNotFound(namespace.to_owned()))
    }

    fn engine_or_create(&self, namespace: &str) -> Result<Arc<Namespace>, AppError> {
        if let Ok(engine) = self.engine(namespace) {
            return Ok(engine);
        }
        let mut map = self.namespaces.write().map_err(poisoned)?;
        let engine = map.entry(namespace.to_owned()).or_insert_with(|| Namespace::new(self.new_engine(namespace)));
        Ok(Arc::clone(engine))
    }

    fn lock(namespace: &Namespace) -> Result<MutexGuard<'_, Engine>, AppError> {
        namespace.engine.lock().map_err(poisoned)
    }

    /// Assigns and stores a batch (creating the namespace if needed); the
    /// answers come once the batch is durable, possibly in one commit with
    /// concurrent batches (see [`Namespace`]). Blocks until then.
    pub fn ingest(&self, namespace: &str, items: Vec<Result<Headline, ItemError>>) -> Result<Answers, AppError> {
        let ns = self.engine_or_create(namespace)?;
        let (reply, answer) = mpsc::channel();
        if ns.enqueue(items, Reply::Blocking(reply))? {
            self.drain(Drain { name: namespace.to_owned(), namespace: ns });
        }
        answer.recv().unwrap_or_else(|_| Err(unanswered()))
    }

    /// Queues a batch for [`App::ingest`]'s work without waiting: the
    /// answer comes on [`Submitted::answer`], once somebody has drained the
    /// queue (the caller itself when [`Submitted::drain`] is set).
    pub fn submit(&self, namespace: &str, items: Vec<Result<Headline, ItemError>>) -> Result<Submitted, AppError> {
        let ns = self.engine_or_create(namespace)?;
        let (reply, answer) = oneshot::channel();
        let drain =
            ns.enqueue(items, Reply::Async(reply))?.then(|| Drain { name: namespace.to_owned(), namespace: ns });
        Ok(Submitted { answer: Answer(answer), drain })
    }

    /// Applies, commits and answers queued ingest batches, a group at a
    /// time, until the queue is empty.
    pub fn drain(&self, work: Drain) {
        let Drain { name, namespace } = work;
        loop {
            let group = match namespace.pending.lock() {
                Ok(mut pending) if pending.batches.is_empty() => {
                    pending.draining = false;
                    return;
                }
                Ok(mut pending) => std::mem::take(&mut pending.batches),
                // Only a panic poisons the queue; the waiting callers are
                // answered by their replies being dropped.
                Err(_) => return,
            };
            let mut engine = match Self::lock(&namespace) {
                Ok(engine) => engine,
                Err(e) => {
                    group.into_iter().for_each(|q| q.reply.send(Err(e.clone())));
                    continue;
                }
            };
            let applied: Vec<_> = group.into_iter().map(|q| (q.reply, engine.ingest(q.items))).collect();
            let committed = self.commit(&name, &mut engine);
            drop(engine);
            for (reply, answers) in applied {
                reply.send(committed.clone().map(|()| {
                    count_answers(&name, &answers);
                    answers
                }));
            }
        }
    }

    /// The assignment a headline would get; nothing changes. A namespace
    /// that does not exist yet answers as an empty one would.
    pub fn match_headline(
        &self,
        namespace: &str,
        headline: &Headline,
        max_candidates: usize,
    ) -> Result<(Assignment, Vec<Candidate>), AppError> {
        match self.engine(namespace) {
            Ok(engine) => Ok(Self::lock(&engine)?.match_headline(headline, max_candidates)),
            Err(AppError::NamespaceNotFound(_)) => {
                Ok(self.new_engine(namespace).match_headline(headline, max_candidates))
            }
            Err(e) => Err(e),
        }
    }

    /// Clusters a batch among itself with the namespace's settings, storing
    /// nothing. Returns the assignments and the stories, largest first.
    pub fn cluster_batch(
        &self,
        namespace: &str,
        items: Vec<Result<Headline, ItemError>>,
    ) -> (Vec<Result<Assignment, ItemError>>, Vec<StoryView>) {
        let mut engine = self.new_engine(namespace);
        let assignments = engine.ingest(items);
        let query = StoryQuery {
            start: None,
            end: None,
            min_size: 1,
            order: crate::core::types::StoryOrder::Size,
            limit: usize::MAX,
            after: None,
        };
        let (stories, _) = engine.list_stories(&query);
        let stories = stories.into_iter().filter_map(|s| engine.story(s.id)).collect();
        (assignments, stories)
    }

    /// A stored headline.
    pub fn headline(&self, namespace: &str, id: &str) -> Result<StoredHeadline, AppError> {
        let engine = self.engine(namespace)?;
        let engine = Self::lock(&engine)?;
        engine.headline(id).ok_or_else(|| AppError::HeadlineNotFound(id.to_owned()))
    }

    /// A story with its members.
    pub fn story(&self, namespace: &str, id: &str) -> Result<StoryView, AppError> {
        let engine = self.engine(namespace)?;
        let engine = Self::lock(&engine)?;
        let story_id: StoryId = id.parse().map_err(|()| AppError::StoryNotFound(id.to_owned()))?;
        engine.story(story_id).ok_or_else(|| AppError::StoryNotFound(id.to_owned()))
    }

    /// One page of stories.
    pub fn list_stories(
        &self,
        namespace: &str,
        query: &StoryQuery,
    ) -> Result<(Vec<StoryView>, Option<StoryCursor>), AppError> {
        let engine = self.engine(namespace)?;
        let engine = Self::lock(&engine)?;
        Ok(engine.list_stories(query))
    }

    /// Deletes headlines; returns the count deleted and the ids not found.
    pub fn delete(&self, namespace: &str, ids: &[String]) -> Result<(usize, Vec<String>), AppError> {
        let engine = self.engine(namespace)?;
        let mut engine = Self::lock(&engine)?;
        let result = engine.delete(ids);
        self.commit(namespace, &mut engine)?;
        Ok(result)
    }

    /// The names of the namespaces, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>, AppError> {
        let mut names: Vec<String> = self.namespaces.read().map_err(poisoned)?.keys().cloned().collect();
        names.sort();
        Ok(names)
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
                let engine = self.engine(&name)?;
                let stats = Self::lock(&engine)?.stats();
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
    fn namespace_names_are_checked() {
        assert_eq!(namespace_or_default(""), Ok(DEFAULT_NAMESPACE));
        assert_eq!(namespace_or_default("news-fr_2"), Ok("news-fr_2"));
        for bad in ["News", "a b", "x".repeat(65).as_str(), "é"] {
            assert!(namespace_or_default(bad).is_err(), "{bad}");
        }
    }
}
