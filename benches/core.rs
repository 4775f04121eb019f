//! Benchmarks of the clustering core on real headlines: normalisation, each
//! embedder, the index (search of scanned segments; search and insert of
//! segments of 100k and 400k points, a firehose's day, read through their
//! codes and through HNSW graphs), and the whole per-headline decision.
//!
//! Headlines come from `../shared/eval/uci-news-aggregator/dev.jsonl.zst`
//! (set `HEADLINE_DEDUP_BENCH_DATA` to another file); without it the
//! benchmarks stop with an error rather than measure something else.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use headline_dedup::core::embed::{StaticModel, TermStats, embedder_for, normalize_l2};
use headline_dedup::core::engine::Engine;
use headline_dedup::core::index::{FLAT_LIMIT, Limits, SegmentedIndex};
use headline_dedup::core::normalize::{Normalized, normalize};
use headline_dedup::core::settings::{EmbedderKind, Settings};
use headline_dedup::core::types::{DAY_MS, Headline, RawHeadline};
use headline_dedup::core::vector::QuantizedVector;
use headline_dedup::dataset::{Row, read_rows};

/// Points of the largest segment measured; the file's headlines, and past
/// them the normalised sums of two of them (a synthetic point between two
/// real ones).
const LARGEST_SEGMENT: usize = 400_000;

fn rows(limit: usize) -> Vec<Row> {
    let mut rows = all_rows();
    assert!(rows.len() >= limit, "the headline file holds {} headlines; these benchmarks need {limit}", rows.len());
    rows.truncate(limit);
    rows
}

fn all_rows() -> Vec<Row> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var_os("HEADLINE_DEDUP_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../shared/eval/uci-news-aggregator/dev.jsonl.zst"));
    read_rows(&path).unwrap_or_else(|e| {
        panic!(
            "the benchmarks read real headlines from {}: {e:#} (put ../shared/eval beside the repository or set \
             HEADLINE_DEDUP_BENCH_DATA)",
            path.display()
        )
    })
}

fn headline(row: &Row, id: String) -> Headline {
    let time = DAY_MS / 2;
    let raw = RawHeadline {
        id: &id,
        text: &row.text,
        source: row.source.as_deref().unwrap_or(""),
        url: "",
        published: Some(time),
    };
    Headline::parse(&raw, time, true).expect("valid")
}

fn normalization(c: &mut Criterion) {
    let rows = rows(1000);
    c.bench_function("normalize/1000 headlines", |b| {
        b.iter(|| {
            rows.iter().map(|r| normalize(black_box(&r.text), r.source.as_deref()).key()).fold(0, u64::wrapping_add)
        })
    });
}

fn embedders(c: &mut Criterion) {
    let model = Arc::new(StaticModel::bundled().expect("model"));
    let texts: Vec<Normalized> = rows(1000).iter().map(|r| normalize(&r.text, r.source.as_deref())).collect();
    let mut terms = TermStats::default();
    texts.iter().for_each(|t| terms.add(t));
    for kind in [EmbedderKind::Lexical, EmbedderKind::Semantic, EmbedderKind::Mixed] {
        let embedder = embedder_for(&Settings { embedder: kind, ..Settings::default() }, &model);
        let mut out = vec![0.0; embedder.dim()];
        c.bench_function(&format!("embed/{}/1000 headlines", kind.name()), |b| {
            b.iter(|| {
                for text in &texts {
                    embedder.embed(black_box(text), &terms, &mut out);
                }
            })
        });
    }
}

fn index(c: &mut Criterion) {
    let model = Arc::new(StaticModel::bundled().expect("model"));
    let embedder = embedder_for(&Settings::default(), &model);
    let rows = all_rows();
    let terms = TermStats::default();
    let embedded: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![0.0; embedder.dim()];
            embedder.embed(&normalize(&r.text, r.source.as_deref()), &terms, &mut v);
            v
        })
        .collect();
    assert!(!embedded.is_empty(), "no headlines to index");
    let mut vectors: Vec<Vec<i8>> = embedded.iter().map(|v| QuantizedVector::new(v).values().to_vec()).collect();
    for i in vectors.len()..LARGEST_SEGMENT {
        let (a, b) = (&embedded[i % embedded.len()], &embedded[(i * 7919 + 1) % embedded.len()]);
        let mut sum: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + y).collect();
        normalize_l2(&mut sum);
        vectors.push(QuantizedVector::new(&sum).values().to_vec());
    }
    // Past the scan limit a segment is read through its codes; the same
    // points through a graph (the way past the coded limit) beside them.
    let graphed = Limits { scanned: FLAT_LIMIT, coded: FLAT_LIMIT };
    for size in [5_000usize, 10_000, 100_000, LARGEST_SEGMENT] {
        let ways = if size <= FLAT_LIMIT {
            vec![("scanned", Limits::default())]
        } else {
            vec![("coded", Limits::default()), ("graph", graphed)]
        };
        for (way, limits) in ways {
            let mut index = SegmentedIndex::with_limits(DAY_MS, embedder.dim(), limits);
            for (id, v) in vectors.iter().enumerate().take(size) {
                index.insert(id as u64, 0, v);
            }
            let mut probe = 0usize;
            c.bench_function(&format!("index/search k=20/{size} points ({way})"), |b| {
                b.iter(|| {
                    probe = (probe + 7919) % size;
                    index.search(black_box(&vectors[probe]), 0, 0, 20)
                })
            });
            // An insert into a scanned segment is an append; inserting many
            // would also take it past the scan limit, so only larger
            // segments are measured.
            if size <= FLAT_LIMIT {
                continue;
            }
            // A coded segment gives the points back after each sample and
            // stays at its size (its inserts are fast: a run adds many); a
            // graph cannot lose points, and a run adds few.
            let mut next = vectors.len() as u64;
            c.bench_function(&format!("index/insert/{size} points ({way})"), |b| {
                b.iter_custom(|iters| {
                    let added: Vec<(u64, i64)> = (next..next + iters).map(|id| (id, 0)).collect();
                    let start = Instant::now();
                    for &(id, time) in &added {
                        index.insert(id, time, &vectors[(id as usize * 7919) % size]);
                    }
                    let spent = start.elapsed();
                    next += iters;
                    if way == "coded" {
                        index.remove(&added);
                    }
                    spent
                })
            });
        }
    }
    // A story window's search reads several segments: the same points over
    // nine quarter-window segments of the default 12-hour window, scanned
    // at a news feed's density, read through their codes at a firehose's.
    for (size, way) in [(5_000usize, "scanned"), (100_000, "coded")] {
        let bucket = DAY_MS / 8;
        let mut window = SegmentedIndex::new(bucket, embedder.dim());
        for (id, v) in vectors.iter().enumerate().take(size) {
            window.insert(id as u64, (id % 9) as i64 * bucket, v);
        }
        let mut probe = 0usize;
        c.bench_function(&format!("index/search k=20/{size} points in 9 segments ({way})"), |b| {
            b.iter(|| {
                probe = (probe + 7919) % size;
                window.search(black_box(&vectors[probe]), 0, 8 * bucket, 20)
            })
        });
    }
}

fn decision(c: &mut Criterion) {
    let model = Arc::new(StaticModel::bundled().expect("model"));
    let settings = Settings { retention: None, ..Settings::default() };
    let rows = rows(11_000);
    let (warm, probes) = rows.split_at(rows.len().saturating_sub(1000));
    let warmed = || {
        let mut engine = Engine::new(settings.clone(), embedder_for(&settings, &model));
        for chunk in warm.chunks(256) {
            engine.ingest(&chunk.iter().map(|r| Ok(headline(r, r.id.clone()))).collect::<Vec<_>>());
        }
        engine
    };
    let engine = warmed();
    let probes: Vec<Headline> = probes.iter().map(|r| headline(r, format!("probe-{}", r.id))).collect();
    let mut next = 0usize;
    c.bench_function(&format!("decide/match one headline/{} stored", warm.len()), |b| {
        b.iter(|| {
            next = (next + 1) % probes.len();
            engine.match_headline(black_box(&probes[next]), 10)
        })
    });
    // Each of the 1,000 probes is new to the engine (none is a copy of one
    // ingested before it in the same run): a fresh copy of the warm engine
    // per sample.
    let mut group = c.benchmark_group("decide");
    group.sample_size(10);
    group.bench_function(format!("ingest 1000 headlines one by one/{} stored", warm.len()), |b| {
        b.iter_batched(
            warmed,
            |mut engine| {
                for probe in &probes {
                    engine.ingest(&[Ok(probe.clone())]);
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, normalization, embedders, index, decision);
criterion_main!(benches);
