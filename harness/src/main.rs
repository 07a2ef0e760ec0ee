//! `harness`: see `harness --help`. All logic lives in the library.

use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match harness::cli::parse_args(std::env::args_os()) {
        // The runtime depends on the command (`harness run` drives its
        // sockets on one thread by default): see `Cli::runtime`.
        Ok(cli) => match cli.runtime() {
            Ok(runtime) => runtime.block_on(harness::cli::main_with_args(cli)),
            Err(err) => {
                eprintln!("error: cannot start the tokio runtime: {err}");
                harness::cli::EXIT_SETUP
            }
        },
        Err(code) => code,
    };
    std::process::ExitCode::from(code)
}
