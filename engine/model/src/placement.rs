//! Which device each part of a model lives on when it does not fit one: pipeline
//! placement, as Hugging Face accelerate's `device_map="auto"` does for a decoder.
//!
//! The model is a chain of parts in forward order: the front (the MoV encoders,
//! `visual_proj`, the image tags and the token embeddings: the image block is spliced into
//! the embedded text there, so they stay together), then every LLM layer (its weights and
//! its rows of the KV cache), then the head (final norm and `output`). [`plan`] cuts the
//! chain into contiguous runs, one per device in the order given, so the hidden state
//! crosses each device boundary once per forward:
//!
//! - on the fewest leading devices that can hold it (one, when it fits: crossing devices
//!   only costs time, a single batch never runs on two at once);
//! - balanced among those: the largest load on any of them is as small as contiguity
//!   allows, leaving each the most room for activations;
//! - refused, naming the sizes, when all the devices together cannot hold it or one part
//!   is larger than every device.
//!
//! The sizes are a floor, as in [`crate::memory`]: weights at the kind the model runs in
//! plus one `max_seq_len` KV cache. Experts of one MoE layer are not split across devices
//! (expert parallelism): a Mixtral layer moves as a whole.
//!
//! [`plan`] is pure (sizes and free bytes in, a [`Plan`] out), so every policy above is
//! unit-tested without devices; [`part_sizes`] reads the sizes from a weights file's header.

use std::fmt;
use std::path::Path;

use tch::{nn, Device};

use crate::config::LlamaConfig;
use crate::memory::gib;
use crate::param_names;
use crate::weights;

/// Bytes of each part of a model, in forward order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSizes {
    /// The MoV encoders, `visual_proj`, `qformer_proj` and the image tags.
    pub encoders: u64,
    /// The token embeddings (`tok_embeddings`).
    pub embeddings: u64,
    /// Each LLM layer: its weights plus its keys and values for `max_seq_len` positions.
    pub layers: Vec<u64>,
    /// The final norm and the output projection.
    pub head: u64,
}

impl PartSizes {
    /// The front (encoders and embeddings), which one device holds.
    pub fn front(&self) -> u64 {
        self.encoders + self.embeddings
    }

    pub fn total(&self) -> u64 {
        self.front() + self.layers.iter().sum::<u64>() + self.head
    }

    /// The chain [`plan`] cuts: front, layers, head.
    fn chain(&self) -> Vec<u64> {
        let mut parts = Vec::with_capacity(self.layers.len() + 2);
        parts.push(self.front());
        parts.extend(&self.layers);
        parts.push(self.head);
        parts
    }
}

/// One device the model may use and how many bytes are free on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFree {
    pub device: Device,
    pub free: u64,
}

/// Where every part lives: indices into `devices` (a device may appear once per slot;
/// tests place parts on several slots of the CPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub devices: Vec<Device>,
    pub front: usize,
    pub layers: Vec<usize>,
    pub head: usize,
}

impl Plan {
    /// Everything on one device.
    pub fn single(device: Device, n_layers: usize) -> Self {
        Self {
            devices: vec![device],
            front: 0,
            layers: vec![0; n_layers],
            head: 0,
        }
    }

    /// Slots that hold at least one part.
    pub fn used_slots(&self) -> usize {
        let mut used: Vec<usize> = self.layers.clone();
        used.extend([self.front, self.head]);
        used.sort_unstable();
        used.dedup();
        used.len()
    }

    /// Bytes each slot holds under `sizes`.
    pub fn loads(&self, sizes: &PartSizes) -> Vec<u64> {
        let mut loads = vec![0; self.devices.len()];
        loads[self.front] += sizes.front();
        for (slot, bytes) in self.layers.iter().zip(&sizes.layers) {
            loads[*slot] += bytes;
        }
        loads[self.head] += sizes.head;
        loads
    }
}

impl fmt::Display for Plan {
    /// `front+layers 0-11 on Cuda(0), layers 12-39+head on Cuda(1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (slot, device) in self.devices.iter().enumerate() {
            let layers: Vec<usize> = (0..self.layers.len())
                .filter(|&i| self.layers[i] == slot)
                .collect();
            let mut parts = Vec::new();
            if self.front == slot {
                parts.push("front".to_string());
            }
            match (layers.first(), layers.last()) {
                (Some(a), Some(b)) if a == b => parts.push(format!("layer {a}")),
                (Some(a), Some(b)) => parts.push(format!("layers {a}-{b}")),
                _ => {}
            }
            if self.head == slot {
                parts.push("head".to_string());
            }
            if parts.is_empty() {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} on {device:?}", parts.join("+"))?;
        }
        Ok(())
    }
}

/// Why no placement exists.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("no device to place the model on")]
    NoDevices,
    #[error(
        "the model does not fit {devices}: it needs {need} in all (front {front}, {layers} \
         layers of up to {layer}, head {head}) but {free} is free ({each})",
        need = gib(*need), front = gib(*front), layer = gib(*layer), head = gib(*head),
        free = gib(*free)
    )]
    DoesNotFit {
        devices: String,
        need: u64,
        front: u64,
        layers: usize,
        layer: u64,
        head: u64,
        free: u64,
        each: String,
    },
    #[error(
        "{part} ({bytes}) is larger than the free memory of every device (at most {largest}); \
         the parts of a model are not split below a layer",
        bytes = gib(*bytes), largest = gib(*largest)
    )]
    PartTooLarge {
        part: String,
        bytes: u64,
        largest: u64,
    },
    #[error("cannot size the model: {0}")]
    Weights(#[from] weights::WeightsError),
}

/// Slot of each part when the chain is packed greedily into slots of capacity `caps`
/// in order (each part goes where the previous one went while it fits, else to the next
/// slot), or `None` when it runs out of slots. For a fixed order this fills every slot
/// as far as possible, so it finds a packing whenever one exists.
fn pack(parts: &[u64], caps: &[u64]) -> Option<Vec<usize>> {
    let (mut slot, mut load) = (0, 0u64);
    let mut out = Vec::with_capacity(parts.len());
    for &part in parts {
        while load + part > *caps.get(slot)? {
            slot += 1;
            load = 0;
        }
        load += part;
        out.push(slot);
    }
    Some(out)
}

/// The placement of a model of `sizes` on `devices` (in pipeline order); see the module
/// docs for the policy.
pub fn plan(sizes: &PartSizes, devices: &[DeviceFree]) -> Result<Plan, PlacementError> {
    if devices.is_empty() {
        return Err(PlacementError::NoDevices);
    }
    let parts = sizes.chain();
    let free: Vec<u64> = devices.iter().map(|d| d.free).collect();
    let largest = free.iter().copied().max().unwrap_or(0);
    let name = |i: usize| match i {
        0 => "the front (encoders and embeddings)".to_string(),
        i if i == parts.len() - 1 => "the head (norm and output)".to_string(),
        i => format!("layer {}", i - 1),
    };
    if let Some((i, &bytes)) = parts.iter().enumerate().find(|(_, &b)| b > largest) {
        return Err(PlacementError::PartTooLarge {
            part: name(i),
            bytes,
            largest,
        });
    }
    let Some(k) = (1..=free.len()).find(|&k| pack(&parts, &free[..k]).is_some()) else {
        return Err(PlacementError::DoesNotFit {
            devices: devices
                .iter()
                .map(|d| format!("{:?}", d.device))
                .collect::<Vec<_>>()
                .join(" + "),
            need: sizes.total(),
            front: sizes.front(),
            layers: sizes.layers.len(),
            layer: sizes.layers.iter().copied().max().unwrap_or(0),
            head: sizes.head,
            free: free.iter().sum(),
            each: devices
                .iter()
                .map(|d| format!("{:?} {}", d.device, gib(d.free)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    // Balance over the k devices: the smallest bound on any device's load that still
    // packs (binary search; the bound at `hi` always packs).
    let caps = |bound: u64| -> Vec<u64> { free[..k].iter().map(|&f| f.min(bound)).collect() };
    let (mut lo, mut hi) = (parts.iter().copied().max().unwrap_or(0), sizes.total());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pack(&parts, &caps(mid)).is_some() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let slots = pack(&parts, &caps(hi)).expect("the bound found packs");
    Ok(Plan {
        devices: devices.iter().map(|d| d.device).collect(),
        front: slots[0],
        layers: slots[1..slots.len() - 1].to_vec(),
        head: slots[slots.len() - 1],
    })
}

/// Which part a tensor of the weights file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Encoders,
    Embeddings,
    Layer(usize),
    Head,
}

/// The part of the tensor `name` (reference names under `llma.`).
pub fn part_of(name: &str) -> Part {
    let rest = param_names::below_root(name).unwrap_or(name);
    if let Some(layer) = rest.strip_prefix("layers.") {
        if let Some(i) = layer.split('.').next().and_then(|i| i.parse().ok()) {
            return Part::Layer(i);
        }
    }
    if rest.starts_with("tok_embeddings.") {
        Part::Embeddings
    } else if rest.starts_with("norm.") || rest.starts_with("output.") {
        Part::Head
    } else {
        Part::Encoders
    }
}

/// The [`PartSizes`] of the weights at `path` for an LLM of `llm`'s sizes, at `elem`
/// bytes per element (the kind the model runs in: [`crate::memory::run_elem_bytes`]).
pub fn part_sizes(path: &Path, llm: &LlamaConfig, elem: u64) -> Result<PartSizes, PlacementError> {
    let n_layers = llm.n_layers.max(0) as usize;
    let kv_per_layer = (2 * llm.kv_heads() * llm.head_dim() * llm.max_seq_len).max(0) as u64;
    let mut sizes = PartSizes {
        encoders: 0,
        embeddings: 0,
        layers: vec![kv_per_layer * elem; n_layers],
        head: 0,
    };
    for (name, shape) in weights::list_tensors(path)? {
        let bytes = shape.iter().product::<i64>().max(0) as u64 * elem;
        match part_of(&name) {
            Part::Encoders => sizes.encoders += bytes,
            Part::Embeddings => sizes.embeddings += bytes,
            Part::Head => sizes.head += bytes,
            Part::Layer(i) if i < n_layers => sizes.layers[i] += bytes,
            // A layer the config does not have: the loader names it; count it at the front.
            Part::Layer(_) => sizes.encoders += bytes,
        }
    }
    Ok(sizes)
}

/// The variable-store paths each part is declared under: one store per slot of a
/// [`Plan`], so every part's variables are created (and its weights loaded) on its own
/// device. Names are the same as with one store.
#[derive(Debug, Clone)]
pub struct PartPaths<'a> {
    pub front: nn::Path<'a>,
    pub layers: Vec<nn::Path<'a>>,
    pub head: nn::Path<'a>,
}

impl<'a> PartPaths<'a> {
    /// Every part under `root`.
    pub fn single(root: &nn::Path<'a>, n_layers: usize) -> Self {
        Self {
            front: root.clone(),
            layers: vec![root.clone(); n_layers],
            head: root.clone(),
        }
    }

    /// The parts under the roots of `stores` (one per slot of `plan`).
    pub fn planned(stores: &'a [nn::VarStore], plan: &Plan) -> Self {
        Self {
            front: stores[plan.front].root(),
            layers: plan.layers.iter().map(|&s| stores[s].root()).collect(),
            head: stores[plan.head].root(),
        }
    }

    /// The same paths one level down (`llma`).
    pub fn sub(&self, name: &str) -> Self {
        Self {
            front: &self.front / name,
            layers: self.layers.iter().map(|p| p / name).collect(),
            head: &self.head / name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn gpus(free: &[u64]) -> Vec<DeviceFree> {
        free.iter()
            .enumerate()
            .map(|(i, &free)| DeviceFree {
                device: Device::Cuda(i),
                free,
            })
            .collect()
    }

    /// LLaMA2-13B-like sizes in bfloat16: 40 layers of ~0.6 GiB (+ KV), 6.6 GiB of
    /// encoders, embeddings and head of 0.3 GiB each.
    fn dense(layers: usize, layer: u64) -> PartSizes {
        PartSizes {
            encoders: 6 * GIB + GIB / 2,
            embeddings: GIB / 4,
            layers: vec![layer; layers],
            head: GIB / 4,
        }
    }

    fn contiguous(plan: &Plan) -> bool {
        let mut chain = vec![plan.front];
        chain.extend(&plan.layers);
        chain.push(plan.head);
        chain.windows(2).all(|w| w[0] <= w[1])
    }

    #[test]
    fn a_model_that_fits_one_device_stays_on_it() {
        let sizes = dense(40, GIB / 2);
        let plan = plan(&sizes, &gpus(&[80 * GIB, 80 * GIB])).unwrap();
        assert_eq!(plan.used_slots(), 1);
        assert_eq!(plan.layers, vec![0; 40]);
        assert_eq!((plan.front, plan.head), (0, 0));
        assert_eq!(plan.to_string(), "front+layers 0-39+head on Cuda(0)");
    }

    #[test]
    fn a_model_too_big_for_one_is_split_evenly_across_two() {
        // ~90 GiB on two 80 GiB cards: each gets about half, in order.
        let sizes = dense(32, 2 * GIB + GIB / 2);
        let plan = plan(&sizes, &gpus(&[80 * GIB, 80 * GIB, 80 * GIB])).unwrap();
        assert_eq!(plan.used_slots(), 2, "{plan}");
        assert!(contiguous(&plan));
        let loads = plan.loads(&sizes);
        assert_eq!(loads[2], 0, "the third card is not needed");
        let (a, b) = (loads[0], loads[1]);
        assert!(a.abs_diff(b) <= sizes.layers[0], "{a} vs {b}");
        assert!(a <= 80 * GIB && b <= 80 * GIB);
        assert_eq!((plan.front, plan.head), (0, 1));
    }

    #[test]
    fn four_small_cards_share_a_large_model() {
        let sizes = dense(40, 2 * GIB);
        let free = [24 * GIB; 4];
        let plan = plan(&sizes, &gpus(&free)).unwrap();
        assert_eq!(plan.used_slots(), 4, "{plan}");
        assert!(contiguous(&plan));
        let loads = plan.loads(&sizes);
        assert!(loads.iter().all(|&l| l <= 24 * GIB), "{loads:?}");
        // Balanced: no card holds more than the mean plus one layer.
        let mean = sizes.total() / 4;
        assert!(loads.iter().all(|&l| l <= mean + 2 * GIB), "{loads:?}");
    }

    #[test]
    fn unequal_cards_fill_in_order_within_their_room() {
        // The first card is small: it holds the front and a few layers only.
        let sizes = dense(10, 4 * GIB);
        let plan = plan(&sizes, &gpus(&[16 * GIB, 80 * GIB])).unwrap();
        let loads = plan.loads(&sizes);
        assert!(loads[0] <= 16 * GIB && loads[1] <= 80 * GIB, "{loads:?}");
        assert_eq!(plan.layers.iter().filter(|&&s| s == 0).count(), 2);
    }

    #[test]
    fn moe_layers_weigh_more_than_dense_ones() {
        // A Mixtral-like layer is ~8x a dense one of the same width: fewer per device.
        let dense_plan = plan(&dense(32, GIB / 2), &gpus(&[12 * GIB, 12 * GIB])).unwrap();
        let moe = dense(32, 3 * GIB);
        let moe_plan = plan(&moe, &gpus(&[40 * GIB, 40 * GIB, 40 * GIB])).unwrap();
        assert_eq!(dense_plan.used_slots(), 2);
        assert_eq!(moe_plan.used_slots(), 3, "{moe_plan}");
        let on_first = |p: &Plan| p.layers.iter().filter(|&&s| s == 0).count();
        assert!(on_first(&moe_plan) < on_first(&dense_plan));
        assert!(moe_plan.loads(&moe).iter().all(|&l| l <= 40 * GIB));
    }

    #[test]
    fn too_big_a_model_is_refused_with_its_sizes() {
        let sizes = dense(32, 3 * GIB);
        let err = plan(&sizes, &gpus(&[40 * GIB, 40 * GIB]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not fit Cuda(0) + Cuda(1)")
                && err.contains("needs 103.00 GiB")
                && err.contains("32 layers of up to 3.00 GiB")
                && err.contains("80.00 GiB is free")
                && err.contains("Cuda(1) 40.00 GiB"),
            "{err}"
        );
        let big_layer = PartSizes {
            layers: vec![GIB, 50 * GIB],
            ..dense(0, 0)
        };
        let err = plan(&big_layer, &gpus(&[40 * GIB; 4]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 1 (50.00 GiB)") && err.contains("at most 40.00 GiB"),
            "{err}"
        );
        assert!(matches!(
            plan(&big_layer, &[]),
            Err(PlacementError::NoDevices)
        ));
    }

    #[test]
    fn the_plan_is_a_function_of_its_inputs() {
        let sizes = PartSizes {
            encoders: 7 * GIB,
            embeddings: GIB / 3,
            layers: (0..24).map(|i| GIB + (i % 5) * GIB / 7).collect(),
            head: GIB / 3,
        };
        let devices = gpus(&[20 * GIB, 18 * GIB, 30 * GIB]);
        let first = plan(&sizes, &devices).unwrap();
        for _ in 0..10 {
            assert_eq!(plan(&sizes, &devices).unwrap(), first);
        }
        assert!(contiguous(&first));
        let loads = first.loads(&sizes);
        for (load, d) in loads.iter().zip(&devices) {
            assert!(*load <= d.free);
        }
    }

    #[test]
    fn tensor_names_map_to_their_parts() {
        assert_eq!(
            part_of("llma.layers.12.attention.wq.weight"),
            Part::Layer(12)
        );
        assert_eq!(part_of("llma.layers.3.feed_forward.w1"), Part::Layer(3));
        assert_eq!(part_of("llma.tok_embeddings.weight"), Part::Embeddings);
        assert_eq!(part_of("llma.norm.weight"), Part::Head);
        assert_eq!(part_of("llma.output.weight"), Part::Head);
        for front in [
            "llma.openclip_convnext_xxl.stem.0.weight",
            "llma.visual_proj.0.weight",
            "llma.start_img",
            "llma.qformer.qformer.layer.0.attention.self.query.weight",
            "llma.dinov2_vitg14.norm.weight",
        ] {
            assert_eq!(part_of(front), Part::Encoders, "{front}");
        }
    }
}
