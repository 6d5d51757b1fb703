//! Error records: what `errors/<doc_id>.json`, `errors/<doc_id>/page-NNNN.json` and
//! `errors/jobs/<message id>.json` hold, and the one list of codes they carry.
//!
//! Every way a document, a page or a queue message can fail for good has one
//! [`ErrorCode`] here; the tiler, `sphinx tile`, `sphinx run` and the queue worker all
//! write it. To add a failure: add a variant and its string below (the strings are
//! published: dashboards and retries branch on them, so one never changes).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why something failed for good: the `code` of an [`ErrorRecord`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // A document that cannot be decoded (`crate::error::DocError`).
    /// The upload has zero bytes.
    Empty,
    /// The leading bytes match no supported format.
    UnknownFormat,
    /// Over the byte limit.
    TooLarge,
    /// Over the page limit.
    TooManyPages,
    /// A page over the pixel limit.
    TooManyPixels,
    /// A PDF that needs a password.
    Encrypted,
    /// A document without pages.
    NoPages,
    /// Bytes that do not decode as the format they claim.
    Malformed,
    /// A feature the decoders lack.
    Unsupported,
    /// Opening or rendering took longer than the page timeout.
    RenderTimeout,
    /// The render child ran out of memory.
    RenderMemory,
    /// The render child died another way.
    RenderCrashed,
    /// A page past the end of the document.
    PageOutOfRange,
    /// A zero-pixel render request.
    InvalidRenderSize,
    // Tiling (`crate::pipeline::TileError`).
    /// Tiling options that cannot produce views.
    InvalidOptions,
    /// A page that decoded but could not be tiled or bundled.
    PageFailed,
    /// Storing a finished page failed.
    StoreFailed,
    // Ingestion.
    /// The upload's task list (object metadata or sidecar) is invalid.
    InvalidTasks,
    // The queue worker.
    /// An infer-queue message that is not a page job.
    InvalidJob,
    /// A page result that could not be serialized.
    ResultEncoding,
    /// The page bundle a job names does not exist.
    MissingBundle,
    /// The page bundle does not decode, or does not fit the model.
    BadBundle,
    /// The model refused the page.
    ModelError,
}

impl ErrorCode {
    /// Every code, in declaration order (for tests and documentation).
    pub const ALL: [ErrorCode; 23] = [
        Self::Empty,
        Self::UnknownFormat,
        Self::TooLarge,
        Self::TooManyPages,
        Self::TooManyPixels,
        Self::Encrypted,
        Self::NoPages,
        Self::Malformed,
        Self::Unsupported,
        Self::RenderTimeout,
        Self::RenderMemory,
        Self::RenderCrashed,
        Self::PageOutOfRange,
        Self::InvalidRenderSize,
        Self::InvalidOptions,
        Self::PageFailed,
        Self::StoreFailed,
        Self::InvalidTasks,
        Self::InvalidJob,
        Self::ResultEncoding,
        Self::MissingBundle,
        Self::BadBundle,
        Self::ModelError,
    ];

    /// The stable snake_case string written into error records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownFormat => "unknown_format",
            Self::TooLarge => "too_large",
            Self::TooManyPages => "too_many_pages",
            Self::TooManyPixels => "too_many_pixels",
            Self::Encrypted => "encrypted",
            Self::NoPages => "no_pages",
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::RenderTimeout => "render_timeout",
            Self::RenderMemory => "render_memory",
            Self::RenderCrashed => "render_crashed",
            Self::PageOutOfRange => "page_out_of_range",
            Self::InvalidRenderSize => "invalid_render_size",
            Self::InvalidOptions => "invalid_options",
            Self::PageFailed => "page_failed",
            Self::StoreFailed => "store_failed",
            Self::InvalidTasks => "invalid_tasks",
            Self::InvalidJob => "invalid_job",
            Self::ResultEncoding => "result_encoding",
            Self::MissingBundle => "missing_bundle",
            Self::BadBundle => "bad_bundle",
            Self::ModelError => "model_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Debug-prints as the string it stands for (`"bad_bundle"`), as the `String` it
/// replaced did: the tiler's S3-event response lists outcomes in their Debug form.
impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// An error that knows the code its record carries (`TileError`, `DocError`).
pub trait Coded: fmt::Display {
    fn error_code(&self) -> ErrorCode;
}

/// Version of the [`ErrorRecord`] JSON schema.
pub const ERROR_RECORD_VERSION: u32 = 1;

/// What an error record holds: enough for a person to see which upload failed and
/// why, and for a program to branch on `code`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub schema_version: u32,
    pub doc_id: String,
    pub source: String,
    pub code: ErrorCode,
    pub message: String,
    /// The page, for a record of one page that failed (`errors/<doc_id>/page-NNNN.json`);
    /// absent when the whole document failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl ErrorRecord {
    /// A record of the current schema version.
    pub fn new(
        doc_id: &str,
        source: &str,
        code: ErrorCode,
        message: impl Into<String>,
        page: Option<u32>,
    ) -> Self {
        ErrorRecord {
            schema_version: ERROR_RECORD_VERSION,
            doc_id: doc_id.to_string(),
            source: source.to_string(),
            code,
            message: message.into(),
            page,
        }
    }

    /// The record of a document that failed with `err` (e.g. a `TileError`).
    pub fn from_error(doc_id: &str, source: &str, err: &impl Coded) -> Self {
        Self::new(doc_id, source, err.error_code(), err.to_string(), None)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("error record serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// One line for an error and its causes, as `{:#}` joins them but with each cause once:
/// where an error's message already ends with its cause's (the `"cannot read {path}:
/// {error}"` style, whose cause is also its `source()`), the cause is not repeated.
/// Used for the commands' `error:` line, error records, the worker's warnings and the
/// Lambda's failure.
pub fn describe(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if previous.is_empty() || !previous.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        previous = text;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Read {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_said_once_and_contexts_all() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Read {
            path: "a.json",
            source: io(),
        })
        .context("loading the model");
        assert_eq!(
            format!("{err:#}"),
            "loading the model: cannot read a.json: no such file: no such file"
        );
        assert_eq!(
            describe(&err),
            "loading the model: cannot read a.json: no such file"
        );
        let plain = anyhow::Error::new(io()).context("first").context("second");
        assert_eq!(describe(&plain), "second: first: no such file");
    }

    #[test]
    fn codes_serialize_as_their_published_strings() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let mut strings: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        strings.sort_unstable();
        strings.dedup();
        assert_eq!(strings.len(), ErrorCode::ALL.len(), "codes are distinct");
        assert_eq!(
            format!("{:?}", ErrorCode::InvalidTasks),
            "\"invalid_tasks\""
        );
    }

    #[test]
    fn a_record_is_byte_for_byte_the_published_layout() {
        let r = ErrorRecord::new("d", "a.pdf", ErrorCode::BadBundle, "why", Some(3));
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            "{\n  \"schema_version\": 1,\n  \"doc_id\": \"d\",\n  \"source\": \"a.pdf\",\n  \
             \"code\": \"bad_bundle\",\n  \"message\": \"why\",\n  \"page\": 3\n}"
        );
        assert_eq!(ErrorRecord::from_json(&r.to_json()).unwrap(), r);
    }
}
