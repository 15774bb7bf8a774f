//! `task-server`: run the server, or `task-server token …` to mint a JWT.
use std::io::Write;

use crpc_service::init_tracing;

use task_server::auth::{mint, Secret};
use task_server::config::{Cli, Command};
use task_server::Application;

fn main() -> anyhow::Result<()> {
    let cli: Cli = crpc_service::config::parse_with_file();
    init_tracing(cli.serve.log_json);
    if let Some(Command::Token(t)) = cli.command {
        let secret = Secret::load(
            std::env::var("CRPC_JWT_SECRET").ok().as_deref(),
            t.jwt_secret_file.as_deref(),
            &t.data_dir,
        )?;
        println!("{}", mint(&secret, &t.sub, t.role, t.ttl)?);
        return Ok(());
    }
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(cli.serve).await?;
        println!("listening on {}", app.url());
        std::io::stdout().flush()?;
        app.run_until_stopped().await
    })
}
