//! A render child as the parent sees it: started with [`CHILD_ARG`], spoken to over
//! its pipes within each request's wall-clock budget, killed when it overruns, and
//! reaped with its peak memory; every way it can die becomes a typed [`DocError`].

use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::child::CHILD_ARG;
use super::protocol::{read_message, write_message, Request, Response};
use crate::error::DocError;
use crate::limits::Limits;

/// Extra wall-clock time the parent grants a request beyond `page_timeout`, for process
/// start and pixel transfer.
const GRACE: Duration = Duration::from_secs(5);
/// A running child.
pub(super) struct Running {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    replies: Receiver<std::io::Result<Reply>>,
    stderr: Arc<Mutex<String>>,
    /// Set once [`reap`] collected the child (its pid may then be reused: never signal it).
    reaped: bool,
}

impl Running {
    /// The child's process id (its `/proc` entry while it runs).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
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

pub(super) fn protocol_error(page: Option<u32>, got: &Response) -> DocError {
    DocError::RenderCrashed {
        page,
        reason: format!("unexpected answer from the render child: {got:?}"),
    }
}

/// Starts a child of `program` with `memory` bytes of heap.
pub(super) fn spawn(program: &Path, memory: u64) -> Result<Running, DocError> {
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
pub(super) type Reply = (Response, Vec<u8>);

/// Sends one request and waits for its answer within the request's budget. Returns the
/// child if it is still usable, and the answer or the typed reason the child died.
pub(super) fn exchange(
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
