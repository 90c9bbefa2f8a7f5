//! `veche`: the meeting server in one binary. The binary (`main.rs`) only calls [`run_cli`];
//! the library form exists so integration tests can drive the storage layer and the API
//! router directly (`store`, `api`).

mod admin_cli;
pub mod api;
pub mod auth;
pub mod calendar;
mod check;
mod cidr;
mod config;
pub mod dashboard;
pub mod directory;
mod gate;
mod http;
mod live_save;
mod ratelimit;
mod reattach;
mod server;
#[cfg(test)]
mod socket_tests;
pub mod sockets;
mod state;
pub mod store;
mod tls;
mod turn;
mod turn_server;
pub mod webhooks;
mod ws;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command, Config, LogFormat};

/// Parses the command line and runs it; the whole of `main`.
pub fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable line with its causes; anyhow's Debug form would add a backtrace
            // whenever RUST_BACKTRACE is set, which helps nobody with a typo in a flag.
            eprintln!("veche: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(*args)?;
            init_logging(config.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(server::run(config))
        }
        Command::Admin(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(admin_cli::run(args))
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The TURN protocol crate logs each allocation at info, as the relay policy already does;
    // its own lines only when asked for by name.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("turn_server_proto"))
        && let Ok(quiet) = "turn_server_proto=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // Colours only on a terminal: under systemd stderr is the journal, which would keep the
    // escape codes as text. NO_COLOR (no-color.org) turns them off on a terminal too.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
