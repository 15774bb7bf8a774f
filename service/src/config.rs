//! Service configuration built in code. Each service's settings are one typed struct whose
//! defaults are declared once, on its clap attributes; [`defaults`] reads them without the
//! command line or the environment, so code (`crpc dev`, tests) builds a configuration with
//! struct-update syntax instead of assembling and re-parsing an argument list.
use clap::{Args, Command, FromArgMatches};

/// The defaults `T` declares, ignoring `CRPC_*` environment variables: what the service would
/// run with given no flags in a clean environment.
pub fn defaults<T: Args + FromArgMatches>(name: &'static str) -> T {
    let cmd = T::augment_args(Command::new(name)).mut_args(|a| a.env(None));
    let matches = cmd
        .try_get_matches_from([name])
        .unwrap_or_else(|e| panic!("{name}: a setting has no default: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{name}: bad default: {e}"))
}
