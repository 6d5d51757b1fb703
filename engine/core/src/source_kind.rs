//! The formats uploads come in, apart from [`crate::document`] so the error types that
//! name a format ([`crate::error::DocError`]) need not import the decoders.

use serde::{Deserialize, Serialize};

/// The format of an uploaded document, as detected by [`crate::document::sniff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Portable Document Format.
    Pdf,
    /// Tagged Image File Format, possibly multi-page.
    Tiff,
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF or EXIF).
    Jpeg,
    /// WebP, lossy or lossless.
    Webp,
}

impl std::fmt::Display for SourceKind {
    /// The format's usual written name, for messages ("malformed PDF: ...").
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pdf => "PDF",
            Self::Tiff => "TIFF",
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
            Self::Webp => "WebP",
        })
    }
}
