// Keep libtorch_cuda.so linked even though no symbol of it is referenced directly;
// without it CUDA is never available at run time (see ../shared/GPU.md).
fn main() {
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
