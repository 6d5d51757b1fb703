//! A model placed across devices computes what it computes on one. The planner cuts a tiny
//! Mixtral-backbone SPHINX (its sizes read from the weights file) over three "devices"
//! with room for only part of it each; here all three are the CPU, so each is a variable
//! store of its own (the model's parts are created and loaded on their slot, the hidden
//! state and the KV cache rows follow each layer's slot). Logits and greedy tokens must
//! equal the one-device model's exactly. What this cannot show on a CPU-only machine: a
//! real copy between two GPUs (docs/family.md).

use std::path::Path;

use sphinx_model::config::{LlamaConfig, MoeConfig, SphinxConfig};
use sphinx_model::generate::{GenerateConfig, Sampling};
use sphinx_model::model_folder::{self, Loaded};
use sphinx_model::placement::{self, DeviceFree, PartSizes};
use sphinx_model::sphinx::PageInput;
use sphinx_model::{char_tokenizer, ModelConfig, MovConfig, Sphinx};
use tch::{nn, Device, Kind, Tensor};

const LAYERS: usize = 8;

fn model_folder(dir: &Path) -> ModelConfig {
    let cfg = ModelConfig {
        sphinx: SphinxConfig {
            llm: LlamaConfig {
                dim: 128,
                n_layers: LAYERS as i64,
                vocab_size: 384,
                max_seq_len: 256,
                moe: Some(MoeConfig {
                    num_experts: 4,
                    experts_per_token: 2,
                    hidden_dim: 96,
                }),
                ..LlamaConfig::tiny_test()
            },
            ..SphinxConfig::tiny_test()
        },
        vision: Some(MovConfig::tiny_test()),
    };
    std::fs::write(dir.join(model_folder::CONFIG_FILE), cfg.to_json()).unwrap();
    std::fs::write(
        dir.join(model_folder::TOKENIZER_FILE),
        char_tokenizer::tokenizer_json(),
    )
    .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    sphinx_model::seeded::with_seed(3, || {
        Sphinx::build(&vs.root(), &cfg.sphinx.llm, &cfg.vision(), true)
    })
    .unwrap();
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&named, dir.join(model_folder::WEIGHTS_FILE)).unwrap();
    cfg
}

/// Logits at the text positions of one page, and its greedy answer.
fn run(loaded: &Loaded) -> (Tensor, Vec<i64>) {
    let _guard = tch::no_grad_guard();
    let model = &loaded.model;
    let canvas = sphinx_model::seeded::with_seed(9, || {
        Tensor::randint(256, [3, 256, 256], (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8)
    });
    let page = model
        .page_input(&canvas, &[false, false, true, true])
        .unwrap();
    let ids = Tensor::from_slice(&[1i64, 40, 41, 42, 43, 44]);
    let input = PageInput {
        views: &page.views,
        skipped: &page.skipped,
        ids: &ids,
    };
    let logits = model.forward(&input).unwrap();
    let (seq, _) = model.assemble(&input).unwrap();
    let cfg = GenerateConfig {
        max_new_tokens: 12,
        sampling: Sampling::Greedy,
        stop: Vec::new(),
        vocab: None,
    };
    let out = sphinx_model::generate(model.llm(), &[seq.squeeze_dim(0)], &cfg).unwrap();
    (logits, out.outputs[0].tokens.clone())
}

#[test]
fn a_model_split_over_three_devices_equals_the_unplaced_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = model_folder(tmp.path());
    let weights = tmp.path().join(model_folder::WEIGHTS_FILE);
    let sizes: PartSizes = placement::part_sizes(&weights, &cfg.sphinx.llm, 4).unwrap();
    assert_eq!(sizes.layers.len(), LAYERS);
    // Every tensor of the file is counted once, at 4 bytes, plus one KV cache per layer.
    let elements: i64 = Tensor::read_safetensors(&weights)
        .unwrap()
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum();
    let kv = 2 * cfg.sphinx.llm.kv_heads() * cfg.sphinx.llm.head_dim() * 256 * 4;
    assert_eq!(
        sizes.total(),
        (elements * 4 + kv * LAYERS as i64) as u64,
        "{sizes:?}"
    );
    // Room for the front and two layers, then three layers, then the rest.
    let layer = sizes.layers[0];
    let slack = layer / 2;
    let free = [
        sizes.front() + 2 * layer + slack,
        3 * layer + slack,
        sizes.total(),
    ];
    let devices: Vec<DeviceFree> = free
        .iter()
        .map(|&free| DeviceFree {
            device: Device::Cpu,
            free,
        })
        .collect();
    let plan = placement::plan(&sizes, &devices).unwrap();
    assert_eq!(plan.used_slots(), 3, "{plan}");
    assert_eq!(plan.front, 0);
    assert_eq!(plan.head, 2);
    for slot in 0..3 {
        assert!(plan.layers.contains(&slot), "{plan}");
    }
    for (load, d) in plan.loads(&sizes).iter().zip(&devices) {
        assert!(*load <= d.free, "{plan}");
    }

    let single = model_folder::load(tmp.path(), Device::Cpu).unwrap();
    let placed = model_folder::load_planned(tmp.path(), &cfg.sphinx, &cfg.vision(), &plan).unwrap();
    assert_eq!(placed.placement, plan);
    assert_eq!(placed.model.llm().layer_devices(), &[Device::Cpu; LAYERS]);
    let (want_logits, want_tokens) = run(&single);
    let (logits, tokens) = run(&placed);
    assert_eq!(logits.size(), want_logits.size());
    let diff = (&logits - &want_logits).abs().max().double_value(&[]);
    assert_eq!(diff, 0.0, "placed logits differ by {diff}");
    assert_eq!(tokens, want_tokens);
    assert_eq!(tokens.len(), 12);
}

#[test]
fn placements_that_cannot_work_are_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = model_folder(tmp.path());
    let weights = tmp.path().join(model_folder::WEIGHTS_FILE);
    let llm = &cfg.sphinx.llm;
    let err = model_folder::plan_for(&weights, llm, &[Device::Cuda(0), Device::Cuda(0)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Cuda(0) is listed twice"), "{err}");
    let err = model_folder::plan_for(&weights, llm, &[Device::Cuda(0), Device::Cpu])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CPU and GPUs"), "{err}");
    // Too little room on all devices together: the sizes are named.
    let sizes = placement::part_sizes(&weights, llm, 4).unwrap();
    let tight = [DeviceFree {
        device: Device::Cpu,
        free: sizes.total() / 2 - 1,
    }; 2];
    let err = placement::plan(&sizes, &tight).unwrap_err().to_string();
    assert!(
        err.contains("does not fit Cpu + Cpu") && err.contains(&format!("{LAYERS} layers")),
        "{err}"
    );
    // A placement for another model is refused by the loader.
    let wrong = placement::Plan::single(Device::Cpu, LAYERS - 1);
    let err = model_folder::load_planned(tmp.path(), &cfg.sphinx, &cfg.vision(), &wrong)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("7 layers") && err.contains("has 8"), "{err}");
}
