//! The `sluice` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice::checkpoints::{CheckpointOptions, Restore, job_name};
use sluice::engine::{JobRun, RunOptions};
use sluice::progress::Progress;
use sluice_sql::SqlError;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Streaming SQL over event streams")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job until every bounded source ends, or Ctrl-C.
    Run {
        /// The job's SQL file.
        file: PathBuf,
        /// Tasks per windowed aggregate (default: `SET parallelism` in the job, else the
        /// number of cores).
        #[arg(long)]
        parallelism: Option<usize>,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// Time between checkpoints, e.g. 2s (default: `SET checkpoint_interval` in the
        /// job, else 10s).
        #[arg(long)]
        checkpoint_interval: Option<String>,
        /// Restore this checkpoint (an epoch number, or a checkpoint directory) instead of
        /// the newest.
        #[arg(long, conflicts_with = "fresh")]
        from_checkpoint: Option<String>,
        /// Ignore existing checkpoints and start over.
        #[arg(long)]
        fresh: bool,
    },
    /// List or inspect a job's checkpoints.
    Checkpoints {
        #[command(subcommand)]
        command: CheckpointsCmd,
    },
    /// Run the four reference jobs on generated data, showing results live (no Kafka,
    /// no database).
    Demo {
        /// Stop after this long (e.g. 20s, 2m); default: until Ctrl-C.
        #[arg(long)]
        duration: Option<String>,
        /// Tasks per windowed aggregate.
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
    },
    /// Write generated events (profile iot or user-activity) as JSON to a Kafka topic.
    Generate(Box<GenerateCmd>),
    /// Print the streaming plan of a job, or why it cannot run.
    Explain {
        /// The job's SQL file.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct CheckpointArgs {
    /// The job's name (default: the file's stem); its checkpoints are in DIR/NAME.
    #[arg(long)]
    name: Option<String>,
    /// Where checkpoints live.
    #[arg(long, default_value = "checkpoints", env = "SLUICE_CHECKPOINT_DIR")]
    checkpoint_dir: PathBuf,
}

impl CheckpointArgs {
    fn options(&self, file: &Path) -> CheckpointOptions {
        let job = self.name.clone().unwrap_or_else(|| job_name(file));
        CheckpointOptions::new(&self.checkpoint_dir, &job)
    }
}

#[derive(Subcommand)]
enum CheckpointsCmd {
    /// Epochs, time, size, watermark and offsets of each checkpoint.
    List {
        file: PathBuf,
        #[command(flatten)]
        args: CheckpointArgs,
    },
    /// One checkpoint's manifest and files.
    Inspect {
        file: PathBuf,
        /// An epoch number or a checkpoint directory.
        epoch: String,
        #[command(flatten)]
        args: CheckpointArgs,
    },
}

#[derive(clap::Args)]
struct GenerateCmd {
    /// iot or user-activity.
    profile: String,
    #[arg(long, default_value = "localhost:9092", env = "KAFKA_BROKERS")]
    brokers: String,
    /// Default: iot_sensors or user_activity.
    #[arg(long)]
    topic: Option<String>,
    /// Events per second (0: as fast as possible).
    #[arg(long)]
    rate: Option<String>,
    /// Sensors or users.
    #[arg(long)]
    keys: Option<String>,
    #[arg(long)]
    seed: Option<String>,
    /// Event time runs this many times faster than the wall clock.
    #[arg(long)]
    speedup: Option<String>,
    /// Maximum out-of-orderness, e.g. 30s.
    #[arg(long)]
    disorder: Option<String>,
    /// Share of events older than the watermark allows.
    #[arg(long)]
    late_fraction: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<String>,
    /// Event time of the first event (RFC 3339 or epoch ms); default: now.
    #[arg(long)]
    start_time: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            file,
            parallelism,
            checkpoints,
            checkpoint_interval,
            from_checkpoint,
            fresh,
        } => {
            let sql = read(&file)?;
            let graph = match sluice::plan(&sql) {
                Ok(g) => g,
                Err(e) => return Ok(sql_error(&file, &sql, &e)),
            };
            let mut options = RunOptions::default();
            // The command line wins over `SET parallelism` in the job, which wins over
            // the default (the number of cores).
            let from_job = graph.setting("parallelism").and_then(|p| p.parse().ok());
            if let Some(p) = parallelism.or(from_job) {
                options.parallelism = p.max(1);
            }
            if let Some(i) = checkpoint_interval {
                let ms = sluice_sql::parse_interval_text(&i)
                    .map_err(|e| anyhow::anyhow!("--checkpoint-interval {i}: {e}"))?;
                options.checkpoint_interval =
                    Some(std::time::Duration::from_millis(ms.max(10) as u64));
            }
            let mut cp = checkpoints.options(&file);
            cp.restore = match (fresh, from_checkpoint) {
                (true, _) => Restore::Fresh,
                (false, Some(c)) => Restore::Chosen(c),
                (false, None) => Restore::Newest,
            };
            cp.abort_after = std::env::var("SLUICE_ABORT_AFTER_CHECKPOINT")
                .ok()
                .and_then(|v| v.parse().ok());
            options.name = cp.job.clone();
            options.checkpoints = Some(cp);
            let run = JobRun::build(&graph, &options)?;
            let handle = run.handle.clone();
            let stopper = handle.clone();
            let _ = ctrlc::set_handler(move || {
                if stopper.is_stopping() {
                    eprintln!("\nstopping now, without a final checkpoint");
                    std::process::exit(130);
                }
                eprintln!(
                    "\nstopping (Ctrl-C): taking a final checkpoint; Ctrl-C again to quit at once"
                );
                stopper.stop();
            });
            let progress = Progress::start(Arc::clone(&handle.metrics));
            let result = run.run();
            eprintln!("{}", progress.finish());
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            parallelism,
        } => {
            let duration = match duration {
                None => None,
                Some(d) => {
                    let ms = d
                        .parse::<u64>()
                        .map(|s| s * 1000)
                        .or_else(|_| sluice_sql::parse_interval_text(&d).map(|m| m as u64))
                        .map_err(|_| anyhow::anyhow!("--duration {d}: write e.g. 20s or 2m"))?;
                    Some(std::time::Duration::from_millis(ms))
                }
            };
            let options = RunOptions {
                parallelism: parallelism.max(1),
                ..RunOptions::default()
            };
            sluice::demo::run(duration, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(cmd) => {
            let GenerateCmd {
                profile,
                brokers,
                topic,
                rate,
                keys,
                seed,
                speedup,
                disorder,
                late_fraction,
                limit,
                start_time,
                partitions,
            } = *cmd;
            let topic = topic.unwrap_or_else(|| match profile.as_str() {
                "iot" => "iot_sensors".into(),
                _ => "user_activity".into(),
            });
            let options = [
                ("rate", rate),
                ("keys", keys),
                ("seed", seed),
                ("speedup", speedup),
                ("disorder", disorder),
                ("late_fraction", late_fraction),
                ("limit", limit),
                ("start_time", start_time),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect();
            let args = sluice::generate::GenerateArgs {
                profile,
                brokers,
                topic,
                partitions,
                options,
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            let _ =
                ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
            sluice::generate::run(&args, stop)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkpoints { command } => {
            match command {
                CheckpointsCmd::List { file, args } => {
                    print!("{}", sluice::checkpoints::list(&args.options(&file))?)
                }
                CheckpointsCmd::Inspect { file, epoch, args } => {
                    print!(
                        "{}",
                        sluice::checkpoints::inspect(&args.options(&file), &epoch)?
                    )
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { file } => {
            let sql = read(&file)?;
            match sluice::plan(&sql) {
                Ok(g) => {
                    print!("{}", g.explain());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(sql_error(&file, &sql, &e)),
            }
        }
    }
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Prints a refusal the way compilers do: where, why, and the line with a caret.
fn sql_error(file: &Path, sql: &str, e: &SqlError) -> ExitCode {
    match e.position() {
        Some(p) => {
            eprintln!(
                "error: {}:{}:{}: {}",
                file.display(),
                p.line,
                p.column,
                message(e)
            );
            if let Some(text) = sql.lines().nth(p.line.saturating_sub(1) as usize) {
                eprintln!("  {text}");
                eprintln!("  {}^", " ".repeat(p.column.saturating_sub(1) as usize));
            }
        }
        None => eprintln!("error: {}: {}", file.display(), message(e)),
    }
    ExitCode::from(2)
}

fn message(e: &SqlError) -> String {
    match e {
        SqlError::Syntax { message, .. } => format!("syntax error: {message}"),
        SqlError::Refused { message, .. } => message.clone(),
        SqlError::Internal(m) => format!("internal planner error: {m}"),
    }
}
