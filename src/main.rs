//! The `httpcache-proxy` binary: parses flags, sets up logging, runs the app, and maps errors
//! to a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use httpcache_proxy::cli::{Cli, Command};
use httpcache_proxy::{app, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (verbose, format) = match &cli.command {
        Some(Command::Demo(d)) => (d.verbose, httpcache_proxy::cli::LogFormat::Text),
        None => (cli.run.verbose, cli.run.log_format),
    };
    logging::init(verbose, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Demo(d)) => app::demo(d).await,
            None => app::run(cli.run).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
