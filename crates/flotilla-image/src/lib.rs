//! Flotilla's image library: inspect, decode, transform and encode images safely, for the
//! built-in `image.*` job handlers. It knows nothing of queues or HTTP; every function is
//! blocking and CPU-bound, so async callers run it under `spawn_blocking`.
//!
//! Input is hostile by default. Limits on file size, dimensions and pixel count are checked
//! from the header before any pixel is decoded (decompression bombs cost a few bytes of
//! reading), containers are walked to their end marker so truncated files fail clearly, and
//! every failure is an [`ImageError`] with a stable [`code`](ImageError::code) and a
//! [`retry verdict`](ImageError::is_retryable): only I/O errors are retryable.
//!
//! [`render_all`] is shaped for throughput: it decodes once for all renditions and, when
//! every rendition is a downscale, decodes JPEGs at 1/2, 1/4 or 1/8 scale in the DCT
//! domain (`jpeg-decoder`); resizing is SIMD (`fast_image_resize`).
//!
//! # Layout
//! - [`error`]: [`ImageError`], its codes and retry verdicts.
//! - [`limits`]: [`Limits`] and their checks.
//! - [`format`](mod@format): [`ImageFormat`] detection by content, and [`OutputFormat`].
//! - [`inspect`](mod@inspect): [`inspect()`] and [`ImageInfo`] (header and EXIF, no decode).
//! - [`decode`](mod@decode): [`decode()`] and [`Image`] (upright pixels).
//! - [`ops`]: [`Op`] and [`apply`]: resize, thumbnail, grayscale, blur, brightness, edges,
//!   watermark.
//! - [`encode`](mod@encode): [`encode()`], atomic writes of JPEG, PNG and (lossless) WebP.
//! - [`rendition`]: [`Rendition`], [`render_all`] and [`RenderedOutput`].
//! - [`chain`]: [`process_file`] and the seed's [`seed_filter_chain`].
//!
//! # Invariants
//! - No pixel buffer is allocated for an input before its declared size passed [`Limits`].
//! - Outputs appear whole or not at all (written to a temporary name, then renamed).
//! - EXIF is advisory: a broken EXIF block never fails an image whose pixels decode.

pub mod chain;
pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod inspect;
pub mod limits;
mod metadata;
pub mod ops;
pub mod rendition;
mod structure;

pub use chain::{process_file, seed_filter_chain};
pub use decode::{Image, decode};
pub use encode::encode;
pub use error::ImageError;
pub use format::{DEFAULT_JPEG_QUALITY, ImageFormat, OutputFormat, detect_format};
pub use image::DynamicImage;
pub use inspect::{ImageInfo, inspect};
pub use limits::Limits;
pub use ops::{Fit, MAX_OUTPUT_DIMENSION, Op, Position, apply};
pub use rendition::{RenderedOutput, Rendition, render_all};
