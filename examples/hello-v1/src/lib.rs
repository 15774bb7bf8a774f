//! A package built for the first world, `crpc:task@0.1.0`.

crpc_guest::export! {
    /// A greeting, with progress and a log line (the 0.1.0 imports).
    fn hello(name: String) -> crpc_guest::Result<String> {
        crpc_guest::progress(50.0);
        crpc_guest::log::info("greeting");
        Ok(format!("hello, {name}, from crpc:task@0.1.0"))
    }
}
