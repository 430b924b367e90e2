//! SHA-256 of a stream, computed in batches on the blocking pool so hashing never stalls the async executor.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Bytes gathered before one hashing batch runs (about 2 ms of SHA-256).
const BATCH_BYTES: usize = 1024 * 1024;

/// Incremental SHA-256 over chunks of a stream.
#[derive(Default)]
pub struct StreamHasher {
    hasher: Sha256,
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl StreamHasher {
    /// A hasher with nothing hashed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk (a cheap reference-counted clone); hashes a batch off the executor once enough is pending.
    pub async fn update(&mut self, chunk: &Bytes) {
        self.pending_len += chunk.len();
        self.pending.push(chunk.clone());
        if self.pending_len >= BATCH_BYTES {
            self.flush().await;
        }
    }

    /// Hashes what is pending and returns the lowercase hex digest.
    pub async fn finish(mut self) -> String {
        self.flush().await;
        hex::encode(self.hasher.finalize())
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let mut hasher = std::mem::take(&mut self.hasher);
        let hash_batch = move || {
            batch.iter().for_each(|chunk| hasher.update(chunk));
            hasher
        };
        self.hasher = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => match runtime.spawn_blocking(hash_batch).await {
                Ok(hasher) => hasher,
                Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
            },
            Err(_) => hash_batch(),
        };
    }
}

/// SHA-256 of a whole file, as lowercase hex, read on the blocking pool.
pub async fn sha256_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    let path = path.to_owned();
    let digest = tokio::task::spawn_blocking(move || sha256_file_blocking(&path)).await;
    match digest {
        Ok(result) => result,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}

/// SHA-256 and size of a file, read on the calling thread.
pub fn sha256_file_blocking(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size: u64 = 0;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok((size, hex::encode(hasher.finalize()))),
            Ok(read) => {
                hasher.update(&buffer[..read]);
                size += read as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batched_hash_equals_one_shot_hash() {
        let data: Vec<u8> = (0..3 * BATCH_BYTES + 17).map(|i| (i % 251) as u8).collect();
        let mut hasher = StreamHasher::new();
        for chunk in data.chunks(64 * 1024 + 3) {
            hasher.update(&Bytes::copy_from_slice(chunk)).await;
        }
        assert_eq!(hasher.finish().await, hex::encode(Sha256::digest(&data)));
    }

    #[tokio::test]
    async fn empty_stream_hashes_to_the_empty_digest() {
        assert_eq!(
            StreamHasher::new().finish().await,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
