//! The registry end to end: the real `task-registry` binary on port 0, driven over HTTP.
mod api;
