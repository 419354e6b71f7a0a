//! The `WITH (key = 'value', …)` options of a table, keeping where each was written.

use std::collections::BTreeMap;

use crate::{JobRules, Position};
use arrow::datatypes::Schema;

/// Whether a table is read from (as a stream), written to, or looked up by key (a
/// database table joined to a stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRole {
    Source,
    Sink,
    Lookup,
}

/// One option's value and where its key stands in the SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionValue {
    pub value: String,
    pub position: Position,
}

/// Connector options, keys lower-cased, values already expanded from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectorOptions {
    entries: BTreeMap<String, OptionValue>,
}

impl ConnectorOptions {
    pub fn insert(&mut self, key: &str, value: String, position: Position) -> Option<OptionValue> {
        self.entries
            .insert(key.to_ascii_lowercase(), OptionValue { value, position })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|v| v.value.as_str())
    }

    pub fn position(&self, key: &str) -> Option<Position> {
        self.entries.get(key).map(|v| v.position)
    }

    pub fn connector(&self) -> Option<&str> {
        self.get("connector")
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// What is wrong with a table's connector options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionProblem {
    /// The option at fault, if one is.
    pub key: Option<String>,
    pub message: String,
}

impl OptionProblem {
    pub fn new(key: Option<&str>, message: impl Into<String>) -> Self {
        OptionProblem {
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}

/// Knows which connectors exist and which options each takes, so that SQL naming an
/// unknown one is refused before the job starts.
pub trait ConnectorCatalog: Send + Sync {
    /// Checks a table's options for its role, under the job's rules (a submitted job
    /// may not hand a client options that read files or load code, say).
    fn check(
        &self,
        role: TableRole,
        has_columns: bool,
        options: &ConnectorOptions,
        rules: &JobRules,
    ) -> Result<(), OptionProblem>;

    /// Checks a sink's options against the columns the job writes to it (a key column
    /// that must exist, say).
    fn check_sink_columns(
        &self,
        _options: &ConnectorOptions,
        _schema: &Schema,
    ) -> Result<(), OptionProblem> {
        Ok(())
    }

    /// Options whose values are file paths: resolved, and kept inside the data directory
    /// of a submitted job.
    fn path_options(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a table read by a job is looked up by key (a database table) rather than
    /// read as a stream.
    fn is_lookup(&self, _options: &ConnectorOptions) -> bool {
        false
    }

    /// Checks that a sink takes an updating result (inserts, updates and deletes) whose
    /// rows are identified by the columns `key` (when known); if it does not, says why
    /// and what to declare instead.
    fn check_changelog_sink(
        &self,
        _options: &ConnectorOptions,
        _key: Option<&[String]>,
    ) -> Result<(), String> {
        Err("this sink takes only append-only results".into())
    }

    /// For a source whose rows have a fixed shape (a generator profile, this machine's
    /// metrics): its columns, and the watermark a table that declares no columns gets
    /// (time column, delay in ms).
    fn fixed_source_schema(&self, _options: &ConnectorOptions) -> Option<FixedSchema> {
        None
    }
}

/// The columns of a fixed-shape source and its default watermark (column, delay ms).
pub type FixedSchema = (arrow::datatypes::SchemaRef, Option<(String, i64)>);
