//! Retrying transient store/queue faults with exponential backoff, on top of the AWS
//! SDK's own retries, so a brief S3/SQS outage costs a pause rather than a redelivery.

use std::future::Future;
use std::time::Duration;

use crate::queue::QueueError;
use crate::store::StoreError;

/// How transient faults are retried: `attempts` calls in all, pausing `base`, then
/// twice as long before each further attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
}

/// Errors that say whether a retry may help.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        QueueError::is_transient(self)
    }
}

/// Runs `op` until it succeeds, fails permanently, or `policy.attempts` are spent.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, what: &str, mut op: F) -> Result<T, E>
where
    E: Transient + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = policy.base;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                tracing::warn!(what, attempt, error = %e, "transient fault, retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(1),
    };

    fn transient() -> StoreError {
        StoreError::Transient {
            op: "put",
            key: "k".into(),
            message: "503".into(),
        }
    }

    #[tokio::test]
    async fn transient_faults_are_retried_up_to_the_limit() {
        let mut calls = 0;
        let r: Result<(), _> = retry(FAST, "put", || {
            calls += 1;
            async { Err(transient()) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r = retry(FAST, "put", || {
            calls += 1;
            let ok = calls == 2;
            async move {
                if ok {
                    Ok(7)
                } else {
                    Err(transient())
                }
            }
        })
        .await;
        assert_eq!((r.unwrap(), calls), (7, 2));
    }

    #[tokio::test]
    async fn permanent_faults_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = retry(FAST, "get", || {
            calls += 1;
            async { Err(StoreError::NotFound { key: "k".into() }) }
        })
        .await;
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(calls, 1);
    }
}
