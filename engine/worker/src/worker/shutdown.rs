//! Clean shutdown: a request shared by the worker and the signal handler, and the guard
//! that ends the process when the grace period is over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sphinx_core::queue::Queue;
use tokio::sync::Notify;

use super::inflight::InFlight;

/// A shutdown request (SIGTERM, ctrl-c) shared by the worker and the signal handler.
#[derive(Debug, Default)]
pub struct Shutdown {
    requested: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a shutdown is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// After a shutdown request, gives the worker `grace` to finish its batch; then releases
/// what it still holds and exits the process (a Spot reclaim will not wait longer).
pub fn spawn_grace_guard(
    shutdown: Arc<Shutdown>,
    inflight: Arc<InFlight>,
    queue: Arc<dyn Queue>,
    grace: Duration,
) {
    tokio::spawn(async move {
        shutdown.wait().await;
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutdown requested, finishing the batch"
        );
        tokio::time::sleep(grace).await;
        let released = inflight.release_all(queue.as_ref()).await;
        tracing::warn!(released, "grace period over, released unfinished messages");
        std::process::exit(0);
    });
}
