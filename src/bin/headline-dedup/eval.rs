//! `headline-dedup eval`: runs the engine in-process over a labelled file
//! and writes `{"id","cluster"}` lines for `score.py`.
//!
//! `--order shuffle-day` shuffles the headlines within each day and sets
//! every time to noon of its day: the UCI timestamps are per-story crawl
//! bursts, and replaying them in time order would leak the labels.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use headline_dedup::app::{DEFAULT_NAMESPACE, SettingsBook};
use headline_dedup::core::embed::{StaticModel, embedder_for};
use headline_dedup::core::engine::Engine;
use headline_dedup::core::normalize::stable_hash;
use headline_dedup::core::settings::Settings;
use headline_dedup::core::types::{DAY_MS, Headline, Millis, RawHeadline};
use headline_dedup::dataset::{Row, parse_rfc3339, read_rows};

use crate::config::EvalArgs;

/// The order in which the file is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// File order, times as given.
    File,
    /// Shuffled within each day, every time set to noon of its day.
    ShuffleDay,
}

/// Noon of 1970-01-01: the time given to rows that have none, so that a
/// run does not depend on the clock.
pub const NO_TIME: Millis = DAY_MS / 2;

/// Puts `(time, item)` pairs in replay order. `File` keeps them as they
/// are; `ShuffleDay` sets every time to noon of its day and orders each
/// day by a hash of the item's id, so that the result does not depend on
/// the file's order within a day.
///
/// With `squeeze` (a span in milliseconds, [`parse_squeeze_hours`]), the
/// replay is then sorted by time and its times mapped linearly from the
/// first onto that span, as if a feed of
/// the same headlines were that much denser. After `ShuffleDay` each day's
/// headlines are first spread evenly over their day in shuffled order, so
/// that no instant of the squeezed replay holds a whole day.
pub fn arrange<'a, T>(timed: &mut [(Millis, T)], order: Order, squeeze: Option<Millis>, id: impl Fn(&T) -> &'a str) {
    if order == Order::ShuffleDay {
        for (time, _) in timed.iter_mut() {
            *time = time.div_euclid(DAY_MS) * DAY_MS + DAY_MS / 2;
        }
        timed.sort_by_cached_key(|(time, item)| (*time, stable_hash(format!("shuffle:{}", id(item)).as_bytes())));
    }
    let Some(target) = squeeze else { return };
    if order == Order::ShuffleDay {
        for day in timed.chunk_by_mut(|a, b| a.0 == b.0) {
            let count = day.len() as i64;
            for (k, (time, _)) in (0..).zip(day.iter_mut()) {
                *time = *time - DAY_MS / 2 + (2 * k + 1) * DAY_MS / (2 * count);
            }
        }
    } else {
        timed.sort_by_key(|(time, _)| *time);
    }
    let (Some(first), Some(last)) = (timed.first().map(|t| t.0), timed.last().map(|t| t.0)) else { return };
    let span = i128::from(last - first).max(1);
    for (time, _) in timed.iter_mut() {
        let squeezed = i128::from(*time - first) * i128::from(target) / span;
        *time = first + i64::try_from(squeezed).unwrap_or(i64::MAX - first);
    }
}

/// A `--squeeze-hours` value, a positive number of hours, in milliseconds.
pub fn parse_squeeze_hours(text: &str) -> Result<Millis, String> {
    match text.parse::<f64>() {
        Ok(hours) if hours.is_finite() && hours > 0.0 && hours <= 1e6 => Ok((hours * 3_600_000.0) as Millis),
        _ => Err(format!("{text:?} is not a number of hours above 0 (at most 1e6)")),
    }
}

/// Runs the job and prints a summary line.
pub fn run(job: &EvalArgs, model: &Arc<StaticModel>) -> anyhow::Result<()> {
    let rows = read_rows(&job.gold)?;
    let day = |text: &str| parse_rfc3339(&format!("{text}T00:00:00Z"));
    let from = job.from.as_deref().map(day).transpose()?;
    let until = job.until.as_deref().map(day).transpose()?;
    let mut timed: Vec<(Millis, &Row)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let time = row.published_millis()?.unwrap_or(NO_TIME);
        if from.is_some_and(|f| time < f) || until.is_some_and(|u| time >= u) {
            continue;
        }
        timed.push((time, row));
    }
    arrange(&mut timed, job.order, job.squeeze, |&row| row.id.as_str());
    // Every headline is kept, so that every one can be scored.
    // The default namespace's settings; retention is ignored: every
    // headline is kept.
    let book = SettingsBook::parse(job.settings.iter().map(String::as_str))?;
    let settings = Settings { retention: None, ..book.get(DEFAULT_NAMESPACE).clone() };
    let embedder = embedder_for(&settings, model);
    let mut engine = Engine::new(settings, embedder);
    if job.check_against_scan {
        engine.check_against_scan();
    }
    let started = Instant::now();
    let mut rejected = 0usize;
    let mut answered = Vec::new();
    for chunk in timed.chunks(job.batch.max(1)) {
        let items: Vec<_> = chunk
            .iter()
            .map(|(time, row)| {
                let raw = RawHeadline {
                    id: &row.id,
                    text: &row.text,
                    source: row.source.as_deref().unwrap_or(""),
                    url: row.url.as_deref().unwrap_or(""),
                    published: Some(*time),
                };
                Headline::parse(&raw, *time, true)
            })
            .collect();
        for answer in engine.ingest(&items) {
            match answer {
                Ok(a) if job.assignments_out.is_some() => answered.push(a),
                Ok(_) => {}
                Err(_) => rejected += 1,
            }
        }
    }
    let elapsed = started.elapsed();
    write_predictions(&job.out, &engine, &timed)?;
    if let Some(path) = &job.gold_out {
        write_gold(path, &timed)?;
    }
    if let Some(path) = &job.assignments_out {
        write_lines(
            path,
            answered.iter().map(|a| {
                serde_json::json!({
                    "id": a.headline_id,
                    "kind": a.kind.name(),
                    "matched": a.matched_headline_id,
                    "story": a.story_id.to_string(),
                    "note": a.evidence.note,
                })
            }),
        )?;
    }
    let stats = engine.stats();
    println!(
        "eval: {} headlines in {:.1}s ({:.0}/s), {} rejected, {} stories, kinds: new {} exact {} near {} same {}, merges {}, indexed {}",
        timed.len(),
        elapsed.as_secs_f64(),
        timed.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        rejected,
        stats.stories,
        stats.new_stories,
        stats.exact_duplicates,
        stats.near_duplicates,
        stats.same_story,
        stats.merges,
        stats.indexed_vectors,
    );
    if let Some(check) = engine.scan_check() {
        println!(
            "eval: the index's decisions agreed with an exact scan's on {} of {} headlines ({:.3}%)",
            check.agreed,
            check.decisions,
            100.0 * check.agreed as f64 / check.decisions.max(1) as f64
        );
    }
    Ok(())
}

fn write_predictions(path: &Path, engine: &Engine, rows: &[(Millis, &Row)]) -> anyhow::Result<()> {
    write_lines(
        path,
        rows.iter().map(|(_, row)| {
            // A rejected row is its own cluster, so that it is still scored.
            let cluster = engine
                .headline(row.id.trim())
                .map(|h| h.story_id.to_string())
                .unwrap_or_else(|| format!("rejected:{}", row.id));
            serde_json::json!({ "id": row.id, "cluster": cluster })
        }),
    )
}

fn write_gold(path: &Path, rows: &[(Millis, &Row)]) -> anyhow::Result<()> {
    write_lines(
        path,
        rows.iter().map(|(_, row)| {
            serde_json::json!({
                "id": row.id,
                "text": row.text,
                "source": row.source,
                "url": row.url,
                "published_at": row.published_at,
                "story": row.story,
            })
        }),
    )
}

fn write_lines(path: &Path, lines: impl Iterator<Item = serde_json::Value>) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{DAY_MS, Order, arrange};

    const HOUR: i64 = DAY_MS / 24;

    fn ids(timed: &[(i64, &str)]) -> Vec<String> {
        timed.iter().map(|(_, id)| (*id).to_owned()).collect()
    }

    #[test]
    fn a_squeezed_replay_keeps_its_order_and_spans_the_hours_given() {
        let mut timed: Vec<(i64, &str)> = vec![(10 * DAY_MS, "c"), (0, "a"), (DAY_MS, "b"), (40 * DAY_MS, "d")];
        arrange(&mut timed, Order::File, Some(24 * HOUR), |id| id);
        assert_eq!(ids(&timed), ["a", "b", "c", "d"]);
        let times: Vec<i64> = timed.iter().map(|t| t.0).collect();
        assert_eq!(times, [0, 36 * 60_000, 6 * HOUR, 24 * HOUR]);
    }

    #[test]
    fn squeezed_days_are_spread_over_their_slot_in_shuffled_order() {
        let rows: Vec<(i64, String)> =
            (0..20).map(|i| (i / 10 * DAY_MS + (i % 10) * 60_000, format!("h{i}"))).collect();
        let mut plain: Vec<(i64, &str)> = rows.iter().map(|(t, id)| (*t, id.as_str())).collect();
        let mut squeezed = plain.clone();
        arrange(&mut plain, Order::ShuffleDay, None, |id| id);
        arrange(&mut squeezed, Order::ShuffleDay, Some(2 * HOUR), |id| id);
        assert_eq!(ids(&plain), ids(&squeezed), "the same shuffled order");
        let times: Vec<i64> = squeezed.iter().map(|t| t.0).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "no two at one instant: {times:?}");
        assert_eq!(times.last().copied().unwrap_or_default() - times.first().copied().unwrap_or_default(), 2 * HOUR);
        assert!(times[9] - times[0] < HOUR && times[10] - times[0] >= HOUR, "each day keeps its slot: {times:?}");
    }
}
