//! What a job may use of the machine. `sluice run` trusts the job it is given; the
//! server gives every submitted job its own rules, checked when the job is planned.

use std::path::PathBuf;

/// The environment variables a submitted job may name when the server is not told.
pub const DEFAULT_ALLOWED_ENV: &[&str] = &["KAFKA_BROKERS", "DATABASE_URL"];

/// The default ceiling on how many windows one row may belong to.
pub const DEFAULT_MAX_WINDOWS_PER_ROW: u64 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRules {
    /// Every path a job names (file sources and sinks, dead letters) must lie inside
    /// this directory; relative paths are taken from it. `None`: any path, relative to
    /// the working directory.
    pub data_dir: Option<PathBuf>,
    /// The variables `${VAR}` may expand; `None`: any.
    pub allowed_env: Option<Vec<String>>,
    /// A trusted job may use client properties that read files, load code or run
    /// commands, and may raise the limits below with `SET`.
    pub trusted: bool,
    /// A row may belong to at most this many windows (HOP size / slide).
    pub max_windows_per_row: u64,
    /// `SET parallelism` may ask for at most this many tasks per stage.
    pub max_parallelism: Option<usize>,
}

impl Default for JobRules {
    fn default() -> Self {
        JobRules::trusted()
    }
}

impl JobRules {
    /// A job the person at the command line wrote: anything goes.
    pub fn trusted() -> Self {
        JobRules {
            data_dir: None,
            allowed_env: None,
            trusted: true,
            max_windows_per_row: DEFAULT_MAX_WINDOWS_PER_ROW,
            max_parallelism: None,
        }
    }

    /// A job submitted to the server: paths inside `data_dir`, only the named variables.
    pub fn submitted(data_dir: PathBuf, allowed_env: Vec<String>) -> Self {
        JobRules {
            data_dir: Some(data_dir),
            allowed_env: Some(allowed_env),
            trusted: false,
            max_windows_per_row: DEFAULT_MAX_WINDOWS_PER_ROW,
            max_parallelism: None,
        }
    }

    pub fn allows_env(&self, name: &str) -> bool {
        self.allowed_env
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == name))
    }
}
