"""EDC and fusion figures carry exactly the numbers of the tables they are built from."""

from __future__ import annotations

import numpy as np
import pytest

from adaface_lab.plots import edc_figure, fusion_figure
from adaface_lab.quality_eval import edc, edc_pauc, fusion_table, random_edc


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
