//! `crpc`: one line of error and a meaningful exit code, never a backtrace.
use std::process::ExitCode;

use clap::Parser;
use crpc::cli::{Cli, Command};
use crpc::error::CliError;

fn main() -> ExitCode {
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
