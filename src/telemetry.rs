//! Metrics: the Prometheus recorder and the names of the gRPC server
//! metrics (as the go-grpc-prometheus family names them, recorded by
//! [`crate::edge`]) and of the domain metrics.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// RPCs started, by service and method.
pub const GRPC_STARTED: &str = "grpc_server_started_total";
/// RPCs completed, by service, method and status code.
pub const GRPC_HANDLED: &str = "grpc_server_handled_total";
/// Seconds from the start of an RPC to its status, by service and method.
pub const GRPC_SECONDS: &str = "grpc_server_handling_seconds";
/// Headlines answered, by namespace and kind (`new_story`,
/// `exact_duplicate`, `near_duplicate`, `same_story`; `replayed` for
/// retries answered from storage, `rejected` for per-item errors).
pub const HEADLINES: &str = "headline_dedup_headlines_total";
/// Stored headlines per namespace.
pub const STORED: &str = "headline_dedup_stored_headlines";
/// Live stories per namespace.
pub const STORIES: &str = "headline_dedup_stories";
/// Vectors in the ANN index per namespace.
pub const INDEXED: &str = "headline_dedup_indexed_vectors";
/// Story merges per namespace.
pub const MERGES: &str = "headline_dedup_merges_total";
pub use crate::core::embed::EMBED_SECONDS;
/// Seconds to make one batch's changes durable.
pub const COMMIT_SECONDS: &str = "headline_dedup_commit_seconds";
/// 1 for each namespace this node leads, 0 for those it follows
/// (PostgreSQL).
pub const LEADER: &str = "headline_dedup_leader";
/// Seconds from a leader's commit to a follower having applied it.
pub const FOLLOWER_LAG_SECONDS: &str = "headline_dedup_follower_lag_seconds";

/// Histogram buckets, in seconds: 50 µs to 10 s.
const BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Installs the process-wide Prometheus recorder and describes every
/// metric. Call once, before serving.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
    describe_counter!(GRPC_STARTED, "RPCs started on the server.");
    describe_counter!(GRPC_HANDLED, "RPCs completed on the server, regardless of success or failure.");
    describe_histogram!(GRPC_SECONDS, Unit::Seconds, "Time from the start of an RPC to its status.");
    describe_counter!(HEADLINES, "Headlines answered, by namespace and kind.");
    describe_gauge!(STORED, "Stored headlines.");
    describe_gauge!(STORIES, "Live stories.");
    describe_gauge!(INDEXED, "Vectors in the nearest-neighbour index.");
    describe_counter!(MERGES, "Stories merged into another.");
    describe_histogram!(EMBED_SECONDS, Unit::Seconds, "Time to embed one headline.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time to make one batch durable.");
    describe_gauge!(LEADER, "1 where this node leads the namespace, 0 where it follows it (PostgreSQL).");
    describe_histogram!(
        FOLLOWER_LAG_SECONDS,
        Unit::Seconds,
        "Time from a leader's commit to this follower applying it."
    );
    Ok(handle)
}

/// The samples of a Prometheus text exposition without those of
/// namespaces that are gone (deleted here or on another node): the
/// recorder cannot forget a series, so the scrape leaves them out.
pub fn without_gone_namespaces(exposition: &str, live: &[String]) -> String {
    let mut kept = String::with_capacity(exposition.len());
    for line in exposition.lines() {
        let namespace =
            line.split_once("namespace=\"").and_then(|(_, rest)| rest.split_once('"')).map(|(name, _)| name);
        if line.starts_with('#') || namespace.is_none_or(|name| live.iter().any(|l| l == name)) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_of_a_gone_namespace_leave_the_scrape() {
        let exposition = "# TYPE headline_dedup_stories gauge\n\
                          headline_dedup_stories{namespace=\"news\"} 3\n\
                          headline_dedup_stories{namespace=\"old\"} 5\n\
                          headline_dedup_commit_seconds_count 9\n";
        let kept = without_gone_namespaces(exposition, &["news".to_owned()]);
        assert_eq!(
            kept,
            "# TYPE headline_dedup_stories gauge\nheadline_dedup_stories{namespace=\"news\"} 3\n\
             headline_dedup_commit_seconds_count 9\n"
        );
    }
}
