//! crpc package registry (`task-registry`): publish, resolve by semver, download, yank.
//!
//! Archives are content-addressed blobs (sha256) verified on every read; metadata (versions,
//! manifests, yanked flags, signatures) lives behind [`store::RegistryStore`].
#![forbid(unsafe_code)]

pub mod blobs;
pub mod config;
pub mod package_doc;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;

pub use startup::Application;
