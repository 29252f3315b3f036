#!/usr/bin/env bash
# The lab's checks that need a CUDA GPU (CI never runs this; see README, "Benchmarks"). On a GPU machine:
#   bash scripts/gpu_check.sh            # writes under $OUT (default /tmp/adaface-gpu-check)
# 1. the GPU, torch and CUDA versions;
# 2. the tests that take a CUDA path where there is one (BRISQUE on the GPU, device choice, training);
# 3. bench/bench_train.py --device cuda: training-step speed, fp32 and bf16 autocast with channels-last;
#    bench_quality.py and bench_quality_eval.py: BRISQUE and SER-FIQ images/s on the GPU beside the CPU;
# 4. one sweep point on CUDA: `adaface-lab sweep` (submitit's local executor, one job holding the GPU)
#    training and measuring the lab's demo run (SyntheticFaces 800 x 6, ir_tiny at 32 px, AdaFace, 10
#    epochs) with --device cuda; its wall time, runs.csv and the run's config (device, amp) are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "$VENV" = system ]; then py=python3; else py=$VENV/bin/python; fi
out=${OUT:-/tmp/adaface-gpu-check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$py" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU here: nothing to check"
print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
PY

echo "== tests with a CUDA path"
"$py" -m pytest -q -p no:cacheprovider tests/test_quality.py tests/test_train.py tests/test_folder_recipe.py \
  | tail -n 3 | tee "$out/tests_cuda.txt"

echo "== training step on CUDA (bench/bench_train.py --device cuda)"
"$py" bench/bench_train.py --device cuda | tee "$out/bench_train_cuda.txt"
echo "== BRISQUE and SER-FIQ on the GPU beside the CPU"
"$py" bench/bench_quality.py | tee "$out/bench_quality.txt"
"$py" bench/bench_quality_eval.py | tee "$out/bench_quality_eval.txt"

echo "== one sweep point on CUDA"
rm -rf "$out/sweep"
start=$(date +%s.%N)
"$py" -m adaface_lab.cli sweep --grid head=adaface --seeds 1 --jobs 1 --gpus-per-job 1 --device cuda \
  --out "$out/sweep" 2>&1 | tail -n 5
end=$(date +%s.%N)
python3 -c "print(f'sweep point on CUDA: {$end - $start:.1f} s wall (start-up, training, measuring)')" \
  | tee "$out/sweep_time.txt"
cat "$out/sweep/runs.csv"
"$py" - "$out/sweep" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
runs = pd.read_csv(Path(sys.argv[1]) / "runs.csv")
config = json.loads((Path(sys.argv[1]) / runs["run"].iloc[0] / "config.json").read_text())
print("run on", config["run"]["device"], "amp (bf16):", config["run"]["amp"], "| epochs.csv time_s:",
      pd.read_csv(Path(sys.argv[1]) / runs["run"].iloc[0] / "epochs.csv")["time_s"].round(1).tolist())
PY
