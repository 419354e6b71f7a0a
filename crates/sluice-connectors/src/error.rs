//! Connector errors.

use sluice_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A table's options do not work (a file that does not exist, say).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}

impl ConnectorError {
    pub fn kind(&self) -> sluice_types::ErrorKind {
        match self {
            ConnectorError::Config(_) => sluice_types::ErrorKind::User,
            ConnectorError::Io(_) => sluice_types::ErrorKind::External,
        }
    }
}

impl From<ConnectorError> for RuntimeError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Config(m) => RuntimeError::User(m),
            ConnectorError::Io(m) => RuntimeError::External(m),
        }
    }
}
