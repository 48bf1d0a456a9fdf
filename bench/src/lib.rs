//! `kt-bench`: a gRPC load generator for `ktd`.
//!
//! [`run`] drives a running server with `clients` concurrent tasks over `connections` HTTP/2
//! connections, for a duration or a number of operations after a warm-up, with one workload
//! (appends, registrations, rotations, verified lookups, verified histories) or a weighted mix,
//! and returns a [`Report`]: throughput, HDR-histogram latency percentiles, client-side
//! verification time, answer sizes and errors by gRPC code. The `kt-bench` binary is a thin
//! command line around it.

pub mod config;
pub mod error;
pub mod identities;
mod ops;
pub mod report;
pub mod rng;
mod runner;
pub mod scale;

pub use config::{Args, BenchConfig, KeyAlg, Kind, Mix, Stop, Target, WorkloadName};
pub use error::BenchError;
pub use report::Report;
pub use runner::run;
