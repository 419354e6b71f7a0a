//! Which connectors exist, what options each takes, and building them.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::datatypes::SchemaRef;
use sluice_runtime::{CommitOnCheckpoint, JobMetrics, Sink, Source};
use sluice_types::{
    ConnectorCatalog, ConnectorOptions, Interrupt, JobRules, OptionProblem, TableRole,
};

use crate::blackhole::BlackholeSink;
use crate::console::ConsoleSink;
use crate::error::ConnectorError;
use crate::file_sink::JsonFileSink;
use crate::file_source::{BadData, FileSource};
use crate::generator::{GeneratorOptions, GeneratorSource};
use crate::kafka::KafkaSource;
use crate::kafka_sink::KafkaSink;
use crate::kafka_txn_sink::TransactionalKafkaSink;
use crate::parquet_sink::ParquetSink;

struct Spec {
    name: &'static str,
    source_options: Option<&'static [&'static str]>,
    sink_options: Option<&'static [&'static str]>,
    /// Options when joined as a lookup table (read by key, not as a stream).
    lookup_options: Option<&'static [&'static str]>,
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
        sink_options: Some(&["path", "format", "changelog.mode"]),
        lookup_options: None,
    },
    Spec {
        name: "kafka",
        source_options: Some(crate::kafka::SOURCE_OPTIONS),
        sink_options: Some(crate::kafka::SINK_OPTIONS),
        lookup_options: None,
    },
    Spec {
        name: "generator",
        source_options: Some(crate::generator::OPTIONS),
        sink_options: None,
        lookup_options: None,
    },
    Spec {
        name: "host_metrics",
        source_options: Some(crate::host_metrics::OPTIONS),
        sink_options: None,
        lookup_options: None,
    },
    Spec {
        name: "nexmark",
        source_options: Some(crate::nexmark::OPTIONS),
        sink_options: None,
        lookup_options: None,
    },
    Spec {
        name: "postgres",
        source_options: None,
        sink_options: Some(crate::postgres::SINK_OPTIONS),
        lookup_options: Some(crate::postgres::LOOKUP_OPTIONS),
    },
    Spec {
        name: "console",
        source_options: None,
        sink_options: Some(&[]),
        lookup_options: None,
    },
    Spec {
        name: "blackhole",
        source_options: None,
        sink_options: Some(&[]),
        lookup_options: None,
    },
];

/// A sink's declared key must be the updating result's key (when known): one row is
/// kept per declared key, so another key would mix rows.
fn same_key(option: &str, declared: &[&str], key: Option<&[String]>) -> Result<(), String> {
    // An unknown key, or none (a single row, as a running total), takes any.
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Ok(());
    };
    let mut a: Vec<&str> = declared.to_vec();
    let mut b: Vec<&str> = key.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    if a == b {
        return Ok(());
    }
    Err(format!(
        "{option} ({}) must be the updating result's key ({}): one row is kept per {option}, so another key would mix rows",
        declared.join(", "),
        key.join(", ")
    ))
}

/// The connectors of this build.
#[derive(Debug, Default, Clone, Copy)]
pub struct Catalog;

impl ConnectorCatalog for Catalog {
    fn fixed_source_schema(&self, options: &ConnectorOptions) -> Option<sluice_types::FixedSchema> {
        match options.connector() {
            Some("generator") => {
                let o = GeneratorOptions::parse(options).ok()?;
                // Events are out of order by up to `disorder`.
                Some((
                    o.profile.schema(),
                    Some(("event_time".to_string(), o.disorder_ms)),
                ))
            }
            Some("host_metrics") => Some((
                crate::host_metrics::schema(),
                Some(("sample_time".to_string(), 1_000)),
            )),
            _ => None,
        }
    }

    fn check(
        &self,
        role: TableRole,
        has_columns: bool,
        options: &ConnectorOptions,
        rules: &JobRules,
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
            TableRole::Lookup => spec.lookup_options,
        };
        let Some(allowed) = allowed else {
            let what = match role {
                TableRole::Source => "read from",
                TableRole::Sink => "written to",
                TableRole::Lookup => "looked up",
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
        for key in ["batch_size"] {
            if let Some(b) = options.get(key)
                && b.parse::<usize>().map_or(true, |n| n == 0)
            {
                return Err(OptionProblem::new(
                    Some(key),
                    format!("{key} must be a positive whole number, not '{b}'"),
                ));
            }
        }
        if let Some(t) = options.get("idle_timeout")
            && let Err(e) = sluice_types::parse_interval_text(t)
        {
            return Err(OptionProblem::new(
                Some("idle_timeout"),
                format!("idle_timeout: {e}"),
            ));
        }
        if name == "kafka" {
            crate::kafka::check_client_properties(options, rules)?;
            match role {
                TableRole::Source | TableRole::Lookup => crate::kafka::check_source(options)?,
                TableRole::Sink => crate::kafka::check_sink(options)?,
            }
            let formats: &[&str] = match role {
                TableRole::Sink => &["json", "debezium-json"],
                _ => &["json"],
            };
            if let Some(f) = options.get("format").filter(|f| !formats.contains(f)) {
                return Err(OptionProblem::new(
                    Some("format"),
                    format!(
                        "format '{f}' is not supported here for kafka (use {})",
                        formats.join(" or ")
                    ),
                ));
            }
        }
        if name == "postgres" {
            match role {
                TableRole::Lookup => {
                    crate::postgres::check_lookup(options)?;
                    if !has_columns {
                        return Err(OptionProblem::new(
                            None,
                            "a lookup table must declare the columns it reads",
                        ));
                    }
                    if let Some(v) = options.get("lookup.cache.ttl")
                        && sluice_types::parse_interval_text(v).is_err()
                    {
                        return Err(OptionProblem::new(
                            Some("lookup.cache.ttl"),
                            format!(
                                "lookup.cache.ttl must be a duration such as '1 min', not '{v}'"
                            ),
                        ));
                    }
                }
                _ => crate::postgres::check_sink(options)?,
            }
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
        if name == "host_metrics" {
            if !has_columns {
                return Err(OptionProblem::new(
                    None,
                    "a host_metrics table must declare the columns it reads",
                ));
            }
            crate::host_metrics::HostMetricsOptions::parse(options)?;
        }
        if name == "nexmark" {
            if !has_columns {
                return Err(OptionProblem::new(
                    None,
                    "a nexmark table must declare the columns it reads",
                ));
            }
            crate::nexmark::NexmarkOptions::parse(options)?;
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
                TableRole::Source | TableRole::Lookup => &["json"],
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
            BadData::check_options(options)?;
            if let Some(m) = options.get("changelog.mode")
                && (m != "all" || format != "json")
            {
                return Err(OptionProblem::new(
                    Some("changelog.mode"),
                    format!(
                        "changelog.mode '{m}' is not supported here (a json file sink takes 'all')"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_changelog_sink(
        &self,
        options: &ConnectorOptions,
        key: Option<&[String]>,
    ) -> Result<(), String> {
        let key_hint = key.map_or(String::new(), |k| {
            format!(" (the result's key: {})", k.join(", "))
        });
        match options.connector() {
            Some("console" | "blackhole") => Ok(()),
            Some("postgres") => {
                let pk: Vec<&str> = options
                    .get("primary_key")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .collect();
                if pk.is_empty() {
                    return Err(format!(
                        "a postgres table takes an updating result only with a primary key, so that each change updates or deletes its row: add 'primary_key' = '…'{key_hint}"
                    ));
                }
                same_key("primary_key", &pk, key)
            }
            Some("file") => match (
                options.get("format").unwrap_or("json"),
                options.get("changelog.mode"),
            ) {
                ("json", Some("all")) => Ok(()),
                _ => Err(
                    "a file sink takes an updating result only as a changelog: add 'changelog.mode' = 'all' (format json; each row gets an op column: +I, -U, +U or -D)".into(),
                ),
            },
            Some("kafka") => {
                if options.get("format") == Some("debezium-json") {
                    return Ok(());
                }
                if options.get("changelog.mode") != Some("upsert") {
                    return Err(format!(
                        "a kafka topic takes an updating result with 'changelog.mode' = 'upsert' and key = '…'{key_hint} (a record per change, a tombstone per delete), or with format = 'debezium-json' (before/after envelopes)"
                    ));
                }
                let declared: Vec<&str> = options
                    .get("key")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .collect();
                same_key("key", &declared, key)
            }
            Some(other) => Err(format!(
                "a {other} sink takes only append-only results; write the updating result to a postgres table with a primary key, to a kafka topic with 'changelog.mode' = 'upsert', or to a file with 'changelog.mode' = 'all'"
            )),
            None => Err("the sink has no connector".into()),
        }
    }

    fn check_sink_columns(
        &self,
        options: &ConnectorOptions,
        schema: &Schema,
    ) -> Result<(), OptionProblem> {
        let (key, columns): (&str, Vec<&str>) = match options.connector() {
            Some("kafka") => (
                "key",
                options
                    .get("key")
                    .map(|k| k.split(',').map(str::trim).collect())
                    .unwrap_or_default(),
            ),
            Some("postgres") => (
                "primary_key",
                options
                    .get("primary_key")
                    .map(|k| k.split(',').map(str::trim).collect())
                    .unwrap_or_default(),
            ),
            _ => return Ok(()),
        };
        for c in columns {
            if schema.index_of(c).is_err() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(OptionProblem::new(
                    Some(key),
                    format!(
                        "{key} column '{c}' is not one of the columns the job writes ({})",
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn is_lookup(&self, options: &ConnectorOptions) -> bool {
        options.connector() == Some("postgres")
    }

    fn path_options(&self) -> &'static [&'static str] {
        &["path", "dead_letter.path"]
    }
}

/// What a table reads or writes, for a checkpoint's plan: the connector and the options
/// that name the data (a checkpoint of a job reading another file is not restored).
pub fn identity(options: &ConnectorOptions) -> String {
    const NAMING: &[&str] = &[
        "path",
        "format",
        "topic",
        "table",
        "profile",
        "seed",
        "event_rate",
    ];
    let mut out = format!("connector={}", options.connector().unwrap_or_default());
    for key in NAMING {
        if let Some(v) = options.get(key) {
            // A relative path names a file from the working directory.
            let v = match *key {
                "path" => std::path::absolute(v)
                    .map_or_else(|_| v.to_string(), |p| p.display().to_string()),
                _ => v.to_string(),
            };
            out.push_str(&format!(" {key}={v}"));
        }
    }
    out
}

/// Builds a source for a table.
pub fn build_source(
    table: &str,
    options: &ConnectorOptions,
    schema: SchemaRef,
    metrics: Arc<JobMetrics>,
    interrupt: &Interrupt,
) -> Result<Box<dyn Source>, ConnectorError> {
    match options.connector() {
        Some("file") => Ok(Box::new(FileSource::open(table, options, schema, metrics)?)),
        Some("kafka") => Ok(Box::new(KafkaSource::open(
            table, options, schema, metrics, interrupt,
        )?)),
        Some("generator") => {
            let opts = GeneratorOptions::parse(options)
                .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
            Ok(Box::new(
                GeneratorSource::new(table, opts, schema).map_err(ConnectorError::Config)?,
            ))
        }
        Some("host_metrics") => {
            let opts = crate::host_metrics::HostMetricsOptions::parse(options)
                .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
            Ok(Box::new(
                crate::host_metrics::HostMetricsSource::new(table, opts, schema)
                    .map_err(ConnectorError::Config)?,
            ))
        }
        Some("nexmark") => {
            let opts = crate::nexmark::NexmarkOptions::parse(options)
                .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
            Ok(Box::new(
                crate::nexmark::NexmarkSource::new(table, opts, schema)
                    .map_err(ConnectorError::Config)?,
            ))
        }
        other => Err(ConnectorError::Config(format!(
            "table {table}: connector '{}' cannot be read",
            other.unwrap_or_default()
        ))),
    }
}

/// Builds the lookup of a table joined by key.
pub fn build_lookup(
    table: &str,
    options: &ConnectorOptions,
    schema: SchemaRef,
    interrupt: &Interrupt,
) -> Result<Arc<dyn sluice_runtime::LookupFactory>, ConnectorError> {
    match options.connector() {
        Some("postgres") => Ok(Arc::new(crate::postgres::PostgresLookupFactory::new(
            table, options, schema, interrupt,
        )?)),
        other => Err(ConnectorError::Config(format!(
            "table {table}: connector '{}' cannot be looked up",
            other.unwrap_or_default()
        ))),
    }
}

/// Builds a sink for a table.
pub fn build_sink(
    table: &str,
    options: &ConnectorOptions,
    schema: SchemaRef,
    interrupt: &Interrupt,
) -> Result<Box<dyn Sink>, ConnectorError> {
    match options.connector() {
        Some("file") => {
            let path = std::path::Path::new(options.get("path").unwrap_or_default());
            Ok(match options.get("format").unwrap_or("json") {
                "parquet" => Box::new(ParquetSink::new(path, schema)),
                _ => Box::new(JsonFileSink::new(path)),
            })
        }
        Some("console") => Ok(Box::new(ConsoleSink::new(table))),
        Some("kafka") if crate::kafka::exactly_once(options) => Ok(Box::new(
            CommitOnCheckpoint::new(TransactionalKafkaSink::new(table, options)),
        )),
        Some("kafka") => Ok(Box::new(KafkaSink::open(table, options)?)),
        Some("blackhole") => Ok(Box::new(BlackholeSink)),
        Some("postgres") => Ok(Box::new(CommitOnCheckpoint::new(
            crate::postgres::PostgresSink::open(table, options, schema)?
                .with_interrupt(interrupt.clone()),
        ))),
        other => Err(ConnectorError::Config(format!(
            "table {table}: connector '{}' cannot be written",
            other.unwrap_or_default()
        ))),
    }
}
