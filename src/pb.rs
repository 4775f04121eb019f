//! The generated gRPC API (`proto/headline_dedup/v1/dedup_service.proto`).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("headline_dedup.v1");

/// The encoded descriptor set that server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("headline_dedup_descriptor");
