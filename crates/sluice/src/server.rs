//! The job server's [`Launcher`]: plans jobs with this build's connectors and runs them
//! with the engine, each with its checkpoints under the server's directory.

use std::time::Duration;

use sluice_server::{Launcher, Restore, Running, SqlProblem, StartRequest};
use sluice_sql::SqlError;

use crate::checkpoints::{self, CheckpointOptions};
use crate::engine::{JobRun, RunOptions};

/// Starts jobs for `sluice serve`.
#[derive(Debug, Clone, Default)]
pub struct EngineLauncher {
    /// Overrides the jobs' `SET parallelism` when set.
    pub parallelism: Option<usize>,
    /// Overrides the jobs' `SET checkpoint_interval` when set.
    pub checkpoint_interval: Option<Duration>,
}

/// A planner refusal as one sentence (without the position).
pub fn sql_message(e: &SqlError) -> String {
    match e {
        SqlError::Syntax { message, .. } => format!("syntax error: {message}"),
        SqlError::Refused { message, .. } => message.clone(),
        SqlError::Internal(m) => format!("internal planner error: {m}"),
    }
}

fn problem(e: &SqlError) -> SqlProblem {
    let p = e.position();
    SqlProblem {
        message: sql_message(e),
        line: p.map(|p| p.line),
        column: p.map(|p| p.column),
    }
}

impl Launcher for EngineLauncher {
    fn validate(&self, sql: &str) -> Result<String, SqlProblem> {
        crate::plan(sql)
            .map(|g| g.explain())
            .map_err(|e| problem(&e))
    }

    fn start(&self, request: StartRequest<'_>) -> Result<Running, String> {
        let graph = crate::plan(request.sql).map_err(|e| {
            let p = problem(&e);
            match (p.line, p.column) {
                (Some(l), Some(c)) => format!("line {l}, column {c}: {}", p.message),
                _ => p.message,
            }
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
        options.checkpoints = Some(cp);
        let run = JobRun::build(&graph, &options).map_err(|e| format!("{e:#}"))?;
        Ok(Running {
            handle: run.handle.clone(),
            run: Box::new(move || run.run().map_err(|e| format!("{e:#}"))),
        })
    }
}
