"""Verification metrics against hand-computed cases and independent computations; flip fusion on a toy backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from adaface_lab.data.verification import VerificationPairs, write_bin
from adaface_lab.evaluate import (
    best_threshold,
    compare_by_bin,
    embed,
    evaluate_pairs,
    pair_quality_bins,
    roc_curve,
    tar_at_far,
    verification_by_bin,
    verification_metrics,
)

# --------------------------------------------------------------------------- thresholds and accuracy


def test_perfectly_separable_scores_give_accuracy_one_and_tar_one() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(0.6, 1.0, 1000), rng.uniform(-1.0, 0.4, 1000)
    scores = np.r_[pos, neg]
    issame = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    perm = rng.permutation(2000)
    m = verification_metrics(scores[perm], issame[perm], folds=10)
    assert m["accuracy"] == 1.0 and m["accuracy_std"] == 0.0
    assert m["auc"] == 1.0
    assert m["tar_at_far"][1e-2] == 1.0 and m["tar_at_far"][1e-3] == 1.0
    assert np.all((m["fold_threshold"] > neg.max()) & (m["fold_threshold"] < pos.min()))


def test_tiny_case_best_threshold_by_hand() -> None:
    # scores 0.9 0.8 0.7 0.6 0.5 0.4 0.3, genuine T T F T T F F; accept when score > threshold.
    #   above 0.45 (between 0.5 and 0.4): wrong only on the impostor 0.7            -> 6/7
    #   above 0.75: wrong on the genuine 0.6 and 0.5                                   -> 5/7
    #   above 0.65: wrong on the impostor 0.7 and the genuine 0.5                      -> 5/7
    #   above 0.35: wrong on the impostors 0.7 and 0.4                                 -> 5/7
    #   every other threshold is worse, so 0.45 is the unique best.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    issame = np.array([1, 1, 0, 1, 1, 0, 0], dtype=bool)
    thr, acc = best_threshold(scores, issame)
    assert thr == pytest.approx(0.45)
    assert acc == pytest.approx(6 / 7)


def test_threshold_is_chosen_on_the_training_folds_only() -> None:
    # Fold 0: genuine 0.9, 0.8; impostor 0.3, 0.2  -> on its own best threshold 0.55 (midpoint of 0.3 and 0.8).
    # Fold 1: genuine 0.5, 0.45; impostor 0.1, 0.05 -> on its own best threshold 0.275 (midpoint of 0.1 and 0.45).
    # LFW protocol: fold 0 is tested with fold 1's threshold 0.275 -> the impostor 0.3 is accepted: 3/4.
    #               fold 1 is tested with fold 0's threshold 0.55 -> both genuine rejected: 2/4.
    # Choosing on the test fold itself would give 1.0 on both.
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.45, 0.1, 0.05])
    issame = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    m = verification_metrics(scores, issame, folds=folds)
    np.testing.assert_allclose(m["fold_threshold"], [0.275, 0.55])
    np.testing.assert_allclose(m["fold_accuracy"], [0.75, 0.5])
    assert m["accuracy"] == pytest.approx(0.625)
    assert m["accuracy_std"] == pytest.approx(0.125)
    # the same pairs given as folds=2 (contiguous halves, the .bin convention) give the same answer
    assert verification_metrics(scores, issame, folds=2)["accuracy"] == pytest.approx(0.625)


# --------------------------------------------------------------------------- ROC and TAR@FAR


def test_roc_points_and_auc_match_independent_computations() -> None:
    rng = np.random.default_rng(1)
    pos = np.round(rng.normal(0.5, 0.2, 300), 2)  # rounding makes ties, within and across classes
    neg = np.round(rng.normal(0.1, 0.2, 500), 2)
    scores = np.r_[pos, neg]
    issame = np.r_[np.ones(300, bool), np.zeros(500, bool)]
    fpr, tpr, thr = roc_curve(scores, issame)
    # every ROC point by its definition: share of each class at or above the threshold
    for t, f, p in zip(thr[1:], fpr[1:], tpr[1:]):
        assert f == pytest.approx(np.mean(neg >= t)) and p == pytest.approx(np.mean(pos >= t))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic  # ties count 1/2
    m = verification_metrics(scores, issame)
    assert m["auc"] == pytest.approx(u / (300 * 500), abs=1e-12)


def test_tar_at_far_interpolates_between_roc_points_by_hand() -> None:
    # 150 impostors: FAR can only step by 1/150. Scores (descending):
    #   0.99 genuine -> (fpr 0, tpr 0.1); 0.95 impostor -> (1/150, 0.1); 0.9 two genuine -> (1/150, 0.3);
    #   0.85 one impostor and one genuine (tied) -> (2/150, 0.4); the rest lower.
    # FAR 0.01 = 1.5/150 lies halfway between 1/150 (top of its vertical step: 0.3) and 2/150 (0.4): TAR 0.35.
    pos = np.array([0.99, 0.9, 0.9, 0.85, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1])
    neg = np.r_[0.95, 0.85, np.linspace(-0.9, -0.1, 148)]
    scores = np.r_[pos, neg]
    issame = np.r_[np.ones(10, bool), np.zeros(150, bool)]
    fpr, tpr, _ = roc_curve(scores, issame)
    assert tar_at_far(fpr, tpr, 0.01) == pytest.approx(0.35)
    assert tar_at_far(fpr, tpr, 1 / 150) == pytest.approx(0.3)  # exactly on a point: top of the step
    assert tar_at_far(fpr, tpr, 0.0) == pytest.approx(0.1)
    m = verification_metrics(scores, issame, folds=5)
    assert m["tar_at_far"][1e-2] == pytest.approx(0.35)
    # 1e-3 needs 1,000 impostors; with 150 it is not resolvable: NaN, and a note says why
    assert np.isnan(m["tar_at_far"][1e-3])
    assert any("1000 impostor" in note for note in m["notes"])


def test_bad_inputs_raise_plain_errors() -> None:
    with pytest.raises(ValueError, match="equal length"):
        verification_metrics(np.zeros(4), np.zeros(3, bool))
    with pytest.raises(ValueError, match="folds"):
        verification_metrics(np.zeros(4), np.array([1, 0, 1, 0], bool), folds=10)
    with pytest.raises(ValueError, match="finite"):
        verification_metrics(np.array([0.1, np.nan]), np.array([1, 0], bool), folds=2)
    with pytest.raises(ValueError, match="genuine and impostor"):
        roc_curve(np.array([0.1, 0.2]), np.array([1, 1], bool))


# --------------------------------------------------------------------------- embeddings


class _ToyBackbone(nn.Module):
    """A fixed linear map of the input image: z = W·x, returned as (z/‖z‖, ‖z‖)."""

    input_size = 8
    embedding_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 64, bias=False)
        torch.nn.init.normal_(self.fc.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.fc(x.flatten(1))
        n = z.norm(dim=1, keepdim=True)
        return z / n, n


def test_flip_fusion_equals_norm_weighted_sum_of_views() -> None:
    model = _ToyBackbone()
    model.train()
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8, generator=g)
    emb, norm = embed(model, images, channel_order="bgr", batch_size=3, flip=True, progress=False)

    # by hand: BGR, (x/255 - 0.5)/0.5; the flipped view mirrors the width axis
    x = (images.flip(1).double() / 255.0 - 0.5) / 0.5
    W = model.fc.weight.detach().double()
    z = x.flatten(1) @ W.T
    z_flip = x.flip(-1).flatten(1) @ W.T
    e, n = z / z.norm(dim=1, keepdim=True), z.norm(dim=1, keepdim=True)
    e_f, n_f = z_flip / z_flip.norm(dim=1, keepdim=True), z_flip.norm(dim=1, keepdim=True)
    fused = e * n + e_f * n_f  # the official fuse_features_with_norm
    torch.testing.assert_close(emb.double(), fused / fused.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.double(), fused.norm(dim=1, keepdim=True), atol=1e-4, rtol=1e-5)
    assert model.training, "embed must restore the backbone's mode"

    emb1, norm1 = embed(model, images, channel_order="bgr", flip=False, progress=False)
    torch.testing.assert_close(emb1.double(), e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm1.double(), n, atol=1e-4, rtol=1e-5)


def _toy_pairs_images(n_pairs: int, seed: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """Genuine pairs: an image and a slightly noisy copy; impostor pairs: two unrelated images."""
    g = torch.Generator().manual_seed(seed)
    images, issame = [], []
    for k in range(n_pairs):
        a = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=g)
        same = k % 2 == 0
        b = (a.int() + torch.randint(-3, 4, a.shape, generator=g)).clamp(0, 255).to(torch.uint8) if same else \
            torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=g)
        images += [a, b]
        issame.append(same)
    return images, np.array(issame)


def test_evaluate_pairs_on_loader_pairs_and_on_a_bin_file(tmp_path) -> None:
    images, issame = _toy_pairs_images(40, seed=5)
    pairs = VerificationPairs(sources=list(range(80)), issame=issame, folds=np.arange(40) % 10,
                              name="toy", loader=lambda i: images[i])
    res = evaluate_pairs(_ToyBackbone(), pairs, channel_order="rgb", progress=False)
    assert res["accuracy"] == 1.0 and res["n_pairs"] == 40 and res["n_invalid"] == 0
    assert res["scores"].shape == (40,) and res["norms"].shape == (40, 2)
    assert np.all(res["scores"][issame] > res["scores"][~issame].max())

    path = write_bin(tmp_path / "toy.bin", [im for im in images], issame, jpeg_quality=100)
    res_bin = evaluate_pairs(_ToyBackbone(), str(path), channel_order="rgb", progress=False)
    assert res_bin["name"] == "toy" and res_bin["n_pairs"] == 40
    assert res_bin["auc"] > 0.9  # JPEG changes pixels slightly; genuine pairs stay far more alike


# --------------------------------------------------------------------------- by quality bin


def test_pair_quality_bins_by_hand() -> None:
    q = np.array([[0.9, 0.8], [0.1, 0.9], [0.1, 0.2], [0.5, 0.5]])
    np.testing.assert_array_equal(pair_quality_bins(q, threshold=0.5), ["high", "mixed", "low", "high"])
    np.testing.assert_array_equal(pair_quality_bins(q.ravel(), threshold=0.5), ["high", "mixed", "low", "high"])


def test_verification_by_bin_matches_metrics_on_each_subset() -> None:
    rng = np.random.default_rng(2)
    n = 600
    issame = np.arange(n) % 2 == 0
    bins = np.array(["high", "mixed", "low"])[rng.integers(0, 3, n)]
    noise = {"high": 0.1, "mixed": 0.3, "low": 0.6}
    scores = np.where(issame, 0.5, 0.0) + rng.normal(0, 1, n) * np.vectorize(noise.get)(bins)
    table = verification_by_bin(scores, issame, bins, folds=10)
    assert list(table["bin"]) == ["high", "mixed", "low"]
    for _, row in table.iterrows():
        m = bins == row["bin"]
        # accuracy within the bin, by brute force over every threshold on the bin's folds
        sizes = np.full(10, m.sum() // 10)
        sizes[: m.sum() % 10] += 1  # contiguous folds, the first ones one longer
        folds = np.repeat(np.arange(10), sizes)
        s, y = scores[m], issame[m]
        accs = []
        for k in range(10):
            tr = folds != k
            cands = np.r_[s[tr].min() - 1, (np.sort(s[tr])[1:] + np.sort(s[tr])[:-1]) / 2, s[tr].max() + 1]
            train_acc = [np.mean((s[tr] > c) == y[tr]) for c in cands]
            best = cands[int(np.argmax(train_acc))]
            accs.append(np.mean((s[~tr] > best) == y[~tr]))
        assert row["n_pairs"] == m.sum()
        assert row["accuracy"] == pytest.approx(np.mean(accs))
    acc = table.set_index("bin")["accuracy"]
    assert acc["high"] > acc["mixed"] > acc["low"]  # noisier scores verify worse



def test_compare_by_bin_subtracts_per_bin_and_weighs_against_the_larger_fold_std() -> None:
    import pandas as pd

    table = pd.DataFrame({"bin": ["high", "mixed", "low"], "accuracy": [0.90, 0.80, 0.60],
                          "accuracy_std": [0.02, 0.05, 0.03], "auc": [0.95, 0.85, 0.70]})
    baseline = pd.DataFrame({"bin": ["low", "high"], "accuracy": [0.50, 0.89],
                             "accuracy_std": [0.04, 0.01], "auc": [0.60, 0.97]})
    out = compare_by_bin(table, baseline)
    assert list(out.index) == ["high", "low"]  # bins in both, in the table's order
    assert out.loc["high", "accuracy"] == pytest.approx(0.01) and out.loc["high", "auc"] == pytest.approx(-0.02)
    assert out.loc["high", "fold_std"] == 0.02 and not out.loc["high", "beyond_noise"]
    assert out.loc["low", "accuracy"] == pytest.approx(0.10) and out.loc["low", "fold_std"] == 0.04
    assert out.loc["low", "beyond_noise"]
    with pytest.raises(ValueError, match="accuracy_std"):
        compare_by_bin(table.drop(columns=["accuracy_std"]), baseline)
