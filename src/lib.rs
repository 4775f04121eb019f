//! headline-dedup: deduplicates news headlines and clusters them into
//! stories, served over gRPC.
//!
//! - [`core`]: the clustering engine (no gRPC, prost or tokio types);
//! - [`app`]: the namespaces and the operations on them;
//! - [`store`]: durable state (redb, or its in-memory backend);
//! - [`server`]: the whole service (gRPC, health, reflection, metrics and
//!   the story board), on listeners the caller binds;
//! - [`api`] and [`pb`]: the gRPC edge and the generated types;
//! - [`client`]: connecting to a running server;
//! - [`dataset`]: headline files (JSON lines, `.gz`, `.zst`).
//!
//! The `headline-dedup` binary's own tools (the command line, the clients,
//! the load generator, the evaluation) live beside it, in `src/bin`.

pub mod api;
pub mod app;
pub mod client;
pub mod core;
pub mod dataset;
mod edge;
pub mod pb;
pub mod server;
pub mod store;
mod telemetry;
mod web;
