//! The gRPC API: validates requests, runs the application off the async
//! executor and converts the answers. The only module that knows both the
//! generated types and the core's.

mod convert;
mod forward;
pub mod json;
mod page_token;

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http::StatusCode;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{Instrument, debug, info_span};

use crate::app::{App, AppError, ErrorCode, namespace_or_default, validate_namespace};
use crate::core::types::{StoryOrder, StoryQuery};
use crate::edge::Access;
use crate::pb;
use crate::pb::dedup_service_server::DedupService;
use crate::store::Snapshot;

pub use convert::{headlines, kind_from_pb, millis, timestamp};
use forward::{Attempt, FORWARDED};
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
            let request =
                (pb::IngestRequest { namespace: namespace.clone(), headlines: headlines.clone() }, headlines.len());
            let call = |mut client: crate::client::Client, request| async move { client.ingest(request).await };
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
        let (stories, next) = self.on(&namespace, move |app, ns| app.list_stories(ns, &query)).await?;
        Ok(Response::new(pb::ListStoriesResponse {
            stories: stories.iter().map(convert::story).collect(),
            next_page_token: next.map(|c| page_token::encode(&c, fingerprint)).unwrap_or_default(),
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
            let request = (pb::DeleteHeadlinesRequest { namespace: namespace.clone(), ids: ids.clone() }, ids.len());
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
        if request.extensions().get::<Access>() != Some(&Access::Admin) {
            return Err(Status::permission_denied("Backup needs the admin token (serve --admin-token)"));
        }
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
        Ok(Response::new(pb::GetStatsResponse {
            namespaces: stats
                .into_iter()
                .map(|(namespace, s)| pb::NamespaceStats {
                    namespace,
                    headlines: s.headlines,
                    stories: s.stories,
                    indexed_vectors: s.indexed_vectors,
                    new_stories: s.new_stories,
                    exact_duplicates: s.exact_duplicates,
                    near_duplicates: s.near_duplicates,
                    same_story: s.same_story,
                    merges: s.merges,
                    embedder: s.embedder,
                })
                .collect(),
        }))
    }
}
