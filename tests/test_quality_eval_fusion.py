"""Template fusion by hand on a tiny case, templates from labels, and set-to-set verification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaface_lab.quality_eval import (
    Templates,
    all_pairs,
    fuse_templates,
    fusion_table,
    make_templates,
    template_verification,
)

# Six unit embeddings in the plane, three templates of two: (img0, img1), (img2, img3) of "A", (img4, img5) of "B".
EMB = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
NORMS = np.array([3.0, 1.0, 2.0, 2.0, 1.0, 1.0])
TEMPLATES = Templates(index=np.array([0, 0, 1, 1, 2, 2]), labels=np.array(["A", "A", "B"]))
R2, R5, R10 = math.sqrt(2), math.sqrt(5), math.sqrt(10)


def test_mean_fusion_by_hand():
    expected = [[1 / R2, 1 / R2], [2 / R5, 1 / R5], [-1 / R2, 1 / R2]]  # (1,1), (1.6,0.8), (-1,1) normalised
    np.testing.assert_allclose(fuse_templates(EMB, TEMPLATES), expected, rtol=1e-12)


def test_norm_fusion_is_the_sum_of_unnormalised_features_by_hand():
    expected = [[3 / R10, 1 / R10], [2 / R5, 1 / R5], [-1 / R2, 1 / R2]]  # (3,1), (3.2,1.6), (-1,1) normalised
    np.testing.assert_allclose(fuse_templates(EMB, TEMPLATES, NORMS), expected, rtol=1e-12)
    raw = EMB * NORMS[:, None]  # the official evaluation sums these
    sums = np.stack([raw[0] + raw[1], raw[2] + raw[3], raw[4] + raw[5]])
    np.testing.assert_allclose(fuse_templates(EMB, TEMPLATES, NORMS), sums / np.linalg.norm(sums, axis=1)[:, None])


def test_quality_weighted_fusion_by_hand():
    q = np.array([1.0, 0.0, 0.5, 0.5, 1.0, 1.0])  # img1 counts for nothing
    expected = [[1.0, 0.0], [2 / R5, 1 / R5], [-1 / R2, 1 / R2]]
    np.testing.assert_allclose(fuse_templates(EMB, TEMPLATES, q), expected, rtol=1e-12, atol=1e-15)
    # rows need not be unit length: they are normalised before weighting
    np.testing.assert_allclose(fuse_templates(EMB * 7.0, TEMPLATES, q), expected, rtol=1e-12, atol=1e-15)


def test_template_scores_by_hand():
    r = template_verification(fuse_templates(EMB, TEMPLATES), TEMPLATES.labels)
    assert r["pairs"].tolist() == [[0, 1], [0, 2], [1, 2]]
    np.testing.assert_allclose(r["scores"], [3 / R10, 0.0, -1 / R10], atol=1e-12)
    assert r["issame"].tolist() == [True, False, False]
    assert r["n_genuine"] == 1 and r["n_impostor"] == 2 and r["auc"] == 1.0


def test_all_pairs_of_single_images_by_hand():
    scores, issame, pairs = all_pairs(EMB[:4] * 3.0, ["A", "A", "B", "A"])  # rows normalised first
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    np.testing.assert_allclose(scores, [0.0, 0.6, 1.0, 0.8, 0.0, 0.6], atol=1e-12)
    assert issame.tolist() == [True, False, True, False, True, False]
    with pytest.raises(ValueError, match="one label per row"):
        all_pairs(EMB, ["A"])


def test_make_templates_groups_k_images_of_one_identity():
    labels = np.repeat([5, 1, 9, 3], [7, 4, 2, 1])  # 7 // 3 + 4 // 3 + 0 + 0 = 3 templates
    t = make_templates(labels, 3, seed=0)
    assert len(t) == 3 and sorted(t.labels.tolist()) == [1, 5, 5]
    for j in range(3):
        members = np.flatnonzero(t.index == j)
        assert len(members) == 3 and set(labels[members]) == {t.labels[j]}
    assert (t.index == -1).sum() == 1 + 1 + 2 + 1
    np.testing.assert_array_equal(make_templates(labels, 3, seed=0).index, t.index)
    assert any(not np.array_equal(make_templates(labels, 3, seed=s).index, t.index) for s in range(1, 5))


def synthetic_embeddings(seed=0, ids=40, per_id=16, dim=32):
    """Half the images are bad: mostly noise, and a low norm. The norm tracks quality."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(ids), per_id)
    bad = rng.random(len(labels)) < 0.5
    noise = rng.normal(size=(len(labels), dim)) / math.sqrt(dim)
    emb = centres[labels] + np.where(bad, 5.0, 1.2)[:, None] * noise
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    norms = np.where(bad, 5.0, 20.0) * rng.uniform(0.9, 1.1, len(labels))
    return emb, norms, labels, bad


def test_norm_weighting_beats_the_plain_mean_when_the_norm_tracks_quality():
    emb, norms, labels, bad = synthetic_embeddings()
    table = fusion_table(emb, norms, labels, k=4, qualities={"oracle": (~bad).astype(float) + 0.01},
                         draws=4, far_targets=(0.01,)).set_index("mode")
    assert list(table.index) == ["mean", "norm", "quality:oracle"]
    tar = table["tar@far=0.01"]
    spread = table["tar@far=0.01_std"]
    assert tar["norm"] - tar["mean"] > 2 * max(spread["norm"], spread["mean"])
    assert tar["quality:oracle"] - tar["mean"] > 2 * max(spread["quality:oracle"], spread["mean"])
    assert (table["n_templates"] == 40 * 4).all()  # 16 images per identity, k = 4: four templates each
    assert (table["n_genuine"] == 40 * 6).all()  # 4 templates: 6 genuine pairs per identity
    assert (table["draws"] == 4).all() and (table["k"] == 4).all()


def test_fusion_bad_input():
    with pytest.raises(ValueError, match="finite and non-negative"):
        fuse_templates(EMB, TEMPLATES, -NORMS)
    with pytest.raises(ValueError, match="zero total weight"):
        fuse_templates(EMB, TEMPLATES, np.array([0.0, 0.0, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="N = 6 images"):
        fuse_templates(EMB[:5], TEMPLATES)
    with pytest.raises(ValueError, match="k must be >= 1"):
        make_templates([0, 0, 1], 0)
    emb, norms, labels, _ = synthetic_embeddings(ids=5, per_id=3)
    with pytest.raises(ValueError, match="genuine and impostor template pairs, got 0 genuine"):
        fusion_table(emb, norms, labels, k=2, draws=1)  # 3 images per identity: one template each
