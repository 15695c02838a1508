//! Logging setup: tracing to stderr, INFO by default (one line per request), DEBUG with
//! `-v`, JSON with `--log-format json`. Lines below WARN are batched into few writes (see
//! [`batched`]). `--log-level` overrides `RUST_LOG`, which overrides
//! `-v`. The filter sits behind a reload handle so a config reload can change it.

mod batched;
pub mod request_line;

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::cli::LogFormat;
pub use batched::flush;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Checks a `--log-level` filter (tracing `EnvFilter` directives).
pub fn parse_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s).map(|_| s.to_string()).map_err(|e| format!("'{s}' is not a log filter: {e}"))
}

/// The filter the settings ask for, as directives.
pub fn directives(verbose: bool, log_level: Option<&str>) -> String {
    if let Some(level) = log_level {
        return level.to_string();
    }
    match std::env::var("RUST_LOG") {
        Ok(env) if EnvFilter::try_new(&env).is_ok() => env,
        _ if verbose => "debug,hyper=info,hyper_util=info".to_string(),
        _ => "info".to_string(),
    }
}

/// Installs the global subscriber.
pub fn init(verbose: bool, format: LogFormat, log_level: Option<&str>) {
    let filter =
        EnvFilter::try_new(directives(verbose, log_level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(batched::BatchedStderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
        request_line::enable(matches!(format, LogFormat::Text) && !ansi);
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            default_hook(info);
        }));
    }
}

/// Replaces the filter of the running subscriber.
pub fn set_filter(directives: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
    let handle = FILTER.get().ok_or("logging is not initialised")?;
    handle.reload(filter).map_err(|e| e.to_string())
}
