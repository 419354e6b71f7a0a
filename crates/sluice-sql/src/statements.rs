//! Splits a job file into statements, keeping every token's line and column.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use sluice_types::Position;

use crate::error::{Result, SqlError};

/// One statement's tokens (whitespace and comments included), in file positions.
#[derive(Debug, Clone)]
pub struct RawStatement {
    pub tokens: Vec<TokenWithSpan>,
}

impl RawStatement {
    /// The statement's meaningful tokens (no whitespace or comments).
    pub fn significant(&self) -> Vec<&TokenWithSpan> {
        self.tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect()
    }

    pub fn start(&self) -> Position {
        self.significant()
            .first()
            .map(|t| pos(t))
            .unwrap_or_default()
    }

    /// The first one or two keywords, upper-cased ("CREATE TABLE", "INSERT INTO", "SET").
    pub fn leading_words(&self, n: usize) -> Vec<String> {
        self.significant()
            .iter()
            .take(n)
            .map(|t| match &t.token {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                other => other.to_string(),
            })
            .collect()
    }
}

pub fn pos(t: &TokenWithSpan) -> Position {
    Position::new(t.span.start.line, t.span.start.column)
}

/// Tokenizes the whole file once and cuts it at top-level semicolons.
pub fn split(sql: &str) -> Result<Vec<RawStatement>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| {
            SqlError::syntax(
                Position::new(e.location.line, e.location.column),
                e.message.clone(),
            )
        })?;
    let mut out = Vec::new();
    let mut current = Vec::new();
    for t in tokens {
        match t.token {
            Token::SemiColon => {
                push(&mut out, std::mem::take(&mut current));
            }
            Token::EOF => {}
            _ => current.push(t),
        }
    }
    push(&mut out, current);
    Ok(out)
}

fn push(out: &mut Vec<RawStatement>, tokens: Vec<TokenWithSpan>) {
    let stmt = RawStatement { tokens };
    if !stmt.significant().is_empty() {
        out.push(stmt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_with_positions() {
        let s = split("CREATE TABLE a (x INT);\n\n  INSERT INTO b SELECT 1;\n-- done\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].leading_words(2), vec!["CREATE", "TABLE"]);
        assert_eq!(s[1].start(), Position::new(3, 3));
    }

    #[test]
    fn unterminated_string_reports_position() {
        let err = split("SELECT 'abc").unwrap_err();
        assert_eq!(err.position().map(|p| p.line), Some(1));
    }
}
