//! Capture and replay on a real CUDA device (the GPU script runs this binary there); on a
//! machine without one, that both are refused with the reason.

use sphinx_cuda_graph::{available, device_count, on_side_stream, Graph, GraphError};
use tch::{Device, Kind, Tensor};

/// A graph of `x += 1; y = x * 2` captures without running, then each replay runs both
/// kernels on the captured memory, so updates made to `x` in place between replays are
/// seen; a host read inside the capture fails it with the reason.
#[test]
fn a_captured_graph_replays_its_kernels_on_the_same_memory() {
    assert!(
        available(),
        "the shim is built where scripts/setup.sh has run"
    );
    if device_count() == 0 {
        let err = Graph::capture(0, || Ok::<(), String>(()))
            .err()
            .expect("no device");
        assert!(
            matches!(
                err,
                GraphError::NoDevice {
                    device: 0,
                    count: 0
                }
            ),
            "{err}"
        );
        return;
    }
    let _guard = tch::no_grad_guard();
    let x = Tensor::zeros([4], (Kind::Float, Device::Cuda(0)));
    let mut y = Tensor::zeros([4], (Kind::Float, Device::Cuda(0)));
    // Warm-up on the side stream, as a capture needs.
    on_side_stream(0, || {
        let _ = (&x + 0.0).sum(Kind::Float);
    })
    .unwrap();
    let graph = Graph::capture(0, || {
        let mut x = x.shallow_clone();
        let _ = x.f_add_scalar_(1.0).map_err(|e| e.to_string())?;
        y.copy_(&(&x * 2.0));
        Ok::<(), String>(())
    })
    .unwrap();
    assert_eq!(
        Vec::<f32>::try_from(&x).unwrap(),
        vec![0.0; 4],
        "capture ran"
    );
    for _ in 0..3 {
        graph.replay().unwrap();
    }
    assert_eq!(Vec::<f32>::try_from(&x).unwrap(), vec![3.0; 4]);
    assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![6.0; 4]);
    let _ = x.shallow_clone().fill_(10.0);
    graph.replay().unwrap();
    assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![22.0; 4]);

    let err = Graph::capture(0, || {
        let _ = f64::try_from(x.sum(Kind::Float)).map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    })
    .err()
    .expect("a host read cannot be captured");
    assert!(
        matches!(err, GraphError::Work(_) | GraphError::Cuda { .. }),
        "{err}"
    );
    // The device still works after a failed capture.
    graph.replay().unwrap();
    assert_eq!(Vec::<f32>::try_from(&y).unwrap(), vec![24.0; 4]);
}
