//! Reading headline files: JSON lines, plain, gzip (`.gz`) or zstd (`.zst`),
//! one object per line with at least `id` and `text`, as in the evaluation
//! sets (`{"id","text","source","published_at","story"}`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::core::types::Millis;

/// One line of a headline file.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// The headline id.
    pub id: String,
    /// The headline text.
    pub text: String,
    /// The publisher.
    #[serde(default)]
    pub source: Option<String>,
    /// The article URL.
    #[serde(default)]
    pub url: Option<String>,
    /// RFC 3339 publication time.
    #[serde(default)]
    pub published_at: Option<String>,
    /// The gold story label, in evaluation files.
    #[serde(default)]
    pub story: Option<serde_json::Value>,
}

impl Row {
    /// The publication time in milliseconds, if present and valid.
    pub fn published_millis(&self) -> anyhow::Result<Option<Millis>> {
        self.published_at.as_deref().map(parse_rfc3339).transpose()
    }
}

/// Parses an RFC 3339 time such as `2014-03-10T16:52:50.698Z`.
pub fn parse_rfc3339(text: &str) -> anyhow::Result<Millis> {
    let ts: crate::pb::wkt::Timestamp = text.parse().with_context(|| format!("invalid RFC 3339 time {text:?}"))?;
    crate::api::millis(&ts).map_err(|reason| anyhow::anyhow!("time {text:?}: {reason}"))
}

/// Opens a file for reading, decompressing `.gz` and `.zst` by extension.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(file).with_context(|| format!("{} is not zstd", path.display()))?,
        )
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Reads every row of a headline file.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (n, line) in open(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}: read error at line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(&line) {
            Ok(row) => rows.push(row),
            Err(e) => bail!("{}:{}: {e}", path.display(), n + 1),
        }
    }
    Ok(rows)
}
