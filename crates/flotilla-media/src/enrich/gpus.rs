//! GPU slots: one AI job per GPU at a time.
//!
//! A worker started with `--gpus N` (or on a machine where N NVIDIA devices are found)
//! loads its detectors once per GPU, each copy pinned to its device ([`ModelConfig::on_gpu`]
//! in `flotilla-ai`), and an `ai.*` job takes a free slot for as long as it runs: the
//! index of the GPU whose copy it uses. A GPU's memory then holds one model copy and one
//! job's tensors, and N jobs use N GPUs. Without GPUs there are no slots: the detectors are
//! loaded once and a detector runs one inference at a time.
//!
//! [`ModelConfig::on_gpu`]: flotilla_ai::ModelConfig::on_gpu

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The free GPU indices of a worker, and a permit per free GPU.
#[derive(Debug)]
pub struct GpuSlots {
    free: Mutex<Vec<u32>>,
    permits: Arc<Semaphore>,
}

/// A GPU taken by one job; given back when dropped.
#[derive(Debug)]
pub struct GpuSlot {
    index: u32,
    slots: Arc<GpuSlots>,
    _permit: OwnedSemaphorePermit,
}

impl GpuSlots {
    /// Slots for GPUs `0..count`.
    pub fn new(count: u32) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new((0..count).rev().collect()),
            permits: Arc::new(Semaphore::new(count as usize)),
        })
    }

    /// Waits for a free GPU and takes it.
    pub async fn acquire(self: &Arc<Self>) -> GpuSlot {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // A permit guarantees a free index: indices go back before their permit does.
        let index = self.lock().pop().expect("a free GPU for every permit");
        GpuSlot {
            index,
            slots: self.clone(),
            _permit: permit,
        }
    }

    /// How many GPUs are free now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GpuSlot {
    /// The GPU's index (`cuda:{index}`).
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for GpuSlot {
    fn drop(&mut self) {
        // Runs before the permit is released (fields drop after this), so a waiter woken
        // by the permit always finds this index free.
        self.slots.lock().push(self.index);
    }
}

/// The NVIDIA GPUs this machine shows: the driver's `/dev/nvidia0`, `/dev/nvidia1`, ...
/// device files (0 without the driver).
pub fn detect_gpus() -> u32 {
    count_gpu_devices(Path::new("/dev"))
}

fn count_gpu_devices(dev: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    let is_gpu = |name: &str| {
        name.strip_prefix("nvidia")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let count = entries
        .filter_map(Result::ok)
        .filter(|e| is_gpu(&e.file_name().to_string_lossy()))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn each_job_gets_its_own_gpu_and_the_next_waits_for_one_to_free() {
        let slots = GpuSlots::new(2);
        let a = slots.acquire().await;
        let b = slots.acquire().await;
        assert_ne!(a.index(), b.index());
        assert_eq!([a.index().min(b.index()), a.index().max(b.index())], [0, 1]);
        assert_eq!(slots.free(), 0);
        let mut third = Box::pin(slots.acquire());
        assert!((&mut third).now_or_never().is_none(), "no GPU is free");
        let freed = b.index();
        drop(b);
        let c = third.now_or_never().expect("the freed GPU");
        assert_eq!(c.index(), freed);
        drop((a, c));
        assert_eq!(slots.free(), 2);
    }

    #[test]
    fn gpu_device_files_are_counted_and_others_ignored() {
        let dev = tempfile::tempdir().unwrap();
        for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(dev.path().join(name), "").unwrap();
        }
        assert_eq!(count_gpu_devices(dev.path()), 2);
        assert_eq!(count_gpu_devices(&dev.path().join("missing")), 0);
    }
}
