//! Errors raised while a job runs, by who has to act on them.

use datafusion::arrow::error::ArrowError;
use datafusion::common::DataFusionError;
use sluice_types::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The job's input or settings are wrong (bad data under `bad_data = 'fail'`, say).
    #[error("{0}")]
    User(String),
    /// A file, broker or database failed.
    #[error("{0}")]
    External(String),
    /// A bug in Sluice.
    #[error("internal error: {0}")]
    Internal(String),
    /// A task stopped because another did (its channel closed): the other's error is the
    /// one to report.
    #[error("{0} has stopped")]
    Stopped(&'static str),
    /// Another worker has taken this task over (its generation is newer): this one's
    /// commits are refused, and it must let the task go.
    #[error("{message}")]
    Fenced {
        /// The generation that holds the task now.
        held: u64,
        message: String,
    },
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::User(_) => ErrorKind::User,
            RuntimeError::External(_) | RuntimeError::Fenced { .. } => ErrorKind::External,
            _ => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
