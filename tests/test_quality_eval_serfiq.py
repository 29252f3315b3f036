"""SER-FIQ: the formula against loops, the trunk-once passes against whole-network passes, and the
promises of :func:`serfiq` (seeded, finite, independent of batching)."""

from __future__ import annotations

import math
from copy import deepcopy as copy_module

import numpy as np
import pytest
import torch
from torch import nn

from adaface_lab.backbones import build_backbone, preprocess
from adaface_lab.quality_eval import dropout_masks, serfiq, serfiq_from_embeddings, stochastic_embeddings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def loop_serfiq(emb: np.ndarray) -> float:
    """The paper's formula for one image's T embeddings (T, E), written out."""
    x = [v / np.linalg.norm(v) for v in emb]
    t = len(x)
    total = sum(np.linalg.norm(x[i] - x[j]) for i in range(t) for j in range(i + 1, t))
    return 2.0 / (1.0 + math.exp((2.0 / t**2) * total))  # 2·σ(−a) = 2 / (1 + e^a)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    m = build_backbone("ir_tiny", input_size=32)
    with torch.no_grad():  # running statistics far from (0, 1), so that train-mode BatchNorm would show
        for bn in m.modules():
            if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (10, 3, 40, 40), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


# --------------------------------------------------------------------------- the formula


def test_formula_matches_loops_on_constructed_embeddings():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=(4, 1, 16))
    emb = centre + rng.normal(size=(4, 7, 16)) * np.array([0.0, 0.1, 0.5, 3.0])[:, None, None]
    emb *= rng.uniform(0.5, 5.0, size=(4, 7, 1))  # lengths must not matter: rows are normalised
    ours = serfiq_from_embeddings(torch.from_numpy(emb)).numpy()
    expected = [loop_serfiq(e) for e in emb]
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-8)  # atol: identical passes (docstring)
    assert ours[0] == pytest.approx(1.0)  # all passes agree
    assert np.all(np.diff(ours) < 0)  # more scatter, lower quality


def test_formula_rejects_a_single_pass():
    with pytest.raises(ValueError, match="T >= 2"):
        serfiq_from_embeddings(torch.zeros(3, 1, 8))


# --------------------------------------------------------------------------- the passes


class FixedMask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.reshape(x.shape[1:])


def test_trunk_once_equals_whole_network_with_each_mask(model, images):
    """Pass j equals the full forward of the network whose Dropout is mask j, BatchNorm in eval mode."""
    x = preprocess(images, channel_order="rgb", size=32)
    emb = stochastic_embeddings(model, x, passes=5, seed=3)
    numel = model.output_layer[0].num_features * 2 * 2  # 128 channels × 2 × 2 at 32 px
    masks = dropout_masks(5, numel, model.output_layer[1].p, 3)
    for j in range(5):
        copy = copy_module(model)
        copy.output_layer[1] = FixedMask(masks[j])
        with torch.no_grad():
            expected, _ = copy.eval()(x)
        torch.testing.assert_close(emb[:, j], expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_stays_in_eval_and_the_mode_is_restored(model, images):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        emb = stochastic_embeddings(model, preprocess(images, channel_order="rgb", size=32), passes=4)
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert emb.shape == (10, 4, 512)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(10, 4))


def test_masks_drop_about_p_and_rescale():
    m = dropout_masks(200, 500, 0.4, seed=0)
    assert torch.unique(m).tolist() == [0.0, pytest.approx(1 / 0.6)]
    assert (m == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)


# --------------------------------------------------------------------------- serfiq()


def test_serfiq_is_seeded_finite_and_in_range(model, images):
    a = serfiq(model, images, "rgb", passes=20, seed=5, progress=False)
    b = serfiq(model, images, "rgb", passes=20, seed=5, progress=False)
    c = serfiq(model, images, "rgb", passes=20, seed=6, progress=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float64 and a.shape == (10,)
    assert np.all(np.isfinite(a)) and np.all((a > 0) & (a <= 1))


def test_serfiq_does_not_depend_on_batching_or_neighbours(model, images):
    whole = serfiq(model, images, "rgb", passes=20, batch_size=10, progress=False)
    pieces = serfiq(model, images, "rgb", passes=20, batch_size=3, progress=False)
    reversed_ = serfiq(model, images.flip(0), "rgb", passes=20, batch_size=4, progress=False)[::-1]
    alone = serfiq(model, images[7:8], "rgb", passes=20, progress=False)
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(reversed_, whole, rtol=0, atol=1e-6)
    assert alone[0] == pytest.approx(whole[7], abs=1e-6)


def test_serfiq_needs_a_dropout_layer(images):
    no_dropout = build_backbone("ir_tiny", input_size=32, dropout=0.0)
    with pytest.raises(ValueError, match="needs a dropout p in \\(0, 1\\), got 0.0"):
        serfiq(no_dropout, images, "rgb", progress=False)
    assert np.isfinite(serfiq(no_dropout, images, "rgb", passes=4, p=0.3, progress=False)).all()
    with pytest.raises(ValueError, match="IResNet-like backbone"):
        serfiq(nn.Linear(3, 3), images, "rgb", progress=False)
    with pytest.raises(ValueError, match="at least 2 passes"):
        serfiq(build_backbone("ir_tiny", input_size=32), images, "rgb", passes=1, progress=False)
    with pytest.raises(ValueError, match="\\(N, 3, H, W\\) tensor"):
        serfiq(build_backbone("ir_tiny", input_size=32), images[0], "rgb", progress=False)
