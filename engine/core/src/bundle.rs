//! The page bundle: ONE object per page holding its manifest and the PNGs of its canvas
//! cells.
//!
//! S3 bills per request, so a page is one PUT and one GET, never one per tile. The
//! container (specified in `docs/bundle-format.md`) is:
//!
//! ```text
//! magic "SPHXBNDL" (8) | format version u32 LE | header length u32 LE
//! | header: PageManifest JSON (UTF-8) | payload: the stored cells' PNGs, back to back
//! ```
//!
//! A bundle stores exact crops of the 8-bit canvas and nothing derivable: a padding cell
//! whose pixels are all the padding colour has no bytes. [`PageBundle::tiled`] rebuilds the
//! canvas bit for bit, from which the model derives every view.
//!
//! Each view's `range` in the header is relative to the payload start. Decoding checks
//! everything (magic, version, lengths, manifest shape, ranges tiling the payload exactly)
//! and returns a typed [`BundleError`] on any corrupt input; it never panics.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::manifest::{ByteRange, ManifestError, PageManifest};
use crate::tiling::{assemble_canvas, SkipPlan, TiledPage};

/// First bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"SPHXBNDL";
/// Container layout version (independent of the manifest's `schema_version`). 2: canvas
/// cells (version 1 held separately resized views, which no current model reads).
pub const FORMAT_VERSION: u32 = 2;
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
    #[error("not a page bundle: it does not start with \"SPHXBNDL\"")]
    BadMagic,
    #[error(
        "bundle format version {found} is not supported (this build reads version \
         {FORMAT_VERSION}); re-tile the document with this build"
    )]
    UnsupportedVersion { found: u32 },
    #[error(
        "bundle header length {len} exceeds the {available} bytes available (max {MAX_HEADER_LEN})"
    )]
    HeaderLength { len: u64, available: usize },
    #[error("bundle header: {0}")]
    Manifest(#[from] ManifestError),
    #[error("cell {index} ({key}): {reason}")]
    View {
        index: usize,
        key: String,
        reason: String,
    },
    #[error("bundle payload is {payload} bytes but the cells cover {covered}")]
    PayloadLength { payload: u64, covered: u64 },
    #[error("tiled page does not match the manifest: {0}")]
    Mismatch(String),
    #[error("PNG encoding of cell {index} failed: {error}")]
    Encode {
        index: usize,
        error: png::EncodingError,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
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
    /// Encodes the cells of `tiled` that are not blank padding as PNG and lays out the
    /// bundle; fills the manifest's cell ranges. The manifest must describe `tiled` (same
    /// grid and padding plan).
    pub fn build(mut manifest: PageManifest, tiled: &TiledPage) -> Result<Self, BundleError> {
        manifest.validate()?;
        let tile = manifest.preprocess.tile;
        if tiled.plan.grid() != manifest.grid
            || tiled.canvas.width() != manifest.preprocess.canvas
            || tiled.canvas.height() != manifest.preprocess.canvas
            || tiled.plan.flags() != manifest.padding().as_slice()
        {
            return Err(BundleError::Mismatch(format!(
                "tiled page (canvas {}x{}, grid {}, padding {:?}) is not the manifest's \
                 (canvas {}, grid {}, padding {:?})",
                tiled.canvas.width(),
                tiled.canvas.height(),
                tiled.plan.grid(),
                tiled.plan.flags(),
                manifest.preprocess.canvas,
                manifest.grid,
                manifest.padding()
            )));
        }
        let mut payload = Vec::new();
        for (index, entry) in manifest.cells.iter_mut().enumerate() {
            let (row, col) = (entry.row, entry.col);
            if entry.padding && tiled.cell_is_blank(row, col) {
                entry.range = None;
                continue;
            }
            let img = tiled.cell(row, col);
            debug_assert_eq!((img.width(), img.height()), (tile, tile));
            let offset = payload.len() as u64;
            encode_png(&img, &mut payload).map_err(|error| BundleError::Encode { index, error })?;
            entry.range = Some(ByteRange {
                offset,
                len: payload.len() as u64 - offset,
            });
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
        for (index, cell) in manifest.cells.iter().enumerate() {
            let bad = |reason: String| BundleError::View {
                index,
                key: cell.key.clone(),
                reason,
            };
            match (cell.padding, cell.range) {
                (true, None) => {}
                (false, None) => return Err(bad("a cell of the page has no byte range".into())),
                (_, Some(ByteRange { offset, len })) => {
                    if offset != covered {
                        return Err(bad(format!(
                            "starts at payload offset {offset}, expected {covered} (cells are back to back)"
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

    /// PNG bytes of cell `i` (row-major); `None` for a blank padding cell or an index out
    /// of range.
    pub fn cell_png(&self, i: usize) -> Option<&[u8]> {
        let range = self.manifest.cells.get(i)?.range?;
        // Ranges were checked in `decode`/`build`, but `manifest` is public: stay checked.
        let start = self
            .payload_start
            .checked_add(usize::try_from(range.offset).ok()?)?;
        let end = start.checked_add(usize::try_from(range.len).ok()?)?;
        self.bytes.get(start..end)
    }

    /// Decoded pixels of cell `i`; `Ok(None)` for a blank padding cell, an error for an
    /// index out of range or a PNG that is corrupt or not a `tile x tile` 8-bit RGB image.
    pub fn cell_image(&self, i: usize) -> Result<Option<RgbImage>, BundleError> {
        let Some(cell) = self.manifest.cells.get(i) else {
            return Err(BundleError::View {
                index: i,
                key: String::new(),
                reason: format!("no such cell (the page has {})", self.manifest.cells.len()),
            });
        };
        if cell.range.is_none() && cell.padding {
            return Ok(None);
        }
        let Some(png) = self.cell_png(i) else {
            return Err(BundleError::View {
                index: i,
                key: cell.key.clone(),
                reason: "stored cell has no byte range inside the bundle".to_string(),
            });
        };
        let tile = self.manifest.preprocess.tile;
        decode_png(png, tile)
            .map(Some)
            .map_err(|reason| BundleError::View {
                index: i,
                key: cell.key.clone(),
                reason,
            })
    }

    /// The page as the tiler made it: the canvas rebuilt bit for bit from the stored cells
    /// (blank padding cells filled with the padding colour), placement and padding plan.
    pub fn tiled(&self) -> Result<TiledPage, BundleError> {
        let m = &self.manifest;
        let mut cells = Vec::new();
        for (i, cell) in m.cells.iter().enumerate() {
            if let Some(img) = self.cell_image(i)? {
                cells.push((cell.row, cell.col, img));
            }
        }
        let plan = SkipPlan::from_flags(m.grid, m.padding()).ok_or_else(|| {
            BundleError::Mismatch(format!("{} cells for grid {}", m.cells.len(), m.grid))
        })?;
        Ok(TiledPage {
            page_size: m.size_pixels,
            placement: m.placement.clone(),
            plan,
            canvas: assemble_canvas(m.preprocess.tile, m.grid, cells),
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
    /// Cell files written, row-major.
    pub cells: Vec<String>,
    /// Keys of blank padding cells (no file).
    pub blank: Vec<String>,
}

impl fmt::Display for ExtractSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: manifest.json + canvas.png + {} cells ({}); {} blank padding ({})",
            self.dir.display(),
            self.cells.len(),
            self.cells.join(", "),
            self.blank.len(),
            self.blank.join(", ")
        )
    }
}

/// Reads the bundle file at `bundle_path` and writes its stored cells as viewable PNGs
/// (`r0c0.png`, ...), the rebuilt `canvas.png` and `manifest.json` into `dir` (created if
/// needed). Every cell is decoded first, so a corrupt bundle writes nothing.
pub fn extract_to_dir(
    bundle_path: impl AsRef<Path>,
    dir: impl AsRef<Path>,
) -> Result<ExtractSummary, BundleError> {
    let path = bundle_path.as_ref();
    let bytes = std::fs::read(path).map_err(|error| BundleError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    PageBundle::decode(bytes)?.extract(dir)
}

impl PageBundle {
    /// Writes this bundle's cells, canvas and `manifest.json` into `dir` (see
    /// [`extract_to_dir`]).
    pub fn extract(&self, dir: impl AsRef<Path>) -> Result<ExtractSummary, BundleError> {
        let dir = dir.as_ref();
        let tiled = self.tiled()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| BundleError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut summary = ExtractSummary {
            dir: dir.to_path_buf(),
            cells: Vec::new(),
            blank: Vec::new(),
        };
        for (i, cell) in self.manifest.cells.iter().enumerate() {
            // Keys are canonical (`rNcM.png`): validated with the manifest.
            match self.cell_png(i) {
                Some(png) => {
                    let file = dir.join(&cell.key);
                    std::fs::write(&file, png).map_err(io(&file))?;
                    summary.cells.push(cell.key.clone());
                }
                None => summary.blank.push(cell.key.clone()),
            }
        }
        let file = dir.join("canvas.png");
        let mut png = Vec::new();
        encode_png(&tiled.canvas, &mut png).map_err(|error| BundleError::Encode {
            index: self.manifest.cells.len(),
            error,
        })?;
        std::fs::write(&file, png).map_err(io(&file))?;
        let file = dir.join("manifest.json");
        std::fs::write(&file, self.manifest.to_json()).map_err(io(&file))?;
        Ok(summary)
    }
}
