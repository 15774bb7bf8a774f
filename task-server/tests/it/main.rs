//! End-to-end tests of the task server: the real `task-server` binary on port 0, driven over HTTP
//! (plus the store conformance suite, which runs against the library directly).
mod api;
mod crash;
mod harness;
mod lifecycle;
mod readme;
mod replicas;
mod security;
mod store_conformance;
