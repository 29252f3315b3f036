"""EDC, fusion and check-up figures carry exactly the numbers of the tables they are built from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaface_lab.plots import channel_order_figure, degradation_sweep_figure, edc_figure, fusion_figure, trend_figure
from adaface_lab.quality_eval import (
    ChannelOrderCheck,
    edc,
    edc_pauc,
    fusion_table,
    random_edc,
    sweep_bands,
    trend_summary,
)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.5
    q = rng.random((2000, 2))
    s = np.where(y, 0.3 + 0.4 * q.min(axis=1), 0.1) + rng.normal(0, 0.1, 2000)
    return s, y, q


def test_edc_figure_draws_each_measure_and_the_random_band(pairs):
    s, y, q = pairs
    tables = {"good": edc(s, y, q[:, 0], q[:, 1]), "reversed": edc(s, y, -q[:, 0], -q[:, 1])}
    base = random_edc(s, y, draws=20)
    fig = edc_figure(tables, baseline=base, limit=0.2)
    band, mean, good, rev = fig.data
    assert band.fill == "toself"
    np.testing.assert_allclose(band.y, np.r_[base.table["fnmr_high"], base.table["fnmr_low"][::-1]])
    np.testing.assert_allclose(mean.y, base.table["fnmr"])
    for trace, (name, table) in zip((good, rev), tables.items()):
        np.testing.assert_array_equal(trace.x, table["discard"])
        np.testing.assert_array_equal(trace.y, table["fnmr"])
        assert trace.name == f"{name} (pAUC {edc_pauc(table, 0.2).relative:.2f}× random)"
    assert fig.layout.shapes[0].x0 == 0.2  # where the pAUC stops
    assert "FMR = 0.01" in fig.layout.title.text
    assert len(edc_figure(tables["good"], limit=None).data) == 1


def test_fusion_figure_bars_with_spread():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(20), 8)
    emb = rng.normal(size=(20, 16))[labels] + rng.normal(size=(160, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = fusion_table(emb, rng.uniform(5, 20, 160), labels, k=2, draws=3, far_targets=(0.1, 0.01))
    fig = fusion_figure(table)
    assert len(fig.data) == 2
    for trace, far in zip(fig.data, ("0.1", "0.01")):
        assert list(trace.x) == ["mean", "norm"]
        np.testing.assert_allclose(trace.y, table[f"tar@far={far}"])
        np.testing.assert_allclose(trace.error_y.array, table[f"tar@far={far}_std"])
    with pytest.raises(ValueError, match="no tar@far"):
        fusion_figure(table[["mode", "auc"]])


# --------------------------------------------------------------------------- the check-up's figures


def _sweep(n: int = 20, seed: int = 2) -> pd.DataFrame:
    """A check-up sweep of ``n`` images: the norm falls with blur, BRISQUE's quality with JPEG."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, strengths in (("blur_sigma", (0.0, 2.0, 4.0)), ("jpeg_quality", (100, 30, 5))):
        for i in range(n):
            for step, v in enumerate(strengths):
                rows.append({"image": i, "degradation": kind, "step": step, "strength": float(v),
                             "norm": 20 - (step if kind == "blur_sigma" else 0) + rng.normal(0, 0.3),
                             "brisque": 0.6 - 0.1 * step * (kind == "jpeg_quality") + rng.normal(0, 0.02)})
    return pd.DataFrame(rows)


def test_sweep_and_trend_figures_carry_the_tables_numbers():
    sweep = _sweep()
    bands = {m: sweep_bands(sweep, m) for m in ("norm", "brisque")}
    fig = degradation_sweep_figure(bands)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 4  # 2 measures × 2 degradations
    blur = bands["norm"][bands["norm"]["degradation"] == "blur_sigma"]
    np.testing.assert_allclose(lines[0].y, blur["median"])
    np.testing.assert_allclose(lines[0].customdata, [0.0, 2.0, 4.0])
    trends = trend_summary(sweep, n_boot=200)
    fig = trend_figure(trends)
    assert [t.name for t in fig.data] == ["‖z‖", "1 − BRISQUE/100"]
    norm = trends[trends["measure"] == "norm"]
    np.testing.assert_allclose(fig.data[0].x, norm["rho"])
    np.testing.assert_allclose(np.asarray(fig.data[0].x) + fig.data[0].error_x.array, norm["high"])
    np.testing.assert_allclose(np.asarray(fig.data[0].x) - fig.data[0].error_x.arrayminus, norm["low"])


def test_channel_order_figure_splits_genuine_and_impostor_per_order():
    rng = np.random.default_rng(3)
    same = rng.random(300) < 0.2
    scores = {"bgr": rng.normal(0, 1, 300) + same, "rgb": rng.normal(0, 1, 300)}
    check = ChannelOrderCheck(used="bgr", norms={"bgr": np.ones(25), "rgb": np.ones(25)}, auc={"bgr": 0.7, "rgb": 0.5},
                              auc_diff=(0.2, 0.1, 0.3), better="bgr", scores=scores, issame=same)
    fig = channel_order_figure(check)
    assert [(t.name, t.xaxis) for t in fig.data] == [("genuine", "x"), ("impostor", "x"), ("genuine", "x2"),
                                                    ("impostor", "x2")]
    np.testing.assert_array_equal(fig.data[0].x, scores["bgr"][same])
    np.testing.assert_array_equal(fig.data[3].x, scores["rgb"][~same])
    assert "AUC 0.700" in fig.layout.annotations[0].text and "in use" in fig.layout.annotations[0].text
    flat = channel_order_figure(ChannelOrderCheck(used="rgb", norms={"bgr": np.arange(5.0), "rgb": np.ones(5)}))
    np.testing.assert_array_equal(flat.data[0].x, np.arange(5.0))
