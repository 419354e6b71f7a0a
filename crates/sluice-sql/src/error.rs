//! Errors of the SQL front end: every one a user can act on carries a position.

use sluice_types::{ErrorKind, Position};

/// Why a job's SQL was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The text does not parse.
    #[error("{}syntax error: {message}", at(.position))]
    Syntax {
        position: Option<Position>,
        message: String,
    },
    /// The SQL is valid but cannot run as a stream, or refers to something unknown.
    #[error("{}{message}", at(.position))]
    Refused {
        position: Option<Position>,
        message: String,
    },
    /// A bug in the planner.
    #[error("internal planner error: {0}")]
    Internal(String),
    /// A definition from a catalog file (`--catalog`) was refused; the position is in
    /// that file.
    #[error("{file}: {error}")]
    InCatalog { file: String, error: Box<SqlError> },
}

fn at(position: &Option<Position>) -> String {
    match position {
        Some(p) => format!("{p}: "),
        None => String::new(),
    }
}

impl SqlError {
    pub fn refused(position: impl Into<Option<Position>>, message: impl Into<String>) -> Self {
        SqlError::Refused {
            position: position.into(),
            message: message.into(),
        }
    }

    pub fn syntax(position: impl Into<Option<Position>>, message: impl Into<String>) -> Self {
        SqlError::Syntax {
            position: position.into(),
            message: message.into(),
        }
    }

    pub fn position(&self) -> Option<Position> {
        match self {
            SqlError::Syntax { position, .. } | SqlError::Refused { position, .. } => *position,
            SqlError::Internal(_) => None,
            SqlError::InCatalog { error, .. } => error.position(),
        }
    }

    /// The catalog file the error is in (`None`: the job's own file).
    pub fn file(&self) -> Option<&str> {
        match self {
            SqlError::InCatalog { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The error without the catalog file it is in.
    pub fn innermost(&self) -> &SqlError {
        match self {
            SqlError::InCatalog { error, .. } => error.innermost(),
            other => other,
        }
    }

    /// Says which catalog file the error is in, when it is in one.
    pub fn in_file(self, file: Option<&str>) -> SqlError {
        match (file, self) {
            (_, e @ SqlError::InCatalog { .. }) | (None, e) => e,
            (Some(f), e) => SqlError::InCatalog {
                file: f.to_string(),
                error: Box::new(e),
            },
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.innermost() {
            SqlError::Internal(_) => ErrorKind::Internal,
            _ => ErrorKind::User,
        }
    }

    /// From sqlparser's message, which ends with "at Line: L, Column: C" when it knows.
    pub(crate) fn from_parser(err: &datafusion::sql::sqlparser::parser::ParserError) -> Self {
        let text = err.to_string();
        let text = text
            .trim_start_matches("sql parser error: ")
            .trim_start_matches("SQL parser error: ");
        if let Some(idx) = text.rfind(" at Line: ") {
            let (msg, loc) = text.split_at(idx);
            let nums: Vec<u64> = loc
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            if let [line, column] = nums[..] {
                return SqlError::syntax(Position::new(line, column), msg.to_string());
            }
        }
        SqlError::syntax(None, text.to_string())
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
