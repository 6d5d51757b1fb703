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
//! of isolation is one process start per worker thread, not per page.
//!
//! Protocol: each message is a little-endian `u32` length, a JSON header ([`Request`] or
//! [`Response`]) and, after it, the raw payload the header announces (document bytes, or
//! a page's RGB8 pixels).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::document::{Document, Page, SourceKind};
use crate::error::DocError;
use crate::limits::Limits;

/// The first argument that turns a binary into a render child ([`run_child_if_requested`]).
pub const CHILD_ARG: &str = "--sphinx-render-child";
/// Extra wall-clock time the parent grants a request beyond `page_timeout`, for process
/// start and pixel transfer.
const GRACE: Duration = Duration::from_secs(5);
/// Most header bytes accepted from the child.
const MAX_HEADER: u32 = 64 << 20;

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
    fn of(doc: &Document, long_side: u32) -> Result<Self, DocError> {
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

    fn check_index(&self, index: u32) -> Result<(), DocError> {
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
enum Request {
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
enum Response {
    Opened(DocInfo),
    /// A page; its `width * height * 3` RGB8 bytes follow.
    Page {
        width: u32,
        height: u32,
        size_points: [f32; 2],
    },
    Failed(DocError),
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

/// A running child.
struct Running {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    replies: Receiver<std::io::Result<Reply>>,
    stderr: Arc<Mutex<String>>,
    /// Set once [`reap`] collected the child (its pid may then be reused: never signal it).
    reaped: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a child ended: its raw wait status and peak resident memory.
struct Ended {
    status: libc::c_int,
    peak_rss_bytes: u64,
}

/// Collects the child (waiting up to `wait` for it to exit), with its resource usage.
fn reap(running: &mut Running, wait: Duration) -> Option<Ended> {
    let pid = running.child.id() as libc::pid_t;
    let deadline = Instant::now() + wait;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: wait4 writes the status and one rusage struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            running.reaped = true;
            return Some(Ended {
                status,
                peak_rss_bytes: usage.ru_maxrss.max(0) as u64 * 1024,
            });
        }
        if got < 0 || Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Idle renderers, reused across documents.
static POOL: Mutex<Vec<Renderer>> = Mutex::new(Vec::new());

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
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", running.child.id())).ok()?;
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

fn protocol_error(page: Option<u32>, got: &Response) -> DocError {
    DocError::RenderCrashed {
        page,
        reason: format!("unexpected answer from the render child: {got:?}"),
    }
}

/// Starts a child of `program` with `memory` bytes of heap.
fn spawn(program: &Path, memory: u64) -> Result<Running, DocError> {
    let crashed = |reason: String| DocError::RenderCrashed { page: None, reason };
    let mut child = Command::new(program)
        .arg(CHILD_ARG)
        .arg(memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| crashed(format!("cannot start {}: {e}", program.display())))?;
    let stdin = BufWriter::new(child.stdin.take().expect("piped stdin"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let tail = Arc::clone(&stderr);
    std::thread::Builder::new()
        .name("render-child-stderr".into())
        .spawn(move || keep_tail(stderr_pipe, &tail))
        .map_err(|e| crashed(format!("cannot start a reader thread: {e}")))?;
    let (tx, replies) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("render-child-stdout".into())
        .spawn(move || {
            let mut out = BufReader::new(stdout);
            loop {
                let msg = read_message::<Response>(&mut out);
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|e| crashed(format!("cannot start a reader thread: {e}")))?;
    Ok(Running {
        child,
        stdin,
        replies,
        stderr,
        reaped: false,
    })
}

/// Keeps the last 4 KiB the child wrote to stderr.
fn keep_tail(mut pipe: impl Read, tail: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.push_str(&String::from_utf8_lossy(&buf[..n]));
        if t.len() > 4096 {
            let cut = t.len() - 4096;
            let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
            t.drain(..cut);
        }
    }
}

/// An answer and its payload.
type Reply = (Response, Vec<u8>);

/// Sends one request and waits for its answer within the request's budget. Returns the
/// child if it is still usable, and the answer or the typed reason the child died.
fn exchange(
    mut running: Running,
    request: &Request,
    payload: &[u8],
    limits: &Limits,
    page: Option<u32>,
    memory: u64,
    peak: &mut Option<u64>,
) -> (Option<Running>, Result<Reply, DocError>) {
    let budget = limits.page_timeout + GRACE;
    let sent = write_message(&mut running.stdin, request, payload);
    let reply = match sent {
        Ok(()) => running.replies.recv_timeout(budget),
        Err(_) => Err(RecvTimeoutError::Disconnected),
    };
    match reply {
        Ok(Ok((response, pixels))) => {
            if let Response::Page { width, height, .. } = &response {
                let want = u64::from(*width) * u64::from(*height) * 3;
                if want != pixels.len() as u64 {
                    return (None, Err(protocol_error(page, &response)));
                }
            }
            (Some(running), Ok((response, pixels)))
        }
        Err(RecvTimeoutError::Timeout) => {
            let _ = running.child.kill();
            *peak = reap(&mut running, Duration::from_secs(5)).map(|e| e.peak_rss_bytes);
            drop(running);
            let seconds = budget.as_secs_f64();
            let err = match page {
                Some(page) => DocError::RenderTimeout { page, seconds },
                None => DocError::OpenTimeout { seconds },
            };
            (None, Err(err))
        }
        Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => (
            None,
            Err(death(
                running,
                page,
                memory,
                limits.page_timeout.as_secs_f64(),
                peak,
            )),
        ),
    }
}

/// Why the child ended, as a typed error.
fn death(
    mut running: Running,
    page: Option<u32>,
    memory: u64,
    seconds: f64,
    peak: &mut Option<u64>,
) -> DocError {
    let ended = reap(&mut running, Duration::from_secs(2));
    *peak = ended.as_ref().map(|e| e.peak_rss_bytes);
    std::thread::sleep(Duration::from_millis(20)); // let the stderr reader drain
    let tail = running
        .stderr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let last = tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if tail.contains("memory allocation of") {
        return DocError::RenderMemory {
            page,
            limit_bytes: memory,
        };
    }
    let status = ended.map(|e| e.status);
    if status.is_some_and(|s| libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGXCPU) {
        return match page {
            Some(page) => DocError::RenderTimeout { page, seconds },
            None => DocError::OpenTimeout { seconds },
        };
    }
    let how = status.map_or_else(|| "did not exit".to_string(), describe);
    DocError::RenderCrashed {
        page,
        reason: if last.is_empty() {
            how
        } else {
            format!("{how}: {last}")
        },
    }
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGABRT => "SIGABRT",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGKILL => "SIGKILL (the system's out-of-memory killer?)",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            _ => "signal",
        };
        return format!("killed by {name} ({sig})");
    }
    format!("exited with status {}", libc::WEXITSTATUS(status))
}

fn write_message<T: Serialize>(
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
fn read_message<T: for<'de> Deserialize<'de> + Payload>(
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
trait Payload {
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

/// Becomes a render child (and never returns) when the first argument is [`CHILD_ARG`].
/// Call it first thing in `main` of every binary that uses [`Isolation::this_binary`].
pub fn run_child_if_requested() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(CHILD_ARG) {
        return;
    }
    let memory = args.next().and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
    std::process::exit(child_main(memory));
}

/// The child's loop: one request at a time, until the parent closes stdin.
fn child_main(memory: u64) -> i32 {
    if memory > 0 {
        set_limit(libc::RLIMIT_DATA, memory, memory);
    }
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(std::io::stdout().lock());
    let mut doc: Option<(Document, Limits)> = None;
    loop {
        let (request, payload) = match read_message::<Request>(&mut input) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return 0,
            Err(e) => {
                eprintln!("render child: bad request: {e}");
                return 2;
            }
        };
        let (response, pixels) = match request {
            Request::Open {
                limits, long_side, ..
            } => {
                budget_cpu(&limits);
                doc = None;
                let opened = Document::open(Arc::new(payload), &limits)
                    .and_then(|d| DocInfo::of(&d, long_side).map(|info| (d, info)));
                match opened {
                    Ok((d, info)) => {
                        doc = Some((d, limits));
                        (Response::Opened(info), Vec::new())
                    }
                    Err(e) => (Response::Failed(e), Vec::new()),
                }
            }
            Request::Render { index, long_side } => match &doc {
                None => (
                    Response::Failed(DocError::RenderCrashed {
                        page: Some(index),
                        reason: "no document is open".into(),
                    }),
                    Vec::new(),
                ),
                Some((d, limits)) => {
                    budget_cpu(limits);
                    match d.render(index, long_side) {
                        Ok(page) => (
                            Response::Page {
                                width: page.image.width(),
                                height: page.image.height(),
                                size_points: page.size_points,
                            },
                            page.image.into_raw(),
                        ),
                        Err(e) => (Response::Failed(e), Vec::new()),
                    }
                }
            },
        };
        if write_message(&mut output, &response, &pixels).is_err() {
            return 0; // the parent went away
        }
    }
}

/// Lets the child spend `page_timeout` (plus two seconds) more CPU seconds.
fn budget_cpu(limits: &Limits) {
    let used = cpu_seconds();
    let budget = limits.page_timeout.as_secs() + 2;
    set_limit(libc::RLIMIT_CPU, used + budget, libc::RLIM_INFINITY);
}

fn cpu_seconds() -> u64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec).max(0) as u64
}

#[cfg(target_os = "linux")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_os = "linux"))]
type Resource = libc::c_int;

fn set_limit(resource: Resource, soft: u64, hard: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit struct we own; failure only leaves limits as they were.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        eprintln!(
            "render child: setrlimit failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
