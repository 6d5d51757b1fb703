//! The build without the shim (no CUDA headers): no device, and no graph can exist.

use crate::GraphError;

/// Uninhabited: without the shim no [`crate::Graph`] is ever made.
pub(crate) type Raw = std::convert::Infallible;

pub(crate) fn device_count() -> usize {
    0
}

pub(crate) fn on_side_stream<R>(_: usize, _: impl FnOnce() -> R) -> Result<R, GraphError> {
    Err(GraphError::NotBuilt)
}

pub(crate) fn capture<E>(_: usize, _: impl FnOnce() -> Result<(), E>) -> Result<Raw, GraphError> {
    Err(GraphError::NotBuilt)
}

pub(crate) fn replay(raw: &Raw) -> Result<(), GraphError> {
    match *raw {}
}
