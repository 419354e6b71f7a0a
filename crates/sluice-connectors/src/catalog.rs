//! Which connectors exist, what options each takes, and building them.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use sluice_runtime::{JobMetrics, Sink, Source};
use sluice_types::{ConnectorCatalog, ConnectorOptions, OptionProblem, TableRole};

use crate::blackhole::BlackholeSink;
use crate::console::ConsoleSink;
use crate::error::ConnectorError;
use crate::file_sink::{FileFormat, FileSink};
use crate::file_source::{BadData, FileSource};
use crate::generator::{GeneratorOptions, GeneratorSource};
use crate::kafka::KafkaSource;
use crate::kafka_sink::KafkaSink;

struct Spec {
    name: &'static str,
    source_options: Option<&'static [&'static str]>,
    sink_options: Option<&'static [&'static str]>,
}

const CONNECTORS: &[Spec] = &[
    Spec {
        name: "file",
        source_options: Some(&[
            "path",
            "format",
            "batch_size",
            "bad_data",
            "dead_letter.path",
        ]),
        sink_options: Some(&["path", "format"]),
    },
    Spec {
        name: "kafka",
        source_options: Some(crate::kafka::SOURCE_OPTIONS),
        sink_options: Some(crate::kafka::SINK_OPTIONS),
    },
    Spec {
        name: "generator",
        source_options: Some(crate::generator::OPTIONS),
        sink_options: None,
    },
    Spec {
        name: "postgres",
        source_options: None,
        sink_options: Some(crate::postgres::SINK_OPTIONS),
    },
    Spec {
        name: "console",
        source_options: None,
        sink_options: Some(&[]),
    },
    Spec {
        name: "blackhole",
        source_options: None,
        sink_options: Some(&[]),
    },
];

/// The connectors of this build.
#[derive(Debug, Default, Clone, Copy)]
pub struct Catalog;

impl ConnectorCatalog for Catalog {
    fn check(
        &self,
        role: TableRole,
        has_columns: bool,
        options: &ConnectorOptions,
    ) -> Result<(), OptionProblem> {
        let name = options.connector().unwrap_or_default();
        let Some(spec) = CONNECTORS.iter().find(|c| c.name == name) else {
            let known: Vec<&str> = CONNECTORS.iter().map(|c| c.name).collect();
            return Err(OptionProblem::new(
                Some("connector"),
                format!(
                    "unknown connector '{name}' (this build has: {})",
                    known.join(", ")
                ),
            ));
        };
        let allowed = match role {
            TableRole::Source => spec.source_options,
            TableRole::Sink => spec.sink_options,
        };
        let Some(allowed) = allowed else {
            let what = match role {
                TableRole::Source => "read from",
                TableRole::Sink => "written to",
            };
            return Err(OptionProblem::new(
                Some("connector"),
                format!("connector '{name}' cannot be {what}"),
            ));
        };
        for key in options.keys() {
            let passthrough = name == "kafka" && key.starts_with("properties.");
            if key != "connector" && !passthrough && !allowed.contains(&key) {
                let mut list: Vec<&str> = allowed.to_vec();
                list.sort();
                return Err(OptionProblem::new(
                    Some(key),
                    format!(
                        "unknown option '{key}' for connector '{name}' (it takes: {})",
                        if list.is_empty() {
                            "no options".to_string()
                        } else {
                            list.join(", ")
                        }
                    ),
                ));
            }
        }
        if name == "kafka" {
            match role {
                TableRole::Source => crate::kafka::check_source(options)?,
                TableRole::Sink => {
                    if options.get("topic").is_none_or(str::is_empty)
                        || options.get("bootstrap.servers").is_none_or(str::is_empty)
                    {
                        return Err(OptionProblem::new(
                            Some("connector"),
                            "a kafka table needs topic = '…' and 'bootstrap.servers' = '…'",
                        ));
                    }
                }
            }
            if let Some(f) = options.get("format").filter(|f| *f != "json") {
                return Err(OptionProblem::new(
                    Some("format"),
                    format!("format '{f}' is not supported for kafka (use 'json')"),
                ));
            }
        }
        if name == "postgres" {
            crate::postgres::check_sink(options)?;
        }
        if name == "generator" {
            if !has_columns {
                return Err(OptionProblem::new(
                    None,
                    "a generator table must declare the columns it reads",
                ));
            }
            GeneratorOptions::parse(options)?;
        }
        if name == "file" {
            if options.get("path").is_none() {
                return Err(OptionProblem::new(
                    Some("connector"),
                    "connector 'file' needs a path = '…' option",
                ));
            }
            let format = options.get("format").unwrap_or("json");
            let formats: &[&str] = match role {
                TableRole::Source => &["json"],
                TableRole::Sink => &["json", "parquet"],
            };
            if !formats.contains(&format) {
                return Err(OptionProblem::new(
                    Some("format"),
                    format!(
                        "format '{format}' is not supported here (use {})",
                        formats.join(" or ")
                    ),
                ));
            }
            if role == TableRole::Source && !has_columns {
                return Err(OptionProblem::new(
                    None,
                    "a file source must declare its columns",
                ));
            }
            if let Some(b) = options.get("batch_size")
                && b.parse::<usize>().map_or(true, |n| n == 0)
            {
                return Err(OptionProblem::new(
                    Some("batch_size"),
                    format!("batch_size must be a positive whole number, not '{b}'"),
                ));
            }
            BadData::check_options(options)?;
        }
        Ok(())
    }
}

/// Builds a source for a table.
pub fn build_source(
    table: &str,
    options: &ConnectorOptions,
    schema: SchemaRef,
    metrics: Arc<JobMetrics>,
) -> Result<Box<dyn Source>, ConnectorError> {
    match options.connector() {
        Some("file") => Ok(Box::new(FileSource::open(table, options, schema, metrics)?)),
        Some("kafka") => Ok(Box::new(KafkaSource::open(
            table, options, schema, metrics,
        )?)),
        Some("generator") => {
            let opts = GeneratorOptions::parse(options)
                .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
            Ok(Box::new(
                GeneratorSource::new(table, opts, schema).map_err(ConnectorError::Config)?,
            ))
        }
        other => Err(ConnectorError::Config(format!(
            "table {table}: connector '{}' cannot be read",
            other.unwrap_or_default()
        ))),
    }
}

/// Builds a sink for a table.
pub fn build_sink(
    table: &str,
    options: &ConnectorOptions,
    schema: SchemaRef,
) -> Result<Box<dyn Sink>, ConnectorError> {
    match options.connector() {
        Some("file") => {
            let path = options.get("path").unwrap_or_default();
            let format = match options.get("format").unwrap_or("json") {
                "parquet" => FileFormat::Parquet,
                _ => FileFormat::Json,
            };
            Ok(Box::new(FileSink::create(path.as_ref(), format, schema)?))
        }
        Some("console") => Ok(Box::new(ConsoleSink::new(table))),
        Some("kafka") => Ok(Box::new(KafkaSink::open(table, options)?)),
        Some("blackhole") => Ok(Box::new(BlackholeSink)),
        Some("postgres") => Ok(Box::new(crate::postgres::PostgresSink::open(
            table, options, schema,
        )?)),
        other => Err(ConnectorError::Config(format!(
            "table {table}: connector '{}' cannot be written",
            other.unwrap_or_default()
        ))),
    }
}
