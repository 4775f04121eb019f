//! Wiring of the gRPC server: the service (in gRPC, and in JSON over HTTP on
//! the same address), health, reflection (v1 and v1alpha), compression,
//! message limits and an orderly shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::api::json::{self, DedupHttp};
use crate::api::{DedupApi, Forwarder, Limits, Peers};
use crate::app::App;
use crate::edge::{AuthLayer, GrpcEdgeLayer, Routes};
use crate::pb;
use crate::pb::dedup_service_server::DedupServiceServer;

/// Server options.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Request limits.
    pub limits: Limits,
    /// The largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// How long in-flight calls may run after shutdown begins.
    pub grace_period: Duration,
    /// The certificate chain and key to serve TLS with.
    pub tls: Option<Identity>,
    /// The CA certificate (PEM file) that verifies the other nodes' TLS
    /// certificates when a write goes to its namespace's leader; a node
    /// serving TLS without it names the leader instead of forwarding.
    pub peer_ca: Option<std::path::PathBuf>,
    /// The bearer token every call but health checks must carry.
    pub auth_token: Option<String>,
    /// The bearer token that administration (`Backup`) needs when tokens
    /// are on; it is accepted wherever the ordinary one is.
    pub admin_token: Option<String>,
    /// How long a write on a node that does not lead its namespace waits
    /// for a leader to forward it to (PostgreSQL), before UNAVAILABLE.
    pub leader_wait: Duration,
}

/// How long open metrics and board connections may delay the end of
/// [`run`] after the gRPC server has stopped.
const WEB_GRACE_PERIOD: Duration = Duration::from_secs(2);

/// The message of the log line that names the bound addresses (`addr`,
/// `metrics`), so a process started with port 0 can be found.
const LISTENING: &str = "listening";

/// The gRPC and web addresses a JSON-format log line (`--log-format json`)
/// reports, if it is the line [`run`] logs once it is listening.
pub fn listening_addresses(line: &str) -> Option<(String, String)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = entry.get("fields")?;
    if fields.get("message")? != LISTENING {
        return None;
    }
    Some((fields.get("addr")?.as_str()?.to_owned(), fields.get("metrics")?.as_str()?.to_owned()))
}

/// Runs the whole service: `app` over gRPC on `listener` (see [`serve`]),
/// and the Prometheus metrics and the story board on `web_listener`, until
/// `shutdown` completes. Installs the process's metrics recorder, so it
/// runs once per process.
pub async fn run(
    listener: TcpListener,
    web_listener: TcpListener,
    app: Arc<App>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = crate::telemetry::install()?;
    info!(addr = %listener.local_addr()?, metrics = %web_listener.local_addr()?, "{LISTENING}");
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web = tokio::spawn(crate::web::serve(web_listener, Arc::clone(&app), metrics, async {
        let _ = web_stopped.await;
    }));
    let served = serve(listener, app, options, shutdown).await;
    let _ = stop_web.send(());
    if let Ok(joined) = tokio::time::timeout(WEB_GRACE_PERIOD, web).await {
        joined??;
    }
    served
}

/// The fully qualified name of the service, as health checks name it.
pub const SERVICE_NAME: &str = "headline_dedup.v1.DedupService";

/// Serves `app` on `listener` until `shutdown` completes, then marks the
/// service NOT_SERVING, stops accepting calls and waits up to the grace
/// period for in-flight ones.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DedupServiceServer<DedupApi>>().await;
    let follow_health = tokio::spawn(follow_app_health(app.serving(), health.clone()));
    let routes = Routes::from_descriptor_sets(&[
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;
    let peers = match (&options.tls, &options.peer_ca) {
        (None, _) => Peers::Plaintext,
        (Some(_), Some(ca)) => Peers::Tls(ca.clone()),
        (Some(_), None) => Peers::Unverifiable,
    };
    let forwarder = Forwarder::new(options.auth_token.clone(), peers, options.leader_wait);
    let api =
        DedupApi::new(Arc::clone(&app), options.limits, forwarder).with_max_message_bytes(options.max_message_bytes);
    let dedup = DedupServiceServer::new(api.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let mut services = tonic::service::Routes::builder();
    services
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(DedupHttp::new(dedup, api.clone(), options.max_message_bytes));
    let services = services.routes().into_axum_router().merge(json::bulk_router(api, options.max_message_bytes));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Small answers go out at once: without TCP_NODELAY a reply's last
    // frame can wait for the client's delayed acknowledgement (~40 ms).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // HTTP/1.1 too, for JSON clients such as curl.
    let mut builder = Server::builder().accept_http1(true);
    if let Some(identity) = options.tls {
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let server = tokio::spawn(
        builder
            .layer(AuthLayer::new(options.auth_token.as_deref(), options.admin_token.as_deref()))
            .layer(GrpcEdgeLayer::new(Arc::new(routes)))
            .add_routes(tonic::service::Routes::from(services))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    shutdown.await;
    follow_health.abort();
    info!("shutting down: health is NOT_SERVING");
    health.set_not_serving::<DedupServiceServer<DedupApi>>().await;
    health.set_service_status("", ServingStatus::NotServing).await;
    if let Err(e) = app.close_feeds() {
        warn!(error = %e, "the story change feeds could not be closed");
    }
    let _ = stop.send(());
    match tokio::time::timeout(options.grace_period, server).await {
        Ok(result) => result??,
        Err(_) => warn!(grace_period = ?options.grace_period, "in-flight calls did not finish within the grace period"),
    }
    info!("server stopped");
    Ok(())
}

/// Keeps the service's health in step with the application's: NOT_SERVING
/// while some namespace cannot be served (the application logs which and
/// why), SERVING again once it can.
async fn follow_app_health(
    mut serving: tokio::sync::watch::Receiver<bool>,
    health: tonic_health::server::HealthReporter,
) {
    while serving.changed().await.is_ok() {
        let status = if *serving.borrow_and_update() { ServingStatus::Serving } else { ServingStatus::NotServing };
        health.set_service_status(SERVICE_NAME, status).await;
        health.set_service_status("", status).await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => info!(signal = "SIGINT", "signal received"),
        () = terminate => info!(signal = "SIGTERM", "signal received"),
    }
}

/// Asks the health service at `addr` whether it is SERVING (over TLS
/// verified with the CA certificate `tls_ca`, if given).
pub async fn probe(addr: &str, tls_ca: Option<&std::path::Path>, timeout: Duration) -> anyhow::Result<bool> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus as Status};
    let check = async {
        let channel = crate::client::channel(addr, tls_ca).await?;
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest { service: SERVICE_NAME.to_owned() })
            .await?
            .into_inner();
        anyhow::Ok(reply.status == Status::Serving as i32)
    };
    tokio::time::timeout(timeout, check).await.map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}
