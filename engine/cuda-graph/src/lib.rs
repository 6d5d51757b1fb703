//! CUDA graphs for work queued through tch (which exposes none): the kernels of a closure
//! are captured once into an `at::cuda::CUDAGraph` and replayed with a single launch, so a
//! decode step of hundreds of small kernels costs one launch instead of hundreds (the
//! host, not the GPU, bounds a step at small batch).
//!
//! A graph replays the *same* kernels on the *same* memory: every tensor the closure reads
//! or writes must outlive the graph and keep its address (update it in place, never
//! rebind it), and its shapes are fixed at capture. Tensors the closure allocates come
//! from the graph's own memory pool; drop them inside the closure.
//!
//! The shim (`src/shim.cpp`) is compiled when libtorch's CUDA headers are present (they
//! come with the PyTorch wheel `scripts/setup.sh` installs); otherwise [`available`] is
//! false and every call answers [`GraphError::NotBuilt`].

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a graph could not be captured or replayed.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("CUDA graphs are not built into this binary (no CUDA headers at build time)")]
    NotBuilt,
    #[error("CUDA graphs need a CUDA device; cuda:{device} is not one of the {count} here")]
    NoDevice { device: usize, count: usize },
    #[error("CUDA graph {what} failed: {reason}")]
    Cuda { what: &'static str, reason: String },
    #[error("the work captured into a CUDA graph failed: {0}")]
    Work(String),
}

#[cfg(sphinx_cuda_graph)]
mod ffi {
    use super::*;
    extern "C" {
        pub fn sphinx_cuda_device_count() -> c_int;
        pub fn sphinx_side_stream_enter(
            device: c_int,
            out: *mut *mut c_void,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn sphinx_side_stream_exit(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
        pub fn sphinx_graph_begin(out: *mut *mut c_void, err: *mut c_char, len: usize) -> c_int;
        pub fn sphinx_graph_end(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
        pub fn sphinx_graph_replay(handle: *mut c_void, err: *mut c_char, len: usize) -> c_int;
        pub fn sphinx_graph_free(handle: *mut c_void);
    }
}

/// True when the shim is built into this binary.
pub fn available() -> bool {
    cfg!(sphinx_cuda_graph)
}

/// CUDA devices libtorch sees (0 without the shim).
pub fn device_count() -> usize {
    #[cfg(sphinx_cuda_graph)]
    {
        // SAFETY: no arguments; c10 answers 0 when there is no driver or device.
        unsafe { ffi::sphinx_cuda_device_count().max(0) as usize }
    }
    #[cfg(not(sphinx_cuda_graph))]
    0
}

/// Runs a shim call that reports failure as a status and a message.
#[cfg(sphinx_cuda_graph)]
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

fn check_device(device: usize) -> Result<(), GraphError> {
    if !available() {
        return Err(GraphError::NotBuilt);
    }
    let count = device_count();
    if device >= count {
        return Err(GraphError::NoDevice { device, count });
    }
    Ok(())
}

/// Runs `work` on the side stream of `device` (one per device, the one captures use; the
/// device is synchronised before, the side stream after): the warm-up a capture needs,
/// since libraries such as cuBLAS set up per-stream state on first use, which must not
/// happen during capture.
pub fn on_side_stream<R>(device: usize, work: impl FnOnce() -> R) -> Result<R, GraphError> {
    check_device(device)?;
    #[cfg(sphinx_cuda_graph)]
    {
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: `handle` receives a heap object that `sphinx_side_stream_exit` frees.
        call("side stream", |e, l| unsafe {
            ffi::sphinx_side_stream_enter(device as c_int, &mut handle, e, l)
        })?;
        let out = catch_unwind(AssertUnwindSafe(work));
        // SAFETY: `handle` came from `sphinx_side_stream_enter` and is freed exactly once.
        let exit = call("side stream", |e, l| unsafe {
            ffi::sphinx_side_stream_exit(handle, e, l)
        });
        let out = out.map_err(|p| GraphError::Work(panic_message(&p)))?;
        exit?;
        Ok(out)
    }
    #[cfg(not(sphinx_cuda_graph))]
    {
        let _ = work;
        unreachable!("check_device refuses without the shim")
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// A captured graph; see the crate docs for what it may touch.
pub struct Graph {
    raw: *mut c_void,
}

// SAFETY: a CUDAGraph is a handle to device-side objects; replaying it from another thread
// is allowed by CUDA, and the shim never shares it between calls.
unsafe impl Send for Graph {}

impl Graph {
    /// Captures the kernels `work` queues on `device` (on a side stream). Nothing runs:
    /// call [`Graph::replay`] to execute them. Run `work` once on [`on_side_stream`]
    /// first. An error or panic in `work` (a host synchronisation is one: it is not
    /// allowed while capturing) ends the capture and is returned.
    pub fn capture<E: std::fmt::Display>(
        device: usize,
        work: impl FnOnce() -> Result<(), E>,
    ) -> Result<Graph, GraphError> {
        check_device(device)?;
        #[cfg(sphinx_cuda_graph)]
        {
            on_side_stream(device, || {
                let mut raw: *mut c_void = std::ptr::null_mut();
                // SAFETY: `raw` receives a graph owned by the returned `Graph` (or freed
                // by `sphinx_graph_end` on failure).
                call("capture begin", |e, l| unsafe {
                    ffi::sphinx_graph_begin(&mut raw, e, l)
                })?;
                let out = catch_unwind(AssertUnwindSafe(work));
                // SAFETY: `raw` is the graph begun above; on failure the shim frees it.
                let end = call("capture", |e, l| unsafe {
                    ffi::sphinx_graph_end(raw, e, l)
                });
                match out {
                    Err(p) => {
                        if end.is_ok() {
                            // SAFETY: ended successfully, so still ours to free.
                            unsafe { ffi::sphinx_graph_free(raw) };
                        }
                        Err(GraphError::Work(panic_message(&p)))
                    }
                    Ok(Err(e)) => {
                        if end.is_ok() {
                            // SAFETY: as above.
                            unsafe { ffi::sphinx_graph_free(raw) };
                        }
                        Err(GraphError::Work(e.to_string()))
                    }
                    Ok(Ok(())) => end.map(|()| Graph { raw }),
                }
            })?
        }
        #[cfg(not(sphinx_cuda_graph))]
        {
            let _ = work;
            unreachable!("check_device refuses without the shim")
        }
    }

    /// Launches every captured kernel, in order, on the thread's current stream.
    pub fn replay(&self) -> Result<(), GraphError> {
        #[cfg(sphinx_cuda_graph)]
        {
            // SAFETY: `raw` is a live, instantiated graph owned by `self`.
            call("replay", |e, l| unsafe {
                ffi::sphinx_graph_replay(self.raw, e, l)
            })
        }
        #[cfg(not(sphinx_cuda_graph))]
        Err(GraphError::NotBuilt)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        #[cfg(sphinx_cuda_graph)]
        // SAFETY: owned and freed once.
        unsafe {
            ffi::sphinx_graph_free(self.raw)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_this_machine_lacks_is_refused_by_name() {
        let count = device_count();
        let err = on_side_stream(count, || ()).unwrap_err();
        if available() {
            assert!(
                matches!(err, GraphError::NoDevice { device, count: c } if device == count && c == count),
                "{err}"
            );
        } else {
            assert!(matches!(err, GraphError::NotBuilt), "{err}");
        }
        let err = Graph::capture(count, || Ok::<(), String>(()))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("CUDA"), "{err}");
    }
}
