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

#[cfg(sphinx_cuda_graph)]
mod shim;
#[cfg(sphinx_cuda_graph)]
use shim as imp;

#[cfg(not(sphinx_cuda_graph))]
mod absent;
#[cfg(not(sphinx_cuda_graph))]
use absent as imp;

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

/// True when the shim is built into this binary.
pub fn available() -> bool {
    cfg!(sphinx_cuda_graph)
}

/// CUDA devices libtorch sees (0 without the shim).
pub fn device_count() -> usize {
    imp::device_count()
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
    imp::on_side_stream(device, work)
}

/// A captured graph; see the crate docs for what it may touch.
pub struct Graph {
    raw: imp::Raw,
}

impl Graph {
    /// Captures the kernels `work` queues on `device` (on its side stream). Nothing runs:
    /// call [`Graph::replay`] to execute them. Run `work` once on [`on_side_stream`]
    /// first. An error or panic in `work` (a host synchronisation is one: it is not
    /// allowed while capturing) ends the capture and is returned.
    pub fn capture<E: std::fmt::Display>(
        device: usize,
        work: impl FnOnce() -> Result<(), E>,
    ) -> Result<Graph, GraphError> {
        check_device(device)?;
        imp::capture(device, work).map(|raw| Graph { raw })
    }

    /// Launches every captured kernel, in order, on the thread's current stream.
    pub fn replay(&self) -> Result<(), GraphError> {
        imp::replay(&self.raw)
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
