//! Connecting to a running server: TLS verified with a given CA, and the
//! bearer token on every call.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::pb::dedup_service_client::DedupServiceClient;

/// The largest message the command-line clients send or accept.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// What a client presents to a server: the CA certificate that verifies
/// the server's TLS certificate (TLS is on when given) and the bearer
/// token.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// PEM file of the CA certificate.
    pub tls_ca: Option<PathBuf>,
    /// The bearer token.
    pub auth_token: Option<String>,
}

/// A connection to `addr` (`host:port`, or a URI with its scheme), over TLS
/// verified with `tls_ca` when given.
pub async fn channel(addr: &str, tls_ca: Option<&Path>) -> anyhow::Result<Channel> {
    let scheme = if tls_ca.is_some() { "https" } else { "http" };
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("{scheme}://{addr}") };
    let mut endpoint = Endpoint::from_shared(uri).with_context(|| format!("invalid address {addr:?}"))?;
    if let Some(ca) = tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
        endpoint = endpoint.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    endpoint.connect().await.with_context(|| format!("cannot connect to {addr}"))
}

/// Adds the bearer token to every call that does not carry one.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0
            && !request.metadata().contains_key("authorization")
        {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client of the service.
pub type Client = DedupServiceClient<InterceptedService<Channel, BearerToken>>;

/// A client of the service at `addr`.
pub async fn connect(addr: &str, credentials: &Credentials) -> anyhow::Result<Client> {
    let token = credentials
        .auth_token
        .as_ref()
        .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
        .transpose()
        .context("the token must be printable ASCII")?;
    let channel = channel(addr, credentials.tls_ca.as_deref()).await?;
    Ok(DedupServiceClient::with_interceptor(channel, BearerToken(token))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
