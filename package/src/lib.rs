//! The crpc package format and the client side of the registry, shared by the registry, the task
//! server, the processor and the CLI:
//! - [`manifest`]: `crpc.toml` (name, version, kind, typed function signatures, resources) with
//!   precise validation errors, and argument checking against a signature;
//! - [`archive`]: inspecting and safely unpacking `.tar.gz` packages (no absolute paths, no `..`,
//!   no links leaving the root, no device files, entry and size caps, atomic install);
//! - [`verify`]: sha256 digests and detached ed25519 signatures;
//! - [`client`]: a registry HTTP client that verifies what it downloads.
#![forbid(unsafe_code)]

pub mod archive;
pub mod client;
pub mod manifest;
#[cfg(any(test, feature = "test-archives"))]
pub mod testing;
pub mod verify;

pub use archive::{ArchiveError, Inspection, Limits};
pub use manifest::{ArgSpec, ArgType, FunctionSig, Kind, Manifest, ManifestError};
pub use verify::{TrustedKeys, VerifyError};
