//! crpc package registry (`task-registry`): publish, resolve by semver, download, verify.
//!
//! Empty on purpose until its issue lands; it is a workspace member now so the layout of
//! DESIGN.md builds from the first commit.
#![forbid(unsafe_code)]
