//! `task-processor`: the worker users run on their machines.
use task_processor::config::Config;

fn main() -> std::process::ExitCode {
    // Native packages start through this binary acting as their sandbox launcher.
    if let Some(code) = task_processor::runtime::sandbox::launcher_main() {
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    let config: Config = crpc_service::config::parse_with_file();
    crpc_service::init_tracing(config.log_json);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(async {
        let processor = task_processor::build_from_config(&config)?;
        if let Some(at) = config.metrics_bind {
            let (bound, server) =
                crpc_service::metrics::listener(at, || async { crpc_service::metrics::render() })?;
            tokio::spawn(server);
            tracing::info!(
                "metrics on http://{bound}/metrics (no token: keep this address private)"
            );
        }
        println!(
            "processor {} pulling from {}",
            processor.worker_id(),
            config.server
        );
        processor.run(task_processor::shutdown_signal()).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("task-processor: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
