//! Glue between the planner and the runtime: a [`JobGraph`] becomes a [`JobSpec`] with
//! real connectors, and runs.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoints::CheckpointOptions;

use anyhow::{Context, Result, anyhow};
use sluice_connectors::shuffle::source::{ShuffleRead, ShuffleSource};
use sluice_connectors::{Catalog, build_lookup, build_sink, build_source};
use sluice_runtime::{
    JobHandle, JobOutcome, JobSpec, LookupSpec, Producer, Sink, SinkSpec, SourceSpec, Step,
};
use sluice_sql::{JobGraph, SinkTable, SourceTable, SqlError};
use sluice_types::JobRules;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub parallelism: usize,
    pub channel_capacity: usize,
    /// How often barriers run (sinks commit at each; checkpoints are written when
    /// `checkpoints` is set). `SET checkpoint_interval` in the job overrides the default.
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go and which one to restore; `None` keeps none.
    pub checkpoints: Option<CheckpointOptions>,
    /// The job's name (for checkpoints and sinks' progress rows).
    pub name: String,
    /// A distributed task after a shuffle: a Kafka table named here reads this
    /// partition of its shuffle topic instead of its own topic.
    pub shuffle: std::collections::BTreeMap<String, ShuffleRead>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            channel_capacity: 16,
            checkpoint_interval: None,
            checkpoints: None,
            name: "job".to_string(),
            shuffle: Default::default(),
        }
    }
}

/// The default time between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Plans a job's SQL with this build's connectors and the process environment.
pub fn plan(sql: &str) -> Result<JobGraph, SqlError> {
    sluice_sql::plan_job(sql, &Catalog, &sluice_sql::env::process_env)
}

/// Plans a job with the tables and views of catalog files (`sluice run --catalog`).
pub fn plan_with_catalog(
    sql: &str,
    catalog_files: &[sluice_sql::CatalogFile],
) -> Result<JobGraph, SqlError> {
    plan_with_catalog_env(sql, catalog_files, &sluice_sql::env::process_env)
}

/// Plans a job with catalog files and a given environment lookup.
pub fn plan_with_catalog_env(
    sql: &str,
    catalog_files: &[sluice_sql::CatalogFile],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobGraph, SqlError> {
    sluice_sql::plan_job_with_catalog(sql, catalog_files, &Catalog, env, &JobRules::trusted())
}

/// Plans with a given environment lookup.
pub fn plan_with_env(
    sql: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobGraph, SqlError> {
    sluice_sql::plan_job(sql, &Catalog, env)
}

/// Plans a job under `rules` (a submitted job under the server's).
pub fn plan_with_rules(
    sql: &str,
    env: &dyn Fn(&str) -> Option<String>,
    rules: &JobRules,
) -> Result<JobGraph, SqlError> {
    sluice_sql::plan_job_with_rules(sql, &Catalog, env, rules)
}

/// How long a table's partition may go without records before it no longer holds the
/// watermark back (`idle_timeout`, 30 s unless set).
pub fn idle_timeout(s: &SourceTable) -> Result<Duration> {
    let ms = match s.def.options.get("idle_timeout") {
        Some(v) => sluice_sql::parse_interval_text(v)
            .map_err(|e| anyhow!("table {}: idle_timeout: {e}", s.def.name))?,
        None => 30_000,
    };
    Ok(Duration::from_millis(ms.max(0) as u64))
}

/// A job being built to run.
pub struct JobRun {
    pub spec: JobSpec,
    pub handle: JobHandle,
}

impl JobRun {
    /// Opens the job's sources and sinks.
    pub fn build(graph: &JobGraph, options: &RunOptions) -> Result<Self> {
        Self::build_with(graph, options, JobHandle::new(), &|_| None)
    }

    /// Like [`JobRun::build`], with `sink_for` choosing a sink for a table first (the demo
    /// sends every result to its display this way).
    pub fn build_with_sinks(
        graph: &JobGraph,
        options: &RunOptions,
        sink_for: &dyn Fn(&SinkTable) -> Option<Box<dyn Sink>>,
    ) -> Result<Self> {
        Self::build_with(graph, options, JobHandle::new(), sink_for)
    }

    /// Builds the job under a handle made beforehand: a stop raised while the sources and
    /// sinks are still connecting ends their waits.
    pub fn build_with(
        graph: &JobGraph,
        options: &RunOptions,
        handle: JobHandle,
        sink_for: &dyn Fn(&SinkTable) -> Option<Box<dyn Sink>>,
    ) -> Result<Self> {
        // Which checkpoint to restore is settled first: a finished job opens nothing.
        let from_job = match graph.setting("checkpoint_interval") {
            Some(v) => Some(Duration::from_millis(
                sluice_sql::parse_interval_text(v)
                    .map_err(|e| anyhow!("checkpoint_interval: {e}"))?
                    .max(10) as u64,
            )),
            None => None,
        };
        let interval = options
            .checkpoint_interval
            .or(from_job)
            .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
        let checkpoint =
            crate::checkpoints::settings(options.checkpoints.as_ref(), interval, &graph.sql)?;
        for note in &graph.notes {
            tracing::warn!("{note}");
        }
        let interrupt = handle.interrupt();
        let mut sources = Vec::new();
        for s in &graph.sources {
            let mut idle_timeout = idle_timeout(s)?;
            let source = match options.shuffle.get(&s.def.name) {
                Some(read) if s.def.options.connector() == Some("kafka") => {
                    // Idle only when the partition's writer says so.
                    idle_timeout = Duration::MAX;
                    Box::new(ShuffleSource::open(
                        &s.def.name,
                        &s.def.options,
                        s.schema.clone(),
                        read.clone(),
                    )?)
                }
                _ => build_source(
                    &s.def.name,
                    &s.def.options,
                    s.schema.clone(),
                    handle.metrics.clone(),
                    &interrupt,
                )?,
            };
            sources.push(SourceSpec {
                name: s.def.name.clone(),
                definition: sluice_connectors::identity(&s.def.options),
                source,
                event_time: s.event_time.map(|e| (e.column, e.delay_ms)),
                idle_timeout,
            });
        }
        let mut sinks = Vec::new();
        for s in &graph.sinks {
            let sink = match sink_for(s) {
                Some(sink) => sink,
                None => build_sink(&s.def.name, &s.def.options, s.rows_schema(), &interrupt)?,
            };
            sinks.push(SinkSpec {
                name: s.def.name.clone(),
                schema: s.rows_schema(),
                definition: sluice_connectors::identity(&s.def.options),
                sink,
            });
        }
        let mut lookups = Vec::new();
        for l in &graph.lookups {
            lookups.push(LookupSpec {
                name: l.def.name.clone(),
                definition: sluice_connectors::identity(&l.def.options),
                factory: build_lookup(&l.def.name, &l.def.options, l.schema.clone(), &interrupt)?,
            });
        }
        // Lateness is judged per row where the source has one partition (exact, and
        // independent of how its input was cut into batches).
        let mut edges = graph.edges.clone();
        for e in &mut edges {
            if let Producer::Source(si) = e.from
                && let Some(Step::Assign(a)) = e.steps.first_mut()
            {
                a.per_row_lateness = sources[si].source.partitions() == 1;
            }
        }
        Ok(JobRun {
            spec: JobSpec {
                name: options
                    .checkpoints
                    .as_ref()
                    .map_or_else(|| options.name.clone(), |c| c.job.clone()),
                sources,
                sinks,
                nodes: graph.nodes.clone(),
                edges,
                lookups,
                parallelism: options.parallelism,
                channel_capacity: options.channel_capacity,
                checkpoint,
            },
            handle,
        })
    }

    /// Runs to the end (or until the handle is stopped).
    pub fn run(self) -> Result<()> {
        self.run_typed().map(|_| ()).map_err(|e| anyhow!(e))
    }

    /// Runs to the end; says whether there was anything to do, and an error says who
    /// has to act on it.
    pub fn run_typed(self) -> Result<JobOutcome, sluice_runtime::RuntimeError> {
        sluice_runtime::run_job(self.spec, &self.handle)
    }
}

/// Plans and runs `sql` to the end; returns the job's final metrics.
pub fn run_sql(sql: &str, options: &RunOptions) -> Result<sluice_runtime::MetricsSnapshot> {
    let graph = plan(sql).map_err(|e| anyhow!(e))?;
    let run = JobRun::build(&graph, options).context("starting the job")?;
    let metrics = Arc::clone(&run.handle.metrics);
    run.run()?;
    Ok(metrics.snapshot())
}
