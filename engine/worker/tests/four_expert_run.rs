//! The four-expert models (SPHINX `llama_ens5`, SPHINX-MoE `mixtral_sparse_ens5`: CLIP
//! ViT-L/14 and the BLIP-2 Q-Former beside ConvNeXt and DINOv2, 32 + 257 words per view)
//! through `sphinx run` end to end (the queue worker `sphinx serve` runs), with tiny random
//! weights: a real three-page PDF (and a wide image for a skip-token model) is tiled for
//! the model's own canvas, grid and placement, every page gets a result whose image block
//! is what the config and the tiler's padding plan say, and a batch of three pages gives
//! each page exactly the tokens it gets alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sphinx_core::keys;
use sphinx_core::tiling::{Align, TileConfig};
use sphinx_core::LimitArgs;
use sphinx_core::{PageBundle, PageResult};
use sphinx_model::char_tokenizer;
use sphinx_model::config::{LlamaConfig, LlamaType, MoeConfig, SphinxConfig};
use sphinx_model::{ModelConfig, MovConfig, Sphinx};
use sphinx_worker::run_cmd::{self, RunArgs};
use tch::{nn, Device, Tensor};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A random four-expert model folder: `llama_type` selects the LLM kind (a tiny Mixtral
/// for `mixtral_sparse_ens5`), `vision` holds the tiny encoders of that layout. Without a
/// skip token it is laid out as a converted release.
fn four_expert_model(dir: &Path, llama_type: LlamaType, skip_tokens: bool) -> ModelConfig {
    let llm = LlamaConfig {
        vocab_size: 384,
        max_seq_len: 512,
        moe: (llama_type == LlamaType::MixtralSparseEns5).then_some(MoeConfig {
            num_experts: 4,
            experts_per_token: 2,
            hidden_dim: 32,
        }),
        ..LlamaConfig::tiny_test()
    };
    let cfg = ModelConfig {
        sphinx: SphinxConfig {
            llama_type,
            llm,
            skip_tokens,
        },
        vision: Some(MovConfig::tiny_test_four(
            llama_type == LlamaType::LlamaEns5,
        )),
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_json()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), char_tokenizer::tokenizer_json()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    sphinx_model::seeded::with_seed(5, || {
        Sphinx::build(&vs.root(), &cfg.sphinx.llm, &cfg.vision(), skip_tokens)
    })
    .unwrap();
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&named, dir.join("model.safetensors")).unwrap();
    cfg
}

fn args(inputs: &Path, out: &Path, model: &Path, max_batch_pages: usize) -> RunArgs {
    RunArgs {
        inputs: vec![inputs.to_path_buf()],
        out: out.to_path_buf(),
        model: Some(model.to_path_buf()),
        tasks: vec!["ocr".parse().unwrap(), "caption:short".parse().unwrap()],
        max_batch_pages,
        decode_slots: max_batch_pages,
        max_new_tokens: 6,
        cuda_graphs: false,
        overlays: false,
        formats: "json".parse().unwrap(),
        limits: LimitArgs::default(),
        tile_threads: None,
        quiet: true,
        cpu: true,
        devices: Default::default(),
        models: Default::default(),
    }
}

fn results(out: &Path, doc_id: &str, pages: u32) -> Vec<PageResult> {
    (0..pages)
        .map(|page| {
            PageResult::from_json(
                &std::fs::read(out.join(keys::page_result(doc_id, page))).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

/// Runs `sphinx run` over `docs` (one document of `pages` pages, `doc_id`) with a
/// four-expert model; checks layout, image blocks and batch invariance; returns the
/// visual positions of each page.
fn run_four_expert(
    llama_type: LlamaType,
    skip_tokens: bool,
    docs: &Path,
    doc_id: &str,
    pages: u32,
) -> Vec<u32> {
    std::env::set_var(
        sphinx_core::isolate::ENV_RENDER_PROGRAM,
        env!("CARGO_BIN_EXE_sphinx"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let vision = four_expert_model(&model, llama_type, skip_tokens).vision();
    let what = format!("{llama_type:?} skip_tokens {skip_tokens}");

    let batched = tmp.path().join("batched");
    let code = run_cmd::run(args(docs, &batched, &model, 3)).unwrap();
    assert_eq!(code, ExitCode::SUCCESS, "{what}");
    let per_view = vision.tokens_per_view() as u32 + 2;
    let want_tile = vision.tiling(skip_tokens);
    let together = results(&batched, doc_id, pages);
    let mut visual = Vec::new();
    for (page, r) in together.iter().enumerate() {
        // The bundle was tiled for this model: its canvas, grid and page placement.
        let key = keys::page_bundle(doc_id, page as u32);
        let bundle = PageBundle::decode(std::fs::read(batched.join(key)).unwrap()).unwrap();
        let p = &bundle.manifest.preprocess;
        assert_eq!(
            (p.canvas, p.grid, p.align),
            (want_tile.canvas, want_tile.grid, want_tile.align),
            "{what} page {page}"
        );
        // A skip-token model spends one position per padding cell, a released one
        // encodes every cell: [start_img, queries + tokens, end_img] per encoded view.
        let padding = bundle.tiled().unwrap().plan.flags().to_vec();
        let skipped = if skip_tokens {
            padding.iter().filter(|&&s| s).count() as u32
        } else {
            0
        };
        let encoded = vision.layout.slots() as u32 - skipped;
        let want = encoded * per_view + skipped;
        assert_eq!((r.page_index, r.page_count), (page as u32, pages));
        assert_eq!(r.model.id, "model");
        assert_eq!(r.tasks.len(), 2);
        for t in &r.tasks {
            assert_eq!(t.tokens.visual, want, "{what} page {page}");
            assert!(t.tokens.generated >= 1 && t.tokens.generated <= 6);
        }
        visual.push(want);
    }

    // Each page alone (one page per batch, one decode slot) gets the same tokens.
    let alone = tmp.path().join("alone");
    assert_eq!(
        run_cmd::run(args(docs, &alone, &model, 1)).unwrap(),
        ExitCode::SUCCESS
    );
    for (a, b) in together.iter().zip(results(&alone, doc_id, pages)) {
        for (ta, tb) in a.tasks.iter().zip(&b.tasks) {
            assert_eq!(
                (&ta.raw_text, &ta.tokens),
                (&tb.raw_text, &tb.tokens),
                "{what} page {} task {}",
                a.page_index,
                ta.task
            );
        }
    }
    visual
}

/// The three-page sample PDF in a folder of its own, and its doc_id.
fn notes() -> (tempfile::TempDir, String) {
    let docs = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("samples/mattsnotes.pdf"),
        docs.path().join("notes.pdf"),
    )
    .unwrap();
    let doc_id = keys::doc_id(&std::fs::read(docs.path().join("notes.pdf")).unwrap());
    (docs, doc_id)
}

#[test]
fn released_four_expert_layouts_are_tiled_as_the_reference_cuts_them() {
    // SPHINX cuts a 448 px canvas into 224 px cells, SPHINX-MoE a 1024 px one into 512 px
    // cells; both centre the page (PadToSquare) and give 5 x (32 + 257 + 2) positions.
    for (kind, canvas) in [
        (LlamaType::LlamaEns5, 448),
        (LlamaType::MixtralSparseEns5, 1024),
    ] {
        let vision = MovConfig::for_llama_type(kind);
        let tile = vision.tiling(false);
        assert_eq!(tile, TileConfig::new(canvas, 2).aligned(Align::Center));
        tile.validate().unwrap();
        let words = vision.layout.slots() as i64 * (vision.tokens_per_view() + 2);
        assert_eq!(words, 5 * (32 + 257 + 2), "{kind:?}");
    }
}

#[test]
fn sphinx_llama_ens5_runs_end_to_end() {
    // Tiny `llama_ens5`: a 112 px canvas in 2x2 cells, every expert on 56 px views.
    let cfg = MovConfig::tiny_test_four(true);
    assert_eq!((cfg.canvas_size(), cfg.tokens_per_view()), (112, 32 + 17));
    let (docs, doc_id) = notes();
    let visual = run_four_expert(LlamaType::LlamaEns5, false, docs.path(), &doc_id, 3);
    assert_eq!(visual, [5 * (32 + 17 + 2); 3]);
}

#[test]
fn sphinx_moe_mixtral_sparse_ens5_runs_end_to_end() {
    // Tiny `mixtral_sparse_ens5`: a 256 px canvas, ConvNeXt on its own 128 px views.
    let cfg = MovConfig::tiny_test_four(false);
    assert_eq!((cfg.canvas_size(), cfg.tokens_per_view()), (256, 32 + 17));
    let (docs, doc_id) = notes();
    let visual = run_four_expert(LlamaType::MixtralSparseEns5, false, docs.path(), &doc_id, 3);
    assert_eq!(visual, [5 * (32 + 17 + 2); 3]);
}

#[test]
fn a_four_expert_model_with_a_skip_token_skips_padding_cells() {
    // A model assembled from parts and fine-tuned here has a skip token: on a wide page
    // (the bottom row of cells is padding, the page top-left) it encodes 3 views.
    let docs = tempfile::tempdir().unwrap();
    let page = image::RgbImage::from_fn(1200, 300, |x, y| {
        let ink = (x / 40 + y / 30) % 3 == 0;
        image::Rgb(if ink { [0, 0, 0] } else { [250, 250, 250] })
    });
    let path = docs.path().join("wide.png");
    page.save(&path).unwrap();
    let doc_id = keys::doc_id(&std::fs::read(&path).unwrap());
    let visual = run_four_expert(LlamaType::LlamaEns5, true, docs.path(), &doc_id, 1);
    assert_eq!(visual, [3 * (32 + 17 + 2) + 2]);
}
