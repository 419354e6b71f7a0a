//! The SQL of a PostgreSQL sink table, from its shape: the table it may create, the COPY
//! an epoch's rows go through, the session's stage table, and what applies the stage to
//! the table (`INSERT … ON CONFLICT`, after a `DELETE` of a changelog's retractions).
//! `INSERT … ON CONFLICT` costs an index probe per staged row whatever the table's size;
//! `MERGE` was measured beside it and planned a hash join over the whole table each
//! epoch once the table grew (slower past ~200 k rows, and worse with every epoch).

use datafusion::arrow::datatypes::Schema;

use super::encode::{pg_type, quote_ident, quote_table};

/// What the statements depend on.
pub(super) struct Shape<'a> {
    pub table: &'a str,
    /// The columns written (a changelog's `__op` not among them).
    pub schema: &'a Schema,
    pub key: &'a [String],
    pub changelog: bool,
    pub binary: bool,
    /// The stage may hold two rows PostgreSQL sees as one key: keep the later.
    pub distinct_in_sql: bool,
}

pub(super) struct Statements {
    /// Where the epoch's rows go: the table itself for an append, else the stage.
    pub copy: String,
    /// Makes the stage table (once per session; it empties at each commit).
    pub stage: Option<String>,
    /// Applies the stage to the table, in order.
    pub apply: Vec<String>,
    /// A keyed table's COPY straight into the table (without the stage), which holds
    /// while the epoch's keys are new to it; `None` for appends and changelogs.
    pub direct: Option<String>,
}

pub(super) fn create_table(table: &str, schema: &Schema, key: &[String]) -> String {
    let mut cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let not_null = if key.contains(f.name()) {
                " NOT NULL"
            } else {
                ""
            };
            format!(
                "{} {}{not_null}",
                quote_ident(f.name()),
                pg_type(f.data_type())
            )
        })
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_table(table),
        cols.join(", ")
    )
}

pub(super) fn statements(shape: &Shape<'_>) -> Statements {
    let target = quote_table(shape.table);
    let cols: Vec<String> = shape
        .schema
        .fields()
        .iter()
        .map(|f| quote_ident(f.name()))
        .collect();
    let col_list = cols.join(", ");
    let format = if shape.binary { " (FORMAT binary)" } else { "" };
    if shape.key.is_empty() {
        return Statements {
            copy: format!("COPY {target} ({col_list}) FROM STDIN{format}"),
            stage: None,
            apply: Vec::new(),
            direct: None,
        };
    }
    let key: Vec<String> = shape.key.iter().map(|k| quote_ident(k)).collect();
    let key_list = key.join(", ");
    let values: Vec<&String> = cols.iter().filter(|c| !key.contains(c)).collect();
    let op = quote_ident(sluice_types::OP_COLUMN);
    let (stage_table, stage, stage_cols) = if shape.changelog {
        (
            "pg_temp.sluice_changes",
            format!(
                "CREATE TEMP TABLE IF NOT EXISTS sluice_changes (LIKE {target}) ON COMMIT DELETE ROWS; \
                 ALTER TABLE pg_temp.sluice_changes ADD COLUMN IF NOT EXISTS {op} smallint"
            ),
            format!("{col_list}, {op}"),
        )
    } else {
        (
            "pg_temp.sluice_stage",
            format!(
                "CREATE TEMP TABLE IF NOT EXISTS sluice_stage (LIKE {target}) ON COMMIT DELETE ROWS"
            ),
            col_list.clone(),
        )
    };
    // The stage holds each key's last row (cut before the COPY); where PostgreSQL may
    // see two of those as one key, the later wins (COPY keeps input order).
    let last = if shape.distinct_in_sql {
        format!(
            "SELECT DISTINCT ON ({key_list}) {stage_cols} FROM {stage_table} ORDER BY {key_list}, ctid DESC"
        )
    } else {
        format!("SELECT {stage_cols} FROM {stage_table}")
    };
    let retractions = format!(
        "{}, {}",
        sluice_types::RowKind::UpdateBefore as i8,
        sluice_types::RowKind::Delete as i8
    );
    let on: Vec<String> = key.iter().map(|k| format!("t.{k} = s.{k}")).collect();
    let on = on.join(" AND ");
    let on_conflict = if values.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = values
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!("DO UPDATE SET {}", set.join(", "))
    };
    let apply = if shape.changelog {
        vec![
            format!(
                "DELETE FROM {target} t USING ({last}) s WHERE s.{op} IN ({retractions}) AND {on}"
            ),
            format!(
                "INSERT INTO {target} ({col_list}) SELECT {col_list} FROM ({last}) s \
                 WHERE s.{op} NOT IN ({retractions}) ON CONFLICT ({key_list}) {on_conflict}"
            ),
        ]
    } else {
        vec![format!(
            "INSERT INTO {target} ({col_list}) {last} ON CONFLICT ({key_list}) {on_conflict}"
        )]
    };
    Statements {
        copy: format!("COPY {stage_table} ({stage_cols}) FROM STDIN{format}"),
        stage: Some(stage),
        apply,
        direct: (!shape.changelog)
            .then(|| format!("COPY {target} ({col_list}) FROM STDIN{format}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn a_changelog_deletes_its_retractions_and_upserts_the_rest() {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]);
        let key = ["k".to_string()];
        let s = statements(&Shape {
            table: "out",
            schema: &schema,
            key: &key,
            changelog: true,
            binary: true,
            distinct_in_sql: false,
        });
        assert_eq!(
            s.copy,
            "COPY pg_temp.sluice_changes (\"k\", \"n\", \"__op\") FROM STDIN (FORMAT binary)"
        );
        assert_eq!(s.direct, None, "a changelog always goes through its stage");
        let last = "(SELECT \"k\", \"n\", \"__op\" FROM pg_temp.sluice_changes) s";
        assert_eq!(
            s.apply,
            [
                format!(
                    "DELETE FROM \"out\" t USING {last} WHERE s.\"__op\" IN (1, 3) AND t.\"k\" = s.\"k\""
                ),
                format!(
                    "INSERT INTO \"out\" (\"k\", \"n\") SELECT \"k\", \"n\" FROM {last} \
                     WHERE s.\"__op\" NOT IN (1, 3) ON CONFLICT (\"k\") DO UPDATE SET \"n\" = EXCLUDED.\"n\""
                ),
            ]
        );
    }
}
