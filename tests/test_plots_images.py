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


def test_field_image_uri_colours_like_plotly_and_refuses_what_it_cannot_draw() -> None:
    """A field as a picture: the colours a browser gives a colour axis with plotly's Viridis stops
    (interpolated here, tests/figure_arrays.py) at the ends and the middle of the range, values
    outside it clamped, NaN transparent, row k of the PNG = z[k]."""
    import base64
    import io

    import plotly.colors as pc
    from PIL import Image

    from adaface_lab.plots.images import field_image_uri

    z = np.array([[0.0, 5.0, 10.0], [-3.0, 30.0, np.nan]], dtype=np.float32)
    uri = field_image_uri(z, 0.0, 10.0)
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))
    from tests.figure_arrays import stop_colours

    table = stop_colours(pc.get_colorscale("Viridis"), levels=255)
    np.testing.assert_array_equal(rgba[0, :, :3], table[[0, 127, 254]])  # 5 of 0…10 is level 127
    np.testing.assert_array_equal(rgba[1, 0, :3], rgba[0, 0, :3])  # below the range: its bottom colour
    np.testing.assert_array_equal(rgba[1, 1, :3], rgba[0, 2, :3])  # above: its top colour
    assert rgba[1, 2, 3] == 0 and (rgba[0, :, 3] == 255).all()  # NaN transparent
    with pytest.raises(ValueError, match="zmax > zmin"):
        field_image_uri(z, 1.0, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        field_image_uri(np.zeros(4), 0.0, 1.0)
