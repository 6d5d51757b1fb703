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
