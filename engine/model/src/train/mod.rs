//! One-stage all-in-one fine-tuning (SPHINX-X, arXiv 2402.05935, section 3.3): every
//! dataset in one conversation format, mixed in one run; the LLM, `visual_proj` and the
//! start/end/skip tokens train while the two encoders stay frozen.
//!
//! One file per concept: [`spec`] (the job JSON), [`optimizer`] (checkpointable AdamW),
//! [`schedule`] (warmup + cosine), [`checkpoint`] (state in the object store), `groups`
//! (which part of the model a parameter is: frozen or not, its learning-rate factor),
//! `pages` (dataset pages rendered as for inference, cached), [`trainer`] (the loop).
//! The records and their mixture ([`crate::dataset`]) and the small vocabulary for models
//! trained from scratch ([`crate::char_tokenizer`]) are shared with inference and
//! evaluation, so they live beside the model. Behind the `train` feature; the process
//! concerns (runtime, signals, S3) are the caller's (`sphinx train`).

pub mod checkpoint;
mod groups;
pub mod optimizer;
mod pages;
pub mod schedule;
pub mod spec;
pub mod trainer;
