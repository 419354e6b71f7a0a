//! Checkpoints of a job, in a directory or an object store. In a directory a checkpoint
//! is written into `epoch-<n>.tmp/` (state files, then `manifest.json`, each fsynced) and
//! renamed to `epoch-<n>/` in one step, so a directory without `.tmp` is complete unless
//! the disk itself lies; checksums catch that case. In an object store (`object.rs`) the
//! manifest is written last and a checkpoint is complete when it is there.

mod object;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StateError};
use crate::manifest::{FORMAT, FileEntry, Manifest};
use crate::retention::prune_plan;
use object::ObjectPrefix;

/// Where a job's checkpoints live.
#[derive(Debug, Clone)]
enum Backend {
    /// `<root>/<job>/`.
    Dir(PathBuf),
    /// `s3://bucket/prefix/<job>/`.
    Object(ObjectPrefix),
}

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    backend: Backend,
}

/// Where one checkpoint's files are.
#[derive(Debug, Clone)]
enum At {
    Dir(PathBuf),
    Object(ObjectPrefix, u64),
}

/// A complete checkpoint found in the store.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub manifest: Manifest,
    at: At,
}

impl StoredCheckpoint {
    /// The rows of one state file named in the manifest.
    pub fn read(&self, name: &str) -> Result<Vec<RecordBatch>> {
        check_file_name(name)?;
        if !self.manifest.files.iter().any(|f| f.name == name) {
            return Err(StateError::Corrupt(format!(
                "{}: state file {name} is not listed with a checksum in the manifest",
                self.location()
            )));
        }
        match &self.at {
            At::Dir(dir) => read_state_file(&dir.join(name)),
            At::Object(o, epoch) => {
                let data = o.get(*epoch, name)?.ok_or_else(|| {
                    StateError::Corrupt(format!("{}/{name} is missing", o.epoch_url(*epoch)))
                })?;
                batches_of(&data)
            }
        }
    }

    /// The checkpoint's directory or URL, for people.
    pub fn location(&self) -> String {
        match &self.at {
            At::Dir(dir) => dir.display().to_string(),
            At::Object(o, epoch) => o.epoch_url(*epoch),
        }
    }
}

/// A state file's name must be a plain name inside its checkpoint directory: a manifest
/// that names `../x` or `/etc/x` is damaged (or hostile), and is not followed.
fn check_file_name(name: &str) -> Result<()> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(StateError::Corrupt(format!(
            "the manifest names a state file {name:?} outside its checkpoint directory"
        )))
    }
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| StateError::io(path, e))
}

fn epoch_of(name: &str) -> Option<u64> {
    name.strip_prefix("epoch-")?.parse().ok()
}

/// Whether a checkpoint location is an object store's URL rather than a directory.
pub fn is_object_url(location: &str) -> bool {
    location.contains("://")
}

impl CheckpointStore {
    /// The checkpoints of `job` in the directory `root`.
    pub fn new(root: impl AsRef<Path>, job: &str) -> Self {
        CheckpointStore {
            backend: Backend::Dir(root.as_ref().join(job)),
        }
    }

    /// The checkpoints of `job` at `location`: a directory, or `s3://bucket/prefix`
    /// (configured from the `AWS_*` environment).
    pub fn open(location: &str, job: &str) -> Result<Self> {
        if is_object_url(location) {
            Ok(CheckpointStore {
                backend: Backend::Object(ObjectPrefix::open(location, job)?),
            })
        } else {
            Ok(CheckpointStore::new(location, job))
        }
    }

    /// The checkpoints of `job` under `prefix` of an object store already built.
    pub fn in_object_store(
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        prefix: &str,
        job: &str,
    ) -> Self {
        CheckpointStore {
            backend: Backend::Object(ObjectPrefix::with_store(store, prefix, job)),
        }
    }

    /// The job's directory or URL, for people.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Dir(dir) => dir.display().to_string(),
            Backend::Object(o) => o.url().to_string(),
        }
    }

    /// Claims the next generation of this job (a distributed task taken over by a
    /// worker): a number above every earlier claim that no other claim got, since each
    /// is a marker created only where absent (`generations/<g>`).
    pub fn claim_generation(&self) -> Result<u64> {
        self.claim_generation_above(0)
    }

    /// Claims the next generation above `floor` too (a database that remembers a newer
    /// one than a store made afresh).
    pub fn claim_generation_above(&self, floor: u64) -> Result<u64> {
        loop {
            let next = self.generation()?.max(floor) + 1;
            let created = match &self.backend {
                Backend::Dir(dir) => {
                    let at = dir.join("generations");
                    io(&at, fs::create_dir_all(&at))?;
                    let marker = at.join(next.to_string());
                    match File::create_new(&marker) {
                        Ok(_) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                        Err(e) => return Err(StateError::io(&marker, e)),
                    }
                }
                Backend::Object(o) => o.claim(next)?,
            };
            if created {
                return Ok(next);
            }
        }
    }

    /// Writes a small file `name` beside the checkpoints, replacing it whole (in a
    /// directory through a rename): what a distributed job's workers tell each other.
    pub fn put_file(&self, name: &str, data: &[u8]) -> Result<()> {
        match &self.backend {
            Backend::Dir(dir) => {
                io(dir, fs::create_dir_all(dir))?;
                let tmp = dir.join(format!(".{name}.tmp"));
                io(&tmp, fs::write(&tmp, data))?;
                let at = dir.join(name);
                io(&at, fs::rename(&tmp, &at))
            }
            Backend::Object(o) => o.put_file(name, data.to_vec()),
        }
    }

    /// Writes a small file `name` unless it exists (whole, never seen half written):
    /// whether this call wrote it. Workers starting together agree this way on what the
    /// first of them settles.
    pub fn put_file_new(&self, name: &str, data: &[u8]) -> Result<bool> {
        match &self.backend {
            Backend::Dir(dir) => {
                io(dir, fs::create_dir_all(dir))?;
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tmp = dir.join(format!(".{name}.{}.{n}.new", std::process::id()));
                io(&tmp, fs::write(&tmp, data))?;
                let at = dir.join(name);
                let linked = fs::hard_link(&tmp, &at);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(StateError::io(&at, e)),
                }
            }
            Backend::Object(o) => o.put_file_new(name, data.to_vec()),
        }
    }

    /// The small files written by [`CheckpointStore::put_file`], with their bytes.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        match &self.backend {
            Backend::Dir(dir) => {
                let Ok(entries) = fs::read_dir(dir) else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                for entry in entries {
                    let entry = io(dir, entry)?;
                    let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                        continue;
                    }
                    match fs::read(entry.path()) {
                        Ok(data) => out.push((name, data)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StateError::io(&entry.path(), e)),
                    }
                }
                Ok(out)
            }
            Backend::Object(o) => o.files(),
        }
    }

    /// Deletes a small file, if it is there.
    pub fn delete_file(&self, name: &str) -> Result<()> {
        match &self.backend {
            Backend::Dir(dir) => match fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StateError::io(&dir.join(name), e))
                }
                _ => Ok(()),
            },
            Backend::Object(o) => o.delete_file(name),
        }
    }

    /// The newest generation claimed (0: none).
    pub fn generation(&self) -> Result<u64> {
        Ok(self.generations()?.into_iter().max().unwrap_or(0))
    }

    fn generations(&self) -> Result<Vec<u64>> {
        match &self.backend {
            Backend::Dir(dir) => {
                let at = dir.join("generations");
                let Ok(entries) = fs::read_dir(&at) else {
                    return Ok(Vec::new());
                };
                Ok(entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect())
            }
            Backend::Object(o) => o.generations(),
        }
    }

    fn epoch_dir(dir: &Path, epoch: u64) -> PathBuf {
        dir.join(format!("epoch-{epoch}"))
    }

    fn epoch_location(&self, epoch: u64) -> String {
        match &self.backend {
            Backend::Dir(dir) => Self::epoch_dir(dir, epoch).display().to_string(),
            Backend::Object(o) => o.epoch_url(epoch),
        }
    }

    /// Epochs with a complete directory (in an object store: with a manifest), oldest
    /// first.
    pub fn epochs(&self) -> Result<Vec<u64>> {
        let dir = match &self.backend {
            Backend::Dir(dir) => dir,
            Backend::Object(o) => {
                return Ok(o
                    .epochs()?
                    .into_iter()
                    .filter(|(_, complete)| *complete)
                    .map(|(e, _)| e)
                    .collect());
            }
        };
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io(dir, e)),
        };
        let mut epochs = Vec::new();
        for entry in entries {
            let entry = io(dir, entry)?;
            if let Some(e) = entry.file_name().to_str().and_then(epoch_of) {
                epochs.push(e);
            }
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    fn read_manifest(&self, epoch: u64) -> Result<Manifest> {
        match &self.backend {
            Backend::Dir(dir) => read_manifest(&Self::epoch_dir(dir, epoch)),
            Backend::Object(o) => {
                let at = format!("{}/manifest.json", o.epoch_url(epoch));
                let bytes = o.get(epoch, "manifest.json")?.ok_or_else(|| {
                    StateError::Corrupt(format!("{at} is missing (an unfinished checkpoint)"))
                })?;
                parse_manifest(&bytes, &at)
            }
        }
    }

    /// Every complete checkpoint's manifest, oldest first, read without verifying the
    /// state files (a listing; [`CheckpointStore::load`] verifies).
    pub fn manifests(&self) -> Result<Vec<(u64, Result<Manifest>)>> {
        Ok(self
            .epochs()?
            .into_iter()
            .map(|e| (e, self.read_manifest(e)))
            .collect())
    }

    /// Writes a checkpoint: the state files, then the manifest (in a directory, then the
    /// rename). Returns the manifest as written (with its file list).
    pub fn write(
        &self,
        mut manifest: Manifest,
        files: Vec<(String, Vec<RecordBatch>)>,
    ) -> Result<Manifest> {
        manifest.format = FORMAT;
        manifest.files.clear();
        let mut encoded = Vec::new();
        for (name, batches) in files {
            let Some(first) = batches.first() else {
                continue;
            };
            let mut buf = Vec::new();
            {
                let mut w = FileWriter::try_new(&mut buf, &first.schema())?;
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            manifest.files.push(FileEntry {
                name: name.clone(),
                bytes: buf.len() as u64,
                crc32: crc32fast::hash(&buf),
                rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            });
            encoded.push((name, buf));
        }
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StateError::Corrupt(format!("cannot encode the manifest: {e}")))?;
        match &self.backend {
            Backend::Dir(dir) => write_dir(dir, manifest.epoch, encoded, &json)?,
            Backend::Object(o) => o.write(manifest.epoch, encoded, json)?,
        }
        Ok(manifest)
    }

    /// Reads and verifies one epoch's checkpoint.
    pub fn load(&self, epoch: u64) -> Result<StoredCheckpoint> {
        let have = self.epochs()?;
        if !have.contains(&epoch) {
            return Err(StateError::User(format!(
                "job has no checkpoint {epoch} under {} (it has: {})",
                self.location(),
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        self.load_listed(epoch)
    }

    /// Reads and verifies an epoch known to be listed.
    fn load_listed(&self, epoch: u64) -> Result<StoredCheckpoint> {
        match &self.backend {
            Backend::Dir(dir) => load_dir(&Self::epoch_dir(dir, epoch)),
            Backend::Object(o) => {
                let manifest = self.read_manifest(epoch)?;
                for f in &manifest.files {
                    check_file_name(&f.name)?;
                    let at = format!("{}/{}", o.epoch_url(epoch), f.name);
                    let data = o
                        .get(epoch, &f.name)?
                        .ok_or_else(|| StateError::Corrupt(format!("{at} is missing")))?;
                    verify(&data, f, &at)?;
                }
                Ok(StoredCheckpoint {
                    manifest,
                    at: At::Object(o.clone(), epoch),
                })
            }
        }
    }

    /// Whether the newest complete checkpoint says its job finished, from its manifest
    /// alone (no state file is read).
    pub fn finished(&self) -> Result<bool> {
        let Some(&epoch) = self.epochs()?.last() else {
            return Ok(false);
        };
        Ok(self.read_manifest(epoch).is_ok_and(|m| m.finished))
    }

    /// The newest checkpoint that verifies; damaged ones are skipped with a warning.
    pub fn newest(&self) -> Result<Option<StoredCheckpoint>> {
        for epoch in self.epochs()?.into_iter().rev() {
            match self.load_listed(epoch) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => tracing::warn!(
                    "checkpoint {} is damaged and is skipped: {e}",
                    self.epoch_location(epoch)
                ),
            }
        }
        Ok(None)
    }

    /// Deletes all but the newest `keep` checkpoints (never `in_use`), and stale
    /// half-written ones. Returns the epochs deleted.
    pub fn prune(&self, keep: usize, in_use: Option<u64>) -> Result<Vec<u64>> {
        let doomed = prune_plan(&self.epochs()?, keep, in_use);
        match &self.backend {
            Backend::Dir(dir) => {
                for e in &doomed {
                    let d = Self::epoch_dir(dir, *e);
                    io(&d, fs::remove_dir_all(&d))?;
                }
                if let Ok(entries) = fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        if name.starts_with("epoch-") && name.ends_with(".tmp") {
                            let _ = fs::remove_dir_all(entry.path());
                        }
                    }
                }
            }
            Backend::Object(o) => {
                for e in &doomed {
                    o.delete(*e)?;
                }
                // Objects of an attempt that never got its manifest, older than the
                // newest complete checkpoint (a newer one may be being written now).
                let all = o.epochs()?;
                let newest = all.iter().filter(|(_, c)| *c).map(|(e, _)| *e).max();
                for (e, complete) in all {
                    if !complete && newest.is_some_and(|n| e < n) {
                        o.delete(e)?;
                    }
                }
            }
        }
        Ok(doomed)
    }
}

/// A checkpoint in a directory: written into `epoch-<n>.tmp/`, then renamed.
fn write_dir(dir: &Path, epoch: u64, files: Vec<(String, Vec<u8>)>, manifest: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("epoch-{epoch}.tmp"));
    if tmp.exists() {
        io(&tmp, fs::remove_dir_all(&tmp))?;
    }
    io(&tmp, fs::create_dir_all(&tmp))?;
    for (name, buf) in files {
        write_synced(&tmp.join(&name), &buf)?;
    }
    write_synced(&tmp.join("manifest.json"), manifest)?;
    sync_dir(&tmp)?;
    let dest = CheckpointStore::epoch_dir(dir, epoch);
    if dest.exists() {
        io(&dest, fs::remove_dir_all(&dest))?;
    }
    io(&dest, fs::rename(&tmp, &dest))?;
    sync_dir(dir)
}

/// A state file's bytes against its manifest entry.
fn verify(data: &[u8], f: &FileEntry, at: &str) -> Result<()> {
    if data.len() as u64 != f.bytes || crc32fast::hash(data) != f.crc32 {
        return Err(StateError::Corrupt(format!(
            "{at}: checksum mismatch ({} bytes, {} expected)",
            data.len(),
            f.bytes
        )));
    }
    Ok(())
}

fn parse_manifest(bytes: &[u8], at: &str) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(format!("{at}: {e}")))?;
    if manifest.format > FORMAT {
        return Err(StateError::User(format!(
            "{at} was written by a newer Sluice (format {}, this one reads {FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

fn batches_of(data: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = FileReader::try_new(std::io::Cursor::new(data), None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(StateError::from)
}

/// A checkpoint directory's manifest, of a format this build reads.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::Corrupt(format!(
                "{} has no manifest.json (an unfinished checkpoint)",
                dir.display()
            )));
        }
        Err(e) => return Err(StateError::io(&path, e)),
    };
    parse_manifest(&bytes, &path.display().to_string())
}

/// Reads and verifies a checkpoint directory (as given by a user's path).
pub fn load_dir(dir: &Path) -> Result<StoredCheckpoint> {
    let manifest = read_manifest(dir)?;
    for f in &manifest.files {
        check_file_name(&f.name)?;
        let p = dir.join(&f.name);
        let mut data = Vec::new();
        File::open(&p)
            .and_then(|mut h| h.read_to_end(&mut data))
            .map_err(|e| StateError::Corrupt(format!("{}: {e}", p.display())))?;
        verify(&data, f, &p.display().to_string())?;
    }
    Ok(StoredCheckpoint {
        manifest,
        at: At::Dir(dir.to_path_buf()),
    })
}

/// Reads the record batches of an Arrow IPC state file.
pub fn read_state_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = io(path, File::open(path))?;
    let reader = FileReader::try_new(file, None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(StateError::from)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = io(path, File::create(path))?;
    io(path, f.write_all(data))?;
    io(path, f.sync_all())
}

fn sync_dir(dir: &Path) -> Result<()> {
    io(dir, File::open(dir).and_then(|d| d.sync_all()))
}

#[cfg(test)]
mod tests;
