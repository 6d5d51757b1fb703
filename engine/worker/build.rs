// The engine, the examples and the tests keep libtorch_cuda.so linked even though no
// symbol of it is referenced directly; without it CUDA is never available at run time
// (see ../shared/GPU.md). The `sphinx` front links no libtorch at all (sphinx-cli).
//
// They also record where libtorch was at build time (RUNPATH, from torch-sys), so a
// binary built here starts from any shell, without scripts/env.sh's LD_LIBRARY_PATH.
// LD_LIBRARY_PATH still comes first (the GPU scripts and the container image use it),
// and a RUNPATH directory that does not exist elsewhere is skipped.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let libtorch = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    for target in ["bin=sphinx-engine", "examples", "tests"] {
        println!("cargo:rustc-link-arg-{target}=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-{target}=-ltorch_cuda");
        println!("cargo:rustc-link-arg-{target}=-Wl,--as-needed");
        if let Some(lib) = &libtorch {
            println!("cargo:rustc-link-arg-{target}=-Wl,-rpath,{lib}");
        }
    }
}
