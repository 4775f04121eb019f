//! The `headline-dedup` binary: parse the command line, set up logging, run
//! the chosen command. The service itself is the library's
//! (`headline_dedup::server::run`); the tools around it are here.

mod commands;
mod config;
mod eval;
mod loadgen;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use config::{BenchArgs, Cli, Command, EvalArgs, IngestArgs, LogFormat, ServeArgs};
use headline_dedup::api::Limits;
use headline_dedup::app::{App, SettingsBook};
use headline_dedup::core::embed::StaticModel;
use headline_dedup::server::{self, ServerOptions};
use headline_dedup::store::{PostgresOptions, Store, panic_message};
use tonic::transport::Identity;
use tracing::info;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Healthcheck(args) => runtime()
            .and_then(|rt| {
                rt.block_on(server::probe(&args.addr, args.tls_ca.as_deref(), Duration::from_secs(args.timeout)))
            })
            .map(|serving| if serving { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
        Command::Eval(args) => run_eval(args).map(|()| ExitCode::SUCCESS),
        Command::Ingest(args) => run_ingest(args).map(|()| ExitCode::SUCCESS),
        Command::Stories(args) => {
            let credentials = args.credentials.credentials();
            runtime()
                .and_then(|rt| rt.block_on(commands::stories(&args.addr, &credentials, &args.namespace, args.top)))
                .map(|table| {
                    print!("{table}");
                    ExitCode::SUCCESS
                })
        }
        Command::Bench(args) => run_bench(args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => {
            let credentials = args.credentials.credentials();
            runtime().and_then(|rt| rt.block_on(commands::backup(&args.addr, &credentials, &args.out))).map(|report| {
                println!("{report}");
                ExitCode::SUCCESS
            })
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("headline-dedup: {e:#}");
        ExitCode::FAILURE
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Panics are logged as one error line (they are bugs; the database
/// library's panics on damaged files are turned into errors by the store).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::error!(location, reason = panic_message(info.payload()), "panic");
    }));
}

/// The log filter when RUST_LOG is not set.
const DEFAULT_LOG_FILTER: &str = "info,hnsw_rs=warn";

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = SettingsBook::parse(args.settings.iter().map(String::as_str))?;
    init_logging(args.log_format);
    log_panics();
    let model = Arc::new(StaticModel::bundled()?);
    let runtime = runtime()?;
    // Bound before the state loads, so that a node on PostgreSQL can name
    // the address it was given (port 0 included) as the leader's.
    let (listener, web_listener) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let web_listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (--metrics-listen): {e}", args.metrics_listen))?;
        anyhow::Ok((listener, web_listener))
    })?;
    let app = if args.in_memory {
        App::in_memory(model, settings)?
    } else if let Some(url) = &args.postgres {
        let advertise = match &args.advertise {
            Some(advertise) => advertise.clone(),
            None => advertised(listener.local_addr()?),
        };
        let lease = Duration::from_secs_f64(args.lease_seconds);
        App::open(model, settings, Store::postgres(PostgresOptions { url: url.clone(), advertise, lease })?)?
    } else {
        let store = Store::open(&args.data_dir)?;
        info!(data_dir = %args.data_dir.display(), "opening state");
        App::open(model, settings, store)?
    };
    let app = app
        .with_max_namespaces(args.max_namespaces as usize)
        .with_auto_create(args.auto_create_namespaces)
        .with_watch_buffer(args.watch_buffer as usize);
    let app = Arc::new(app);
    app.start_following()?;
    let options = ServerOptions {
        limits: Limits { max_batch: args.max_batch as usize, max_pending: args.max_pending_calls as usize },
        max_message_bytes: args.max_message_bytes as usize,
        grace_period: Duration::from_secs(args.grace_period),
        tls: tls_identity(&args)?,
        peer_ca: peer_ca(&args)?,
        auth_token: auth_token(&args)?,
        admin_token: admin_token(&args)?,
        // Long enough for a paused or cut-off leader's lease to run out
        // and another node to take it.
        leader_wait: Duration::from_secs_f64(args.lease_seconds * 1.5 + 1.0),
    };
    runtime.block_on(server::run(listener, web_listener, Arc::clone(&app), options, server::shutdown_signal()))?;
    app.release();
    Ok(ExitCode::SUCCESS)
}

/// The address a node names as its own without --advertise: the bound
/// one, with the host's name for an unspecified IP (0.0.0.0 in a
/// container).
fn advertised(bound: std::net::SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
    format!("{}:{}", host.unwrap_or_else(|| "localhost".into()), bound.port())
}

fn tls_identity(args: &ServeArgs) -> anyhow::Result<Option<Identity>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else { return Ok(None) };
    let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    Ok(Some(Identity::from_pem(read(cert)?, read(key)?)))
}

/// The CA certificate that verifies the other replicas, checked now rather
/// than at the first forwarded write.
fn peer_ca(args: &ServeArgs) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(ca) = &args.tls_ca else { return Ok(None) };
    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let certificate = String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----");
    anyhow::ensure!(certificate, "{} holds no PEM certificate", ca.display());
    Ok(Some(ca.clone()))
}

/// The admin token: only with an ordinary one, and not the same.
fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let Some(admin) = args.admin_token.as_deref().map(str::trim) else { return Ok(None) };
    let token = auth_token(args)?;
    anyhow::ensure!(token.is_some(), "--admin-token needs --auth-token or --auth-token-file (tokens on)");
    anyhow::ensure!(
        !admin.is_empty() && admin.bytes().all(|b| b.is_ascii_graphic()),
        "the admin token must be non-empty printable ASCII without spaces"
    );
    anyhow::ensure!(token.as_deref() != Some(admin), "the admin token must differ from the auth token");
    Ok(Some(admin.to_owned()))
}

fn auth_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match &args.auth_token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        None => match &args.auth_token {
            Some(token) => token.trim().to_owned(),
            None => return Ok(None),
        },
    };
    anyhow::ensure!(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
        "the auth token must be non-empty printable ASCII without spaces"
    );
    Ok(Some(token))
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let model = Arc::new(StaticModel::bundled()?);
    eval::run(&args, &model)
}

fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let summary = runtime()?.block_on(commands::ingest(&args))?;
    let seconds = started.elapsed().as_secs_f64();
    println!("ingested in {seconds:.1}s ({:.0} headlines/s)", summary.total as f64 / seconds.max(1e-9));
    print!("{summary}");
    Ok(())
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let report = runtime()?.block_on(loadgen::run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let mib = |bytes: Option<u64>| bytes.map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
        println!(
            "bench: {} headlines in {:.1}s = {:.0} headlines/s; {} calls ({} shed, {} errors {:?}), latency p50 {:.2} ms \
             p95 {:.2} ms p99 {:.2} ms max {:.2} ms; {} reads, p99 {:.2} ms; server peak RSS {}, at the end {}",
            report.headlines,
            report.seconds,
            report.headlines_per_second,
            report.calls,
            report.shed,
            report.errors,
            report.errors_by_code,
            report.p50_ms,
            report.p95_ms,
            report.p99_ms,
            report.max_ms,
            report.reads,
            report.read_p99_ms,
            mib(report.server_peak_rss_bytes),
            mib(report.server_rss_bytes),
        );
    }
    Ok(())
}
