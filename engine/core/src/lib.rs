//! `sphinx-core`: everything between an uploaded document and the exact inputs
//! SPHINX-X needs, with no libtorch so the tiler Lambda stays small.
//!
//! Flow: bytes -> [`document`] (sniff, decode, render pages under [`limits`], in a
//! child process under hard limits: [`isolate`]) -> [`tiling`] (the page's one canvas and
//! its padding plan) -> [`bundle`] (one object per page: manifest + PNGs of the canvas
//! cells) under the keys of [`keys`]. [`pipeline`] runs that flow for one document.
//!
//! It deliberately knows nothing about models, GPUs or AWS.

pub mod boxes;
pub mod bundle;
pub mod document;
pub mod error;
pub mod error_record;
#[cfg(feature = "io")]
pub mod ingest;
pub mod isolate;
pub mod job;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod output;
pub mod pipeline;
pub mod prompts;
#[cfg(feature = "io")]
pub mod queue;
pub mod resize;
pub mod result;
#[cfg(feature = "io")]
pub mod retry;
#[cfg(feature = "cli")]
pub mod settings;
pub mod source_kind;
pub mod store;
pub mod synth;
pub mod tiling;
