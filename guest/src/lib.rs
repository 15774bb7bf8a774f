//! Write a crpc WASM package as plain Rust functions.
//!
//! ```ignore
//! crpc_guest::export! {
//!     fn estimate_pi(samples: u64) -> crpc_guest::Result<f64> {
//!         crpc_guest::progress(50.0);
//!         Ok(3.14)
//!     }
//! }
//! ```
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is the component
//! that `crpc.toml` names. Arguments arrive as a JSON array (the processor maps keyword arguments
//! onto positions from the manifest) and are decoded with serde into the parameter types; the
//! `Ok` value is encoded back to JSON.

/// Generated bindings of `wit/0.3.0/task.wit` (world `crpc:task/task@0.3.0`).
#[cfg(not(feature = "world-0-1"))]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "task",
        path: "../wit/0.3.0",
        pub_export_macro: true,
        export_macro_name: "export_component",
        default_bindings_module: "crpc_guest::bindings",
    });
}

/// Generated bindings of `wit/0.1.0/task.wit` (world `crpc:task/task@0.1.0`, feature
/// `world-0-1`: a component for processors older than `files`).
#[cfg(feature = "world-0-1")]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "task",
        path: "../wit/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_component",
        default_bindings_module: "crpc_guest::bindings",
    });
}

#[cfg(not(feature = "world-0-1"))]
pub mod compute;
#[cfg(not(feature = "world-0-1"))]
pub mod files;

pub use bindings::crpc::task::gpu::Device;
use bindings::crpc::task::{gpu, host};
pub use bindings::{ErrorKind, TaskError};

/// Why a function failed: `fatal` (never retried) or `retryable` (the server tries again).
#[derive(Debug, Clone)]
pub struct Error {
    /// Retry or not.
    pub kind: ErrorKind,
    /// Shown to the task's owner.
    pub message: String,
}

impl Error {
    /// A failure not worth another attempt.
    pub fn fatal(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }
    /// A failure worth another attempt.
    pub fn retryable(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }
}

impl From<String> for Error {
    fn from(m: String) -> Error {
        Error::fatal(m)
    }
}
impl From<&str> for Error {
    fn from(m: &str) -> Error {
        Error::fatal(m)
    }
}
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::fatal(e.to_string())
    }
}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::fatal(e.to_string())
    }
}

/// What exported functions return.
pub type Result<T> = std::result::Result<T, Error>;

/// Reports progress, 0–100; the owner sees it in `request_answer`.
pub fn progress(pct: f64) {
    host::progress(pct);
}

/// Log lines, shown in the processor's log beside the task id.
pub mod log {
    use super::host::{log, Level};
    /// Debug line.
    pub fn debug(msg: &str) {
        log(Level::Debug, msg)
    }
    /// Info line.
    pub fn info(msg: &str) {
        log(Level::Info, msg)
    }
    /// Warning line.
    pub fn warn(msg: &str) {
        log(Level::Warn, msg)
    }
    /// Error line.
    pub fn error(msg: &str) {
        log(Level::Error, msg)
    }
}

/// The GPUs of the slot this task runs on (empty on a CPU slot or without a driver).
pub fn gpu_devices() -> Vec<Device> {
    gpu::devices()
}

#[doc(hidden)]
pub mod __private {
    pub use serde_json::Value;

    use super::{Error, TaskError};

    /// Positional arguments of one call, decoded one by one.
    pub struct Args {
        function: &'static str,
        values: std::vec::IntoIter<Value>,
    }

    impl Args {
        pub fn parse(function: &'static str, json: &str) -> Result<Args, TaskError> {
            let values: Vec<Value> = serde_json::from_str(json)
                .map_err(|e| fatal(format!("{function}: arguments are not a JSON array: {e}")))?;
            Ok(Args {
                function,
                values: values.into_iter(),
            })
        }

        pub fn next<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> Result<T, TaskError> {
            let v = self.values.next().unwrap_or(Value::Null);
            serde_json::from_value(v)
                .map_err(|e| fatal(format!("{}: argument `{name}`: {e}", self.function)))
        }
    }

    pub fn fatal(message: String) -> TaskError {
        TaskError {
            kind: super::ErrorKind::Fatal,
            message,
        }
    }

    pub fn finish<T: serde::Serialize>(out: super::Result<T>) -> Result<String, TaskError> {
        match out {
            Ok(v) => {
                serde_json::to_string(&v).map_err(|e| fatal(format!("the answer is not JSON: {e}")))
            }
            Err(Error { kind, message }) => Err(TaskError { kind, message }),
        }
    }
}

/// Exports plain functions as the package's task functions. Optional `init = path;` (called once
/// per instance with the JSON config) and `update = path;` (called on a server broadcast) come
/// first. Every function returns `crpc_guest::Result<T>` with `T: Serialize`; its parameters
/// implement `Deserialize` (a missing optional argument arrives as `null`, so use `Option`).
#[macro_export]
macro_rules! export {
    (
        $(init = $init:path;)?
        $(update = $update:path;)?
        $(
            $(#[$meta:meta])*
            fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block
        )*
    ) => {
        $(
            $(#[$meta])*
            fn $name($($arg: $ty),*) -> $ret $body
        )*

        struct __CrpcComponent;

        impl $crate::bindings::Guest for __CrpcComponent {
            #[allow(unreachable_code)]
            fn init(config: String) -> ::core::result::Result<(), String> {
                $( return $init(config); )?
                let _ = config;
                Ok(())
            }

            #[allow(unreachable_code)]
            fn update(payload: String) {
                $( return $update(payload); )?
                let _ = payload;
            }

            fn run(
                function: String,
                args: String,
            ) -> ::core::result::Result<String, $crate::TaskError> {
                match function.as_str() {
                    $(
                        stringify!($name) => {
                            #[allow(unused_mut, unused_variables)]
                            let mut a = $crate::__private::Args::parse(stringify!($name), &args)?;
                            let out: $ret = $name($(a.next::<$ty>(stringify!($arg))?),*);
                            $crate::__private::finish(out)
                        }
                    )*
                    other => Err($crate::__private::fatal(format!(
                        "this package has no function `{other}`"
                    ))),
                }
            }
        }

        $crate::bindings::export_component!(__CrpcComponent with_types_in $crate::bindings);
    };
}
