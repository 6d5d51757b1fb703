//! `sphinx-tiler`: the AWS Lambda that turns uploads into page bundles, manifests and
//! page jobs. It adds event wiring only (events in, per-record failures out): ingestion
//! is `sphinx_core::ingest`, shared with `sphinx run` and `sphinx tile`.
//! It deliberately links no libtorch and knows nothing about models.

pub mod config;
pub mod event;
pub mod handler;

pub use config::{Config, Settings};
pub use handler::{RecordError, Tiler};

use serde_json::Value;
use tokio::time::Instant;

use crate::event::Invocation;

/// Handles one invocation payload of either kind: an SQS batch answers with its
/// `batchItemFailures`; a plain S3 event fails as a whole if any record must be retried.
pub async fn invoke(tiler: &Tiler, payload: Value, deadline: Instant) -> anyhow::Result<Value> {
    match Invocation::parse(payload)? {
        Invocation::Sqs(items) => Ok(serde_json::to_value(
            tiler.handle_sqs(items, deadline).await,
        )?),
        Invocation::S3(objects) => {
            let outcomes = tiler.handle_s3(objects, deadline).await?;
            Ok(
                serde_json::json!({ "outcomes": outcomes.iter().map(handler::describe).collect::<Vec<_>>() }),
            )
        }
    }
}
