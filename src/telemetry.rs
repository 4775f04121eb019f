//! Metrics: the Prometheus recorder, the gRPC server metrics (as the
//! go-grpc-prometheus family names them) recorded by a tower layer around
//! every service, and the domain metrics' names.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tonic::Code;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

/// RPCs started, by service and method.
pub const GRPC_STARTED: &str = "grpc_server_started_total";
/// RPCs completed, by service, method and status code.
pub const GRPC_HANDLED: &str = "grpc_server_handled_total";
/// Seconds from the start of an RPC to its status, by service and method.
pub const GRPC_SECONDS: &str = "grpc_server_handling_seconds";
/// Headlines answered, by namespace and kind (`new_story`,
/// `exact_duplicate`, `near_duplicate`, `same_story`; `replayed` for
/// retries answered from storage, `rejected` for per-item errors).
pub const HEADLINES: &str = "headline_dedup_headlines_total";
/// Stored headlines per namespace.
pub const STORED: &str = "headline_dedup_stored_headlines";
/// Live stories per namespace.
pub const STORIES: &str = "headline_dedup_stories";
/// Vectors in the ANN index per namespace.
pub const INDEXED: &str = "headline_dedup_indexed_vectors";
/// Story merges per namespace.
pub const MERGES: &str = "headline_dedup_merges_total";
pub use crate::core::embed::EMBED_SECONDS;
/// Seconds to make one batch's changes durable.
pub const COMMIT_SECONDS: &str = "headline_dedup_commit_seconds";

/// Histogram buckets, in seconds: 50 µs to 10 s.
const BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Installs the process-wide Prometheus recorder and describes every
/// metric. Call once, before serving.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
    describe_counter!(GRPC_STARTED, "RPCs started on the server.");
    describe_counter!(GRPC_HANDLED, "RPCs completed on the server, regardless of success or failure.");
    describe_histogram!(GRPC_SECONDS, Unit::Seconds, "Time from the start of an RPC to its status.");
    describe_counter!(HEADLINES, "Headlines answered, by namespace and kind.");
    describe_gauge!(STORED, "Stored headlines.");
    describe_gauge!(STORIES, "Live stories.");
    describe_gauge!(INDEXED, "Vectors in the nearest-neighbour index.");
    describe_counter!(MERGES, "Stories merged into another.");
    describe_histogram!(EMBED_SECONDS, Unit::Seconds, "Time to embed one headline.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time to make one batch durable.");
    Ok(handle)
}

/// The name go-grpc-prometheus gives a status code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}

/// Wraps every gRPC service with the `grpc_server_*` metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = Call::start(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            let response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    call.finish(Code::Unavailable);
                    return Err(error);
                }
            };
            if let Some(code) = grpc_status(response.headers()) {
                call.finish(code);
            }
            Ok(response.map(|body| MeteredBody { inner: body, call }))
        })
    }
}

/// One RPC being measured; its outcome is recorded once.
#[derive(Debug)]
struct Call {
    service: String,
    method: String,
    started: Instant,
    done: bool,
}

impl Call {
    fn start(path: &str) -> Self {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("unknown", "unknown"));
        let call =
            Self { service: service.to_owned(), method: method.to_owned(), started: Instant::now(), done: false };
        counter!(GRPC_STARTED, "grpc_service" => call.service.clone(), "grpc_method" => call.method.clone())
            .increment(1);
        call
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (service, method) = (self.service.clone(), self.method.clone());
        counter!(GRPC_HANDLED, "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_code" => code_name(code))
            .increment(1);
        histogram!(GRPC_SECONDS, "grpc_service" => service, "grpc_method" => method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    /// A response body dropped before its trailers: the client went away.
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that records its RPC's status when the trailers pass.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.finish(Code::Internal),
            Poll::Ready(None) => self.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
