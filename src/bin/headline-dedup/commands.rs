//! The command-line clients of a running server: `ingest` streams a
//! headline file with progress and a summary, `stories` prints the largest
//! live stories.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use headline_dedup::api::{kind_from_pb, timestamp};
use headline_dedup::client::{Credentials, connect};
use headline_dedup::core::types::MatchKind;
use headline_dedup::dataset::{Row, read_rows};
use headline_dedup::pb;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::config::IngestArgs;

/// Batches sent ahead of the last acknowledged one on an `IngestStream`.
const IN_FLIGHT: usize = 4;
/// How often progress is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Rejected headlines listed in the summary.
const SHOWN_REJECTIONS: usize = 10;

/// A file row as a request headline, with the given id and time.
pub fn request_headline(row: &Row, id: String, published: Option<i64>) -> pb::Headline {
    pb::Headline {
        id,
        text: row.text.clone(),
        source: row.source.clone().unwrap_or_default(),
        url: row.url.clone().unwrap_or_default(),
        published_time: published.map(timestamp),
    }
}

/// Counts of an ingest run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Headlines in the file.
    pub total: usize,
    /// Headlines that started a story.
    pub new_stories: usize,
    /// Exact duplicates.
    pub exact_duplicates: usize,
    /// Near duplicates.
    pub near_duplicates: usize,
    /// Other headlines of a known story.
    pub same_story: usize,
    /// Headlines that were already stored (answered from storage).
    pub replayed: usize,
    /// Headlines rejected, with the reason (the first few are kept).
    pub rejected: usize,
    /// The first rejections: id, field and reason.
    pub rejections: Vec<String>,
}

impl IngestSummary {
    fn count(&mut self, assignment: &pb::Assignment) {
        if let Some(error) = &assignment.error {
            self.reject(format!("{}: {}: {}", assignment.headline_id, error.field, error.reason));
        } else if assignment.replayed {
            self.replayed += 1;
        } else {
            match kind_from_pb(assignment.kind) {
                Some(MatchKind::NewStory) => self.new_stories += 1,
                Some(MatchKind::ExactDuplicate) => self.exact_duplicates += 1,
                Some(MatchKind::NearDuplicate) => self.near_duplicates += 1,
                Some(MatchKind::SameStory) | None => self.same_story += 1,
            }
        }
    }

    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.rejections.len() < SHOWN_REJECTIONS {
            self.rejections.push(why);
        }
    }
}

impl std::fmt::Display for IngestSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} headlines: {} new stories, {} exact duplicates, {} near duplicates, {} same story; \
             {} already stored; {} rejected",
            self.total,
            self.new_stories,
            self.exact_duplicates,
            self.near_duplicates,
            self.same_story,
            self.replayed,
            self.rejected
        )?;
        for rejection in &self.rejections {
            writeln!(f, "  rejected {rejection}")?;
        }
        if self.rejected > self.rejections.len() {
            writeln!(f, "  ... and {} more", self.rejected - self.rejections.len())?;
        }
        Ok(())
    }
}

/// Progress on a terminal (a bar with rate and ETA) or as periodic lines.
enum Progress {
    Bar(ProgressBar),
    Lines { total: usize, done: usize, started: Instant, printed: Instant },
}

impl Progress {
    fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let style =
                ProgressStyle::with_template("{bar:40.cyan/blue} {human_pos}/{human_len} headlines  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            Self::Bar(ProgressBar::new(total as u64).with_style(style))
        } else {
            let now = Instant::now();
            Self::Lines { total, done: 0, started: now, printed: now }
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Self::Bar(bar) => {
                bar.inc(n as u64);
                bar.set_message(format!("{:.0}/s", bar.per_sec()));
            }
            Self::Lines { total, done, started, printed } => {
                *done += n;
                if printed.elapsed() >= PLAIN_PROGRESS_EVERY {
                    *printed = Instant::now();
                    let rate = *done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    let eta = (*total - *done) as f64 / rate.max(1e-9);
                    eprintln!(
                        "ingest: {done}/{total} headlines ({:.1}%), {rate:.0}/s, ETA {eta:.0}s",
                        *done as f64 * 100.0 / (*total).max(1) as f64
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// Streams the file to the server over one `IngestStream`, a few batches
/// ahead of the acknowledgements. Ids are idempotency keys, so running the
/// same command again after an interruption resumes safely: what was
/// already stored is answered from storage and counted as such.
pub async fn ingest(job: &IngestArgs) -> anyhow::Result<IngestSummary> {
    let rows = read_rows(&job.file)?;
    let mut summary = IngestSummary { total: rows.len(), ..IngestSummary::default() };
    let mut out = job
        .out
        .as_ref()
        .map(|path| File::create(path).with_context(|| format!("cannot create {}", path.display())).map(BufWriter::new))
        .transpose()?;
    let mut headlines = Vec::with_capacity(rows.len());
    for row in &rows {
        match row.published_millis() {
            Ok(published) => headlines.push(request_headline(row, row.id.clone(), published)),
            Err(e) => {
                let rejected = pb::Assignment {
                    headline_id: row.id.clone(),
                    error: Some(pb::ItemError {
                        code: pb::ItemErrorCode::InvalidArgument.into(),
                        field: "published_at".into(),
                        reason: format!("{e:#}"),
                    }),
                    ..Default::default()
                };
                summary.count(&rejected);
                write_assignment(out.as_mut(), &rejected)?;
            }
        }
    }
    let mut progress = Progress::new(rows.len());
    progress.advance(summary.rejected);
    let mut client = connect(&job.addr, &job.credentials.credentials()).await?;
    let (tx, rx) = mpsc::channel::<pb::IngestStreamRequest>(IN_FLIGHT);
    let mut replies = client
        .ingest_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("cannot open an IngestStream")?
        .into_inner();
    let mut batches = headlines.chunks((job.batch as usize).max(1)).enumerate();
    let mut pending = VecDeque::new();
    let mut acknowledged = summary.rejected;
    loop {
        while pending.len() < IN_FLIGHT {
            let Some((i, batch)) = batches.next() else { break };
            let request = pb::IngestStreamRequest {
                namespace: job.namespace.clone(),
                headlines: batch.to_vec(),
                batch_id: i.to_string(),
            };
            if tx.send(request).await.is_err() {
                break;
            }
            pending.push_back(i.to_string());
        }
        let Some(expected) = pending.pop_front() else { break };
        let reply = match replies.next().await {
            Some(Ok(reply)) => reply,
            Some(Err(status)) => {
                progress.finish();
                anyhow::bail!(
                    "the server answered {:?}: {} after {acknowledged} of {} headlines were acknowledged; run the \
                     same command again to resume",
                    status.code(),
                    status.message(),
                    rows.len()
                );
            }
            None => anyhow::bail!("the server closed the stream after {acknowledged} of {} headlines", rows.len()),
        };
        anyhow::ensure!(reply.batch_id == expected, "answer for batch {} while expecting {expected}", reply.batch_id);
        for assignment in &reply.assignments {
            summary.count(assignment);
            write_assignment(out.as_mut(), assignment)?;
        }
        acknowledged += reply.assignments.len();
        progress.advance(reply.assignments.len());
    }
    drop(tx);
    progress.finish();
    if let Some(mut out) = out {
        out.flush()?;
    }
    Ok(summary)
}

fn kind_name(kind: i32) -> &'static str {
    kind_from_pb(kind).map_or("unspecified", MatchKind::name)
}

fn write_assignment(out: Option<&mut BufWriter<File>>, assignment: &pb::Assignment) -> anyhow::Result<()> {
    if let Some(out) = out {
        serde_json::to_writer(&mut *out, &assignment_json(assignment))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn assignment_json(a: &pb::Assignment) -> serde_json::Value {
    match &a.error {
        Some(error) => serde_json::json!({
            "id": a.headline_id,
            "error": {
                "field": error.field,
                "code": pb::ItemErrorCode::try_from(error.code).map_or("ITEM_ERROR_CODE_UNSPECIFIED", |c| c.as_str_name()),
                "reason": error.reason,
            },
        }),
        None => serde_json::json!({
            "id": a.headline_id,
            "story": a.story_id,
            "kind": kind_name(a.kind),
            "matched": a.matched_headline_id,
            "similarity": a.similarity,
            "canonical": a.canonical_headline_id,
            "replayed": a.replayed,
        }),
    }
}

/// A time as `YYYY-MM-DD HH:MMZ`.
fn minute(time: Option<&pb::wkt::Timestamp>) -> String {
    time.map(|t| {
        let text = t.to_string();
        format!("{}Z", text.get(..16).unwrap_or(&text).replacen('T', " ", 1))
    })
    .unwrap_or_default()
}

/// The `top` largest live stories of a namespace, as a table.
pub async fn stories(addr: &str, credentials: &Credentials, namespace: &str, top: u32) -> anyhow::Result<String> {
    let mut client = connect(addr, credentials).await?;
    let stories = client
        .list_stories(pb::ListStoriesRequest {
            namespace: namespace.to_owned(),
            page_size: top,
            order: pb::StoryOrder::Size.into(),
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("ListStories: {:?}: {}", status.code(), status.message()))?
        .into_inner()
        .stories;
    let mut table =
        format!("{:>6}  {:<10}  {:<17}  {:<17}  {}\n", "SIZE", "STORY", "FIRST SEEN", "LAST SEEN", "HEADLINE");
    for story in &stories {
        table.push_str(&format!(
            "{:>6}  {:<10}  {:<17}  {:<17}  {}\n",
            story.size,
            story.story_id,
            minute(story.first_seen.as_ref()),
            minute(story.last_seen.as_ref()),
            story.canonical_text
        ));
    }
    Ok(table)
}

/// Receives a backup from the server at `addr` into `out`: written into a
/// directory beside it, checked as `serve` checks a data directory at
/// start and against what the server says it sent, then renamed into
/// place. What it holds, in a line.
pub async fn backup(addr: &str, credentials: &Credentials, out: &std::path::Path) -> anyhow::Result<String> {
    use headline_dedup::store::{DB_FILE, Store};
    use std::io::Write as _;
    anyhow::ensure!(!out.exists(), "{} exists already: a backup never overwrites a file", out.display());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let dir = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let partial = dir.path().join(DB_FILE);
    let mut file = std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut client = connect(addr, credentials).await?;
    let mut stream = client
        .backup(pb::BackupRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("Backup: {:?}: {}", status.code(), status.message()))?
        .into_inner();
    let mut written = 0u64;
    let mut summary = None;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|status| anyhow::anyhow!("Backup: {:?}: {}", status.code(), status.message()))?;
        file.write_all(&piece.data).context("cannot write the backup")?;
        written += piece.data.len() as u64;
        if piece.summary.is_some() {
            summary = piece.summary;
        }
    }
    let summary = summary.context("the backup ended before the server said what it holds")?;
    file.sync_all().context("cannot write the backup")?;
    drop(file);
    anyhow::ensure!(written == summary.bytes, "received {written} bytes of a {}-byte backup", summary.bytes);
    let read = Store::verify_backup(dir.path()).context("the backup received is unusable")?;
    anyhow::ensure!(
        read.headlines == summary.headlines && read.namespaces == summary.namespaces as usize,
        "the backup holds {read:?}, the server sent {} namespaces and {} headlines",
        summary.namespaces,
        summary.headlines
    );
    std::fs::rename(&partial, out).with_context(|| format!("cannot move the backup to {}", out.display()))?;
    Ok(format!(
        "backup of {} namespaces, {} headlines ({} bytes) written to {}",
        summary.namespaces,
        summary.headlines,
        summary.bytes,
        out.display()
    ))
}
