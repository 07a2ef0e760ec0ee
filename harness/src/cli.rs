//! The `harness` command line. `main.rs` only calls [`main_with_args`].
//!
//! Exit codes: 0 valid and thresholds met (and `--help`, `--version`);
//! 1 an invariant was violated; 2 a threshold was missed or the verdict is
//! unknown; 3 usage, setup or input error (unknown flag, bad value, bad
//! scenario, no Redis, server failed to start); 130 stopped by Ctrl-C or
//! SIGTERM (children stopped, no verdict). Clap's own usage errors
//! exit 2, which a CI job would read as "threshold missed": [`parse_args`]
//! maps them to 3.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::auth::Credentials;
use crate::history::MessageLog;
use crate::report;
use crate::runner::{self, Launcher, RunOptions};
use crate::scenario::load_scenario;

pub const EXIT_SETUP: u8 = 3;
/// The run was stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Parses the command line. `Err` carries the exit code after clap has
/// printed its message: 0 for `--help` / `--version`, [`EXIT_SETUP`] for
/// every usage error (unknown flag, missing subcommand, bad value).
pub fn parse_args<I, T>(args: I) -> Result<Cli, u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(err) => {
            let code = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_SETUP,
            };
            // Help goes to stdout, errors to stderr (clap decides); a closed
            // pipe leaves nothing better to do than exit with the code.
            let _ = err.print();
            Err(code)
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Plays WebSocket chat scenarios with thousands of reconnecting clients and checks that no message is lost, duplicated or reordered."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The tokio runtime this command runs on. `run` drives its sockets on
    /// `--runtime-threads` threads (one by default, so a current-thread
    /// runtime); every other command (the spawned servers' `serve`
    /// included) gets tokio's default multi-threaded runtime.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match self.command {
            Command::Run {
                runtime_threads: 1, ..
            } => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Command::Run {
                runtime_threads, ..
            } => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(runtime_threads))
                .enable_all()
                .build(),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file and write a report directory.
    Run {
        /// The scenario file (TOML), e.g. scenarios/smoke.toml.
        scenario: PathBuf,
        /// Test this server instead of spawning reference servers
        /// (repeatable: devices are spread over the targets).
        #[arg(long = "target", value_name = "ws[s]://HOST:PORT/ws", value_parser = parse_target)]
        targets: Vec<url::Url>,
        /// Redis to use: with spawned servers, instead of the provider;
        /// with --target, the target's Redis, read back to check the log
        /// (without it the log is rebuilt from acks and receipts).
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        /// Parent folder of the run directory.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Seed for everything random (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// No progress output (neither the live line on a terminal nor
        /// the plain line every 5 s otherwise).
        #[arg(long)]
        quiet: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics while the run
        /// goes (sockets, sends, deliveries, live anomalies, latency
        /// histograms), e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// TESTING AID: start the spawned reference servers with this
        /// deliberate recovery bug (repeatable; see docs/flaws.md), to see
        /// the checker catch it.
        #[arg(long = "inject-flaw", value_enum, value_name = "FLAW")]
        inject_flaws: Vec<server::flaws::Flaw>,
        /// HS256 secret to mint the devices' tokens with (the target's
        /// --jwt-secret). Spawned servers use it too instead of a fresh
        /// random one.
        #[arg(long, env = "HARNESS_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// Command that prints a user's token, for --target servers whose
        /// key the harness must not hold. Run once per user as
        /// `sh -c 'CMD "$@"' CMD USER_ID CONVERSATION_ID...`.
        #[arg(long, value_name = "CMD", conflicts_with = "jwt_secret")]
        token_command: Option<String>,
        /// Trust these CA certificates (PEM) for wss:// targets instead of
        /// the system's roots (a private CA, or a self-signed certificate).
        #[arg(long, value_name = "PEM_FILE")]
        ca: Option<PathBuf>,
        /// Threads driving the sockets. 1 (the default) runs the run on a
        /// single-threaded runtime: no wake-ups handed between worker
        /// threads (docs/performance.md, "Client CPU, fourth pass"). More
        /// spreads the sockets over a multi-threaded runtime; local
        /// --workers processes are the way to use several cores.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        runtime_threads: u16,
        #[command(flatten)]
        sharding: Box<ShardArgs>,
    },
    /// Merge the shard directories of a sharded run (`run --shard I/N`),
    /// read the message log back once, check, and write the run's report
    /// directory. Exit codes as for `run`.
    Merge {
        /// Shard directories, one per shard 0..N (e.g. reports/smoke-7-shard-*).
        #[arg(required = true, value_name = "SHARD_DIR")]
        shard_dirs: Vec<PathBuf>,
        /// The run directory to write.
        #[arg(long, value_name = "RUN_DIR")]
        out: PathBuf,
        /// Read the message log from this Redis instead of the one the
        /// shards recorded.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
    },
    /// Print an HS256 token for a user (`sub`) and the conversations it
    /// may join, e.g. for --token-command or for trying a server by hand.
    Token {
        /// The server's --jwt-secret.
        #[arg(long, env = "HARNESS_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        /// How long the token is valid.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        valid_for: std::time::Duration,
        /// The user id (hyphenated UUID).
        user_id: uuid::Uuid,
        /// Conversation ids the token grants.
        conversations: Vec<uuid::Uuid>,
    },
    /// Re-check a recorded run offline (history.bin + log.json).
    Check { run_dir: PathBuf },
    /// Re-render the reports of a recorded run.
    Report { run_dir: PathBuf },
    /// Check a scenario file without running it.
    Validate { scenario: PathBuf },
    /// Export a run's history (history.bin) as JSON lines: the run meta on
    /// the first line, then one event per line.
    Export {
        run_dir: PathBuf,
        /// The format (JSON lines is the only one).
        #[arg(long, required = true)]
        jsonl: bool,
        /// Where to write it (default: RUN_DIR/history.jsonl).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run the reference server (used by `run` to spawn server processes;
    /// same flags as the `server` binary).
    Serve(Box<server::Config>),
}

pub async fn main_with_args(cli: Cli) -> u8 {
    match cli.command {
        Command::Run {
            scenario,
            targets,
            redis_url,
            out,
            seed,
            quiet,
            metrics_listen,
            inject_flaws,
            jwt_secret,
            token_command,
            ca,
            runtime_threads: _,
            sharding,
        } => {
            let flaw_args = inject_flaws
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value)
                .flat_map(|value| ["--inject-flaw".to_string(), value.get_name().to_string()])
                .collect();
            let targets = targets.iter().map(url::Url::to_string).collect();
            let options = RunArgs {
                targets,
                redis_url,
                out,
                seed,
                quiet,
                metrics_listen,
                extra_server_args: flaw_args,
                credentials: match (jwt_secret, token_command) {
                    (Some(secret), _) => Credentials::Secret(secret),
                    (None, Some(command)) => Credentials::Command(command),
                    (None, None) => Credentials::None,
                },
                ca,
            };
            match sharding.shard {
                Some(spec) => run_shard(&scenario, options, spec, *sharding).await,
                None => run(&scenario, options, sharding.workers).await,
            }
        }
        Command::Merge {
            shard_dirs,
            out,
            redis_url,
        } => {
            let options = crate::shard::MergeOptions {
                shard_dirs,
                out,
                redis_url,
                system_cost: None,
            };
            match crate::shard::merge(options).await {
                Ok(outcome) => {
                    println!("{}", report::render_console_table(&outcome.summary));
                    println!("report: {}", outcome.run_dir.join("report.html").display());
                    outcome.exit_code
                }
                Err(err) => fail(&err),
            }
        }
        Command::Token {
            jwt_secret,
            valid_for,
            user_id,
            conversations,
        } => match crate::auth::mint(&jwt_secret, user_id, &conversations, valid_for) {
            Ok(token) => {
                println!("{token}");
                0
            }
            Err(err) => fail(&err),
        },
        Command::Check { run_dir } => check(&run_dir),
        Command::Report { run_dir } => match report::rerender_run_dir(&run_dir) {
            Ok((summary, files)) => {
                println!("{}", report::render_console_table(&summary));
                println!("report: {}", files.html.display());
                report::exit_code(&summary)
            }
            Err(err) => fail(&err),
        },
        Command::Validate { scenario } => match load_scenario(&scenario) {
            Ok(parsed) => {
                println!(
                    "{}: ok — scenario {:?}, {} sockets when all online, {:?} of traffic at {}/s",
                    scenario.display(),
                    parsed.name,
                    parsed.population.total_sockets(),
                    parsed.duration,
                    parsed.traffic.send_rate_per_s
                );
                0
            }
            Err(err) => fail(&err),
        },
        Command::Export { run_dir, out, .. } => export(&run_dir, out),
        Command::Serve(config) => serve(*config).await,
    }
}

/// `harness export --jsonl`: streams history.bin into JSON lines.
fn export(run_dir: &Path, out: Option<PathBuf>) -> u8 {
    let source = run_dir.join(crate::history::HISTORY_FILE);
    let out = out.unwrap_or_else(|| run_dir.join(crate::history::HISTORY_JSONL_FILE));
    match crate::history::export_jsonl(&source, &out) {
        Ok(events) => {
            println!("{events} events written to {}", out.display());
            0
        }
        Err(err) => fail(&err),
    }
}

fn fail(err: &dyn std::fmt::Display) -> u8 {
    eprintln!("error: {err}");
    EXIT_SETUP
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    recovery_units::parse_duration(text).map_err(|err| err.to_string())
}

fn parse_target(text: &str) -> Result<url::Url, crate::target::TargetError> {
    crate::target::parse_ws_target(text)
}

/// `harness run --shard`: play one shard of a run (docs/distributed.md).
#[derive(Debug, clap::Args)]
pub struct ShardArgs {
    /// Play only shard I of N (devices split by the seed) against --target
    /// servers and their --redis-url, and write the shard directory
    /// OUT/RUN_ID-shard-I-of-N without checking; `harness merge` checks.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::shard::ShardSpec>,
    /// The run's time origin (unix milliseconds), the same for every
    /// shard. Without it the shards agree on one through Redis once all N
    /// are up.
    #[arg(long, value_name = "UNIX_MS", requires = "shard")]
    pub start_at: Option<u64>,
    /// Names the run among runs with the same scenario and seed (Redis
    /// keys, shard directory names); default SCENARIO-SEED.
    #[arg(long, value_name = "ID", requires = "shard")]
    pub run_id: Option<String>,
    /// How long a shard waits for the others to come up.
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "shard")]
    pub wait_for_shards: std::time::Duration,
    /// Play the run as N local worker processes (each a --shard of this
    /// run, same seed, one time origin), merged at the end. Default: as
    /// many as keep every process under its open-files limit (1 for most
    /// scenarios).
    #[arg(long, value_name = "N", conflicts_with = "shard", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
}

/// `harness run` flags besides the scenario.
struct RunArgs {
    targets: Vec<String>,
    redis_url: Option<String>,
    out: PathBuf,
    seed: Option<u64>,
    quiet: bool,
    metrics_listen: Option<std::net::SocketAddr>,
    extra_server_args: Vec<String>,
    credentials: Credentials,
    ca: Option<PathBuf>,
}

async fn run(scenario_path: &Path, args: RunArgs, workers: Option<u32>) -> u8 {
    let RunArgs {
        targets,
        redis_url,
        out,
        seed,
        quiet,
        metrics_listen,
        extra_server_args,
        credentials,
        ca,
    } = args;
    let scenario = match load_scenario(scenario_path) {
        Ok(scenario) => scenario,
        Err(err) => return fail(&err),
    };
    if !extra_server_args.is_empty() && !targets.is_empty() {
        return fail(
            &"--inject-flaw applies to spawned reference servers, not to --target servers",
        );
    }
    let launcher = match std::env::current_exe() {
        Ok(program) => Launcher::Process {
            program,
            serve_subcommand: true,
        },
        Err(err) => {
            return fail(&format!(
                "cannot find the harness executable to spawn servers: {err}"
            ))
        }
    };
    let workers = workers.unwrap_or_else(|| {
        crate::shard::local::workers_needed(
            scenario.population.total_sockets(),
            crate::shard::local::open_files_limit().unwrap_or(20_000),
        )
    });
    let program = match &launcher {
        Launcher::Process { program, .. } => program.clone(),
        Launcher::InProcess => PathBuf::from("harness"),
    };
    let options = RunOptions {
        scenario,
        targets: if targets.is_empty() {
            None
        } else {
            Some(targets)
        },
        redis_url,
        out_root: out,
        seed,
        launcher,
        progress: !quiet,
        extra_server_args,
        metrics_listen,
        credentials,
        ca,
    };
    // Ctrl-C or SIGTERM stops the run and everything it started; without
    // this a signal would end the process and leave servers and Redis
    // running.
    let outcome = if workers > 1 {
        tokio::select! {
            outcome = crate::shard::local::run_with_workers(options, scenario_path, workers, &program) => {
                outcome.map_err(|err| err.to_string())
            }
            reason = interrupted() => {
                // Dropping the workers' future kills the workers (kill on
                // drop) and drops the servers and Redis it owns.
                eprintln!("harness: {}", runner::RunError::Interrupted(reason));
                return EXIT_INTERRUPTED;
            }
        }
    } else {
        match runner::run_until(options, interrupted()).await {
            Err(err @ runner::RunError::Interrupted(_)) => {
                eprintln!("harness: {err}");
                return EXIT_INTERRUPTED;
            }
            other => other.map_err(|err| err.to_string()),
        }
    };
    match outcome {
        Ok(outcome) => {
            println!("{}", report::render_console_table(&outcome.summary));
            println!("report: {}", outcome.run_dir.join("report.html").display());
            outcome.exit_code
        }
        Err(err) => fail(&err),
    }
}

/// `harness run --shard I/N`: writes the shard directory; exit 0 when it
/// is written (the verdict comes from `harness merge`).
async fn run_shard(
    scenario_path: &Path,
    args: RunArgs,
    spec: crate::shard::ShardSpec,
    sharding: ShardArgs,
) -> u8 {
    let scenario = match load_scenario(scenario_path) {
        Ok(scenario) => scenario,
        Err(err) => return fail(&err),
    };
    let options = RunOptions {
        scenario,
        targets: Some(args.targets),
        redis_url: args.redis_url,
        out_root: args.out,
        seed: args.seed,
        // Shards never spawn servers.
        launcher: Launcher::InProcess,
        progress: !args.quiet,
        extra_server_args: args.extra_server_args,
        metrics_listen: args.metrics_listen,
        credentials: args.credentials,
        ca: args.ca,
    };
    let shard = crate::shard::ShardRunOptions {
        run: options,
        spec,
        start_at_unix_ms: sharding.start_at,
        run_id: sharding.run_id,
        wait_for_shards: sharding.wait_for_shards,
    };
    match crate::shard::play_shard(shard).await {
        Ok(dir) => {
            println!("shard directory: {}", dir.display());
            0
        }
        Err(err) => fail(&err),
    }
}

fn check(run_dir: &Path) -> u8 {
    let log_path = run_dir.join("log.json");
    let log: MessageLog = match std::fs::read_to_string(&log_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(log) => log,
        Err(err) => return fail(&format!("cannot read {}: {err}", log_path.display())),
    };
    let scenario = match load_scenario(&run_dir.join("scenario.toml")) {
        Ok(scenario) => scenario,
        Err(err) => return fail(&err),
    };
    let summary = report::load_summary(run_dir).ok();
    let drain_complete = summary.as_ref().is_none_or(|s| s.stragglers.is_empty());
    let intruders = match crate::intruders::read_records(run_dir) {
        Ok(records) => records,
        Err(err) => return fail(&err),
    };
    let history_path = crate::history::history_path(run_dir);
    let outcome = match runner::check_history_file(
        &history_path,
        &log,
        &scenario,
        drain_complete,
        &intruders,
    ) {
        Ok(outcome) => outcome,
        Err(err) => return fail(&err),
    };
    println!("verdict: {:?}", outcome.verdict);
    for (kind, anomaly) in &outcome.anomalies {
        println!(
            "  {:<17} {:>8}{}",
            kind.name(),
            anomaly.count,
            if anomaly.violation { "" } else { "  (allowed)" }
        );
        for example in anomaly.examples.iter().take(3) {
            println!("      {}", example.detail);
        }
    }
    for reason in &outcome.unknown_reasons {
        println!("  unknown: {reason}");
    }
    match outcome.verdict {
        crate::checker::Verdict::Valid => 0,
        crate::checker::Verdict::Invalid => 1,
        crate::checker::Verdict::Unknown => 2,
    }
}

/// Waits for Ctrl-C or SIGTERM and names which one came.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            // No SIGTERM handler: Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term => "terminated (SIGTERM)",
    }
}

async fn serve(config: server::Config) -> u8 {
    let mut running = match server::start(config).await {
        Ok(running) => running,
        Err(err) => return fail(&err),
    };
    println!("LISTENING {}", running.ws_url());
    tokio::select! {
        result = running.wait() => {
            if let Err(err) = result {
                return fail(&err);
            }
            0
        }
        _ = interrupted() => shutdown(running).await,
    }
}

async fn shutdown(running: server::RunningServer) -> u8 {
    match running.shutdown().await {
        Ok(()) => 0,
        Err(err) => fail(&err),
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    fn flavor(args: &[&str]) -> RuntimeFlavor {
        let cli = parse_args(args.iter().copied()).expect("the arguments parse");
        let runtime = cli.runtime().expect("a runtime starts");
        runtime.handle().runtime_flavor()
    }

    #[test]
    fn run_drives_its_sockets_on_one_thread_unless_told_otherwise() {
        assert_eq!(
            flavor(&["harness", "run", "s.toml"]),
            RuntimeFlavor::CurrentThread
        );
        assert_eq!(
            flavor(&["harness", "run", "s.toml", "--runtime-threads", "2"]),
            RuntimeFlavor::MultiThread
        );
        // Every other command keeps tokio's default runtime.
        assert_eq!(
            flavor(&["harness", "validate", "s.toml"]),
            RuntimeFlavor::MultiThread
        );
    }

    #[test]
    fn zero_runtime_threads_is_a_usage_error() {
        let parsed = parse_args(["harness", "run", "s.toml", "--runtime-threads", "0"]);
        assert_eq!(parsed.err(), Some(EXIT_SETUP));
    }
}
