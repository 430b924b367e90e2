//! Pixel filters not provided by the `image` crate: Sobel edge detection.

use image::{DynamicImage, GrayImage};

/// Sobel gradient magnitude of the luma channel, scaled so that a full black-to-white step
/// gives 255. Borders repeat the edge pixel, so a flat image gives no edges at its border.
pub(super) fn sobel_edges(image: &DynamicImage) -> DynamicImage {
    let luma = image.to_luma8();
    let (width, height) = (luma.width() as usize, luma.height() as usize);
    if width == 0 || height == 0 {
        return DynamicImage::ImageLuma8(luma);
    }
    let src = luma.as_raw();
    let mut out = vec![0u8; src.len()];
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        let row = |y: usize| &src[y * width..(y + 1) * width];
        let (up, mid, down) = (
            row(y.saturating_sub(1)),
            row(y),
            row((y + 1).min(height - 1)),
        );
        for (x, out_pixel) in out_row.iter_mut().enumerate() {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(width - 1));
            let p = |row: &[u8], i: usize| i32::from(row[i]);
            let gx = p(up, r) + 2 * p(mid, r) + p(down, r) - p(up, l) - 2 * p(mid, l) - p(down, l);
            let gy = p(down, l) + 2 * p(down, x) + p(down, r) - p(up, l) - 2 * p(up, x) - p(up, r);
            let magnitude = f64::from(gx * gx + gy * gy).sqrt() / 4.0;
            *out_pixel = magnitude.min(255.0) as u8;
        }
    }
    DynamicImage::ImageLuma8(
        GrayImage::from_raw(luma.width(), luma.height(), out).unwrap_or_default(),
    )
}
