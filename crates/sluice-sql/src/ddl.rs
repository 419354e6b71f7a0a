//! `CREATE TABLE name (columns…, WATERMARK FOR col AS col - INTERVAL …) WITH (…)` and `SET k = v`.

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};
use sluice_types::{ConnectorOptions, Position};

use crate::error::{Result, SqlError};
use crate::interval::interval_millis;
use crate::statements::{RawStatement, pos};

/// The type every `TIMESTAMP` column has inside Sluice: milliseconds, UTC, no zone attached.
pub const TIMESTAMP_TYPE: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

/// A declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub position: Position,
}

/// `WATERMARK FOR column AS column - INTERVAL …`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDef {
    pub column: String,
    pub delay_ms: i64,
    pub position: Position,
}

/// A `CREATE TABLE` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub position: Position,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub options: ConnectorOptions,
}

impl TableDef {
    pub fn schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        )
    }
}

/// A `SET key = 'value'` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDef {
    pub key: String,
    pub value: String,
    pub position: Position,
}

struct Cursor<'a> {
    toks: Vec<&'a TokenWithSpan>,
    i: usize,
    end: Position,
}

impl<'a> Cursor<'a> {
    fn new(stmt: &'a RawStatement) -> Self {
        let toks = stmt.significant();
        let end = toks
            .last()
            .map(|t| Position::new(t.span.end.line, t.span.end.column))
            .unwrap_or_default();
        Cursor { toks, i: 0, end }
    }
    fn peek(&self) -> Option<&'a TokenWithSpan> {
        self.toks.get(self.i).copied()
    }
    fn here(&self) -> Position {
        self.peek().map(pos).unwrap_or(self.end)
    }
    fn next(&mut self) -> Option<&'a TokenWithSpan> {
        let t = self.peek();
        self.i += 1;
        t
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek().map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.is_keyword(kw);
        if yes {
            self.i += 1;
        }
        yes
    }
    fn expect_keyword(&mut self, kw: &str) -> Result<()> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.expected(kw))
        }
    }
    fn is(&self, tok: &Token) -> bool {
        self.peek().map(|t| &t.token) == Some(tok)
    }
    fn eat(&mut self, tok: &Token) -> bool {
        let yes = self.is(tok);
        if yes {
            self.i += 1;
        }
        yes
    }
    fn expect(&mut self, tok: &Token) -> Result<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(&tok.to_string()))
        }
    }
    fn expected(&self, what: &str) -> SqlError {
        let found = self
            .peek()
            .map(|t| format!("'{}'", t.token))
            .unwrap_or_else(|| "the end of the statement".into());
        SqlError::syntax(self.here(), format!("expected {what}, found {found}"))
    }
    fn ident(&mut self, what: &str) -> Result<(String, Position)> {
        match self.peek() {
            Some(t) => match &t.token {
                Token::Word(w) => {
                    self.i += 1;
                    let name = if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_ascii_lowercase()
                    };
                    Ok((name, pos(t)))
                }
                _ => Err(self.expected(what)),
            },
            None => Err(self.expected(what)),
        }
    }
    fn done(&self) -> bool {
        self.i >= self.toks.len()
    }
}

/// Parses one `CREATE TABLE` statement; `expand` resolves `${VAR}` in option values.
pub fn parse_create_table(
    stmt: &RawStatement,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<TableDef> {
    let mut c = Cursor::new(stmt);
    c.expect_keyword("CREATE")?;
    c.expect_keyword("TABLE")?;
    if c.eat_keyword("IF") {
        c.expect_keyword("NOT")?;
        c.expect_keyword("EXISTS")?;
    }
    let (name, position) = c.ident("a table name")?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut watermark = None;
    if c.eat(&Token::LParen) {
        loop {
            if c.is_keyword("WATERMARK") {
                let wm = parse_watermark(&mut c)?;
                if watermark.is_some() {
                    return Err(SqlError::refused(
                        wm.position,
                        "a table may declare only one WATERMARK",
                    ));
                }
                watermark = Some(wm);
            } else if c.is_keyword("PRIMARY") {
                // Accepted for Flink compatibility; keys of sinks are set with `primary_key`.
                c.next();
                c.expect_keyword("KEY")?;
                skip_parens(&mut c)?;
                let _ = c.eat_keyword("NOT") && c.eat_keyword("ENFORCED");
            } else {
                let (col, cpos) = c.ident("a column name or WATERMARK")?;
                if columns.iter().any(|x| x.name == col) {
                    return Err(SqlError::refused(
                        cpos,
                        format!("column {col} is declared twice"),
                    ));
                }
                let data_type = parse_type(&mut c)?;
                let mut nullable = true;
                loop {
                    if c.eat_keyword("NOT") {
                        c.expect_keyword("NULL")?;
                        nullable = false;
                    } else if c.eat_keyword("NULL") {
                        nullable = true;
                    } else {
                        break;
                    }
                }
                columns.push(ColumnDef {
                    name: col,
                    data_type,
                    nullable,
                    position: cpos,
                });
            }
            if c.eat(&Token::Comma) {
                continue;
            }
            c.expect(&Token::RParen)?;
            break;
        }
    }
    let mut options = ConnectorOptions::default();
    if c.eat_keyword("WITH") {
        c.expect(&Token::LParen)?;
        loop {
            let (key, kpos) = option_key(&mut c)?;
            c.expect(&Token::Eq)?;
            let raw = match c.next().map(|t| &t.token) {
                Some(Token::SingleQuotedString(s)) => s.clone(),
                Some(Token::Number(n, _)) => n.clone(),
                Some(Token::Word(w)) => w.value.clone(),
                _ => {
                    c.i -= 1;
                    return Err(c.expected("a quoted option value"));
                }
            };
            let value = expand(&raw).map_err(|m| SqlError::refused(kpos, m))?;
            if options.insert(&key, value, kpos).is_some() {
                return Err(SqlError::refused(
                    kpos,
                    format!("option '{key}' is given twice"),
                ));
            }
            if c.eat(&Token::Comma) {
                continue;
            }
            c.expect(&Token::RParen)?;
            break;
        }
    }
    if !c.done() {
        return Err(c.expected("WITH or the end of the statement"));
    }
    if let Some(wm) = &watermark {
        match columns.iter().find(|col| col.name == wm.column) {
            None => {
                return Err(SqlError::refused(
                    wm.position,
                    format!(
                        "WATERMARK FOR {}: table {name} has no such column",
                        wm.column
                    ),
                ));
            }
            Some(col) if !matches!(col.data_type, DataType::Timestamp(..)) => {
                return Err(SqlError::refused(
                    wm.position,
                    format!(
                        "WATERMARK FOR {}: the column must be a TIMESTAMP, it is {}",
                        wm.column, col.data_type
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(TableDef {
        name,
        position,
        columns,
        watermark,
        options,
    })
}

fn option_key(c: &mut Cursor<'_>) -> Result<(String, Position)> {
    let here = c.here();
    match c.peek().map(|t| &t.token) {
        Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s)) => {
            let s = s.clone();
            c.next();
            Ok((s, here))
        }
        Some(Token::Word(_)) => {
            let mut key = c.ident("an option name")?.0;
            while c.eat(&Token::Period) {
                key.push('.');
                key.push_str(&c.ident("an option name")?.0);
            }
            Ok((key, here))
        }
        _ => Err(c.expected("an option name")),
    }
}

fn skip_parens(c: &mut Cursor<'_>) -> Result<()> {
    c.expect(&Token::LParen)?;
    let mut depth = 1;
    while depth > 0 {
        match c.next().map(|t| &t.token) {
            Some(Token::LParen) => depth += 1,
            Some(Token::RParen) => depth -= 1,
            Some(_) => {}
            None => return Err(c.expected("')'")),
        }
    }
    Ok(())
}

fn parse_type(c: &mut Cursor<'_>) -> Result<DataType> {
    let here = c.here();
    let (word, _) = c.ident("a column type")?;
    let ty = match word.to_ascii_uppercase().as_str() {
        "TEXT" | "STRING" | "VARCHAR" | "CHAR" => DataType::Utf8,
        "DOUBLE" => {
            c.eat_keyword("PRECISION");
            DataType::Float64
        }
        "FLOAT8" => DataType::Float64,
        "FLOAT" | "REAL" | "FLOAT4" => DataType::Float32,
        "BIGINT" | "INT8" | "LONG" => DataType::Int64,
        "INT" | "INTEGER" | "INT4" => DataType::Int32,
        "SMALLINT" | "INT2" => DataType::Int16,
        "TINYINT" => DataType::Int8,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TIMESTAMP" | "TIMESTAMPTZ" | "TIMESTAMP_LTZ" => TIMESTAMP_TYPE,
        other => {
            return Err(SqlError::refused(
                here,
                format!(
                    "unknown column type {other} (use TEXT, DOUBLE, FLOAT, BIGINT, INT, SMALLINT, BOOLEAN or TIMESTAMP)"
                ),
            ));
        }
    };
    if c.is(&Token::LParen) {
        skip_parens(c)?; // VARCHAR(64), TIMESTAMP(3): precision is not enforced
    }
    if matches!(ty, DataType::Timestamp(..)) && (c.is_keyword("WITH") || c.is_keyword("WITHOUT")) {
        // TIMESTAMP WITH[OUT] TIME ZONE: stored as UTC either way.
        let save = c.i;
        c.next();
        if c.eat_keyword("TIME") && c.eat_keyword("ZONE") {
        } else {
            c.i = save;
        }
    }
    Ok(ty)
}

fn parse_watermark(c: &mut Cursor<'_>) -> Result<WatermarkDef> {
    let position = c.here();
    c.expect_keyword("WATERMARK")?;
    c.expect_keyword("FOR")?;
    let (column, _) = c.ident("the event-time column")?;
    c.expect_keyword("AS")?;
    let start = c.i;
    let mut depth = 0;
    while let Some(t) = c.peek() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => break,
            _ => {}
        }
        c.next();
    }
    let tokens: Vec<TokenWithSpan> = c.toks[start..c.i].iter().map(|t| (*t).clone()).collect();
    let expr_pos = tokens.first().map(pos).unwrap_or(position);
    let dialect = GenericDialect {};
    let expr = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_expr()
        .map_err(|e| SqlError::from_parser(&e))?;
    let bad = || {
        SqlError::refused(
            expr_pos,
            format!(
                "a watermark must be `{column}` or `{column} - INTERVAL '…' unit`, found `{expr}`"
            ),
        )
    };
    let delay_ms = match &expr {
        Expr::Identifier(id) if id.value.eq_ignore_ascii_case(&column) => 0,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } => match left.as_ref() {
            Expr::Identifier(id) if id.value.eq_ignore_ascii_case(&column) => {
                interval_millis(right).map_err(|m| SqlError::refused(expr_pos, m))?
            }
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    Ok(WatermarkDef {
        column,
        delay_ms,
        position,
    })
}

/// `SET key = value`.
pub fn parse_set(stmt: &RawStatement) -> Result<SetDef> {
    let mut c = Cursor::new(stmt);
    c.expect_keyword("SET")?;
    let (key, position) = option_key(&mut c)?;
    if !c.eat(&Token::Eq) {
        c.expect_keyword("TO")?;
    }
    let value = match c.next().map(|t| &t.token) {
        Some(Token::SingleQuotedString(s)) => s.clone(),
        Some(Token::Number(n, _)) => n.clone(),
        Some(Token::Word(w)) => w.value.clone(),
        _ => {
            c.i -= 1;
            return Err(c.expected("a value"));
        }
    };
    if !c.done() {
        return Err(c.expected("the end of the statement"));
    }
    Ok(SetDef {
        key,
        value,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::split;

    fn table(sql: &str) -> Result<TableDef> {
        let stmts = split(sql)?;
        parse_create_table(&stmts[0], &|v: &str| {
            crate::env::expand(v, &|n: &str| (n == "BROKERS").then(|| "k:9092".to_string()))
        })
    }

    #[test]
    fn parses_a_source_with_watermark_and_options() {
        let t = table(
            "CREATE TABLE iot (\n  sensor_id TEXT NOT NULL,\n  temperature DOUBLE,\n  event_time TIMESTAMP NOT NULL,\n  WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE\n) WITH (connector = 'kafka', 'bootstrap.servers' = '${BROKERS}', scan.startup.mode = 'earliest', batch_size = 64)",
        )
        .unwrap();
        assert_eq!(t.name, "iot");
        assert_eq!(t.columns.len(), 3);
        assert!(!t.columns[0].nullable);
        assert_eq!(t.columns[2].data_type, TIMESTAMP_TYPE);
        let wm = t.watermark.unwrap();
        assert_eq!((wm.column.as_str(), wm.delay_ms), ("event_time", 600_000));
        assert_eq!(wm.position, Position::new(5, 3));
        assert_eq!(t.options.get("bootstrap.servers"), Some("k:9092"));
        assert_eq!(t.options.get("scan.startup.mode"), Some("earliest"));
        assert_eq!(t.options.get("batch_size"), Some("64"));
        assert_eq!(t.options.position("connector"), Some(Position::new(6, 9)));
    }

    #[test]
    fn sink_without_columns() {
        let t = table("CREATE TABLE out WITH (connector = 'console')").unwrap();
        assert!(t.columns.is_empty());
        assert_eq!(t.options.connector(), Some("console"));
    }

    #[test]
    fn refusals_have_positions() {
        let e = table("CREATE TABLE t (a TEXT,\n b BLOB)").unwrap_err();
        assert_eq!(e.position(), Some(Position::new(2, 4)));
        assert!(e.to_string().contains("unknown column type BLOB"), "{e}");
        let e = table("CREATE TABLE t (a TEXT, WATERMARK FOR ts AS ts)").unwrap_err();
        assert!(e.to_string().contains("no such column"), "{e}");
        let e = table("CREATE TABLE t (a TEXT) WITH (x = '${NOPE}')").unwrap_err();
        assert!(e.to_string().contains("NOPE is not set"), "{e}");
        let e = table("CREATE TABLE t (a TEXT, WATERMARK FOR a AS a)").unwrap_err();
        assert!(e.to_string().contains("must be a TIMESTAMP"), "{e}");
    }

    #[test]
    fn parses_set() {
        let stmts = split("SET checkpoint_interval = '2s'").unwrap();
        let s = parse_set(&stmts[0]).unwrap();
        assert_eq!(
            (s.key.as_str(), s.value.as_str()),
            ("checkpoint_interval", "2s")
        );
    }
}
