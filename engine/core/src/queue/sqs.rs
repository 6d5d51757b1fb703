//! [`SqsQueue`]: the queue of the cloud path (one SQS standard queue, aws-sdk-sqs).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;

use super::{
    batches, check_receive, check_visibility, Message, Queue, QueueError, SEND_ATTEMPTS,
    SEND_BACKOFF,
};
use crate::store::s3::{classify, Fault};

/// SQS error code for a receipt handle that is malformed or expired.
const INVALID_RECEIPT_CODES: &[&str] = &["ReceiptHandleIsInvalid", "InvalidParameterValue"];

/// One SQS queue, addressed by its URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// A queue at `url` using an already configured client.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn queue_error<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match classify(&err) {
        Fault::Transient(message) => QueueError::Transient { op, message },
        Fault::Permanent { message, .. } => QueueError::Permanent { op, message },
        Fault::NotFound | Fault::PreconditionFailed => QueueError::Permanent {
            op,
            message: aws_sdk_sqs::error::DisplayErrorContext(&err).to_string(),
        },
    }
}

fn receipt_error<E>(op: &'static str, receipt: &str, err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_string);
    match code {
        Some(code) if INVALID_RECEIPT_CODES.contains(&code.as_str()) => {
            QueueError::InvalidReceipt {
                receipt: receipt.to_string(),
                reason: code,
            }
        }
        _ => queue_error(op, err),
    }
}

fn secs(d: Duration) -> i32 {
    // Callers checked `d` against the SQS limits (hours), so it fits.
    d.as_secs() as i32
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        for range in batches(bodies)? {
            // Entry ids are indices into `bodies`: unique within a batch, as SQS requires.
            let mut pending: Vec<usize> = range.collect();
            let mut backoff = SEND_BACKOFF;
            let mut last_error = String::new();
            let mut transient = true;
            for attempt in 1..=SEND_ATTEMPTS {
                let entries = pending
                    .iter()
                    .map(|&i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&bodies[i])
                            .build()
                            .expect("id and body are set")
                    })
                    .collect::<Vec<_>>();
                match self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        let failed = out.failed();
                        if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                            return Err(QueueError::PartialSend {
                                failed: failed.len(),
                                total: bodies.len(),
                                message: format!(
                                    "{}: {}",
                                    f.code(),
                                    f.message().unwrap_or_default()
                                ),
                                transient: false,
                            });
                        }
                        if let Some(f) = failed.first() {
                            last_error =
                                format!("{}: {}", f.code(), f.message().unwrap_or_default());
                        }
                        pending.retain(|i| failed.iter().any(|f| f.id() == i.to_string()));
                    }
                    Err(e) => {
                        let err = queue_error("send_batch", e);
                        if !err.is_transient() {
                            return Err(err);
                        }
                        (last_error, transient) = (err.to_string(), true);
                    }
                }
                if pending.is_empty() {
                    break;
                }
                if attempt < SEND_ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
            if !pending.is_empty() {
                return Err(QueueError::PartialSend {
                    failed: pending.len(),
                    total: bodies.len(),
                    message: last_error,
                    transient,
                });
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        check_receive(max, wait, visibility)?;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(secs(wait))
            .visibility_timeout(secs(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| queue_error("receive", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Message {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        check_visibility(visibility)?;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(visibility))
            .send()
            .await
            .map_err(|e| receipt_error("change_visibility", receipt, e))?;
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| receipt_error("delete", receipt, e))?;
        Ok(())
    }
}
