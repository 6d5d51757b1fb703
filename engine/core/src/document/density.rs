//! Physical size of raster pages: pixel density and EXIF orientation.
//!
//! A raster page's size in points is `pixels * 72 / dpi`. The density comes from
//! the format's own field (PNG `pHYs`, JPEG JFIF `APP0`, TIFF `XResolution`),
//! else from EXIF `XResolution`, else [`DEFAULT_DPI`]: with no metadata one
//! pixel is one point, the convention of PIL and of image-to-PDF tools.

/// Points per inch (PDF user space unit, ISO 32000-1 section 8.3.2.3).
pub(crate) const POINTS_PER_INCH: f32 = 72.0;
/// Density assumed when the file records none (1 px = 1 pt, as PIL and img2pdf do).
pub(crate) const DEFAULT_DPI: f32 = 72.0;
/// Densities outside this range are treated as absent: real scanners and
/// cameras record 50-2400 dpi, and bogus values (0, 1, 65535) are common.
const PLAUSIBLE_DPI: std::ops::RangeInclusive<f32> = 10.0..=10_000.0;
const CM_PER_INCH: f32 = 2.54;
const METERS_PER_INCH: f32 = 0.0254;

/// Horizontal and vertical density in dots per inch.
pub(crate) type Dpi = [f32; 2];

/// Returns `Some` when both densities are plausible.
pub(crate) fn plausible(dpi: Dpi) -> Option<Dpi> {
    (PLAUSIBLE_DPI.contains(&dpi[0]) && PLAUSIBLE_DPI.contains(&dpi[1])).then_some(dpi)
}

/// Converts a density given in `unit` (TIFF/EXIF ResolutionUnit: 2 = inch,
/// 3 = centimetre; 1 = no unit) to dpi.
pub(crate) fn from_resolution_unit(x: f32, y: f32, unit: u32) -> Option<Dpi> {
    match unit {
        2 => plausible([x, y]),
        3 => plausible([x * CM_PER_INCH, y * CM_PER_INCH]),
        _ => None,
    }
}

/// Density from a PNG `pHYs` chunk (PNG spec 11.3.5.3: pixels per metre when unit is 1).
pub(crate) fn png_phys(bytes: &[u8]) -> Option<Dpi> {
    let mut pos = 8; // after the signature
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().ok()?) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = bytes.get(pos + 8..(pos + 8).checked_add(len)?)?;
        match kind {
            b"pHYs" if data.len() == 9 && data[8] == 1 => {
                let x = u32::from_be_bytes(data[0..4].try_into().ok()?) as f32;
                let y = u32::from_be_bytes(data[4..8].try_into().ok()?) as f32;
                return plausible([x * METERS_PER_INCH, y * METERS_PER_INCH]);
            }
            // pHYs must precede the image data.
            b"IDAT" | b"IEND" => return None,
            _ => {}
        }
        pos = pos.checked_add(12 + len)?; // length, type, data, CRC
    }
    None
}

/// Density from a JPEG JFIF `APP0` segment (JFIF 1.02: units 1 = dpi, 2 = dots per cm).
pub(crate) fn jpeg_jfif(bytes: &[u8]) -> Option<Dpi> {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return None;
        }
        let marker = bytes[pos + 1];
        // Start of scan: headers are over.
        if marker == 0xDA {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let seg = bytes.get(pos + 4..pos + 2 + len)?;
        if marker == 0xE0 && seg.len() >= 12 && seg.starts_with(b"JFIF\0") {
            let x = f32::from(u16::from_be_bytes([seg[8], seg[9]]));
            let y = f32::from(u16::from_be_bytes([seg[10], seg[11]]));
            return match seg[7] {
                1 => plausible([x, y]),
                2 => plausible([x * CM_PER_INCH, y * CM_PER_INCH]),
                _ => None,
            };
        }
        pos += 2 + len;
    }
    None
}

/// What EXIF says about a raster page.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ExifInfo {
    /// EXIF Orientation (1-8), when present and valid.
    pub(crate) orientation: Option<u8>,
    /// EXIF XResolution/YResolution, when present and plausible.
    pub(crate) dpi: Option<Dpi>,
}

/// Parses a raw EXIF block (a TIFF structure, as image decoders return it).
/// Unreadable EXIF is ignored: it never makes the pixels unusable.
pub(crate) fn exif_info(raw: Vec<u8>) -> ExifInfo {
    let Ok(exif) = exif::Reader::new().read_raw(raw) else {
        return ExifInfo::default();
    };
    let uint = |tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
    };
    let rational = |tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .and_then(|f| match &f.value {
                exif::Value::Rational(v) => v.first().map(|r| r.to_f64() as f32),
                _ => None,
            })
    };
    let orientation = uint(exif::Tag::Orientation)
        .filter(|o| (1..=8).contains(o))
        .map(|o| o as u8);
    let dpi = match (
        rational(exif::Tag::XResolution),
        rational(exif::Tag::YResolution),
    ) {
        (Some(x), Some(y)) => {
            from_resolution_unit(x, y, uint(exif::Tag::ResolutionUnit).unwrap_or(2))
        }
        _ => None,
    };
    ExifInfo { orientation, dpi }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_phys_reads_pixels_per_metre() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&[0; 4]);
        };
        chunk(b"IHDR", &[0; 13]);
        // 11811 px/m = 299.99 dpi.
        let mut phys = 11811u32.to_be_bytes().to_vec();
        phys.extend_from_slice(&11811u32.to_be_bytes());
        phys.push(1);
        chunk(b"pHYs", &phys);
        let dpi = png_phys(&png).unwrap();
        assert!((dpi[0] - 300.0).abs() < 0.1, "{dpi:?}");
    }

    #[test]
    fn implausible_densities_are_ignored() {
        assert_eq!(plausible([0.0, 300.0]), None);
        assert_eq!(from_resolution_unit(300.0, 300.0, 1), None);
        assert_eq!(from_resolution_unit(100.0, 100.0, 3), Some([254.0, 254.0]));
    }
}
