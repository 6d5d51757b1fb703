//! What the worker is told: micro-batch sizes, queue timings, retries, and what becomes
//! of a job that can never succeed.

use std::time::Duration;

use sphinx_core::queue::MAX_WAIT;
use sphinx_core::retry::RetryPolicy;

use super::complete::Outputs;
use crate::batch::BatchOptions;

/// What happens to a job that can never succeed, after its error record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// Leave it undeleted: the queue's redrive policy moves it to the dead-letter queue
    /// after `maxReceiveCount` receives (SQS).
    DeadLetter,
    /// Delete it: a queue without a dead-letter queue (local mode) must not loop.
    Delete,
}

/// Worker settings; `Default` is the production worker's.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most pages per micro-batch.
    pub max_batch_pages: usize,
    /// After the first message arrives, how long to wait for more to fill the batch.
    pub batch_wait: Duration,
    /// Long-poll wait of an empty queue (at most 20 s).
    pub poll_wait: Duration,
    /// Visibility timeout set on receive and renewed by the keeper every third of it.
    pub visibility: Duration,
    /// Stop after this long without any message (`None`: never).
    pub idle_exit: Option<Duration>,
    /// How long a message is hidden again after a transient fault.
    pub release_backoff: Duration,
    /// Bundles downloaded at the same time.
    pub downloads: usize,
    pub poison: Poison,
    pub retry: RetryPolicy,
    pub batch: BatchOptions,
    /// The result files written when a document completes.
    pub outputs: Outputs,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_batch_pages: 16,
            batch_wait: Duration::from_secs(2),
            poll_wait: MAX_WAIT,
            visibility: Duration::from_secs(300),
            idle_exit: None,
            release_backoff: Duration::from_secs(10),
            downloads: 8,
            poison: Poison::DeadLetter,
            retry: RetryPolicy {
                attempts: 4,
                base: Duration::from_millis(200),
            },
            batch: BatchOptions::default(),
            outputs: Outputs::default(),
        }
    }
}
