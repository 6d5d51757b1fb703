# Source me: points tch at the venv's libtorch and puts the venv's tools on PATH.
_sphinx_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LIBTORCH_USE_PYTORCH=1
export PATH="$_sphinx_root/.venv/bin:$PATH"
_torch_lib=$("$_sphinx_root/.venv/bin/python" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null || true)
if [ -n "$_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# No thread limit here: `sphinx run`, `train`, `eval` and the demo keep libtorch's default
# (a thread per core: see "Threads" in docs/performance.md).
# scripts/test.sh limits its own test processes.
unset _sphinx_root _torch_lib
