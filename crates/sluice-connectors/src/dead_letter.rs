//! Dead letters: records that could not be decoded, kept with their raw bytes, the error
//! and where they came from (topic or file, partition, offset or line), as JSON lines.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use crate::error::ConnectorError;

pub struct DeadLetters {
    path: String,
    out: BufWriter<File>,
}

impl DeadLetters {
    pub fn open(path: &str) -> Result<Self, ConnectorError> {
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConnectorError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ConnectorError::Io(format!("cannot open dead-letter file {path}: {e}")))?;
        Ok(DeadLetters {
            path: path.to_string(),
            out: BufWriter::new(file),
        })
    }

    /// Writes one dead letter: `raw` is kept exactly (as text when it is UTF-8, else hex).
    pub fn write(
        &mut self,
        raw: &[u8],
        error: &str,
        topic: &str,
        partition: i64,
        offset: i64,
    ) -> Result<(), ConnectorError> {
        let raw_field = match std::str::from_utf8(raw) {
            Ok(s) => (
                "raw",
                serde_json::Value::String(s.trim_end_matches('\n').to_string()),
            ),
            Err(_) => (
                "raw_hex",
                serde_json::Value::String(raw.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        let mut obj = serde_json::Map::new();
        obj.insert(raw_field.0.into(), raw_field.1);
        obj.insert("error".into(), error.into());
        obj.insert("topic".into(), topic.into());
        obj.insert("partition".into(), partition.into());
        obj.insert("offset".into(), offset.into());
        let line = serde_json::Value::Object(obj).to_string();
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| ConnectorError::Io(format!("writing {}: {e}", self.path)))
    }
}
