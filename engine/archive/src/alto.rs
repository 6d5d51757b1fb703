//! `results/<doc_id>.alto.xml`: ALTO v4 (4.4 schema). Measurement unit `pixel`: the
//! pixels of the page bitmap that was read (`Page` WIDTH/HEIGHT). One `TextBlock` per
//! page holding its lines; SPHINX-X boxes lines, not words, so each `TextLine` holds one
//! `String` with the line's text and box. A failed page is a `Page` with
//! `QUALITY="Missing"` and the reason in `QUALITY_DETAIL`.

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::hocr::union;
use crate::pages::{xml_safe, Page, PageText};

const NAMESPACE: &str = "http://www.loc.gov/standards/alto/ns-v4#";
const SCHEMA_LOCATION: &str =
    "http://www.loc.gov/standards/alto/ns-v4# http://www.loc.gov/alto/v4/alto-4-4.xsd";

/// The ALTO file of a document read from `source_name`.
pub fn alto(pages: &[Page], source_name: &str, system: &str) -> Vec<u8> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 1);
    write_document(&mut w, pages, source_name, system).expect("writing to memory cannot fail");
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

/// A coordinate as ALTO writes it: a float, here to 1/100 pixel.
fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn position(b: [f64; 4]) -> [(&'static str, String); 4] {
    [
        ("HPOS", num(b[0])),
        ("VPOS", num(b[1])),
        ("WIDTH", num(b[2] - b[0])),
        ("HEIGHT", num(b[3] - b[1])),
    ]
}

fn write_document(
    w: &mut Writer<Vec<u8>>,
    pages: &[Page],
    source_name: &str,
    system: &str,
) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("alto")
        .with_attributes([
            ("xmlns", NAMESPACE),
            ("xmlns:xlink", "http://www.w3.org/1999/xlink"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
            ("xsi:schemaLocation", SCHEMA_LOCATION),
        ])
        .write_inner_content(|w| {
            w.create_element("Description").write_inner_content(|w| {
                w.create_element("MeasurementUnit")
                    .write_text_content(BytesText::new("pixel"))?;
                w.create_element("sourceImageInformation")
                    .write_inner_content(|w| {
                        w.create_element("fileName")
                            .write_text_content(BytesText::new(&xml_safe(source_name)))?;
                        Ok(())
                    })?;
                w.create_element("OCRProcessing")
                    .with_attribute(("ID", "OCR_0"))
                    .write_inner_content(|w| {
                        w.create_element("ocrProcessingStep")
                            .write_inner_content(|w| {
                                w.create_element("processingSoftware").write_inner_content(
                                    |w| {
                                        w.create_element("softwareName").write_text_content(
                                            BytesText::new(&xml_safe(system)),
                                        )?;
                                        Ok(())
                                    },
                                )?;
                                Ok(())
                            })?;
                        Ok(())
                    })?;
                Ok(())
            })?;
            w.create_element("Layout").write_inner_content(|w| {
                for page in pages {
                    write_page(w, page)?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(())
}

fn write_page(w: &mut Writer<Vec<u8>>, page: &Page) -> io::Result<()> {
    let n = page.index + 1;
    let id = format!("page_{n}");
    let nr = n.to_string();
    let mut attrs: Vec<(&str, String)> = vec![("ID", id), ("PHYSICAL_IMG_NR", nr)];
    if let Some(size) = page.size {
        attrs.push(("WIDTH", size.pixels[0].to_string()));
        attrs.push(("HEIGHT", size.pixels[1].to_string()));
    }
    if let PageText::Failed { reason } = &page.text {
        attrs.push(("QUALITY", "Missing".to_string()));
        attrs.push(("QUALITY_DETAIL", xml_safe(reason)));
    }
    let element = attrs.iter().fold(w.create_element("Page"), |e, (k, v)| {
        e.with_attribute((*k, v.as_str()))
    });
    element.write_inner_content(|w| {
        let mut space = w.create_element("PrintSpace");
        if let Some(size) = page.size {
            let whole = [
                0.0,
                0.0,
                f64::from(size.pixels[0]),
                f64::from(size.pixels[1]),
            ];
            for (k, v) in position(whole) {
                space = space.with_attribute((k, v.as_str()));
            }
        }
        let lines = match &page.text {
            PageText::Read { lines, .. } if !lines.is_empty() => lines,
            _ => {
                space.write_empty()?;
                return Ok(());
            }
        };
        space.write_inner_content(|w| {
            let block_id = format!("block_{n}_1");
            let mut block = w
                .create_element("TextBlock")
                .with_attribute(("ID", block_id.as_str()));
            for (k, v) in position(union(lines)) {
                block = block.with_attribute((k, v.as_str()));
            }
            block.write_inner_content(|w| {
                for (i, line) in lines.iter().enumerate() {
                    let line_id = format!("line_{n}_{}", i + 1);
                    let string_id = format!("string_{n}_{}", i + 1);
                    let pos = position(line.pixels);
                    let mut tl = w
                        .create_element("TextLine")
                        .with_attribute(("ID", line_id.as_str()));
                    for (k, v) in &pos {
                        tl = tl.with_attribute((*k, v.as_str()));
                    }
                    tl.write_inner_content(|w| {
                        let content = xml_safe(&line.text);
                        let mut s = w
                            .create_element("String")
                            .with_attribute(("ID", string_id.as_str()))
                            .with_attribute(("CONTENT", content.as_str()));
                        for (k, v) in &pos {
                            s = s.with_attribute((*k, v.as_str()));
                        }
                        // ALTO's word confidence: 0 (unsure) to 1 (sure).
                        let wc = line.confidence.map(|c| format!("{:.2}", c.clamp(0.0, 1.0)));
                        if let Some(wc) = &wc {
                            s = s.with_attribute(("WC", wc.as_str()));
                        }
                        s.write_empty()?;
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}
