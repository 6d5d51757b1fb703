//! Documents -> pages: sniff the format from the bytes, check the limits, and
//! render pages one at a time as RGB.
//!
//! Supported: PDF (rendered with hayro), multi-page TIFF, PNG, JPEG (EXIF
//! orientation applied) and WebP. Grayscale, CMYK, 16-bit, palette and alpha all
//! end as 8-bit RGB, alpha composited on white. Opening a document parses only
//! what it needs to count pages and read their sizes; each page's pixels exist
//! only while the caller holds its [`Page`].

mod density;
mod pdf;
mod raster;
mod rgb;
mod sniff;
mod tiff_pages;

use std::sync::Arc;

use image::RgbImage;

use crate::error::DocError;
use crate::limits::Limits;

pub use pdf::renders_past_deadline;
pub use raster::{jpeg_passthrough, JpegPassthrough};
pub use sniff::sniff;

pub use crate::source_kind::SourceKind;

/// One decoded page.
#[derive(Clone, Debug)]
pub struct Page {
    /// The page's pixels, upright, 8-bit RGB.
    pub image: RgbImage,
    /// The page's physical size in points (1/72 in), as [`Document::page_size_points`].
    pub size_points: [f32; 2],
}

enum Source {
    Pdf(pdf::PdfDoc),
    Tiff(Vec<tiff_pages::TiffPage>),
    Raster(raster::RasterInfo),
}

/// An opened document: format known, limits checked, pages ready to render
/// one at a time. `Send` and `Sync`, so async workers can move it across tasks.
pub struct Document {
    bytes: Arc<Vec<u8>>,
    limits: Limits,
    kind: SourceKind,
    source: Source,
}

/// Runs a third-party decoder, turning a panic inside it into
/// [`DocError::Malformed`]: hostile bytes must never take the process down.
fn guarded<T>(kind: SourceKind, f: impl FnOnce() -> Result<T, DocError>) -> Result<T, DocError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(DocError::malformed(
            kind,
            format!("decoder crashed: {}", panic_reason(panic)),
        ))
    })
}

/// The message of a caught panic, for error reasons.
pub(crate) fn panic_reason(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Fails with [`DocError::TooManyPixels`] when a `w` x `h` page exceeds the limit.
pub(crate) fn check_pixels(w: u32, h: u32, limits: &Limits) -> Result<(), DocError> {
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(DocError::TooManyPixels {
            width: u64::from(w),
            height: u64::from(h),
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

impl Document {
    /// Opens a document: checks its size, sniffs its format, counts its pages
    /// and reads their sizes (checking the page and pixel limits). Renders nothing.
    pub fn open(bytes: Arc<Vec<u8>>, limits: &Limits) -> Result<Document, DocError> {
        if bytes.is_empty() {
            return Err(DocError::Empty);
        }
        let len = bytes.len() as u64;
        if len > limits.max_bytes {
            return Err(DocError::TooLarge {
                bytes: len,
                limit: limits.max_bytes,
            });
        }
        let kind = sniff(&bytes)?;
        let source = match kind {
            SourceKind::Pdf => Source::Pdf(pdf::open(Arc::clone(&bytes), limits)?),
            SourceKind::Tiff => Source::Tiff(guarded(kind, || tiff_pages::probe(&bytes, limits))?),
            SourceKind::Png | SourceKind::Jpeg | SourceKind::Webp => {
                if limits.max_pages == 0 {
                    return Err(DocError::TooManyPages { pages: 1, limit: 0 });
                }
                Source::Raster(guarded(kind, || raster::probe(kind, &bytes, limits))?)
            }
        };
        Ok(Document {
            bytes,
            limits: limits.clone(),
            kind,
            source,
        })
    }

    /// The detected format.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Number of pages (1 for PNG, JPEG and WebP).
    pub fn page_count(&self) -> u32 {
        match &self.source {
            Source::Pdf(doc) => doc.sizes.len() as u32,
            Source::Tiff(pages) => pages.len() as u32,
            Source::Raster(_) => 1,
        }
    }

    fn check_index(&self, index: u32) -> Result<(), DocError> {
        let count = self.page_count();
        if index >= count {
            return Err(DocError::PageOutOfRange { index, count });
        }
        Ok(())
    }

    /// Page size in PDF points (1/72 in). PDFs: the crop box after `/Rotate`.
    /// Raster pages: `pixels * 72 / dpi`, with dpi from the file (PNG `pHYs`, JFIF,
    /// TIFF or EXIF resolution) and 72 when absent, so an undocumented image
    /// measures one point per pixel. Sizes are of the upright (EXIF-oriented) page.
    pub fn page_size_points(&self, index: u32) -> Result<[f32; 2], DocError> {
        self.check_index(index)?;
        let to_points = |size: [u32; 2], dpi: [f32; 2]| {
            [
                size[0] as f32 * density::POINTS_PER_INCH / dpi[0],
                size[1] as f32 * density::POINTS_PER_INCH / dpi[1],
            ]
        };
        Ok(match &self.source {
            Source::Pdf(doc) => doc.sizes[index as usize],
            Source::Tiff(pages) => {
                let p = &pages[index as usize];
                to_points(p.size, p.dpi)
            }
            Source::Raster(info) => to_points(info.size, info.dpi),
        })
    }

    /// The pixel size [`Self::render`] would give page `index`, without rendering it,
    /// so a manifest can describe pages another invocation tiles.
    pub fn render_size(&self, index: u32, long_side: u32) -> Result<[u32; 2], DocError> {
        self.check_index(index)?;
        if long_side == 0 {
            return Err(DocError::InvalidRenderSize { long_side });
        }
        Ok(match &self.source {
            Source::Pdf(doc) => doc.render_size(index, long_side, &self.limits),
            Source::Tiff(pages) => pages[index as usize].size,
            Source::Raster(info) => info.size,
        })
    }

    /// Renders page `index`. PDF pages render so the longer side is `long_side`
    /// px (capped by `Limits::max_render_side`) on white, within
    /// `Limits::page_timeout`; raster pages decode at native size (pixel limit
    /// checked before allocation) and ignore `long_side`: the tiler resamples them.
    pub fn render(&self, index: u32, long_side: u32) -> Result<Page, DocError> {
        self.check_index(index)?;
        if long_side == 0 {
            return Err(DocError::InvalidRenderSize { long_side });
        }
        let image = match &self.source {
            Source::Pdf(doc) => doc.render(index, long_side, &self.limits)?,
            Source::Tiff(_) => guarded(self.kind, || {
                tiff_pages::decode(&self.bytes, index, &self.limits)
            })?,
            Source::Raster(info) => guarded(self.kind, || {
                raster::decode(info, &self.bytes, &self.limits)
            })?,
        };
        Ok(Page {
            image,
            size_points: self.page_size_points(index)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn document_is_send_and_sync() {
        assert_send_sync::<Document>();
    }

    #[test]
    fn source_kind_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&SourceKind::Webp).unwrap(),
            "\"webp\""
        );
        let k: SourceKind = serde_json::from_str("\"pdf\"").unwrap();
        assert_eq!(k, SourceKind::Pdf);
    }
}
