//! The clustering core: normalisation, embedders, the index, stories and the
//! engine that ties them together. It knows nothing of gRPC, prost or tokio.
//!
//! No indexing or slicing that can panic: every lookup is checked
//! (`clippy::indexing_slicing` is denied here).
#![deny(clippy::indexing_slicing)]

pub mod background;
pub mod compare;
pub mod embed;
pub mod engine;
pub mod error;
pub mod index;
pub mod normalize;
pub mod settings;
pub mod story;
pub mod types;
pub mod vector;
