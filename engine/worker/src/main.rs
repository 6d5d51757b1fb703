//! `sphinx`: the one command for local and cloud work. This binary links no libtorch: it
//! runs `tile`, `synth` and the render child itself and becomes `sphinx-engine` for the
//! rest (`sphinx_cli::front`).

fn main() -> std::process::ExitCode {
    sphinx_cli::front::main()
}
