//! Errors of checkpoint storage.

use thiserror::Error;

pub type Result<T, E = StateError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum StateError {
    /// The user asked for something that does not exist or does not fit.
    #[error("{0}")]
    User(String),
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The object store holding the checkpoints failed or cannot be reached.
    #[error("{0}")]
    Store(String),
    /// A checkpoint on disk is damaged (checksum, truncated, unreadable manifest).
    #[error("{0}")]
    Corrupt(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl StateError {
    /// Who has to act: the user for a checkpoint that does not exist or fit; the file
    /// system otherwise (a damaged checkpoint is skipped or another one chosen).
    pub fn kind(&self) -> sluice_types::ErrorKind {
        match self {
            StateError::User(_) => sluice_types::ErrorKind::User,
            _ => sluice_types::ErrorKind::External,
        }
    }

    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
