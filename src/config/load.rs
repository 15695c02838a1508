//! Where the settings come from: flags on the command line, over the `--config` file, over the
//! defaults. Both go through clap's own parsers, and the file's keys are merged by the value
//! source clap records, so a flag always wins over the same key in the file.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::file::{self, ConfigError, RULE_TABLES};
use crate::cli::Cli;

/// Settings that a reload applies; any other change needs a restart.
pub const RELOADABLE: &[&str] = &[
    "rule",
    RULE_TABLES,
    "log-level",
    "verbose",
    "max-uri-length",
    "max-request-body",
    "allow-client",
    "max-connections",
    "max-connections-per-client",
    "allow-target",
    "deny-target",
    "deny-private",
];

/// The parsed command line, merged with the config file if it names one.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed settings.
    pub cli: Cli,
    /// What clap matched (raw values, value sources), to compare two loads.
    pub matches: ArgMatches,
}

/// Why the settings could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A command-line error, rendered by clap (usage, suggestions, exit code 2).
    Clap(clap::Error),
    /// A config file error naming the key and line.
    Config(ConfigError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Clap(e) => f.write_str(&file::clap_message(e)),
            LoadError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// Loads the settings for this command line (`argv[0]` is the program name).
pub fn load(argv: &[OsString]) -> Result<Loaded, LoadError> {
    load_with(argv, true)
}

/// Checks a config file on its own: every key valid, the positional settings optional (they
/// may come from the command line).
pub fn check(path: PathBuf) -> Result<Loaded, LoadError> {
    let argv = vec![OsString::from("httpcache-proxy"), "--config".into(), path.into()];
    load_with(&argv, false)
}

fn load_with(argv: &[OsString], require_positionals: bool) -> Result<Loaded, LoadError> {
    let cmd = Cli::command();
    // First pass: which file, and which settings the command line gives itself. The
    // positionals may come from the file, so they are not required yet.
    let relaxed = cmd.clone().mut_args(|a| if a.is_positional() { a.required(false) } else { a });
    let pre = relaxed.clone().try_get_matches_from(argv).map_err(LoadError::Clap)?;
    let config = pre.subcommand().is_none().then(|| pre.get_one::<PathBuf>("config").cloned()).flatten();
    let Some(path) = config else {
        let matches = cmd.try_get_matches_from(argv).map_err(LoadError::Clap)?;
        return finish(matches, Vec::new());
    };
    let settings = file::read(&path, &cmd).map_err(LoadError::Config)?;
    let mut merged: Vec<OsString> = argv.iter().take(1).cloned().collect();
    let from_file = settings
        .args
        .iter()
        .filter(|a| pre.value_source(&a.id) != Some(ValueSource::CommandLine))
        .collect::<Vec<_>>();
    // Positionals first (one today), then the flags.
    merged.extend(from_file.iter().filter(|a| a.positional).flat_map(|a| a.tokens.iter().cloned()));
    merged.extend(from_file.iter().filter(|a| !a.positional).flat_map(|a| a.tokens.iter().cloned()));
    merged.extend(argv.iter().skip(1).cloned());
    let parser = if require_positionals { cmd } else { relaxed };
    let matches = parser.try_get_matches_from(merged).map_err(LoadError::Clap)?;
    finish(matches, settings.rules)
}

fn finish(
    matches: ArgMatches,
    file_rules: Vec<crate::cache::policy::rules::Rule>,
) -> Result<Loaded, LoadError> {
    let mut cli = Cli::from_arg_matches(&matches).map_err(LoadError::Clap)?;
    cli.run.file_rules = file_rules;
    Ok(Loaded { cli, matches })
}

impl Loaded {
    /// The config keys whose values differ from `other`'s, in flag order.
    pub fn changed(&self, other: &Loaded) -> Vec<String> {
        let cmd = Cli::command();
        let mut out: Vec<String> = cmd
            .get_arguments()
            .filter(|a| raw(&self.matches, a.get_id().as_str()) != raw(&other.matches, a.get_id().as_str()))
            .map(file::key_of)
            .collect();
        if format!("{:?}", self.cli.run.file_rules) != format!("{:?}", other.cli.run.file_rules) {
            out.push(RULE_TABLES.to_string());
        }
        out
    }
}

/// The raw values clap holds for `id` (defaults included).
fn raw(m: &ArgMatches, id: &str) -> Option<Vec<OsString>> {
    m.try_get_raw(id).ok().flatten().map(|v| v.map(|s| s.to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("httpcache-proxy").chain(args.iter().copied()).map(OsString::from).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let f = file("stale-time = 300\nport = 9000\nupstream-port = 8000\nrule = ['a=1s']\n");
        let path = f.path().to_str().unwrap();
        let l = load(&argv(&["--config", path, "--port", "9100"])).unwrap();
        assert_eq!(l.cli.run.stale_time, Some(300));
        assert_eq!(l.cli.run.port, 9100);
        assert_eq!(l.cli.run.upstream_port, 8000);
        assert_eq!(l.cli.run.cache_size, 1 << 30);
        assert_eq!(l.cli.run.rules.len(), 1);
        let l = load(&argv(&["60", "--config", path, "--rule", "b=2s", "--rule", "c=3s"])).unwrap();
        assert_eq!(l.cli.run.stale_time, Some(60));
        let patterns: Vec<&str> = l.cli.run.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, ["b", "c"]);
    }

    #[test]
    fn without_a_file_the_command_line_is_unchanged() {
        assert_eq!(load(&argv(&["5"])).unwrap().cli.run.stale_time, Some(5));
        assert!(matches!(load(&argv(&[])), Err(LoadError::Clap(_))));
        assert!(matches!(load(&argv(&["5", "--config", "/nonexistent.toml"])), Err(LoadError::Config(_))));
    }

    #[test]
    fn changed_lists_keys() {
        let a = load(&argv(&["5", "--port", "1"])).unwrap();
        let b = load(&argv(&["5", "--port", "2", "--rule", "x=1s"])).unwrap();
        assert_eq!(a.changed(&b), ["port", "rule"]);
        assert!(a.changed(&a.clone()).is_empty());
    }

    #[test]
    fn check_needs_no_positional() {
        let f = file("port = 9000\n");
        assert_eq!(check(f.path().to_path_buf()).unwrap().cli.run.port, 9000);
    }
}
