//! The render child on its own: `sphinx-render --sphinx-render-child <heap bytes>` speaks
//! the protocol of `sphinx_core::isolate` on stdin/stdout. The `sphinx` and tiler binaries
//! are their own render children; this one serves processes that are not (test
//! harnesses, via `SPHINX_RENDER_PROGRAM`).

fn main() {
    sphinx_core::isolate::run_child_if_requested();
    eprintln!(
        "usage: sphinx-render {} <heap bytes>  (spoken to by sphinx_core::isolate)",
        sphinx_core::isolate::CHILD_ARG
    );
    std::process::exit(2);
}
