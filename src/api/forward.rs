//! Writes that reach a node which does not lead the namespace (PostgreSQL)
//! go to the leader the lease names; while the namespace has no live
//! leader (a paused or cut-off one whose lease has not run out yet), the
//! write is tried again until a bounded wait is over, then answered
//! UNAVAILABLE. A forwarded call is never forwarded again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

use crate::client::{Client, Credentials, connect};

/// The metadata key that marks a forwarded call.
pub const FORWARDED: &str = "x-headline-dedup-forwarded";

/// Pause between two attempts while a namespace has no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long connecting to a leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one forwarded call may take: a second, and a millisecond for
/// each headline. A leader that does not answer by then may be paused:
/// the write is tried here again (its lease may have run out), and a
/// retried write that the leader did take answers `replayed`.
fn forward_timeout(items: usize) -> Duration {
    Duration::from_secs(1) + Duration::from_millis(items as u64)
}

/// How this node reaches the other nodes.
#[derive(Debug, Clone)]
pub enum Peers {
    /// In plaintext: the nodes do not serve TLS.
    Plaintext,
    /// Over TLS, verified with this CA certificate (a PEM file).
    Tls(PathBuf),
    /// The nodes serve TLS and this one has no CA certificate to verify the
    /// others with: a write that another node leads names the leader.
    Unverifiable,
}

/// Clients of the other nodes, and how long a write waits for a leader.
#[derive(Debug)]
pub struct Forwarder {
    credentials: Credentials,
    /// Off for [`Peers::Unverifiable`].
    enabled: bool,
    wait: Duration,
    clients: Mutex<HashMap<String, Client>>,
}

/// A write to forward.
pub struct Write<Req> {
    /// The request.
    pub request: Req,
    /// How many items it carries (it may take longer with more).
    pub items: usize,
    /// An administration call passes on the caller's `authorization` (the
    /// admin token) in place of the cluster's token.
    pub authorization: Option<MetadataValue<Ascii>>,
}

/// Where a write should go next.
pub enum Attempt<T> {
    /// Done: the answer (of this node or of the leader).
    Done(Result<T, Status>),
    /// Try this node again after a pause.
    Again,
}

impl Forwarder {
    /// Forwards to `peers` with `auth_token` (the cluster's shared token),
    /// waiting up to `wait` for a leader.
    pub fn new(auth_token: Option<String>, peers: Peers, wait: Duration) -> Self {
        let enabled = !matches!(peers, Peers::Unverifiable);
        let tls_ca = match peers {
            Peers::Tls(ca) => Some(ca),
            Peers::Plaintext | Peers::Unverifiable => None,
        };
        Self { credentials: Credentials { tls_ca, auth_token }, enabled, wait, clients: Mutex::default() }
    }

    /// When a write that started now gives up waiting for a leader.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.wait
    }

    /// What to do with a write this node could not take because `leader`
    /// leads the namespace: forward it (unless it was forwarded itself,
    /// forwarding is off or no leader is named), or try again while the
    /// wait lasts.
    pub async fn redirect<Req, Res, F, Fut>(
        &self,
        forwarded: bool,
        leader: &str,
        deadline: Instant,
        refusal: Status,
        write: Write<Req>,
        call: F,
    ) -> Attempt<Res>
    where
        F: FnOnce(Client, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Res>, Status>>,
    {
        let waited = || {
            if Instant::now() + RETRY_PAUSE < deadline { Attempt::Again } else { Attempt::Done(Err(refusal.clone())) }
        };
        if forwarded || !self.enabled || leader.is_empty() {
            return waited();
        }
        let Some(client) = self.client(leader).await else { return waited() };
        let Write { request, items, authorization } = write;
        let mut request = Request::new(request);
        request.metadata_mut().insert(FORWARDED, MetadataValue::from_static("1"));
        if let Some(authorization) = authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        let timeout = forward_timeout(items);
        request.set_timeout(timeout);
        let retried = [tonic::Code::Unavailable, tonic::Code::Cancelled, tonic::Code::DeadlineExceeded];
        match tokio::time::timeout(timeout, call(client, request)).await {
            Ok(Ok(response)) => Attempt::Done(Ok(response.into_inner())),
            Ok(Err(status)) if !retried.contains(&status.code()) => Attempt::Done(Err(status)),
            _ => {
                self.clients.lock().await.remove(leader);
                waited()
            }
        }
    }

    /// A client of the node at `addr`, connected once and kept.
    async fn client(&self, addr: &str) -> Option<Client> {
        if let Some(client) = self.clients.lock().await.get(addr) {
            return Some(client.clone());
        }
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, &self.credentials)).await.ok()?.ok()?;
        self.clients.lock().await.insert(addr.to_owned(), client.clone());
        Some(client)
    }

    /// Pauses before the next attempt.
    pub async fn pause() {
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}
