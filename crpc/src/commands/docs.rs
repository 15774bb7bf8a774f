//! `crpc completions SHELL` and `crpc man --out DIR`: generated from the same clap definition
//! as `--help`, so they never drift from the flags.
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::CliError;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "crpc", &mut std::io::stdout());
    Ok(())
}

/// Writes `crpc.1` and `crpc-COMMAND.1` for every command into `out`.
pub fn man(out: &Path) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Other(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    clap_mangen::generate_to(Cli::command(), out).map_err(io)?;
    println!("man pages written to {}", out.display());
    Ok(())
}
