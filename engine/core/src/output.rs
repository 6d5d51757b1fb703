//! Which result files a deployment writes per document, beside the JSON that is always
//! written: plain text, hOCR, ALTO and a searchable PDF (written by `sphinx-archive`).
//! One enum so `sphinx run --formats`, the worker's `SPHINX_OUTPUT_FORMATS` and the
//! template parameter share one syntax.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One result file format of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `results/<doc_id>.json`: the merged result (always written).
    Json,
    /// `results/<doc_id>.txt`: text in reading order, pages separated by form feeds.
    Txt,
    /// `results/<doc_id>.hocr`: hOCR 1.2.
    Hocr,
    /// `results/<doc_id>.alto.xml`: ALTO v4.
    Alto,
    /// `results/<doc_id>.pdf`: the original pages with an invisible text layer.
    Pdf,
}

impl OutputFormat {
    /// Every format, in the order they are written (JSON last: it marks the document done).
    pub const ALL: [OutputFormat; 5] = [Self::Txt, Self::Hocr, Self::Alto, Self::Pdf, Self::Json];

    /// The name used in lists and results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Txt => "txt",
            Self::Hocr => "hocr",
            Self::Alto => "alto",
            Self::Pdf => "pdf",
        }
    }

    /// File name suffix after `<doc_id>`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Txt => "txt",
            Self::Hocr => "hocr",
            Self::Alto => "alto.xml",
            Self::Pdf => "pdf",
        }
    }

    /// Media type for object metadata and HTTP.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Txt => "text/plain; charset=utf-8",
            Self::Hocr => "application/xhtml+xml",
            Self::Alto => "application/xml",
            Self::Pdf => "application/pdf",
        }
    }
}

/// The media type of an object the service writes, by its key's ending: each result
/// format's own, JSON for every other `.json` (manifests, error records), JSON Lines for
/// training metrics, PNG for overlays, and `application/octet-stream` for the rest (page
/// bundles, weights, checkpoints). S3 hands it back as `Content-Type`, so a result opened
/// from a (presigned) link shows as what it is.
pub fn media_type(key: &str) -> &'static str {
    let format = OutputFormat::ALL.into_iter().find(|f| {
        key.strip_suffix(f.extension())
            .is_some_and(|stem| stem.ends_with('.'))
    });
    if let Some(f) = format {
        return f.content_type();
    }
    match key.rsplit_once('.').map(|(_, ending)| ending) {
        Some("jsonl") => "application/x-ndjson",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown output format {0:?} (expected a comma list of json, txt, hocr, alto, pdf, or all)"
)]
pub struct UnknownFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        let lc = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.name() == lc)
            .ok_or_else(|| UnknownFormat(s.trim().to_string()))
    }
}

/// The formats a deployment writes; JSON is always among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFormats(BTreeSet<OutputFormat>);

impl Default for OutputFormats {
    /// JSON only.
    fn default() -> Self {
        Self(BTreeSet::from([OutputFormat::Json]))
    }
}

impl OutputFormats {
    /// Every format.
    pub fn all() -> Self {
        Self(OutputFormat::ALL.into_iter().collect())
    }

    pub fn contains(&self, f: OutputFormat) -> bool {
        self.0.contains(&f)
    }

    /// The requested formats other than JSON, in writing order.
    pub fn archives(&self) -> impl Iterator<Item = OutputFormat> + '_ {
        OutputFormat::ALL
            .into_iter()
            .filter(|f| *f != OutputFormat::Json && self.0.contains(f))
    }
}

impl FromStr for OutputFormats {
    type Err = UnknownFormat;

    /// `json,txt,hocr,alto,pdf` (any order, case-insensitive), `all`, or empty (JSON only).
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        let mut set = BTreeSet::from([OutputFormat::Json]);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("all") {
                return Ok(Self::all());
            }
            set.insert(part.parse()?);
        }
        Ok(Self(set))
    }
}

impl fmt::Display for OutputFormats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = OutputFormat::ALL
            .into_iter()
            .filter(|x| self.0.contains(x))
            .map(OutputFormat::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_always_hold_json() {
        let f: OutputFormats = "TXT, pdf".parse().unwrap();
        assert!(f.contains(OutputFormat::Json) && f.contains(OutputFormat::Txt));
        assert!(!f.contains(OutputFormat::Hocr));
        assert_eq!(f.to_string(), "txt,pdf,json");
        assert_eq!(
            f.archives().collect::<Vec<_>>(),
            [OutputFormat::Txt, OutputFormat::Pdf]
        );
        assert_eq!(
            "".parse::<OutputFormats>().unwrap(),
            OutputFormats::default()
        );
        assert_eq!(
            "all".parse::<OutputFormats>().unwrap(),
            OutputFormats::all()
        );
        let err = "json,docx".parse::<OutputFormats>().unwrap_err();
        assert!(err.to_string().contains("\"docx\""), "{err}");
    }

    #[test]
    fn objects_carry_the_media_type_of_their_ending() {
        for (key, want) in [
            ("results/ab.json", "application/json"),
            ("results/ab.txt", "text/plain; charset=utf-8"),
            ("results/ab.hocr", "application/xhtml+xml"),
            ("results/ab.alto.xml", "application/xml"),
            ("results/ab.pdf", "application/pdf"),
            ("errors/ab.json", "application/json"),
            ("models/run/metrics.jsonl", "application/x-ndjson"),
            ("overlays/ab/page-0000.png", "image/png"),
            ("work/ab/page-0000.bundle", "application/octet-stream"),
            ("models/latest", "application/octet-stream"),
            // An ending, not a substring: no dot before "pdf" here.
            ("inbox/notapdf", "application/octet-stream"),
        ] {
            assert_eq!(media_type(key), want, "{key}");
        }
    }
}
