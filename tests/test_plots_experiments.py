"""The sweep figures show the numbers of the sweep's tables: means, intervals and every seed's value, against
the grid value (categories or a log number line), and the paired differences marked where they clear 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaface_lab.experiments import compare_with_baseline, summarise
from adaface_lab.plots import comparison_figure, sweep_metric_figure


def _runs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [{"head": head, "num-identities": n, "seed": s, "r_norm_qseverity": 0.1 * k + rng.normal(0, 0.02)}
            for k, head in enumerate(("arcface", "adaface")) for n in (100, 300, 3000) for s in range(3)]
    return pd.DataFrame(rows)


def _decode(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_metric_against_a_grid_value_shows_means_intervals_and_seeds() -> None:
    runs = _runs()
    keys = ["head", "num-identities"]
    summary = summarise(runs, keys, ["r_norm_qseverity"])
    fig = sweep_metric_figure(runs, summary, "r_norm_qseverity", x="num-identities", keys=keys)
    assert fig.layout.xaxis.type == "log"  # 100 .. 3000
    names = [t.name for t in fig.data]
    assert names == ["head=arcface (mean, 95 % CI)", "head=arcface (seeds)", "head=adaface (mean, 95 % CI)",
                     "head=adaface (seeds)"]
    for k, head in enumerate(("arcface", "adaface")):
        mean_trace, seed_trace = fig.data[2 * k], fig.data[2 * k + 1]
        rows = summary[summary["head"] == head]
        np.testing.assert_allclose(_decode(mean_trace.y), rows["r_norm_qseverity_mean"])
        np.testing.assert_allclose(_decode(mean_trace.error_y.array),
                                   rows["r_norm_qseverity_ci_high"] - rows["r_norm_qseverity_mean"])
        np.testing.assert_allclose(_decode(mean_trace.error_y.arrayminus),
                                   rows["r_norm_qseverity_mean"] - rows["r_norm_qseverity_ci_low"])
        np.testing.assert_allclose(_decode(seed_trace.y), runs[runs["head"] == head]["r_norm_qseverity"])
        # nudged sideways by a few per cent only: each point stays at its grid value
        np.testing.assert_allclose(_decode(mean_trace.x), [100, 300, 3000], rtol=0.2)
    assert any(shape.y0 == 0 for shape in fig.layout.shapes)  # a correlation gets its zero line


def test_categorical_grid_values_keep_their_order() -> None:
    runs = _runs()
    summary = summarise(runs, ["head", "num-identities"], ["r_norm_qseverity"])
    fig = sweep_metric_figure(runs, summary, "r_norm_qseverity", x="head", keys=["head", "num-identities"])
    assert list(fig.layout.xaxis.ticktext) == ["arcface", "adaface"]
    assert [t.name for t in fig.data][::2] == [f"num-identities={n} (mean, 95 % CI)" for n in (100, 300, 3000)]
    with pytest.raises(ValueError, match="lacks the columns"):
        sweep_metric_figure(runs, summary, "ver_auc", x="head", keys=["head"])


def test_comparison_marks_the_differences_beyond_the_noise() -> None:
    runs = _runs()
    comparison = compare_with_baseline(runs, ["head", "num-identities"], ["r_norm_qseverity"], {"head": "arcface"})
    fig = comparison_figure(comparison, "r_norm_qseverity", keys=["head", "num-identities"])
    trace = fig.data[0]
    assert list(trace.y) == [f"head=adaface, num-identities={n}" for n in (100, 300, 3000)]
    np.testing.assert_allclose(_decode(trace.x), comparison["r_norm_qseverity_diff"])
    beyond = (comparison["r_norm_qseverity_diff_ci_low"] > 0) | (comparison["r_norm_qseverity_diff_ci_high"] < 0)
    assert beyond.all()  # a shift of 0.1 against a spread of 0.02
    assert list(trace.marker.color) == ["#d62728"] * 3
