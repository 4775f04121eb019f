//! PostgreSQL as the system of record, shared by several nodes.
//!
//! The facts are those of the embedded store, encoded the same way, in the
//! schema `headline_dedup`: `records`, `redirects`, `namespaces` and
//! `story_changes`, with `schema_version` (the one version row) and
//! `leases`.
//!
//! One node at a time leads a namespace: it holds the namespace's row in
//! `leases`, on the database's clock. A node takes a lease when it was
//! never taken, when it has run out (`expires_at`, renewed by its holder
//! several times per lease), or when its holder's connection to the
//! database is gone (`holder_pid` is no longer in `pg_stat_activity`: the
//! holder crashed). Each take raises the lease's `epoch`, and every commit
//! is fenced by it: the commit's first statement raises the lease's
//! `version` only where the epoch and holder are still this node's, in the
//! same transaction, so a leader that was paused or cut off can never
//! commit after a newer one has taken the lease.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use prost::Message;
use tokio_postgres::{IsolationLevel, NoTls};
use tracing::{info, warn};

use super::{
    Lead, NamespaceMessage, RecordMessage, Records, StoreError, StoredNamespace, StoredSettings, StoryChangeMessage,
};
use crate::core::engine::{Changes, PersistedRecord};
use crate::core::types::{ChangePage, StoryId};

/// The schema version this code reads and writes.
const SCHEMA_VERSION: i32 = 1;

/// The key of the transaction-level advisory lock that serialises schema
/// creation between nodes starting together.
const SCHEMA_LOCK: i64 = 0x6864_6564_7570;

/// The statements that create the schema (each idempotent).
const SCHEMA: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS headline_dedup",
    "CREATE TABLE IF NOT EXISTS headline_dedup.schema_version (version integer NOT NULL)",
    "CREATE TABLE IF NOT EXISTS headline_dedup.namespaces (name text PRIMARY KEY, meta bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS headline_dedup.records (
        namespace text NOT NULL, seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (namespace, seq))",
    "CREATE TABLE IF NOT EXISTS headline_dedup.redirects (
        namespace text NOT NULL, from_story bigint NOT NULL, to_story bigint NOT NULL,
        PRIMARY KEY (namespace, from_story))",
    "CREATE TABLE IF NOT EXISTS headline_dedup.changes (
        namespace text NOT NULL, version bigint NOT NULL, epoch bigint NOT NULL, body bytea NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (namespace, version))",
    "CREATE TABLE IF NOT EXISTS headline_dedup.story_changes (
        namespace text NOT NULL, seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (namespace, seq))",
    "CREATE TABLE IF NOT EXISTS headline_dedup.leases (
        namespace text PRIMARY KEY, epoch bigint NOT NULL, holder text NOT NULL, leader text NOT NULL,
        holder_pid integer NOT NULL, expires_at timestamptz NOT NULL, version bigint NOT NULL DEFAULT 0)",
];

/// Takes the lease of a namespace that is free, run out or held by a node
/// whose connection is gone; the new epoch, or no row.
const TAKE_LEASE: &str = "
    INSERT INTO headline_dedup.leases AS l (namespace, epoch, holder, leader, holder_pid, expires_at)
    VALUES ($1, 1, $2, $3, pg_backend_pid(), now() + $4 * interval '1 millisecond')
    ON CONFLICT (namespace) DO UPDATE
        SET epoch = l.epoch + 1, holder = EXCLUDED.holder, leader = EXCLUDED.leader,
            holder_pid = EXCLUDED.holder_pid, expires_at = EXCLUDED.expires_at
        WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid)
    RETURNING epoch";

/// Renews every lease this node holds; the namespaces and epochs renewed.
const RENEW_LEASES: &str = "
    UPDATE headline_dedup.leases SET expires_at = now() + $2 * interval '1 millisecond', holder_pid = pg_backend_pid()
    WHERE holder = $1 RETURNING namespace, epoch";

/// The fence: the first statement of every commit.
const FENCE: &str = "
    UPDATE headline_dedup.leases SET version = version + 1
    WHERE namespace = $1 AND holder = $2 AND epoch = $3 RETURNING version";

/// The channel of the wake-up a commit sends its namespace's followers.
const CHANNEL: &str = "headline_dedup_changes";

/// How many versions of each namespace the change log keeps: a follower
/// further behind reloads the namespace instead.
const KEPT_VERSIONS: i64 = 10_000;

/// Most change-log entries read at once.
const FOLLOW_PAGE: i64 = 256;

/// How long one database operation may take before it is given up.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Records read per query while a namespace loads.
const LOAD_PAGE: i64 = 4096;

/// One commit's facts, as encoded in the change log.
#[derive(Clone, PartialEq, prost::Message)]
struct ChangesMessage {
    #[prost(uint64, repeated, tag = "1")]
    added_seqs: Vec<u64>,
    /// The new records, each a `RecordMessage`.
    #[prost(bytes = "vec", repeated, tag = "2")]
    added: Vec<Vec<u8>>,
    #[prost(uint64, repeated, tag = "3")]
    removed_seqs: Vec<u64>,
    #[prost(sint64, repeated, tag = "4")]
    removed_times: Vec<i64>,
    #[prost(uint64, repeated, tag = "5")]
    redirect_from: Vec<u64>,
    #[prost(uint64, repeated, tag = "6")]
    redirect_to: Vec<u64>,
    #[prost(uint64, repeated, tag = "7")]
    dropped_redirects: Vec<u64>,
    /// The settings and counters after the commit.
    #[prost(message, optional, tag = "8")]
    namespace: Option<NamespaceMessage>,
    #[prost(uint64, repeated, tag = "9")]
    story_change_seqs: Vec<u64>,
    /// The story change feed's new entries, each a `StoryChangeMessage`.
    #[prost(bytes = "vec", repeated, tag = "10")]
    story_changes: Vec<Vec<u8>>,
    #[prost(uint64, tag = "11")]
    story_changes_from: u64,
}

impl ChangesMessage {
    fn new(settings: &StoredSettings, changes: &Changes) -> Self {
        Self {
            added_seqs: changes.added.iter().map(|r| r.seq).collect(),
            added: changes.added.iter().map(|r| RecordMessage::from_record(r).encode_to_vec()).collect(),
            removed_seqs: changes.removed.iter().map(|&(seq, _)| seq).collect(),
            removed_times: changes.removed.iter().map(|&(_, time)| time).collect(),
            redirect_from: changes.redirects.iter().map(|(from, _)| from.0).collect(),
            redirect_to: changes.redirects.iter().map(|(_, to)| to.0).collect(),
            dropped_redirects: changes.dropped_redirects.iter().map(|from| from.0).collect(),
            namespace: Some(NamespaceMessage::new(settings, &changes.counters)),
            story_change_seqs: changes.story_changes.iter().map(|c| c.seq).collect(),
            story_changes: changes
                .story_changes
                .iter()
                .map(|c| StoryChangeMessage::from_change(c).encode_to_vec())
                .collect(),
            story_changes_from: changes.story_changes_from,
        }
    }

    fn into_commit(self) -> Result<(Changes, StoredSettings), String> {
        let added = self
            .added_seqs
            .iter()
            .zip(&self.added)
            .map(|(&seq, body)| {
                RecordMessage::decode(body.as_slice()).map_err(|e| e.to_string()).and_then(|m| m.into_record(seq))
            })
            .collect::<Result<_, _>>()?;
        let story_changes = self
            .story_change_seqs
            .iter()
            .zip(&self.story_changes)
            .map(|(&seq, body)| {
                StoryChangeMessage::decode(body.as_slice()).map_err(|e| e.to_string()).and_then(|m| m.into_change(seq))
            })
            .collect::<Result<_, _>>()?;
        let stored = self.namespace.ok_or("no counters")?.into_stored(String::new());
        let changes = Changes {
            added,
            removed: self.removed_seqs.into_iter().zip(self.removed_times).collect(),
            redirects: self
                .redirect_from
                .into_iter()
                .zip(self.redirect_to)
                .map(|(f, t)| (StoryId(f), StoryId(t)))
                .collect(),
            dropped_redirects: self.dropped_redirects.into_iter().map(StoryId).collect(),
            story_changes,
            story_changes_from: self.story_changes_from,
            counters: stored.counters,
        };
        Ok((changes, stored.settings))
    }
}

/// What the change log holds for a follower of a namespace.
#[derive(Debug)]
pub enum Followed {
    /// The commits after the follower's version, oldest first.
    Commits(Vec<Commit>),
    /// The log no longer reaches back to the follower's version: reload.
    Trimmed,
}

/// One commit of a namespace, as a follower reads it from the change log.
#[derive(Debug)]
pub struct Commit {
    /// The namespace's version after it.
    pub version: u64,
    /// Its facts.
    pub changes: Changes,
    /// The namespace's settings after it.
    pub settings: StoredSettings,
    /// How long ago it committed, on the database's clock.
    pub age: Duration,
}

/// How to reach PostgreSQL and how this node takes part.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The connection string (`postgresql://user@host:port/db` or
    /// `host=... user=...`).
    pub url: String,
    /// Where other nodes and clients can reach this node (`--advertise`).
    pub advertise: String,
    /// How long a lease lasts without renewal: a leader that stops
    /// renewing (paused, cut off) loses its namespaces after this long.
    pub lease: Duration,
}

/// The namespaces this node leads, by epoch, and when their leases were
/// last renewed.
#[derive(Debug, Default)]
struct Leadership {
    epochs: HashMap<String, i64>,
    renewed: Option<Instant>,
}

/// PostgreSQL, shared by several nodes.
pub struct PostgresStore {
    /// How every connection is made.
    config: tokio_postgres::Config,
    /// The runtime of the database connections, so that the synchronous
    /// callers of the store can wait for them from any thread.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The server, as errors name it (no password).
    place: String,
    /// This process's name in `leases.holder`: unique to one run.
    holder: String,
    options: PostgresOptions,
    leadership: Arc<Mutex<Leadership>>,
    /// The connection the leases are taken and renewed on: its backend's
    /// pid is the holder's liveness.
    lease_client: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
    /// Set by a commit's wake-up, cleared by [`PostgresStore::wait_for_commits`].
    woken: Arc<(Mutex<bool>, Condvar)>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("place", &self.place)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connects, creates the schema if it is missing, and starts renewing
    /// the leases this node will hold.
    pub fn connect(options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Database { place: "PostgreSQL".into(), message: format!("--postgres: {e}") })?;
        // A leader paused or cut off in the middle of a commit holds the
        // lease's row lock: the server ends such a session, so that
        // another node can take the lease once it has run out; and no
        // statement waits on a lock longer than a fraction of the lease.
        let half_lease = (options.lease.as_millis() / 2).max(100);
        let session = format!(
            "{} -c idle_in_transaction_session_timeout={half_lease} -c lock_timeout={half_lease}",
            config.get_options().unwrap_or_default()
        );
        config.options(session.trim());
        let place = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database { place: place.clone(), message: e.to_string() })?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_TIMEOUT))
            .create_timeout(Some(OPERATION_TIMEOUT))
            .recycle_timeout(Some(OPERATION_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database { place: place.clone(), message: e.to_string() })?;
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let holder = format!("{}/{}/{}", options.advertise, std::process::id(), started.as_nanos());
        let store = Self {
            config,
            runtime: Some(runtime),
            pool,
            place,
            holder,
            options,
            leadership: Arc::default(),
            lease_client: Arc::default(),
            woken: Arc::default(),
        };
        store.run(store.create_schema())?;
        store.spawn_renewals();
        store.spawn_listener();
        info!(postgres = %store.place, holder = %store.holder, "PostgreSQL store ready");
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database { place: self.place.clone(), message: e.to_string() }
    }

    fn corrupt(&self, what: String, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { place: self.place.clone(), what, message: message.to_string() }
    }

    /// Waits for a database operation, at most [`OPERATION_TIMEOUT`].
    fn run<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.run_within(OPERATION_TIMEOUT, operation)
    }

    /// Waits for a database operation, at most `timeout`.
    fn run_within<T>(
        &self,
        timeout: Duration,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().ok_or_else(|| self.error("the store is shut down"))?;
        runtime.block_on(async {
            tokio::time::timeout(timeout, operation)
                .await
                .unwrap_or_else(|_| Err(self.error(format!("no answer within {timeout:?}"))))
        })
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
        let txn = client.transaction().await.map_err(|e| self.error(e))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(|e| self.error(e))?;
        for statement in SCHEMA {
            txn.batch_execute(statement).await.map_err(|e| self.error(e))?;
        }
        let row = txn
            .query_opt("SELECT max(version) FROM headline_dedup.schema_version", &[])
            .await
            .map_err(|e| self.error(e))?;
        match row.and_then(|r| r.get::<_, Option<i32>>(0)) {
            None => {
                txn.execute("INSERT INTO headline_dedup.schema_version VALUES ($1)", &[&SCHEMA_VERSION])
                    .await
                    .map_err(|e| self.error(e))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(
                    self.error(format!("the schema is at version {other}; this build reads version {SCHEMA_VERSION}"))
                );
            }
        }
        txn.commit().await.map_err(|e| self.error(e))
    }

    /// Renews this node's leases several times per lease, on the lease
    /// connection; a node that cannot renew for a whole lease gives its
    /// namespaces up (another node has them by then).
    fn spawn_renewals(&self) {
        let Some(runtime) = &self.runtime else { return };
        let (leadership, lease_client) = (Arc::clone(&self.leadership), Arc::clone(&self.lease_client));
        let (holder, lease, config, place) =
            (self.holder.clone(), self.options.lease, self.config.clone(), self.place.clone());
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(lease / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.is_empty() {
                    continue;
                }
                let mut client = lease_client.lock().await;
                let renewed = tokio::time::timeout(lease / 2, renew(&mut client, &config, &holder, lease)).await;
                let mut leadership = leadership.lock().unwrap_or_else(PoisonError::into_inner);
                match renewed {
                    Ok(Ok(held)) => {
                        leadership.epochs.retain(|namespace, epoch| {
                            let kept = held.get(namespace) == Some(epoch);
                            if !kept {
                                warn!(namespace, "another node took the lease; stepping down");
                            }
                            kept
                        });
                        leadership.renewed = Some(Instant::now());
                    }
                    failed => {
                        *client = None;
                        let message = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "no answer".into(),
                        };
                        warn!(postgres = %place, error = %message, "cannot renew the leases");
                        if leadership.renewed.is_none_or(|at| at.elapsed() >= lease) && !leadership.epochs.is_empty() {
                            warn!(namespaces = leadership.epochs.len(), "the leases ran out; stepping down");
                            leadership.epochs.clear();
                        }
                    }
                }
            }
        });
    }

    /// Listens for the commits' wake-ups (LISTEN/NOTIFY), connecting again
    /// a second after the connection is lost; followers also poll, so a
    /// wake-up lost meanwhile only delays them.
    fn spawn_listener(&self) {
        let Some(runtime) = &self.runtime else { return };
        let (woken, url, place) = (Arc::clone(&self.woken), self.config.clone(), self.place.clone());
        runtime.spawn(async move {
            loop {
                if let Err(e) = listen(&url, &woken).await {
                    warn!(postgres = %place, error = %e, "the wake-up connection ended");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Waits until a commit of another node may have happened, at most
    /// `timeout`.
    pub fn wait_for_commits(&self, timeout: Duration) {
        let (flag, woken) = &*self.woken;
        let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) =
            woken.wait_timeout_while(guard, timeout, |set| !*set).unwrap_or_else(PoisonError::into_inner);
        *guard = false;
    }

    /// Makes sure this node leads `namespace` (see [`super::Store::lead`]).
    pub fn lead(&self, namespace: &str) -> Result<Lead, StoreError> {
        if self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.contains_key(namespace) {
            return Ok(Lead::Held);
        }
        let lease_ms = self.options.lease.as_millis() as f64;
        let taken = self.run(async {
            let mut client = self.lease_client.lock().await;
            let client = connected(&mut client, &self.config).await.map_err(|e| self.error(e))?;
            let row = client
                .query_opt(TAKE_LEASE, &[&namespace, &self.holder, &self.options.advertise, &lease_ms])
                .await
                .map_err(|e| self.error(e))?;
            match row {
                Some(row) => Ok(Ok(row.get::<_, i64>(0))),
                None => {
                    // A leader renews several times per lease: one whose
                    // lease has less than half of it left has stopped
                    // renewing (paused, cut off), so no leader is named
                    // and the write waits for the lease to run out.
                    let leader = client
                        .query_opt(
                            "SELECT leader FROM headline_dedup.leases
                             WHERE namespace = $1 AND expires_at > now() + $2 * interval '1 millisecond'",
                            &[&namespace, &(lease_ms / 2.0)],
                        )
                        .await
                        .map_err(|e| self.error(e))?
                        .map(|row| row.get::<_, String>(0))
                        .unwrap_or_default();
                    Ok(Err(leader))
                }
            }
        })?;
        match taken {
            Ok(epoch) => {
                let mut leadership = self.leadership.lock().unwrap_or_else(PoisonError::into_inner);
                leadership.epochs.insert(namespace.to_owned(), epoch);
                leadership.renewed.get_or_insert_with(Instant::now);
                info!(namespace, epoch, "elected leader of the namespace");
                Ok(Lead::Acquired)
            }
            Err(leader) => Err(StoreError::NotLeader { namespace: namespace.to_owned(), leader }),
        }
    }

    /// Gives up every lease this node holds (see [`super::Store::release`]).
    pub fn release(&self) {
        let held = std::mem::take(&mut self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs);
        if held.is_empty() {
            return;
        }
        let released = self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            client
                .execute(
                    "UPDATE headline_dedup.leases SET expires_at = now() - interval '1 second' WHERE holder = $1",
                    &[&self.holder],
                )
                .await
                .map_err(|e| self.error(e))
        });
        match released {
            Ok(_) => info!(namespaces = held.len(), "leases released"),
            Err(e) => warn!(error = %e, "cannot release the leases; they run out by themselves"),
        }
    }

    /// Writes one batch's changes, fenced by this node's epoch, with their
    /// entry in the change log; the namespace's new version.
    pub fn commit(&self, namespace: &str, settings: &StoredSettings, changes: &Changes) -> Result<u64, StoreError> {
        let epoch = self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.get(namespace).copied();
        let not_leader = || StoreError::NotLeader { namespace: namespace.to_owned(), leader: String::new() };
        let epoch = epoch.ok_or_else(not_leader)?;
        // No longer than the lease: by then another node may lead.
        let committed = self.run_within(self.options.lease, async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let txn = client.transaction().await.map_err(|e| self.error(e))?;
            let fence = txn.query_opt(FENCE, &[&namespace, &self.holder, &epoch]).await.map_err(|e| self.error(e))?;
            let Some(version) = fence.map(|row| row.get::<_, i64>(0)) else { return Ok(None) };
            write_changes(&txn, namespace, settings, changes).await.map_err(|e| self.error(e))?;
            log_changes(&txn, namespace, (version, epoch), settings, changes).await.map_err(|e| self.error(e))?;
            txn.commit().await.map_err(|e| self.error(e))?;
            Ok(Some(version as u64))
        })?;
        if let Some(version) = committed {
            return Ok(version);
        }
        warn!(namespace, epoch, "commit fenced: another node leads the namespace; stepping down");
        self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.remove(namespace);
        Err(not_leader())
    }

    /// Removes a namespace and everything it holds, fenced by this node's
    /// epoch like a commit; the followers learn it from its missing lease.
    pub fn delete_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        let epoch = self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.get(namespace).copied();
        let not_leader = || StoreError::NotLeader { namespace: namespace.to_owned(), leader: String::new() };
        let epoch = epoch.ok_or_else(not_leader)?;
        let deleted = self.run_within(self.options.lease, async {
            let mut client = self.pool.get().await.map_err(|e| self.error(e))?;
            let txn = client.transaction().await.map_err(|e| self.error(e))?;
            let fence = txn.query_opt(FENCE, &[&namespace, &self.holder, &epoch]).await.map_err(|e| self.error(e))?;
            if fence.is_none() {
                return Ok(false);
            }
            for table in ["records", "redirects", "changes", "story_changes", "leases"] {
                let sql = format!("DELETE FROM headline_dedup.{table} WHERE namespace = $1");
                txn.execute(&sql, &[&namespace]).await.map_err(|e| self.error(e))?;
            }
            txn.execute("DELETE FROM headline_dedup.namespaces WHERE name = $1", &[&namespace])
                .await
                .map_err(|e| self.error(e))?;
            txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &namespace]).await.map_err(|e| self.error(e))?;
            txn.commit().await.map_err(|e| self.error(e))?;
            Ok(true)
        })?;
        self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.remove(namespace);
        if deleted { Ok(()) } else { Err(not_leader()) }
    }

    /// Whether this node leads `namespace` now.
    pub fn leads(&self, namespace: &str) -> bool {
        self.leadership.lock().unwrap_or_else(PoisonError::into_inner).epochs.contains_key(namespace)
    }

    /// Every namespace that has a leader or had one, with its version.
    pub fn versions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            let rows = client
                .query("SELECT namespace, version FROM headline_dedup.leases ORDER BY namespace", &[])
                .await
                .map_err(|e| self.error(e))?;
            Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
        })
    }

    /// The commits of `namespace` after version `after` (a page of them).
    pub fn follow(&self, namespace: &str, after: u64) -> Result<Followed, StoreError> {
        let rows = self.run(async {
            let client = self.pool.get().await.map_err(|e| self.error(e))?;
            client
                .query(
                    "SELECT l.version, c.version, c.body, extract(epoch FROM now() - c.committed_at)::float8
                     FROM headline_dedup.leases l LEFT JOIN headline_dedup.changes c
                         ON c.namespace = l.namespace AND c.version > $2 AND c.version <= $2 + $3
                     WHERE l.namespace = $1 ORDER BY c.version",
                    &[&namespace, &(after as i64), &FOLLOW_PAGE],
                )
                .await
                .map_err(|e| self.error(e))
        })?;
        let head = rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64);
        let mut commits = Vec::new();
        for row in &rows {
            let (Some(version), Some(body), Some(age)) =
                (row.get::<_, Option<i64>>(1), row.get::<_, Option<Vec<u8>>>(2), row.get::<_, Option<f64>>(3))
            else {
                continue;
            };
            let what = || format!("change {namespace}/{version}");
            let (changes, settings) = ChangesMessage::decode(body.as_slice())
                .map_err(|e| e.to_string())
                .and_then(ChangesMessage::into_commit)
                .map_err(|e| self.corrupt(what(), e))?;
            let age = Duration::from_secs_f64(age.max(0.0));
            commits.push(Commit { version: version as u64, changes, settings, age });
        }
        let contiguous = commits.iter().zip(after + 1..).all(|(commit, expected)| commit.version == expected);
        if !contiguous || (head > after && commits.is_empty()) {
            return Ok(Followed::Trimmed);
        }
        Ok(Followed::Commits(commits))
    }

    /// Reads every namespace (see [`super::Store::load_with`]), in one
    /// consistent snapshot.
    pub fn load_with<T, E: From<StoreError>>(
        &self,
        mut restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        let mut client = self.run(async { self.pool.get().await.map_err(|e| self.error(e)) })?;
        let txn = self.run(snapshot(&mut client, &self.place))?;
        let names = self.run(async {
            let rows = txn
                .query("SELECT name FROM headline_dedup.namespaces ORDER BY name", &[])
                .await
                .map_err(|e| self.error(e))?;
            Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>())
        })?;
        names.iter().filter_map(|name| self.read_namespace(&txn, name, &mut restore).transpose()).collect()
    }

    /// Reads one namespace (see [`super::Store::load_namespace`]).
    pub fn load_namespace<T, E: From<StoreError>>(
        &self,
        name: &str,
        mut restore: impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let mut client = self.run(async { self.pool.get().await.map_err(|e| self.error(e)) })?;
        let txn = self.run(snapshot(&mut client, &self.place))?;
        self.read_namespace(&txn, name, &mut restore)
    }

    fn read_namespace<T, E: From<StoreError>>(
        &self,
        txn: &Transaction<'_>,
        name: &str,
        restore: &mut impl FnMut(StoredNamespace, &mut Records<'_>) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let stored = self.run(async {
            let Some(row) = txn
                .query_opt("SELECT meta FROM headline_dedup.namespaces WHERE name = $1", &[&name])
                .await
                .map_err(|e| self.error(e))?
            else {
                return Ok(None);
            };
            let meta = NamespaceMessage::decode(row.get::<_, &[u8]>(0))
                .map_err(|e| self.corrupt(format!("namespace {name:?}"), e))?;
            let mut stored = meta.into_stored(name.to_owned());
            let version = txn
                .query_opt("SELECT version FROM headline_dedup.leases WHERE namespace = $1", &[&name])
                .await
                .map_err(|e| self.error(e))?;
            stored.version = version.map_or(0, |row| row.get::<_, i64>(0) as u64);
            let redirects = txn
                .query(
                    "SELECT from_story, to_story FROM headline_dedup.redirects WHERE namespace = $1 ORDER BY from_story",
                    &[&name],
                )
                .await
                .map_err(|e| self.error(e))?;
            stored.redirects = redirects
                .iter()
                .map(|row| (StoryId(row.get::<_, i64>(0) as u64), StoryId(row.get::<_, i64>(1) as u64)))
                .collect();
            Ok(Some(stored))
        })?;
        let Some(stored) = stored else { return Ok(None) };
        let mut records = RecordPages { store: self, txn, namespace: name, after: -1, page: Vec::new().into_iter() };
        restore(stored, &mut records).map(Some)
    }
}

impl PostgresStore {
    /// Up to `limit` entries of a namespace's change feed after `after`
    /// (see [`super::Store::story_changes`]), in one snapshot.
    pub fn story_changes(&self, namespace: &str, after: u64, limit: usize) -> Result<Option<ChangePage>, StoreError> {
        let mut client = self.run(async { self.pool.get().await.map_err(|e| self.error(e)) })?;
        let txn = self.run(snapshot(&mut client, &self.place))?;
        self.run(async {
            let Some(row) = txn
                .query_opt("SELECT meta FROM headline_dedup.namespaces WHERE name = $1", &[&namespace])
                .await
                .map_err(|e| self.error(e))?
            else {
                return Ok(None);
            };
            let counters = NamespaceMessage::decode(row.get::<_, &[u8]>(0))
                .map_err(|e| self.corrupt(format!("namespace {namespace:?}"), e))?
                .into_stored(namespace.to_owned())
                .counters;
            let latest = counters.next_change.saturating_sub(1);
            let earliest = txn
                .query_one("SELECT min(seq) FROM headline_dedup.story_changes WHERE namespace = $1", &[&namespace])
                .await
                .map_err(|e| self.error(e))?
                .get::<_, Option<i64>>(0)
                .map_or(latest + 1, |seq| seq as u64);
            let rows = txn
                .query(
                    "SELECT seq, body FROM headline_dedup.story_changes WHERE namespace = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    &[&namespace, &(after.min(i64::MAX as u64) as i64), &(limit.min(i64::MAX as usize) as i64)],
                )
                .await
                .map_err(|e| self.error(e))?;
            let mut changes = Vec::with_capacity(rows.len());
            for row in &rows {
                let seq = row.get::<_, i64>(0) as u64;
                let what = || format!("story change {namespace}/{seq}");
                let message =
                    StoryChangeMessage::decode(row.get::<_, &[u8]>(1)).map_err(|e| self.corrupt(what(), e))?;
                changes.push(message.into_change(seq).map_err(|e| self.corrupt(what(), e))?);
            }
            Ok(Some(ChangePage { changes, earliest, latest }))
        })
    }
}

/// The records of one namespace, read a page at a time inside the load's
/// snapshot.
struct RecordPages<'a> {
    store: &'a PostgresStore,
    txn: &'a Transaction<'a>,
    namespace: &'a str,
    after: i64,
    page: std::vec::IntoIter<(i64, Vec<u8>)>,
}

impl Iterator for RecordPages<'_> {
    type Item = Result<PersistedRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.len() == 0 {
            let fetched = self.store.run(async {
                let rows = self
                    .txn
                    .query(
                        "SELECT seq, body FROM headline_dedup.records WHERE namespace = $1 AND seq > $2
                         ORDER BY seq LIMIT $3",
                        &[&self.namespace, &self.after, &LOAD_PAGE],
                    )
                    .await
                    .map_err(|e| self.store.error(e))?;
                Ok(rows.into_iter().map(|row| (row.get::<_, i64>(0), row.get::<_, Vec<u8>>(1))).collect::<Vec<_>>())
            });
            match fetched {
                Ok(page) => self.page = page.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
        let (seq, body) = self.page.next()?;
        self.after = seq;
        let what = || format!("record {}/{seq}", self.namespace);
        Some(
            RecordMessage::decode(body.as_slice())
                .map_err(|e| self.store.corrupt(what(), e))
                .and_then(|message| message.into_record(seq as u64).map_err(|e| self.store.corrupt(what(), e))),
        )
    }
}

/// The server a connection string names, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgresql://{}@{host}:{port}/{}", config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""))
}

/// A read-only snapshot of the database, for a load.
async fn snapshot<'c>(client: &'c mut deadpool_postgres::Object, place: &str) -> Result<Transaction<'c>, StoreError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| StoreError::Database { place: place.to_owned(), message: e.to_string() })
}

/// The lease connection, opened again if it was lost.
async fn connected<'c>(
    client: &'c mut Option<tokio_postgres::Client>,
    config: &tokio_postgres::Config,
) -> Result<&'c tokio_postgres::Client, tokio_postgres::Error> {
    if let Some(open) = client.take().filter(|c| !c.is_closed()) {
        return Ok(client.insert(open));
    }
    let (opened, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "the lease connection ended");
        }
    });
    Ok(client.insert(opened))
}

/// Listens on one connection until it fails, waking followers on each
/// commit's notification.
async fn listen(config: &tokio_postgres::Config, woken: &(Mutex<bool>, Condvar)) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (ended, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if ended.send(message).is_err() {
                return;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    while let Some(message) = messages.recv().await {
        if let tokio_postgres::AsyncMessage::Notification(_) = message? {
            let (flag, condvar) = woken;
            *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
            condvar.notify_all();
        }
    }
    Ok(())
}

/// Renews this holder's leases; the namespaces and epochs it still holds.
async fn renew(
    client: &mut Option<tokio_postgres::Client>,
    config: &tokio_postgres::Config,
    holder: &str,
    lease: Duration,
) -> Result<HashMap<String, i64>, tokio_postgres::Error> {
    let client = connected(client, config).await?;
    let rows = client.query(RENEW_LEASES, &[&holder, &(lease.as_millis() as f64)]).await?;
    Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))).collect())
}

/// Logs a commit's facts for the followers under its version (with the
/// epoch it was fenced by), wakes them, and now and then trims what no
/// follower should still need.
async fn log_changes(
    txn: &Transaction<'_>,
    namespace: &str,
    (version, epoch): (i64, i64),
    settings: &StoredSettings,
    changes: &Changes,
) -> Result<(), tokio_postgres::Error> {
    let body = ChangesMessage::new(settings, changes).encode_to_vec();
    txn.execute(
        "INSERT INTO headline_dedup.changes (namespace, version, epoch, body) VALUES ($1, $2, $3, $4)",
        &[&namespace, &version, &epoch, &body],
    )
    .await?;
    txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &namespace]).await?;
    if version % 256 == 0 {
        txn.execute(
            "DELETE FROM headline_dedup.changes WHERE namespace = $1 AND version <= $2",
            &[&namespace, &(version - KEPT_VERSIONS)],
        )
        .await?;
    }
    Ok(())
}

/// Inserts (sequence number, encoded body) rows of a namespace into
/// `table` (`records` or `story_changes`) in one statement.
async fn insert_bodies(
    txn: &Transaction<'_>,
    table: &str,
    namespace: &str,
    rows: impl Iterator<Item = (u64, Vec<u8>)>,
) -> Result<(), tokio_postgres::Error> {
    let (seqs, bodies): (Vec<i64>, Vec<Vec<u8>>) = rows.map(|(seq, body)| (seq as i64, body)).unzip();
    let sql = format!(
        "INSERT INTO headline_dedup.{table} (namespace, seq, body) SELECT $1, * FROM unnest($2::bigint[], $3::bytea[])"
    );
    txn.execute(&sql, &[&namespace, &seqs, &bodies]).await?;
    Ok(())
}

/// Writes a batch's facts inside the fenced transaction.
async fn write_changes(
    txn: &Transaction<'_>,
    namespace: &str,
    settings: &StoredSettings,
    changes: &Changes,
) -> Result<(), tokio_postgres::Error> {
    if !changes.added.is_empty() {
        let rows = changes.added.iter().map(|r| (r.seq, RecordMessage::from_record(r).encode_to_vec()));
        insert_bodies(txn, "records", namespace, rows).await?;
    }
    if !changes.removed.is_empty() {
        let seqs: Vec<i64> = changes.removed.iter().map(|&(seq, _)| seq as i64).collect();
        txn.execute("DELETE FROM headline_dedup.records WHERE namespace = $1 AND seq = ANY($2)", &[&namespace, &seqs])
            .await?;
    }
    if !changes.redirects.is_empty() {
        let from: Vec<i64> = changes.redirects.iter().map(|(f, _)| f.0 as i64).collect();
        let to: Vec<i64> = changes.redirects.iter().map(|(_, t)| t.0 as i64).collect();
        txn.execute(
            "INSERT INTO headline_dedup.redirects (namespace, from_story, to_story)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[])
             ON CONFLICT (namespace, from_story) DO UPDATE SET to_story = EXCLUDED.to_story",
            &[&namespace, &from, &to],
        )
        .await?;
    }
    if !changes.dropped_redirects.is_empty() {
        let from: Vec<i64> = changes.dropped_redirects.iter().map(|f| f.0 as i64).collect();
        txn.execute(
            "DELETE FROM headline_dedup.redirects WHERE namespace = $1 AND from_story = ANY($2)",
            &[&namespace, &from],
        )
        .await?;
    }
    if !changes.story_changes.is_empty() {
        let rows = changes.story_changes.iter().map(|c| (c.seq, StoryChangeMessage::from_change(c).encode_to_vec()));
        insert_bodies(txn, "story_changes", namespace, rows).await?;
        txn.execute(
            "DELETE FROM headline_dedup.story_changes WHERE namespace = $1 AND seq < $2",
            &[&namespace, &(changes.story_changes_from as i64)],
        )
        .await?;
    }
    let meta = NamespaceMessage::new(settings, &changes.counters).encode_to_vec();
    txn.execute(
        "INSERT INTO headline_dedup.namespaces (name, meta) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET meta = EXCLUDED.meta",
        &[&namespace, &meta],
    )
    .await?;
    Ok(())
}
