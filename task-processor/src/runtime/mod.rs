//! How packages run: WASM components in wasmtime, native programs over JSON lines.
pub mod lines;
pub mod native;
pub mod sandbox;
pub mod wasm;
pub mod wasm_files;
