//! End-to-end tests across crpc binaries (built by `cargo test --workspace`).
mod cli;
mod config;
mod dashboard;
mod estimate;
mod faults;
mod files;
mod fleet;
mod metrics;
mod openapi;
mod prefetch;
mod processor;
mod python_client;
mod readme;
mod registry_resolution;
mod schedules;
mod security;
mod workflows;
