//! The gRPC API: validates requests, runs the application off the async
//! executor and converts the answers. The only module that knows both the
//! generated types and the core's.

mod convert;
mod forward;
pub mod json;
mod page_token;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::StatusCode;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{Instrument, debug, info_span};

use crate::app::{App, AppError, ErrorCode, namespace_or_default, validate_namespace};
use crate::client::Client;
use crate::core::types::{ChangePage, StoryChange, StoryOrder, StoryQuery};
use crate::edge::Access;
use crate::pb;
use crate::pb::dedup_service_server::DedupService;
use crate::store::Snapshot;

pub use convert::{headlines, kind_from_pb, millis, timestamp};
use forward::{Attempt, FORWARDED, Write};
pub use forward::{Forwarder, Peers};

/// Limits applied to requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most headlines in one Ingest, IngestStream batch or ClusterBatch.
    pub max_batch: usize,
    /// The most calls waiting for or doing application work at once;
    /// more are refused with RESOURCE_EXHAUSTED.
    pub max_pending: usize,
}

/// Default page size of ListStories.
const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size of ListStories.
const MAX_PAGE_SIZE: usize = 1000;
/// Default and largest candidate count of Match.
const DEFAULT_CANDIDATES: usize = 10;
const MAX_CANDIDATES: usize = 100;
/// Responses buffered per IngestStream before the stream stops reading.
const STREAM_BUFFER: usize = 4;
/// Default and largest page size of ListStoryChanges.
const DEFAULT_CHANGES_PAGE: usize = 100;
const MAX_CHANGES_PAGE: usize = 1000;
/// Story changes read from the store at a time while a watcher catches up.
const WATCH_PAGE: usize = 256;
/// Story changes sent ahead of a watcher's reading.
const WATCH_SENT_AHEAD: usize = 16;
/// The default and shortest wait of a quiet watch before its progress
/// message.
const DEFAULT_PROGRESS: Duration = Duration::from_secs(10);
const MIN_PROGRESS: Duration = Duration::from_millis(100);
/// The `domain` of the errors' `google.rpc.ErrorInfo`.
const ERROR_DOMAIN: &str = "headline-dedup";
/// The largest piece of a backup file in one response.
const BACKUP_PIECE: usize = 256 * 1024;

/// The `DedupService` implementation.
#[derive(Debug, Clone)]
pub struct DedupApi {
    app: Arc<App>,
    limits: Limits,
    admission: Arc<Semaphore>,
    forwarder: Arc<Forwarder>,
    /// The bytes of a backup file sent per response.
    backup_piece: usize,
}

impl DedupApi {
    /// Serves `app` with `limits`, sending writes for namespaces another
    /// node leads through `forwarder`.
    pub fn new(app: Arc<App>, limits: Limits, forwarder: Forwarder) -> Self {
        Self {
            app,
            limits,
            admission: Arc::new(Semaphore::new(limits.max_pending)),
            forwarder: Arc::new(forwarder),
            backup_piece: BACKUP_PIECE,
        }
    }

    /// Sends responses of at most `max` bytes (backup pieces fit in half).
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.backup_piece = (max / 2).clamp(1, BACKUP_PIECE);
        self
    }
}

/// Whether a call was forwarded by another node.
fn forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

/// The gRPC code and the HTTP status of each class of failure: the one
/// table both edges answer from.
pub fn status_codes(code: ErrorCode) -> (Code, StatusCode) {
    match code {
        ErrorCode::InvalidArgument => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
        ErrorCode::NotFound => (Code::NotFound, StatusCode::NOT_FOUND),
        ErrorCode::ResourceExhausted => (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
        ErrorCode::OutOfRange => (Code::OutOfRange, StatusCode::BAD_REQUEST),
        ErrorCode::AlreadyExists => (Code::AlreadyExists, StatusCode::CONFLICT),
        ErrorCode::FailedPrecondition => (Code::FailedPrecondition, StatusCode::BAD_REQUEST),
        ErrorCode::Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
        ErrorCode::Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
    }
}

impl From<AppError> for Status {
    fn from(error: AppError) -> Self {
        let (code, _) = status_codes(error.code());
        let message = error.to_string();
        match error {
            AppError::InvalidArgument { field, reason } => {
                Status::with_error_details(code, message, ErrorDetails::with_bad_request_violation(field, reason))
            }
            AppError::OutOfRange { earliest, latest, .. } => {
                let metadata = [
                    ("earliest_sequence".to_owned(), earliest.to_string()),
                    ("latest_sequence".to_owned(), latest.to_string()),
                ];
                let info = ErrorDetails::with_error_info("STORY_CHANGES_OUT_OF_RANGE", ERROR_DOMAIN, metadata);
                Status::with_error_details(code, message, info)
            }
            _ => Status::new(code, message),
        }
    }
}

impl DedupApi {
    /// Admits a call if the server has room for it: at most `max_pending`
    /// calls wait or run at once, and the call that would exceed that is
    /// refused at once with RESOURCE_EXHAUSTED.
    fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.admission).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server is at its limit of {} pending calls; retry with backoff",
                self.limits.max_pending
            ))
        })
    }

    /// Runs application work on the blocking pool once admitted. If the
    /// caller goes away (deadline, cancellation) admitted work still
    /// completes, so a batch is applied whole or not at all.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, Status> {
        self.run_app(work).await?.map_err(Status::from)
    }

    /// [`Self::run`], with the application's error apart from the call's.
    async fn run_app<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<Result<T, AppError>, Status> {
        let permit = self.admit()?;
        tokio::task::spawn_blocking(move || {
            let _admitted = permit;
            work()
        })
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))
    }
}

impl DedupApi {
    /// [`Self::run`] on the namespace a request names (empty: the default
    /// one), checked first.
    async fn on<T: Send + 'static>(
        &self,
        namespace: &str,
        work: impl FnOnce(&App, &str) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, Status> {
        let namespace = namespace_or_default(namespace)?.to_owned();
        let app = Arc::clone(&self.app);
        self.run(move || work(&app, &namespace)).await
    }

    /// Validates and applies one ingest batch. The batch joins its
    /// namespace's queue (see [`App::submit`]); the call waits for its
    /// answer without holding a thread, and drains the queue on the
    /// blocking pool when nobody else is. Admitted like [`Self::run`]:
    /// the permit is held, and the batch applied, even if the caller goes
    /// away.
    /// Ingests a batch here, or at the namespace's leader.
    async fn ingest_batch(
        &self,
        namespace: String,
        headlines: Vec<pb::Headline>,
        forwarded: bool,
    ) -> Result<Vec<pb::Assignment>, Status> {
        let deadline = self.forwarder.deadline();
        loop {
            let refusal = match self.ingest_here(namespace.clone(), headlines.clone()).await? {
                Err(refusal @ AppError::NotLeader { .. }) => refusal,
                answered => return answered.map_err(Status::from),
            };
            let AppError::NotLeader { leader, .. } = &refusal else { return Err(refusal.into()) };
            let request = pb::IngestRequest { namespace: namespace.clone(), headlines: headlines.clone() };
            let request = Write { request, items: headlines.len(), authorization: None };
            let call = |mut client: Client, request| async move { client.ingest(request).await };
            match self.forwarder.redirect(forwarded, leader, deadline, refusal.clone().into(), request, call).await {
                Attempt::Done(answer) => return answer.map(|response| response.assignments),
                Attempt::Again => Forwarder::pause().await,
            }
        }
    }

    async fn ingest_here(
        &self,
        namespace: String,
        headlines: Vec<pb::Headline>,
    ) -> Result<Result<Vec<pb::Assignment>, AppError>, Status> {
        let namespace = namespace_or_default(&namespace)?.to_owned();
        convert::check_batch(headlines.len(), self.limits.max_batch)?;
        let permit = self.admit()?;
        let app = Arc::clone(&self.app);
        let span = info_span!("ingest", namespace = %namespace, batch = headlines.len());
        let work = async move {
            let _admitted = permit;
            let items = convert::headlines(&headlines, convert::now_millis());
            let submitted = app.submit(&namespace, items)?;
            if let Some(drain) = submitted.drain {
                tokio::task::spawn_blocking(move || app.drain(drain));
            }
            let results = submitted.answer.answers().await?;
            let assignments = convert::assignments(&headlines, &results);
            debug!(rejected = assignments.iter().filter(|a| a.error.is_some()).count(), "batch ingested");
            Ok::<_, AppError>(assignments)
        };
        tokio::spawn(work.instrument(span)).await.map_err(|e| Status::internal(format!("worker failed: {e}")))
    }
}

type IngestStreamResponseStream = Pin<Box<dyn Stream<Item = Result<pb::IngestStreamResponse, Status>> + Send>>;
type BackupResponseStream = Pin<Box<dyn Stream<Item = Result<pb::BackupResponse, Status>> + Send>>;
type WatchStoriesResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchStoriesResponse, Status>> + Send>>;

/// Sends the backup file in `dir` in pieces of `piece` bytes, then what it
/// holds; the directory goes when the stream ends.
fn send_backup(
    dir: tempfile::TempDir,
    snapshot: Snapshot,
    piece: usize,
    tx: &mpsc::Sender<Result<pb::BackupResponse, Status>>,
) -> std::io::Result<()> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(dir.path().join(crate::store::DB_FILE))?;
    let bytes = file.metadata()?.len();
    let mut buffer = vec![0; piece];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        let data = buffer.get(..read).unwrap_or_default().to_vec();
        if tx.blocking_send(Ok(pb::BackupResponse { data, summary: None })).is_err() {
            return Ok(());
        }
    }
    let summary = pb::BackupSummary {
        namespaces: u32::try_from(snapshot.namespaces).unwrap_or(u32::MAX),
        headlines: snapshot.headlines,
        bytes,
    };
    let _ = tx.blocking_send(Ok(pb::BackupResponse { data: Vec::new(), summary: Some(summary) }));
    Ok(())
}

/// The latest story change of a namespace whose first ones were trimmed
/// (a watch that starts from now does not need them).
fn latest_of_trimmed(error: AppError) -> Result<ChangePage, AppError> {
    match error {
        AppError::OutOfRange { earliest, latest, .. } => Ok(ChangePage { changes: Vec::new(), earliest, latest }),
        other => Err(other),
    }
}

/// One WatchStories stream: the stored changes after its position, then
/// the live ones, with progress when it is caught up and quiet.
struct Watcher {
    app: Arc<App>,
    namespace: String,
    tx: mpsc::Sender<Result<pb::WatchStoriesResponse, Status>>,
}

impl Watcher {
    /// Sends the stream from `after`: stored changes a page at a time
    /// while it is behind, then each change received `live`. Ends when the
    /// client goes, with RESOURCE_EXHAUSTED when it fell a whole ring
    /// behind, or with the error of a failed read.
    async fn run(self, mut live: broadcast::Receiver<StoryChange>, mut after: u64, progress: Duration) {
        loop {
            match self.catch_up(after).await {
                Ok(Some(reached)) => after = reached,
                Ok(None) => return,
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
            }
            if !self.send(pb::watch_stories_response::Event::Progress(pb::WatchProgress { sequence: after })).await {
                return;
            }
            loop {
                let received = tokio::select! {
                    biased;
                    received = live.recv() => received,
                    () = tokio::time::sleep(progress) => {
                        let event = pb::watch_stories_response::Event::Progress(pb::WatchProgress { sequence: after });
                        if !self.send(event).await {
                            return;
                        }
                        continue;
                    }
                    () = self.tx.closed() => return,
                };
                match received {
                    Ok(change) if change.seq <= after => {}
                    Ok(change) if change.seq == after + 1 => {
                        after = change.seq;
                        if !self.send(pb::watch_stories_response::Event::Change(convert::story_change(&change))).await {
                            return;
                        }
                    }
                    // A gap (a commit published before this watcher read
                    // the store): the store has it.
                    Ok(_) => break,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let status = Status::resource_exhausted(format!(
                            "this watcher fell {missed} story changes behind the namespace; resume with \
                             after_sequence {after}"
                        ));
                        let _ = self.tx.send(Err(status)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        let message = format!(
                            "the story feed ended (the server is shutting down, or no longer serves the namespace); \
                             resume with after_sequence {after}"
                        );
                        let _ = self.tx.send(Err(Status::unavailable(message))).await;
                        return;
                    }
                }
            }
        }
    }

    /// Sends the stored changes after `after`; the last one sent, or
    /// `None` once the client has gone.
    async fn catch_up(&self, mut after: u64) -> Result<Option<u64>, Status> {
        loop {
            let (app, name) = (Arc::clone(&self.app), self.namespace.clone());
            // Not admitted as a call: the stream was, and a full server
            // must not end the streams it already serves.
            let page = tokio::task::spawn_blocking(move || app.story_changes(&name, after, WATCH_PAGE))
                .await
                .map_err(|e| Status::internal(format!("worker failed: {e}")))??;
            let full = page.changes.len() == WATCH_PAGE;
            for change in &page.changes {
                after = change.seq;
                if !self.send(pb::watch_stories_response::Event::Change(convert::story_change(change))).await {
                    return Ok(None);
                }
            }
            if !full {
                return Ok(Some(after));
            }
        }
    }

    /// Sends one message; `false` once the client has gone.
    async fn send(&self, event: pb::watch_stories_response::Event) -> bool {
        self.tx.send(Ok(pb::WatchStoriesResponse { event: Some(event) })).await.is_ok()
    }
}

#[tonic::async_trait]
impl DedupService for DedupApi {
    async fn ingest(&self, request: Request<pb::IngestRequest>) -> Result<Response<pb::IngestResponse>, Status> {
        let forwarded = forwarded(&request);
        let pb::IngestRequest { namespace, headlines } = request.into_inner();
        let assignments = self.ingest_batch(namespace, headlines, forwarded).await?;
        Ok(Response::new(pb::IngestResponse { assignments }))
    }

    type IngestStreamStream = IngestStreamResponseStream;

    async fn ingest_stream(
        &self,
        request: Request<Streaming<pb::IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        let forwarded = forwarded(&request);
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let api = self.clone();
        tokio::spawn(async move {
            while let Some(message) = input.next().await {
                let reply = match message {
                    Ok(batch) => api
                        .ingest_batch(batch.namespace, batch.headlines, forwarded)
                        .await
                        .map(|assignments| pb::IngestStreamResponse { batch_id: batch.batch_id, assignments }),
                    Err(status) => Err(status),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn r#match(&self, request: Request<pb::MatchRequest>) -> Result<Response<pb::MatchResponse>, Status> {
        let pb::MatchRequest { namespace, headline, max_candidates } = request.into_inner();
        let headline = headline.ok_or_else(|| AppError::invalid("headline", "headline is required"))?;
        let parsed = convert::headline(&headline, convert::now_millis(), false)
            .map_err(|e| AppError::invalid(format!("headline.{}", e.field), e.reason))?;
        let max = match max_candidates as usize {
            0 => DEFAULT_CANDIDATES,
            n => n.min(MAX_CANDIDATES),
        };
        let (assignment, candidates) = self.on(&namespace, move |app, ns| app.match_headline(ns, &parsed, max)).await?;
        let mut assignment = convert::assignment(0, &headline.id, &Ok(assignment));
        if assignment.kind == i32::from(pb::MatchKind::NewStory) {
            assignment.story_id.clear();
        }
        Ok(Response::new(pb::MatchResponse {
            assignment: Some(assignment),
            candidates: candidates.iter().map(convert::candidate).collect(),
        }))
    }

    async fn cluster_batch(
        &self,
        request: Request<pb::ClusterBatchRequest>,
    ) -> Result<Response<pb::ClusterBatchResponse>, Status> {
        let pb::ClusterBatchRequest { namespace, headlines } = request.into_inner();
        convert::check_batch(headlines.len(), self.limits.max_batch)?;
        let response = self
            .on(&namespace, move |app, ns| {
                let items = convert::headlines(&headlines, convert::now_millis());
                let (results, stories) = app.cluster_batch(ns, &items)?;
                Ok(pb::ClusterBatchResponse {
                    assignments: convert::assignments(&headlines, &results),
                    stories: stories.iter().map(convert::story).collect(),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_headline(
        &self,
        request: Request<pb::GetHeadlineRequest>,
    ) -> Result<Response<pb::GetHeadlineResponse>, Status> {
        let pb::GetHeadlineRequest { namespace, id } = request.into_inner();
        if id.trim().is_empty() {
            return Err(AppError::invalid("id", "id is required").into());
        }
        let stored = self.on(&namespace, move |app, ns| app.headline(ns, id.trim())).await?;
        Ok(Response::new(pb::GetHeadlineResponse {
            member: Some(convert::member(&stored)),
            story_id: stored.story_id.to_string(),
        }))
    }

    async fn get_story(&self, request: Request<pb::GetStoryRequest>) -> Result<Response<pb::GetStoryResponse>, Status> {
        let pb::GetStoryRequest { namespace, story_id } = request.into_inner();
        if story_id.trim().is_empty() {
            return Err(AppError::invalid("story_id", "story_id is required").into());
        }
        let story = self.on(&namespace, move |app, ns| app.story(ns, story_id.trim())).await?;
        Ok(Response::new(pb::GetStoryResponse { story: Some(convert::story(&story)) }))
    }

    async fn list_stories(
        &self,
        request: Request<pb::ListStoriesRequest>,
    ) -> Result<Response<pb::ListStoriesResponse>, Status> {
        let request = request.into_inner();
        let namespace = namespace_or_default(&request.namespace)?.to_owned();
        let time = |ts: &Option<pb::wkt::Timestamp>, field: &str| {
            ts.as_ref().map(|t| convert::millis(t).map_err(|reason| AppError::invalid(field, reason))).transpose()
        };
        let order = match pb::StoryOrder::try_from(request.order) {
            Ok(pb::StoryOrder::Size) => StoryOrder::Size,
            Ok(pb::StoryOrder::Recency | pb::StoryOrder::Unspecified) => StoryOrder::Recency,
            Err(_) => return Err(AppError::invalid("order", format!("unknown order {}", request.order)).into()),
        };
        let limit = match request.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut query = StoryQuery {
            start: time(&request.start_time, "start_time")?,
            end: time(&request.end_time, "end_time")?,
            min_size: request.min_size as usize,
            order,
            limit,
            after: None,
        };
        let fingerprint = page_token::fingerprint(&namespace, &query);
        if !request.page_token.is_empty() {
            query.after = Some(page_token::decode(&request.page_token, fingerprint)?);
        }
        let (stories, next, sequence) = self.on(&namespace, move |app, ns| app.list_stories(ns, &query)).await?;
        Ok(Response::new(pb::ListStoriesResponse {
            stories: stories.iter().map(convert::story).collect(),
            next_page_token: next.map(|c| page_token::encode(&c, fingerprint)).unwrap_or_default(),
            story_change_sequence: sequence,
        }))
    }

    async fn delete_headlines(
        &self,
        request: Request<pb::DeleteHeadlinesRequest>,
    ) -> Result<Response<pb::DeleteHeadlinesResponse>, Status> {
        let forwarded = forwarded(&request);
        let pb::DeleteHeadlinesRequest { namespace, ids } = request.into_inner();
        if ids.is_empty() {
            return Err(AppError::invalid("ids", "at least one id is required").into());
        }
        if ids.len() > self.limits.max_batch {
            return Err(AppError::invalid("ids", format!("at most {} ids per request", self.limits.max_batch)).into());
        }
        if let Some(i) = ids.iter().position(|id| id.trim().is_empty()) {
            return Err(AppError::invalid(format!("ids[{i}]"), "ids must not be blank").into());
        }
        let name = namespace_or_default(&namespace)?.to_owned();
        let deadline = self.forwarder.deadline();
        loop {
            let (app, ns, ids_here) = (Arc::clone(&self.app), name.clone(), ids.clone());
            let refusal = match self.run_app(move || app.delete(&ns, &ids_here)).await? {
                Ok((deleted, not_found_ids)) => {
                    return Ok(Response::new(pb::DeleteHeadlinesResponse {
                        deleted_count: u32::try_from(deleted).unwrap_or(u32::MAX),
                        not_found_ids,
                    }));
                }
                Err(refusal @ AppError::NotLeader { .. }) => refusal,
                Err(e) => return Err(e.into()),
            };
            let AppError::NotLeader { leader, .. } = &refusal else { return Err(refusal.into()) };
            let request = pb::DeleteHeadlinesRequest { namespace: namespace.clone(), ids: ids.clone() };
            let request = Write { request, items: ids.len(), authorization: None };
            let call =
                |mut client: crate::client::Client, request| async move { client.delete_headlines(request).await };
            match self.forwarder.redirect(forwarded, leader, deadline, refusal.clone().into(), request, call).await {
                Attempt::Done(answer) => return answer.map(Response::new),
                Attempt::Again => Forwarder::pause().await,
            }
        }
    }

    type BackupStream = BackupResponseStream;

    async fn backup(&self, request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        administration(&request, "Backup")?;
        let app = Arc::clone(&self.app);
        let (dir, snapshot) = self
            .run(move || {
                let dir = app.backup_dir()?;
                let snapshot = app.back_up(dir.path())?;
                Ok((dir, snapshot))
            })
            .await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let piece = self.backup_piece;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = send_backup(dir, snapshot, piece, &tx) {
                let _ = tx.blocking_send(Err(Status::internal(format!("cannot read the backup file: {e}"))));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchStoriesStream = WatchStoriesResponseStream;

    async fn watch_stories(
        &self,
        request: Request<pb::WatchStoriesRequest>,
    ) -> Result<Response<Self::WatchStoriesStream>, Status> {
        let pb::WatchStoriesRequest { namespace, after_sequence, progress_interval_ms } = request.into_inner();
        let progress = match progress_interval_ms {
            0 => DEFAULT_PROGRESS,
            ms => Duration::from_millis(u64::from(ms)).max(MIN_PROGRESS),
        };
        let name = namespace_or_default(&namespace)?.to_owned();
        let app = Arc::clone(&self.app);
        // Subscribed before the first read of the store, so that nothing
        // committed in between is missed; what both give is sent once.
        let (live, start) = self
            .run(move || {
                let live = app.watch(&name)?;
                let start = match after_sequence {
                    Some(after) => app.story_changes(&name, after, 0).map(|_| after)?,
                    None => app.story_changes(&name, 0, 0).or_else(latest_of_trimmed)?.latest,
                };
                Ok((live, start))
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_SENT_AHEAD);
        let watcher =
            Watcher { app: Arc::clone(&self.app), namespace: namespace_or_default(&namespace)?.to_owned(), tx };
        tokio::spawn(watcher.run(live, start, progress));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_story_changes(
        &self,
        request: Request<pb::ListStoryChangesRequest>,
    ) -> Result<Response<pb::ListStoryChangesResponse>, Status> {
        let pb::ListStoryChangesRequest { namespace, after_sequence, page_size } = request.into_inner();
        let limit = match page_size as usize {
            0 => DEFAULT_CHANGES_PAGE,
            n => n.min(MAX_CHANGES_PAGE),
        };
        let page = self.on(&namespace, move |app, ns| app.story_changes(ns, after_sequence, limit)).await?;
        Ok(Response::new(pb::ListStoryChangesResponse {
            changes: page.changes.iter().map(convert::story_change).collect(),
            earliest_sequence: page.earliest,
            latest_sequence: page.latest,
        }))
    }

    async fn get_stats(&self, request: Request<pb::GetStatsRequest>) -> Result<Response<pb::GetStatsResponse>, Status> {
        let namespace = request.into_inner().namespace;
        let only = if namespace.is_empty() {
            None
        } else {
            validate_namespace(&namespace)?;
            Some(namespace)
        };
        let app = Arc::clone(&self.app);
        let stats = self.run(move || app.stats(only.as_deref())).await?;
        let namespaces = stats.into_iter().map(|(namespace, s)| convert::namespace_stats(namespace, s)).collect();
        Ok(Response::new(pb::GetStatsResponse { namespaces }))
    }

    async fn create_namespace(
        &self,
        request: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        validate_namespace(&request.get_ref().namespace)?;
        let here = |app: &App, r: &pb::CreateNamespaceRequest| {
            app.create_namespace(&r.namespace, convert::setting_changes(&r.settings.clone().unwrap_or_default()))
        };
        let answer = |info| pb::CreateNamespaceResponse { namespace: Some(convert::namespace(info)) };
        let there = |mut client: Client, r| async move { client.create_namespace(r).await };
        self.administer(request, "CreateNamespace", here, answer, there).await
    }

    async fn get_namespace(
        &self,
        request: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::GetNamespaceResponse>, Status> {
        let namespace = namespace_or_default(&request.into_inner().namespace)?.to_owned();
        let app = Arc::clone(&self.app);
        let info = self.run(move || app.namespace_info(&namespace)).await?;
        Ok(Response::new(pb::GetNamespaceResponse { namespace: Some(convert::namespace(info)) }))
    }

    async fn list_namespaces(
        &self,
        _: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let app = Arc::clone(&self.app);
        let infos = self.run(move || app.list_namespaces()).await?;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: infos.into_iter().map(convert::namespace).collect(),
        }))
    }

    async fn update_namespace(
        &self,
        request: Request<pb::UpdateNamespaceRequest>,
    ) -> Result<Response<pb::UpdateNamespaceResponse>, Status> {
        namespace_or_default(&request.get_ref().namespace)?;
        if convert::setting_changes(&request.get_ref().settings.clone().unwrap_or_default()).is_empty() {
            return Err(AppError::invalid("settings", "set at least one setting to change").into());
        }
        let here = |app: &App, r: &pb::UpdateNamespaceRequest| {
            let changes = convert::setting_changes(&r.settings.clone().unwrap_or_default());
            app.update_namespace(namespace_or_default(&r.namespace)?, &changes)
        };
        let answer = |info| pb::UpdateNamespaceResponse { namespace: Some(convert::namespace(info)) };
        let there = |mut client: Client, r| async move { client.update_namespace(r).await };
        self.administer(request, "UpdateNamespace", here, answer, there).await
    }

    async fn delete_namespace(
        &self,
        request: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<pb::DeleteNamespaceResponse>, Status> {
        namespace_or_default(&request.get_ref().namespace)?;
        let here =
            |app: &App, r: &pb::DeleteNamespaceRequest| app.delete_namespace(namespace_or_default(&r.namespace)?);
        let answer = |headlines| pb::DeleteNamespaceResponse { headlines };
        let there = |mut client: Client, r| async move { client.delete_namespace(r).await };
        self.administer(request, "DeleteNamespace", here, answer, there).await
    }
}

impl DedupApi {
    /// Runs an administration call of a namespace here, or, where another
    /// node leads it (PostgreSQL), there, with the caller's admin token.
    async fn administer<Req, Res, T, F, Fut>(
        &self,
        request: Request<Req>,
        method: &str,
        here: fn(&App, &Req) -> Result<T, AppError>,
        answer: fn(T) -> Res,
        there: F,
    ) -> Result<Response<Res>, Status>
    where
        Req: Clone + Send + Sync + 'static,
        T: Send + 'static,
        F: Fn(Client, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Res>, Status>>,
    {
        administration(&request, method)?;
        let forwarded = forwarded(&request);
        let authorization = request.metadata().get("authorization").cloned();
        let message = request.into_inner();
        let deadline = self.forwarder.deadline();
        loop {
            let (app, copy) = (Arc::clone(&self.app), message.clone());
            let refusal = match self.run_app(move || here(&app, &copy)).await? {
                Ok(done) => return Ok(Response::new(answer(done))),
                Err(refusal @ AppError::NotLeader { .. }) => refusal,
                Err(e) => return Err(e.into()),
            };
            let AppError::NotLeader { leader, .. } = &refusal else { return Err(refusal.into()) };
            let call = |client, request| there(client, request);
            let request = Write { request: message.clone(), items: 1, authorization: authorization.clone() };
            match self.forwarder.redirect(forwarded, leader, deadline, refusal.clone().into(), request, call).await {
                Attempt::Done(answer) => return answer.map(Response::new),
                Attempt::Again => Forwarder::pause().await,
            }
        }
    }
}

/// Refuses an administration call made without the admin token (where
/// tokens are on).
fn administration<T>(request: &Request<T>, method: &str) -> Result<(), Status> {
    if request.extensions().get::<Access>() == Some(&Access::Admin) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!("{method} needs the admin token (serve --admin-token)")))
    }
}
