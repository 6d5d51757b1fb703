//! The render child's side: a binary that calls [`run_child_if_requested`] first thing in
//! `main` becomes, when started with [`CHILD_ARG`], a loop that opens and renders under
//! `RLIMIT_DATA` (its heap) and `RLIMIT_CPU` (each request's CPU seconds).

use std::io::{BufReader, BufWriter};
use std::sync::Arc;

use super::protocol::{read_message, write_message, DocInfo, Request, Response};
use crate::document::Document;
use crate::error::DocError;
use crate::limits::Limits;

/// The first argument that turns a binary into a render child ([`run_child_if_requested`]).
pub const CHILD_ARG: &str = "--sphinx-render-child";
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
