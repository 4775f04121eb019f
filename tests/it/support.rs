//! Starting a server for a test and connecting to it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use headline_dedup::api::Limits;
use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::embed::StaticModel;
use headline_dedup::pb::dedup_service_client::DedupServiceClient;
use headline_dedup::pb::{self, Headline};
use headline_dedup::server::{ServerOptions, serve};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// The bundled model, loaded once per test binary.
pub fn model() -> Arc<StaticModel> {
    static MODEL: OnceLock<Arc<StaticModel>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| Arc::new(StaticModel::bundled().expect("bundled model loads"))))
}

/// A server on 127.0.0.1 with a random port, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(SettingsBook::default(), 1000).await
    }

    pub async fn start_with(settings: SettingsBook, max_batch: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = Arc::new(App::in_memory(model(), settings));
        let options = ServerOptions {
            limits: Limits { max_batch },
            max_message_bytes: 4 * 1024 * 1024,
            grace_period: Duration::from_secs(5),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, options, async {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop) }
    }

    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> DedupServiceClient<Channel> {
        DedupServiceClient::new(self.channel().await)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A request headline.
pub fn headline(id: &str, text: &str, source: &str) -> Headline {
    Headline { id: id.into(), text: text.into(), source: source.into(), ..Default::default() }
}

/// Ingests into the default namespace.
pub async fn ingest(client: &mut DedupServiceClient<Channel>, headlines: Vec<Headline>) -> Vec<pb::Assignment> {
    client
        .ingest(pb::IngestRequest { namespace: String::new(), headlines })
        .await
        .expect("ingest")
        .into_inner()
        .assignments
}
