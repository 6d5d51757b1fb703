//! The Rust side of `shim.cpp`: each call reports failure as a status and a message.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::GraphError;

extern "C" {
    fn sphinx_cuda_device_count() -> c_int;
    fn sphinx_side_stream_enter(
        device: c_int,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn sphinx_side_stream_exit(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn sphinx_graph_begin(out: *mut *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn sphinx_graph_end(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn sphinx_graph_replay(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    fn sphinx_graph_free(handle: *mut c_void);
}

/// An instantiated `at::cuda::CUDAGraph`, freed on drop.
pub(crate) struct Raw(*mut c_void);

// SAFETY: a CUDAGraph is a handle to device-side objects; CUDA allows launching it from
// any thread, and the shim keeps no per-thread state in it.
unsafe impl Send for Raw {}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: owned, instantiated, freed once.
        unsafe { sphinx_graph_free(self.0) };
    }
}

fn call(what: &'static str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), GraphError> {
    let mut err = [0 as c_char; 512];
    if f(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated string of at most `len` bytes.
    let reason = unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Err(GraphError::Cuda { what, reason })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

pub(crate) fn device_count() -> usize {
    // SAFETY: no arguments; c10 answers 0 when there is no driver or device.
    unsafe { sphinx_cuda_device_count().max(0) as usize }
}

pub(crate) fn on_side_stream<R>(device: usize, work: impl FnOnce() -> R) -> Result<R, GraphError> {
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: `handle` receives a heap object that `sphinx_side_stream_exit` frees.
    call("side stream", |e, l| unsafe {
        sphinx_side_stream_enter(device as c_int, &mut handle, e, l)
    })?;
    let out = catch_unwind(AssertUnwindSafe(work));
    // SAFETY: `handle` came from `sphinx_side_stream_enter` and is freed exactly once.
    let exit = call("side stream", |e, l| unsafe {
        sphinx_side_stream_exit(handle, e, l)
    });
    let out = out.map_err(|p| GraphError::Work(panic_message(&*p)))?;
    exit?;
    Ok(out)
}

pub(crate) fn capture<E: std::fmt::Display>(
    device: usize,
    work: impl FnOnce() -> Result<(), E>,
) -> Result<Raw, GraphError> {
    on_side_stream(device, || {
        let mut raw: *mut c_void = std::ptr::null_mut();
        // SAFETY: `raw` receives a graph that `sphinx_graph_end` instantiates (or frees,
        // when it fails).
        call("capture begin", |e, l| unsafe {
            sphinx_graph_begin(&mut raw, e, l)
        })?;
        let work = match catch_unwind(AssertUnwindSafe(work)) {
            Err(p) => Err(GraphError::Work(panic_message(&*p))),
            Ok(Err(e)) => Err(GraphError::Work(e.to_string())),
            Ok(Ok(())) => Ok(()),
        };
        // SAFETY: `raw` is the graph begun above; the shim frees it if ending fails.
        let end = call("capture", |e, l| unsafe { sphinx_graph_end(raw, e, l) });
        match (work, end) {
            (Ok(()), Ok(())) => Ok(Raw(raw)),
            (Err(why), Ok(())) => {
                // Ended, so ours to free.
                drop(Raw(raw));
                Err(why)
            }
            // The work's failure says why the capture did (a sync, say) better than CUDA.
            (Err(why), Err(_)) | (Ok(()), Err(why)) => Err(why),
        }
    })?
}

pub(crate) fn replay(raw: &Raw) -> Result<(), GraphError> {
    // SAFETY: `raw` is a live, instantiated graph.
    call("replay", |e, l| unsafe { sphinx_graph_replay(raw.0, e, l) })
}
