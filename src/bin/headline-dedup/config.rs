//! The command line: every flag, its environment variable and its default.
//! `--help` is generated from the doc comments here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use headline_dedup::client::Credentials;
use headline_dedup::core::types::Millis;

use crate::eval::Order;
use crate::loadgen::Mode;

/// Deduplicates news headlines and clusters them into stories, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "headline-dedup", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service.
    Serve(ServeArgs),
    /// Exit 0 if the service at --addr reports SERVING, 1 otherwise (for
    /// container health checks).
    Healthcheck(HealthcheckArgs),
    /// Cluster a labelled headline file in-process and write predictions for
    /// score.py.
    Eval(EvalArgs),
    /// Stream a headline file to a server, with progress and a summary
    /// (safe to re-run: ids are idempotency keys).
    Ingest(IngestArgs),
    /// Print the largest live stories of a server.
    Stories(StoriesArgs),
    /// Write a consistent backup of a running server, taken while ingest
    /// goes on, to a file (restore: put it in an empty data directory as
    /// headline-dedup.redb and serve --data-dir on it).
    Backup(BackupArgs),
    /// Load-test a server over gRPC with concurrent clients and report
    /// throughput, latency percentiles and the server's peak RSS.
    Bench(BenchArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC (use 0.0.0.0:50051 in a container).
    #[arg(long, env = "HEADLINE_DEDUP_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the HTTP server for Prometheus metrics (/metrics) and the
    /// story board (/).
    #[arg(long, env = "HEADLINE_DEDUP_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// Directory that holds the durable state.
    #[arg(long, env = "HEADLINE_DEDUP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Keep everything in memory and nothing on disk (tests, one-off batch
    /// work); --data-dir is then ignored.
    #[arg(long, env = "HEADLINE_DEDUP_IN_MEMORY", conflicts_with = "postgres")]
    pub in_memory: bool,
    /// Keep the state in PostgreSQL instead of the data directory
    /// (postgresql://user:password@host:port/db): several nodes share it,
    /// one at a time leading each namespace; --data-dir is then ignored.
    #[arg(long, env = "HEADLINE_DEDUP_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,
    /// Where other nodes and clients reach this node's gRPC address (with
    /// --postgres; default: --listen).
    #[arg(long, env = "HEADLINE_DEDUP_ADVERTISE")]
    pub advertise: Option<String>,
    /// Seconds a namespace's lease lasts without renewal (with
    /// --postgres): a leader that is paused or cut off from PostgreSQL
    /// loses its namespaces to another node after this long.
    #[arg(long, env = "HEADLINE_DEDUP_LEASE_SECONDS", default_value_t = 5.0, value_parser = lease_seconds)]
    pub lease_seconds: f64,
    /// Most headlines per Ingest request, IngestStream batch or ClusterBatch.
    #[arg(long, env = "HEADLINE_DEDUP_MAX_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch: u32,
    /// Most calls waiting for or doing work at once; more are refused with
    /// RESOURCE_EXHAUSTED (load shedding).
    #[arg(long, env = "HEADLINE_DEDUP_MAX_PENDING_CALLS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_pending_calls: u32,
    /// Most namespaces the server holds; an Ingest that would create one
    /// more is refused with RESOURCE_EXHAUSTED (stored namespaces always
    /// load).
    #[arg(long, env = "HEADLINE_DEDUP_MAX_NAMESPACES", default_value_t = headline_dedup::app::DEFAULT_MAX_NAMESPACES, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_namespaces: u32,
    /// Story changes kept in memory for each watched namespace: a
    /// WatchStories stream that falls this far behind is ended with
    /// RESOURCE_EXHAUSTED (and resumes from the store).
    #[arg(long, env = "HEADLINE_DEDUP_WATCH_BUFFER", default_value_t = headline_dedup::app::DEFAULT_WATCH_BUFFER, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_buffer: u32,
    /// Whether an Ingest that names an unknown namespace creates it (true)
    /// or is refused NOT_FOUND (false; then CreateNamespace makes them).
    #[arg(long, env = "HEADLINE_DEDUP_AUTO_CREATE_NAMESPACES", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_namespaces: bool,
    /// Largest message accepted or sent, in bytes: a gRPC message, or the
    /// body of a JSON call.
    #[arg(long, env = "HEADLINE_DEDUP_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_message_bytes: u32,
    /// Seconds that in-flight calls may run after SIGTERM before the
    /// process exits.
    #[arg(long, env = "HEADLINE_DEDUP_GRACE_PERIOD", default_value_t = 10)]
    pub grace_period: u64,
    /// Clustering settings, as key=value for every namespace or
    /// namespace.key=value for one (repeat the flag, or separate with
    /// commas in the variable). Keys: embedder (lexical|semantic|mixed),
    /// semantic_weight, lexical_dim, idf_power, near_vector_threshold,
    /// near_string_threshold, background_weight, background_prior,
    /// story_threshold, merge_threshold, merge_crowding, story_window_hours,
    /// copy_window_hours, follow_share, candidates, retention_hours.
    #[arg(long = "set", env = "HEADLINE_DEDUP_SETTINGS", value_delimiter = ',')]
    pub settings: Vec<String>,
    /// PEM certificate chain to serve TLS with (with --tls-key).
    #[arg(long, env = "HEADLINE_DEDUP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HEADLINE_DEDUP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate that verifies the other replicas' TLS
    /// certificates, so a write can go to its namespace's leader (with
    /// --postgres and --tls-cert; without it such a write answers
    /// UNAVAILABLE naming the leader).
    #[arg(long, env = "HEADLINE_DEDUP_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Bearer token that every call but health checks must carry
    /// (`authorization: Bearer TOKEN`).
    #[arg(long, env = "HEADLINE_DEDUP_AUTH_TOKEN", hide_env_values = true, conflicts_with = "auth_token_file")]
    pub auth_token: Option<String>,
    /// File whose first line is the bearer token (keeps it out of the
    /// process list).
    #[arg(long, env = "HEADLINE_DEDUP_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Bearer token that administration (`Backup`) needs when tokens are
    /// on; accepted wherever the auth token is.
    #[arg(long, env = "HEADLINE_DEDUP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Log format (the filter comes from RUST_LOG, default "info").
    #[arg(long, env = "HEADLINE_DEDUP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `healthcheck` options.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the service.
    #[arg(long, env = "HEADLINE_DEDUP_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// PEM CA certificate that verifies the server's TLS certificate;
    /// turns TLS on.
    #[arg(long, env = "HEADLINE_DEDUP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// `eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled headline file (JSON lines; .gz and .zst are decompressed).
    pub gold: PathBuf,
    /// Replay order: file order, or shuffled within each day with every
    /// time set to noon (for the UCI set, whose times leak the labels).
    #[arg(long, value_enum, default_value = "file")]
    pub order: Order,
    /// Squeeze the replay's times into this many hours (linearly, in
    /// replay order), to cluster the same headlines at a higher density.
    #[arg(long = "squeeze-hours", value_name = "HOURS", value_parser = crate::eval::parse_squeeze_hours)]
    pub squeeze: Option<Millis>,
    /// Take every decision through the index a second time with every
    /// segment scanned exactly, and report how often the index's decision
    /// was the same (twice the cost).
    #[arg(long)]
    pub check_against_scan: bool,
    /// Where to write the {"id","cluster"} predictions.
    #[arg(long)]
    pub out: PathBuf,
    /// Headlines per ingest batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Only headlines published on or after this day (YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Only headlines published before this day (YYYY-MM-DD).
    #[arg(long)]
    pub until: Option<String>,
    /// Also write the rows that were evaluated, in the order they were
    /// replayed, with their gold stories (for score.py, or as a smaller
    /// headline file).
    #[arg(long)]
    pub gold_out: Option<PathBuf>,
    /// Also write each headline's assignment as answered
    /// ({"id","kind","matched","story"}), for eval/duplicates.py.
    #[arg(long)]
    pub assignments_out: Option<PathBuf>,
    /// Clustering settings, key=value (as for serve).
    #[arg(long = "set", value_delimiter = ',')]
    pub settings: Vec<String>,
}

/// `bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server to load; without it a server is started with a temporary (or
    /// --data-dir) data directory and its peak RSS is reported.
    #[arg(long)]
    pub addr: Option<String>,
    /// Data directory of the server started here.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Headline file (JSON lines; .gz and .zst are decompressed).
    #[arg(long, default_value = "../shared/eval/uci-news-aggregator/dev.jsonl.zst")]
    pub file: PathBuf,
    /// Use only the first N headlines of the file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Send N headlines in all, going through the file again as often as
    /// needed (later rounds get new ids and times 92 days later per round).
    #[arg(long)]
    pub total: Option<usize>,
    /// Keep sending for this many seconds (going through the file as often
    /// as needed), instead of a fixed count: a soak test.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Send at most this many headlines per second in all (default: as
    /// fast as the server answers).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Read calls after each batch (GetStory of its first story and
    /// ListStories, alternately).
    #[arg(long, default_value_t = 0)]
    pub reads: usize,
    /// Print throughput, write and read p99, errors and the server's RSS
    /// for every interval of this many seconds, to stderr.
    #[arg(long)]
    pub report_every: Option<u64>,
    /// Ingest the first N headlines before measuring.
    #[arg(long, default_value_t = 0)]
    pub preload: usize,
    /// Replay order (shuffle-day also sets every time to noon of its day).
    #[arg(long, value_enum, default_value = "file")]
    pub order: Order,
    /// Squeeze one round's times into this many hours (linearly, in replay
    /// order; the next round follows it), as if the feed were that much
    /// denser.
    #[arg(long = "squeeze-hours", value_name = "HOURS", value_parser = crate::eval::parse_squeeze_hours)]
    pub squeeze: Option<Millis>,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Headlines per call.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Unary Ingest calls or one IngestStream per client.
    #[arg(long, value_enum, default_value = "unary")]
    pub mode: Mode,
    /// Namespace to write to.
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write {"id","cluster"} for every headline answered while measuring
    /// (its story after the run's merges), for score.py.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Clustering settings of the server started here, key=value (as for
    /// serve).
    #[arg(long = "set", value_delimiter = ',')]
    pub settings: Vec<String>,
    /// TLS and token for --addr.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `ingest` options.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Headline file: JSON lines with id and text, optionally source, url
    /// and published_at (RFC 3339); .gz and .zst are decompressed.
    pub file: PathBuf,
    /// Address of the service.
    #[arg(long, env = "HEADLINE_DEDUP_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// Headlines per batch.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Namespace to write to ("" is the default one).
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// Write each headline's assignment here as JSON lines.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// TLS and token.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `stories` options.
#[derive(Debug, Args)]
pub struct StoriesArgs {
    /// Address of the service.
    #[arg(long, env = "HEADLINE_DEDUP_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// How many stories, largest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
    /// Namespace to read ("" is the default one).
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// TLS and token.
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Address of the service.
    #[arg(long, env = "HEADLINE_DEDUP_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// The backup file to write (it must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// TLS and token (the admin token, where tokens are on).
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// What a client presents to the server.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// PEM CA certificate that verifies the server's TLS certificate;
    /// turns TLS on.
    #[arg(long, env = "HEADLINE_DEDUP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Bearer token to send with every call.
    #[arg(long, env = "HEADLINE_DEDUP_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
}

impl CredentialArgs {
    /// What the library's client presents.
    pub fn credentials(&self) -> Credentials {
        Credentials { tls_ca: self.tls_ca.clone(), auth_token: self.auth_token.clone() }
    }
}

fn lease_seconds(value: &str) -> Result<f64, String> {
    let seconds: f64 = value.parse().map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if (0.2..=600.0).contains(&seconds) { Ok(seconds) } else { Err("must be 0.2 to 600 seconds".into()) }
}
