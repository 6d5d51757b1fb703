//! The invisible text layer's font: a Type 0 font (`/Identity-H`, two-byte codes) whose
//! codes are numbered per document in order of first use, with a `/ToUnicode` map from
//! each code to its character, so copying, searching and indexing the PDF give the
//! recognised text whatever the script. Every glyph is 1/2 em wide (`/DW 500`) but the
//! space, 1/10 em (so that stretching a line to its box widens letters, not the gaps
//! text extractors split words and columns at), and the font spans 0.8 em above the
//! baseline and 0.2 em below it: a line set at the size of its box's height,
//! horizontally scaled to the box's width, fills exactly its box.
//! Its glyphs are never drawn (render mode 3), so no font program is embedded.

use std::collections::BTreeMap;

use lopdf::{dictionary, Document, Object, ObjectId, Stream, StringFormat};

/// Advance of every glyph but the space, in 1/1000 em.
pub const GLYPH_WIDTH: f64 = 500.0;
/// Advance of the space (U+0020), in 1/1000 em.
pub const SPACE_WIDTH: f64 = 100.0;

/// The advance of `text` in em.
pub fn advance(text: &str) -> f64 {
    text.chars()
        .map(|c| if c == ' ' { SPACE_WIDTH } else { GLYPH_WIDTH })
        .sum::<f64>()
        / 1000.0
}
/// Share of the em below the baseline.
pub const DESCENT: f64 = 0.2;
/// Name of the font in page resources (`/SphinxOcrText`).
pub const RESOURCE_NAME: &str = "SphinxOcrText";
const BASE_FONT: &str = "SphinxGlyphless";
/// Codes 1..=0xFFFF; code 0 is `.notdef`. Characters past the last code share it.
const LAST_CODE: u32 = 0xFFFF;
/// `bfchar` entries per block (the CMap format allows at most 100).
const BFCHAR_BLOCK: usize = 100;

/// The characters a document's text layer uses, each with its code.
#[derive(Debug, Default)]
pub struct TextFont {
    codes: BTreeMap<char, u16>,
    order: Vec<char>,
}

impl TextFont {
    /// The two-byte codes of `text` (a hex string operand of `Tj`), numbering new
    /// characters.
    pub fn encode(&mut self, text: &str) -> Object {
        let mut bytes = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let code = match self.codes.get(&c) {
                Some(&code) => code,
                None if (self.order.len() as u32) < LAST_CODE => {
                    self.order.push(c);
                    let code = self.order.len() as u16;
                    self.codes.insert(c, code);
                    code
                }
                None => LAST_CODE as u16,
            };
            bytes.extend_from_slice(&code.to_be_bytes());
        }
        Object::String(bytes, StringFormat::Hexadecimal)
    }

    /// Writes the font's objects into `doc` under `font_id` (reserved earlier so pages
    /// could refer to it before every character was known).
    pub fn write(&self, doc: &mut Document, font_id: ObjectId) {
        let mut to_unicode = Stream::new(dictionary! {}, self.to_unicode_cmap());
        let _ = to_unicode.compress();
        let to_unicode_id = doc.add_object(to_unicode);
        let descriptor_id = doc.add_object(dictionary! {
            "Type" => "FontDescriptor",
            "FontName" => Object::Name(BASE_FONT.into()),
            "Flags" => 4,
            "FontBBox" => vec![0.into(), Object::Integer(-200), 500.into(), 800.into()],
            "ItalicAngle" => 0,
            "Ascent" => 800,
            "Descent" => -200,
            "CapHeight" => 800,
            "StemV" => 80,
        });
        let mut cid_font = dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType2",
            "BaseFont" => Object::Name(BASE_FONT.into()),
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Identity"),
                "Supplement" => 0,
            },
            "FontDescriptor" => descriptor_id,
            "DW" => GLYPH_WIDTH as i64,
            "CIDToGIDMap" => "Identity",
        };
        if let Some(&space) = self.codes.get(&' ') {
            cid_font.set(
                "W",
                vec![
                    i64::from(space).into(),
                    vec![Object::Integer(SPACE_WIDTH as i64)].into(),
                ],
            );
        }
        let cid_font_id = doc.add_object(cid_font);
        doc.set_object(
            font_id,
            dictionary! {
                "Type" => "Font",
                "Subtype" => "Type0",
                "BaseFont" => Object::Name(BASE_FONT.into()),
                "Encoding" => "Identity-H",
                "DescendantFonts" => vec![cid_font_id.into()],
                "ToUnicode" => to_unicode_id,
            },
        );
    }

    /// The `/ToUnicode` CMap (Adobe Technical Note #5411): each code to its character
    /// in UTF-16BE.
    fn to_unicode_cmap(&self) -> Vec<u8> {
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        let entries: Vec<(u16, char)> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, &c)| (i as u16 + 1, c))
            .collect();
        for block in entries.chunks(BFCHAR_BLOCK) {
            cmap.push_str(&format!("{} beginbfchar\n", block.len()));
            for (code, c) in block {
                let mut units = [0u16; 2];
                let utf16: String = c
                    .encode_utf16(&mut units)
                    .iter()
                    .map(|u| format!("{u:04X}"))
                    .collect();
                cmap.push_str(&format!("<{code:04X}> <{utf16}>\n"));
            }
            cmap.push_str("endbfchar\n");
        }
        cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        cmap.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_numbered_in_order_of_first_use_and_mapped_back() {
        let mut font = TextFont::default();
        let Object::String(bytes, _) = font.encode("ab a€𝄞") else {
            panic!("not a string")
        };
        assert_eq!(bytes, [0, 1, 0, 2, 0, 3, 0, 1, 0, 4, 0, 5]);
        let cmap = String::from_utf8(font.to_unicode_cmap()).unwrap();
        assert!(cmap.contains("5 beginbfchar"), "{cmap}");
        assert!(cmap.contains("<0001> <0061>"));
        assert!(cmap.contains("<0003> <0020>"));
        assert!(cmap.contains("<0004> <20AC>"));
        assert!(cmap.contains("<0005> <D834DD1E>"), "surrogate pair: {cmap}");
    }
}
