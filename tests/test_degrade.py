"""adaface_lab.degrade: each degradation is off at its neutral value and follows its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


def test_degradations_are_off_at_their_neutral_values_and_follow_their_definitions() -> None:
    from adaface_lab.degrade import Degradation, add_noise, degrade, down_up, jpeg_round_trip, sweep

    img = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(degrade(img), img) and Degradation().is_identity
    # noise: the added pattern is σ times one fixed standard-normal draw (rounded, clipped)
    noisy = add_noise(img, 4.0, seed=5).numpy().astype(float)
    z = np.random.default_rng(5).standard_normal(img.shape)
    np.testing.assert_array_equal(noisy, np.clip(np.rint(img.numpy() + 4.0 * z), 0, 255))
    # down-up keeps the shape; at scale 0.5 the image equals a Pillow bicubic round trip made here
    small = down_up(img[0], 0.5)
    pil = Image.fromarray(img[0].permute(1, 2, 0).numpy()).resize((24, 20), Image.BICUBIC).resize((48, 40), Image.BICUBIC)
    assert small.shape == (3, 40, 48)
    np.testing.assert_array_equal(small.permute(1, 2, 0).numpy(), np.asarray(pil))
    # JPEG: stronger compression drifts further from the original
    err = [float((jpeg_round_trip(img, q).float() - img.float()).abs().mean()) for q in (90, 50, 10)]
    assert err[0] < err[1] < err[2]
    ladder = sweep(img[0], "jpeg_quality", [100, 10])
    assert torch.equal(ladder[0], img[0]) and ladder.shape == (2, 3, 40, 48)
    with pytest.raises(ValueError):
        Degradation(scale=0.0)
    with pytest.raises(ValueError):
        degrade(img, blur=1.0)
    with pytest.raises(TypeError):
        degrade(img.float())
