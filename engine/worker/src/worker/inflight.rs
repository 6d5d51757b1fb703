//! The messages a worker holds: their receipts, the keeper that extends their visibility
//! while a batch runs (so no other worker picks them up), and their release.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sphinx_core::queue::Queue;

/// Receipts of the messages this worker holds right now.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<BTreeSet<String>>);

impl InFlight {
    pub(super) fn add(&self, receipt: &str) {
        self.0.lock().unwrap().insert(receipt.to_owned());
    }

    pub(super) fn remove(&self, receipt: &str) {
        self.0.lock().unwrap().remove(receipt);
    }

    fn receipts(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }

    /// Makes every held message visible again now (shutdown), returning how many.
    pub async fn release_all(&self, queue: &dyn Queue) -> usize {
        let mut released = 0;
        for receipt in self.receipts() {
            match queue.change_visibility(&receipt, Duration::ZERO).await {
                Ok(()) => released += 1,
                Err(e) => tracing::warn!(error = %e, "could not release a message"),
            }
            self.remove(&receipt);
        }
        released
    }
}

/// Renews the visibility of every held message every third of `visibility`.
async fn keep_visible(queue: Arc<dyn Queue>, inflight: Arc<InFlight>, visibility: Duration) {
    let every = (visibility / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        for receipt in inflight.receipts() {
            if let Err(e) = queue.change_visibility(&receipt, visibility).await {
                tracing::warn!(error = %e, "could not extend visibility");
            }
        }
    }
}

/// Extends the visibility of the held messages while it lives (the task stops on drop).
pub(super) struct Keeper(tokio::task::JoinHandle<()>);

impl Keeper {
    pub(super) fn spawn(
        queue: Arc<dyn Queue>,
        inflight: Arc<InFlight>,
        visibility: Duration,
    ) -> Self {
        Self(tokio::spawn(keep_visible(queue, inflight, visibility)))
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
