//! The page bundle: ONE object per page holding its manifest and all its view PNGs.
//!
//! S3 bills per request, so a page is one PUT and one GET, never one per tile. The
//! container (specified in `docs/bundle-format.md`) is:
//!
//! ```text
//! magic "SPHXBNDL" (8) | format version u32 LE | header length u32 LE
//! | header: PageManifest JSON (UTF-8) | payload: the kept views' PNGs, back to back
//! ```
//!
//! Each view's `range` in the header is relative to the payload start. Decoding checks
//! everything (magic, version, lengths, manifest shape, ranges tiling the payload exactly)
//! and returns a typed [`BundleError`] on any corrupt input; it never panics.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::manifest::{ByteRange, ManifestError, PageManifest};
use crate::tiling::TiledPage;

/// First bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"SPHXBNDL";
/// Container layout version (independent of the manifest's `schema_version`).
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the header: magic, version, header length.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 4 + 4;
/// Largest header accepted: a manifest of the largest grid (8x8) is ~20 KiB; this leaves
/// room for long source names while refusing absurd allocations from corrupt lengths.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// PNG deflate setting for views: `Fast` (fdeflate, tuned for PNG, adaptive filters).
/// Measured on 1024-canvas pages here: 2-28 ms per page for all five views and about 2x
/// smaller than `Fastest`; `Balanced` is only ~1.3x smaller but 30-40x slower.
const PNG_COMPRESSION: png::Compression = png::Compression::Fast;

/// Why a bundle cannot be built, read or extracted.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is {len} bytes, shorter than its {PREAMBLE_LEN}-byte preamble")]
    Truncated { len: usize },
    #[error("bundle does not start with the magic bytes {MAGIC:?}")]
    BadMagic,
    #[error("bundle format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error(
        "bundle header length {len} exceeds the {available} bytes available (max {MAX_HEADER_LEN})"
    )]
    HeaderLength { len: u64, available: usize },
    #[error("bundle header: {0}")]
    Manifest(#[from] ManifestError),
    #[error("view {index} ({key}): {reason}")]
    View {
        index: usize,
        key: String,
        reason: String,
    },
    #[error("bundle payload is {payload} bytes but the views cover {covered}")]
    PayloadLength { payload: u64, covered: u64 },
    #[error("tiled page does not match the manifest: {0}")]
    Mismatch(String),
    #[error("PNG encoding of view {index} failed: {source}")]
    Encode {
        index: usize,
        source: png::EncodingError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A page bundle: its validated manifest and the bytes it was read from or built into.
#[derive(Clone, Debug, PartialEq)]
pub struct PageBundle {
    pub manifest: PageManifest,
    bytes: Vec<u8>,
    payload_start: usize,
}

impl PageBundle {
    /// Encodes the kept views of `tiled` as PNG and lays out the bundle; fills the
    /// manifest's view ranges. The manifest must describe `tiled` (same grid and skips).
    pub fn build(mut manifest: PageManifest, tiled: &TiledPage) -> Result<Self, BundleError> {
        manifest.validate()?;
        let views: Vec<Option<&RgbImage>> = tiled.views().collect();
        if views.len() != manifest.views.len() {
            return Err(BundleError::Mismatch(format!(
                "{} views tiled, {} in the manifest",
                views.len(),
                manifest.views.len()
            )));
        }
        let tile = manifest.preprocess.tile;
        let mut payload = Vec::new();
        for (index, (entry, view)) in manifest.views.iter_mut().zip(&views).enumerate() {
            match (entry.skip, view) {
                (true, None) => entry.range = None,
                (false, Some(img)) if img.width() == tile && img.height() == tile => {
                    let offset = payload.len() as u64;
                    encode_png(img, &mut payload)
                        .map_err(|source| BundleError::Encode { index, source })?;
                    entry.range = Some(ByteRange {
                        offset,
                        len: payload.len() as u64 - offset,
                    });
                }
                (skip, view) => {
                    return Err(BundleError::Mismatch(format!(
                        "view {index} ({}) is skip={skip} in the manifest but {} in the tiled page",
                        entry.key,
                        view.map_or("absent".to_string(), |v| format!(
                            "{}x{} (tile {tile})",
                            v.width(),
                            v.height()
                        ))
                    )))
                }
            }
        }
        let header = manifest.to_json();
        let mut bytes = Vec::with_capacity(PREAMBLE_LEN + header.len() + payload.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        let payload_start = bytes.len();
        bytes.extend_from_slice(&payload);
        Ok(Self {
            manifest,
            bytes,
            payload_start,
        })
    }

    /// Parses and validates a bundle.
    pub fn decode(bytes: Vec<u8>) -> Result<Self, BundleError> {
        if bytes.len() < PREAMBLE_LEN {
            return Err(BundleError::Truncated { len: bytes.len() });
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(MAGIC.len());
        if version != FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion { found: version });
        }
        let header_len = word(MAGIC.len() + 4) as usize;
        let available = bytes.len() - PREAMBLE_LEN;
        if header_len > available || header_len > MAX_HEADER_LEN {
            return Err(BundleError::HeaderLength {
                len: header_len as u64,
                available,
            });
        }
        let payload_start = PREAMBLE_LEN + header_len;
        let manifest = PageManifest::from_json(&bytes[PREAMBLE_LEN..payload_start])?;
        let payload = (bytes.len() - payload_start) as u64;
        let mut covered = 0u64;
        for (index, view) in manifest.views.iter().enumerate() {
            let bad = |reason: String| BundleError::View {
                index,
                key: view.key.clone(),
                reason,
            };
            match (view.skip, view.range) {
                (true, None) => {}
                (true, Some(_)) => return Err(bad("a skipped view has a byte range".into())),
                (false, None) => return Err(bad("a kept view has no byte range".into())),
                (false, Some(ByteRange { offset, len })) => {
                    if offset != covered {
                        return Err(bad(format!(
                            "starts at payload offset {offset}, expected {covered} (views are back to back)"
                        )));
                    }
                    if len == 0 || len > payload - covered {
                        return Err(bad(format!(
                            "length {len} at offset {offset} does not fit the {payload}-byte payload"
                        )));
                    }
                    covered += len;
                }
            }
        }
        if covered != payload {
            return Err(BundleError::PayloadLength { payload, covered });
        }
        Ok(Self {
            manifest,
            bytes,
            payload_start,
        })
    }

    /// The encoded bundle.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded bundle, consuming `self`.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// PNG bytes of view `i` (model order); `None` for a skip or an index out of range.
    pub fn view_png(&self, i: usize) -> Option<&[u8]> {
        let range = self.manifest.views.get(i)?.range?;
        // Ranges were checked in `decode`/`build`, but `manifest` is public: stay checked.
        let start = self
            .payload_start
            .checked_add(usize::try_from(range.offset).ok()?)?;
        let end = start.checked_add(usize::try_from(range.len).ok()?)?;
        self.bytes.get(start..end)
    }

    /// Decoded pixels of view `i`; `Ok(None)` for a skip, an error for an index out of
    /// range or a PNG that is corrupt or not a `tile x tile` 8-bit RGB image.
    pub fn view_image(&self, i: usize) -> Result<Option<RgbImage>, BundleError> {
        let Some(view) = self.manifest.views.get(i) else {
            return Err(BundleError::View {
                index: i,
                key: String::new(),
                reason: format!("no such view (the page has {})", self.manifest.views.len()),
            });
        };
        if view.skip {
            return Ok(None);
        }
        let Some(png) = self.view_png(i) else {
            return Err(BundleError::View {
                index: i,
                key: view.key.clone(),
                reason: "kept view has no byte range inside the bundle".to_string(),
            });
        };
        let tile = self.manifest.preprocess.tile;
        decode_png(png, tile)
            .map(Some)
            .map_err(|reason| BundleError::View {
                index: i,
                key: view.key.clone(),
                reason,
            })
    }
}

/// Builds a bundle and returns its bytes (see [`PageBundle::build`]).
pub fn encode(manifest: PageManifest, tiled: &TiledPage) -> Result<Vec<u8>, BundleError> {
    PageBundle::build(manifest, tiled).map(PageBundle::into_bytes)
}

/// Lossless 8-bit RGB PNG of `img`, appended to `out`.
fn encode_png(img: &RgbImage, out: &mut Vec<u8>) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(out, img.width(), img.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(PNG_COMPRESSION);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(img.as_raw())?;
    writer.finish()
}

/// Decodes a view PNG, insisting on `tile x tile` 8-bit RGB.
fn decode_png(png_bytes: &[u8], tile: u32) -> Result<RgbImage, String> {
    // A tile-sized RGB image plus a little slack for the decoder's own buffers.
    let limit = (tile as usize * tile as usize * 3) * 2 + (1 << 16);
    let decoder =
        png::Decoder::new_with_limits(Cursor::new(png_bytes), png::Limits { bytes: limit });
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("corrupt PNG: {e}"))?;
    let info = reader.info();
    if info.width != tile || info.height != tile {
        return Err(format!(
            "PNG is {}x{}, expected {tile}x{tile}",
            info.width, info.height
        ));
    }
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "PNG is {:?} {:?}, expected 8-bit RGB",
            info.color_type, info.bit_depth
        ));
    }
    let mut buf = vec![0u8; tile as usize * tile as usize * 3];
    reader
        .next_frame(&mut buf)
        .map_err(|e| format!("corrupt PNG: {e}"))?;
    RgbImage::from_raw(tile, tile, buf).ok_or_else(|| "PNG buffer size mismatch".to_string())
}

/// What [`extract_to_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractSummary {
    pub dir: PathBuf,
    /// View files written, in model order.
    pub views: Vec<String>,
    /// Keys of skipped views (no file).
    pub skipped: Vec<String>,
}

impl fmt::Display for ExtractSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: manifest.json + {} views ({}); {} skipped ({})",
            self.dir.display(),
            self.views.len(),
            self.views.join(", "),
            self.skipped.len(),
            self.skipped.join(", ")
        )
    }
}

/// Reads the bundle file at `bundle_path` and writes its views as viewable PNGs
/// (`global.png`, `r0c0.png`, ...) plus `manifest.json` into `dir` (created if needed).
/// Every view is decoded first, so a corrupt bundle writes nothing.
pub fn extract_to_dir(
    bundle_path: impl AsRef<Path>,
    dir: impl AsRef<Path>,
) -> Result<ExtractSummary, BundleError> {
    let path = bundle_path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PageBundle::decode(bytes)?.extract(dir)
}

impl PageBundle {
    /// Writes this bundle's views and `manifest.json` into `dir` (see [`extract_to_dir`]).
    pub fn extract(&self, dir: impl AsRef<Path>) -> Result<ExtractSummary, BundleError> {
        let dir = dir.as_ref();
        for i in 0..self.manifest.views.len() {
            self.view_image(i)?;
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut summary = ExtractSummary {
            dir: dir.to_path_buf(),
            views: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, view) in self.manifest.views.iter().enumerate() {
            // Keys are canonical (`global.png`, `rNcM.png`): validated with the manifest.
            match self.view_png(i) {
                Some(png) => {
                    let file = dir.join(&view.key);
                    std::fs::write(&file, png).map_err(io(&file))?;
                    summary.views.push(view.key.clone());
                }
                None => summary.skipped.push(view.key.clone()),
            }
        }
        let file = dir.join("manifest.json");
        std::fs::write(&file, self.manifest.to_json()).map_err(io(&file))?;
        Ok(summary)
    }
}
