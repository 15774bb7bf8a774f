//! `crpc result ID [--output-dir DIR]`: the answer now, without waiting; with `--output-dir`,
//! the files it holds downloaded too.
use crate::cli::ResultArgs;
use crate::client::Api;
use crate::commands::{answers, files};
use crate::error::CliResult;

/// Runs the command.
pub async fn run(api: &Api, args: &ResultArgs, json: bool) -> CliResult {
    let a = api.answer(&args.id, 0.0).await?;
    if let (Some(dir), Some(answer)) = (&args.output_dir, &a.answer) {
        for (path, size) in files::download_answer_files(api, answer, dir).await? {
            eprintln!("{} ({size} bytes)", path.display());
        }
    }
    answers::report(&a, json)
}
