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

pub fn path(dir: &Path) -> PathBuf {
    dir.join("sluice-jobs.json")
}

pub fn load(dir: &Path) -> Result<Vec<CatalogEntry>, ServerError> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ServerError::Internal(format!(
                "the job catalog {} is unreadable: {e}",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ServerError::Internal(format!(
            "cannot read the job catalog {}: {e}",
            p.display()
        ))),
    }
}

pub fn save(dir: &Path, entries: &[CatalogEntry]) -> Result<(), ServerError> {
    let io = |e: std::io::Error| {
        ServerError::Internal(format!(
            "cannot write the job catalog in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_vec_pretty(entries)
        .map_err(|e| ServerError::Internal(format!("cannot encode the job catalog: {e}")))?;
    let tmp = dir.join("sluice-jobs.json.tmp");
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, path(dir)).map_err(io)
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
