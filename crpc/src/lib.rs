//! `crpc`, the command-line client: submit and map tasks, wait for answers, publish packages,
//! mint tokens, and `crpc dev` (server + registry + processor in one process).
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;
pub mod spec;

use cli::{Cli, Command};
use client::Api;
use config::{Given, Settings};
use error::{CliError, CliResult};

/// Runs a parsed command line (`crpc dev` has its own runtime: see [`commands::dev::run`]).
pub async fn run(cli: Cli) -> CliResult {
    if let Some(ca) = &cli.global.ca_cert {
        crpc_http::trust_ca_file(ca).map_err(CliError::Other)?;
    }
    let given = Given {
        server: cli.global.server.clone(),
        registry: cli.global.registry.clone(),
        token: cli.global.token.clone(),
        registry_token: cli.global.registry_token.clone(),
    };
    let registry = || -> CliResult<crpc_package::client::RegistryClient> {
        let s = Settings::resolve(&given)?;
        client::check_url("registry", &s.registry)?;
        Ok(crpc_package::client::RegistryClient::new(
            &s.registry,
            s.registry_token,
        ))
    };
    let json = cli.global.json;
    let api = || -> CliResult<Api> {
        let s = Settings::resolve(&given)?;
        Api::new(&s.server, s.token)
    };
    match cli.command {
        Command::Dev(_) => Err(CliError::Other(
            "`crpc dev` runs on its own runtime: call commands::dev::run".into(),
        )),
        Command::New(a) => commands::new::run(&a),
        Command::Completions(a) => commands::docs::completions(a.shell),
        Command::Man(a) => commands::docs::man(&a.out),
        Command::Package(a) => commands::packaging::package(&a, json),
        Command::Keygen(a) => commands::keygen::run(&a, json),
        Command::Token(a) => commands::token::run(&a, config::load()?.data_dir),
        Command::Login => commands::login::run(&Settings::resolve(&given)?).await,
        Command::Publish(a) => commands::packaging::publish(&registry()?, &a, json).await,
        Command::Owners(a) => commands::packaging::owners(&registry()?, &a, json).await,
        Command::Submit(a) => commands::submit::run(&api()?, &a, json).await,
        Command::Map(a) => commands::map::run(&api()?, &a, json).await,
        Command::Result(a) => commands::result::run(&api()?, &a, json).await,
        Command::Wait(a) => commands::wait::run(&api()?, &a, json).await,
        Command::Cancel(a) => commands::cancel::run(&api()?, &a.ids, json).await,
        Command::Tasks(a) => commands::tasks::run(&api()?, &a, json).await,
        Command::Estimate(a) => commands::estimate::run(&api()?, a.task.as_deref(), json).await,
        Command::Stats => commands::stats::run(&api()?, json).await,
        Command::Workers(a) => commands::workers::run(&api()?, a.all, json).await,
        Command::Broadcast(a) => commands::broadcast::run(&api()?, &a, json).await,
        Command::Put(a) => commands::files::put(&api()?, &a, json).await,
        Command::Get(a) => commands::files::get(&api()?, &a).await,
    }
}
