//! Letterbox pre-processing: fit the image into a square without distorting it, pad the
//! rest with grey, and remember how to map boxes back.
//!
//! This is the YOLO convention (Ultralytics `LetterBox`): scale by the smaller ratio,
//! centre, pad with grey 114, RGB channels scaled to 0–1, laid out CHW (planar).
//!
//! It runs before every inference, so it is written for speed: the resize is
//! `fast_image_resize`'s SIMD bilinear convolution (the triangle filter `image` would use,
//! several times faster), and the planes are filled row by row from the raw buffer.

use std::time::Instant;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use image::imageops;

use super::BBox;
use super::engine::{Stage, record};

/// The grey the padding is filled with (per channel, 0–255).
pub const LETTERBOX_GREY: u8 = 114;

/// How an image was placed in the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Original pixels × scale = input pixels.
    pub scale: f32,
    /// Columns of padding left of the image.
    pub pad_x: f32,
    /// Rows of padding above the image.
    pub pad_y: f32,
    /// The original image's width.
    pub width: u32,
    /// The original image's height.
    pub height: u32,
}

impl Letterbox {
    /// The placement of a `width × height` image in a `size × size` input, and the resized
    /// image's size.
    pub fn fit(width: u32, height: u32, size: u32) -> (Self, u32, u32) {
        let scale = (f64::from(size) / f64::from(width)).min(f64::from(size) / f64::from(height));
        let fit = |d: u32| ((f64::from(d) * scale).round() as u32).clamp(1, size);
        let (new_w, new_h) = (fit(width), fit(height));
        let letterbox = Self {
            scale: scale as f32,
            pad_x: ((size - new_w) / 2) as f32,
            pad_y: ((size - new_h) / 2) as f32,
            width,
            height,
        };
        (letterbox, new_w, new_h)
    }

    /// Maps a box from input pixels to original-image pixels, clamped to the image.
    pub fn to_original(&self, b: BBox) -> BBox {
        let (w, h) = (self.width as f32, self.height as f32);
        let x0 = ((b.x - self.pad_x) / self.scale).clamp(0.0, w);
        let y0 = ((b.y - self.pad_y) / self.scale).clamp(0.0, h);
        let x1 = ((b.x + b.width - self.pad_x) / self.scale).clamp(0.0, w);
        let y1 = ((b.y + b.height - self.pad_y) / self.scale).clamp(0.0, h);
        BBox {
            x: x0,
            y: y0,
            width: (x1 - x0).max(0.0),
            height: (y1 - y0).max(0.0),
        }
    }
}

/// Letterboxes `image` into a `size × size` CHW tensor of RGB values in 0–1.
pub fn letterbox(image: &RgbImage, size: u32) -> (Vec<f32>, Letterbox) {
    let started = Instant::now();
    let (placement, new_w, new_h) = Letterbox::fit(image.width(), image.height(), size);
    let resized;
    let source = if (new_w, new_h) == image.dimensions() {
        image
    } else {
        resized = resize(image, new_w, new_h);
        &resized
    };
    let tensor = to_tensor(source, size, &placement);
    record(Stage::Pre, started);
    (tensor, placement)
}

/// Bilinear (triangle-filter) resize with SIMD; `image`'s own resize if that refuses.
fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    match Resizer::new().resize(image, &mut out, &options) {
        Ok(()) => out,
        // Only empty images are refused; the portable path handles every size.
        Err(_) => imageops::resize(image, width, height, imageops::FilterType::Triangle),
    }
}

/// 0–255 → 0–1, as `f32::from(v) / 255.0`, looked up instead of divided per value.
const UNIT: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut v = 0;
    while v < 256 {
        table[v] = v as f32 / 255.0;
        v += 1;
    }
    table
};

/// The grey square with `source` copied into its place, planar (R, G, B planes).
fn to_tensor(source: &RgbImage, size: u32, placement: &Letterbox) -> Vec<f32> {
    let side = size as usize;
    let plane = side * side;
    let mut tensor = vec![UNIT[usize::from(LETTERBOX_GREY)]; 3 * plane];
    let width = source.width() as usize;
    if width == 0 {
        return tensor;
    }
    let (pad_x, pad_y) = (placement.pad_x as usize, placement.pad_y as usize);
    let (red, rest) = tensor.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    let rows = source.as_raw().chunks_exact(width * 3);
    for (y, row) in rows.take(source.height() as usize).enumerate() {
        let at = (y + pad_y) * side + pad_x;
        let span = at..at + width;
        let planes = red[span.clone()]
            .iter_mut()
            .zip(&mut green[span.clone()])
            .zip(&mut blue[span]);
        for (((r, g), b), pixel) in planes.zip(row.chunks_exact(3)) {
            *r = UNIT[usize::from(pixel[0])];
            *g = UNIT[usize::from(pixel[1])];
            *b = UNIT[usize::from(pixel[2])];
        }
    }
    tensor
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    const GREY: f32 = LETTERBOX_GREY as f32 / 255.0;

    #[test]
    fn wide_image_is_scaled_to_the_width_and_centred_vertically() {
        let image = RgbImage::from_pixel(200, 100, Rgb([255, 0, 51]));
        let (tensor, lb) = letterbox(&image, 64);
        assert_eq!(
            lb,
            Letterbox {
                scale: 0.32,
                pad_x: 0.0,
                pad_y: 16.0,
                width: 200,
                height: 100
            }
        );
        assert_eq!(tensor.len(), 3 * 64 * 64);
        let at = |c: usize, x: usize, y: usize| tensor[c * 64 * 64 + y * 64 + x];
        for x in [0, 31, 63] {
            assert_eq!(at(0, x, 15), GREY, "row above the image is padding");
            assert_eq!(at(0, x, 16), 1.0, "first image row");
            assert_eq!(at(1, x, 47), 0.0, "last image row, green");
            assert!((at(2, x, 47) - 0.2).abs() < 1e-6, "last image row, blue");
            assert_eq!(at(2, x, 48), GREY, "row below the image is padding");
        }
    }

    #[test]
    fn tall_image_is_centred_horizontally() {
        let image = RgbImage::from_pixel(30, 90, Rgb([0, 255, 0]));
        let (tensor, lb) = letterbox(&image, 96);
        assert!((lb.scale - 96.0 / 90.0).abs() < 1e-6);
        assert_eq!((lb.pad_x, lb.pad_y), (32.0, 0.0));
        let green = |x: usize, y: usize| tensor[96 * 96 + y * 96 + x];
        assert_eq!(
            (green(31, 50), green(32, 50), green(63, 50), green(64, 50)),
            (GREY, 1.0, 1.0, GREY)
        );
    }

    #[test]
    fn image_already_at_size_is_copied_unchanged() {
        let mut image = RgbImage::from_pixel(32, 32, Rgb([0, 0, 0]));
        image.put_pixel(5, 7, Rgb([255, 128, 0]));
        let (tensor, lb) = letterbox(&image, 32);
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (1.0, 0.0, 0.0));
        assert_eq!(tensor[7 * 32 + 5], 1.0);
        assert_eq!(tensor[32 * 32 + 7 * 32 + 5], 128.0 / 255.0);
        assert_eq!(tensor[7 * 32 + 6], 0.0);
    }

    #[test]
    fn resized_pixels_match_the_triangle_filter_within_rounding() {
        let image = RgbImage::from_fn(301, 157, |x, y| {
            Rgb([(x % 256) as u8, (y * 3 % 256) as u8, ((x * y) % 251) as u8])
        });
        let (tensor, lb) = letterbox(&image, 128);
        let (_, new_w, new_h) = Letterbox::fit(301, 157, 128);
        let reference = imageops::resize(&image, new_w, new_h, imageops::FilterType::Triangle);
        let pad_y = lb.pad_y as usize;
        let mut worst = 0.0f32;
        for (x, y, pixel) in reference.enumerate_pixels() {
            for (c, &v) in pixel.0.iter().enumerate() {
                let at = c * 128 * 128 + (y as usize + pad_y) * 128 + x as usize;
                worst = worst.max((tensor[at] * 255.0 - f32::from(v)).abs());
            }
        }
        assert!(worst <= 2.5, "largest difference {worst} of 255");
    }

    #[test]
    fn to_original_inverts_the_placement() {
        let (lb, _, _) = Letterbox::fit(200, 100, 64);
        let whole = lb.to_original(BBox {
            x: 0.0,
            y: 16.0,
            width: 64.0,
            height: 32.0,
        });
        assert_eq!(
            whole,
            BBox {
                x: 0.0,
                y: 0.0,
                width: 200.0,
                height: 100.0
            }
        );
        let inner = lb.to_original(BBox {
            x: 16.0,
            y: 24.0,
            width: 8.0,
            height: 4.0,
        });
        let expected = BBox {
            x: 50.0,
            y: 25.0,
            width: 25.0,
            height: 12.5,
        };
        for (a, b) in [
            (inner.x, expected.x),
            (inner.y, expected.y),
            (inner.width, expected.width),
            (inner.height, expected.height),
        ] {
            assert!((a - b).abs() < 1e-4, "{inner:?} != {expected:?}");
        }
    }

    #[test]
    fn to_original_clamps_to_the_image() {
        let (lb, _, _) = Letterbox::fit(200, 100, 64);
        let spilling = lb.to_original(BBox {
            x: -10.0,
            y: 0.0,
            width: 100.0,
            height: 20.0,
        });
        assert_eq!(
            spilling,
            BBox {
                x: 0.0,
                y: 0.0,
                width: 200.0,
                height: 12.5
            }
        );
        let in_padding = lb.to_original(BBox {
            x: 10.0,
            y: 50.0,
            width: 5.0,
            height: 10.0,
        });
        assert_eq!((in_padding.y, in_padding.height), (100.0, 0.0));
    }
}
