//! crpc task processor: pulls tasks from the server over HTTP (works behind NAT), installs the
//! package version each task names from the registry, and runs it — a WASM component in wasmtime
//! or a native program over JSON lines — on one slot per GPU plus CPU slots.
//!
//! ```no_run
//! # async fn f(handler: std::sync::Arc<dyn task_processor::TaskHandler>) -> anyhow::Result<()> {
//! task_processor::Processor::builder()
//!     .server("http://127.0.0.1:7700")
//!     .token(Some("…".into()))
//!     .handler(handler)
//!     .build()?
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```
pub mod broadcasts;
pub mod cache;
pub mod client;
pub mod compute;
pub mod config;
pub mod files;
pub mod gpu;
pub mod handler;
pub mod package_handler;
pub mod processor;
pub mod runtime;
mod start;

pub use handler::{Progress, TaskContext, TaskFailure, TaskHandler};
pub use package_handler::PackageHandler;
pub use processor::{Processor, ProcessorBuilder};
pub use start::{build_from_config, shutdown_signal};

/// Wall-clock time, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
