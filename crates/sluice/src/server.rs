//! The job server's [`Launcher`]: plans submitted jobs under the server's rules with this
//! build's connectors and runs them with the engine, each with its checkpoints under
//! the server's directory.

use std::time::Duration;

use sluice_connectors::ConnectorError;
use sluice_runtime::{JobOutcome, RuntimeError};
use sluice_server::catalog::Definitions;
use sluice_server::{JobFailure, Launcher, Restore, Running, SqlProblem, StartRequest};
use sluice_sql::SqlError;
use sluice_types::{ErrorKind, JobRules, redact_secrets};

use crate::checkpoints::{self, AlreadyFinished, CheckpointOptions};
use crate::engine::{JobRun, RunOptions};

/// Starts jobs for `sluice serve`.
#[derive(Debug, Clone, Default)]
pub struct EngineLauncher {
    /// Overrides the jobs' `SET parallelism` when set.
    pub parallelism: Option<usize>,
    /// Overrides the jobs' `SET checkpoint_interval` when set.
    pub checkpoint_interval: Option<Duration>,
    /// What a submitted job may touch.
    pub rules: JobRules,
    /// Runs every job as a distributed worker with this shared store (a directory every
    /// server reaches, or `s3://…`): the same job submitted to several servers shares
    /// its tasks among them.
    pub distributed: Option<String>,
}

/// A planner refusal as one sentence (without the position).
pub fn sql_message(e: &SqlError) -> String {
    match e {
        SqlError::Syntax { message, .. } => format!("syntax error: {message}"),
        SqlError::Refused { message, .. } => message.clone(),
        SqlError::Internal(m) => format!("internal planner error: {m}"),
        SqlError::InCatalog { file, error } => format!("in {file}: {}", sql_message(error)),
    }
}

fn problem(e: &SqlError) -> SqlProblem {
    let p = e.position();
    SqlProblem {
        message: redact_secrets(&sql_message(e)),
        line: p.map(|p| p.line),
        column: p.map(|p| p.column),
    }
}

/// Who has to act on a failure to start or run: only what lies outside Sluice (a broker,
/// a database, a file system) is worth a restart.
fn failure(e: &anyhow::Error) -> JobFailure {
    let kind = if let Some(r) = e.downcast_ref::<RuntimeError>() {
        r.kind()
    } else if let Some(c) = e.downcast_ref::<ConnectorError>() {
        c.kind()
    } else if let Some(s) = e.downcast_ref::<sluice_state::StateError>() {
        s.kind()
    } else {
        ErrorKind::External
    };
    JobFailure::new(kind, redact_secrets(&format!("{e:#}")))
}

/// The table catalog's files as the planner takes them.
fn catalog_files(tables: &[Definitions]) -> Vec<sluice_sql::CatalogFile> {
    tables
        .iter()
        .map(|t| sluice_sql::CatalogFile {
            name: t.name.clone(),
            sql: t.sql.clone(),
        })
        .collect()
}

impl EngineLauncher {
    fn plan(&self, sql: &str, tables: &[Definitions]) -> Result<sluice_sql::JobGraph, SqlError> {
        sluice_sql::plan_job_with_catalog(
            sql,
            &catalog_files(tables),
            &sluice_connectors::Catalog,
            &sluice_sql::env::process_env,
            &self.rules,
        )
    }
}

impl Launcher for EngineLauncher {
    fn validate(&self, sql: &str, tables: &[Definitions]) -> Result<String, SqlProblem> {
        self.plan(sql, tables)
            .map(|g| g.explain())
            .map_err(|e| problem(&e))
    }

    fn check_tables(&self, file: &Definitions) -> Result<Vec<String>, SqlProblem> {
        sluice_sql::check_catalog(
            &catalog_files(std::slice::from_ref(file)),
            &sluice_connectors::Catalog,
            &sluice_sql::env::process_env,
            &self.rules,
        )
        .map_err(|e| problem(&e))
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Running, JobFailure> {
        let graph = self.plan(request.sql, request.tables).map_err(|e| {
            let p = problem(&e);
            let message = match (p.line, p.column) {
                (Some(l), Some(c)) => format!("line {l}, column {c}: {}", p.message),
                _ => p.message,
            };
            JobFailure::new(e.kind(), message)
        })?;
        let mut options = RunOptions::default();
        if let Some(p) = self
            .parallelism
            .or_else(|| graph.setting("parallelism").and_then(|p| p.parse().ok()))
        {
            options.parallelism = p.max(1);
        }
        options.checkpoint_interval = self.checkpoint_interval;
        let mut cp = CheckpointOptions::new(request.checkpoint_dir, request.name);
        cp.restore = match request.restore {
            Restore::Newest => checkpoints::Restore::Newest,
            Restore::Fresh => checkpoints::Restore::Fresh,
            Restore::Chosen(c) => checkpoints::Restore::Chosen(c.clone()),
        };
        options.name = request.name.to_string();
        if let Some(store) = &self.distributed {
            // A submission joins the job's other workers: each task restores its
            // newest checkpoint in the shared store, whoever wrote it.
            if matches!(request.restore, Restore::Chosen(_)) {
                return Err(JobFailure::new(
                    ErrorKind::User,
                    "a distributed job restores each task's newest checkpoint, not a chosen one",
                ));
            }
            cp.dir = store.into();
            options.checkpoints = Some(cp);
            let handle = request.handle.clone();
            return Ok(Running {
                handle: request.handle.clone(),
                run: Box::new(move || {
                    crate::distributed::run_worker_under(&graph, &options, &handle)
                        .map_err(|e| failure(&e))
                }),
            });
        }
        options.checkpoints = Some(cp);
        let run = JobRun::build_with(&graph, &options, request.handle.clone(), &|_| None)
            .map_err(|e| failure(&e))?;
        let job = request.name.to_string();
        Ok(Running {
            handle: run.handle.clone(),
            run: Box::new(move || match run.run_typed() {
                Ok(JobOutcome::AlreadyFinished { epoch, rows_out }) => {
                    // Nothing to do: the job ends at once, as finished.
                    let done = AlreadyFinished {
                        job,
                        epoch,
                        rows_out,
                    };
                    tracing::info!("{done}");
                    Ok(())
                }
                Ok(JobOutcome::Ran) => Ok(()),
                Err(e) => Err(JobFailure::new(e.kind(), redact_secrets(&e.to_string()))),
            }),
        })
    }
}

/// A server reachable from other machines runs whatever anyone sends it: it must ask for
/// a token, unless told plainly not to.
pub fn check_listen(listen: &str, has_token: bool, insecure: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::net::ToSocketAddrs;
    if has_token || insecure {
        return Ok(());
    }
    let addrs: Vec<std::net::SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: not an address"))?
        .collect();
    if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to listen on {open} without --auth-token: anyone who reaches it could run jobs on this machine. Give --auth-token (or SLUICE_AUTH_TOKEN), listen on 127.0.0.1, or pass --insecure-no-auth"
        );
    }
    Ok(())
}
