//! Seeded random initialisation that holds under threads.
//!
//! libtorch has one process-wide generator. Two models initialised at the same time on
//! different threads (parallel tests, a server building a random model while a trainer
//! starts) draw from one interleaved stream, and neither gets the weights its seed
//! promises. Building under this lock makes a seed mean exactly one set of weights.

use std::sync::Mutex;

static GENERATOR: Mutex<()> = Mutex::new(());

/// Seeds libtorch's generator and runs `build` with no other seeded build in between.
pub fn with_seed<T>(seed: i64, build: impl FnOnce() -> T) -> T {
    // A panic in another build leaves nothing half-done in the generator worth guarding.
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    build()
}

#[cfg(test)]
mod tests {
    use super::with_seed;
    use tch::{nn, Device, Tensor};

    /// A small randomly initialised layer's weights, and a draw after them, for `seed`.
    fn build(seed: i64) -> Vec<f32> {
        let drawn = with_seed(seed, || {
            let vs = nn::VarStore::new(Device::Cpu);
            let layer = nn::linear(vs.root(), 64, 64, Default::default());
            let noise = Tensor::randn([64], (tch::Kind::Float, Device::Cpu));
            Tensor::cat(&[layer.ws.flatten(0, -1), noise], 0)
        });
        Vec::<f32>::try_from(drawn).unwrap()
    }

    #[test]
    fn a_seed_gives_the_same_weights_while_other_threads_build_too() {
        let expected: Vec<Vec<f32>> = (0..4).map(build).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|seed| {
                    let want = &expected[seed as usize];
                    scope.spawn(move || {
                        for round in 0..50 {
                            assert!(&build(seed) == want, "seed {seed}, round {round}");
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
        });
    }
}
