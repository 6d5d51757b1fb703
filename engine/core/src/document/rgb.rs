//! Conversion of any decoded colour layout to 8-bit RGB.
//!
//! Grayscale, 16-bit, palette and CMYK arrive here already expanded by their
//! decoders; what is left is dropping to 8 bits and compositing alpha on white,
//! which is how a page with transparency looks printed or in a viewer.

use image::{DynamicImage, RgbImage};

/// Flattens any decoded image to RGB8, compositing alpha on a white background.
pub(crate) fn flatten_to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = over_white(u32::from(src[c]), a);
        }
    }
    out
}

/// `c * a + 255 * (1 - a)` in 8-bit fixed point, rounded to nearest.
fn over_white(c: u32, a: u32) -> u8 {
    let v = (c * a + 255 * (255 - a) + 127) / 255;
    v as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, LumaA, Rgba, RgbaImage};

    #[test]
    fn alpha_composites_on_white() {
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 128), 127);
        assert_eq!(over_white(200, 255), 200);
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([10, 20, 30, 0]));
        img.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let rgb = flatten_to_rgb(DynamicImage::ImageRgba8(img));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
        let mut ga = GrayAlphaImage::new(1, 1);
        ga.put_pixel(0, 0, LumaA([0, 51]));
        let rgb = flatten_to_rgb(DynamicImage::ImageLumaA8(ga));
        // 255 * (1 - 51/255) = 204.
        assert_eq!(rgb.get_pixel(0, 0).0, [204, 204, 204]);
    }
}
