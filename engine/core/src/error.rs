//! Typed errors for document decoding.
//!
//! Every way an upload can be refused has its own variant, a human-readable
//! message naming the reason, and an [`ErrorCode`] ([`DocError::code`]) that the
//! tiler writes into error records (so dashboards and retries can branch on it).

use crate::error_record::{Coded, ErrorCode};
use crate::source_kind::SourceKind;

/// Why a document (or one of its pages) could not be decoded. Serializable, so a render
/// child process ([`crate::isolate`]) reports it to its parent unchanged.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum DocError {
    /// The upload has zero bytes.
    #[error("document is empty (0 bytes)")]
    Empty,
    /// The leading bytes match none of the supported formats.
    #[error("unknown document format: leading bytes {magic} match no PDF, TIFF, PNG, JPEG or WebP signature")]
    UnknownFormat {
        /// Hex dump of the first bytes (at most 8).
        magic: String,
    },
    /// The upload is larger than [`crate::limits::Limits::max_bytes`].
    #[error("document is {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the upload.
        bytes: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The document has (or declares) more pages than [`crate::limits::Limits::max_pages`].
    #[error("document has {pages} pages, over the limit of {limit} pages")]
    TooManyPages {
        /// Pages declared or counted (multi-page TIFF counting stops at limit + 1).
        pages: u64,
        /// The limit in force.
        limit: u32,
    },
    /// A raster page is larger than [`crate::limits::Limits::max_pixels`].
    #[error("page of {width} x {height} pixels is over the limit of {limit} pixels")]
    TooManyPixels {
        /// Width from the image header.
        width: u64,
        /// Height from the image header.
        height: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The PDF needs a password (or an encryption scheme the renderer lacks).
    #[error(
        "PDF is encrypted: it needs a password or an encryption scheme the renderer cannot open"
    )]
    Encrypted,
    /// The document parsed but holds no page at all.
    #[error("document has no pages")]
    NoPages,
    /// The bytes claim a format but do not decode as it (truncated, corrupt).
    #[error("malformed {reason}")]
    Malformed {
        /// The format, then what its decoder rejected ("PDF: truncated: ...").
        reason: String,
    },
    /// A valid document uses a feature this service does not decode.
    #[error("unsupported {kind} feature: {reason}")]
    Unsupported {
        /// Format of the document.
        kind: SourceKind,
        /// The feature.
        reason: String,
    },
    /// Rendering one PDF page took longer than [`crate::limits::Limits::page_timeout`].
    #[error("page {page} did not finish rendering within {seconds} s")]
    RenderTimeout {
        /// Zero-based page index.
        page: u32,
        /// The time limit in force, in seconds.
        seconds: f64,
    },
    /// The render child ran out of its memory limit (an image or decoder bomb).
    #[error("{} needed more than the render memory limit of {limit_bytes} bytes", what(*page))]
    RenderMemory {
        /// Zero-based page index; `None` while opening the document.
        page: Option<u32>,
        /// The limit in force.
        limit_bytes: u64,
    },
    /// The render child died another way (abort, stack overflow, signal, CPU limit).
    #[error("{} crashed the renderer: {reason}", what(*page))]
    RenderCrashed {
        /// Zero-based page index; `None` while opening the document.
        page: Option<u32>,
        /// How the child ended, and the last line it printed.
        reason: String,
    },
    /// Opening the document took longer than [`crate::limits::Limits::page_timeout`].
    #[error("document did not open within {seconds} s")]
    OpenTimeout {
        /// The time limit in force, in seconds.
        seconds: f64,
    },
    /// A page index past the end of the document was requested.
    #[error("page {index} is out of range: the document has {count} pages")]
    PageOutOfRange {
        /// Requested zero-based index.
        index: u32,
        /// Pages in the document.
        count: u32,
    },
    /// A render was requested with a zero-pixel long side.
    #[error("invalid render size: long side must be at least 1 px, got {long_side}")]
    InvalidRenderSize {
        /// The requested long side.
        long_side: u32,
    },
}

/// "page N" or "opening the document", for messages.
fn what(page: Option<u32>) -> String {
    page.map_or_else(|| "opening the document".into(), |p| format!("page {p}"))
}

impl DocError {
    /// The code for error records ([`ErrorCode`] holds the published strings).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Empty => ErrorCode::Empty,
            Self::UnknownFormat { .. } => ErrorCode::UnknownFormat,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::TooManyPages { .. } => ErrorCode::TooManyPages,
            Self::TooManyPixels { .. } => ErrorCode::TooManyPixels,
            Self::Encrypted => ErrorCode::Encrypted,
            Self::NoPages => ErrorCode::NoPages,
            Self::Malformed { .. } => ErrorCode::Malformed,
            Self::Unsupported { .. } => ErrorCode::Unsupported,
            Self::RenderTimeout { .. } | Self::OpenTimeout { .. } => ErrorCode::RenderTimeout,
            Self::RenderMemory { .. } => ErrorCode::RenderMemory,
            Self::RenderCrashed { .. } => ErrorCode::RenderCrashed,
            Self::PageOutOfRange { .. } => ErrorCode::PageOutOfRange,
            Self::InvalidRenderSize { .. } => ErrorCode::InvalidRenderSize,
        }
    }

    /// Builds [`DocError::Malformed`] naming the format and the decoder's reason.
    pub(crate) fn malformed(kind: SourceKind, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            reason: format!("{kind}: {reason}"),
        }
    }
}

impl Coded for DocError {
    fn error_code(&self) -> ErrorCode {
        self.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages name the format as people write it, once, and say what its decoder said.
    #[test]
    fn messages_name_the_format_once() {
        let err = DocError::malformed(SourceKind::Pdf, "truncated: no %%EOF marker");
        assert_eq!(err.to_string(), "malformed PDF: truncated: no %%EOF marker");
        assert_eq!(err.code(), ErrorCode::Malformed);
        let err = DocError::Unsupported {
            kind: SourceKind::Tiff,
            reason: "JPEG-in-TIFF compression".into(),
        };
        assert_eq!(
            err.to_string(),
            "unsupported TIFF feature: JPEG-in-TIFF compression"
        );
    }
}
