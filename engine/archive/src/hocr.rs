//! `results/<doc_id>.hocr`: hOCR 1.2 (XHTML). Per page an `ocr_page` with the page
//! bitmap's `bbox`, the upload as `image` and its resolution as `scan_res`; its lines
//! (`ocr_line`, with `bbox`) in one `ocr_carea`/`ocr_par`. SPHINX-X boxes lines, not
//! words, so there are no `ocrx_word` elements. A failed page is an empty `ocr_page`
//! whose `data-sphinx-error` attribute gives the reason (hOCR has no property for it,
//! and validators reject unknown properties in `title`).

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::pages::{xml_safe, Line, Page, PageText};

const DOCTYPE: &str = r#"html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd""#;

/// The hOCR file of a document read from `source_name`.
pub fn hocr(pages: &[Page], source_name: &str, system: &str) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 1);
    write_document(&mut w, pages, source_name, system).expect("writing to memory cannot fail");
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

fn write_document(
    w: &mut Writer<Vec<u8>>,
    pages: &[Page],
    source_name: &str,
    system: &str,
) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.write_event(Event::DocType(BytesText::from_escaped(DOCTYPE)))?;
    w.create_element("html")
        .with_attributes([
            ("xmlns", "http://www.w3.org/1999/xhtml"),
            ("xml:lang", "en"),
            ("lang", "en"),
        ])
        .write_inner_content(|w| {
            w.create_element("head").write_inner_content(|w| {
                w.create_element("title")
                    .write_text_content(BytesText::new(&xml_safe(source_name)))?;
                w.create_element("meta")
                    .with_attributes([
                        ("http-equiv", "Content-Type"),
                        ("content", "text/html;charset=utf-8"),
                    ])
                    .write_empty()?;
                meta(w, "ocr-system", &xml_safe(system))?;
                meta(w, "ocr-capabilities", "ocr_page ocr_carea ocr_par ocr_line")?;
                meta(w, "ocr-number-of-pages", &pages.len().to_string())?;
                Ok(())
            })?;
            w.create_element("body").write_inner_content(|w| {
                for page in pages {
                    write_page(w, page, source_name)?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(())
}

fn meta(w: &mut Writer<Vec<u8>>, name: &str, content: &str) -> io::Result<()> {
    w.create_element("meta")
        .with_attributes([("name", name), ("content", content)])
        .write_empty()?;
    Ok(())
}

/// `bbox x0 y0 x1 y1` in whole pixels (hOCR's integers), the box grown to whole pixels.
fn bbox(b: [f64; 4]) -> String {
    format!(
        "bbox {} {} {} {}",
        b[0].floor().max(0.0) as i64,
        b[1].floor().max(0.0) as i64,
        b[2].ceil() as i64,
        b[3].ceil() as i64
    )
}

/// The union of the lines' pixel boxes.
pub(crate) fn union(lines: &[Line]) -> [f64; 4] {
    lines.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |a, l| {
            [
                a[0].min(l.pixels[0]),
                a[1].min(l.pixels[1]),
                a[2].max(l.pixels[2]),
                a[3].max(l.pixels[3]),
            ]
        },
    )
}

/// A quoted hOCR property value (`"..."`, with `"` and `\` escaped).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write_page(w: &mut Writer<Vec<u8>>, page: &Page, source_name: &str) -> io::Result<()> {
    let n = page.index + 1;
    let mut title = format!("image {}", quoted(&xml_safe(source_name)));
    if let Some(size) = page.size {
        title.push_str(&format!("; bbox 0 0 {} {}", size.pixels[0], size.pixels[1]));
    }
    title.push_str(&format!("; ppageno {}", page.index));
    if let Some(size) = page.size {
        let dpi = |px: u32, pt: f32| (f64::from(px) * 72.0 / f64::from(pt)).round() as i64;
        title.push_str(&format!(
            "; scan_res {} {}",
            dpi(size.pixels[0], size.points[0]),
            dpi(size.pixels[1], size.points[1])
        ));
    }
    let id = format!("page_{n}");
    let mut div = w.create_element("div").with_attributes([
        ("class", "ocr_page"),
        ("id", id.as_str()),
        ("title", title.as_str()),
    ]);
    let error;
    if let PageText::Failed { reason } = &page.text {
        error = xml_safe(reason);
        div = div.with_attribute(("data-sphinx-error", error.as_str()));
    }
    div.write_inner_content(|w| {
        let PageText::Read { lines, .. } = &page.text else {
            return Ok(());
        };
        if lines.is_empty() {
            return Ok(());
        }
        let area = bbox(union(lines));
        let (carea, par) = (format!("block_{n}_1"), format!("par_{n}_1"));
        w.create_element("div")
            .with_attributes([
                ("class", "ocr_carea"),
                ("id", carea.as_str()),
                ("title", area.as_str()),
            ])
            .write_inner_content(|w| {
                w.create_element("p")
                    .with_attributes([
                        ("class", "ocr_par"),
                        ("id", par.as_str()),
                        ("title", area.as_str()),
                    ])
                    .write_inner_content(|w| {
                        for (i, line) in lines.iter().enumerate() {
                            let id = format!("line_{n}_{}", i + 1);
                            // hOCR's confidence, 0-100 (the spec's x_wconf).
                            let title = match line.confidence {
                                Some(c) => format!(
                                    "{}; x_wconf {}",
                                    bbox(line.pixels),
                                    (100.0 * c.clamp(0.0, 1.0)).round()
                                ),
                                None => bbox(line.pixels),
                            };
                            w.create_element("span")
                                .with_attributes([
                                    ("class", "ocr_line"),
                                    ("id", id.as_str()),
                                    ("title", title.as_str()),
                                ])
                                .write_text_content(BytesText::new(&xml_safe(&line.text)))?;
                        }
                        Ok(())
                    })?;
                Ok(())
            })?;
        Ok(())
    })?;
    Ok(())
}
