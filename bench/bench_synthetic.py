"""Images per second of SyntheticFaces rendering and of the AdaFace augmentations at 112x112.

Run: ``python bench/bench_synthetic.py [--n 600] [--batch 256] [--workers 2] [--quick]``. Every line is measured in
this one run, so the ratios between lines are meaningful even on a busy machine; absolute numbers are
not. CPU time (process_time) is printed beside wall time: on a shared machine wall time includes
waiting for a core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from adaface_lab.data.augment import AugmentConfig, augment, augment_batch
from adaface_lab.data.synthetic import SyntheticFaces


def _measure(fn: Callable[[], int], repeat: int = 3) -> tuple[float, float]:
    """Best of `repeat` runs of fn (which returns the number of images it handled): (img/s wall, img/s CPU)."""
    best_wall, best_cpu = 0.0, 0.0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        w1, c1 = time.perf_counter(), time.process_time()
        best_wall = max(best_wall, n / max(w1 - w0, 1e-9))
        best_cpu = max(best_cpu, n / max(c1 - c0, 1e-9))
    return best_wall, best_cpu


def _render_and_augment(batch: list) -> torch.Tensor:
    """Collate in the worker: stack the rendered images and augment them (seeded by the first sample id)."""
    images = torch.stack([b[0] for b in batch])
    return augment_batch(images, batch[0][2], AugmentConfig())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images per measurement")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the batched augmentation")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the pipeline line")
    ap.add_argument("--quick", action="store_true", help="fewer images per measurement (n=150)")
    args, _ = ap.parse_known_args()  # `python -m bench` passes its extra arguments to every script
    torch.set_num_threads(1)
    n = 150 if args.quick else args.n
    ds = SyntheticFaces(num_identities=200, images_per_identity=30, seed=0)
    pristine = SyntheticFaces(num_identities=200, images_per_identity=30, seed=0, severity=0.0)
    images = torch.stack([ds[i][0] for i in range(args.batch)])
    default, always = AugmentConfig(), AugmentConfig(crop_prob=1.0, low_res_prob=1.0, photometric_prob=1.0)

    def render(d: SyntheticFaces) -> Callable[[], int]:
        return lambda: sum(1 for i in range(n) if d[(i * 7919) % len(d)] is not None)

    def per_sample(cfg: AugmentConfig) -> Callable[[], int]:
        g = torch.Generator().manual_seed(0)
        return lambda: sum(1 for i in range(n) if augment(images[i % len(images)], g, cfg) is not None)

    def batched(cfg: AugmentConfig, x: torch.Tensor) -> Callable[[], int]:
        g = torch.Generator().manual_seed(0)

        def run() -> int:
            augment_batch(x, g, cfg)
            if x.is_cuda:
                torch.cuda.synchronize()
            return len(x)

        return run

    def pipeline() -> int:
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(n)), batch_size=64,
                                             num_workers=args.workers, collate_fn=_render_and_augment)
        return sum(len(b) for b in loader)

    rows = [
        ("SyntheticFaces render, mixed severity (1 core)", _measure(render(ds))),
        ("SyntheticFaces render, pristine (1 core)", _measure(render(pristine))),
        ("augment per sample, p=0.2 (official)", _measure(per_sample(default))),
        ("augment per sample, p=1 (all three ops)", _measure(per_sample(always))),
        (f"augment_batch B={args.batch}, p=0.2, uint8, CPU 1 thread", _measure(batched(default, images))),
        (f"augment_batch B={args.batch}, p=1, uint8, CPU 1 thread", _measure(batched(always, images))),
    ]
    if torch.cuda.is_available():
        gpu = images.cuda()
        batched(default, gpu)()  # warm-up (kernels, resize matrices on the device)
        rows.append((f"augment_batch B={args.batch}, p=0.2, uint8, CUDA", _measure(batched(default, gpu))))
        rows.append((f"augment_batch B={args.batch}, p=1, uint8, CUDA", _measure(batched(always, gpu))))
    wall, _ = _measure(pipeline, 1)  # the work happens in the worker processes: no CPU time to show here
    rows.append((f"DataLoader({args.workers} workers): render + augment_batch p=0.2", (wall, float("nan"))))
    ref = rows[0][1][0]
    print(f"{'what':62s} {'img/s wall':>11s} {'img/s CPU':>10s} {'x render':>9s}")
    for name, (wall, cpu) in rows:
        cpu_text = "-" if cpu != cpu else f"{cpu:.0f}"
        print(f"{name:62s} {wall:11.0f} {cpu_text:>10s} {wall / ref:9.2f}")


if __name__ == "__main__":
    main()
