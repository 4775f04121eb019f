//! headline-dedup: deduplicates news headlines and clusters them into
//! stories, served over gRPC.
//!
//! - [`core`]: the clustering engine (no gRPC types);
//! - [`app`]: namespaces and the operations on them;
//! - [`store`]: durable state in the data directory;
//! - [`api`], [`server`], [`edge`], [`pb`]: the gRPC edge;
//! - [`telemetry`] and [`web`]: metrics and the story board, on their own
//!   port;
//! - [`config`]: the command line;
//! - [`dataset`] and [`eval`]: headline files and in-process evaluation;
//! - [`client`]: the `ingest` and `stories` commands;
//! - [`loadgen`]: the gRPC load generator.

pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod core;
pub mod dataset;
pub mod edge;
pub mod eval;
pub mod loadgen;
pub mod pb;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod web;
