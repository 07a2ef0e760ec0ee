//! `harness`: see `harness --help`. All logic lives in the library.

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match harness::cli::parse_args(std::env::args_os()) {
        Ok(cli) => harness::cli::main_with_args(cli).await,
        Err(code) => code,
    };
    std::process::ExitCode::from(code)
}
