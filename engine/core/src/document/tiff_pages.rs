//! Multi-page TIFF (fax and scanner output): one IFD per page.
//!
//! Opening walks the IFD chain once, stopping one past the page limit, and
//! records each page's size and density; rendering seeks to one IFD and decodes
//! only that page, so memory holds one page at a time.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageBuffer, RgbImage};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;
use tiff::ColorType;

use super::density::{self, Dpi, DEFAULT_DPI};
use super::{check_pixels, SourceKind};
use crate::error::DocError;
use crate::limits::Limits;

const KIND: SourceKind = SourceKind::Tiff;
/// Widest sample layout decoded here (RGBA, 16 bits per sample), in bytes per pixel.
const MAX_BYTES_PER_PIXEL: u64 = 8;
/// Cap on one IFD value (e.g. a strip-offset table or ICC profile): 16 MiB holds
/// the offsets of a 2M-strip page, far beyond any real scan.
const MAX_IFD_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// TIFF ResolutionUnit default when the tag is absent (TIFF 6.0: 2 = inch).
const RESOLUTION_UNIT_INCH: u32 = 2;

/// Size and density of one TIFF page.
#[derive(Clone, Debug)]
pub(crate) struct TiffPage {
    pub(crate) size: [u32; 2],
    pub(crate) dpi: Dpi,
}

fn tiff_err(e: tiff::TiffError) -> DocError {
    match e {
        tiff::TiffError::UnsupportedError(u) => DocError::Unsupported {
            kind: KIND,
            reason: u.to_string(),
        },
        other => DocError::malformed(KIND, other),
    }
}

fn open_decoder<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Decoder<Cursor<&'a [u8]>>, DocError> {
    let mut tl = tiff::decoder::Limits::default();
    let buffer = limits.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL);
    tl.decoding_buffer_size = usize::try_from(buffer).unwrap_or(usize::MAX);
    tl.intermediate_buffer_size = tl.decoding_buffer_size;
    tl.ifd_value_size = MAX_IFD_VALUE_BYTES;
    Ok(Decoder::new(Cursor::new(bytes))
        .map_err(tiff_err)?
        .with_limits(tl))
}

fn rational(dec: &mut Decoder<Cursor<&[u8]>>, tag: Tag) -> Option<f32> {
    match dec.find_tag(tag).ok()?? {
        tiff::decoder::ifd::Value::Rational(n, d) if d != 0 => Some(n as f32 / d as f32),
        v => v.into_f64().ok().map(|f| f as f32),
    }
}

fn page_info(dec: &mut Decoder<Cursor<&[u8]>>, limits: &Limits) -> Result<TiffPage, DocError> {
    let (w, h) = dec.dimensions().map_err(tiff_err)?;
    check_pixels(w, h, limits)?;
    let unit = dec
        .find_tag_unsigned::<u32>(Tag::ResolutionUnit)
        .ok()
        .flatten()
        .unwrap_or(RESOLUTION_UNIT_INCH);
    let dpi = match (
        rational(dec, Tag::XResolution),
        rational(dec, Tag::YResolution),
    ) {
        (Some(x), Some(y)) => density::from_resolution_unit(x, y, unit),
        _ => None,
    };
    Ok(TiffPage {
        size: [w, h],
        dpi: dpi.unwrap_or([DEFAULT_DPI; 2]),
    })
}

/// Walks the IFD chain: every page's size (checked against the pixel limit) and density.
pub(crate) fn probe(bytes: &[u8], limits: &Limits) -> Result<Vec<TiffPage>, DocError> {
    let mut dec = open_decoder(bytes, limits)?;
    let mut pages = vec![page_info(&mut dec, limits)?];
    while dec.more_images() {
        if pages.len() as u64 >= u64::from(limits.max_pages) {
            return Err(DocError::TooManyPages {
                pages: pages.len() as u64 + 1,
                limit: limits.max_pages,
            });
        }
        dec.next_image().map_err(tiff_err)?;
        pages.push(page_info(&mut dec, limits)?);
    }
    Ok(pages)
}

/// Decodes page `index` at native size as RGB.
pub(crate) fn decode(bytes: &[u8], index: u32, limits: &Limits) -> Result<RgbImage, DocError> {
    let mut dec = open_decoder(bytes, limits)?;
    dec.seek_to_image(index as usize).map_err(tiff_err)?;
    let (w, h) = dec.dimensions().map_err(tiff_err)?;
    check_pixels(w, h, limits)?;
    let color = dec.colortype().map_err(tiff_err)?;
    let data = dec.read_image().map_err(tiff_err)?;
    let img = to_dynamic(w, h, color, data)?;
    Ok(super::rgb::flatten_to_rgb(img))
}

fn short(what: &str) -> DocError {
    DocError::malformed(
        KIND,
        format!("{what} pixel data is shorter than the page size"),
    )
}

fn buf<P: image::Pixel>(
    w: u32,
    h: u32,
    v: Vec<P::Subpixel>,
    what: &str,
) -> Result<ImageBuffer<P, Vec<P::Subpixel>>, DocError> {
    ImageBuffer::from_raw(w, h, v).ok_or_else(|| short(what))
}

/// Expands bilevel rows (1 bit per pixel, rows padded to a byte; 1 = white after
/// the decoder has applied the photometric interpretation) to 8-bit gray.
fn expand_bilevel(w: u32, h: u32, packed: &[u8]) -> Result<GrayImage, DocError> {
    let row_bytes = (w as usize).div_ceil(8);
    if packed.len() < row_bytes * h as usize {
        return Err(short("bilevel"));
    }
    Ok(GrayImage::from_fn(w, h, |x, y| {
        let byte = packed[y as usize * row_bytes + x as usize / 8];
        let bit = (byte >> (7 - x % 8)) & 1;
        image::Luma([if bit == 1 { 255 } else { 0 }])
    }))
}

/// Naive CMYK -> RGB (`r = 255 * (1 - c) * (1 - k)`), the same conversion the
/// image crate applies to CMYK TIFF and JPEG; no ICC colour management.
fn cmyk_to_rgb(w: u32, h: u32, cmyk: &[u8]) -> Result<RgbImage, DocError> {
    if cmyk.len() < 4 * w as usize * h as usize {
        return Err(short("CMYK"));
    }
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(cmyk.chunks_exact(4)) {
        let k = 255 - u32::from(src[3]);
        for c in 0..3 {
            dst[c] = (((255 - u32::from(src[c])) * k + 127) / 255) as u8;
        }
    }
    Ok(out)
}

fn to_dynamic(
    w: u32,
    h: u32,
    color: ColorType,
    data: DecodingResult,
) -> Result<DynamicImage, DocError> {
    use DecodingResult::{U16, U8};
    Ok(match (color, data) {
        (ColorType::Gray(1), U8(v)) => DynamicImage::ImageLuma8(expand_bilevel(w, h, &v)?),
        (ColorType::Gray(8), U8(v)) => DynamicImage::ImageLuma8(buf(w, h, v, "gray")?),
        (ColorType::Gray(16), U16(v)) => DynamicImage::ImageLuma16(buf(w, h, v, "gray")?),
        (ColorType::GrayA(8), U8(v)) => {
            DynamicImage::ImageLumaA8(buf::<image::LumaA<u8>>(w, h, v, "gray+alpha")?)
        }
        (ColorType::GrayA(16), U16(v)) => DynamicImage::ImageLumaA16(buf(w, h, v, "gray+alpha")?),
        (ColorType::RGB(8), U8(v)) => DynamicImage::ImageRgb8(buf(w, h, v, "RGB")?),
        (ColorType::RGB(16), U16(v)) => DynamicImage::ImageRgb16(buf(w, h, v, "RGB")?),
        (ColorType::RGBA(8), U8(v)) => {
            DynamicImage::ImageRgba8(buf::<image::Rgba<u8>>(w, h, v, "RGBA")?)
        }
        (ColorType::RGBA(16), U16(v)) => DynamicImage::ImageRgba16(buf(w, h, v, "RGBA")?),
        (ColorType::CMYK(8), U8(v)) => DynamicImage::ImageRgb8(cmyk_to_rgb(w, h, &v)?),
        (color, _) => {
            return Err(DocError::Unsupported {
                kind: KIND,
                reason: format!("colour layout {color:?}"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilevel_rows_are_byte_padded() {
        // 10 px wide: 2 bytes per row; row 0 = 1000000001, row 1 = 0111111110.
        let packed = [0b1000_0000, 0b0100_0000, 0b0111_1111, 0b1000_0000];
        let g = expand_bilevel(10, 2, &packed).unwrap();
        assert_eq!(g.get_pixel(0, 0).0, [255]);
        assert_eq!(g.get_pixel(1, 0).0, [0]);
        assert_eq!(g.get_pixel(9, 0).0, [255]);
        assert_eq!(g.get_pixel(0, 1).0, [0]);
        assert_eq!(g.get_pixel(8, 1).0, [255]);
        assert!(matches!(
            expand_bilevel(10, 3, &packed),
            Err(DocError::Malformed { .. })
        ));
    }

    #[test]
    fn cmyk_converts_naively() {
        let rgb = cmyk_to_rgb(2, 1, &[0, 0, 0, 0, 255, 0, 0, 128]).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        // c = 1 -> red 0; k = 128/255 -> (255 * 127 + 127) / 255 = 127.
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 127, 127]);
    }
}
