//! `sphinx eval --model <dir> --data <conversations.jsonl>`: OCR character error rate,
//! word error rate, exact-line rate and pages/s of a model on held-out pages, printed as
//! one JSON object.
//!
//! For every record with an image and an OCR turn (the text-detection question of
//! `sphinx_core::prompts`), the model answers the OCR task on the page exactly as
//! `sphinx infer` does; answer and reference are compared as plain text: `<p>`/`</p>`
//! tags and `[...]` boxes removed, then Levenshtein distance over characters. CER =
//! total edits / total reference characters (so long pages weigh more, as usual). WER is
//! the same over whitespace-separated words (total word edits / total reference words);
//! the exact-line rate is the share of reference lines that the answer's line at the same
//! place (line i of the answer for line i of the reference) reproduces exactly.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sphinx_core::isolate::{render_page, Isolation};
use sphinx_core::prompts;
use sphinx_core::Limits;
use sphinx_core::Task;
use sphinx_model::dataset::Dataset;
use sphinx_model::Sampling;
use tch::Device;

use crate::batch::{BatchOptions, PreparedPage};
use crate::stream::run_batch;

/// Arguments of `sphinx eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json), or
    /// s3://bucket/models/<run>/ (or .../models/latest), copied once into --model-cache.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub models: crate::model_source::ModelCacheArgs,
    /// Conversations JSONL (e.g. a held-out `sphinx synth` range).
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate at most this many pages.
    #[arg(long, value_parser = sphinx_core::settings::at_least_one)]
    pub limit: Option<usize>,
    /// Most tokens generated per page.
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = 2048)]
    pub max_new_tokens: usize,
    /// Pages decoded together (one batched generation).
    #[arg(long, value_parser = sphinx_core::settings::at_least_one, default_value_t = 16)]
    pub batch: usize,
    /// Run on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// Also write one JSON line per page (image, reference, hypothesis, edits) here, to
    /// see what the model gets wrong.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// The text of an OCR answer without tags and boxes, lines trimmed.
pub fn plain_text(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut in_box = false;
    let stripped = answer.replace("<p>", "").replace("</p>", "");
    for c in stripped.chars() {
        match c {
            '[' => in_box = true,
            ']' if in_box => in_box = false,
            _ if !in_box => out.push(c),
            _ => {}
        }
    }
    out.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

/// Levenshtein distance between two strings, over characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Levenshtein distance between two sequences of words.
pub fn word_edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(wa != wb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The probability that a page read wrong (`true`) has a lower confidence than a page read
/// right, ties counting half (the area under the ROC curve of confidence as a detector of
/// wrong pages); `None` unless there are pages of both kinds.
pub fn confidence_auroc(pages: &[(f32, bool)]) -> Option<f64> {
    let wrong: Vec<f32> = pages.iter().filter(|p| p.1).map(|p| p.0).collect();
    let right: Vec<f32> = pages.iter().filter(|p| !p.1).map(|p| p.0).collect();
    if wrong.is_empty() || right.is_empty() {
        return None;
    }
    let below: f64 = wrong
        .iter()
        .flat_map(|w| right.iter().map(move |r| (w, r)))
        .map(|(w, r)| match w.partial_cmp(r) {
            Some(std::cmp::Ordering::Less) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .sum();
    Some(below / (wrong.len() * right.len()) as f64)
}

/// How many lines of `reference` the line at the same place of `hypothesis` equals
/// exactly (plain text, as [`plain_text`] gives it).
pub fn exact_lines(hypothesis: &str, reference: &str) -> usize {
    reference
        .lines()
        .zip(hypothesis.lines())
        .filter(|(r, h)| r == h)
        .count()
}

/// Error counts over a set of pages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub pages: usize,
    pub reference_chars: usize,
    pub edits: usize,
    pub reference_words: usize,
    pub word_edits: usize,
    pub reference_lines: usize,
    pub exact_lines: usize,
}

impl Score {
    /// Adds one page (plain texts).
    pub fn add(&mut self, hypothesis: &str, reference: &str) -> usize {
        let edits = levenshtein(hypothesis, reference);
        self.pages += 1;
        self.edits += edits;
        self.reference_chars += reference.chars().count();
        self.word_edits += word_edits(hypothesis, reference);
        self.reference_words += reference.split_whitespace().count();
        self.exact_lines += exact_lines(hypothesis, reference);
        self.reference_lines += reference.lines().count();
        edits
    }

    fn rate(n: usize, d: usize) -> f64 {
        if d == 0 {
            0.0
        } else {
            n as f64 / d as f64
        }
    }

    /// Character error rate.
    pub fn cer(&self) -> f64 {
        Self::rate(self.edits, self.reference_chars)
    }

    /// Word error rate.
    pub fn wer(&self) -> f64 {
        Self::rate(self.word_edits, self.reference_words)
    }

    /// Share of reference lines read exactly.
    pub fn exact_line_rate(&self) -> f64 {
        Self::rate(self.exact_lines, self.reference_lines)
    }
}

/// Runs `sphinx eval`: prints the summary as one JSON line.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    sphinx_cli::stdout::line(evaluate(&args)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Scores the model's OCR on the data; returns the summary (`cer`, `edits`,
/// `reference_chars`, `pages`, `pages_per_s`, ...) and writes `--predictions` if asked.
pub fn evaluate(args: &EvalArgs) -> Result<serde_json::Value> {
    let started = Instant::now();
    let device = if args.cpu {
        Device::Cpu
    } else {
        Device::cuda_if_available()
    };
    // The data first: a wrong path or a missing image is said before a model is loaded.
    let data = Dataset::load(&args.data)?;
    let ocr_question = prompts::question(&Task::Ocr)?;
    // (page, reference) pairs, then batches through the worker's batch path.
    let mut work = Vec::new();
    for rec in &data.records {
        if args.limit.is_some_and(|l| work.len() >= l) {
            break;
        }
        let Some(image) = data.image_path(rec) else {
            continue;
        };
        let turns = rec.turns().map_err(anyhow::Error::msg)?;
        let Some(turn) = turns.iter().find(|t| t.question == ocr_question) else {
            continue;
        };
        let reference = plain_text(turn.answer.as_deref().unwrap_or_default());
        work.push((image, reference));
    }
    if work.is_empty() {
        bail!(
            "no record of {} asks the OCR question with a reference answer and an image: \
             nothing to score",
            args.data.display()
        );
    }
    let images: Vec<PathBuf> = work.iter().map(|(image, _)| image.clone()).collect();
    sphinx_model::dataset::check_images_exist(&images, "pages to score")?;
    let model = args.models.local_folder_blocking(&args.model)?;
    let loaded = sphinx_model::model_folder::load(&model, device)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let opts = BatchOptions {
        max_new_tokens: args.max_new_tokens,
        sampling: Sampling::Greedy,
        ..BatchOptions::default()
    };
    let mut score = Score::default();
    // Each page's answer confidence, and whether the page had edits.
    let mut confidences: Vec<(f32, bool)> = Vec::new();
    let mut predictions = match &args.predictions {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let progress = sphinx_cli::progress::bar(work.len() as u64, "pages", args.quiet);
    let decode_started = Instant::now();
    for chunk in work.chunks(args.batch.max(1)) {
        let mut prepared = Vec::with_capacity(chunk.len());
        for (image, _) in chunk {
            let bytes = std::sync::Arc::new(
                std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?,
            );
            let isolation = Isolation::this_binary();
            let (_, page) = render_page(
                &isolation,
                &bytes,
                &Limits::default(),
                loaded.tile.canvas,
                0,
            )
            .with_context(|| format!("cannot render {}", image.display()))?;
            prepared.push(PreparedPage::from_image(
                &page.image,
                page.size_points,
                (String::new(), 0, 1),
                vec![Task::Ocr],
                &loaded.tile,
            )?);
        }
        let (results, _) = run_batch(&loaded, &prepared, &opts)?;
        for (result, (image, reference)) in results.iter().zip(chunk) {
            let hypothesis = plain_text(&result.tasks[0].raw_text);
            let page_edits = score.add(&hypothesis, reference);
            let confidence = result.tasks[0].confidence;
            if let Some(c) = confidence {
                confidences.push((c, page_edits > 0));
            }
            if let Some(out) = predictions.as_mut() {
                let row = serde_json::json!({
                    "image": image.display().to_string(),
                    "reference": reference,
                    "hypothesis": hypothesis,
                    "edits": page_edits,
                    "confidence": confidence,
                });
                writeln!(out, "{row}")?;
            }
        }
        progress.inc(chunk.len() as u64);
        progress.set_message(format!("CER so far {:.1}%", 100.0 * score.cer()));
    }
    progress.finish_and_clear();
    let summary = serde_json::json!({
        "model": args.model.display().to_string(),
        "data": args.data.display().to_string(),
        "pages": score.pages,
        "reference_chars": score.reference_chars,
        "edits": score.edits,
        "cer": score.cer(),
        "reference_words": score.reference_words,
        "word_edits": score.word_edits,
        "wer": score.wer(),
        "reference_lines": score.reference_lines,
        "exact_lines": score.exact_lines,
        "exact_line_rate": score.exact_line_rate(),
        // How well the answers' confidence ranks the pages read wrong below those read
        // right: 0.5 is chance, 1.0 every wrong page below every right one.
        "confidence_auroc": confidence_auroc(&confidences),
        "seconds": started.elapsed().as_secs_f64(),
        // Render + encode + decode, model loading excluded.
        "pages_per_s": score.pages as f64 / decode_started.elapsed().as_secs_f64(),
    });
    if let Some(mut out) = predictions {
        out.flush()?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cer_parts() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(
            plain_text("<p>Ten boats 42</p>[0.04,0.05,0.27,0.07]\n<p>b</p>[0.1,0.2,0.3,0.4]"),
            "Ten boats 42\nb"
        );
    }

    #[test]
    fn confidence_auroc_ranks_wrong_pages_below_right_ones() {
        // Every wrong page below every right one; the reverse; a tie; one kind only.
        let perfect = [(0.2, true), (0.3, true), (0.8, false), (0.9, false)];
        assert_eq!(confidence_auroc(&perfect), Some(1.0));
        let reversed = [(0.9, true), (0.1, false)];
        assert_eq!(confidence_auroc(&reversed), Some(0.0));
        let mixed = [(0.5, true), (0.5, false), (0.2, true), (0.7, false)];
        assert_eq!(
            confidence_auroc(&mixed),
            Some((1.0 + 0.5 + 1.0 + 1.0) / 4.0)
        );
        assert_eq!(confidence_auroc(&[(0.5, false)]), None);
    }

    #[test]
    fn word_and_line_scores() {
        assert_eq!(word_edits("the cat sat", "the hat sat"), 1);
        assert_eq!(word_edits("the cat", "the cat sat down"), 2);
        assert_eq!(word_edits("a  b\nc", "a b c"), 0);
        assert_eq!(exact_lines("one\ntwo x\nthree", "one\ntwo\nthree"), 2);
        assert_eq!(exact_lines("", "one"), 0);
        let mut s = Score::default();
        assert_eq!(s.add("Ten boats", "Ten boat"), 1);
        s.add("red line\nsecond", "red line\nsecond");
        assert_eq!(s.pages, 2);
        assert_eq!((s.edits, s.reference_chars), (1, 8 + 15));
        assert_eq!((s.word_edits, s.reference_words), (1, 5));
        assert_eq!((s.exact_lines, s.reference_lines), (2, 3));
        assert!((s.cer() - 1.0 / 23.0).abs() < 1e-12);
        assert!((s.wer() - 0.2).abs() < 1e-12);
        assert!((s.exact_line_rate() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(Score::default().cer(), 0.0);
    }
}
