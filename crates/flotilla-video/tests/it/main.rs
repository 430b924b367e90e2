//! Integration tests of flotilla-video against the system FFmpeg, on media generated
//! in temporary directories.

mod support;

// probe(): containers, streams, codecs, dimensions, rates.
mod probe;
// transcode(): frame, faststart, letterbox, trim, intro/outro, watermark.
mod transcode;
// RunControl: progress, cancellation, timeout, dropping the future.
mod control;
// poster(), preview(), hls().
mod extras;
// Empty, truncated, non-media and audio-only inputs; bad requests.
mod hostile;
