//! `crpc`: one line of error and a meaningful exit code, never a backtrace.
use std::process::ExitCode;

use clap::Parser;
use crpc::cli::{Cli, Command};
use crpc::error::CliError;

fn main() -> ExitCode {
    // `crpc dev`'s processor starts native packages through this binary as their sandbox.
    if let Some(code) = task_processor::runtime::sandbox::launcher_main() {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => crpc::commands::dev::run(args),
        _ => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(crpc::run(cli)),
            Err(e) => Err(CliError::Other(format!("tokio runtime: {e}"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crpc: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
