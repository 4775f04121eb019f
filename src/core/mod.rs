//! The clustering core: normalisation, embedders, the index, stories and the
//! engine that ties them together. It knows nothing of gRPC, prost or tokio.

pub mod compare;
pub mod embed;
pub mod engine;
pub mod index;
pub mod normalize;
pub mod settings;
pub mod story;
pub mod types;
pub mod vector;
