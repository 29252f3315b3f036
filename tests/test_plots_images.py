"""The image strip: one image per sample, each with its caption (notebook 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaface_lab import plots


def test_image_strip_figure_has_one_image_per_sample_and_its_caption() -> None:
    images = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    images[1] = 255
    fig = plots.image_strip_figure(images, ["a", "b", "c"], title="strip")
    assert [t.type for t in fig.data] == ["image"] * 3
    assert int(np.asarray(fig.data[1].z).min()) == 255
    assert [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="captions"):
        plots.image_strip_figure(images, ["a"])
