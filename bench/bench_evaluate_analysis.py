"""Benchmark: verification metrics, run analyses and training figures at realistic sizes.

Prints, measured side by side in one run:
- ``verification_metrics`` (exact midpoint thresholds, O(N log N) per fold) against an
  insightface-style grid search (400 thresholds, O(N·T) per fold) on LFW-sized scores
  (6,000 pairs), with the accuracy each finds;
- ``correlation_by_epoch`` (vectorised over epochs) against a loop of ``scipy.stats`` calls;
- the build time of every training figure on the paper's probe set (1,536 samples × 40 epochs).

Run: ``python bench/bench_evaluate_analysis.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from adaface_lab import analysis as A
from adaface_lab.evaluate import verification_by_bin, verification_metrics
from adaface_lab.plots import training as T


def _best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _grid_accuracy(scores: np.ndarray, issame: np.ndarray, folds: int = 10) -> float:
    """insightface-style: thresholds on a fixed grid, best on the training folds, applied to the test fold."""
    grid = np.arange(-1.0, 1.0, 0.005)  # 400 cosine thresholds (their grid: 400 squared distances)
    fold_of = np.repeat(np.arange(folds), len(scores) // folds)
    accs = []
    for k in range(folds):
        tr = fold_of != k
        acc_tr = ((scores[tr][None, :] > grid[:, None]) == issame[tr][None, :]).mean(axis=1)
        t = grid[int(np.argmax(acc_tr))]
        accs.append(np.mean((scores[~tr] > t) == issame[~tr]))
    return float(np.mean(accs))


def _records(n: int = 1536, epochs: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, n)
    frames = []
    for e in range(epochs):
        norm = 20 + 10 * q * (e + 1) / epochs + rng.normal(0, 2, n)
        z = np.clip(0.333 * (norm - norm.mean()) / norm.std(), -1, 1)
        frames.append(pd.DataFrame({
            "sample_id": np.arange(n), "label": np.arange(n) % 100, "epoch": e, "norm": norm,
            "p_y": rng.uniform(0, 1, n), "z_hat": z, "margin_angle": -0.4 * z, "margin_add": 0.4 * z + 0.4,
            "brisque": 100 * (1 - q) + rng.normal(0, 5, n), "severity": 1 - q,
        }))
    return A.with_quality_columns(pd.concat(frames, ignore_index=True))


def main() -> None:
    rng = np.random.default_rng(0)
    issame = np.arange(6000) % 2 == 0
    scores = np.where(issame, 0.45, 0.1) + rng.normal(0, 0.15, 6000)
    t_exact = _best_of(lambda: verification_metrics(scores, issame))
    t_grid = _best_of(lambda: _grid_accuracy(scores, issame))
    acc_exact, acc_grid = verification_metrics(scores, issame)["accuracy"], _grid_accuracy(scores, issame)
    print("verification, 6,000 pairs, 10 folds")
    print(f"  exact midpoints (+ROC, TAR):  {t_exact * 1e3:8.2f} ms   accuracy {acc_exact:.4f}")
    print(f"  grid of 400 (accuracy only): {t_grid * 1e3:8.2f} ms   accuracy {acc_grid:.4f}")
    print(f"  ratio grid / exact: {t_grid / t_exact:.1f}x")

    rec = _records()
    print(f"\nrecords: {len(rec):,} rows (1,536 probes x 40 epochs)")

    def scipy_loop() -> None:
        for _, g in rec.groupby("epoch"):
            g = g.dropna(subset=["quality"])
            stats.pearsonr(g["norm"], g["quality"])
            stats.pearsonr(g["p_y"], g["quality"])

    t_vec = _best_of(lambda: A.correlation_by_epoch(rec))
    t_loop = _best_of(scipy_loop)
    print(f"  correlation_by_epoch: {t_vec * 1e3:.2f} ms; scipy loop over epochs: {t_loop * 1e3:.2f} ms "
          f"(ratio loop / vectorised {t_loop / t_vec:.1f}x)")

    steps = pd.DataFrame({"epoch": np.repeat(np.arange(40), 100), "step": np.arange(4000),
                          "loss": rng.uniform(0, 10, 4000), "acc": rng.uniform(0, 1, 4000),
                          "batch_mean": rng.normal(20, 1, 4000), "batch_std": rng.uniform(2, 5, 4000)})
    ema = A.ema_over_steps(steps)
    epochs = pd.DataFrame({"epoch": np.arange(40), "loss": np.linspace(10, 1, 40), "acc": np.linspace(0, 1, 40)})
    m = verification_metrics(scores, issame)
    table = verification_by_bin(scores, issame, np.array(["high", "mixed", "low"])[rng.integers(0, 3, 6000)])
    builders: dict[str, Callable[[], object]] = {
        "correlation_figure": lambda: T.correlation_figure(A.correlation_by_epoch(rec)),
        "quality_scatter_figure": lambda: T.quality_scatter_figure(rec),
        "trajectory_figure (64)": lambda: T.trajectory_figure(A.trajectories(rec, n=64, seed=0)),
        "norm_ema_figure": lambda: T.norm_ema_figure(ema),
        "z_hat_figure": lambda: T.z_hat_figure(A.z_hat_distribution(rec)),
        "margin_distribution_figure": lambda: T.margin_distribution_figure(A.margin_distribution(rec)),
        "training_curves_figure": lambda: T.training_curves_figure(epochs, ema),
        "roc_figure": lambda: T.roc_figure(m),
        "verification_bins_figure": lambda: T.verification_bins_figure(table),
    }
    print("  figure build time, analysis included (best of 3):")
    for name, fn in builders.items():
        print(f"    {name:<28s} {_best_of(fn, 3) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
