//! The TOML configuration file. Every top-level key names a command-line setting (a long flag
//! such as `cache-size`, or the positional `stale-time`) and is checked by that flag's own
//! clap value parser, so a flag added to `RunArgs` is a config key with no change here. The
//! settings with no flag are typed tables (`[[cache-rule]]`). Errors name the key and line.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use clap::{Arg, ArgAction, Command};
use serde::de::IntoDeserializer;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::rule::RuleTable;
use crate::cache::policy::rules::Rule;

/// The key of the `[[cache-rule]]` tables.
pub const RULE_TABLES: &str = "cache-rule";

/// What a config file says, as command-line tokens plus the typed sections.
#[derive(Debug, Default)]
pub struct FileSettings {
    /// One entry per flag key (in key order: a file's order carries no meaning).
    pub args: Vec<FileArg>,
    /// The `[[cache-rule]]` tables, in file order.
    pub rules: Vec<Rule>,
}

/// One flag key of the file.
#[derive(Debug, Clone)]
pub struct FileArg {
    /// clap's id of the argument (e.g. `cache_size`).
    pub id: String,
    /// The tokens it stands for on a command line (`--cache-size=10GiB`, or the bare value of
    /// a positional).
    pub tokens: Vec<OsString>,
    /// Whether the argument is positional.
    pub positional: bool,
}

/// A config file error: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line of the key (0 when the file could not be read).
    pub line: usize,
    /// The key at fault (empty for a syntax error).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.path, self.message),
            (line, true) => write!(f, "{}:{line}: {}", self.path, self.message),
            (line, false) => write!(f, "{}:{line}: key '{}': {}", self.path, self.key, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads and checks `path` against the arguments of `cmd`.
pub fn read(path: &Path, cmd: &Command) -> Result<FileSettings, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: shown.clone(),
        line: 0,
        key: String::new(),
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&shown, &text, cmd)
}

/// Checks `text` (the contents of `path`) against the arguments of `cmd`.
pub fn parse(path: &str, text: &str, cmd: &Command) -> Result<FileSettings, ConfigError> {
    let err = |span: Option<std::ops::Range<usize>>, key: &str, message: String| ConfigError {
        path: path.to_string(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        key: key.to_string(),
        message,
    };
    let root = DeTable::parse(text).map_err(|e| err(e.span(), "", e.message().trim().to_string()))?;
    let mut out = FileSettings::default();
    let relaxed = cmd.clone().mut_args(|a| a.required(false));
    for (key, value) in root.get_ref().iter() {
        let name: &str = key.get_ref();
        let at = Some(key.span());
        if name == RULE_TABLES {
            out.rules.extend(
                rule_tables(value)
                    .map_err(|(span, field, msg)| err(Some(span), &format!("{RULE_TABLES}.{field}"), msg))?,
            );
            continue;
        }
        let Some(arg) = find_arg(cmd, name) else {
            return Err(err(at, name, "unknown key".into()));
        };
        if arg.get_id() == "config" {
            return Err(err(at, name, "a config file cannot name another one".into()));
        }
        let tokens = tokens(&relaxed, arg, value).map_err(|(span, msg)| err(Some(span), name, msg))?;
        out.args.push(FileArg { id: arg.get_id().to_string(), tokens, positional: arg.is_positional() });
    }
    Ok(out)
}

/// The argument a key names: a long flag, or a positional by its id with `-` for `_`.
pub fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    cmd.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")).find(|a| {
        if a.is_positional() {
            a.get_id().as_str().replace('_', "-") == key
        } else {
            a.get_long() == Some(key)
        }
    })
}

/// The config key of an argument (the inverse of [`find_arg`]).
pub fn key_of(arg: &Arg) -> String {
    match arg.get_long() {
        Some(long) if !arg.is_positional() => long.to_string(),
        _ => arg.get_id().as_str().replace('_', "-"),
    }
}

type Span = std::ops::Range<usize>;

/// The command-line tokens for `value`, each checked by the argument's value parser.
fn tokens(
    relaxed: &Command,
    arg: &Arg,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<OsString>, (Span, String)> {
    let flag = || OsString::from(format!("--{}", key_of(arg)));
    let span = value.span();
    let action = arg.get_action();
    match action {
        ArgAction::SetTrue | ArgAction::SetFalse => {
            let Some(b) = value.get_ref().as_bool() else {
                return Err((span, "expects true or false".into()));
            };
            let on = b == matches!(action, ArgAction::SetTrue);
            Ok(if on { vec![flag()] } else { Vec::new() })
        }
        ArgAction::Count => match value.get_ref().as_integer().and_then(|i| i.as_str().parse::<u8>().ok()) {
            Some(n) => Ok(vec![flag(); n as usize]),
            None => Err((span, "expects a small count".into())),
        },
        ArgAction::Append | ArgAction::Set => {
            let items: Vec<&Spanned<DeValue<'_>>> = match value.get_ref() {
                DeValue::Array(items) if matches!(action, ArgAction::Append) => items.iter().collect(),
                DeValue::Array(_) => return Err((span, "expects one value, not a list".into())),
                _ => vec![value],
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let text = scalar(item.get_ref()).ok_or_else(|| {
                    (item.span(), format!("expects a string or a number, not {}", item.get_ref().type_str()))
                })?;
                let token: OsString = if arg.is_positional() {
                    text.into()
                } else {
                    format!("--{}={text}", key_of(arg)).into()
                };
                // The flag's own parser, run on this one value within the whole command (so
                // the flag's relations resolve); another flag it requires is not this key's
                // error, and is checked when the merged settings are parsed.
                match relaxed.clone().try_get_matches_from([OsString::from("httpcache-proxy"), token.clone()])
                {
                    Err(e) if e.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                        return Err((item.span(), clap_message(&e)))
                    }
                    _ => {}
                }
                out.push(token);
            }
            Ok(out)
        }
        _ => Err((span, "is not a setting".into())),
    }
}

/// A scalar as the text a command line would carry.
fn scalar(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A clap error on one line: its first paragraph (no usage or help hint), without the
/// `error: ` prefix.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let joined = first.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_string()
}

/// The `[[cache-rule]]` tables as rules; an error carries its span and field.
fn rule_tables(value: &Spanned<DeValue<'_>>) -> Result<Vec<Rule>, (Span, &'static str, String)> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err((value.span(), "", "expects [[cache-rule]] tables".into()));
    };
    let mut rules = Vec::with_capacity(items.len());
    for item in items.iter() {
        let Some(table) = item.get_ref().as_table() else {
            return Err((item.span(), "", "expects a table".into()));
        };
        let parsed = RuleTable::deserialize(item.clone().into_deserializer())
            .map_err(|e| (e.span().unwrap_or(item.span()), "", e.message().trim().to_string()))?;
        let rule = parsed.into_rule().map_err(|(field, msg)| {
            let span = table.get(field).map_or(item.span(), |v| v.span());
            (span, field, msg)
        })?;
        rules.push(rule);
    }
    Ok(rules)
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse_text(text: &str) -> Result<FileSettings, ConfigError> {
        parse("t.toml", text, &crate::cli::Cli::command())
    }

    #[test]
    fn flag_keys_become_tokens() {
        let s = parse_text(
            "stale-time = 300\nport = 9000\ncache-size = \"10GiB\"\nverbose = true\nforce-ttl = false\n\
             rule = ['\\.deb$=30d', 'x=1h']\n",
        )
        .unwrap();
        let mut got: Vec<(String, Vec<OsString>)> = s.args.into_iter().map(|a| (a.id, a.tokens)).collect();
        got.sort();
        let want: Vec<(&str, Vec<&str>)> = vec![
            ("cache_size", vec!["--cache-size=10GiB"]),
            ("force_ttl", vec![]),
            ("port", vec!["--port=9000"]),
            ("rules", vec!["--rule=\\.deb$=30d", "--rule=x=1h"]),
            ("stale_time", vec!["300"]),
            ("verbose", vec!["--verbose"]),
        ];
        assert_eq!(got.len(), want.len());
        for ((id, tokens), (wid, wtokens)) in got.iter().zip(want) {
            assert_eq!(id, wid);
            assert_eq!(tokens, &wtokens.iter().map(OsString::from).collect::<Vec<_>>());
        }
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse_text("port = 1\n\n# c\ncache-sise = \"1GiB\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str(), e.message.as_str()), (4, "cache-sise", "unknown key"));
        let e = parse_text("port = 1\ncache-size = \"lots\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "cache-size"));
        assert!(e.message.contains("not a size"), "{e}");
        let e = parse_text("port = 70000\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "port"));
        let e = parse_text("port = [1, 2]\n").unwrap_err();
        assert!(e.message.contains("one value"), "{e}");
        let e = parse_text("verbose = \"yes\"\n").unwrap_err();
        assert_eq!(e.key, "verbose");
        let e = parse_text("config = \"x.toml\"\n").unwrap_err();
        assert_eq!(e.key, "config");
        let e = parse_text("port = \n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, ""));
        assert_eq!(e.to_string(), format!("t.toml:1: {}", e.message));
    }

    #[test]
    fn flags_with_relations_are_checked_alone() {
        let s =
            parse_text("tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\nconnect-port = [443, 8443]\n").unwrap();
        assert_eq!(s.args.len(), 3);
        let e = parse_text("connect-port = [443, \"x\"]\n").unwrap_err();
        assert_eq!(e.key, "connect-port");
    }

    #[test]
    fn rule_tables_are_typed() {
        let s = parse_text(
            "[[cache-rule]]\npattern = '\\.deb$'\nttl = \"30d\"\n\n[[cache-rule]]\npattern = '^http://h:80/api/'\n\
             bypass = true\n",
        )
        .unwrap();
        assert_eq!(s.rules.len(), 2);
        assert!(s.rules[1].bypass);
        let e = parse_text("[[cache-rule]]\npattern = 'x'\nttl = \"1d\"\nmax-age = 3\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("max-age"), "{e}");
        let e = parse_text("[[cache-rule]]\npattern = 'x'\n\nmin-ttl = \"soon\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "cache-rule.min-ttl"));
        let e = parse_text("[[cache-rule]]\npattern = '('\nbypass = true\n").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "cache-rule.pattern"));
    }
}
