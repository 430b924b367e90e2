//! Streaming writes: buffer the first part; small bodies become one `put`, larger ones a multipart upload
//! (S3 multipart, or the local backend's staging file renamed on completion). Any failure aborts the upload,
//! so nothing is left under the key.

use std::pin::pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayloadMut, PutResult, WriteMultipart};

use crate::hashing::StreamHasher;
use crate::options::{PART_BYTES, PARTS_IN_FLIGHT};
use crate::store::store_path;
use crate::{ObjectInfo, ObjectKey, Objects, ObjectsError};

/// Read size used when streaming a local file in.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

pub(crate) async fn put_stream<S>(
    objects: &Objects,
    key: &ObjectKey,
    body: S,
    max_bytes: Option<u64>,
) -> Result<ObjectInfo, ObjectsError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
{
    let path = store_path(key)?;
    let mut body = pin!(body);
    let mut sink = Sink::Buffering(PutPayloadMut::new());
    let mut hasher = StreamHasher::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                sink.abort().await;
                return Err(ObjectsError::io("read upload body", key.as_str(), e));
            }
        };
        size += chunk.len() as u64;
        if let Some(limit) = max_bytes.filter(|limit| size > *limit) {
            sink.abort().await;
            return Err(ObjectsError::TooLarge {
                key: key.as_str().to_owned(),
                limit,
            });
        }
        hasher.update(&chunk).await;
        if let Err(e) = sink.push(objects.store.as_ref(), &path, chunk).await {
            sink.abort().await;
            return Err(objects.classify(e, "put", key));
        }
    }
    let result = sink
        .finish(objects.store.as_ref(), &path)
        .await
        .map_err(|e| objects.classify(e, "put", key))?;
    Ok(ObjectInfo {
        key: key.as_str().to_owned(),
        size,
        sha256: Some(hasher.finish().await),
        e_tag: result.e_tag,
    })
}

/// Where the bytes go: a buffer until one part is full, then a multipart upload.
enum Sink {
    Buffering(PutPayloadMut),
    Multipart(WriteMultipart),
}

impl Sink {
    async fn push(
        &mut self,
        store: &dyn ObjectStore,
        path: &StorePath,
        chunk: Bytes,
    ) -> object_store::Result<()> {
        match self {
            Self::Buffering(buffer) => {
                buffer.push(chunk);
                if buffer.content_length() >= PART_BYTES {
                    let buffered = std::mem::take(buffer).freeze();
                    let mut writer = WriteMultipart::new_with_chunk_size(
                        store.put_multipart(path).await?,
                        PART_BYTES,
                    );
                    buffered.iter().for_each(|bytes| writer.put(bytes.clone()));
                    *self = Self::Multipart(writer);
                }
            }
            Self::Multipart(writer) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(chunk);
            }
        }
        Ok(())
    }

    async fn finish(
        self,
        store: &dyn ObjectStore,
        path: &StorePath,
    ) -> object_store::Result<PutResult> {
        match self {
            Self::Buffering(buffer) => store.put(path, buffer.freeze()).await,
            Self::Multipart(writer) => writer.finish().await,
        }
    }

    /// Abandons the upload; failures are logged, since the caller is already reporting an error.
    async fn abort(self) {
        if let Self::Multipart(writer) = self
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(error = %e, "could not abort a multipart upload");
        }
    }
}
