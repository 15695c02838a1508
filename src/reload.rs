//! SIGHUP: reopen the access log and reload the config file. What can change without a
//! restart (cache rules, log level, request and connection limits, client and target access
//! rules) is swapped in whole; a file that fails to load or
//! validate, or that changes a setting needing a restart (port, cache dir...), is refused as a
//! whole with a log line saying why, and the proxy keeps running with what it had.

use std::ffi::OsString;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::clients::{self, ClientGate};
use crate::access::SharedTargets;
use crate::access_log::AccessLog;
use crate::app;
use crate::cache::policy::rules::Rules;
use crate::cli::RunArgs;
use crate::config::load::{self, Loaded, RELOADABLE};
use crate::logging;
use crate::proxy::guard;
use crate::proxy::service::SharedRules;

/// The rules the settings give: `--rule` flags (or the file's `rule` key), then the file's
/// `[[cache-rule]]` tables; the first match wins.
pub fn rules(args: &RunArgs) -> Rules {
    Rules::new(args.rules.iter().chain(&args.file_rules).cloned().collect())
}

/// What a reload may change, and how the settings were given.
pub struct Reloader {
    /// The command line the process started with (re-read with the file on each reload).
    pub argv: Vec<OsString>,
    /// The settings in force.
    pub current: Loaded,
    /// The proxy's rules handle.
    pub rules: SharedRules,
    /// The request limits (URI length, body size).
    pub guard: Arc<ArcSwap<guard::Limits>>,
    /// The upstream target rules.
    pub targets: SharedTargets,
    /// The client allow-list and connection limits.
    pub gate: Arc<ClientGate>,
    /// The access log, if any.
    pub access_log: Option<AccessLog>,
}

/// What one reload did, for the log and the tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to reload: no `--config`.
    NoFile,
    /// The file failed to load or validate.
    Invalid(String),
    /// The file changes settings that need a restart; nothing was applied.
    Refused(Vec<String>),
    /// Applied; the keys that changed (possibly none).
    Applied(Vec<String>),
}

impl Reloader {
    /// Reopens the access log and reloads the config file, logging the outcome.
    pub fn reload(&mut self) -> Outcome {
        if let Some(log) = &self.access_log {
            log.reopen();
        }
        let outcome = self.reload_config();
        match &outcome {
            Outcome::NoFile => tracing::info!("SIGHUP: no --config file to reload"),
            Outcome::Invalid(why) => {
                tracing::warn!(error = %why, "config reload failed, keeping the running settings: {why}")
            }
            Outcome::Refused(keys) => tracing::warn!(
                keys = %keys.join(", "),
                "config reload refused (needs a restart): {}; nothing changed",
                keys.join(", ")
            ),
            Outcome::Applied(keys) if keys.is_empty() => tracing::info!("config reloaded: no changes"),
            Outcome::Applied(keys) => {
                tracing::info!(changed = %keys.join(", "), "config reloaded: {} changed", keys.join(", "))
            }
        }
        outcome
    }

    fn reload_config(&mut self) -> Outcome {
        if self.current.cli.run.config.is_none() {
            return Outcome::NoFile;
        }
        let new = match load::load(&self.argv) {
            Ok(new) => new,
            Err(e) => return Outcome::Invalid(e.to_string()),
        };
        if let Err(e) = crate::app::validate(&new.cli.run) {
            return Outcome::Invalid(format!("{e:#}"));
        }
        let changed = self.current.changed(&new);
        let restart: Vec<String> =
            changed.iter().filter(|k| !RELOADABLE.contains(&k.as_str())).cloned().collect();
        if !restart.is_empty() {
            return Outcome::Refused(restart);
        }
        let run = &new.cli.run;
        if changed.iter().any(|k| k == "log-level" || k == "verbose") {
            if let Err(e) = logging::set_filter(&logging::directives(run.verbose, run.log_level.as_deref())) {
                return Outcome::Invalid(format!("log-level: {e}"));
            }
        }
        self.rules.store(Arc::new(rules(run)));
        let touched = |keys: &[&str]| changed.iter().any(|k| keys.contains(&k.as_str()));
        if touched(&["max-uri-length", "max-request-body"]) {
            self.guard.store(Arc::new(app::guard_limits(run)));
        }
        if touched(&["allow-target", "deny-target", "deny-private"]) {
            self.targets.store(Arc::new(app::target_acl(run)));
        }
        if touched(&["allow-client", "max-connections", "max-connections-per-client"]) {
            let (allow, limits) = clients::policy(&run.harden, run.host);
            self.gate.update(allow, limits);
        }
        self.current = new;
        Outcome::Applied(changed)
    }

    /// Listens for SIGHUP now (so a signal from here on never kills the process) and reloads
    /// on each one in a task of its own, for the life of the runtime.
    pub fn spawn(mut self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: no reloads");
                    return;
                }
            };
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // Reading a small file: cheap enough for the runtime's thread.
                    self.reload();
                }
            });
        }
        #[cfg(not(unix))]
        let _ = &mut self;
    }
}
