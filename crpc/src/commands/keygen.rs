//! `crpc keygen`: an ed25519 key pair for signing packages.
use crate::cli::KeygenArgs;
use crate::config::write_private;
use crate::error::{CliError, CliResult};
use crate::output;

/// Runs the command: writes the secret key (0600, never overwriting) and prints the public key.
pub fn run(args: &KeygenArgs, json: bool) -> CliResult {
    if args.output.exists() {
        return Err(CliError::Other(format!(
            "{} exists; not overwriting a key (choose another --output)",
            args.output.display()
        )));
    }
    let (secret, public) = crpc_package::verify::generate_key();
    write_private(&args.output, &format!("{secret}\n"))
        .map_err(|e| CliError::Other(format!("writing {}: {e}", args.output.display())))?;
    if json {
        output::json_line(&serde_json::json!({"key_file": args.output, "public_key": public}));
    } else {
        println!("{public}");
        eprintln!(
            "crpc: secret key written to {} (keep it private). Publish with `crpc publish DIR --sign {}`; \
             processors trust it with `task-processor --trusted-key {public}`",
            args.output.display(),
            args.output.display()
        );
    }
    Ok(())
}
