//! A model folder that does not fit the device's free memory is refused before anything is
//! allocated, with the sizes it needs (`SPHINX_DEVICE_MEMORY_BYTES` stands in for a small
//! card). Its own test binary: the variable is process-wide.
//! Fixtures: `.venv/bin/python scripts/parity/parts.py` (the assembled tiny model).

use std::path::PathBuf;

use sphinx_model::memory::MEMORY_ENV;
use sphinx_model::model_folder;
use tch::Device;

#[test]
fn a_model_larger_than_the_free_memory_fails_before_loading() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures/parts/assembled");
    assert!(
        dir.join("model.safetensors").exists(),
        "missing fixture {}: run `.venv/bin/python scripts/parity/parts.py`",
        dir.display()
    );
    std::env::set_var(MEMORY_ENV, "100000");
    let err = model_folder::load(&dir, Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    std::env::remove_var(MEMORY_ENV);
    assert!(
        err.contains("does not fit Cpu")
            && err.contains("as float32")
            && err.contains("512 positions")
            && err.contains("but 0.10 MiB is free (SPHINX_DEVICE_MEMORY_BYTES)"),
        "{err}"
    );
}
