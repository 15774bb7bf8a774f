//! The command line: every command, flag and env fallback, with `--help` text.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use task_api::Role;

const EXIT_CODES: &str = "\
Exit codes: 0 ok · 1 other error · 2 bad command line · 3 a task failed or was cancelled · \
4 not found · 5 token refused · 6 server/registry unreachable · 7 input refused by the server · \
8 task not finished yet · 124 --timeout ran out · 130 interrupted.

Server, registry and token come from the flags, else CRPC_SERVER / CRPC_REGISTRY / CRPC_TOKEN, \
else the config file that `crpc dev` and `crpc login` write (CRPC_CONFIG, default \
~/.config/crpc/config.toml).";

/// crpc: run your functions on many machines. Submit tasks, map over inputs, publish packages,
/// and `crpc dev` for a whole cluster in one process.
#[derive(Debug, Parser)]
#[command(name = "crpc", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where to connect.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Task server base URL.
    #[arg(long, global = true, env = "CRPC_SERVER")]
    pub server: Option<String>,
    /// Package registry base URL.
    #[arg(long, global = true, env = "CRPC_REGISTRY")]
    pub registry: Option<String>,
    /// Bearer token (JWT).
    #[arg(long, global = true, env = "CRPC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Token for the registry (`publish`, `owners`) when it differs from --token.
    #[arg(
        long,
        global = true,
        env = "CRPC_REGISTRY_TOKEN",
        hide_env_values = true
    )]
    pub registry_token: Option<String>,
    /// PEM certificate(s) of a private CA to trust for https:// URLs, besides the system's roots.
    #[arg(long, global = true, env = "CRPC_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Server + registry + one processor in one process (SQLite), with the example packages
    /// published; prints the `export` lines to paste into other terminals.
    Dev(DevArgs),
    /// Submit one task: `crpc submit PKG.FUNC ARG…` (each ARG is JSON, or a string if it is not).
    Submit(SubmitArgs),
    /// Run a function over every line of a JSON-lines file; results stream out as they finish.
    Map(MapArgs),
    /// Print a task's answer (exit 8 if it has not finished).
    Result(ResultArgs),
    /// Wait for tasks to finish and print their answers as they do.
    Wait(WaitArgs),
    /// Cancel queued or running tasks.
    Cancel(CancelArgs),
    /// List your tasks, newest first.
    Tasks(TasksArgs),
    /// How long the queue (or one task) will take, from per-function runtime statistics.
    Estimate(EstimateArgs),
    /// Runtime statistics per function.
    Stats,
    /// Processors connected to the server, their slots and what they run.
    Workers(WorkersArgs),
    /// Send a payload to every loaded instance of a package on every processor (an admin
    /// token): `crpc broadcast PKG PAYLOAD`; prints each processor's report as it comes.
    Broadcast(BroadcastArgs),
    /// Upload a file for tasks to take: `crpc put FILE` prints its `{"$file": …}` value.
    Put(PutArgs),
    /// Download a file by its sha256 (checked): `crpc get HASH [-o FILE]`.
    Get(GetArgs),
    /// Create a package from a template.
    New(NewArgs),
    /// Build a package archive (.tar.gz) from a directory, checked like the registry checks it.
    Package(PackageArgs),
    /// Publish a package directory or archive to the registry.
    Publish(PublishArgs),
    /// Show or change who may publish and yank a package: `crpc owners NAME [--add SUB] [--remove SUB]`.
    Owners(OwnersArgs),
    /// Create an ed25519 signing key for `crpc publish --sign`.
    Keygen(KeygenArgs),
    /// Mint a token with the server's secret (a local server's data dir).
    Token(TokenArgs),
    /// Save server, registry and token to the config file.
    Login,
    /// Print a shell completion script: `crpc completions bash > /etc/bash_completion.d/crpc`.
    Completions(CompletionsArgs),
    /// Write man pages (crpc.1 and one per command) into a directory.
    Man(ManArgs),
}

/// `crpc completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `crpc man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Where to write them (created if missing), e.g. ~/.local/share/man/man1.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// `crpc dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Data directory: the server's SQLite database and JWT secret, `registry/`, `cache/`.
    #[arg(long, env = "CRPC_DEV_DATA_DIR", default_value = "./crpc-dev")]
    pub data_dir: PathBuf,
    /// Task server address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub bind: SocketAddr,
    /// Registry address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub registry_bind: SocketAddr,
    /// CPU slots of the built-in processor (default: the cores).
    #[arg(long)]
    pub cpu_slots: Option<u32>,
    /// Do not start the built-in processor.
    #[arg(long)]
    pub no_processor: bool,
    /// Example packages to publish at start (default: ./examples, else the source tree's).
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// Publish no example packages.
    #[arg(long)]
    pub no_examples: bool,
    /// Do not write the config file.
    #[arg(long)]
    pub no_config: bool,
    /// Log JSON lines.
    #[arg(long, env = "CRPC_LOG_JSON")]
    pub log_json: bool,
}

/// Task options shared by `submit` and `map`.
#[derive(Debug, Clone, Args)]
pub struct TaskOpts {
    /// Keyword arguments, a JSON object.
    #[arg(long)]
    pub kwargs: Option<String>,
    /// Semver requirement of the package, e.g. `^1.2` (default: the newest).
    #[arg(long = "version", value_name = "REQ")]
    pub version_req: Option<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// Time limit of one attempt, seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout_s: Option<u32>,
    /// Attempts before the task fails for good.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Reuse a finished answer for the same arguments.
    #[arg(long)]
    pub memoize: bool,
    /// GPUs the task needs (≥1: only GPU slots take it).
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
    /// Dataset the processor must hold (repeatable).
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// Run only after this task succeeded (repeatable; a task id). To use its answer as an
    /// argument, pass `'{"$ref": "ID"}'` instead.
    #[arg(long = "after", value_name = "ID")]
    pub after: Vec<String>,
    /// Not before this time (RFC 3339, e.g. 2026-12-24T18:00:00+01:00).
    #[arg(long, value_name = "TIME", conflicts_with = "delay")]
    pub not_before: Option<String>,
    /// Not before this long from now, e.g. 90s, 2h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Your tasks with the same key run at most --max-concurrent at a time (e.g. one per
    /// customer).
    #[arg(long, value_name = "KEY")]
    pub concurrency_key: Option<String>,
    /// With --concurrency-key: how many of its tasks may run at once (default 1).
    #[arg(long, value_name = "N", requires = "concurrency_key")]
    pub max_concurrent: Option<u32>,
}

/// `crpc submit`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// `PACKAGE.FUNCTION`, or `FUNCTION` alone when the registry knows one package with it.
    pub target: String,
    /// Positional arguments: JSON (`42`, `[1,2]`, `{"a":1}`, `"text"`), or a bare string;
    /// `@PATH` uploads the file and passes its `{"$file": …}` value (`@@x` is the string `@x`).
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Task options.
    #[command(flatten)]
    pub opts: TaskOpts,
    /// Same key and same body → the same task (safe retries of this command).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait for the answer and print it (progress on stderr).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 124), e.g. 30s, 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `crpc map`.
#[derive(Debug, Clone, Args)]
pub struct MapArgs {
    /// `PACKAGE.FUNCTION`.
    pub target: String,
    /// JSON-lines file (`-`: stdin). A line holding an array is the positional arguments, an
    /// object with `args`/`kwargs` gives both, any other value is the single argument.
    #[arg(long, short = 'i')]
    pub inputs: PathBuf,
    /// Task options.
    #[command(flatten)]
    pub opts: TaskOpts,
    /// Tasks per submit_batch request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub chunk: u32,
    /// Print results in input order (each waits for the ones before it), not as they finish.
    #[arg(long)]
    pub ordered: bool,
}

/// `crpc result`.
#[derive(Debug, Clone, Args)]
pub struct ResultArgs {
    /// Task id.
    pub id: String,
    /// Download the files the answer holds into this directory (each under its name, checked
    /// against its sha256) and print where they went.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// `crpc wait`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Give up after this long (exit 124), e.g. 30s, 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `crpc cancel`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// Task ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `crpc tasks`.
#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    /// Only this state (the states the server keeps; an expired lease is queued again).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(task_api::TaskState::ALL.map(task_api::TaskState::as_str)))]
    pub state: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

/// `crpc estimate`.
#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    /// Time until this task finishes (the work queued ahead of it plus its own).
    #[arg(long)]
    pub task: Option<String>,
}

/// `crpc workers`.
#[derive(Debug, Clone, Args)]
pub struct WorkersArgs {
    /// Include processors not heard from lately.
    #[arg(long)]
    pub all: bool,
}

/// `crpc broadcast`.
#[derive(Debug, Clone, Args)]
pub struct BroadcastArgs {
    /// The package whose instances get it.
    pub package: String,
    /// The payload: JSON, or a string if it is not JSON.
    pub payload: String,
    /// Only these versions: exact (1.2.0) or a requirement (^1.2).
    #[arg(long = "version", value_name = "VERSION")]
    pub version: Option<String>,
    /// Follow the reports this long (0: do not wait), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

/// `crpc put`.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The file to upload (streamed, never read whole into memory).
    pub file: std::path::PathBuf,
}

/// `crpc get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Its sha256 (`sha256:HEX` or HEX).
    pub hash: String,
    /// Write it here (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// Package templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// Rust compiled to a WASM component (crpc-guest).
    Wasm,
    /// A Python program (native package, crpc_worker.py).
    Python,
}

/// `crpc new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// Package name (lowercase letters, digits, `-`); also the directory created.
    pub name: String,
    /// What the package is written in.
    #[arg(long, value_enum, default_value = "wasm")]
    pub template: Template,
    /// Directory to create (default: NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// crpc-guest crate for the wasm template (default: the source tree's `guest/`).
    #[arg(long, env = "CRPC_GUEST_PATH")]
    pub guest_path: Option<PathBuf>,
}

/// `crpc package`.
#[derive(Debug, Clone, Args)]
pub struct PackageArgs {
    /// Package directory (holds crpc.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Output file (default: NAME-VERSION.tar.gz).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Do not run `cargo build` for a wasm package with a Cargo.toml; use the component as is.
    #[arg(long)]
    pub no_build: bool,
}

/// `crpc publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Package directory or a .tar.gz built by `crpc package`.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Sign with this key file (from `crpc keygen`).
    #[arg(long, value_name = "KEY_FILE", env = "CRPC_SIGNING_KEY")]
    pub sign: Option<PathBuf>,
    /// Do not run `cargo build` for a wasm package directory.
    #[arg(long)]
    pub no_build: bool,
}

/// `crpc owners`.
#[derive(Debug, Clone, Args)]
pub struct OwnersArgs {
    /// Package name.
    pub name: String,
    /// Token subject to add as an owner (repeatable).
    #[arg(long, value_name = "SUB")]
    pub add: Vec<String>,
    /// Token subject to remove (repeatable; the last owner cannot be removed).
    #[arg(long, value_name = "SUB", conflicts_with = "add")]
    pub remove: Vec<String>,
}

/// `crpc keygen`.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (never overwritten).
    #[arg(long, short = 'o', default_value = "crpc-signing.key")]
    pub output: PathBuf,
}

/// `crpc token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// user, worker, publisher or admin.
    #[arg(long)]
    pub role: Role,
    /// Subject: the user or processor name.
    #[arg(long)]
    pub sub: String,
    /// Lifetime, e.g. 30d, 12h.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Server data directory holding `jwt_secret` (default: the one `crpc dev` recorded in the
    /// config file). CRPC_JWT_SECRET overrides it.
    #[arg(long, env = "CRPC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}
