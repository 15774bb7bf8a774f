//! `task-registry`: the crpc package registry.
use std::io::Write;

use registry::config::Args;
use registry::Application;

fn main() -> anyhow::Result<()> {
    let args: Args = crpc_service::config::parse_with_file();
    crpc_service::init_tracing(args.log_json);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(args).await?;
        println!("listening on {}", app.url());
        std::io::stdout().flush()?;
        app.run_until_stopped().await
    })
}
