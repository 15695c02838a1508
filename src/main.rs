//! The `httpcache-proxy` binary: loads the settings (flags over the config file), sets up
//! logging, runs the app, and maps errors to a non-zero exit code.

use std::process::ExitCode;

use httpcache_proxy::cli::Command;
use httpcache_proxy::config::load::{self, LoadError};
use httpcache_proxy::{app, logging};

/// jemalloc instead of glibc's allocator. On unique-URL misses glibc's malloc and free took
/// about 15% of the proxy's CPU, most of it splitting and merging free chunks of a heap
/// fragmented by long-lived memory-tier entries between short-lived request buffers, and it
/// grew slower as the tier filled; jemalloc's size-class slabs do not fragment that way (see
/// BENCHMARKS.md for what it gained and what it costs in peak RSS).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let loaded = match load::load(&argv) {
        Ok(loaded) => loaded,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::Config(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig(c)) = &loaded.cli.command {
        return match app::check_config(&c.file) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Cache(c)) = &loaded.cli.command {
        return match httpcache_proxy::tools::run(c) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let run = &loaded.cli.run;
    let (verbose, format, level) = match &loaded.cli.command {
        Some(Command::Demo(d)) => (d.verbose, httpcache_proxy::cli::LogFormat::Text, None),
        _ => (run.verbose, run.log_format, run.log_level.clone()),
    };
    logging::init(verbose, format, level.as_deref());
    match httpcache_proxy::runtime::raise_open_file_limit() {
        Ok(Some((from, to))) => tracing::info!(from, to, "open-file limit raised to the hard limit"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    // `demo` takes no run flags (they conflict with subcommands), so it gets the default.
    let runtime = match httpcache_proxy::runtime::scheduler(run.workers).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match loaded.cli.command.clone() {
            Some(Command::Demo(d)) => app::demo(d).await,
            Some(Command::CheckConfig(_) | Command::Cache(_)) => Ok(()),
            None => app::run_loaded(loaded, argv).await,
        }
    });
    drop(runtime);
    logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
