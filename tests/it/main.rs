//! Integration tests: the real server over real gRPC, and the real binary
//! driven by third-party clients. One test binary, one module per area.

mod abuse;
mod bad_input;
mod chaos;
mod cli;
mod durability;
mod feed;
mod grpc;
mod json;
mod namespaces;
mod operations;
mod overload;
mod postgres;
mod properties;
mod security;
mod support;
