"""BRISQUE throughput: the batched torch backend against the pybrisque backend, side by side.

Scores 112×112 crops of scikit-image's sample photos (natural and degraded) with
``adaface_lab.quality.brisque`` (cache off): pybrisque (one image at a time, libsvm), then the torch
backend in both modes on the CPU with ``--threads`` threads (default 2, the lab's CPU budget; the
torch backend spreads chunks of images over that many workers) and, for reference, with 1 thread,
batched, and on a GPU when one is present. Prints images/s and the torch/pybrisque ratio (target >= 5x),
plus how closely the two agree on the same images.

    python bench/bench_quality.py [--n 480] [--repeats 3] [--threads 2]

Timings are wall-clock (best of ``--repeats``) and sensitive to other load on the machine; the CPU
time of the process is printed beside them, and the ratio of CPU time per image (per-core
efficiency), which other load disturbs much less.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from adaface_lab.quality import brisque
from adaface_lab.quality.samples import degraded_set, natural_crops


def _images(n: int) -> np.ndarray:
    """n uint8 (112, 112, 3) crops: natural ones and their degraded versions, in turn."""
    crops = natural_crops(112, per_image=4, seed=0)
    pool = np.concatenate(list(degraded_set(crops).values()))  # 420 images
    reps = -(-n // len(pool))
    return np.concatenate([pool] * reps)[:n]


def _best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run)."""
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=480, help="images for the torch backend (default 480)")
    p.add_argument("--n-pybrisque", type=int, default=240, help="images for pybrisque (default 240)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op CPU threads (default 2)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    imgs = _images(max(args.n, args.n_pybrisque))
    x_cpu = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # (N, 3, 112, 112) uint8
    sub = imgs[: args.n_pybrisque]
    print(f"BRISQUE on 112x112 RGB crops; torch {torch.__version__}, {args.threads} CPU thread(s)")

    # warm-up: model files, gamma tables, pybrisque import and libsvm model load
    brisque(sub[:4], backend="pybrisque", cache=False)
    brisque(x_cpu[:8], cache=False)
    brisque(x_cpu[:8], mode="pybrisque", cache=False)

    rows = []
    wall, cpu = _best_of(lambda: brisque(sub, backend="pybrisque", cache=False), args.repeats)
    ref_rate = len(sub) / wall
    rows.append(("pybrisque backend (per image)", len(sub), ref_rate, cpu / len(sub) * 1e3))
    x_run = x_cpu[: args.n]
    for mode in ("matlab", "pybrisque"):
        wall, cpu = _best_of(lambda m=mode: brisque(x_run, mode=m, cache=False), args.repeats)
        rows.append(
            (f"torch backend, cpu, mode={mode}", len(x_run), len(x_run) / wall, cpu / len(x_run) * 1e3)
        )
    torch.set_num_threads(1)  # for reference: the same work on one core
    wall, cpu = _best_of(lambda: brisque(x_run, cache=False), args.repeats)
    rows.append(
        ("torch backend, cpu 1 thread, mode=matlab", len(x_run), len(x_run) / wall, cpu / len(x_run) * 1e3)
    )
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        x_gpu = torch.cat([x_cpu] * max(1, 4096 // len(x_cpu))).to("cuda")
        name = torch.cuda.get_device_name()
        for mode in ("matlab", "pybrisque"):
            brisque(x_gpu[:64], mode=mode, cache=False)  # warm-up on the device

            def run(m: str = mode) -> None:
                brisque(x_gpu, mode=m, cache=False, batch_size=len(x_gpu))
                torch.cuda.synchronize()

            wall, cpu = _best_of(run, args.repeats)
            rows.append(
                (f"torch backend, {name}, mode={mode}", len(x_gpu), len(x_gpu) / wall, cpu / len(x_gpu) * 1e3)
            )
    else:
        print("(no GPU here: GPU rows skipped)")

    print(f"\n{'backend':<52}{'images':>8}{'images/s':>12}{'CPU ms/img':>12}{'vs pybrisque':>14}")
    for name, n, rate, cpu_ms in rows:
        print(f"{name:<52}{n:>8}{rate:>12.1f}{cpu_ms:>12.3f}{rate / ref_rate:>13.1f}x")
    print()
    for mode in ("matlab", "pybrisque"):
        rate = next(r[2] for r in rows if r[0] == f"torch backend, cpu, mode={mode}")
        ratio = rate / ref_rate
        label = f"torch (CPU, {args.threads} threads, mode={mode}) / pybrisque"
        print(f"ratio {label}: {ratio:.1f}x (target >= 5x)")
    cpu_ref = rows[0][3]
    cpu_1 = next(r[3] for r in rows if r[0].startswith("torch backend, cpu 1 thread"))
    print(
        f"CPU time per image, pybrisque / torch (1 thread, matlab): {cpu_ref / cpu_1:.1f}x "
        "(per-core efficiency; steadier than wall-clock ratios when other work shares the cores)"
    )

    ref = brisque(sub, backend="pybrisque", cache=False)
    ours = brisque(sub, mode="pybrisque", cache=False)
    matlab = brisque(sub, cache=False)
    ok = np.isfinite(ref) & np.isfinite(ours) & np.isfinite(matlab)
    delta = np.abs(ref - ours)[ok]
    rho_same = stats.spearmanr(ref[ok], ours[ok])[0]
    rho_matlab = stats.spearmanr(ref[ok], matlab[ok])[0]
    print(
        f"agreement on these {len(sub)} images, torch mode=pybrisque vs pybrisque: Spearman {rho_same:.6f}, "
        f"|Δ| <= 0.5 on {np.mean(delta <= 0.5):.1%}, max |Δ| {delta.max():.2e}; "
        f"mode=matlab vs pybrisque: Spearman {rho_matlab:.3f}"
    )


if __name__ == "__main__":
    main()
