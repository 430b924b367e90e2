//! `Objects`: the one interface over a local directory and an S3-compatible bucket.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{GetResultPayload, ObjectMeta, ObjectStore, RetryConfig};

use crate::error::{BackendKind, classify};
use crate::location::{Location, S3Location};
use crate::options::{CONNECT_TIMEOUT, OpenOptions, READ_TIMEOUT};
use crate::{ObjectKey, ObjectsError, S3Credentials, connector::FixedClient};

/// Block size for reading local objects.
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 as lowercase hex, when this call computed it (writes and `get_to_file`).
    pub sha256: Option<String>,
    /// The store's entity tag, when it reports one.
    pub e_tag: Option<String>,
}

impl ObjectInfo {
    pub(crate) fn from_meta(meta: ObjectMeta) -> Self {
        Self {
            key: meta.location.to_string(),
            size: meta.size,
            sha256: None,
            e_tag: meta.e_tag,
        }
    }
}

/// An object store: a local directory or an S3-compatible bucket behind one streaming interface.
#[derive(Clone)]
pub struct Objects {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) backend: BackendKind,
    description: String,
}

impl Objects {
    /// Opens `file:///abs/dir` or a plain path (created if missing), or
    /// `s3://bucket[/prefix]?endpoint=…&region=…[&allow_http=true]` with credentials from the environment.
    pub fn open(url: &str) -> Result<Self, ObjectsError> {
        Self::open_with(url, OpenOptions::default())
    }

    /// Opens a store with explicit credentials and HTTP client (see [`OpenOptions`]).
    pub fn open_with(url: &str, options: OpenOptions) -> Result<Self, ObjectsError> {
        match Location::parse(url)? {
            Location::Local(dir) => Self::local(&dir),
            Location::S3(location) => Self::s3(&location, options),
        }
    }

    /// A store in the local directory `dir`, created if missing.
    pub fn local(dir: &Path) -> Result<Self, ObjectsError> {
        let shown = dir.display().to_string();
        std::fs::create_dir_all(dir)
            .map_err(|e| ObjectsError::io("create store directory", &shown, e))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| classify(e, BackendKind::Local, "open", &shown))?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            backend: BackendKind::Local,
            description: format!("local directory {shown}"),
        })
    }

    /// A store in an S3-compatible bucket.
    pub fn s3(location: &S3Location, options: OpenOptions) -> Result<Self, ObjectsError> {
        let credentials = options
            .credentials
            .or_else(S3Credentials::from_env)
            .ok_or_else(|| {
                ObjectsError::InvalidConfig(
                    "S3 needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                )
            })?;
        let client = match options.http_client {
            Some(client) => client,
            None => default_http_client(location.allow_http)?,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&location.region)
            .with_allow_http(location.allow_http)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            .with_http_connector(FixedClient(client))
            .with_retry(RetryConfig {
                max_retries: options.max_retries,
                ..RetryConfig::default()
            });
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &location.endpoint {
            builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
        }
        let shown = location.to_string();
        let bucket = builder
            .build()
            .map_err(|e| ObjectsError::InvalidConfig(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if location.prefix.is_empty() {
            Arc::new(bucket)
        } else {
            Arc::new(PrefixStore::new(bucket, location.prefix.as_str()))
        };
        Ok(Self {
            store,
            backend: BackendKind::S3,
            description: shown,
        })
    }

    /// Where this store is, for logs: never contains credentials.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Streams `body` in, enforcing `max_bytes` as it goes (`too_large`, nothing left behind) and computing
    /// size and SHA-256. Memory stays bounded by a few multipart parts whatever the body's size.
    pub async fn put_stream<S>(
        &self,
        key: &ObjectKey,
        body: S,
        max_bytes: Option<u64>,
    ) -> Result<ObjectInfo, ObjectsError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        crate::upload::put_stream(self, key, body, max_bytes).await
    }

    /// Uploads a local file, streamed.
    pub async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<ObjectInfo, ObjectsError> {
        let shown = path.display().to_string();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ObjectsError::io("open source file", &shown, e))?;
        let body =
            tokio_util::io::ReaderStream::with_capacity(file, crate::upload::READ_CHUNK_BYTES);
        self.put_stream(key, body, None).await
    }

    /// Downloads an object into `path` (streamed through a temporary file beside it, renamed at the end),
    /// computing its SHA-256.
    pub async fn get_to_file(
        &self,
        key: &ObjectKey,
        path: &Path,
    ) -> Result<ObjectInfo, ObjectsError> {
        crate::download::get_to_file(self, key, path).await
    }

    /// Opens an object for streaming.
    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<(ObjectInfo, BoxStream<'static, Result<Bytes, ObjectsError>>), ObjectsError> {
        let result = self
            .store
            .get(&store_path(key)?)
            .await
            .map_err(|e| self.classify(e, "get", key))?;
        let info = ObjectInfo::from_meta(result.meta.clone());
        let backend = self.backend;
        let shown = key.as_str().to_owned();
        let stream = match result.payload {
            // A local file: read it in large blocks (object_store's own stream reads 8 KiB at a time).
            GetResultPayload::File(file, _) => {
                let file = tokio::fs::File::from_std(file);
                tokio_util::io::ReaderStream::with_capacity(file, LOCAL_READ_BYTES)
                    .map_err(move |e| ObjectsError::io("get", &shown, e))
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream
                .map_err(move |e| classify(e, backend, "get", &shown))
                .boxed(),
        };
        Ok((info, stream))
    }

    /// Size and ETag of an object; `not_found` when absent.
    pub async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, ObjectsError> {
        let meta = self
            .store
            .head(&store_path(key)?)
            .await
            .map_err(|e| self.classify(e, "head", key))?;
        Ok(ObjectInfo::from_meta(meta))
    }

    /// Every object under `prefix/` (whole segments: `a/b` lists `a/b/…`, not `a/bc`), sorted by key.
    pub async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectInfo>, ObjectsError> {
        let mut objects: Vec<ObjectInfo> = self
            .store
            .list(Some(&store_path(prefix)?))
            .map_ok(ObjectInfo::from_meta)
            .try_collect()
            .await
            .map_err(|e| self.classify(e, "list", prefix))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes an object; deleting one that does not exist succeeds (S3 semantics on both backends).
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        match self.store.delete(&store_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify(e, "delete", key)),
        }
    }

    pub(crate) fn classify(
        &self,
        error: object_store::Error,
        operation: &'static str,
        key: &ObjectKey,
    ) -> ObjectsError {
        classify(error, self.backend, operation, key.as_str())
    }
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Objects({})", self.description)
    }
}

/// A validated key as an `object_store` path, unencoded (key validation is stricter than `Path::parse`).
pub(crate) fn store_path(key: &ObjectKey) -> Result<StorePath, ObjectsError> {
    StorePath::parse(key.as_str()).map_err(|_| ObjectsError::InvalidKey {
        key: key.as_str().to_owned(),
        reason: "not a valid store path",
    })
}

fn default_http_client(allow_http: bool) -> Result<reqwest::Client, ObjectsError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .https_only(!allow_http)
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .build()
        .map_err(|e| ObjectsError::InvalidConfig(format!("cannot build the HTTP client: {e}")))
}
