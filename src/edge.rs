//! The tower layers around every gRPC service. [`AuthLayer`], the outer
//! one, turns away calls without the bearer token, when one is configured,
//! before anything else is done for them. Each response then passes
//! [`GrpcEdgeLayer`]: statuses of the codec get the codes the gRPC
//! specification gives them, and the RPC is counted and timed for the
//! `grpc_server_*` metrics. Metrics are labelled with the service and
//! method of the server's own [`Routes`] only, so no client can add series.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use metrics::{counter, histogram};
use prost::Message;
use subtle::ConstantTimeEq;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response, header};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::api::json;
use crate::telemetry::{GRPC_HANDLED, GRPC_SECONDS, GRPC_STARTED};

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

/// The status of a response, from its headers (a trailers-only response)
/// or its trailers, corrected where the codec's errors need it: a message
/// over the size limit is RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE), and
/// a request that is not valid protobuf, such as a string field that is
/// not UTF-8, is INVALID_ARGUMENT (tonic says INTERNAL), as gRPC specifies;
/// the message, which names the field, is kept.
fn grpc_status(headers: &mut HeaderMap) -> Option<Code> {
    let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
    let (codec_message, corrected) = match code {
        Code::OutOfRange => ("Error, decoded message length too large", Code::ResourceExhausted),
        Code::Internal => ("failed to decode Protobuf message", Code::InvalidArgument),
        _ => return Some(code),
    };
    let message = headers.get("grpc-message").map(HeaderValue::as_bytes).unwrap_or_default();
    if !percent_encoding::percent_decode(message).decode_utf8_lossy().starts_with(codec_message) {
        return Some(code);
    }
    headers.insert("grpc-status", HeaderValue::from(corrected as i32));
    Some(corrected)
}

/// The label of every part of a path that is not one of the server's
/// routes.
const UNKNOWN: &str = "unknown";

/// The methods the server serves, as `/package.Service/Method` paths.
#[derive(Debug, Clone, Default)]
pub struct Routes(HashSet<String>);

impl Routes {
    /// Every method of every service in these encoded file descriptor sets.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut paths = HashSet::new();
        for set in sets {
            for file in prost_types::FileDescriptorSet::decode(*set)?.file {
                let package = file.package();
                for service in &file.service {
                    for method in &service.method {
                        paths.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                    }
                }
            }
        }
        Ok(Self(paths))
    }

    /// The service and method of `path`, or `unknown` for both if the
    /// server has no such route.
    fn labels<'p>(&self, path: &'p str) -> (&'p str, &'p str) {
        if json::is_bulk(path) {
            return json::BULK_LABELS;
        }
        if !self.0.contains(path) {
            return (UNKNOWN, UNKNOWN);
        }
        path.trim_start_matches('/').split_once('/').unwrap_or((UNKNOWN, UNKNOWN))
    }
}

/// Wraps every gRPC service: status corrections and metrics.
#[derive(Debug, Clone, Default)]
pub struct GrpcEdgeLayer {
    routes: Arc<Routes>,
}

impl GrpcEdgeLayer {
    /// Counts the calls of `routes` by name, and every other call as
    /// `unknown`.
    pub fn new(routes: Arc<Routes>) -> Self {
        Self { routes }
    }
}

impl<S> Layer<S> for GrpcEdgeLayer {
    type Service = GrpcEdge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcEdge { inner, routes: Arc::clone(&self.routes) }
    }
}

/// The service made by [`GrpcEdgeLayer`].
#[derive(Debug, Clone)]
pub struct GrpcEdge<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcEdge<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<EdgeBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = Call::start(self.routes.labels(request.uri().path()));
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            let mut response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    call.finish(Code::Unavailable);
                    return Err(error);
                }
            };
            if let Some(&json::CallCode(code)) = response.extensions().get() {
                call.finish(code);
            } else if let Some(code) = grpc_status(response.headers_mut()) {
                call.finish(code);
            }
            Ok(response.map(|body| EdgeBody { inner: body, call }))
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
    fn start((service, method): (&str, &str)) -> Self {
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

/// A response body whose trailers pass through [`grpc_status`], which
/// records the RPC's status.
#[derive(Debug)]
pub struct EdgeBody<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for EdgeBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_mut().and_then(grpc_status) {
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

/// Calls to these paths need no token: orchestrators probe health.
const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// What a call may do, as the token it carried says; [`AuthLayer`] puts it
/// in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything: no tokens are configured, or the call carried the
    /// admin token.
    Admin,
    /// Everything but administration (`Backup`): the call carried the
    /// ordinary token.
    Client,
}

/// Requires `authorization: Bearer TOKEN` on every call but health checks;
/// without a token configured, lets everything through. The admin token,
/// if one is configured, is accepted too and also allows administration.
#[derive(Clone, Default)]
pub struct AuthLayer {
    expected: Option<Arc<[u8]>>,
    admin: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("enabled", &self.expected.is_some())
            .field("admin", &self.admin.is_some())
            .finish()
    }
}

fn bearer(token: &str) -> Arc<[u8]> {
    Arc::from(format!("Bearer {token}").into_bytes())
}

impl AuthLayer {
    /// Checks for `token`, if any, and accepts `admin` as well.
    pub fn new(token: Option<&str>, admin: Option<&str>) -> Self {
        Self { expected: token.map(bearer), admin: admin.map(bearer) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, expected: self.expected.clone(), admin: self.admin.clone() }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    expected: Option<Arc<[u8]>>,
    admin: Option<Arc<[u8]>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("inner", &self.inner).field("enabled", &self.expected.is_some()).finish()
    }
}

impl<S> Auth<S> {
    /// What the request may do, or `None` if it may not pass; tokens are
    /// compared in constant time.
    fn access<B>(&self, request: &Request<B>) -> Option<Access> {
        let Some(expected) = &self.expected else { return Some(Access::Admin) };
        let presented = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
        if self.admin.as_ref().is_some_and(|admin| bool::from(presented.ct_eq(admin))) {
            return Some(Access::Admin);
        }
        if bool::from(presented.ct_eq(expected)) || request.uri().path().starts_with(OPEN_PATH_PREFIX) {
            return Some(Access::Client);
        }
        None
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(access) = self.access(&request) {
            request.extensions_mut().insert(access);
            let response = self.inner.call(request);
            Box::pin(async move { Ok(response.await?.map(tonic::body::Body::new)) })
        } else {
            let status = Status::unauthenticated("this call needs an authorization: Bearer <token> header");
            let refused = if json::is_grpc(request.headers()) {
                status.into_http()
            } else {
                json::refusal(request.uri().path(), status)
            };
            Box::pin(std::future::ready(Ok(refused)))
        }
    }
}
