//! One-stage all-in-one fine-tuning (SPHINX-X, arXiv 2402.05935, section 3.3): every
//! dataset in one conversation format, mixed in one run; the LLM, `visual_proj` and the
//! start/end/skip tokens train while the two encoders stay frozen.
//!
//! One file per concept: [`spec`] (the job JSON), [`dataset`] (records, mixture,
//! `to_predict` labels), [`optimizer`] (checkpointable AdamW), [`schedule`] (warmup +
//! cosine), [`checkpoint`] (state in the object store), [`trainer`] (the loop),
//! [`char_tokenizer`] (a small vocabulary for models trained from scratch).

pub mod char_tokenizer;
pub mod checkpoint;
pub mod dataset;
pub mod optimizer;
pub mod schedule;
pub mod spec;
pub mod trainer;
