# Source me: points tch at the venv's libtorch and puts the venv's tools on PATH.
_sphinx_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LIBTORCH_USE_PYTORCH=1
export PATH="$_sphinx_root/.venv/bin:$PATH"
_torch_lib=$("$_sphinx_root/.venv/bin/python" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))' 2>/dev/null || true)
if [ -n "$_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# libtorch must not grab every core of a 2-core CI box per test process.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
unset _sphinx_root _torch_lib
