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
        exit_now(0);
    });
}

/// Ends the process with `code` at once, without exit handlers or static destructors.
///
/// `std::process::exit` tears libtorch's globals down while another thread may still be
/// running the model, which then fails inside libtorch (a panic with a page of C++
/// frames, or a crash) instead of ending with `code`. Files the store writes are
/// complete or absent (written aside, then renamed), so nothing half-written is left.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes no pointers and only ends the process.
    unsafe { libc::_exit(code) }
}
