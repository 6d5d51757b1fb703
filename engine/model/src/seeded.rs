//! Seeded random initialisation that holds under threads.
//!
//! libtorch has one process-wide generator. Two models initialised at the same time on
//! different threads (parallel tests, a server building a random model while a trainer
//! starts) draw from one interleaved stream, and neither gets the weights its seed
//! promises. Building under this lock makes a seed mean exactly one set of weights, as
//! long as every seeded build in the process goes through here (a random draw made
//! outside the lock still lands in the middle of a build; tch exposes no private
//! generators).

use std::sync::Mutex;

static GENERATOR: Mutex<()> = Mutex::new(());

/// Seeds libtorch's generator and runs `build` with no other seeded build in between.
pub fn with_seed<T>(seed: i64, build: impl FnOnce() -> T) -> T {
    // A panic in another build leaves nothing half-done in the generator worth guarding.
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    build()
}
