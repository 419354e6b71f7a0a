//! The job catalog on disk (`<checkpoint dir>/sluice-jobs.json`): which jobs exist, their
//! SQL, and whether they should be running, so that a restarted server brings its jobs
//! back. Written whole, to a temporary file then renamed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ServerError;
use crate::manager::JobState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    pub sql: String,
    pub created_ms: i64,
    /// The state when last written; jobs that were active resume when the server starts.
    pub state: JobState,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A named file of `CREATE TABLE` / `CREATE VIEW` statements in the server's table
/// catalog (`<checkpoint dir>/sluice-tables.json`): submitted jobs may use its tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Definitions {
    pub name: String,
    pub sql: String,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("sluice-jobs.json")
}

pub fn load(dir: &Path) -> Result<Vec<CatalogEntry>, ServerError> {
    load_json(&path(dir), "the job catalog")
}

pub fn save(dir: &Path, entries: &[CatalogEntry]) -> Result<(), ServerError> {
    save_json(dir, "sluice-jobs.json", "the job catalog", entries)
}

pub fn load_tables(dir: &Path) -> Result<Vec<Definitions>, ServerError> {
    load_json(&dir.join("sluice-tables.json"), "the table catalog")
}

pub fn save_tables(dir: &Path, defs: &[Definitions]) -> Result<(), ServerError> {
    save_json(dir, "sluice-tables.json", "the table catalog", defs)
}

fn load_json<T: serde::de::DeserializeOwned>(p: &Path, what: &str) -> Result<Vec<T>, ServerError> {
    match std::fs::read(p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ServerError::Internal(format!("{what} {} is unreadable: {e}", p.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ServerError::Internal(format!(
            "cannot read {what} {}: {e}",
            p.display()
        ))),
    }
}

/// Written whole, to a temporary file then renamed.
fn save_json<T: Serialize>(dir: &Path, file: &str, what: &str, v: &[T]) -> Result<(), ServerError> {
    let io = |e: std::io::Error| {
        ServerError::Internal(format!("cannot write {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(v)
        .map_err(|e| ServerError::Internal(format!("cannot encode {what}: {e}")))?;
    let tmp = dir.join(format!("{file}.tmp"));
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, dir.join(file)).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn saved_entries_load_back_and_a_missing_catalog_is_empty() {
        let dir = std::env::temp_dir().join(format!("sluice-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load(&dir).unwrap().is_empty());
        let e = CatalogEntry {
            id: "a1".into(),
            name: "iot".into(),
            sql: "SELECT 1".into(),
            created_ms: 5,
            state: JobState::Running,
            last_error: None,
        };
        save(&dir, std::slice::from_ref(&e)).unwrap();
        assert_eq!(load(&dir).unwrap(), vec![e]);
        std::fs::write(path(&dir), "{").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("unreadable"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
