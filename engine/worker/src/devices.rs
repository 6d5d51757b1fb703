//! Where a command's model runs: `--cpu`, else `--devices` / `SPHINX_DEVICES` (several
//! place the model across them: `sphinx_model::placement`), else the first GPU if there
//! is one, else the CPU.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sphinx_core::{DeviceArgs, DeviceSpec};
use sphinx_model::model_folder::{self, Loaded};
use tch::Device;

/// The devices to load onto, in pipeline order.
pub fn resolve(args: &DeviceArgs, cpu: bool) -> Result<Vec<Device>> {
    if cpu {
        return Ok(vec![Device::Cpu]);
    }
    args.validate().map_err(anyhow::Error::msg)?;
    if args.devices.is_empty() {
        return Ok(vec![Device::cuda_if_available()]);
    }
    let visible = tch::Cuda::device_count().max(0) as usize;
    args.devices
        .iter()
        .map(|d| match *d {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) if n < visible => Ok(Device::Cuda(n)),
            DeviceSpec::Cuda(n) => {
                bail!("--devices names cuda:{n} but {visible} GPU(s) are visible")
            }
        })
        .collect()
}

/// Loads the model folder `dir` onto the devices `args` and `cpu` say.
pub fn load(dir: &Path, args: &DeviceArgs, cpu: bool) -> Result<Loaded> {
    let devices = resolve(args, cpu)?;
    model_folder::load_on(dir, &devices)
        .with_context(|| format!("cannot load model {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_wins_and_unknown_gpus_are_refused() {
        let two = DeviceArgs {
            devices: vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)],
        };
        assert_eq!(resolve(&two, true).unwrap(), [Device::Cpu]);
        let cpu = DeviceArgs {
            devices: vec![DeviceSpec::Cpu],
        };
        assert_eq!(resolve(&cpu, false).unwrap(), [Device::Cpu]);
        let far = DeviceArgs {
            devices: vec![DeviceSpec::Cuda(64)],
        };
        let err = resolve(&far, false).unwrap_err().to_string();
        assert!(err.contains("cuda:64") && err.contains("visible"), "{err}");
        let twice = DeviceArgs {
            devices: vec![DeviceSpec::Cpu, DeviceSpec::Cpu],
        };
        assert!(resolve(&twice, false)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
