//! The manifest: what a checkpoint holds, written last so that a directory with a
//! manifest is complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the manifest format; a newer one is refused.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    pub epoch: u64,
    /// Wall-clock time the checkpoint was written, ms since the Unix epoch.
    pub created_ms: i64,
    /// The job's SQL as submitted.
    pub sql: String,
    /// Hash of `plan`.
    pub fingerprint: String,
    /// One line per stateful part of the plan; a restore compares these.
    pub plan: Vec<String>,
    /// Set on the checkpoint taken when every source had ended.
    pub finished: bool,
    /// Rows the job's sinks had received by this checkpoint, over every run.
    #[serde(default)]
    pub rows_out: u64,
    /// The smallest source watermark at the barrier, if any.
    pub watermark: Option<i64>,
    pub sources: Vec<SourceState>,
    /// Per task (by a stable id such as `pipeline 1 aggregate 0`), its operators' state.
    pub tasks: BTreeMap<String, TaskState>,
    pub files: Vec<FileEntry>,
}

/// Where a source was at the barrier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    pub name: String,
    /// Next position to read, by partition (Kafka partition id, `bytes`, `events`, …).
    pub offsets: BTreeMap<String, i64>,
    /// Largest event time seen, per partition index.
    pub max_event_times: Vec<Option<i64>>,
    pub watermark: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskState {
    pub operators: Vec<OperatorState>,
}

/// One operator's snapshot: small values inline, rows in an Arrow file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OperatorState {
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub values: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
    pub rows: u64,
}

impl Manifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// A stable hash (FNV-1a, 64 bit) of the plan lines, as hex.
pub fn fingerprint(plan: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in plan {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
