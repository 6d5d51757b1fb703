//! Compiles `src/shim.cpp` against the libtorch tch links (torch-sys passes its lib
//! directory as `DEP_TCH_LIBTORCH_LIB`) and the CUDA runtime headers of PyTorch's wheel
//! (`site-packages/nvidia/cu13/include`, with `crt/` from the `nvidia-cuda-crt` wheel), or
//! `SPHINX_CUDA_INCLUDE`. Without those headers the crate builds with no shim and every
//! call answers `GraphError::NotBuilt`, so a CPU-only libtorch still builds the project.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-check-cfg=cfg(sphinx_cuda_graph)");
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=SPHINX_CUDA_INCLUDE");
    let Some(lib) = env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=no libtorch lib dir from torch-sys: CUDA graphs not built");
        return;
    };
    let torch_root = lib
        .parent()
        .expect("libtorch's lib dir has a parent")
        .to_path_buf();
    let torch_include = torch_root.join("include");
    let cuda_include = env::var_os("SPHINX_CUDA_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| torch_root.join("../nvidia/cu13/include"));
    let missing: Vec<PathBuf> = [
        torch_include.join("ATen/cuda/CUDAGraph.h"),
        cuda_include.join("cuda_runtime_api.h"),
        cuda_include.join("crt/host_config.h"),
        lib.join("libtorch_cuda.so"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .collect();
    if !missing.is_empty() {
        println!(
            "cargo:warning=CUDA graphs not built (missing {}); scripts/setup.sh installs them",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&torch_include)
        .include(torch_include.join("torch/csrc/api/include"))
        .include(&cuda_include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/shim.cpp")
        .compile("sphinx_cuda_graph_shim");
    link_search(&lib);
    for l in ["torch_cuda", "c10_cuda", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-cfg=sphinx_cuda_graph");
}

fn link_search(lib: &Path) {
    println!("cargo:rustc-link-search=native={}", lib.display());
}
