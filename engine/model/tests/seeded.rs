//! `seeded::with_seed` keeps seeds meaningful while threads build models at once. Alone in
//! its test binary: any unlocked random draw on another thread (other tests' inputs)
//! would land inside the builds, which the lock does not promise to exclude.

use sphinx_model::seeded::with_seed;
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
