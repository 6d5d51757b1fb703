"""Builds every numeric-parity fixture: runs each generator scripts/parity/<name>.py as
`python scripts/parity/<name>.py --out <workspace>/target/fixtures/<name>` (random weights,
inputs and the outputs of libraries nobody here wrote: timm, transformers, sentencepiece,
torch). Generators run in alphabetical order, each in
its own process, one CPU thread each, and the driver stops at the first failure.

Usage: .venv/bin/python scripts/make_parity_fixtures.py [name ...]   (default: all)
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARITY = ROOT / "scripts" / "parity"
FIXTURES = ROOT / "target" / "fixtures"


def main(names: list[str]) -> int:
    available = sorted(p.stem for p in PARITY.glob("*.py") if not p.stem.startswith("_"))
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown generator(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    # One thread: deterministic CPU reductions, and a 2-core box stays usable.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for name in names or available:
        start = time.monotonic()
        cmd = [sys.executable, str(PARITY / f"{name}.py"), "--out", str(FIXTURES / name)]
        done = subprocess.run(cmd, env=env, cwd=ROOT)
        if done.returncode != 0:
            print(f"generator {name} failed (exit {done.returncode}): {' '.join(cmd)}", file=sys.stderr)
            return done.returncode
        print(f"  {name}: {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
