//! The `sluice` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice::checkpoints::{AlreadyFinished, CheckpointOptions, Restore, job_name};
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
        /// A file of CREATE TABLE / CREATE VIEW statements the job may use (repeatable).
        #[arg(long = "catalog")]
        catalogs: Vec<PathBuf>,
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
        /// Run as one of several workers of the job: workers find each other through
        /// the shared --checkpoint-dir (a directory every worker reaches, or s3://) and
        /// share the topics' partitions out, one task each.
        #[arg(long, conflicts_with_all = ["fresh", "from_checkpoint"])]
        distributed: bool,
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
    /// Write generated events (profile iot, factory, race or user-activity), or this machine's
    /// usage (host-metrics, as an agent), as JSON to a Kafka topic.
    Generate(Box<GenerateCmd>),
    /// Print the streaming plan of a job, or why it cannot run.
    Explain {
        /// The job's SQL file.
        file: PathBuf,
        /// A file of CREATE TABLE / CREATE VIEW statements the job may use (repeatable).
        #[arg(long = "catalog")]
        catalogs: Vec<PathBuf>,
    },
    /// Run the job server: jobs submitted over HTTP, a REST API, Prometheus metrics.
    Serve(Box<ServeCmd>),
    /// Submit a job to the server; prints its id.
    Submit {
        /// The job's SQL file.
        file: PathBuf,
        /// The job's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// Start from a checkpoint of a job of this name: newest, an epoch, or a
        /// directory (default: start fresh).
        #[arg(long)]
        from_checkpoint: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The server's table catalog: files of CREATE TABLE / CREATE VIEW statements that
    /// submitted jobs may use.
    Catalog {
        #[command(subcommand)]
        command: CatalogCmd,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the server's jobs.
    Jobs {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One job in detail: per-task, per-sink and per-partition figures.
    Job {
        /// The job's name or id.
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job after a final checkpoint.
    Stop {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a stopped, failed or cancelled job again.
    Resume {
        job: String,
        /// newest (the default), an epoch, a checkpoint directory, or fresh.
        #[arg(long)]
        from_checkpoint: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job at once, without a final checkpoint.
    Cancel {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a job that is not running (its checkpoints stay on disk).
    Delete {
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// The Sluice server.
    #[arg(
        long,
        global = true,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token, when the server wants one.
    #[arg(long, global = true, env = "SLUICE_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> sluice::client::Client {
        sluice::client::Client::new(&self.server, self.auth_token.clone())
    }
}

#[derive(clap::Args)]
struct ServeCmd {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SLUICE_LISTEN")]
    listen: String,
    /// Where jobs' checkpoints and the job catalog live.
    #[arg(long, default_value = "checkpoints", env = "SLUICE_CHECKPOINT_DIR")]
    checkpoint_dir: PathBuf,
    /// Require this bearer token on every request.
    #[arg(long, env = "SLUICE_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Restarts in a row after failures before a job is marked failed.
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// Pause before the first restart; doubles each time, up to a minute.
    #[arg(long, default_value = "1s")]
    restart_backoff: String,
    /// Tasks per windowed aggregate for every job (default: the job's SET parallelism,
    /// else the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Time between checkpoints for every job (default: the job's SET
    /// checkpoint_interval, else 10s).
    #[arg(long)]
    checkpoint_interval: Option<String>,
    /// Every file a submitted job reads or writes (sources, sinks, dead letters) must lie
    /// inside this directory; relative paths are taken from it.
    #[arg(long, default_value = "data", env = "SLUICE_DATA_DIR")]
    data_dir: PathBuf,
    /// Environment variables a submitted job may name with ${VAR}, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "KAFKA_BROKERS,DATABASE_URL",
        env = "SLUICE_ALLOW_ENV"
    )]
    allow_env: Vec<String>,
    /// Listen on a non-loopback address without --auth-token (anyone who reaches the
    /// port can then run jobs).
    #[arg(long)]
    insecure_no_auth: bool,
    /// A row may belong to at most this many windows (HOP size / slide).
    #[arg(long, default_value_t = sluice_types::DEFAULT_MAX_WINDOWS_PER_ROW)]
    max_windows_per_row: u64,
    /// A job that ran this long before failing starts its restart count again.
    #[arg(long, default_value = "10 minutes")]
    restart_healthy_after: String,
    /// Run every job as a distributed worker whose tasks, checkpoints and beats are in
    /// this shared store (a directory every server reaches, or s3://bucket/prefix).
    #[arg(long, value_name = "SHARED_STORE")]
    distributed: Option<String>,
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
enum CatalogCmd {
    /// Add (or replace) a file of definitions, named NAME in the catalog.
    Add { name: String, file: PathBuf },
    /// The catalog's files and what each declares.
    List,
    /// Remove a file of definitions.
    Drop { name: String },
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
    /// iot, factory, race, user-activity or host-metrics.
    profile: String,
    #[arg(long, default_value = "localhost:9092", env = "KAFKA_BROKERS")]
    brokers: String,
    /// Default: iot_sensors, factory_readings, race_positions, user_activity or host_metrics.
    #[arg(long)]
    topic: Option<String>,
    /// Events per second (0: as fast as possible).
    #[arg(long)]
    rate: Option<String>,
    /// Sensors, machines or users.
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
    /// Share of events that re-send one of the last few (as an at-least-once producer).
    #[arg(long)]
    duplicate_fraction: Option<String>,
    /// Share of factory readings that are faults (above their warning level).
    #[arg(long)]
    anomaly_fraction: Option<String>,
    /// host-metrics: time between samples (default 5s).
    #[arg(long)]
    interval: Option<String>,
    /// host-metrics: the host's name in the samples (default: this machine's).
    #[arg(long)]
    host: Option<String>,
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
            catalogs,
            parallelism,
            checkpoints,
            checkpoint_interval,
            from_checkpoint,
            fresh,
            distributed,
        } => {
            let sql = read(&file)?;
            let defs = catalog_files(&catalogs)?;
            let graph = match sluice::plan_with_catalog(&sql, &defs) {
                Ok(g) => g,
                Err(e) => return Ok(sql_error(&file, &sql, &defs, &e)),
            };
            let mut options = RunOptions::default();
            // The command line wins over `SET parallelism` in the job, which wins over
            // the default (the number of cores).
            let from_job = graph.setting("parallelism").and_then(|p| p.parse().ok());
            if let Some(p) = parallelism.or(from_job) {
                options.parallelism = p.max(1);
            }
            if let Some(i) = checkpoint_interval {
                options.checkpoint_interval = Some(checkpoint_interval_flag(&i)?);
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
            if distributed {
                sluice::distributed::run_worker_until_interrupted(&graph, &options)?;
                return Ok(ExitCode::SUCCESS);
            }
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
            let result = run.run_typed();
            let status = progress.finish();
            if let Ok(sluice_runtime::JobOutcome::AlreadyFinished { epoch, rows_out }) = result {
                eprintln!(
                    "{}",
                    AlreadyFinished {
                        job: options.name.clone(),
                        epoch,
                        rows_out
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("{status}");
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
                duplicate_fraction,
                anomaly_fraction,
                interval,
                host,
                limit,
                start_time,
                partitions,
            } = *cmd;
            let topic = topic.unwrap_or_else(|| match profile.as_str() {
                "iot" => "iot_sensors".into(),
                "factory" => "factory_readings".into(),
                "race" => "race_positions".into(),
                "host-metrics" | "host_metrics" => "host_metrics".into(),
                _ => "user_activity".into(),
            });
            let options = [
                ("rate", rate),
                ("keys", keys),
                ("seed", seed),
                ("speedup", speedup),
                ("disorder", disorder),
                ("late_fraction", late_fraction),
                ("duplicate_fraction", duplicate_fraction),
                ("anomaly_fraction", anomaly_fraction),
                ("interval", interval),
                ("host", host),
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
        Command::Serve(cmd) => serve(*cmd),
        Command::Submit {
            file,
            name,
            from_checkpoint,
            server,
        } => {
            let sql = read(&file)?;
            let name = name.unwrap_or_else(|| job_name(&file));
            let mut body = serde_json::json!({ "name": name, "sql": sql });
            if let Some(c) = from_checkpoint {
                body["from_checkpoint"] = c.into();
            }
            match server.client().call("POST", "/api/v1/jobs", Some(&body)) {
                Ok(job) => {
                    println!("{}", job["id"].as_str().unwrap_or_default());
                    eprintln!("submitted {name}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, Some((&file, &sql))),
            }
        }
        Command::Catalog { command, server } => {
            let client = server.client();
            match command {
                CatalogCmd::Add { name, file } => {
                    let sql = read(&file)?;
                    let body = serde_json::json!({ "name": name, "sql": sql });
                    match client.call("POST", "/api/v1/catalog", Some(&body)) {
                        Ok(v) => {
                            let names: Vec<&str> = v["declares"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
                                .unwrap_or_default();
                            eprintln!("added {name}: {}", names.join(", "));
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => refused(e, Some((&file, &sql))),
                    }
                }
                CatalogCmd::List => match client.call("GET", "/api/v1/catalog", None) {
                    Ok(v) => {
                        for f in v.as_array().into_iter().flatten() {
                            println!("-- {}", f["name"].as_str().unwrap_or_default());
                            println!("{}", f["sql"].as_str().unwrap_or_default().trim_end());
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => refused(e, None),
                },
                CatalogCmd::Drop { name } => {
                    match client.call("DELETE", &format!("/api/v1/catalog/{name}"), None) {
                        Ok(_) => {
                            eprintln!("dropped {name}");
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => refused(e, None),
                    }
                }
            }
        }
        Command::Jobs { server } => match server.client().call("GET", "/api/v1/jobs", None) {
            Ok(jobs) => {
                print!("{}", sluice::client::jobs_table(&jobs));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e, None),
        },
        Command::Job { job, server } => {
            match server
                .client()
                .call("GET", &format!("/api/v1/jobs/{job}"), None)
            {
                Ok(j) => {
                    print!("{}", sluice::client::job_detail(&j));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, None),
            }
        }
        Command::Stop { job, server } => lifecycle(&server, &job, "stop", None),
        Command::Cancel { job, server } => lifecycle(&server, &job, "cancel", None),
        Command::Resume {
            job,
            from_checkpoint,
            server,
        } => {
            let body = from_checkpoint.map(|c| serde_json::json!({ "from_checkpoint": c }));
            lifecycle(&server, &job, "resume", body)
        }
        Command::Delete { job, server } => {
            match server
                .client()
                .call("DELETE", &format!("/api/v1/jobs/{job}"), None)
            {
                Ok(_) => {
                    eprintln!("deleted {job}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, None),
            }
        }
        Command::Explain { file, catalogs } => {
            let sql = read(&file)?;
            let defs = catalog_files(&catalogs)?;
            match sluice::plan_with_catalog(&sql, &defs) {
                Ok(g) => {
                    print!("{}", g.explain());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(sql_error(&file, &sql, &defs, &e)),
            }
        }
    }
}

/// stop, cancel, resume: prints the job's new state.
fn lifecycle(
    server: &ServerArgs,
    job: &str,
    verb: &str,
    body: Option<serde_json::Value>,
) -> Result<ExitCode> {
    match server
        .client()
        .call("POST", &format!("/api/v1/jobs/{job}/{verb}"), body.as_ref())
    {
        Ok(j) => {
            eprintln!("{job}: {}", j["state"].as_str().unwrap_or("-"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e, None),
    }
}

/// A refusal from the server (SQL errors shown against the file), or an error reaching it.
fn refused(e: anyhow::Error, file: Option<(&Path, &str)>) -> Result<ExitCode> {
    let Some(r) = e.downcast_ref::<sluice::client::Refusal>() else {
        return Err(e);
    };
    let msg = r.body["error"].as_str().unwrap_or("no message");
    match (file, r.body["line"].as_u64(), r.body["column"].as_u64()) {
        (Some((file, sql)), Some(line), Some(col)) => {
            eprintln!("error: {}:{line}:{col}: {msg}", file.display());
            if let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) {
                eprintln!("  {text}");
                eprintln!("  {}^", " ".repeat(col.saturating_sub(1) as usize));
            }
            Ok(ExitCode::from(2))
        }
        _ => {
            eprintln!("error: {msg} ({})", r.status);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--checkpoint-interval`: a duration, at least 10 ms.
fn checkpoint_interval_flag(text: &str) -> Result<std::time::Duration> {
    let ms = sluice_sql::parse_interval_text(text)
        .map_err(|e| anyhow::anyhow!("--checkpoint-interval {text}: {e}"))?;
    Ok(std::time::Duration::from_millis(ms.max(10) as u64))
}

fn serve(cmd: ServeCmd) -> Result<ExitCode> {
    let backoff = sluice_sql::parse_interval_text(&cmd.restart_backoff)
        .map_err(|e| anyhow::anyhow!("--restart-backoff {}: {e}", cmd.restart_backoff))?;
    let healthy_after =
        sluice_sql::parse_interval_text(&cmd.restart_healthy_after).map_err(|e| {
            anyhow::anyhow!("--restart-healthy-after {}: {e}", cmd.restart_healthy_after)
        })?;
    sluice::server::check_listen(&cmd.listen, cmd.auth_token.is_some(), cmd.insecure_no_auth)?;
    std::fs::create_dir_all(&cmd.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", cmd.data_dir.display()))?;
    let mut rules = sluice_types::JobRules::submitted(
        cmd.data_dir.clone(),
        cmd.allow_env
            .iter()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    );
    rules.max_windows_per_row = cmd.max_windows_per_row.max(1);
    let checkpoint_interval = match &cmd.checkpoint_interval {
        Some(i) => Some(checkpoint_interval_flag(i)?),
        None => None,
    };
    let launcher = sluice::server::EngineLauncher {
        parallelism: cmd.parallelism,
        checkpoint_interval,
        rules,
        distributed: cmd.distributed.clone(),
    };
    let policy = sluice_server::RestartPolicy {
        max_restarts: cmd.max_restarts,
        first_backoff: std::time::Duration::from_millis(backoff.max(1) as u64),
        max_backoff: std::time::Duration::from_secs(60),
        healthy_after: std::time::Duration::from_millis(healthy_after.max(0) as u64),
    };
    let manager = sluice_server::Manager::open(Box::new(launcher), &cmd.checkpoint_dir, policy)?;
    let config = sluice_server::ServerConfig {
        manager: manager.clone(),
        token: cmd.auth_token.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&cmd.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cmd.listen))?;
        eprintln!(
            "sluice server on http://{} (jobs and checkpoints in {}{})",
            listener.local_addr()?,
            cmd.checkpoint_dir.display(),
            if cmd.auth_token.is_some() {
                "; a bearer token is required"
            } else {
                ""
            }
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        };
        sluice_server::serve(listener, config, shutdown)
            .await
            .context("serving")
    })?;
    eprintln!(
        "stopping the jobs with a final checkpoint; they resume when the server starts again"
    );
    manager.shutdown(std::time::Duration::from_secs(60));
    Ok(ExitCode::SUCCESS)
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// The catalog files named with `--catalog`, read.
fn catalog_files(paths: &[PathBuf]) -> Result<Vec<sluice_sql::CatalogFile>> {
    paths
        .iter()
        .map(|p| {
            Ok(sluice_sql::CatalogFile {
                name: p.display().to_string(),
                sql: read(p)?,
            })
        })
        .collect()
}

/// Prints a refusal the way compilers do: where, why, and the line with a caret (in the
/// catalog file the refusal is in, if it is in one).
fn sql_error(file: &Path, sql: &str, defs: &[sluice_sql::CatalogFile], e: &SqlError) -> ExitCode {
    let (file, sql) = match e.file().and_then(|f| defs.iter().find(|d| d.name == f)) {
        Some(d) => (Path::new(&d.name), d.sql.as_str()),
        None => (file, sql),
    };
    let e = e.innermost();
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
    sluice::server::sql_message(e)
}
