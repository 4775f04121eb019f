//! `headline-dedup bench`: a load generator that drives a real server over
//! gRPC with concurrent clients (unary `Ingest` or `IngestStream`) from a
//! headline file, and reports throughput, latency percentiles and, for a
//! server it started itself, the server's peak RSS.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::client::{Client, Credentials, connect, request_headline};
use crate::core::normalize::stable_hash;
use crate::core::types::DAY_MS;
use crate::dataset::{Row, read_rows};
use crate::eval::Order;
use crate::pb;

/// How the load is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One unary `Ingest` call per batch.
    Unary,
    /// One `IngestStream` per client, one message per batch.
    Stream,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadJob {
    /// The server; `None` starts one (see `data_dir`).
    pub addr: Option<String>,
    /// TLS and token for `addr`.
    pub credentials: Credentials,
    /// Data directory of a server started here; `None` is a temporary one.
    pub data_dir: Option<PathBuf>,
    /// The headline file.
    pub file: PathBuf,
    /// Use only the first headlines of the file.
    pub limit: Option<usize>,
    /// Send this many headlines in all, going through the file again as
    /// often as needed: round `k > 0` prefixes ids with `r{k}-` and moves
    /// times `k * 92` days later, so that every headline is new.
    pub total: Option<usize>,
    /// Settings for a server started here (`key=value`).
    pub settings: Vec<String>,
    /// Headlines ingested before measuring (not timed).
    pub preload: usize,
    /// Replay order.
    pub order: Order,
    /// Concurrent clients (one connection each).
    pub concurrency: usize,
    /// Headlines per call.
    pub batch: usize,
    /// Unary or stream.
    pub mode: Mode,
    /// Namespace to write to.
    pub namespace: String,
}

/// The measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Headlines sent while measuring.
    pub headlines: usize,
    /// Calls (or stream messages) while measuring.
    pub calls: usize,
    /// Calls that failed.
    pub errors: usize,
    /// Wall time while measuring, seconds.
    pub seconds: f64,
    /// Headlines per second.
    pub headlines_per_second: f64,
    /// Call latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// Peak resident memory of a server started here, bytes.
    pub server_peak_rss_bytes: Option<u64>,
}

/// A server process started for the run.
struct Spawned {
    child: Child,
    addr: String,
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    async fn start(data_dir: Option<PathBuf>, settings: &[String]) -> anyhow::Result<Self> {
        let temp = match data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let dir = data_dir.unwrap_or_else(|| temp.as_ref().map(|t| t.path().to_owned()).unwrap_or_default());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(&dir)
            .args(["--max-batch", "100000", "--max-message-bytes", "268435456"])
            .args(settings.iter().flat_map(|s| ["--set", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the server")?;
        let spawned = Self { child, addr, _temp: temp };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !crate::server::probe(&spawned.addr, None, Duration::from_secs(1)).await.unwrap_or(false) {
            anyhow::ensure!(Instant::now() < deadline, "the server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(spawned)
    }

    /// Peak resident memory (VmHWM) of the process.
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// How far each extra round through the file moves its times.
const ROUND_SHIFT: i64 = 92 * DAY_MS;

fn to_headlines(rows: &[Row], order: Order, total: usize) -> anyhow::Result<Vec<pb::Headline>> {
    let mut timed = Vec::with_capacity(total);
    for (i, row) in rows.iter().cycle().take(if rows.is_empty() { 0 } else { total }).enumerate() {
        let round = i / rows.len();
        let mut time = row.published_millis()?.unwrap_or(DAY_MS / 2) + round as i64 * ROUND_SHIFT;
        if order == Order::ShuffleDay {
            time = time.div_euclid(DAY_MS) * DAY_MS + DAY_MS / 2;
        }
        let id = if round == 0 { row.id.clone() } else { format!("r{round}-{}", row.id) };
        timed.push((time, id, row));
    }
    if order == Order::ShuffleDay {
        timed.sort_by_key(|(time, id, _)| (*time, stable_hash(format!("shuffle:{id}").as_bytes())));
    }
    Ok(timed.into_iter().map(|(time, id, row)| request_headline(row, id, Some(time))).collect())
}

/// Runs the job.
pub async fn run(job: &LoadJob) -> anyhow::Result<LoadReport> {
    let mut rows = read_rows(&job.file)?;
    if let Some(limit) = job.limit {
        rows.truncate(limit);
    }
    let headlines = to_headlines(&rows, job.order, job.total.unwrap_or(rows.len()))?;
    let spawned = match &job.addr {
        Some(_) => None,
        None => Some(Spawned::start(job.data_dir.clone(), &job.settings).await?),
    };
    let addr = job.addr.clone().or_else(|| spawned.as_ref().map(|s| s.addr.clone())).unwrap_or_default();
    let preload = job.preload.min(headlines.len());
    let mut client = connect(&addr, &job.credentials).await?;
    for chunk in headlines[..preload].chunks(1000) {
        client
            .ingest(pb::IngestRequest { namespace: job.namespace.clone(), headlines: chunk.to_vec() })
            .await
            .context("preload")?;
    }
    let batches: Arc<Vec<Vec<pb::Headline>>> =
        Arc::new(headlines[preload..].chunks(job.batch.max(1)).map(<[pb::Headline]>::to_vec).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, bool)>();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..job.concurrency.max(1) {
        let client = connect(&addr, &job.credentials).await?;
        let (batches, next, tx, namespace, mode) =
            (Arc::clone(&batches), Arc::clone(&next), tx.clone(), job.namespace.clone(), job.mode);
        workers.push(tokio::spawn(async move { worker(client, mode, namespace, batches, next, tx).await }));
    }
    drop(tx);
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some((latency, ok)) = rx.recv().await {
        latencies.push(latency);
        errors += usize::from(!ok);
    }
    for worker in workers {
        worker.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let sent = headlines.len() - preload;
    Ok(LoadReport {
        headlines: sent,
        calls: latencies.len(),
        errors,
        seconds,
        headlines_per_second: sent as f64 / seconds.max(1e-9),
        p50_ms: percentile(0.50),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
        server_peak_rss_bytes: spawned.as_ref().and_then(Spawned::peak_rss),
    })
}

/// One client: takes batches in file order until none are left.
async fn worker(
    mut client: Client,
    mode: Mode,
    namespace: String,
    batches: Arc<Vec<Vec<pb::Headline>>>,
    next: Arc<AtomicUsize>,
    report: mpsc::UnboundedSender<(Duration, bool)>,
) -> anyhow::Result<()> {
    let take = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        batches.get(i).cloned()
    };
    match mode {
        Mode::Unary => {
            while let Some(batch) = take() {
                let started = Instant::now();
                let ok =
                    client.ingest(pb::IngestRequest { namespace: namespace.clone(), headlines: batch }).await.is_ok();
                let _ = report.send((started.elapsed(), ok));
            }
        }
        Mode::Stream => {
            let (tx, rx) = mpsc::channel::<pb::IngestStreamRequest>(1);
            let mut replies = client.ingest_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
            while let Some(batch) = take() {
                let started = Instant::now();
                tx.send(pb::IngestStreamRequest {
                    namespace: namespace.clone(),
                    headlines: batch,
                    batch_id: String::new(),
                })
                .await?;
                let ok = matches!(replies.next().await, Some(Ok(_)));
                let _ = report.send((started.elapsed(), ok));
            }
        }
    }
    Ok(())
}
