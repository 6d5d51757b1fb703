//! Micro-batches joining the running decode against a barrier per micro-batch, on the
//! committed nano (`models/sphinx-nano`, CPU), through the worker's [`PageStream`].
//!
//!   bench_stream join [micro-batches] [pages]     the next micro-batch is submitted as
//!                                                 soon as the stream has room, and its
//!                                                 rows take slots as they free
//!   bench_stream barrier [micro-batches] [pages]  each micro-batch runs until its last
//!                                                 answer ends (the worker before streaming)
//!
//! Workload: the 8 synthetic sample pages (`samples/synthetic/images`), an OCR task each
//! (short answers: the nano reads up to 7 characters); the first page of every
//! micro-batch also asks for a detailed caption, which the OCR-only nano answers up to the
//! token budget (a long answer, as a dense page's OCR is). Both modes use the same stream,
//! slots and pages; only when the next micro-batch enters differs. Prints pages/s and
//! the tokens generated (the same in both modes: each row's answer does not depend on
//! what it is batched with).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sphinx_core::job::CaptionDetail;
use sphinx_core::Task;
use sphinx_model::model_folder;
use sphinx_worker::batch::{BatchOptions, PreparedPage};
use sphinx_worker::stream::{Isolation, PageStream};
use tch::Device;

/// Decode slots (the `sphinx run` default, `--decode-slots`).
const SLOTS: usize = 8;
/// Token budget: the long answers run to it.
const MAX_NEW: usize = 96;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("join");
    let batches: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let per_batch: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    if !matches!(mode, "join" | "barrier") {
        bail!("usage: bench_stream join|barrier [micro-batches] [pages per micro-batch]");
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let loaded = model_folder::load(&repo.join("models/sphinx-nano"), Device::Cpu)?;
    let images: Vec<image::RgbImage> = (0..8)
        .map(|i| {
            let path = repo.join(format!("samples/synthetic/images/{}.png", 2_000_000 + i));
            image::open(&path)
                .with_context(|| path.display().to_string())
                .map(|im| im.to_rgb8())
        })
        .collect::<Result<_>>()?;
    let micro_batch = |b: usize| -> Result<Vec<(usize, PreparedPage)>> {
        (0..per_batch)
            .map(|i| {
                let img = &images[(b * per_batch + i) % images.len()];
                let mut tasks = vec![Task::Ocr];
                if i == 0 {
                    tasks.push(Task::Caption {
                        detail: CaptionDetail::Detailed,
                    });
                }
                let size = [img.width() as f32, img.height() as f32];
                let id = (format!("doc-{b}"), i as u32, per_batch as u32);
                let page = PreparedPage::from_image(img, size, id, tasks, &loaded.tile)?;
                Ok((b * per_batch + i, page))
            })
            .collect()
    };
    let opts = BatchOptions {
        max_new_tokens: MAX_NEW,
        max_rows: SLOTS,
        ..BatchOptions::default()
    };
    let mut stream = PageStream::new(&loaded, &opts, Isolation::FailAll)?;
    stream.expect(SLOTS);
    let started = Instant::now();
    let (mut pages, mut failed, mut next) = (0usize, 0usize, 0usize);
    // Tokens generated per task kind: (rows, tokens).
    let (mut ocr, mut caption) = ((0usize, 0usize), (0usize, 0usize));
    let mut count = |done: Vec<(usize, Result<sphinx_core::PageResult>)>| {
        for (_, r) in done {
            match r {
                Ok(page) => {
                    pages += 1;
                    for t in &page.tasks {
                        let kind = match t.task {
                            Task::Ocr => &mut ocr,
                            _ => &mut caption,
                        };
                        kind.0 += 1;
                        kind.1 += t.tokens.generated as usize;
                    }
                }
                Err(_) => failed += 1,
            }
        }
    };
    while next < batches || !stream.is_idle() {
        let rows = per_batch + 1;
        let admit = match mode {
            "join" => stream.room() >= rows,
            _ => stream.is_idle(),
        };
        if next < batches && admit {
            count(stream.submit(micro_batch(next)?));
            next += 1;
            continue;
        }
        count(stream.advance());
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = stream.take_stats();
    if failed > 0 {
        bail!("{failed} pages failed");
    }
    println!(
        "{mode}: {pages} pages in {secs:.2} s = {:.2} pages/s; {} tokens generated (OCR \
         {:.1} per answer, caption {:.1}); encode {:.2} s, prefill {:.2} s, decode {:.2} s; \
         {} rows joined a running decode, {} slots",
        pages as f64 / secs,
        stats.generated_tokens,
        ocr.1 as f64 / ocr.0.max(1) as f64,
        caption.1 as f64 / caption.0.max(1) as f64,
        stats.encode.as_secs_f64(),
        stats.prefill.as_secs_f64(),
        stats.decode.as_secs_f64(),
        stats.joined,
        stats.slots
    );
    Ok(())
}
