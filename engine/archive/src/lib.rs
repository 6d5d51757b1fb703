//! A document's results as the files archives and digital-library tools import, made
//! once when its last page is done (the worker's completion step, locally and in the
//! cloud): `results/<doc_id>.txt`, `.hocr` (hOCR 1.2), `.alto.xml` (ALTO v4) and `.pdf`
//! (the original pages with an invisible, searchable text layer).
//!
//! Everything here is a plain function of the merged result, the page error records
//! and the upload's bytes: no store, no runtime. The worker writes what [`make`]
//! returns, each file once and atomically.

pub mod alto;
pub mod hocr;
pub mod pages;
mod pdf_font;
pub mod searchable_pdf;
pub mod text;

use std::collections::BTreeMap;

use sphinx_core::isolate::Renderer;
use sphinx_core::keys;
use sphinx_core::result::{DocumentResult, OutputRecord};
use sphinx_core::{OutputFormat, OutputFormats};

pub use pages::{ocr_pages, Line, Page, PageSize, PageText};
pub use searchable_pdf::{searchable_pdf, Upload};

/// What to make for one document.
pub struct Request<'a> {
    pub result: &'a DocumentResult,
    /// Why each page without a result failed (`code: message` of its error record).
    pub failed_pages: &'a BTreeMap<u32, String>,
    /// The upload's name (its key below the inbox), as hOCR `image` and ALTO `fileName`.
    pub source_name: &'a str,
    /// The upload, or why it cannot be read (then there is no PDF).
    pub upload: Result<Upload<'a>, String>,
    pub formats: &'a OutputFormats,
    /// The OCR system named in the files' metadata (e.g. `sphinx-x <model id>`).
    pub system: &'a str,
}

/// One file to write.
#[derive(Debug)]
pub struct File {
    pub format: OutputFormat,
    pub key: String,
    pub bytes: Vec<u8>,
}

/// The files made, and one record per requested format (written, or why not).
#[derive(Debug, Default)]
pub struct Archives {
    pub files: Vec<File>,
    pub records: Vec<OutputRecord>,
}

/// Makes every requested format other than JSON.
pub fn make(req: &Request<'_>) -> Archives {
    let mut out = Archives::default();
    let requested: Vec<OutputFormat> = req.formats.archives().collect();
    if requested.is_empty() {
        return out;
    }
    let sizes = failed_page_sizes(req);
    let pages = ocr_pages(req.result, req.failed_pages, &sizes);
    let doc_id = &req.result.doc_id;
    for format in requested {
        let pages = match &pages {
            Ok(p) => p,
            Err(reason) => {
                out.records.push(skipped(format, reason.clone()));
                continue;
            }
        };
        let made = match format {
            OutputFormat::Txt => Ok(text::plain_text(pages)),
            OutputFormat::Hocr => Ok(hocr::hocr(pages, req.source_name, req.system)),
            OutputFormat::Alto => Ok(alto::alto(pages, req.source_name, req.system)),
            OutputFormat::Pdf => match &req.upload {
                Ok(upload) => searchable_pdf(pages, upload),
                Err(why) => Err(why.clone()),
            },
            OutputFormat::Json => continue,
        };
        match made {
            Ok(bytes) => {
                let key = keys::document_output(doc_id, format);
                out.records.push(OutputRecord {
                    format,
                    key: Some(key.clone()),
                    reason: None,
                    pages_without_text: pages::pages_without_text(pages),
                });
                out.files.push(File { format, key, bytes });
            }
            Err(reason) => out.records.push(skipped(format, reason)),
        }
    }
    out
}

fn skipped(format: OutputFormat, reason: String) -> OutputRecord {
    OutputRecord {
        format,
        key: None,
        reason: Some(reason),
        pages_without_text: Vec::new(),
    }
}

/// Sizes of the pages that have no result, read from the upload (in the render child),
/// so a failed page keeps its size in hOCR and ALTO.
fn failed_page_sizes(req: &Request<'_>) -> BTreeMap<u32, PageSize> {
    let mut sizes = BTreeMap::new();
    let result = req.result;
    if result.pages.len() as u32 == result.page_count {
        return sizes;
    }
    let (Ok(upload), Some(first)) = (&req.upload, result.pages.first()) else {
        return sizes;
    };
    let long_side = first.frame.canvas;
    let info = Renderer::with(upload.isolation, upload.limits, |r| {
        r.open(upload.bytes, upload.limits, long_side)
    });
    if let Ok(info) = info {
        for index in 0..result.page_count.min(info.page_count) {
            if result.pages.iter().all(|p| p.page_index != index) {
                let i = index as usize;
                sizes.insert(
                    index,
                    PageSize {
                        pixels: info.render_sizes[i],
                        points: info.sizes_points[i],
                    },
                );
            }
        }
    }
    sizes
}
