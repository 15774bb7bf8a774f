//! End-to-end tests across crpc binaries.
