//! Sluice's SQL front end: parses a job file (Flink-style DDL, `SET`, and
//! `INSERT INTO … SELECT …` with TUMBLE/HOP/SESSION windows in FROM) and plans each
//! statement through DataFusion into a streaming [`JobGraph`]. SQL that cannot run as a
//! stream is refused here, with its line and column, before anything starts.

mod ddl;
pub mod env;
mod error;
mod functions;
mod graph;
mod interval;
mod plan;
mod rules;
mod scan;
mod statements;
mod window;

pub use ddl::{ColumnDef, SetDef, TIMESTAMP_TYPE, TableDef, WatermarkDef};
pub use error::{Result, SqlError};
pub use graph::{EventTime, InsertInfo, JobGraph, SinkTable, SourceTable};
pub use interval::parse_interval_text;
pub use plan::{
    CatalogFile, SETTINGS, check_catalog, plan_job, plan_job_with_catalog, plan_job_with_rules,
};
pub use rules::resolve_path;
