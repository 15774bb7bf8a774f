//! crpc task server: a durable task queue over HTTP with leases, fencing, retries, runtime
//! statistics and queue estimates. `main.rs` only parses flags and calls [`startup::Application`].
#![forbid(unsafe_code)]

pub use crpc_service::auth;
pub mod caps;
pub mod config;
pub mod cost;
pub mod error;
pub mod files;
pub mod fit;
pub mod graph;
pub mod metrics;
pub mod queue;
pub mod reaper;
pub mod resolver;
pub mod routes;
pub mod schedule;
pub mod startup;
pub mod stats;
pub mod store;
pub mod waiters;

pub use startup::Application;
