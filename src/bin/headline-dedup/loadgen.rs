//! `headline-dedup bench`: a load generator that drives a real server over
//! gRPC with concurrent clients (unary `Ingest` or `IngestStream`) from a
//! headline file, as fast as it goes or at a steady rate, optionally with
//! reads after each batch and for a fixed duration (a soak), and reports
//! throughput, latency percentiles and, for a server it started itself,
//! the server's memory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use headline_dedup::client::{Client, connect};
use headline_dedup::core::types::DAY_MS;
use headline_dedup::dataset::{Row, read_rows};
use headline_dedup::pb;

use crate::commands::request_headline;
use crate::config::BenchArgs;
use crate::eval::{NO_TIME, Order, arrange};

/// How the load is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One unary `Ingest` call per batch.
    Unary,
    /// One `IngestStream` per client, one message per batch.
    Stream,
}

/// The measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Headlines sent while measuring.
    pub headlines: usize,
    /// Calls (or stream messages) while measuring.
    pub calls: usize,
    /// Calls that failed, other than load shedding.
    pub errors: usize,
    /// Those calls by status code.
    pub errors_by_code: BTreeMap<String, usize>,
    /// Calls refused with RESOURCE_EXHAUSTED (load shedding).
    pub shed: usize,
    /// Read calls.
    pub reads: usize,
    /// Read latency 99th percentile, milliseconds.
    pub read_p99_ms: f64,
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
    /// Resident memory of a server started here at the end, bytes.
    pub server_rss_bytes: Option<u64>,
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
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--max-batch", "100000", "--max-message-bytes", "268435456"])
            .args(settings.iter().flat_map(|s| ["--set", s.as_str()]))
            .env("RUST_LOG", Self::log_filter())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the server")?;
        let addr = Self::forward_log(&mut child)?;
        let spawned = Self { child, addr, _temp: temp };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !headline_dedup::server::probe(&spawned.addr, None, Duration::from_secs(1)).await.unwrap_or(false) {
            anyhow::ensure!(Instant::now() < deadline, "the server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(spawned)
    }

    /// This process's log filter for the server, which always logs the
    /// line that names its address.
    fn log_filter() -> String {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| crate::DEFAULT_LOG_FILTER.into());
        format!("{filter},headline_dedup::server=info")
    }

    /// Copies the server's log to this process's standard error, and
    /// returns the gRPC address the server reports once it is listening
    /// (it picks a free port itself, so no other process can take it first).
    fn forward_log(child: &mut Child) -> anyhow::Result<String> {
        let stderr = child.stderr.take().context("the server's log is not piped")?;
        let (listening, addresses) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((addr, _)) = headline_dedup::server::listening_addresses(&line) {
                    let _ = listening.send(addr);
                }
                eprintln!("{line}");
            }
        });
        addresses.recv_timeout(Duration::from_secs(120)).context("the server did not report its address")
    }

    /// A memory figure of the process from /proc: `VmHWM` (peak resident)
    /// or `VmRSS` (resident now), bytes.
    fn memory(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// How far each extra round through the file moves its times, unless the
/// round is squeezed (then by the squeezed span).
const ROUND_SHIFT: i64 = 92 * DAY_MS;

/// The headlines to send, made on demand: the file's rows in replay order,
/// round after round, each round with new ids and later times.
struct Feed {
    rows: Vec<Row>,
    /// Event time and row index of each position in one round.
    round: Vec<(i64, usize)>,
    /// How far each round's times follow the one before.
    shift: i64,
    /// Headlines in all (`None`: without end).
    total: Option<usize>,
}

impl Feed {
    fn new(rows: Vec<Row>, order: Order, squeeze: Option<i64>, total: Option<usize>) -> anyhow::Result<Self> {
        let mut round = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            round.push((row.published_millis()?.unwrap_or(NO_TIME), i));
        }
        arrange(&mut round, order, squeeze, |&i| rows[i].id.as_str());
        let shift = squeeze.map_or(ROUND_SHIFT, |span| span + 1);
        let total = if rows.is_empty() { Some(0) } else { total };
        Ok(Self { rows, round, shift, total })
    }

    fn headline(&self, position: usize) -> Option<pb::Headline> {
        if self.total.is_some_and(|total| position >= total) {
            return None;
        }
        let (time, row) = self.round[position % self.round.len()];
        let round = position / self.round.len();
        let row = &self.rows[row];
        let id = if round == 0 { row.id.clone() } else { format!("r{round}-{}", row.id) };
        Some(request_headline(row, id, Some(time + round as i64 * self.shift)))
    }

    /// The headlines at `range` that exist.
    fn slice(&self, range: std::ops::Range<usize>) -> Vec<pb::Headline> {
        range.map_while(|position| self.headline(position)).collect()
    }
}

/// What a worker reports of one call.
#[derive(Debug, Clone, Copy)]
struct Sample {
    read: bool,
    latency: Duration,
    headlines: usize,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Shed,
    Failed(tonic::Code),
}

impl Outcome {
    fn of<T>(result: &Result<T, tonic::Status>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => Self::Shed,
            Err(status) => Self::Failed(status.code()),
        }
    }
}

/// The `p` quantile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Figures of a set of samples.
#[derive(Debug, Default)]
struct Tally {
    writes: Vec<Duration>,
    reads: Vec<Duration>,
    headlines: usize,
    shed: usize,
    errors: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, sample: Sample) {
        match sample.outcome {
            Outcome::Ok if sample.read => self.reads.push(sample.latency),
            Outcome::Ok => {
                self.writes.push(sample.latency);
                self.headlines += sample.headlines;
            }
            Outcome::Shed => self.shed += 1,
            Outcome::Failed(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// "N errors" and, if any, their codes.
    fn describe_errors(&self) -> String {
        let codes: Vec<String> = self.errors.iter().map(|(code, n)| format!("{code} {n}")).collect();
        if codes.is_empty() {
            "0 errors".into()
        } else {
            format!("{} errors ({})", self.error_count(), codes.join(", "))
        }
    }

    fn sort(&mut self) {
        self.writes.sort();
        self.reads.sort();
    }
}

/// Everything a worker needs.
struct Plan {
    feed: Feed,
    offset: usize,
    batch: usize,
    next: AtomicUsize,
    started: Instant,
    until: Option<Instant>,
    rate: Option<f64>,
    reads: usize,
    namespace: String,
    /// (headline, story) of every answer, when the job writes them.
    answers: Option<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Plan {
    /// Keeps the stories a batch's answers named, if the job writes them.
    fn record(&self, assignments: &[pb::Assignment]) {
        let Some(answers) = &self.answers else { return };
        let mut answers = answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.extend(
            assignments.iter().filter(|a| a.error.is_none()).map(|a| (a.headline_id.clone(), a.story_id.clone())),
        );
    }

    /// The next batch, when it is due; `None` when the run is over.
    async fn take(&self) -> Option<Vec<pb::Headline>> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let start = self.offset + k * self.batch;
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64((k * self.batch) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if self.until.is_some_and(|until| Instant::now() >= until) {
            return None;
        }
        let batch = self.feed.slice(start..start + self.batch);
        (!batch.is_empty()).then_some(batch)
    }
}

/// Runs the job.
pub async fn run(job: &BenchArgs) -> anyhow::Result<LoadReport> {
    let mut rows = read_rows(&job.file)?;
    if let Some(limit) = job.limit {
        rows.truncate(limit);
    }
    let duration = job.duration.map(Duration::from_secs);
    let total = if duration.is_some() { None } else { Some(job.total.unwrap_or(rows.len())) };
    let credentials = job.credentials.credentials();
    let feed = Feed::new(rows, job.order, job.squeeze, total)?;
    let spawned = match &job.addr {
        Some(_) => None,
        None => Some(Spawned::start(job.data_dir.clone(), &job.settings).await?),
    };
    let addr = job.addr.clone().or_else(|| spawned.as_ref().map(|s| s.addr.clone())).unwrap_or_default();
    let mut client = connect(&addr, &credentials).await?;
    let preload = feed.slice(0..job.preload);
    for chunk in preload.chunks(1000) {
        client
            .ingest(pb::IngestRequest { namespace: job.namespace.clone(), headlines: chunk.to_vec() })
            .await
            .context("preload")?;
    }
    let started = Instant::now();
    let plan = Arc::new(Plan {
        feed,
        offset: preload.len(),
        batch: job.batch.max(1),
        next: AtomicUsize::new(0),
        started,
        until: duration.map(|d| started + d),
        rate: job.rate.filter(|r| *r > 0.0),
        reads: job.reads,
        namespace: job.namespace.clone(),
        answers: job.out.as_ref().map(|_| std::sync::Mutex::new(Vec::new())),
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let mut workers = Vec::new();
    for _ in 0..job.concurrency.max(1) {
        let client = connect(&addr, &credentials).await?;
        let (plan, tx, mode) = (Arc::clone(&plan), tx.clone(), job.mode);
        workers.push(tokio::spawn(async move { worker(client, mode, plan, tx).await }));
    }
    drop(tx);
    let mut all = Tally::default();
    let mut interval = Tally::default();
    let mut ticks = job
        .report_every
        .map(Duration::from_secs)
        .map(|every| tokio::time::interval_at((started + every).into(), every));
    loop {
        let tick = async {
            match &mut ticks {
                Some(ticks) => ticks.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sample = rx.recv() => match sample {
                Some(sample) => {
                    all.add(sample);
                    interval.add(sample);
                }
                None => break,
            },
            _ = tick => {
                let mut done = std::mem::take(&mut interval);
                done.sort();
                let rss = spawned.as_ref().and_then(|s| s.memory("VmRSS"));
                eprintln!(
                    "bench: {:>6.0}s {:>7} headlines, write p99 {:>7.2} ms, read p99 {:>6.2} ms, {} shed, {}, server RSS {}",
                    started.elapsed().as_secs_f64(),
                    done.headlines,
                    percentile(&done.writes, 0.99),
                    percentile(&done.reads, 0.99),
                    done.shed,
                    done.describe_errors(),
                    rss.map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
                );
            }
        }
    }
    for worker in workers {
        worker.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    if let (Some(out), Some(answers)) = (&job.out, &plan.answers) {
        let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        write_predictions(&mut client, &job.namespace, answers, out).await?;
    }
    Ok(LoadReport {
        headlines: all.headlines,
        calls: all.writes.len(),
        errors: all.error_count(),
        errors_by_code: all.errors.clone(),
        shed: all.shed,
        reads: all.reads.len(),
        read_p99_ms: percentile(&all.reads, 0.99),
        seconds,
        headlines_per_second: all.headlines as f64 / seconds.max(1e-9),
        p50_ms: percentile(&all.writes, 0.50),
        p95_ms: percentile(&all.writes, 0.95),
        p99_ms: percentile(&all.writes, 0.99),
        max_ms: percentile(&all.writes, 1.0),
        server_peak_rss_bytes: spawned.as_ref().and_then(|s| s.memory("VmHWM")),
        server_rss_bytes: spawned.as_ref().and_then(|s| s.memory("VmRSS")),
    })
}

/// Writes `{"id","cluster"}` for each answer, its story resolved through
/// the merges of every story the server lists now.
async fn write_predictions(
    client: &mut Client,
    namespace: &str,
    answers: Vec<(String, String)>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut survivor: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListStoriesRequest {
            namespace: namespace.to_owned(),
            page_size: 1000,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client.list_stories(request).await.context("listing the stories")?.into_inner();
        for story in page.stories {
            for merged in story.merged_story_ids {
                survivor.insert(merged, story.story_id.clone());
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    for (id, story) in answers {
        let cluster = survivor.get(&story).unwrap_or(&story);
        writeln!(file, "{}", serde_json::json!({ "id": id, "cluster": cluster }))?;
    }
    file.flush()?;
    Ok(())
}

/// Reads after a batch: the story of its first assignment, then a page of
/// the most recent stories, alternately.
async fn read_after(client: &mut Client, plan: &Plan, story_id: &str, report: &mpsc::UnboundedSender<Sample>) {
    for i in 0..plan.reads {
        let started = Instant::now();
        let outcome = if i % 2 == 0 {
            let request = pb::GetStoryRequest { namespace: plan.namespace.clone(), story_id: story_id.to_owned() };
            Outcome::of(&client.get_story(request).await)
        } else {
            let request =
                pb::ListStoriesRequest { namespace: plan.namespace.clone(), page_size: 20, ..Default::default() };
            Outcome::of(&client.list_stories(request).await)
        };
        let _ = report.send(Sample { read: true, latency: started.elapsed(), headlines: 0, outcome });
    }
}

/// One client: takes batches in order until none are left.
async fn worker(
    mut client: Client,
    mode: Mode,
    plan: Arc<Plan>,
    report: mpsc::UnboundedSender<Sample>,
) -> anyhow::Result<()> {
    let first_story =
        |assignments: &[pb::Assignment]| assignments.iter().find(|a| a.error.is_none()).map(|a| a.story_id.clone());
    match mode {
        Mode::Unary => {
            while let Some(batch) = plan.take().await {
                let headlines = batch.len();
                let started = Instant::now();
                let result =
                    client.ingest(pb::IngestRequest { namespace: plan.namespace.clone(), headlines: batch }).await;
                let sample =
                    Sample { read: false, latency: started.elapsed(), headlines, outcome: Outcome::of(&result) };
                let _ = report.send(sample);
                let assignments = result.map(|r| r.into_inner().assignments).unwrap_or_default();
                plan.record(&assignments);
                if let Some(story) = first_story(&assignments) {
                    read_after(&mut client, &plan, &story, &report).await;
                }
            }
        }
        Mode::Stream => {
            let (tx, rx) = mpsc::channel::<pb::IngestStreamRequest>(1);
            let mut replies = client.ingest_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
            while let Some(batch) = plan.take().await {
                let headlines = batch.len();
                let started = Instant::now();
                tx.send(pb::IngestStreamRequest {
                    namespace: plan.namespace.clone(),
                    headlines: batch,
                    batch_id: String::new(),
                })
                .await?;
                let reply = replies.next().await.unwrap_or_else(|| Err(tonic::Status::unavailable("stream closed")));
                let sample =
                    Sample { read: false, latency: started.elapsed(), headlines, outcome: Outcome::of(&reply) };
                let _ = report.send(sample);
                let assignments = reply.map(|r| r.assignments).unwrap_or_default();
                plan.record(&assignments);
                if let Some(story) = first_story(&assignments) {
                    read_after(&mut client, &plan, &story, &report).await;
                }
            }
        }
    }
    Ok(())
}
