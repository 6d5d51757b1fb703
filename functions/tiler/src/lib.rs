//! `sphinx-tiler`: the AWS Lambda that turns uploads into page bundles, manifests and
//! page jobs. It adds transport only (events in, S3 objects and SQS messages out);
//! decoding and tiling are `sphinx_core::pipeline`, shared with `sphinx tile`.
//! It deliberately links no libtorch and knows nothing about models.

pub mod config;
pub mod event;
pub mod handler;

use serde_json::Value;
use tokio::time::Instant;

use crate::event::Invocation;
use crate::handler::Tiler;

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
                serde_json::json!({ "outcomes": outcomes.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>() }),
            )
        }
    }
}
