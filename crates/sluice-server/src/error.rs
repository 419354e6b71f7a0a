//! What the server answers when it refuses: the user's mistakes (unknown job, invalid
//! SQL, a name taken, a request that does not fit the job's state) apart from its own
//! failures.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    InvalidSql {
        message: String,
        line: Option<u64>,
        column: Option<u64>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn status(&self) -> u16 {
        match self {
            ServerError::NotFound(_) => 404,
            ServerError::InvalidSql { .. } | ServerError::BadRequest(_) => 400,
            ServerError::Conflict(_) => 409,
            ServerError::Unauthorized(_) => 401,
            ServerError::Internal(_) => 500,
        }
    }

    /// The JSON body: `error`, and for SQL the line and column.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "error": self.to_string() });
        if let ServerError::InvalidSql { line, column, .. } = self {
            v["line"] = serde_json::json!(line);
            v["column"] = serde_json::json!(column);
        }
        v
    }
}
