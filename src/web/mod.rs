//! The HTTP side of the server, on its own port: Prometheus metrics at
//! `/metrics`, and a read-only story board at `/` with the small JSON API
//! behind it. The page and its script and style are compiled in; nothing
//! is fetched from elsewhere.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::{App, AppError, namespace_or_default};
use crate::core::types::{StoryOrder, StoryQuery, StoryView};

/// How often histogram buffers are folded in when nobody scrapes.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);
/// Bars in a story's arrivals chart.
const ARRIVAL_BINS: usize = 24;
/// Largest number of stories the board lists.
const MAX_STORIES: usize = 200;

/// The most metrics and board calls that read the application at once;
/// more are refused with 503 and `Retry-After`.
const MAX_CALLS: usize = 8;

#[derive(Clone)]
struct Board {
    app: Arc<App>,
    metrics: PrometheusHandle,
    calls: Arc<Semaphore>,
}

impl Board {
    /// Runs application work on the blocking pool, if fewer than
    /// [`MAX_CALLS`] calls are doing so already.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let Ok(permit) = Arc::clone(&self.calls).try_acquire_owned() else {
            return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many calls at once; retry shortly".into()));
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
        .map_err(ApiError::from)
    }
}

/// Serves metrics and the story board on `listener` until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_PERIOD);
            loop {
                ticks.tick().await;
                metrics.run_upkeep();
            }
        })
    };
    let result = axum::serve(listener, router(app, metrics)).with_graceful_shutdown(shutdown).await;
    upkeep.abort();
    result
}

fn router(app: Arc<App>, metrics: PrometheusHandle) -> Router {
    let asset = |content_type: &'static str, body: &'static str| {
        move || async move { ([(header::CONTENT_TYPE, content_type)], body) }
    };
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/", get(asset("text/html; charset=utf-8", include_str!("board.html"))))
        .route("/board.js", get(asset("text/javascript; charset=utf-8", include_str!("board.js"))))
        .route("/board.css", get(asset("text/css; charset=utf-8", include_str!("board.css"))))
        .route("/api/namespaces", get(namespaces))
        .route("/api/stories", get(stories))
        .route("/api/stories/{id}", get(story))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(Board { app, metrics, calls: Arc::new(Semaphore::new(MAX_CALLS)) })
}

/// Only this server's own script and style run on its pages.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn render_metrics(State(board): State<Board>) -> Result<Response, ApiError> {
    let app = Arc::clone(&board.app);
    let live = board
        .blocking(move || {
            app.publish_metrics()?;
            app.namespaces()
        })
        .await?;
    board.metrics.run_upkeep();
    let exposition = crate::telemetry::without_gone_namespaces(&board.metrics.render(), &live);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], exposition).into_response())
}

/// An application error as JSON with its HTTP status.
struct ApiError(StatusCode, String);

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        let (_, status) = crate::api::status_codes(error.code());
        Self(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn namespaces(State(board): State<Board>) -> Result<Json<Vec<String>>, ApiError> {
    let app = Arc::clone(&board.app);
    Ok(Json(board.blocking(move || app.namespaces()).await?))
}

#[derive(Debug, Deserialize)]
struct StoriesParams {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Source {
    name: String,
    count: usize,
}

#[derive(Debug, Serialize)]
struct StoryCard {
    id: String,
    canonical_headline_id: String,
    canonical_text: String,
    size: usize,
    sources: Vec<Source>,
    first_seen: i64,
    last_seen: i64,
    /// Members per equal slice of [first_seen, last_seen].
    arrivals: Vec<usize>,
}

#[derive(Debug, Serialize)]
struct Member {
    id: String,
    text: String,
    source: Option<String>,
    url: Option<String>,
    published: i64,
    kind: &'static str,
    matched_headline_id: Option<String>,
    similarity: f32,
}

#[derive(Debug, Serialize)]
struct StoryDetail {
    #[serde(flatten)]
    card: StoryCard,
    members: Vec<Member>,
}

/// Members per equal slice of the story's time span.
fn arrivals(story: &StoryView) -> Vec<usize> {
    let span = (story.last_seen - story.first_seen).max(0) as f64;
    let mut bins = vec![0; ARRIVAL_BINS];
    for member in &story.members {
        let offset = (member.headline.published - story.first_seen).max(0) as f64;
        let bin = if span > 0.0 { (offset / span * ARRIVAL_BINS as f64) as usize } else { 0 };
        bins[bin.min(ARRIVAL_BINS - 1)] += 1;
    }
    bins
}

fn card(story: &StoryView) -> StoryCard {
    StoryCard {
        id: story.id.to_string(),
        canonical_headline_id: story.canonical_headline_id.clone(),
        canonical_text: story.canonical_text.clone(),
        size: story.size,
        sources: story.sources.iter().map(|(name, count)| Source { name: name.clone(), count: *count }).collect(),
        first_seen: story.first_seen,
        last_seen: story.last_seen,
        arrivals: arrivals(story),
    }
}

async fn stories(
    State(board): State<Board>,
    Query(params): Query<StoriesParams>,
) -> Result<Json<Vec<StoryCard>>, ApiError> {
    let namespace = namespace_or_default(&params.namespace)?.to_owned();
    let order = match params.order.as_deref() {
        None | Some("recency") => StoryOrder::Recency,
        Some("size") => StoryOrder::Size,
        Some(other) => return Err(AppError::invalid("order", format!("unknown order {other:?}")).into()),
    };
    let query = StoryQuery {
        start: None,
        end: None,
        min_size: 1,
        order,
        limit: params.limit.unwrap_or(50).clamp(1, MAX_STORIES),
        after: None,
    };
    let app = Arc::clone(&board.app);
    let stories = board.blocking(move || app.list_stories_with_members(&namespace, &query)).await?;
    Ok(Json(stories.iter().map(card).collect()))
}

#[derive(Debug, Deserialize)]
struct StoryParams {
    #[serde(default)]
    namespace: String,
}

async fn story(
    State(board): State<Board>,
    Path(id): Path<String>,
    Query(params): Query<StoryParams>,
) -> Result<Json<StoryDetail>, ApiError> {
    let namespace = namespace_or_default(&params.namespace)?.to_owned();
    let app = Arc::clone(&board.app);
    let story = board.blocking(move || app.story(&namespace, &id)).await?;
    let members = story
        .members
        .iter()
        .map(|m| Member {
            id: m.headline.id.clone(),
            text: m.headline.text.clone(),
            source: m.headline.source.clone(),
            url: m.headline.url.clone(),
            published: m.headline.published,
            kind: m.kind.name(),
            matched_headline_id: m.matched_headline_id.clone(),
            similarity: m.similarity,
        })
        .collect();
    Ok(Json(StoryDetail { card: card(&story), members }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Headline, MatchKind, StoredHeadline, StoryId};

    fn member(published: i64) -> StoredHeadline {
        StoredHeadline {
            headline: Headline { id: "h".into(), text: "t".into(), source: None, url: None, published },
            story_id: StoryId(1),
            kind: MatchKind::SameStory,
            matched_headline_id: None,
            similarity: 0.5,
        }
    }

    #[test]
    fn arrivals_spread_members_over_the_story_span() {
        let story = StoryView {
            id: StoryId(1),
            canonical_headline_id: "h".into(),
            canonical_text: "t".into(),
            size: 4,
            members: [0, 0, 500, 1000].into_iter().map(member).collect(),
            sources: Vec::new(),
            first_seen: 0,
            last_seen: 1000,
            merged: Vec::new(),
        };
        let bins = arrivals(&story);
        assert_eq!(bins.len(), ARRIVAL_BINS);
        assert_eq!((bins[0], bins[ARRIVAL_BINS / 2], bins[ARRIVAL_BINS - 1]), (2, 1, 1));
        assert_eq!(bins.iter().sum::<usize>(), 4);
        let single = StoryView { members: vec![member(7)], first_seen: 7, last_seen: 7, ..story };
        assert_eq!(arrivals(&single)[0], 1);
    }
}
