//! The API as JSON over HTTP, on the gRPC address, for clients without the
//! proto: the Connect protocol's unary JSON form of every unary RPC
//! (`POST /headline_dedup.v1.DedupService/Ingest`, `Content-Type:
//! application/json`, the proto3 JSON mapping that grpcurl prints), and a
//! bulk ingest for pipeline sinks (`POST
//! /v1/namespaces/{namespace}/headlines:ingest`, one headline per NDJSON
//! line in, one assignment per line out, in order).
//!
//! Both call the very service gRPC calls, so the bearer token, the limits,
//! shedding, forwarding to the leader and the `grpc_server_*` metrics are
//! the same. Connect calls answer errors as Connect does (`{"code":
//! "invalid_argument", "message": ..., "details": [...]}`), the bulk
//! endpoint as `google.rpc.Status` JSON; both with the matching HTTP status.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{Path, State};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::codegen::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::Service;

use super::DedupApi;
use crate::pb;
use crate::pb::dedup_service_server::{DedupService, DedupServiceServer};

/// The bulk ingest route, as the router writes it.
pub const BULK_ROUTE: &str = "/v1/namespaces/{namespace}/headlines:ingest";

/// The metric labels (service, method) of bulk ingest calls.
pub const BULK_LABELS: (&str, &str) = ("http", "headlines:ingest");

/// Whether `path` is a bulk ingest call.
pub fn is_bulk(path: &str) -> bool {
    path.strip_prefix("/v1/namespaces/")
        .and_then(|rest| rest.strip_suffix("/headlines:ingest"))
        .is_some_and(|namespace| !namespace.is_empty() && !namespace.contains('/'))
}

/// Whether a request speaks gRPC (any `application/grpc` content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC code a JSON call ended with, on its response, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct CallCode(pub Code);

/// The HTTP status of a gRPC code, as the Connect protocol maps it.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The Connect name of a gRPC code.
fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// A failed JSON call: its status, and the HTTP status when it is not the
/// one the code maps to (413 for a body over the limit, 415, 405).
#[derive(Debug)]
pub struct Failure {
    status: Status,
    http: StatusCode,
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self { http: http_status(status.code()), status }
    }
}

impl Failure {
    fn new(http: StatusCode, status: Status) -> Self {
        Self { status, http }
    }

    /// The field violations of an INVALID_ARGUMENT, as `google.rpc.BadRequest` JSON.
    fn bad_request(&self) -> Option<serde_json::Value> {
        let details = self.status.get_error_details();
        let violations = details.bad_request()?.field_violations.iter();
        let violations: Vec<_> =
            violations.map(|v| serde_json::json!({ "field": v.field, "description": v.description })).collect();
        Some(serde_json::json!({ "fieldViolations": violations }))
    }

    /// The Connect error response.
    fn connect(&self) -> Response<tonic::body::Body> {
        let mut error = serde_json::json!({
            "code": connect_code(self.status.code()),
            "message": self.status.message(),
        });
        let details = tonic_types::Status::decode(self.status.details()).map(|s| s.details).unwrap_or_default();
        if !details.is_empty() {
            let debug = self.bad_request();
            let details: Vec<_> = details
                .iter()
                .map(|any| {
                    let name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
                    let value = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value);
                    match (&debug, name == "google.rpc.BadRequest") {
                        (Some(debug), true) => serde_json::json!({ "type": name, "value": value, "debug": debug }),
                        _ => serde_json::json!({ "type": name, "value": value }),
                    }
                })
                .collect();
            error["details"] = serde_json::Value::Array(details);
        }
        response(self.http, error.to_string().into_bytes(), "application/json", self.status.code())
    }

    /// The `google.rpc.Status` JSON response.
    fn rpc_status(&self) -> Response<tonic::body::Body> {
        let mut error = serde_json::json!({ "code": self.status.code() as i32, "message": self.status.message() });
        if let Some(mut bad_request) = self.bad_request() {
            bad_request["@type"] = "type.googleapis.com/google.rpc.BadRequest".into();
            error["details"] = serde_json::json!([bad_request]);
        }
        response(self.http, error.to_string().into_bytes(), "application/json", self.status.code())
    }
}

/// The refusal of a call that is not gRPC, in its protocol's error form.
pub fn refusal(path: &str, status: Status) -> Response<tonic::body::Body> {
    let failure = Failure::from(status);
    if is_bulk(path) { failure.rpc_status() } else { failure.connect() }
}

fn response(http: StatusCode, body: Vec<u8>, content_type: &'static str, code: Code) -> Response<tonic::body::Body> {
    let mut response =
        Response::new(tonic::body::Body::new(http_body_util::Full::new(tonic::codegen::Bytes::from(body))));
    *response.status_mut() = http;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.extensions_mut().insert(CallCode(code));
    response
}

/// The body of a request, at most `max` bytes.
async fn read_body<B>(body: B, max: usize) -> Result<tonic::codegen::Bytes, Failure>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Err(error) => Err(Status::cancelled(format!("cannot read the request body: {error}")).into()),
    }
}

/// A body as sent with its `Content-Encoding` (none, `identity` or
/// `gzip`), decompressed to at most `max` bytes.
fn inflate(headers: &HeaderMap, body: tonic::codegen::Bytes, max: usize) -> Result<tonic::codegen::Bytes, Failure> {
    use std::io::Read as _;
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(body),
        Some("gzip") => {
            let mut out = Vec::new();
            let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::GzDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| Failure::from(Status::invalid_argument(format!("the body is not valid gzip: {e}"))))?;
            if out.len() > max {
                return Err(too_large(max));
            }
            Ok(out.into())
        }
        Some(other) => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::unimplemented(format!("content encoding {other:?} is not supported (gzip and identity are)")),
        )),
    }
}

/// The failure of a body over `max` bytes.
fn too_large(max: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Status::resource_exhausted(format!("the request body is over the limit of {max} bytes")),
    )
}

/// The two encodings of a Connect unary message.
#[derive(Debug, Clone, Copy)]
enum Codec {
    /// `application/json`: the proto3 JSON mapping.
    Json,
    /// `application/proto`: the protobuf binary form.
    Proto,
}

impl Codec {
    /// The codec of a request's content type (any parameters), if it is one.
    fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next()?.trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else if media.eq_ignore_ascii_case("application/proto") {
            Some(Self::Proto)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Proto => "application/proto",
        }
    }

    /// The request message of a body.
    fn decode<T: DeserializeOwned + Message + Default>(self, body: &[u8]) -> Result<T, Failure> {
        let invalid = |e: &dyn std::fmt::Display| -> Failure {
            Status::invalid_argument(format!("the request is not a valid message of its type: {e}")).into()
        };
        match self {
            Self::Json => serde_json::from_slice(body).map_err(|e| invalid(&e)),
            Self::Proto => T::decode(body).map_err(|e| invalid(&e)),
        }
    }

    /// The body of an answer.
    fn encode<T: Serialize + Message>(self, answer: Result<tonic::Response<T>, Status>) -> Result<Vec<u8>, Failure> {
        let message = answer?.into_inner();
        match self {
            Self::Json => serde_json::to_vec(&message)
                .map_err(|e| Status::internal(format!("cannot write the answer as JSON: {e}")).into()),
            Self::Proto => Ok(message.encode_to_vec()),
        }
    }
}

/// The `DedupService` as gRPC and as Connect JSON, on one route: requests
/// are told apart by content type.
#[derive(Clone)]
pub struct DedupHttp {
    grpc: DedupServiceServer<DedupApi>,
    api: DedupApi,
    max_bytes: usize,
}

impl DedupHttp {
    /// Serves `grpc` to gRPC clients and `api` (the service behind it) to
    /// Connect JSON ones, with request bodies up to `max_bytes`.
    pub fn new(grpc: DedupServiceServer<DedupApi>, api: DedupApi, max_bytes: usize) -> Self {
        Self { grpc, api, max_bytes }
    }
}

impl NamedService for DedupHttp {
    const NAME: &'static str = <DedupServiceServer<DedupApi> as NamedService>::NAME;
}

impl Service<Request<tonic::body::Body>> for DedupHttp {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        if is_grpc(request.headers()) {
            let mut grpc = self.grpc.clone();
            return Box::pin(async move { grpc.call(request).await });
        }
        let (api, max_bytes) = (self.api.clone(), self.max_bytes);
        Box::pin(async move { Ok(connect_unary(&api, max_bytes, request).await.unwrap_or_else(|f| f.connect())) })
    }
}

/// One Connect unary call.
async fn connect_unary(
    api: &DedupApi,
    max_bytes: usize,
    request: Request<tonic::body::Body>,
) -> Result<Response<tonic::body::Body>, Failure> {
    let prefix = format!("/{}/", <DedupHttp as NamedService>::NAME);
    let method = request.uri().path().strip_prefix(&prefix).unwrap_or_default().to_owned();
    if request.method() != Method::POST {
        return Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Status::unimplemented("Connect unary calls are POST requests"),
        ));
    }
    let Some(codec) = Codec::of(request.headers()) else {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::unimplemented(
                "this server speaks gRPC (application/grpc) and Connect (application/json, application/proto)",
            ),
        ));
    };
    let (parts, body) = request.into_parts();
    let body = inflate(&parts.headers, read_body(body, max_bytes).await?, max_bytes)?;
    let call =
        Call { metadata: tonic::metadata::MetadataMap::from_headers(parts.headers), extensions: parts.extensions };
    let answer = match method.as_str() {
        "Ingest" => codec.encode(api.ingest(call.with(codec.decode(&body)?)).await),
        "Match" => codec.encode(api.r#match(call.with(codec.decode(&body)?)).await),
        "ClusterBatch" => codec.encode(api.cluster_batch(call.with(codec.decode(&body)?)).await),
        "GetHeadline" => codec.encode(api.get_headline(call.with(codec.decode(&body)?)).await),
        "GetStory" => codec.encode(api.get_story(call.with(codec.decode(&body)?)).await),
        "ListStories" => codec.encode(api.list_stories(call.with(codec.decode(&body)?)).await),
        "DeleteHeadlines" => codec.encode(api.delete_headlines(call.with(codec.decode(&body)?)).await),
        "GetStats" => codec.encode(api.get_stats(call.with(codec.decode(&body)?)).await),
        "ListStoryChanges" => codec.encode(api.list_story_changes(call.with(codec.decode(&body)?)).await),
        "CreateNamespace" => codec.encode(api.create_namespace(call.with(codec.decode(&body)?)).await),
        "GetNamespace" => codec.encode(api.get_namespace(call.with(codec.decode(&body)?)).await),
        "ListNamespaces" => codec.encode(api.list_namespaces(call.with(codec.decode(&body)?)).await),
        "UpdateNamespace" => codec.encode(api.update_namespace(call.with(codec.decode(&body)?)).await),
        "DeleteNamespace" => codec.encode(api.delete_namespace(call.with(codec.decode(&body)?)).await),
        "WatchStories" => {
            Err(Status::unimplemented("WatchStories is a streaming RPC: use gRPC, or poll ListStoryChanges").into())
        }
        "IngestStream" => Err(Status::unimplemented("IngestStream is a streaming RPC: use gRPC, or Ingest").into()),
        "Backup" => Err(Status::unimplemented("Backup is a streaming RPC: use gRPC (headline-dedup backup)").into()),
        other => Err(Failure::new(StatusCode::NOT_FOUND, Status::unimplemented(format!("no method {other:?}")))),
    }?;
    Ok(response(StatusCode::OK, answer, codec.content_type(), Code::Ok))
}

/// What a JSON call carries besides its message.
struct Call {
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::codegen::http::Extensions,
}

impl Call {
    /// The call as the service takes it.
    fn with<T>(self, message: T) -> tonic::Request<T> {
        tonic::Request::from_parts(self.metadata, self.extensions, message)
    }
}

/// The bulk ingest route, served with `api` and bodies up to `max_bytes`.
pub fn bulk_router(api: DedupApi, max_bytes: usize) -> axum::Router {
    axum::Router::new().route(BULK_ROUTE, post(bulk_ingest)).with_state(Bulk { api, max_bytes })
}

#[derive(Clone)]
struct Bulk {
    api: DedupApi,
    max_bytes: usize,
}

/// One bulk ingest: the lines that are headlines go to `Ingest` as one
/// batch; a line that is not gets its own error in its place.
async fn bulk_ingest(
    State(bulk): State<Bulk>,
    Path(namespace): Path<String>,
    request: Request<axum::body::Body>,
) -> Response<tonic::body::Body> {
    run_bulk(&bulk, namespace, request).await.unwrap_or_else(|failure| failure.rpc_status())
}

async fn run_bulk(
    bulk: &Bulk,
    namespace: String,
    request: Request<axum::body::Body>,
) -> Result<Response<tonic::body::Body>, Failure> {
    let (parts, body) = request.into_parts();
    let body = inflate(&parts.headers, read_body(body, bulk.max_bytes).await?, bulk.max_bytes)?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| Failure::from(Status::invalid_argument(format!("the body is not UTF-8: {e}"))))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).collect();
    let mut headlines = Vec::with_capacity(lines.len());
    let mut answers: Vec<Option<pb::Assignment>> = Vec::with_capacity(lines.len());
    let mut placed = Vec::with_capacity(lines.len());
    for (position, (number, line)) in lines.iter().enumerate() {
        match serde_json::from_str::<pb::Headline>(line) {
            Ok(headline) => {
                placed.push(position);
                headlines.push(headline);
                answers.push(None);
            }
            Err(e) => answers.push(Some(line_error(*number, &e.to_string()))),
        }
    }
    let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
    let assignments = if headlines.is_empty() {
        if lines.is_empty() {
            return Err(Status::invalid_argument("the body holds no headline lines").into());
        }
        Vec::new()
    } else {
        let request =
            tonic::Request::from_parts(metadata, parts.extensions, pb::IngestRequest { namespace, headlines });
        bulk.api.ingest(request).await?.into_inner().assignments
    };
    for (index, mut assignment) in assignments.into_iter().enumerate() {
        let Some(&position) = placed.get(index) else { continue };
        let number = lines.get(position).map_or(0, |(n, _)| *n);
        if let Some(error) = assignment.error.as_mut() {
            error.field = error.field.replacen(&format!("headlines[{index}]"), &format!("lines[{number}]"), 1);
        }
        if let Some(slot) = answers.get_mut(position) {
            *slot = Some(assignment);
        }
    }
    let mut out = Vec::new();
    for answer in answers.into_iter().flatten() {
        serde_json::to_writer(&mut out, &answer)
            .map_err(|e| Failure::from(Status::internal(format!("cannot write an answer as JSON: {e}"))))?;
        out.push(b'\n');
    }
    Ok(response(StatusCode::OK, out, "application/x-ndjson", Code::Ok))
}

/// The answer of a line that is not a headline.
fn line_error(number: usize, reason: &str) -> pb::Assignment {
    pb::Assignment {
        error: Some(pb::ItemError {
            code: pb::ItemErrorCode::InvalidArgument as i32,
            field: format!("lines[{number}]"),
            reason: format!("not a JSON headline: {reason}"),
        }),
        ..pb::Assignment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_paths_name_one_namespace() {
        assert!(is_bulk("/v1/namespaces/news/headlines:ingest"));
        assert!(!is_bulk("/v1/namespaces//headlines:ingest"));
        assert!(!is_bulk("/v1/namespaces/a/b/headlines:ingest"));
        assert!(!is_bulk("/headline_dedup.v1.DedupService/Ingest"));
    }

    #[test]
    fn codes_map_to_the_statuses_connect_gives_them() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(connect_code(Code::Cancelled), "canceled");
    }
}
