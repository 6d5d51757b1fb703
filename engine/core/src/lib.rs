//! `sphinx-core`: everything between an uploaded document and the exact inputs
//! SPHINX-X needs, with no libtorch so the tiler Lambda stays small.
//!
//! Flow: bytes -> [`document`] (sniff, decode, render pages under [`limits`]) ->
//! [`tiling`] (fit on the canvas, skip plan, global view + sub-images) ->
//! [`bundle`] (one object per page: manifest + PNG views) under the keys of [`keys`].
//! [`pipeline`] runs that flow for one document.
//!
//! It deliberately knows nothing about models, GPUs or AWS.

pub mod document;
pub mod error;
pub mod keys;
pub mod limits;
pub mod store;
pub mod queue;
pub mod job;
pub mod bundle;
pub mod manifest;
pub mod resize;
pub mod tiling;
pub mod synth;
pub mod prompts;
pub mod boxes;
pub mod result;
