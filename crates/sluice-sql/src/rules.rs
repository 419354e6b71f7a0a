//! The rules a job is planned under ([`JobRules`]): the environment variables it may
//! name, the paths it may touch, and the limits on what one job may ask of the machine.

use std::path::{Component, Path, PathBuf};

use sluice_types::{ConnectorCatalog, JobRules};

use crate::ddl::{SetDef, TableDef};
use crate::error::{Result, SqlError};
use crate::window::WindowCall;
use sluice_runtime::WindowKind;

/// `value` with its `${NAME}`s expanded under `rules`: a variable the rules do not
/// allow reads as unset, so its default applies, and without a default it is refused.
pub(crate) fn expand_env(
    rules: &JobRules,
    env: &dyn Fn(&str) -> Option<String>,
    value: &str,
) -> Result<String, String> {
    check_env(rules, value)?;
    crate::env::expand(value, &|name| {
        if rules.allows_env(name) {
            env(name)
        } else {
            None
        }
    })
}

/// Every `${NAME}` in `value` without a default must be one the rules allow.
fn check_env(rules: &JobRules, value: &str) -> Result<(), String> {
    for (name, has_default) in crate::env::referenced(value) {
        if !has_default && !rules.allows_env(name) {
            let allowed = rules.allowed_env.as_deref().unwrap_or_default().join(", ");
            return Err(format!(
                "environment variable {name} may not be used by a submitted job (the server allows: {}; start it with --allow-env to allow more, or give it a default: ${{{name}:-…}})",
                if allowed.is_empty() { "none" } else { &allowed }
            ));
        }
    }
    Ok(())
}

/// Under a data directory, puts every path option of `table` (as the catalog names them)
/// in its resolved, absolute form, refusing one outside the directory. A trusted job's
/// paths stay as written (relative to the working directory).
pub(crate) fn resolve_paths(
    rules: &JobRules,
    catalog: &dyn ConnectorCatalog,
    table: &mut TableDef,
) -> Result<()> {
    if rules.data_dir.is_none() {
        return Ok(());
    }
    for key in catalog.path_options() {
        let Some(value) = table.options.get(key).map(str::to_string) else {
            continue;
        };
        let position = table.options.position(key).unwrap_or(table.position);
        let resolved = resolve_path(rules, &value).map_err(|why| {
            SqlError::refused(
                position,
                format!("table {}: option '{key}' = '{value}': {why}", table.name),
            )
        })?;
        table
            .options
            .insert(key, resolved.display().to_string(), position);
    }
    Ok(())
}

/// `value` as an absolute path: from the working directory for a trusted job; inside the
/// data directory (and not out of it through `..` or a symbolic link) otherwise.
pub fn resolve_path(rules: &JobRules, value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("a path cannot be empty".into());
    }
    let path = Path::new(value);
    let Some(dir) = &rules.data_dir else {
        return std::path::absolute(path)
            .map(|p| normalize(&p))
            .map_err(|e| e.to_string());
    };
    let root = dir.canonicalize().map_err(|e| {
        format!(
            "the server's data directory {} cannot be used: {e}",
            dir.display()
        )
    })?;
    let outside = || {
        format!(
            "it lies outside the server's data directory {}; a submitted job may only read and write files inside it",
            root.display()
        )
    };
    let joined = normalize(&root.join(path));
    if !joined.starts_with(&root) || joined == root {
        return Err(outside());
    }
    // What already exists of the path must not lead out through a symbolic link.
    let mut existing = joined.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    let real = existing.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    Ok(joined)
}

/// `.` and `..` taken out by reading the path, not the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The ceiling on windows per row: the rules', or a trusted job's own `SET`.
pub(crate) fn max_windows_per_row(rules: &JobRules, settings: &[SetDef]) -> Result<u64> {
    let mut limit = rules.max_windows_per_row;
    for s in settings {
        if s.key == "max_windows_per_row" {
            let asked: u64 = s.value.parse().unwrap_or(0);
            if asked > limit && !rules.trusted {
                return Err(SqlError::refused(
                    s.position,
                    format!(
                        "max_windows_per_row may be at most {limit} for a submitted job, not {asked}"
                    ),
                ));
            }
            limit = asked;
        }
    }
    Ok(limit)
}

/// A submitted job may not ask for more tasks than the server allows.
pub(crate) fn check_parallelism(rules: &JobRules, settings: &[SetDef]) -> Result<()> {
    let Some(max) = rules.max_parallelism else {
        return Ok(());
    };
    for s in settings.iter().filter(|s| s.key == "parallelism") {
        if s.value.parse::<usize>().is_ok_and(|p| p > max) {
            return Err(SqlError::refused(
                s.position,
                format!(
                    "parallelism may be at most {max} for a job on this server, not {}",
                    s.value
                ),
            ));
        }
    }
    Ok(())
}

/// A HOP window puts each row into `size / slide` windows; more than `limit` is refused.
pub(crate) fn check_window(limit: u64, w: &WindowCall) -> Result<()> {
    if let WindowKind::Hop { slide_ms, size_ms } = w.spec {
        let per_row = (size_ms as u64).div_ceil(slide_ms.max(1) as u64);
        if per_row > limit {
            return Err(SqlError::refused(
                w.source_position,
                format!(
                    "this HOP window puts every row into {per_row} windows (size {size_ms} ms / slide {slide_ms} ms), more than the limit of {limit}; use a longer slide, or raise max_windows_per_row with SET"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_data_directory() {
        let dir = tempfile_dir();
        let rules = JobRules::submitted(dir.clone(), vec![]);
        let root = dir.canonicalize().unwrap_or(dir.clone());
        assert_eq!(
            resolve_path(&rules, "out/a.json").ok(),
            Some(root.join("out/a.json"))
        );
        assert_eq!(
            resolve_path(&rules, "x/../b.json").ok(),
            Some(root.join("b.json"))
        );
        for bad in ["/etc/passwd", "../x", "a/../../x", "."] {
            let why = resolve_path(&rules, bad).err().unwrap_or_default();
            assert!(why.contains("outside"), "{bad}: {why}");
        }
        // A link inside the directory that points out of it.
        #[cfg(unix)]
        {
            let _ = std::os::unix::fs::symlink("/tmp", dir.join("escape"));
            let why = resolve_path(&rules, "escape/x").err().unwrap_or_default();
            assert!(why.contains("outside"), "{why}");
        }
        // An absolute path inside it is fine.
        let inside = root.join("in.json").display().to_string();
        assert!(resolve_path(&rules, &inside).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-rules-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[test]
    fn only_allowed_variables_expand() {
        let rules = JobRules::submitted(PathBuf::from("/"), vec!["KAFKA_BROKERS".into()]);
        let env = |name: &str| Some(format!("<{name}>"));
        let expand = |v: &str| expand_env(&rules, &env, v);
        assert_eq!(expand("${KAFKA_BROKERS:-x}").unwrap(), "<KAFKA_BROKERS>");
        // A variable the server does not allow reads as unset: its default, never its value.
        assert_eq!(expand("${HOME:-/nowhere}").unwrap(), "/nowhere");
        let why = expand("a${HOME}b").err().unwrap_or_default();
        assert!(
            why.contains("HOME") && why.contains("KAFKA_BROKERS"),
            "{why}"
        );
        assert_eq!(
            expand_env(&JobRules::trusted(), &env, "${HOME}").unwrap(),
            "<HOME>"
        );
    }
}
