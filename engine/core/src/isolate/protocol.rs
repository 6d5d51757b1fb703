//! The wire between parent and render child: each message is a little-endian `u32`
//! length, a JSON header ([`Request`] or [`Response`]) and, after it, the raw payload the
//! header announces (document bytes, or a page's RGB8 pixels). The header's size is
//! bounded, so a child gone wrong cannot make the parent allocate without limit.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::document::{Document, SourceKind};
use crate::error::DocError;
use crate::limits::Limits;

/// Most header bytes accepted from the child.
const MAX_HEADER: u32 = 64 << 20;

/// What the parent knows of an opened document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocInfo {
    pub kind: SourceKind,
    pub page_count: u32,
    /// Page sizes in points ([`Document::page_size_points`]).
    pub sizes_points: Vec<[f32; 2]>,
    /// Pixel sizes at `long_side` ([`Document::render_size`]).
    pub render_sizes: Vec<[u32; 2]>,
    pub long_side: u32,
}

impl DocInfo {
    pub(super) fn of(doc: &Document, long_side: u32) -> Result<Self, DocError> {
        let n = doc.page_count();
        Ok(Self {
            kind: doc.kind(),
            page_count: n,
            sizes_points: (0..n)
                .map(|i| doc.page_size_points(i))
                .collect::<Result<_, _>>()?,
            render_sizes: (0..n)
                .map(|i| doc.render_size(i, long_side))
                .collect::<Result<_, _>>()?,
            long_side,
        })
    }

    pub(super) fn check_index(&self, index: u32) -> Result<(), DocError> {
        if index >= self.page_count {
            return Err(DocError::PageOutOfRange {
                index,
                count: self.page_count,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Request {
    /// Open a document of `bytes` bytes (the payload) under `limits`.
    Open {
        limits: Limits,
        long_side: u32,
        bytes: u64,
    },
    /// Render page `index` of the open document.
    Render { index: u32, long_side: u32 },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Response {
    Opened(DocInfo),
    /// A page; its `width * height * 3` RGB8 bytes follow.
    Page {
        width: u32,
        height: u32,
        size_points: [f32; 2],
    },
    Failed(DocError),
}

pub(super) fn write_message<T: Serialize>(
    out: &mut impl Write,
    header: &T,
    payload: &[u8],
) -> std::io::Result<()> {
    let json = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    out.write_all(&(json.len() as u32).to_le_bytes())?;
    out.write_all(&json)?;
    out.write_all(payload)?;
    out.flush()
}

/// Reads one message; its payload length comes from the header.
pub(super) fn read_message<T: for<'de> Deserialize<'de> + Payload>(
    input: &mut impl Read,
) -> std::io::Result<(T, Vec<u8>)> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(std::io::Error::other(format!("header of {len} bytes")));
    }
    let mut json = vec![0u8; len as usize];
    input.read_exact(&mut json)?;
    let header: T = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    let n = header.payload_len();
    let mut payload = Vec::new();
    input.take(n).read_to_end(&mut payload)?;
    if payload.len() as u64 != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok((header, payload))
}

/// How many payload bytes follow a header.
pub(super) trait Payload {
    fn payload_len(&self) -> u64;
}

impl Payload for Request {
    fn payload_len(&self) -> u64 {
        match self {
            Request::Open { bytes, .. } => *bytes,
            Request::Render { .. } => 0,
        }
    }
}

impl Payload for Response {
    fn payload_len(&self) -> u64 {
        match self {
            Response::Page { width, height, .. } => u64::from(*width) * u64::from(*height) * 3,
            _ => 0,
        }
    }
}
