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

// The types other crates use, at the root: `sphinx_core::PageJob`, not its module path.
pub use bundle::PageBundle;
pub use error::DocError;
pub use error_record::{ErrorCode, ErrorRecord};
#[cfg(feature = "io")]
pub use ingest::{Continuation, IngestConfig, IngestError, IngestOutcome, Ingestor};
pub use isolate::Isolation;
pub use job::{PageJob, SidecarSpec, Task};
pub use limits::Limits;
pub use manifest::{DocumentManifest, PageManifest};
pub use output::{OutputFormat, OutputFormats};
pub use pipeline::{tile_document, PageOutput, TileError, TileOptions};
#[cfg(feature = "aws")]
pub use queue::SqsQueue;
#[cfg(feature = "io")]
pub use queue::{MemoryQueue, Queue};
pub use result::{DocumentResult, PageResult};
#[cfg(feature = "io")]
pub use retry::RetryPolicy;
#[cfg(feature = "cli")]
pub use settings::{DeviceArgs, DeviceSpec, LayoutArgs, LimitArgs, S3Args};
pub use source_kind::SourceKind;
#[cfg(feature = "aws")]
pub use store::S3Store;
pub use store::{LocalStore, ObjectStore, StoreError};
pub use tiling::{Align, TileConfig};
