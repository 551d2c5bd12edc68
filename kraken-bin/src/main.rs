//! The `kraken` binary: `kraken up` starts a platform on this machine; the
//! other commands are a client of a platform's HTTP API.
//!
//! Exit codes: 0 success; 1 the operation ran but failed (a deployment ended
//! Errored); 2 bad command line; 3 the platform could not be reached; 4 the
//! platform refused the request (the message says why).

mod cli;
mod commands;
mod follow;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KRAKEN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.is_agent() { "info" } else { "warn" })
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.downcast_ref::<cli::Failure>().map_or(1, |f| f.code()))
        }
    }
}
