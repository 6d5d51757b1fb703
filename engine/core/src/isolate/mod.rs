//! Hostile documents are opened and rendered in a child process under hard limits.
//!
//! A decoder bomb (a PDF image whose Flate stream inflates to 10 GB, a content stream that
//! never ends) can exhaust memory or CPU inside a third-party decoder, where no error
//! handling of ours runs: Rust aborts on a failed allocation, and a thread stuck in hayro
//! cannot be cancelled. So with [`Isolation::Child`] every document is opened and its pages
//! rendered by a child process of the same binary (started with [`CHILD_ARG`]), which the
//! parent speaks to over stdin/stdout. The child's heap is capped with `RLIMIT_DATA`
//! ([`Limits::render_memory`]), its CPU time with `RLIMIT_CPU`, and the parent kills it
//! when a request overruns its wall-clock budget. Any death of the child becomes a typed
//! [`DocError`] (`render_memory`, `render_timeout`, `render_crashed`) naming the page, the
//! next document gets a fresh child, and no thread is ever abandoned in the parent.
//!
//! Idle children are kept in a process-wide pool and reused across documents, so the cost
//! of isolation is one process start per worker thread, not per page; a command ends them
//! before it exits ([`end_pooled_children`]).
//!
//! The parts: `protocol.rs` (the wire, and [`DocInfo`]), `process.rs` (the child as the
//! parent sees it: start, exchange, budget, death), `child.rs` (the child's own loop under
//! its limits); this file holds where rendering happens and the pooled [`Renderer`].

mod child;
mod process;
mod protocol;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use image::RgbImage;

use crate::document::{Document, Page};
use crate::error::DocError;
use crate::limits::Limits;
pub use child::{run_child_if_requested, CHILD_ARG};
use process::{exchange, protocol_error, spawn, Running};
pub use protocol::DocInfo;
use protocol::{Request, Response};

/// Where documents are opened and rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// In this process: for trusted inputs (pages `sphinx synth` made) and tests.
    #[default]
    InProcess,
    /// In child processes of `program` (a binary that calls [`run_child_if_requested`]
    /// first thing in `main`), under the limits of each request.
    Child { program: PathBuf },
}

/// Overrides the child program of [`Isolation::this_binary`] (test harnesses, which are
/// not render children themselves, point it at a binary that is).
pub const ENV_RENDER_PROGRAM: &str = "SPHINX_RENDER_PROGRAM";

/// The render child without libtorch (`engine/core/src/bin/sphinx-render.rs`): preferred
/// when it sits beside the running binary.
pub const RENDER_BINARY: &str = "sphinx-render";

impl Isolation {
    /// Child processes for the running binary: [`ENV_RENDER_PROGRAM`] when set, else
    /// [`RENDER_BINARY`] when it sits beside the running binary, else the running binary
    /// itself (which must call [`run_child_if_requested`]). `sphinx` links libtorch, whose
    /// loading costs a child ~0.5 s and ~440 MB before it renders anything (measured);
    /// `sphinx-render` and the tiler Lambda start in milliseconds in ~7 MB.
    pub fn this_binary() -> Self {
        if let Some(program) = std::env::var_os(ENV_RENDER_PROGRAM) {
            return Self::Child {
                program: program.into(),
            };
        }
        match std::env::current_exe() {
            Ok(exe) => {
                let sibling = exe.with_file_name(RENDER_BINARY);
                let program = if sibling.is_file() { sibling } else { exe };
                Self::Child { program }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot locate this binary: rendering in-process");
                Self::InProcess
            }
        }
    }
}

/// A document opened for rendering, in this process or in a child.
pub struct Renderer {
    isolation: Isolation,
    memory: u64,
    state: State,
    /// Peak resident memory of the last child that ended.
    last_peak_rss: Option<u64>,
}

enum State {
    Idle,
    InProcess(Document, DocInfo),
    Child(Running, Option<DocInfo>),
}

/// Idle renderers, reused across documents.
static POOL: Mutex<Vec<Renderer>> = Mutex::new(Vec::new());

/// Ends the idle pooled children, each killed and reaped. A command calls it before it
/// exits: a child left to notice its closed stdin would outlive the command for a moment,
/// an orphan (and a zombie where the container's first process reaps none).
pub fn end_pooled_children() {
    let idle = std::mem::take(&mut *POOL.lock().unwrap_or_else(|p| p.into_inner()));
    drop(idle);
}

impl Renderer {
    /// A renderer for `isolation` whose child (if any) has `memory` bytes of heap.
    pub fn new(isolation: Isolation, memory: u64) -> Self {
        Self {
            isolation,
            memory,
            state: State::Idle,
            last_peak_rss: None,
        }
    }

    /// Runs `f` with an idle renderer for (`isolation`, `limits.render_memory`) from the
    /// process-wide pool (a new one when none is idle), and gives it back afterwards.
    pub fn with<T>(
        isolation: &Isolation,
        limits: &Limits,
        f: impl FnOnce(&mut Renderer) -> T,
    ) -> T {
        let memory = limits.render_memory;
        let taken = {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            pool.iter()
                .position(|r| &r.isolation == isolation && r.memory == memory)
                .map(|i| pool.swap_remove(i))
        };
        let mut renderer = taken.unwrap_or_else(|| Renderer::new(isolation.clone(), memory));
        let out = f(&mut renderer);
        if let State::InProcess(..) = renderer.state {
            renderer.state = State::Idle; // drop the document, keep nothing per-document
        }
        if let State::Child(_, info) = &mut renderer.state {
            *info = None;
        }
        POOL.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(renderer);
        out
    }

    /// Opens a document (replacing any open one) and describes its pages at `long_side`.
    pub fn open(
        &mut self,
        bytes: &Arc<Vec<u8>>,
        limits: &Limits,
        long_side: u32,
    ) -> Result<DocInfo, DocError> {
        if long_side == 0 {
            return Err(DocError::InvalidRenderSize { long_side });
        }
        let program = match &self.isolation {
            Isolation::InProcess => {
                self.state = State::Idle;
                let doc = Document::open(Arc::clone(bytes), limits)?;
                let info = DocInfo::of(&doc, long_side)?;
                self.state = State::InProcess(doc, info.clone());
                return Ok(info);
            }
            Isolation::Child { program } => program.clone(),
        };
        // A child that reported a timeout may still run an abandoned render: replace it.
        let running = match std::mem::replace(&mut self.state, State::Idle) {
            State::Child(running, _) => running,
            _ => spawn(&program, self.memory)?,
        };
        let request = Request::Open {
            limits: limits.clone(),
            long_side,
            bytes: bytes.len() as u64,
        };
        let (running, reply) = exchange(
            running,
            &request,
            bytes,
            limits,
            None,
            self.memory,
            &mut self.last_peak_rss,
        );
        match reply? {
            (Response::Opened(info), _) => {
                self.state =
                    State::Child(running.expect("a live child answered"), Some(info.clone()));
                Ok(info)
            }
            (Response::Failed(e), _) => {
                if let Some(r) = running {
                    self.state = State::Child(r, None);
                }
                Err(e)
            }
            (other, _) => Err(protocol_error(None, &other)),
        }
    }

    /// Renders page `index` of the open document (see [`Document::render`]).
    pub fn render(&mut self, index: u32, limits: &Limits) -> Result<Page, DocError> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Err(DocError::RenderCrashed {
                page: Some(index),
                reason: "no document is open".into(),
            }),
            State::InProcess(doc, info) => {
                let page = info
                    .check_index(index)
                    .and_then(|_| doc.render(index, info.long_side));
                self.state = State::InProcess(doc, info);
                page
            }
            State::Child(running, None) => {
                self.state = State::Child(running, None);
                Err(DocError::RenderCrashed {
                    page: Some(index),
                    reason: "no document is open".into(),
                })
            }
            State::Child(running, Some(info)) => {
                if let Err(e) = info.check_index(index) {
                    // A bad index is the caller's mistake: keep the child and its document.
                    self.state = State::Child(running, Some(info));
                    return Err(e);
                }
                let request = Request::Render {
                    index,
                    long_side: info.long_side,
                };
                let (running, reply) = exchange(
                    running,
                    &request,
                    &[],
                    limits,
                    Some(index),
                    self.memory,
                    &mut self.last_peak_rss,
                );
                let keep = |s: &mut Self, r: Option<Running>, info: DocInfo| {
                    if let Some(r) = r {
                        s.state = State::Child(r, Some(info));
                    }
                };
                match reply? {
                    (
                        Response::Page {
                            width,
                            height,
                            size_points,
                        },
                        pixels,
                    ) => {
                        keep(self, running, info);
                        let image = RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
                            DocError::RenderCrashed {
                                page: Some(index),
                                reason: "page pixels do not match the page size".into(),
                            }
                        })?;
                        Ok(Page { image, size_points })
                    }
                    (Response::Failed(e), _) => {
                        // A timed-out render thread may live on inside the child: retire it.
                        if !matches!(e, DocError::RenderTimeout { .. }) {
                            keep(self, running, info);
                        }
                        Err(e)
                    }
                    (other, _) => Err(protocol_error(Some(index), &other)),
                }
            }
        }
    }

    /// Peak resident memory of the current child (Linux `VmHWM`), else of the last child
    /// that ended; `None` in-process.
    pub fn child_peak_rss_bytes(&self) -> Option<u64> {
        let State::Child(running, _) = &self.state else {
            return self.last_peak_rss;
        };
        let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// Opens `bytes` and renders page `index` at `long_side` where `isolation` says (a pooled
/// renderer): what `sphinx infer`, `eval` and the trainer need of a document.
pub fn render_page(
    isolation: &Isolation,
    bytes: &Arc<Vec<u8>>,
    limits: &Limits,
    long_side: u32,
    index: u32,
) -> Result<(DocInfo, Page), DocError> {
    Renderer::with(isolation, limits, |r| {
        let info = r.open(bytes, limits, long_side)?;
        let page = r.render(index, limits)?;
        Ok((info, page))
    })
}
