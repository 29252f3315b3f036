"""Quality measures per image: the norm from the network's own output, BRISQUE at 112 px, the table of all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaface_lab.backbones import build_backbone, preprocess
from adaface_lab.degrade import Degradation, astronaut_face, degrade
from adaface_lab.quality import brisque
from adaface_lab.quality_eval import brisque_quality, image_qualities, norm_quality, serfiq

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    face = astronaut_face(112)  # uint8 (3, 112, 112)
    levels = [Degradation(), Degradation(blur_sigma=1.5), Degradation(noise_sigma=20.0), Degradation(jpeg_quality=15)]
    return torch.stack([degrade(face, d) for d in levels])  # (4, 3, 112, 112)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("ir_tiny", input_size=32).eval()


def test_norm_quality_is_the_networks_norm_of_one_view(model, faces):
    with torch.no_grad():
        _, norm = model(preprocess(faces, channel_order="rgb", size=32))
    np.testing.assert_allclose(norm_quality(model, faces, "rgb", progress=False), norm.reshape(-1).numpy(), rtol=1e-5)


def test_brisque_quality_is_one_minus_brisque_over_100_at_112_px(faces):
    np.testing.assert_allclose(brisque_quality(faces, cache=False), 1.0 - brisque(faces, cache=False) / 100.0)
    small = F.interpolate(faces.float() / 255, size=(56, 56), mode="bilinear", antialias=True)  # (4, 3, 56, 56)
    at_112 = F.interpolate(small, size=(112, 112), mode="bilinear", antialias=True).clamp(0, 1)
    np.testing.assert_allclose(brisque_quality(small, cache=False), 1.0 - brisque(at_112, cache=False) / 100.0)
    assert not np.allclose(brisque_quality(small, cache=False), 1.0 - brisque(small, cache=False) / 100.0)
    with pytest.raises(ValueError, match="\\(N, 3, H, W\\) RGB tensor"):
        brisque_quality(faces[0])


def test_image_qualities_gathers_the_measures(model, faces):
    table = image_qualities(model, faces, "rgb", measures=("norm", "serfiq", "random"), passes=10, seed=2,
                            progress=False)
    assert list(table.columns) == ["norm", "serfiq", "random"] and len(table) == 4
    np.testing.assert_array_equal(table["serfiq"], serfiq(model, faces, "rgb", passes=10, seed=2, progress=False))
    np.testing.assert_array_equal(table["random"], np.random.default_rng(2).random(4))
    assert list(image_qualities(None, faces, measures=("random",)).columns) == ["random"]
    with pytest.raises(ValueError, match="unknown quality measures \\['sharpness'\\]"):
        image_qualities(model, faces, measures=("norm", "sharpness"))
    with pytest.raises(ValueError, match="need a backbone"):
        image_qualities(None, faces, measures=("serfiq",))
