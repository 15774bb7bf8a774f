//! End-to-end tests across the task server, registry and processor processes.
//!
//! The server's own end-to-end tests live in `task-server/tests/it` (they need only that
//! binary); tests that need several crpc binaries at once land here with their issues.
#![forbid(unsafe_code)]
