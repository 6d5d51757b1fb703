//! `results/<doc_id>.pdf`: the scan with its text in it.
//!
//! - **A PDF upload** gets an incremental update (ISO 32000-1, 7.5.6): the original
//!   bytes, unchanged, then the new objects: per page with text, one content stream that
//!   draws the page's lines invisibly (render mode 3) on their boxes, and a new revision
//!   of the page dictionary whose `/Contents` wraps the original streams in `q`/`Q` and
//!   appends the text layer, and whose `/Resources` adds the text font. Nothing of the
//!   original is re-rendered or recompressed; a failed page keeps its original revision.
//! - **An image upload** (TIFF, PNG, JPEG, WebP) becomes one page per image at its own
//!   size in points (its resolution): a JPEG whose stored pixels are the upright page is
//!   embedded as it is (`/DCTDecode`), other images as lossless Flate.
//!
//! Boxes come in the page's displayed points (after crop box and `/Rotate`, y down);
//! [`DisplayToUser`] maps them onto the page's user space.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Dictionary, Document, IncrementalDocument, Object, ObjectId, Stream};
use sphinx_core::document::{jpeg_passthrough, SourceKind};
use sphinx_core::isolate::{Isolation, Renderer};
use sphinx_core::DocError;
use sphinx_core::Limits;

use crate::pages::{Line, Page, PageText};
use crate::pdf_font::{self, TextFont};

/// Largest searchable PDF written: past it the file is not made (and the result says so).
pub const MAX_PDF_BYTES: usize = 1 << 30;
/// Page-tree depth followed for inherited attributes.
const MAX_TREE_DEPTH: usize = 64;

/// The upload a searchable PDF is made from.
pub struct Upload<'a> {
    pub bytes: &'a Arc<Vec<u8>>,
    pub kind: SourceKind,
    /// How image pages are decoded (the render child for hostile uploads).
    pub isolation: &'a Isolation,
    pub limits: &'a Limits,
}

/// The searchable PDF, or why it cannot be made.
pub fn searchable_pdf(pages: &[Page], upload: &Upload<'_>) -> Result<Vec<u8>, String> {
    let out = match upload.kind {
        SourceKind::Pdf => catch_unwind(AssertUnwindSafe(|| text_over_pdf(pages, upload.bytes)))
            .map_err(|_| "the PDF library crashed on this file".to_string())??,
        _ => images_to_pdf(pages, upload)?,
    };
    if out.len() > MAX_PDF_BYTES {
        return Err(format!(
            "the searchable PDF would be {} bytes, over the {MAX_PDF_BYTES}-byte limit",
            out.len()
        ));
    }
    Ok(out)
}

/// The affine map from a page's displayed coordinates (points, origin bottom-left,
/// y up, as boxes measure the page) to its user space.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DisplayToUser([f64; 6]);

impl DisplayToUser {
    /// For a page with crop box `[x0, y0, x1, y1]` and `/Rotate` `rotate`, whose
    /// displayed size the boxes measured as `frame` points.
    fn new(crop: [f64; 4], rotate: i64, frame: [f32; 2]) -> Self {
        let [x0, y0, x1, y1] = crop;
        let (w, h) = (x1 - x0, y1 - y0);
        let (m, shown) = match rotate.rem_euclid(360) {
            90 => ([0.0, 1.0, -1.0, 0.0, x1, y0], [h, w]),
            180 => ([-1.0, 0.0, 0.0, -1.0, x1, y1], [w, h]),
            270 => ([0.0, -1.0, 1.0, 0.0, x0, y1], [h, w]),
            _ => ([1.0, 0.0, 0.0, 1.0, x0, y0], [w, h]),
        };
        let sx = shown[0] / f64::from(frame[0]);
        let sy = shown[1] / f64::from(frame[1]);
        Self([m[0] * sx, m[1] * sx, m[2] * sy, m[3] * sy, m[4], m[5]])
    }
}

fn real(v: f64) -> Object {
    Object::Real(v as f32)
}

/// The content stream drawing `lines` invisibly on a page `frame` points in size.
fn text_layer(
    lines: &[Line],
    frame: [f32; 2],
    to_user: DisplayToUser,
    font: &mut TextFont,
    restore_first: bool,
) -> Vec<u8> {
    let mut ops = Vec::with_capacity(4 + lines.len() * 4);
    if restore_first {
        ops.push(Operation::new("Q", vec![]));
    }
    ops.push(Operation::new("q", vec![]));
    ops.push(Operation::new(
        "cm",
        to_user.0.iter().map(|&v| real(v)).collect(),
    ));
    ops.push(Operation::new("BT", vec![]));
    ops.push(Operation::new("Tr", vec![3.into()]));
    let page_h = f64::from(frame[1]);
    for line in lines {
        let chars = line.text.chars().count();
        let [x1, y1, x2, y2] = line.points;
        let size = y2 - y1;
        if chars == 0 || size <= 0.0 || x2 <= x1 {
            continue;
        }
        let natural = pdf_font::advance(&line.text) * size;
        let baseline = page_h - y2 + pdf_font::DESCENT * size;
        ops.push(Operation::new(
            "Tf",
            vec![Object::Name(pdf_font::RESOURCE_NAME.into()), real(size)],
        ));
        ops.push(Operation::new(
            "Tz",
            vec![real(100.0 * (x2 - x1) / natural)],
        ));
        ops.push(Operation::new(
            "Tm",
            vec![
                1.into(),
                0.into(),
                0.into(),
                1.into(),
                real(x1),
                real(baseline),
            ],
        ));
        ops.push(Operation::new("Tj", vec![font.encode(&line.text)]));
    }
    ops.push(Operation::new("ET", vec![]));
    ops.push(Operation::new("Q", vec![]));
    let mut bytes = Content { operations: ops }
        .encode()
        .expect("operations of numbers, names and strings encode");
    bytes.push(b'\n');
    bytes
}

fn compressed(content: Vec<u8>) -> Stream {
    let mut s = Stream::new(dictionary! {}, content);
    let _ = s.compress();
    s
}

/// A page attribute, looked up the page tree (`/Resources`, `/MediaBox`, `/CropBox` and
/// `/Rotate` are inheritable), references resolved.
fn inherited<'a>(doc: &'a Document, page: ObjectId, key: &[u8]) -> Option<&'a Object> {
    let mut node = doc.get_dictionary(page).ok()?;
    for _ in 0..MAX_TREE_DEPTH {
        if let Ok(v) = node.get(key) {
            return doc.dereference(v).ok().map(|(_, o)| o);
        }
        let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

fn rect(doc: &Document, o: &Object) -> Option<[f64; 4]> {
    let a = o.as_array().ok()?;
    if a.len() != 4 {
        return None;
    }
    let mut v = [0.0; 4];
    for (slot, item) in v.iter_mut().zip(a) {
        let (_, item) = doc.dereference(item).ok()?;
        *slot = match item {
            Object::Integer(i) => *i as f64,
            Object::Real(r) => f64::from(*r),
            _ => return None,
        };
    }
    Some([
        v[0].min(v[2]),
        v[1].min(v[3]),
        v[0].max(v[2]),
        v[1].max(v[3]),
    ])
}

/// The page's visible region: the crop box within the media box (default US Letter).
fn crop_box(doc: &Document, page: ObjectId) -> [f64; 4] {
    let media = inherited(doc, page, b"MediaBox")
        .and_then(|o| rect(doc, o))
        .unwrap_or([0.0, 0.0, 612.0, 792.0]);
    match inherited(doc, page, b"CropBox").and_then(|o| rect(doc, o)) {
        Some(c) => {
            let i = [
                media[0].max(c[0]),
                media[1].max(c[1]),
                media[2].min(c[2]),
                media[3].min(c[3]),
            ];
            if i[2] > i[0] && i[3] > i[1] {
                i
            } else {
                media
            }
        }
        None => media,
    }
}

/// A dictionary value as a dictionary of its own (a copy), references resolved.
fn dict_of(doc: &Document, o: Option<&Object>) -> Dictionary {
    o.and_then(|o| doc.dereference(o).ok())
        .and_then(|(_, o)| o.as_dict().ok().cloned())
        .unwrap_or_default()
}

/// The page's content stream references, flattened (a reference to an array included).
fn contents_of(doc: &Document, page: &Dictionary) -> Vec<Object> {
    match page.get(b"Contents") {
        Ok(Object::Reference(id)) => match doc.get_object(*id) {
            Ok(Object::Array(items)) => items.clone(),
            _ => vec![Object::Reference(*id)],
        },
        Ok(Object::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The original PDF plus an incremental update holding the text layer.
fn text_over_pdf(pages: &[Page], bytes: &Arc<Vec<u8>>) -> Result<Vec<u8>, String> {
    let with_text: Vec<&Page> = pages
        .iter()
        .filter(|p| matches!(&p.text, PageText::Read { lines, .. } if !lines.is_empty()))
        .collect();
    if with_text.is_empty() {
        // No text to add: the original file is the searchable PDF there can be.
        return Ok(bytes.as_ref().clone());
    }
    let prev = Document::load_mem(bytes).map_err(|e| format!("the PDF cannot be read: {e}"))?;
    if prev.is_encrypted() {
        return Err("the PDF is encrypted: its pages cannot be updated".into());
    }
    let page_ids = prev.get_pages();
    if page_ids.len() != pages.len() {
        return Err(format!(
            "the PDF library finds {} pages where the renderer found {}",
            page_ids.len(),
            pages.len()
        ));
    }
    if prev.xref_start == 0 {
        return Err("the PDF has no usable cross-reference table to append an update to".into());
    }
    let mut inc = IncrementalDocument::create_from(bytes.as_ref().clone(), prev);
    let font_id = inc.new_document.new_object_id();
    let save_state = inc
        .new_document
        .add_object(Stream::new(dictionary! {}, b"q\n".to_vec()));
    let mut font = TextFont::default();
    for page in with_text {
        let (PageText::Read { lines, .. }, Some(size)) = (&page.text, page.size) else {
            continue;
        };
        let page_id = page_ids[&(page.index + 1)];
        let prev = inc.get_prev_documents();
        let to_user = DisplayToUser::new(
            crop_box(prev, page_id),
            inherited(prev, page_id, b"Rotate")
                .and_then(|o| o.as_i64().ok())
                .unwrap_or(0),
            size.points,
        );
        let original = prev
            .get_dictionary(page_id)
            .map_err(|e| format!("page {} is not a dictionary: {e}", page.index + 1))?;
        let mut contents = contents_of(prev, original);
        let mut resources = dict_of(prev, inherited(prev, page_id, b"Resources"));
        let mut fonts = dict_of(prev, resources.get(b"Font").ok());
        if fonts.has(pdf_font::RESOURCE_NAME.as_bytes()) {
            return Err(format!(
                "page {} already has a font named {}",
                page.index + 1,
                pdf_font::RESOURCE_NAME
            ));
        }
        fonts.set(pdf_font::RESOURCE_NAME, Object::Reference(font_id));
        resources.set("Font", Object::Dictionary(fonts));
        let layer = text_layer(lines, size.points, to_user, &mut font, !contents.is_empty());
        let layer_id = inc.new_document.add_object(compressed(layer));
        if !contents.is_empty() {
            contents.insert(0, Object::Reference(save_state));
        }
        contents.push(Object::Reference(layer_id));
        inc.opt_clone_object_to_new_document(page_id)
            .map_err(|e| format!("page {}: {e}", page.index + 1))?;
        let dict = inc
            .new_document
            .get_dictionary_mut(page_id)
            .map_err(|e| format!("page {}: {e}", page.index + 1))?;
        dict.set("Contents", Object::Array(contents));
        dict.set("Resources", Object::Dictionary(resources));
    }
    font.write(&mut inc.new_document, font_id);
    let mut out = Vec::with_capacity(bytes.len() + 64 * 1024);
    inc.save_to(&mut out)
        .map_err(|e| format!("the update cannot be written: {e}"))?;
    Ok(out)
}

/// A page image as a PDF image XObject.
fn image_xobject(
    width: u32,
    height: u32,
    gray: bool,
    filter: Option<&str>,
    data: Vec<u8>,
) -> Stream {
    let mut dict = dictionary! {
        "Type" => "XObject",
        "Subtype" => "Image",
        "Width" => i64::from(width),
        "Height" => i64::from(height),
        "ColorSpace" => if gray { "DeviceGray" } else { "DeviceRGB" },
        "BitsPerComponent" => 8,
    };
    if let Some(f) = filter {
        dict.set("Filter", Object::Name(f.into()));
    }
    Stream::new(dict, data).with_compression(false)
}

/// One PDF page per image of the upload, each with its text layer.
fn images_to_pdf(pages: &[Page], upload: &Upload<'_>) -> Result<Vec<u8>, String> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.new_object_id();
    let mut font = TextFont::default();
    let passthrough = match upload.kind {
        SourceKind::Jpeg => jpeg_passthrough(upload.bytes),
        _ => None,
    };
    let long_side = pages
        .iter()
        .filter_map(|p| p.size)
        .map(|s| s.pixels[0].max(s.pixels[1]))
        .max()
        .unwrap_or(1);
    let mut kids = Vec::with_capacity(pages.len());
    let mut total = 0usize;
    let rendered: Result<Result<(), String>, DocError> =
        Renderer::with(upload.isolation, upload.limits, |r| {
            let info = r.open(upload.bytes, upload.limits, long_side)?;
            if info.page_count as usize != pages.len() {
                return Ok(Err(format!(
                    "the upload has {} images where the result has {} pages",
                    info.page_count,
                    pages.len()
                )));
            }
            for page in pages {
                let points = info.sizes_points[page.index as usize];
                let image = match passthrough {
                    Some(j) => image_xobject(
                        j.width,
                        j.height,
                        j.components == 1,
                        Some("DCTDecode"),
                        upload.bytes.as_ref().clone(),
                    ),
                    None => {
                        let rendered = r.render(page.index, upload.limits)?.image;
                        let (w, h) = rendered.dimensions();
                        let raw = rendered.into_raw();
                        let gray = raw.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
                        let samples = if gray {
                            raw.chunks_exact(3).map(|p| p[0]).collect()
                        } else {
                            raw
                        };
                        let mut s = image_xobject(w, h, gray, None, samples).with_compression(true);
                        let _ = s.compress();
                        s
                    }
                };
                total += image.content.len();
                if total > MAX_PDF_BYTES {
                    return Ok(Err(format!(
                        "the page images take more than {MAX_PDF_BYTES} bytes"
                    )));
                }
                let image_id = doc.add_object(image);
                let (w, h) = (f64::from(points[0]), f64::from(points[1]));
                let mut ops = vec![
                    Operation::new("q", vec![]),
                    Operation::new(
                        "cm",
                        vec![real(w), 0.into(), 0.into(), real(h), 0.into(), 0.into()],
                    ),
                    Operation::new("Do", vec![Object::Name(b"Page".to_vec())]),
                    Operation::new("Q", vec![]),
                ];
                let mut content = Content {
                    operations: std::mem::take(&mut ops),
                }
                .encode()
                .expect("numbers and names encode");
                content.push(b'\n');
                if let (PageText::Read { lines, .. }, Some(size)) = (&page.text, page.size) {
                    if !lines.is_empty() {
                        let to_user = DisplayToUser::new([0.0, 0.0, w, h], 0, size.points);
                        content.extend(text_layer(lines, size.points, to_user, &mut font, false));
                    }
                }
                let content_id = doc.add_object(compressed(content));
                kids.push(Object::Reference(doc.add_object(dictionary! {
                    "Type" => "Page",
                    "Parent" => pages_id,
                    "MediaBox" => vec![0.into(), 0.into(), real(w), real(h)],
                    "Resources" => dictionary! {
                        "XObject" => dictionary! { "Page" => image_id },
                        "Font" => dictionary! { pdf_font::RESOURCE_NAME => font_id },
                    },
                    "Contents" => content_id,
                })));
            }
            Ok(Ok(()))
        });
    rendered.map_err(|e| format!("the images cannot be decoded: {e}"))??;
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    font.write(&mut doc, font_id);
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out)
        .map_err(|e| format!("the PDF cannot be written: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(m: DisplayToUser, u: f64, v: f64) -> (f64, f64) {
        let [a, b, c, d, e, f] = m.0;
        (a * u + c * v + e, b * u + d * v + f)
    }

    #[test]
    fn displayed_corners_map_onto_the_rotated_crop_box() {
        let crop = [10.0, 20.0, 110.0, 220.0]; // 100 wide, 200 tall
                                               // Unrotated: displayed bottom-left is the crop box's bottom-left.
        let m = DisplayToUser::new(crop, 0, [100.0, 200.0]);
        assert_eq!(apply(m, 0.0, 0.0), (10.0, 20.0));
        // /Rotate 90 (clockwise): shown 200 x 100; the displayed top-left corner is the
        // user-space bottom-left corner.
        let m = DisplayToUser::new(crop, 90, [200.0, 100.0]);
        assert_eq!(apply(m, 0.0, 100.0), (10.0, 20.0));
        assert_eq!(apply(m, 200.0, 0.0), (110.0, 220.0));
        let m = DisplayToUser::new(crop, 180, [100.0, 200.0]);
        assert_eq!(apply(m, 0.0, 200.0), (110.0, 20.0));
        let m = DisplayToUser::new(crop, -90, [200.0, 100.0]);
        assert_eq!(apply(m, 0.0, 100.0), (110.0, 220.0));
        // Boxes measured at another scale are scaled onto the crop box.
        let m = DisplayToUser::new(crop, 0, [50.0, 100.0]);
        assert_eq!(apply(m, 50.0, 100.0), (110.0, 220.0));
    }
}
