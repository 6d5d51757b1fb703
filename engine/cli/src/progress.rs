//! The progress bar every long command shows on stderr (hidden with `--quiet`, and by
//! indicatif itself when stderr is not a terminal).

use indicatif::{ProgressDrawTarget, ProgressStyle};

/// The bar type, so its users need no `indicatif` dependency of their own.
pub use indicatif::ProgressBar;

/// A bar over `len` items called `unit` (e.g. "documents", "pages"), with elapsed
/// time, ETA and a free message (rates, the current file).
pub fn bar(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  eta {{eta}}  {{msg}}"
    );
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}
