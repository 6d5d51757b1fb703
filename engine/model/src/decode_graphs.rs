//! CUDA graphs of the decode step: one launch per generated token instead of one per
//! kernel (a decode step of a 22-layer model is several hundred small kernels, and at
//! small batch the host's launches, not the GPU, bound it).
//!
//! A graph replays fixed shapes, so the step's one varying shape, the number of cache
//! columns attention reads, is rounded up to a multiple of [`KEYS_BUCKET`] (the extra
//! columns are masked; [`crate::Decoder::use_static_shapes`] runs that arithmetic on any
//! device). Each width is seen three ways: the first step at it runs eagerly on the side
//! stream the capture will use (warm-up: cuBLAS and the allocator set up per-stream state
//! on first use), the second is captured and replayed, later ones only replay. A capture
//! that fails (an operation that is not capturable) turns graphs off for this decoder and
//! the step runs eagerly: nothing of a failed capture has run.

use std::collections::HashMap;

use sphinx_cuda_graph::{on_side_stream, Graph, GraphError};

use crate::generate::GenerateError;

/// Cache columns are read in multiples of this many when shapes are static: a 3,000
/// position context needs at most a dozen graphs.
pub const KEYS_BUCKET: i64 = 256;

enum Width {
    /// Ran once eagerly on the side stream.
    Warm,
    Captured(Graph),
}

/// The graphs of one decoder (its slots, cache and state tensors are what they replay on).
pub(crate) struct StepGraphs {
    device: usize,
    widths: HashMap<i64, Width>,
    captured: usize,
    replays: usize,
}

/// What graphs did for a decoder: widths captured, steps replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub captured: usize,
    pub replays: usize,
}

/// What [`StepGraphs::step`] did.
pub(crate) enum Outcome {
    Done,
    /// The capture failed: graphs are off; run the step eagerly.
    Abandoned(GraphError),
}

impl StepGraphs {
    pub(crate) fn new(device: usize) -> Result<Self, GraphError> {
        // Refuses here, not at the first step, when the binary or machine cannot.
        on_side_stream(device, || ())?;
        Ok(Self {
            device,
            widths: HashMap::new(),
            captured: 0,
            replays: 0,
        })
    }

    pub(crate) fn stats(&self) -> GraphStats {
        GraphStats {
            captured: self.captured,
            replays: self.replays,
        }
    }

    /// Runs one step of width `keys` through its graph; `step` queues the step's kernels
    /// (it must touch only tensors that outlive the decoder's graphs, in place).
    pub(crate) fn step(
        &mut self,
        keys: i64,
        mut step: impl FnMut() -> Result<(), GenerateError>,
    ) -> Result<Outcome, GenerateError> {
        match self.widths.get(&keys) {
            None => {
                on_side_stream(self.device, &mut step)??;
                self.widths.insert(keys, Width::Warm);
            }
            Some(Width::Warm) => match Graph::capture(self.device, &mut step) {
                Ok(graph) => {
                    graph.replay()?;
                    self.captured += 1;
                    self.replays += 1;
                    self.widths.insert(keys, Width::Captured(graph));
                }
                Err(e) => return Ok(Outcome::Abandoned(e)),
            },
            Some(Width::Captured(graph)) => {
                graph.replay()?;
                self.replays += 1;
            }
        }
        Ok(Outcome::Done)
    }
}

/// `keys` rounded up to a multiple of `bucket`, at most `capacity`.
pub(crate) fn bucketed(keys: i64, bucket: i64, capacity: i64) -> i64 {
    ((keys + bucket - 1) / bucket * bucket).min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_round_up_to_the_bucket_and_stop_at_the_cache() {
        assert_eq!(bucketed(1, 256, 4096), 256);
        assert_eq!(bucketed(256, 256, 4096), 256);
        assert_eq!(bucketed(257, 256, 4096), 512);
        assert_eq!(bucketed(4000, 256, 4010), 4010);
    }

    #[test]
    fn graphs_on_the_cpu_are_refused_with_the_reason() {
        let err = StepGraphs::new(sphinx_cuda_graph::device_count())
            .err()
            .expect("no such CUDA device");
        assert!(err.to_string().contains("CUDA"), "{err}");
    }
}
