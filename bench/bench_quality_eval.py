"""Quality evaluation: the EDC at 10^5 pairs and SER-FIQ images/s, each beside a reference formulation.

Prints, measured side by side in one run:
- ``edc`` (one sort, counts read at every fraction) on 10^5 generated pairs × 50 discard fractions,
  against a NumPy loop that sorts again for every fraction and a plain Python loop over the pairs
  (the brute force of the tests), with the largest FNMR difference between them;
- ``random_edc`` with 200 draws on the same pairs;
- ``serfiq`` (the trunk once, the dropout + head T = 100 times) against the official SER-FIQ way
  (each image replicated T times through the whole network with its dropout active), in images/s
  for ``ir_tiny`` (64 px) and ``ir_18`` (112 px) on the CPU, and on a GPU when one is present.

    python bench/bench_quality_eval.py [--quick] [--threads 2]

Wall-clock times are best of a few repeats and move with other load on a shared machine; the ratios
measured in the same run are steadier.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

import numpy as np
import torch

from adaface_lab.backbones import build_backbone, preprocess
from adaface_lab.quality_eval import edc, random_edc, serfiq, serfiq_from_embeddings


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` calls."""
    return min(timeit.repeat(fn, repeat=repeats, number=1))


# --------------------------------------------------------------------------- EDC


def _pairs(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    qa, qb = rng.random(n), rng.random(n)
    s = np.where(y, 0.3 + 0.4 * np.minimum(qa, qb), 0.1) + rng.normal(0, 0.12, n)
    return s, y, qa, qb


def _edc_resort(s: np.ndarray, y: np.ndarray, q: np.ndarray, t: float, discard: np.ndarray) -> np.ndarray:
    """Per fraction: sort again, drop the lowest m, count (distinct qualities: no ties to share)."""
    out = []
    for d in discard:
        kept = np.argsort(q, kind="stable")[int(np.floor(d * len(q) + 1e-6)):]
        g = y[kept]
        out.append(np.mean(s[kept][g] < t))
    return np.asarray(out)


def _edc_python(s: list[float], y: list[bool], q: list[float], t: float, discard: np.ndarray) -> np.ndarray:
    order = sorted(range(len(q)), key=q.__getitem__)
    out = []
    for d in discard:
        genuine = misses = 0
        for i in order[int(np.floor(d * len(q) + 1e-6)):]:
            if y[i]:
                genuine += 1
                misses += s[i] < t
        out.append(misses / genuine)
    return np.asarray(out)


def bench_edc(n: int, fractions: int, repeats: int) -> None:
    s, y, qa, qb = _pairs(n)
    discard = np.linspace(0.0, 0.5, fractions)
    table = edc(s, y, qa, qb, discard=discard)
    t = float(table["threshold"].iloc[0])
    q = np.minimum(qa, qb)
    t_ours = _best_of(lambda: edc(s, y, qa, qb, discard=discard), repeats)
    t_resort = _best_of(lambda: _edc_resort(s, y, q, t, discard), 1)
    lists = (s.tolist(), y.tolist(), q.tolist())
    t0 = time.perf_counter()
    brute = _edc_python(*lists, t, discard)
    t_python = time.perf_counter() - t0
    diff = max(np.abs(_edc_resort(s, y, q, t, discard) - table["fnmr"]).max(), np.abs(brute - table["fnmr"]).max())
    t_random = _best_of(lambda: random_edc(s, y, discard=discard, draws=200), 1)
    print(f"EDC, {n:,} pairs x {fractions} discard fractions (FMR 0.01)")
    print(f"  edc (one sort):                  {t_ours * 1e3:9.1f} ms")
    print(f"  NumPy, sort per fraction:        {t_resort * 1e3:9.1f} ms   ({t_resort / t_ours:.0f}x slower)")
    print(f"  Python loop over pairs:          {t_python * 1e3:9.1f} ms   ({t_python / t_ours:.0f}x slower)")
    print(f"  largest FNMR difference: {diff:.1e}")
    print(f"  random_edc, 200 draws:           {t_random * 1e3:9.1f} ms")


# --------------------------------------------------------------------------- SER-FIQ


@torch.no_grad()
def _serfiq_replicated(model: torch.nn.Module, images: torch.Tensor, passes: int, seed: int) -> np.ndarray:
    """The official way: each image T times through the whole network, only the dropout in training mode."""
    torch.manual_seed(seed)
    model.eval()
    model.output_layer[1].train()
    try:
        x = preprocess(images, channel_order="rgb", size=model.input_size).to(next(model.parameters()).device)
        out = []
        for img in x:  # one image at a time: (T, 3, S, S)
            emb, _ = model(img[None].expand(passes, -1, -1, -1))
            out.append(serfiq_from_embeddings(emb[None]).cpu())
        return torch.cat(out).numpy()
    finally:
        model.eval()


def bench_serfiq(name: str, n_ours: int, n_rep: int, device: str, repeats: int, passes: int = 100) -> None:
    torch.manual_seed(0)
    model = build_backbone(name).to(device).eval()
    size = model.input_size
    images = torch.randint(0, 256, (n_ours, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def ours() -> None:
        serfiq(model, images, "rgb", passes=passes, batch_size=min(64, n_ours), device=device, progress=False)
        sync()

    def replicated() -> None:
        _serfiq_replicated(model, images[:n_rep], passes, 0)
        sync()

    ours()  # warm-up
    t_ours = _best_of(ours, repeats) / n_ours
    t_rep = _best_of(replicated, 1) / n_rep
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"  {name:<8} {size:>4} px  {where:<28}{1 / t_ours:>10.1f}{1 / t_rep:>14.2f}{t_rep / t_ours:>9.0f}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op CPU threads (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3

    bench_edc(10_000 if args.quick else 100_000, 50, repeats)

    print(f"\nSER-FIQ, T = 100 passes, images/s (replicated: each image T times through the whole network)")
    print(f"  {'model':<8} {'input':>7}  {'device':<28}{'trunk once':>10}{'replicated':>14}{'ratio':>10}")
    bench_serfiq("ir_tiny", 16 if args.quick else 64, 2 if args.quick else 8, "cpu", repeats)
    bench_serfiq("ir_18", 4 if args.quick else 16, 1 if args.quick else 2, "cpu", repeats)
    if torch.cuda.is_available():
        bench_serfiq("ir_tiny", 1024, 64, "cuda", repeats)
        bench_serfiq("ir_18", 512, 16, "cuda", repeats)
    else:
        print("  (no GPU here: GPU rows skipped)")


if __name__ == "__main__":
    main()
