//! Where sealed chunks are kept: a local directory (the default) or any S3-compatible object
//! store, both through the `object_store` crate.
//!
//! It owns the location's configuration (`file://…` or a path, `s3://bucket/prefix`), the
//! store client, and the blocking calls the vault's synchronous readers and writers make
//! through [`ChunkIo`]. It stores only what the vault gives it — sealed chunks, never
//! plaintext — and must not decide what a key means, who may read it or when something may
//! be deleted (the service's, which deletes the data keys before the objects). Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and are never part of
//! a location, its description or an error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_vault::chunks::ChunkIo;

/// Where the chunks live, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine (several nodes may share it only through a shared mount).
    Local(PathBuf),
    /// A bucket of an S3-compatible store, and a prefix inside it that this platform owns.
    S3 { bucket: String, prefix: String, endpoint: Option<String>, region: Option<String> },
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Location {
    /// Parses `s3://bucket[/prefix][?endpoint=URL&region=NAME]`, `file:///dir` or a plain path.
    /// The endpoint is for S3-compatible servers other than AWS (MinIO, Ceph, moto); an
    /// `http://` endpoint is allowed, which suits a store on the same private network only.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("the object store location is empty");
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.contains("://") {
                bail!("unsupported object store `{}`: use s3://bucket/prefix or a directory", scheme_of(text));
            }
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let (place, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = place.split_once('/').unwrap_or((place, ""));
        if bucket.is_empty() || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
            bail!("`{bucket}` is not an S3 bucket name");
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|segment| segment == "." || segment == "..") || prefix.contains("//") {
            bail!("the object store prefix `{prefix}` has an empty, `.` or `..` segment");
        }
        let (mut endpoint, mut region) = (None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", value)) if value.starts_with("http://") || value.starts_with("https://") => {
                    endpoint = Some(value.trim_end_matches('/').to_string());
                }
                Some(("endpoint", _)) => bail!("the object store endpoint must be an http:// or https:// URL"),
                Some(("region", value)) if !value.is_empty() => region = Some(value.to_string()),
                _ => bail!(
                    "unknown object store option `{}` (known: endpoint, region; credentials come from the environment)",
                    pair.split('=').next().unwrap_or(pair)
                ),
            }
        }
        Ok(Self::S3 { bucket: bucket.to_string(), prefix, endpoint, region })
    }

    /// The location for logs and errors: never a credential (a location holds none).
    pub fn describe(&self) -> String {
        match self {
            Self::Local(path) => format!("directory {}", path.display()),
            Self::S3 { bucket, prefix, endpoint, .. } => {
                let at = endpoint.as_deref().map(|endpoint| format!(" at {endpoint}")).unwrap_or_default();
                format!("s3://{bucket}/{prefix}{at}")
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}

fn scheme_of(text: &str) -> &str {
    text.split("://").next().unwrap_or(text)
}

/// The object store holding the chunks, with blocking calls for the vault's threads.
///
/// The calls run on a small runtime of the store's own, so they work the same from a
/// blocking task, a plain thread or a test, whatever runtime (if any) the caller has; they
/// must not be called from an async task (use the `_async` forms there).
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    location: Location,
    runtime: OwnRuntime,
}

impl fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkStore").field("location", &self.inner.location).finish_non_exhaustive()
    }
}

/// A runtime that may be dropped anywhere: in an async task a plain drop would panic.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime lives as long as the store").handle()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl ChunkStore {
    /// Opens the store at `location`. A local directory is created if missing; an S3 bucket
    /// must exist (it is the platform team's, with its own retention and access rules).
    pub fn open(location: &Location) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = match location {
            Location::Local(root) => {
                std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(root)
                        .with_context(|| format!("opening the chunk directory {}", root.display()))?
                        .with_automatic_cleanup(true),
                )
            }
            Location::S3 { bucket, prefix, endpoint, region } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                let s3 = builder.build().with_context(|| format!("configuring {}", location.describe()))?;
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str()))
                }
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-objects")
            .enable_all()
            .build()
            .context("starting the object store's runtime")?;
        Ok(Self { inner: Arc::new(Inner { store, location: location.clone(), runtime: OwnRuntime(Some(runtime)) }) })
    }

    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    fn block_on<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        self.inner.runtime.handle().block_on(work)
    }

    /// Runs `work` on the store's runtime from an async task.
    async fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.inner.runtime.handle().spawn(work).await.context("an object store task panicked")?
    }

    /// [`ChunkIo::put`] from an async task.
    pub async fn put_async(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.spawn(put(self.inner.store.clone(), self.inner.location.clone(), key.to_string(), bytes)).await
    }

    /// [`ChunkIo::get`] from an async task.
    pub async fn get_async(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.spawn(get(self.inner.store.clone(), self.inner.location.clone(), key.to_string())).await
    }

    /// [`ChunkIo::delete_prefix`] from an async task.
    pub async fn delete_prefix_async(&self, prefix: &str) -> anyhow::Result<u64> {
        self.spawn(delete_prefix(self.inner.store.clone(), self.inner.location.clone(), prefix.to_string())).await
    }

    /// The names of the "directories" directly under `prefix` (`""` for the top): the next
    /// path segment of every object below it, once each.
    pub async fn children_async(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let (store, location) = (self.inner.store.clone(), self.inner.location.clone());
        let prefix = if prefix.is_empty() { None } else { Some(object_path(prefix)?) };
        self.spawn(async move {
            let listed = store
                .list_with_delimiter(prefix.as_ref())
                .await
                .with_context(|| format!("listing {}", location.describe()))?;
            Ok(listed.common_prefixes.iter().filter_map(|path| path.filename().map(str::to_string)).collect())
        })
        .await
    }

    /// Whether the store holds no object at all (a new platform's store must not).
    pub async fn is_empty_async(&self) -> anyhow::Result<bool> {
        let (store, location) = (self.inner.store.clone(), self.inner.location.clone());
        self.spawn(async move {
            match store.list(None).next().await {
                None => Ok(true),
                Some(Ok(_)) => Ok(false),
                Some(Err(error)) => Err(anyhow::Error::from(error).context(format!("listing {}", location.describe()))),
            }
        })
        .await
    }
}

impl ChunkIo for ChunkStore {
    /// Writes one object whole (a reader never sees part of it).
    fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.block_on(put(self.inner.store.clone(), self.inner.location.clone(), key.to_string(), bytes))
    }

    /// Reads one object; `None` when there is no such object.
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.block_on(get(self.inner.store.clone(), self.inner.location.clone(), key.to_string()))
    }

    /// Deletes every object under `prefix` (whole path segments: `a/v1` is not a prefix of
    /// `a/v10/x`; `""` is everything). Returns how many were deleted.
    fn delete_prefix(&self, prefix: &str) -> anyhow::Result<u64> {
        self.block_on(delete_prefix(self.inner.store.clone(), self.inner.location.clone(), prefix.to_string()))
    }
}

async fn put(store: Arc<dyn ObjectStore>, location: Location, key: String, bytes: Vec<u8>) -> anyhow::Result<()> {
    let path = object_path(&key)?;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .with_context(|| format!("writing {key} to {}", location.describe()))?;
    Ok(())
}

async fn get(store: Arc<dyn ObjectStore>, location: Location, key: String) -> anyhow::Result<Option<Vec<u8>>> {
    let path = object_path(&key)?;
    let found = match store.get(&path).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => {
            return Err(anyhow::Error::from(error).context(format!("reading {key} from {}", location.describe())));
        }
    };
    let bytes = found.bytes().await.with_context(|| format!("reading {key} from {}", location.describe()))?;
    Ok(Some(Vec::from(bytes)))
}

async fn delete_prefix(store: Arc<dyn ObjectStore>, location: Location, prefix: String) -> anyhow::Result<u64> {
    let path = if prefix.is_empty() { None } else { Some(object_path(&prefix)?) };
    let listed = store.list(path.as_ref()).map_ok(|meta| meta.location).boxed();
    let deleted: Vec<ObjectPath> = store
        .delete_stream(listed)
        .try_collect()
        .await
        .with_context(|| format!("deleting {prefix} from {}", location.describe()))?;
    Ok(deleted.len() as u64)
}

/// A key as an object path; keys are made by the vault (`dataset-1/v2/00000000.chunk`),
/// so one that does not parse is a bug, reported rather than silently changed.
fn object_path(key: &str) -> anyhow::Result<ObjectPath> {
    ObjectPath::parse(key).with_context(|| format!("`{key}` is not a valid object key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_describe_without_surprises() {
        assert_eq!(Location::parse("/srv/blobs").expect("path"), Location::Local("/srv/blobs".into()));
        assert_eq!(Location::parse("file:///srv/blobs").expect("file"), Location::Local("/srv/blobs".into()));
        let s3 =
            Location::parse("s3://sluice-prod/province/?endpoint=http://10.0.0.5:9000/&region=cn-north-1").expect("s3");
        assert_eq!(
            s3,
            Location::S3 {
                bucket: "sluice-prod".into(),
                prefix: "province".into(),
                endpoint: Some("http://10.0.0.5:9000".into()),
                region: Some("cn-north-1".into()),
            }
        );
        assert_eq!(s3.describe(), "s3://sluice-prod/province at http://10.0.0.5:9000");
        for (bad, says) in [
            ("", "empty"),
            ("gs://bucket", "unsupported object store `gs`"),
            ("s3://", "not an S3 bucket name"),
            ("s3://bucket/../escape", "`..`"),
            ("s3://bucket?endpoint=ftp://x", "http:// or https://"),
            ("s3://bucket?secret=hunter2", "unknown object store option `secret`"),
        ] {
            let error = Location::parse(bad).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(!error.contains("hunter2"), "an error repeats a would-be credential: {error}");
        }
    }

    #[test]
    fn a_local_store_puts_gets_lists_and_deletes_by_whole_segments() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = ChunkStore::open(&Location::Local(dir.path().join("blobs")))?;
        store.put("dataset-1/v1/00000000.chunk", b"one".to_vec())?;
        store.put("dataset-1/v10/00000000.chunk", b"ten".to_vec())?;
        store.put("dataset-2/v1/00000000.chunk", b"other".to_vec())?;
        assert_eq!(store.get("dataset-1/v1/00000000.chunk")?.as_deref(), Some(&b"one"[..]));
        assert_eq!(store.get("dataset-1/v1/00000001.chunk")?, None);
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let mut datasets = runtime.block_on(store.children_async(""))?;
        datasets.sort();
        assert_eq!(datasets, ["dataset-1", "dataset-2"]);
        // `v1` is not a prefix of `v10`.
        assert_eq!(store.delete_prefix("dataset-1/v1")?, 1);
        assert_eq!(store.get("dataset-1/v10/00000000.chunk")?.as_deref(), Some(&b"ten"[..]));
        assert_eq!(runtime.block_on(store.children_async("dataset-1"))?, ["v10"]);
        // The async form works from inside a task, and an emptied directory goes with it.
        assert_eq!(runtime.block_on(store.delete_prefix_async("dataset-1"))?, 1);
        assert!(!dir.path().join("blobs/dataset-1/v1").exists());
        assert!(!runtime.block_on(store.is_empty_async())?);
        // Dropping the store inside a task does not panic (its runtime shuts down in the background).
        runtime.block_on(async move { drop(store) });
        Ok(())
    }
}
