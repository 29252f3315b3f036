"""Heads: forward+backward time and peak memory at B=256, d=512, C=20,000 on the CPU, and the
Fig. 3 feature plane of all nine methods on a 300×300 grid.

Measured interleaved in one run: each round times every head once, in a shuffled order, so
machine noise hits all of them alike. Reported as ratios to the margin-free normalised-softmax
head (the floor: matmul + cross-entropy) and to an independent full-matrix formulation of the
same method (arccos/cos over all B×C logits and one-hot masks, as the official code does).
Targets (issue #2): AdaFace ≤ 1.15× softmax, ≥ 1.5× faster than its full-matrix reference;
all nine planes ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaface_lab.gst import feature_plane  # noqa: E402
from adaface_lab.heads import build_head, list_heads  # noqa: E402
from adaface_lab.margins import build_margin, list_margins  # noqa: E402
from tests.reference_heads import ReferenceHead  # noqa: E402


def _peak_cpu_bytes(fn) -> int:
    """Peak of live CPU tensor memory during ``fn()`` (from the profiler's allocation events)."""
    import os

    from torch.profiler import ProfilerActivity, profile

    sys.stdout.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # the profiler's C++ side logs every start/stop to stderr
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    torch.manual_seed(0)
    B, d, C = args.batch, args.dim, args.classes
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; B={B}, d={d}, C={C}")

    raw = torch.randn(B, d) * 20
    labels = torch.randint(0, C, (B,))
    contenders: dict[str, callable] = {}
    for name in list_heads():
        head = build_head(name, d, C).train()  # the default parameters
        ref = ReferenceHead(name, head.kernel.detach().clone().requires_grad_(), **head.margin.params())

        def ours(head=head):
            feats = raw.clone().requires_grad_()
            norms = feats.norm(dim=1, keepdim=True)
            head.loss(head(feats / norms, norms, labels), labels).backward()

        def reference(ref=ref):
            feats = raw.clone().requires_grad_()
            norms = feats.norm(dim=1, keepdim=True)
            ref.loss(ref(feats / norms, norms, labels), labels, norms).backward()
            ref.kernel.grad = None

        contenders[name] = ours
        contenders[f"{name} (full-matrix ref)"] = reference

    for fn in contenders.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        order = list(contenders)
        random.shuffle(order)
        for key in order:
            start = time.perf_counter()
            contenders[key]()
            times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["softmax"]
    print(f"\nforward+backward, median of {rounds} interleaved rounds")
    print(f"{'head':<18}{'ms':>8}{'× softmax':>11}{'ref ms':>9}{'ref/ours':>10}{'peak MB':>9}{'ref peak MB':>12}")
    for name in list_heads():
        ours_ms, ref_ms = med[name] * 1e3, med[f"{name} (full-matrix ref)"] * 1e3
        peak = _peak_cpu_bytes(contenders[name]) / 2**20
        ref_peak = _peak_cpu_bytes(contenders[f"{name} (full-matrix ref)"]) / 2**20
        print(f"{name:<18}{ours_ms:8.1f}{med[name] / floor:11.3f}{ref_ms:9.1f}{ref_ms / ours_ms:10.2f}"
              f"{peak:9.0f}{ref_peak:12.0f}")
    ada = med["adaface"]
    print(f"\nAdaFace / softmax = {ada / floor:.3f} (target ≤ 1.15); "
          f"full-matrix reference / AdaFace = {med['adaface (full-matrix ref)'] / ada:.2f} (target ≥ 1.5)")

    # ---- the Fig. 3 plane for all nine methods, NumPy, 300×300
    contexts = {"adaface": {"norm": 30.0, "mean": 20.0, "std": 10.0}, "magface": {"norm": 60.0}}
    margins = [build_margin(n) for n in list_margins()]

    def all_planes():
        for margin in margins:
            feature_plane(margin, resolution=300, **contexts.get(margin.name, {}))

    all_planes()
    samples = []
    for _ in range(7 if not args.quick else 3):
        start = time.perf_counter()
        all_planes()
        samples.append(time.perf_counter() - start)
    print(f"\nFig. 3 plane, 9 methods on 300×300 (NumPy): median {statistics.median(samples) * 1e3:.1f} ms "
          f"(target ≤ 50 ms), min {min(samples) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
