//! Starting a server for a test and connecting to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

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
        Self::start_with(SettingsBook::default(), Limits { max_batch: 1000, max_pending: 64 }).await
    }

    pub async fn start_with(settings: SettingsBook, limits: Limits) -> Self {
        Self::start_app(App::in_memory(model(), settings).expect("app"), limits).await
    }

    /// A server of `app`.
    pub async fn start_app(app: App, limits: Limits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = Arc::new(app);
        let options = ServerOptions {
            limits,
            max_message_bytes: 4 * 1024 * 1024,
            grace_period: Duration::from_secs(5),
            tls: None,
            peer_ca: None,
            auth_token: None,
            admin_token: None,
            leader_wait: Duration::ZERO,
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

/// The grpcurl binary: $GRPCURL, or `grpcurl` on PATH.
pub fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_headline-dedup"))
}

/// A `headline-dedup serve` process on a free port, killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: String,
    /// Extra `healthcheck` arguments (the CA of a TLS server).
    health_args: Vec<String>,
    /// The metrics and story board address.
    pub web_addr: String,
    /// Everything the server logged, kept for failure messages.
    log: Arc<Mutex<String>>,
}

impl Served {
    /// `serve --in-memory`.
    pub fn start() -> Self {
        Self::start_with(&["--in-memory"])
    }

    /// `serve --data-dir DIR`.
    pub fn durable(dir: &Path) -> Self {
        Self::start_with(&["--data-dir", &dir.display().to_string()])
    }

    /// `serve` with extra arguments, once it reports SERVING.
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_checked(args, &[])
    }

    /// `serve` with extra arguments, once `healthcheck` with `health_args`
    /// reports SERVING. The server picks its own ports (`127.0.0.1:0`) and
    /// the test reads them from its "listening" log line, so two servers of
    /// concurrent tests can never be handed the same port.
    pub fn start_checked(args: &[&str], health_args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "warn,headline_dedup=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let log = Arc::new(Mutex::new(String::new()));
        let (listening, addresses) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addresses) = headline_dedup::server::listening_addresses(&line) {
                    let _ = listening.send(addresses);
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let (addr, web_addr) = addresses.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            panic!("the server did not report its addresses:\n{}", log.lock().unwrap_or_else(|e| e.into_inner()))
        });
        let health_args = health_args.iter().map(|a| a.to_string()).collect();
        let served = Self { child, addr, health_args, web_addr, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !served.healthy() {
            assert!(Instant::now() < deadline, "server did not become healthy:\n{}", served.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn healthy(&self) -> bool {
        Command::new(binary())
            .args(["healthcheck", "--addr", &self.addr])
            .args(&self.health_args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().expect("kill");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.child.wait().expect("wait")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    pub async fn client(&self) -> DedupServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        DedupServiceClient::new(channel)
    }
}

/// A GET over HTTP/1.1: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One labelled headline of a fixture.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Row {
    pub id: String,
    pub text: String,
    pub source: String,
    pub published_at: String,
    pub story: String,
}

/// The rows of `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path)
        .expect("fixture")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture row"))
        .collect()
}

impl Row {
    /// The row as a request headline.
    pub fn headline(&self) -> Headline {
        let ms = headline_dedup::dataset::parse_rfc3339(&self.published_at).expect("time");
        Headline {
            id: self.id.clone(),
            text: self.text.clone(),
            source: self.source.clone(),
            url: String::new(),
            published_time: Some(headline_dedup::api::timestamp(ms)),
        }
    }
}
