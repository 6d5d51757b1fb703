//! Format detection from leading bytes (never from a file name or a
//! content-type header, both of which the uploader controls).

use super::SourceKind;
use crate::error::DocError;

/// How far into the file a `%PDF-` header may start. The PDF spec puts it at
/// byte 0, but Acrobat (and so real uploads) accept junk before it within the
/// first 1,024 bytes (Adobe PDF Reference 1.7, implementation note 13).
pub(crate) const PDF_HEADER_SEARCH: usize = 1024;

/// How many leading bytes an [`DocError::UnknownFormat`] shows.
const MAGIC_SHOWN: usize = 8;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// SOI marker followed by the first byte of the next marker (ITU T.81, B.1.1.3).
const JPEG_SIGNATURE: &[u8] = &[0xFF, 0xD8, 0xFF];
/// Classic and BigTIFF headers in both byte orders (TIFF 6.0 section 2; BigTIFF uses 43).
const TIFF_SIGNATURES: [&[u8]; 4] = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"];

/// Detects the document format from its leading bytes.
pub fn sniff(bytes: &[u8]) -> Result<SourceKind, DocError> {
    if bytes.is_empty() {
        return Err(DocError::Empty);
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(SourceKind::Png);
    }
    if bytes.starts_with(JPEG_SIGNATURE) {
        return Ok(SourceKind::Jpeg);
    }
    if TIFF_SIGNATURES.iter().any(|sig| bytes.starts_with(sig)) {
        return Ok(SourceKind::Tiff);
    }
    // RIFF container whose form type is WEBP (RIFF: "RIFF", u32 size, form type).
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(SourceKind::Webp);
    }
    let head = &bytes[..bytes.len().min(PDF_HEADER_SEARCH)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(SourceKind::Pdf);
    }
    let magic = bytes[..bytes.len().min(MAGIC_SHOWN)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(DocError::UnknownFormat { magic })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        assert_eq!(sniff(b"%PDF-1.7\n").unwrap(), SourceKind::Pdf);
        assert_eq!(sniff(b"junk\r\n%PDF-1.4").unwrap(), SourceKind::Pdf);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), SourceKind::Png);
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), SourceKind::Jpeg);
        assert_eq!(sniff(b"II*\0\x08\0\0\0").unwrap(), SourceKind::Tiff);
        assert_eq!(sniff(b"MM\0*\0\0\0\x08").unwrap(), SourceKind::Tiff);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(), SourceKind::Webp);
    }

    #[test]
    fn unknown_bytes_are_named() {
        let err = sniff(b"GIF89a\x01\x00\x01\x00").unwrap_err();
        match &err {
            DocError::UnknownFormat { magic } => assert_eq!(magic, "47 49 46 38 39 61 01 00"),
            other => panic!("expected UnknownFormat, got {other:?}"),
        }
        assert!(err.to_string().contains("47 49 46 38"));
        assert!(matches!(sniff(b""), Err(DocError::Empty)));
        // A WebP signature needs its form type; a bare RIFF (e.g. WAV) is unknown.
        assert!(matches!(
            sniff(b"RIFF\x10\0\0\0WAVEfmt "),
            Err(DocError::UnknownFormat { .. })
        ));
        // A PDF header past the search window does not count.
        let mut late = vec![b' '; PDF_HEADER_SEARCH];
        late.extend_from_slice(b"%PDF-1.4");
        assert!(matches!(sniff(&late), Err(DocError::UnknownFormat { .. })));
    }
}
