//! The encoders' one error type, apart from [`crate::mov`] so each expert (ConvNeXt,
//! DINOv2) and the mixture that combines them can use it without importing each other.

/// Why the vision side rejected an input or a configuration.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("bad vision input: {0}")]
    Shape(String),
    #[error("bad vision config: {0}")]
    Config(String),
}
