//! [`S3Store`]: the object store of the cloud path (one bucket, aws-sdk-s3).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{validate_s3_key, Metadata, ObjectInfo, ObjectStore, StoreError};
use crate::output::media_type;

/// HTTP status of a conditional write that lost (`If-None-Match: *` on an existing key).
const PRECONDITION_FAILED: u16 = 412;
/// HTTP status of a missing object or queue.
const NOT_FOUND: u16 = 404;
/// HTTP status of a throttled request.
const TOO_MANY_REQUESTS: u16 = 429;
/// AWS error codes that mean "try again later" although the status may not be 5xx
/// (S3/SQS documentation; 409 ConditionalRequestConflict is S3's answer to a
/// conditional write racing another write on the same key).
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",
];

/// What an SDK failure means to a caller that may retry.
#[derive(Debug)]
pub(crate) enum Fault {
    NotFound,
    PreconditionFailed,
    Transient(String),
    Permanent {
        code: Option<String>,
        message: String,
    },
}

/// Classifies any aws-sdk call failure (S3 and SQS share the smithy error type).
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = DisplayErrorContext(err).to_string();
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Fault::Transient(message)
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            if status == PRECONDITION_FAILED || code == Some("PreconditionFailed") {
                Fault::PreconditionFailed
            } else if status == NOT_FOUND || matches!(code, Some("NoSuchKey" | "NotFound")) {
                Fault::NotFound
            } else if status >= 500
                || status == TOO_MANY_REQUESTS
                || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
            {
                Fault::Transient(message)
            } else {
                Fault::Permanent {
                    code: code.map(str::to_string),
                    message,
                }
            }
        }
        _ => Fault::Permanent {
            code: None,
            message,
        },
    }
}

fn store_error<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let key = key.to_string();
    match classify(&err) {
        Fault::NotFound => StoreError::NotFound { key },
        Fault::Transient(message) => StoreError::Transient { op, key, message },
        Fault::PreconditionFailed => StoreError::Permanent {
            op,
            key,
            message: "precondition failed".to_string(),
        },
        Fault::Permanent { code, message } => StoreError::Permanent {
            op,
            key,
            message: match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            },
        },
    }
}

/// Objects in one S3 bucket; keys are used as given.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    /// A store over `bucket` using an already configured client (region, endpoint,
    /// path-style addressing and retries are the client's business).
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket this store reads and writes.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The body of `key`, not yet read: `get` collects it, `sha256` hashes it as it streams.
    async fn body(&self, op: &'static str, key: &str) -> Result<ByteStream, StoreError> {
        validate_s3_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error(op, key, e))?;
        Ok(out.body)
    }
}

/// A body cut off while being read: the next attempt may get all of it.
fn body_error(op: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Transient {
        op,
        key: key.to_string(),
        message: format!("reading the body: {e}"),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        validate_s3_key(key)?;
        let metadata: HashMap<String, String> = metadata.clone().into_iter().collect();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(media_type(key))
            .body(ByteStream::from(body))
            .set_metadata((!metadata.is_empty()).then_some(metadata))
            .send()
            .await
            .map_err(|e| store_error("put", key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        validate_s3_key(key)?;
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(media_type(key))
            .body(ByteStream::from(body))
            .if_none_match("*")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(&e) {
                Fault::PreconditionFailed => Ok(false),
                _ => Err(store_error("put_if_absent", key, e)),
            },
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let body = self.body("get", key).await?;
        let bytes = body
            .collect()
            .await
            .map_err(|e| body_error("get", key, e))?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn sha256(&self, key: &str) -> Result<String, StoreError> {
        use sha2::{Digest, Sha256};
        let mut body = self.body("sha256", key).await?;
        let mut hasher = Sha256::new();
        while let Some(piece) = body
            .try_next()
            .await
            .map_err(|e| body_error("sha256", key, e))?
        {
            hasher.update(&piece);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        validate_s3_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("head", key, e))?;
        Ok(ObjectInfo {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            metadata: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| store_error("list", prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_s3_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("delete", key, e))?;
        Ok(())
    }
}
