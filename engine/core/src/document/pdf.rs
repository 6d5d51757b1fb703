//! PDF pages rendered with hayro (pure Rust: no pdfium/poppler in the Lambda).
//!
//! hayro decodes every image filter scanned PDFs use (DCT, CCITT G4, JBIG2,
//! JPEG 2000, Flate), honours `/Rotate` and the crop box, and does not decrypt
//! password-protected files (reported as [`DocError::Encrypted`]).
//!
//! **Time limit.** hayro 0.9 has no cancellation hook: its interpreter runs a
//! page's content stream to the end. So each page renders on its own thread and
//! the caller waits at most `Limits::page_timeout`. On timeout the caller gets
//! [`DocError::RenderTimeout`] at once, but the thread cannot be killed: it runs
//! the page to completion (its memory is bounded by the pixmap size, its CPU is
//! not) and then exits, dropping its result. [`renders_past_deadline`] counts
//! such threads so a long-lived worker can stop taking work (or restart) while
//! any are alive; a Lambda invocation's own timeout ends them with the process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;

use hayro::hayro_interpret::util::TransformExt;
use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::{LoadPdfError, Pdf};
use hayro::kurbo::Affine;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::vello_cpu::{Pixmap, RasterizerSettings, RenderContext, Resources, TargetInit};
use hayro::{render_into, RenderCache, RenderSettings};
use image::RgbImage;

use super::{check_pixels, panic_reason, SourceKind};
use crate::error::DocError;
use crate::limits::Limits;

const KIND: SourceKind = SourceKind::Pdf;
/// hayro's pixmaps (vello_cpu) address pixels with `u16`, so no side can exceed this.
const MAX_PIXMAP_SIDE: u32 = u16::MAX as u32;
/// A complete PDF ends with `%%EOF`; readers accept it within the last 1,024
/// bytes (Adobe PDF Reference 1.7, implementation note 18). Its absence means
/// the upload was cut short.
const EOF_MARKER_SEARCH: usize = 1024;
/// Stack for render threads: hayro recurses into nested forms, patterns and
/// Type 3 glyphs; 16 MiB of address space (committed only as used) leaves room
/// beyond the 2 MiB default of spawned threads.
const RENDER_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Render threads still running after their caller gave up on them.
static PAST_DEADLINE: AtomicUsize = AtomicUsize::new(0);

/// Number of PDF render threads that overran `page_timeout` and are still
/// running (see the module docs); zero in a healthy process.
pub fn renders_past_deadline() -> usize {
    PAST_DEADLINE.load(Ordering::SeqCst)
}

/// An opened PDF: the parsed document plus each page's size in points.
pub(crate) struct PdfDoc {
    pdf: Arc<Pdf>,
    /// Page sizes after crop box and `/Rotate`, in points.
    pub(crate) sizes: Vec<[f32; 2]>,
}

/// The page count the document's page tree root declares (`/Root /Pages /Count`).
fn declared_page_count(pdf: &Pdf) -> Option<i64> {
    let catalog = pdf
        .xref()
        .get::<hayro::hayro_syntax::object::Dict<'_>>(pdf.xref().root_id())?;
    let pages = catalog.get::<hayro::hayro_syntax::object::Dict<'_>>(b"Pages")?;
    pages.get::<i64>(b"Count")
}

/// Parses the PDF and checks the page limit; renders nothing.
pub(crate) fn open(bytes: Arc<Vec<u8>>, limits: &Limits) -> Result<PdfDoc, DocError> {
    let tail = &bytes[bytes.len().saturating_sub(EOF_MARKER_SEARCH)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(DocError::malformed(
            KIND,
            "truncated: no %%EOF marker in the last 1024 bytes",
        ));
    }
    let parsed = catch_unwind(AssertUnwindSafe(|| Pdf::new(bytes)))
        .map_err(|p| DocError::malformed(KIND, format!("parser crashed: {}", panic_reason(p))))?;
    let pdf = match parsed {
        Ok(pdf) => pdf,
        Err(LoadPdfError::Decryption(_)) => return Err(DocError::Encrypted),
        Err(LoadPdfError::Invalid) => {
            return Err(DocError::malformed(
                KIND,
                "no readable cross-reference table or page tree",
            ))
        }
    };
    let found = pdf.pages().len() as u64;
    let declared = declared_page_count(&pdf).unwrap_or(0).max(0) as u64;
    let pages = found.max(declared);
    if pages > u64::from(limits.max_pages) {
        return Err(DocError::TooManyPages {
            pages,
            limit: limits.max_pages,
        });
    }
    if found == 0 {
        return Err(DocError::NoPages);
    }
    check_declared_images(&pdf, limits)?;
    let sizes = pdf
        .pages()
        .iter()
        .map(|p| {
            let (w, h) = p.render_dimensions();
            [w, h]
        })
        .collect();
    Ok(PdfDoc {
        pdf: Arc::new(pdf),
        sizes,
    })
}

/// Refuses, before anything is decoded, a document holding an image XObject whose declared
/// `/Width x /Height` exceeds the pixel budget: decoding it would allocate that many
/// samples whatever the page is rendered at. (Inline images and image sizes hidden inside
/// codestreams are bounded by the render child's memory limit instead.)
fn check_declared_images(pdf: &Pdf, limits: &Limits) -> Result<(), DocError> {
    use hayro::hayro_syntax::object::{Name, Object};
    let scan = catch_unwind(AssertUnwindSafe(|| {
        for object in pdf.objects() {
            let Object::Stream(stream) = object else {
                continue;
            };
            let dict = stream.dict();
            if dict
                .get::<Name>(b"Subtype")
                .is_none_or(|n| n.as_ref() != b"Image")
            {
                continue;
            }
            let side = |key: &[u8]| dict.get::<f64>(key).unwrap_or(0.0).max(0.0) as u64;
            let (w, h) = (side(b"Width"), side(b"Height"));
            if w.saturating_mul(h) > limits.max_pixels {
                return Err(DocError::TooManyPixels {
                    width: w,
                    height: h,
                    limit: limits.max_pixels,
                });
            }
        }
        Ok(())
    }));
    scan.unwrap_or_else(|p| {
        Err(DocError::malformed(
            KIND,
            format!("parser crashed: {}", panic_reason(p)),
        ))
    })
}

/// Pixel size of a page rendered with its longer side `long_side` px.
fn pixel_size(size_pt: [f32; 2], long_side: u32) -> [u32; 2] {
    let scale = long_side as f32 / size_pt[0].max(size_pt[1]);
    let side = |pt: f32| ((pt * scale).round() as u32).clamp(1, long_side);
    [side(size_pt[0]), side(size_pt[1])]
}

impl PdfDoc {
    /// Pixel size [`Self::render`] gives page `index` for `long_side`, without rendering.
    pub(crate) fn render_size(&self, index: u32, long_side: u32, limits: &Limits) -> [u32; 2] {
        let side = long_side.min(limits.max_render_side).min(MAX_PIXMAP_SIDE);
        pixel_size(self.sizes[index as usize], side)
    }

    /// Renders page `index` (white background) so its long side is
    /// `min(long_side, limits.max_render_side)` px, within `limits.page_timeout`.
    pub(crate) fn render(
        &self,
        index: u32,
        long_side: u32,
        limits: &Limits,
    ) -> Result<RgbImage, DocError> {
        let [w, h] = self.render_size(index, long_side, limits);
        check_pixels(w, h, limits)?;
        let pdf = Arc::clone(&self.pdf);
        let abandoned = Arc::new(AtomicBool::new(false));
        let abandoned_in_thread = Arc::clone(&abandoned);
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("pdf-render-{index}"))
            .stack_size(RENDER_STACK_BYTES)
            .spawn(move || {
                let result = render_page(&pdf, index as usize, w, h);
                // Send fails only when the caller has stopped waiting.
                let _ = tx.send(result);
                if abandoned_in_thread.load(Ordering::SeqCst) {
                    PAST_DEADLINE.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|e| DocError::malformed(KIND, format!("cannot start render thread: {e}")))?;
        match rx.recv_timeout(limits.page_timeout) {
            Ok(img) => Ok(img),
            Err(RecvTimeoutError::Timeout) => {
                // Count before flagging so the thread's decrement never underflows.
                PAST_DEADLINE.fetch_add(1, Ordering::SeqCst);
                abandoned.store(true, Ordering::SeqCst);
                // The thread may have finished between the timeout and the flag.
                if let Ok(img) = rx.try_recv() {
                    return Ok(img);
                }
                Err(DocError::RenderTimeout {
                    page: index,
                    seconds: limits.page_timeout.as_secs_f64(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(DocError::malformed(
                KIND,
                format!("renderer crashed on page {index}"),
            )),
        }
    }
}

/// Renders one page into a `w` x `h` RGB image (runs on the render thread).
fn render_page(pdf: &Pdf, index: usize, w: u32, h: u32) -> RgbImage {
    let page = &pdf.pages()[index];
    let (pw, ph) = page.render_dimensions();
    let cache = RenderCache::new();
    let mut ctx = RenderContext::new(w as u16, h as u16);
    // Same transform as `hayro::render`, but with separate x/y scales so the
    // output has exactly the pixel size asked for.
    let transform =
        Affine::scale_non_uniform(f64::from(w) / f64::from(pw), f64::from(h) / f64::from(ph))
            * page.initial_transform(true).to_kurbo();
    render_into(
        page,
        &cache,
        &InterpreterSettings::default(),
        &RenderSettings::default(),
        &mut ctx,
        transform,
    );
    ctx.flush();
    let mut pixmap = Pixmap::new(ctx.width(), ctx.height());
    ctx.render_with(
        &mut pixmap,
        &mut Resources::default(),
        RasterizerSettings {
            target_init: TargetInit::Clear(WHITE),
            ..Default::default()
        },
    );
    // The background is opaque white, so every pixel has alpha 255 and its
    // premultiplied colour is its colour.
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(pixmap.data()) {
        dst.0 = [src.r, src.g, src.b];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_side_is_exact_and_aspect_kept() {
        assert_eq!(pixel_size([612.0, 792.0], 1024), [791, 1024]);
        assert_eq!(pixel_size([792.0, 612.0], 1024), [1024, 791]);
        // A sliver page keeps at least one pixel.
        assert_eq!(pixel_size([10_000.0, 1.0], 100), [100, 1]);
    }
}
