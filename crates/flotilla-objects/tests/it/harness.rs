use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_objects::Objects;
use flotilla_objects::testing::MotoServer;
use futures::Stream;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A fresh, empty store plus a way to look for anything a failed write left behind.
pub(crate) struct Harness {
    pub(crate) objects: Objects,
    pub(crate) backend: Backend,
    /// Scratch space for files read and written by the tests.
    pub(crate) scratch: TempDir,
}

pub(crate) enum Backend {
    Local(TempDir),
    S3 {
        server: &'static MotoServer,
        bucket: String,
    },
}

impl Harness {
    pub(crate) async fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::local(&dir.path().join("store")).unwrap();
        Self {
            objects,
            backend: Backend::Local(dir),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) async fn s3() -> Self {
        let server = MotoServer::shared();
        let bucket = server.create_bucket().await.unwrap();
        let options = flotilla_objects::OpenOptions {
            credentials: Some(MotoServer::credentials()),
            ..Default::default()
        };
        let objects = Objects::open_with(&server.store_url(&bucket, "tenant"), options).unwrap();
        Self {
            objects,
            backend: Backend::S3 { server, bucket },
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// Files on disk (local) or unfinished multipart uploads (S3): what an aborted write must not leave.
    pub(crate) async fn leftovers(&self) -> Vec<String> {
        match &self.backend {
            Backend::Local(dir) => files_under(&dir.path().join("store")),
            Backend::S3 { server, bucket } => {
                let listing = reqwest::get(format!("{}/{bucket}?uploads", server.endpoint()))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                listing
                    .match_indices("<Upload>")
                    .map(|_| "multipart upload".to_owned())
                    .collect()
            }
        }
    }

    pub(crate) fn local_root(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(dir) => Some(dir.path().join("store")),
            Backend::S3 { .. } => None,
        }
    }
}

fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Deterministic pseudo-random bytes.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `data` as a stream of irregular chunks, like a network body.
pub(crate) fn chunked(
    data: Vec<u8>,
    chunk: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let data = Bytes::from(data);
    let pieces: Vec<_> = (0..data.len())
        .step_by(chunk)
        .map(|start| Ok(data.slice(start..(start + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(pieces)
}

/// `len` bytes, then an I/O error, like a client that disconnects mid-upload.
pub(crate) fn failing_after(
    len: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let good = chunked(random_bytes(len, 7), 64 * 1024);
    let failure = futures::stream::once(async {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    });
    futures::StreamExt::chain(good, failure)
}
