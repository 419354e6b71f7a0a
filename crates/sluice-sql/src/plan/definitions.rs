//! Tables and views a job may use without declaring them: catalog files (`sluice run
//! --catalog`, the server's table catalog), loaded before the job's own statements,
//! each definition tagged with the file it came from.

use sluice_types::{ConnectorCatalog, JobRules, Position};

use super::{ViewDef, parse_view};
use crate::ddl::{TableDef, parse_create_table};
use crate::error::{Result, SqlError};
use crate::statements::split;

/// A file of `CREATE TABLE` and `CREATE VIEW` statements that jobs may use (`sluice run
/// --catalog`, or the server's table catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFile {
    /// What errors call it (its path, or its name in the server's catalog).
    pub name: String,
    pub sql: String,
}

/// Tables and views of catalog files, each tagged with its file.
pub(super) struct Definitions {
    pub(super) tables: Vec<(TableDef, Option<String>)>,
    pub(super) views: Vec<ViewDef>,
}

impl Definitions {
    /// Adds a table or view; a job's own definition replaces a catalog's of that name.
    pub(super) fn add_table(&mut self, t: TableDef, origin: Option<String>) -> Result<()> {
        self.check_new(&t.name, t.position, &origin)?;
        self.views.retain(|v| v.name != t.name);
        self.tables.retain(|(x, _)| x.name != t.name);
        self.tables.push((t, origin));
        Ok(())
    }

    pub(super) fn add_view(&mut self, v: ViewDef) -> Result<()> {
        self.check_new(&v.name, v.position, &v.origin)?;
        self.views.retain(|x| x.name != v.name);
        self.tables.retain(|(x, _)| x.name != v.name);
        self.views.push(v);
        Ok(())
    }

    fn check_new(&self, name: &str, at: Position, origin: &Option<String>) -> Result<()> {
        let same = self
            .tables
            .iter()
            .any(|(t, o)| t.name == name && o == origin)
            || self
                .views
                .iter()
                .any(|v| v.name == name && &v.origin == origin);
        if same {
            return Err(SqlError::refused(
                at,
                format!("table {name} is declared twice"),
            ));
        }
        Ok(())
    }
}

/// Reads catalog files' definitions; a refusal says which file it is in.
/// A table of a fixed-shape source that declares no columns takes the source's own,
/// and its default watermark unless it declares one.
pub(super) fn complete_columns(catalog: &dyn ConnectorCatalog, t: &mut TableDef) {
    if !t.columns.is_empty() {
        return;
    }
    let Some((schema, watermark)) = catalog.fixed_source_schema(&t.options) else {
        return;
    };
    t.columns = schema
        .fields()
        .iter()
        .map(|f| crate::ddl::ColumnDef {
            name: f.name().clone(),
            data_type: f.data_type().clone(),
            nullable: f.is_nullable(),
            position: t.position,
        })
        .collect();
    if t.watermark.is_none() {
        t.watermark = watermark.map(|(column, delay_ms)| crate::ddl::WatermarkDef {
            column,
            delay_ms,
            position: t.position,
        });
    }
}

pub(super) fn load_catalog_files(
    files: &[CatalogFile],
    catalog: &dyn ConnectorCatalog,
    expander: &dyn Fn(&str) -> std::result::Result<String, String>,
    rules: &JobRules,
) -> Result<Definitions> {
    let mut defs = Definitions {
        tables: Vec::new(),
        views: Vec::new(),
    };
    for file in files {
        let origin = Some(file.name.clone());
        let load = |defs: &mut Definitions| -> Result<()> {
            for stmt in &split(&file.sql)? {
                let words = stmt.leading_words(3);
                let w: Vec<&str> = words.iter().map(String::as_str).collect();
                match w[..] {
                    ["CREATE", "TABLE", ..] => {
                        let mut t = parse_create_table(stmt, expander)?;
                        crate::rules::resolve_paths(rules, catalog, &mut t)?;
                        complete_columns(catalog, &mut t);
                        defs.add_table(t, origin.clone())?;
                    }
                    ["CREATE", "VIEW", ..] | ["CREATE", "TEMPORARY", "VIEW"] => {
                        let mut v = parse_view(stmt)?;
                        v.origin = origin.clone();
                        defs.add_view(v)?;
                    }
                    _ => {
                        return Err(SqlError::refused(
                            stmt.start(),
                            "a catalog file holds CREATE TABLE and CREATE VIEW statements only",
                        ));
                    }
                }
            }
            Ok(())
        };
        load(&mut defs).map_err(|e| e.in_file(Some(&file.name)))?;
    }
    Ok(defs)
}
