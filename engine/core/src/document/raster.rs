//! Single-image documents: PNG, JPEG and WebP.
//!
//! Opening reads only the header (dimensions, EXIF, density) so the pixel limit
//! is enforced before any pixel buffer exists; rendering decodes the whole image
//! at native size, applies EXIF orientation and flattens it to RGB.

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

use super::density::{self, Dpi, DEFAULT_DPI};
use super::{check_pixels, SourceKind};
use crate::error::DocError;
use crate::limits::Limits;

/// Header facts about a single-image document, gathered at open.
#[derive(Clone, Debug)]
pub(crate) struct RasterInfo {
    kind: SourceKind,
    /// Displayed size (after EXIF orientation), in pixels.
    pub(crate) size: [u32; 2],
    pub(crate) dpi: Dpi,
    orientation: Option<u8>,
}

/// Opens a decoder over the bytes; only the header is read.
fn decoder<'a>(kind: SourceKind, bytes: &'a [u8]) -> Result<Box<dyn ImageDecoder + 'a>, DocError> {
    let cursor = Cursor::new(bytes);
    let dec: Box<dyn ImageDecoder + 'a> = match kind {
        SourceKind::Png => {
            Box::new(PngDecoder::new(cursor).map_err(|e| DocError::malformed(kind, e))?)
        }
        SourceKind::Jpeg => {
            Box::new(JpegDecoder::new(cursor).map_err(|e| DocError::malformed(kind, e))?)
        }
        SourceKind::Webp => {
            Box::new(WebPDecoder::new(cursor).map_err(|e| DocError::malformed(kind, e))?)
        }
        SourceKind::Pdf | SourceKind::Tiff => {
            return Err(DocError::Unsupported {
                kind,
                reason: "not a single-image format".into(),
            })
        }
    };
    Ok(dec)
}

/// Image-crate limits matching ours, as a second line of defence inside the decoder.
fn image_limits(limits: &Limits, width: u32, height: u32) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(width);
    l.max_image_height = Some(height);
    // RGBA16 is the widest layout these decoders produce: 8 bytes per pixel.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    l
}

/// Reads the header: dimensions (checked against the pixel limit), EXIF, density.
pub(crate) fn probe(
    kind: SourceKind,
    bytes: &[u8],
    limits: &Limits,
) -> Result<RasterInfo, DocError> {
    let mut dec = decoder(kind, bytes)?;
    let (w, h) = dec.dimensions();
    check_pixels(w, h, limits)?;
    let exif = dec
        .exif_metadata()
        .ok()
        .flatten()
        .map(density::exif_info)
        .unwrap_or_default();
    let native = match kind {
        SourceKind::Png => density::png_phys(bytes),
        SourceKind::Jpeg => density::jpeg_jfif(bytes),
        _ => None,
    };
    let dpi = native.or(exif.dpi).unwrap_or([DEFAULT_DPI; 2]);
    // EXIF orientations 5-8 transpose the image (TIFF/EP 6.2: rotate 90/270 or transverse).
    let transposed = matches!(exif.orientation, Some(5..=8));
    let (size, dpi) = if transposed {
        ([h, w], [dpi[1], dpi[0]])
    } else {
        ([w, h], dpi)
    };
    Ok(RasterInfo {
        kind,
        size,
        dpi,
        orientation: exif.orientation,
    })
}

/// Decodes the image at native size, upright and as RGB.
pub(crate) fn decode(
    info: &RasterInfo,
    bytes: &[u8],
    limits: &Limits,
) -> Result<RgbImage, DocError> {
    let kind = info.kind;
    let mut dec = decoder(kind, bytes)?;
    let (w, h) = dec.dimensions();
    check_pixels(w, h, limits)?;
    dec.set_limits(image_limits(limits, w, h))
        .map_err(|e| DocError::malformed(kind, e))?;
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| DocError::malformed(kind, e))?;
    if let Some(o) = info.orientation.and_then(Orientation::from_exif) {
        img.apply_orientation(o);
    }
    Ok(super::rgb::flatten_to_rgb(img))
}

/// A JPEG that can be placed in a PDF as it is (`/DCTDecode`): its stored pixels are the
/// upright page (no EXIF rotation) in grey or RGB (YCbCr), so a viewer decoding the same
/// bytes shows what was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JpegPassthrough {
    pub width: u32,
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub components: u8,
}

/// [`JpegPassthrough`] facts of a JPEG upload, or `None` when its bytes cannot be passed
/// through unchanged (EXIF orientation other than upright, CMYK, not a JPEG).
pub fn jpeg_passthrough(bytes: &[u8]) -> Option<JpegPassthrough> {
    let run = || {
        let mut dec = JpegDecoder::new(Cursor::new(bytes)).ok()?;
        let orientation = dec
            .exif_metadata()
            .ok()
            .flatten()
            .map(density::exif_info)
            .unwrap_or_default()
            .orientation;
        if orientation.is_some_and(|o| o != 1) {
            return None;
        }
        let components = match dec.color_type() {
            image::ColorType::L8 => 1,
            image::ColorType::Rgb8 => 3,
            _ => return None,
        };
        let (width, height) = dec.dimensions();
        Some(JpegPassthrough {
            width,
            height,
            components,
        })
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .ok()
        .flatten()
}
