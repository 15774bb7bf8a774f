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

/// Parses `T` from the command line, adding `--config FILE.toml`: each key of the file is a
/// flag's long name (`lease-ttl` or `lease_ttl`) and sets that flag when neither the command
/// line nor its environment variable did. So flags win over the environment, the environment
/// over the file, and the file over the defaults. An unknown key, a table, or a value of the
/// wrong shape is a command-line error (exit 2) naming the file and the key.
pub fn parse_with_file<T: clap::Parser>() -> T {
    try_parse_with_file(std::env::args_os().collect()).unwrap_or_else(|e| e.exit())
}

/// [`parse_with_file`] over an explicit argument list (`argv[0]` first), returning the error
/// (or the `--help` text) instead of exiting.
pub fn try_parse_with_file<T: clap::Parser>(
    argv: Vec<std::ffi::OsString>,
) -> Result<T, clap::Error> {
    let mut cmd = with_config_flag(T::command());
    // First only find the file and what the command line and environment set: a required flag
    // may be in the file, so nothing is required yet.
    let lenient = cmd
        .clone()
        .ignore_errors(true)
        .mut_args(|a| a.required(false));
    let path = lenient
        .try_get_matches_from(&argv)
        .ok()
        .and_then(|m| Some((m.get_one::<std::path::PathBuf>(CONFIG_ID)?.clone(), m)));
    let Some((path, matches)) = path else {
        let matches = cmd.try_get_matches_from_mut(&argv)?;
        return T::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd));
    };
    let extra = file_args(&cmd, &matches, &path).map_err(|message| {
        cmd.error(
            clap::error::ErrorKind::ValueValidation,
            format!("{}: {message}", path.display()),
        )
    })?;
    let mut full = argv;
    let rest = full.split_off(1.min(full.len()));
    full.extend(extra.into_iter().map(Into::into));
    full.extend(rest);
    let matches = cmd.try_get_matches_from_mut(full)?;
    T::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

const CONFIG_ID: &str = "config";

fn with_config_flag(cmd: Command) -> Command {
    cmd.arg(
        clap::Arg::new(CONFIG_ID)
            .long("config")
            .value_name("FILE.toml")
            .value_parser(clap::value_parser!(std::path::PathBuf))
            .help("Settings file: each key a flag's long name (flags > env > file > defaults)"),
    )
}

/// The `--flag=value` arguments the file adds: one per key whose flag neither the command line
/// nor the environment set.
fn file_args(
    cmd: &Command,
    matches: &clap::ArgMatches,
    path: &std::path::Path,
) -> Result<Vec<String>, String> {
    use clap::parser::ValueSource;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    warn_if_readable(cmd, &table, path);
    let mut out = Vec::new();
    for (key, value) in &table {
        if value.is_table() {
            return Err(format!(
                "`{key}`: a table is not a flag value (every key is a flag, at the top level)"
            ));
        }
        let arg = flag(cmd, key).ok_or_else(|| {
            let names: Vec<&str> = flags(cmd).filter_map(|a| a.get_long()).collect();
            format!(
                "unknown key `{key}` (the keys are the flags: {})",
                names.join(", ")
            )
        })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().expect("flags have long names");
        out.extend(
            flag_values(arg, value)
                .map_err(|m| format!("`{key}`: {m}"))?
                .into_iter()
                .map(|v| match v {
                    None => format!("--{long}"),
                    Some(v) => format!("--{long}={v}"),
                }),
        );
    }
    Ok(out)
}

/// The flags a file may set: every long option but `--config`, `--help` and `--version`.
fn flags(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long().is_some() && !["config", "help", "version"].contains(&a.get_id().as_str())
    })
}

fn flag<'a>(cmd: &'a Command, key: &str) -> Option<&'a clap::Arg> {
    let long = key.replace('_', "-");
    flags(cmd).find(|a| a.get_long() == Some(long.as_str()))
}

/// A TOML value as the flag's arguments: `None` is the bare flag (a switch set to true).
fn flag_values(arg: &clap::Arg, value: &toml::Value) -> Result<Vec<Option<String>>, String> {
    use clap::ArgAction;
    use toml::Value as V;
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    match value {
        V::Boolean(b) if switch => Ok(if *b { vec![None] } else { vec![] }),
        _ if switch => Err("a switch takes true or false".into()),
        V::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
            items.iter().map(|v| scalar(v).map(Some)).collect()
        }
        V::Array(_) => Err("takes one value, not a list".into()),
        v => Ok(vec![Some(scalar(v)?)]),
    }
}

fn scalar(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("a {} is not a flag value", other.type_str())),
    }
}

/// A file that holds a secret (a flag whose environment value is hidden, like a token) should
/// be readable by its owner only; say so once when it is not.
fn warn_if_readable(cmd: &Command, table: &toml::Table, path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let secret = table
        .keys()
        .filter_map(|k| flag(cmd, k))
        .find(|a| a.is_hide_env_values_set());
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if let Some(a) = secret.filter(|_| mode & 0o077 != 0) {
        eprintln!(
            "warning: {} holds `{}` and other users may read it (chmod 600 {0})",
            path.display(),
            a.get_long().unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Demo {
        #[arg(long, default_value = "a")]
        name: String,
        #[arg(long, env = "CRPC_CONFIG_TEST_PORT", default_value_t = 1)]
        port: u16,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    }

    fn parse(file: &str, flags: &[&str]) -> Result<Demo, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["demo".to_string(), format!("--config={}", path.display())];
        argv.extend(flags.iter().map(|s| s.to_string()));
        try_parse_with_file(argv.into_iter().map(Into::into).collect()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_fills_what_flags_and_env_leave_and_defaults_fill_the_rest() {
        let file = "name = \"from-file\"\nquiet = true\ntag = [\"x\", \"y\"]\nttl = \"90s\"\n";
        let d = parse(file, &[]).unwrap();
        assert_eq!((d.name.as_str(), d.port, d.quiet), ("from-file", 1, true));
        assert_eq!(d.tag, ["x", "y"]);
        assert_eq!(d.ttl, Some(std::time::Duration::from_secs(90)));
        let d = parse(file, &["--name", "from-flag", "--tag", "z"]).unwrap();
        assert_eq!(
            (d.name.as_str(), d.tag.as_slice()),
            ("from-flag", &["z".to_string()][..])
        );
        // Environment over file: the only test touching this variable.
        std::env::set_var("CRPC_CONFIG_TEST_PORT", "7");
        let d = parse("port = 9", &[]).unwrap();
        std::env::remove_var("CRPC_CONFIG_TEST_PORT");
        assert_eq!(d.port, 7);
        assert_eq!(parse("port = 9\nquiet = false", &[]).unwrap().port, 9);
    }

    #[test]
    fn a_bad_file_is_a_command_line_error_naming_the_key() {
        let e = parse("nmae = \"x\"", &[]).unwrap_err();
        assert!(
            e.contains("unknown key `nmae`") && e.contains("name, port, quiet, tag, ttl"),
            "{e}"
        );
        let e = parse("quiet = \"yes\"", &[]).unwrap_err();
        assert!(e.contains("`quiet`: a switch takes true or false"), "{e}");
        let e = parse("name = [\"a\"]", &[]).unwrap_err();
        assert!(e.contains("`name`: takes one value"), "{e}");
        let e = parse("[name]\nx = 1", &[]).unwrap_err();
        assert!(e.contains("a table is not a flag value"), "{e}");
        let e = parse("ttl = 1e20", &[]).unwrap_err();
        assert!(e.contains("ttl"), "{e}");
        let e = parse("name = ", &[]).unwrap_err();
        assert!(e.contains("c.toml"), "{e}");
    }
}
