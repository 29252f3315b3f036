"""`python -m bench` (`make bench`): run every bench/bench_*.py in turn and print what it measures.

Each script prints ratios measured side by side in one run (ours against a reference
formulation), because absolute times on shared machines are noisy. Extra arguments are passed
to every script (e.g. `python -m bench --quick`); `--only NAME` runs one script.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    only = None
    if "--only" in argv:
        i = argv.index("--only")
        only = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    scripts = sorted(here.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if only in s.stem]
    failures = 0
    for script in scripts:
        print(f"\n=== {script.stem} " + "=" * max(0, 60 - len(script.stem)), flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *argv], cwd=here.parent)
        print(f"--- {script.stem}: exit {rc}, {time.perf_counter() - start:.0f} s", flush=True)
        failures += rc != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
