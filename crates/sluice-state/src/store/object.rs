//! Checkpoints in an object store (S3, or anything that speaks its API) through the
//! `object_store` crate: `<prefix>/<job>/epoch-<n>/<file>`. An object store has no
//! rename, so a checkpoint's manifest is written last and a checkpoint is complete when
//! its manifest is there; a new attempt at an epoch deletes the old manifest first.
//! Every worker that reaches the bucket sees the same checkpoints.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, StateError};

/// A job's checkpoints under a prefix of a bucket.
#[derive(Debug, Clone)]
pub struct ObjectPrefix {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/<job>`.
    prefix: ObjectPath,
    /// The same, as the user wrote it (for messages).
    url: String,
}

/// The runtime object-store calls run on: the store is called from plain threads (the
/// checkpoint coordinator) and from async handlers alike.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-object-store")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StateError::Store(format!("cannot start the object store's runtime: {e}")))
}

/// Runs `f` to completion from synchronous code, inside an async task or not.
pub(super) fn block<T: Send>(f: impl Future<Output = Result<T>> + Send) -> Result<T> {
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(f);
    }
    // Inside a runtime a thread of its own waits, so that no runtime blocks on itself.
    std::thread::scope(|s| {
        s.spawn(|| rt.block_on(f))
            .join()
            .map_err(|_| StateError::Store("an object store call panicked".into()))?
    })
}

fn failed(what: &str, at: &str, e: object_store::Error) -> StateError {
    StateError::Store(format!("{what} {at}: {e}"))
}

/// Every object under `prefix`.
async fn list_all(
    store: &Arc<dyn ObjectStore>,
    prefix: &ObjectPath,
    url: &str,
) -> Result<Vec<object_store::ObjectMeta>> {
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| failed("cannot list", url, e))
}

/// An object's bytes; `None` when it is not there.
async fn read(store: &Arc<dyn ObjectStore>, at: &ObjectPath, url: &str) -> Result<Option<Vec<u8>>> {
    match store.get(at).await {
        Ok(r) => Ok(Some(
            r.bytes()
                .await
                .map_err(|e| failed("cannot read", url, e))?
                .to_vec(),
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(failed("cannot read", url, e)),
    }
}

/// Deletes an object; one that is not there is as good as deleted.
async fn remove(store: &Arc<dyn ObjectStore>, at: &ObjectPath, url: &str) -> Result<()> {
    match store.delete(at).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(failed("cannot delete", url, e)),
    }
}

impl ObjectPrefix {
    /// `s3://bucket/prefix` for `job`, configured from the `AWS_*` environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP` for an endpoint without TLS).
    pub fn open(url: &str, job: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(StateError::User(format!(
                "checkpoint location {url}: use a directory or s3://bucket/prefix"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StateError::User(format!(
                "checkpoint location {url} names no bucket"
            )));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StateError::User(format!("checkpoint location {url}: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let path = if prefix.is_empty() {
            job.to_string()
        } else {
            format!("{prefix}/{job}")
        };
        Ok(ObjectPrefix {
            store: Arc::new(store),
            prefix: ObjectPath::from(path.as_str()),
            url: format!("s3://{bucket}/{path}"),
        })
    }

    /// A job's checkpoints in `store` under `prefix` (tests use an in-memory store).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, job: &str) -> Self {
        let path = format!("{prefix}/{job}");
        ObjectPrefix {
            store,
            prefix: ObjectPath::from(path.as_str()),
            url: format!("memory://{path}"),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn epoch_prefix(&self, epoch: u64) -> ObjectPath {
        self.prefix.clone().join(format!("epoch-{epoch}"))
    }

    pub fn epoch_url(&self, epoch: u64) -> String {
        format!("{}/epoch-{epoch}", self.url)
    }

    /// Each epoch with objects, and whether its manifest is among them.
    pub fn epochs(&self) -> Result<Vec<(u64, bool)>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let url = self.url.clone();
        block(async move {
            let objects = list_all(&store, &prefix, &url).await?;
            let mut epochs = std::collections::BTreeMap::new();
            for o in objects {
                let Some(rel) = o.location.prefix_match(&prefix) else {
                    continue;
                };
                let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
                if let [dir, file] = parts.as_slice()
                    && let Some(e) = super::epoch_of(dir)
                {
                    let has = epochs.entry(e).or_insert(false);
                    *has |= file == "manifest.json";
                }
            }
            Ok(epochs.into_iter().collect())
        })
    }

    /// One object of an epoch; `None` when it is not there.
    pub fn get(&self, epoch: u64, name: &str) -> Result<Option<Vec<u8>>> {
        let store = self.store.clone();
        let at = self.epoch_prefix(epoch).join(name);
        let url = format!("{}/{name}", self.epoch_url(epoch));
        block(async move { read(&store, &at, &url).await })
    }

    /// Writes an epoch: any earlier attempt's manifest goes first, then the files, then
    /// the manifest.
    pub fn write(
        &self,
        epoch: u64,
        files: Vec<(String, Vec<u8>)>,
        manifest: Vec<u8>,
    ) -> Result<()> {
        let store = self.store.clone();
        let dir = self.epoch_prefix(epoch);
        let url = self.epoch_url(epoch);
        block(async move {
            let m = dir.clone().join("manifest.json");
            remove(&store, &m, &url).await?;
            for (name, data) in files {
                store
                    .put(&dir.clone().join(name.as_str()), PutPayload::from(data))
                    .await
                    .map_err(|e| failed("cannot write", &format!("{url}/{name}"), e))?;
            }
            store
                .put(&m, PutPayload::from(manifest))
                .await
                .map_err(|e| failed("cannot write", &format!("{url}/manifest.json"), e))?;
            Ok(())
        })
    }

    /// Writes a small object `name` beside the checkpoints (replacing it).
    pub fn put_file(&self, name: &str, data: Vec<u8>) -> Result<()> {
        let store = self.store.clone();
        let at = self.prefix.clone().join(name);
        let url = format!("{}/{name}", self.url);
        block(async move {
            store
                .put(&at, PutPayload::from(data))
                .await
                .map_err(|e| failed("cannot write", &url, e))?;
            Ok(())
        })
    }

    /// The small objects directly under the prefix, with their bytes.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let url = self.url.clone();
        block(async move {
            let listed = store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| failed("cannot list", &url, e))?;
            let mut out = Vec::new();
            for o in listed.objects {
                let Some(name) = o.location.filename().map(str::to_string) else {
                    continue;
                };
                // One deleted between the listing and the read is left out.
                if let Some(data) = read(&store, &o.location, &url).await? {
                    out.push((name, data));
                }
            }
            Ok(out)
        })
    }

    /// Deletes a small object, if it is there.
    pub fn delete_file(&self, name: &str) -> Result<()> {
        let store = self.store.clone();
        let at = self.prefix.clone().join(name);
        let url = format!("{}/{name}", self.url);
        block(async move { remove(&store, &at, &url).await })
    }

    /// The generations claimed under `generations/`.
    pub fn generations(&self) -> Result<Vec<u64>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone().join("generations");
        let url = self.url.clone();
        block(async move {
            let objects = list_all(&store, &prefix, &url).await?;
            Ok(objects
                .iter()
                .filter_map(|o| o.location.filename()?.parse().ok())
                .collect())
        })
    }

    /// Creates `generations/<g>` unless it exists (a conditional put): whether this
    /// call created it.
    pub fn claim(&self, generation: u64) -> Result<bool> {
        self.create(&format!("generations/{generation}"), Vec::new())
    }

    /// Writes the small object `name` unless it exists (a conditional put): whether
    /// this call wrote it.
    pub fn put_file_new(&self, name: &str, data: Vec<u8>) -> Result<bool> {
        self.create(name, data)
    }

    fn create(&self, name: &str, data: Vec<u8>) -> Result<bool> {
        let store = self.store.clone();
        let mut at = self.prefix.clone();
        for part in name.split('/') {
            at = at.join(part);
        }
        let url = format!("{}/{name}", self.url);
        block(async move {
            let opts = object_store::PutOptions::from(object_store::PutMode::Create);
            match store.put_opts(&at, PutPayload::from(data), opts).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(failed("cannot write", &url, e)),
            }
        })
    }

    /// Deletes every object of an epoch, its manifest first (so that what is left of a
    /// failed deletion is an unfinished checkpoint, never a damaged complete one).
    pub fn delete(&self, epoch: u64) -> Result<()> {
        let store = self.store.clone();
        let dir = self.epoch_prefix(epoch);
        let url = self.epoch_url(epoch);
        block(async move {
            remove(&store, &dir.clone().join("manifest.json"), &url).await?;
            for o in list_all(&store, &dir, &url).await? {
                remove(&store, &o.location, &url).await?;
            }
            Ok(())
        })
    }
}
