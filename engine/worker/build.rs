// The engine, the examples and the tests keep libtorch_cuda.so linked even though no
// symbol of it is referenced directly; without it CUDA is never available at run time
// (see ../shared/GPU.md). The `sphinx` front links no libtorch at all (sphinx-cli).
fn main() {
    for target in ["bin=sphinx-engine", "examples", "tests"] {
        println!("cargo:rustc-link-arg-{target}=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-{target}=-ltorch_cuda");
        println!("cargo:rustc-link-arg-{target}=-Wl,--as-needed");
    }
}
