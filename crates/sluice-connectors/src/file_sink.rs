//! JSON-lines file sink, exactly once: an epoch's rows are appended to the one output
//! file only after that epoch's checkpoint is durable, and a restore truncates the file
//! to the length the checkpoint saw before writing again what it held uncommitted.
//!
//! So a reader of the file always sees a prefix of the job's output, each row once,
//! whatever number of crashes and restarts came between.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_runtime::{EpochBuffer, Result, RuntimeError, Sink, SinkState};
use sluice_types::Epoch;

use crate::json::json_lines;

pub struct JsonFileSink {
    path: PathBuf,
    /// Rows waiting for their epoch's checkpoint.
    rows: EpochBuffer,
    /// The file's committed length; `None` until the file is opened (a fresh run
    /// truncates it then, a restore puts it back to the checkpoint's length).
    committed_len: Option<u64>,
}

impl JsonFileSink {
    pub fn new(path: &Path) -> Self {
        JsonFileSink {
            path: path.to_path_buf(),
            rows: EpochBuffer::default(),
            committed_len: None,
        }
    }

    fn io(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::External(format!("writing {}: {e}", self.path.display()))
    }

    fn open_file(&self, truncate: bool) -> Result<File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(truncate)
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| self.io(e))
    }

    /// The committed length, opening the file on a fresh run (empty, as a new run's output).
    fn committed(&mut self) -> Result<u64> {
        match self.committed_len {
            Some(n) => Ok(n),
            None => {
                let f = self.open_file(true)?;
                f.sync_all().map_err(|e| self.io(e))?;
                self.committed_len = Some(0);
                Ok(0)
            }
        }
    }

    fn encode(&self, epochs: &[(Epoch, Vec<RecordBatch>)]) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        for (_, batches) in epochs {
            json_lines(batches, &mut buf)?;
        }
        Ok(buf)
    }

    /// Appends `bytes` at the committed length and makes them durable.
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let at = self.committed()?;
        if bytes.is_empty() {
            return Ok(());
        }
        let mut f = self.open_file(false)?;
        f.set_len(at).map_err(|e| self.io(e))?;
        f.seek(SeekFrom::Start(at)).map_err(|e| self.io(e))?;
        f.write_all(bytes).map_err(|e| self.io(e))?;
        f.sync_data().map_err(|e| self.io(e))?;
        self.committed_len = Some(at + bytes.len() as u64);
        Ok(())
    }
}

impl Sink for JsonFileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows.push(batch);
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<SinkState> {
        Ok(SinkState {
            pending: self.rows.seal(epoch),
            values: json!({ "committed_len": self.committed_len.unwrap_or(0) }),
        })
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let ready = self.rows.take_up_to(epoch);
        let bytes = self.encode(&ready)?;
        self.append(&bytes)
    }

    fn recover(&mut self, checkpoint: Epoch, saved: SinkState) -> Result<()> {
        let len = saved.values["committed_len"].as_u64().unwrap_or(0);
        let mut f = self.open_file(false)?;
        let on_disk = f.metadata().map_err(|e| self.io(e))?.len();
        if on_disk < len {
            return Err(RuntimeError::User(format!(
                "{} holds {on_disk} bytes, but checkpoint {checkpoint} saw {len} committed: \
                 the file was changed outside the job. Run with --fresh to write it again",
                self.path.display()
            )));
        }
        let held = self.encode(&saved.pending)?;
        // The common case after a crash: what the checkpoint held was committed already.
        // Keep those bytes rather than truncate and write them again.
        let mut present = vec![0; held.len()];
        let already = on_disk >= len + held.len() as u64
            && f.seek(SeekFrom::Start(len)).is_ok()
            && f.read_exact(&mut present).is_ok()
            && present == held;
        if already {
            f.set_len(len + held.len() as u64).map_err(|e| self.io(e))?;
            f.sync_data().map_err(|e| self.io(e))?;
            self.committed_len = Some(len + held.len() as u64);
        } else {
            self.committed_len = Some(len);
            self.append(&held)?;
        }
        if on_disk > len + held.len() as u64 {
            tracing::info!(
                "{}: removed {} bytes written after checkpoint {checkpoint}; they are written again as the job replays",
                self.path.display(),
                on_disk - len - held.len() as u64
            );
        }
        Ok(())
    }

    /// Rows not committed belong to no durable checkpoint: a restart writes them.
    fn finish(&mut self) -> Result<()> {
        self.committed().map(|_| ())
    }
}
