//! Streaming reads into a local file: written to a temporary file beside the target and renamed at the end,
//! so a failed download never leaves a partial file under the target name.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::hashing::StreamHasher;
use crate::{ObjectInfo, ObjectKey, Objects, ObjectsError};

/// Writes are gathered into blocks this large: stores deliver small chunks (8 KiB locally), and each
/// write to a `tokio::fs::File` is a trip to the blocking pool.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

pub(crate) async fn get_to_file(
    objects: &Objects,
    key: &ObjectKey,
    path: &Path,
) -> Result<ObjectInfo, ObjectsError> {
    let (mut info, mut stream) = objects.get_stream(key).await?;
    let shown = path.display().to_string();
    let io_error = |e| ObjectsError::io("write downloaded file", &shown, e);
    let (file, temp_path) = create_temp_beside(path.to_owned())
        .await
        .map_err(io_error)?;
    let mut file =
        tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, tokio::fs::File::from_std(file));
    let mut hasher = StreamHasher::new();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk).await;
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.flush().await.map_err(io_error)?;
    file.get_ref().sync_all().await.map_err(io_error)?;
    drop(file);
    if size != info.size {
        return Err(io_error(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("object is {} bytes but {size} arrived", info.size),
        )));
    }
    persist(temp_path, path.to_owned())
        .await
        .map_err(io_error)?;
    info.sha256 = Some(hasher.finish().await);
    Ok(info)
}

async fn create_temp_beside(path: PathBuf) -> std::io::Result<(std::fs::File, tempfile::TempPath)> {
    run_blocking(move || {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)?;
        let temp = tempfile::Builder::new()
            .prefix(".flotilla-download-")
            .suffix(".part")
            .tempfile_in(parent)?;
        Ok(temp.into_parts())
    })
    .await
}

async fn persist(temp_path: tempfile::TempPath, path: PathBuf) -> std::io::Result<()> {
    run_blocking(move || temp_path.persist(path).map_err(|e| e.error)).await
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}
