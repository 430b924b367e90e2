//! Directory targets: copy to a temporary name beside the destination, verify, then rename into place.

use std::io::Write;
use std::path::{Path, PathBuf};

use flotilla_objects::hashing::sha256_file_blocking;

use crate::config::DirTarget;
use crate::distributor::Attempt;
use crate::{DeliveryError, Receipt};

/// What the blocking copy found wrong.
enum CopyFailure {
    Io(&'static str, std::io::Error),
    Mismatch(String),
}

pub(crate) async fn deliver(
    attempt: &Attempt<'_>,
    target: &DirTarget,
) -> Result<Receipt, DeliveryError> {
    let destination = target.path.join(attempt.name.as_str());
    let source = attempt.delivery.file.clone();
    let (size, sha256) = (
        attempt.delivery.size,
        attempt.delivery.sha256.to_ascii_lowercase(),
    );
    let copy_to = destination.clone();
    let outcome =
        tokio::task::spawn_blocking(move || copy_verified(&source, &copy_to, size, &sha256)).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    };
    match outcome {
        Ok(()) => Ok(attempt.receipt(destination.display().to_string(), &["size", "sha256"])),
        Err(CopyFailure::Io(step, e)) => Err(attempt
            .errors
            .io(format!("{step} {}", destination.display()), e)),
        Err(CopyFailure::Mismatch(detail)) => Err(attempt.errors.mismatch(detail)),
    }
}

/// Copies `source` to a temporary file in the destination's directory, checks what landed, and renames it
/// over `destination`. On any failure the temporary file is removed (by `NamedTempFile`'s drop).
fn copy_verified(
    source: &Path,
    destination: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), CopyFailure> {
    let parent = destination
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent)
        .map_err(|e| CopyFailure::Io("creating the directory of", e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".flotilla-")
        .suffix(".part")
        .tempfile_in(&parent)
        .map_err(|e| CopyFailure::Io("creating a temporary file for", e))?;
    let mut input =
        std::fs::File::open(source).map_err(|e| CopyFailure::Io("opening the source for", e))?;
    std::io::copy(&mut input, temp.as_file_mut()).map_err(|e| CopyFailure::Io("copying to", e))?;
    temp.as_file_mut()
        .flush()
        .map_err(|e| CopyFailure::Io("flushing", e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| CopyFailure::Io("syncing", e))?;
    let (landed_size, landed_sha) =
        sha256_file_blocking(temp.path()).map_err(|e| CopyFailure::Io("reading back", e))?;
    if landed_size != size || landed_sha != sha256 {
        return Err(CopyFailure::Mismatch(format!(
            "landed {landed_size} bytes with sha256 {landed_sha}, expected {size} bytes with sha256 {sha256}"
        )));
    }
    temp.persist(destination)
        .map_err(|e| CopyFailure::Io("renaming into place", e.error))?;
    Ok(())
}
