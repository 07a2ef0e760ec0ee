//! `harness`: see `harness --help`. All logic lives in the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = harness::cli::Cli::parse();
    std::process::ExitCode::from(harness::cli::main_with_args(cli).await)
}
