"""The AdaFace augmentations: probabilities, recorded parameters, the zero-canvas crop, OpenCV-faithful
resampling, PIL-faithful colour jitter, and the batched path equal to the per-sample path."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from scipy import stats

from adaface_lab.data.augment import (
    INTERPOLATIONS,
    PHOTO_ORDERS,
    RECORD_FIELDS,
    AugmentConfig,
    apply_params,
    augment,
    augment_batch,
    draw_params,
    make_generator,
    resize_taps,
)

_OPENCV = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
           "bicubic": cv2.INTER_CUBIC, "lanczos4": cv2.INTER_LANCZOS4}
ONLY_CROP = AugmentConfig(crop_prob=1.0, low_res_prob=0.0, photometric_prob=0.0)
ONLY_RESIZE = AugmentConfig(crop_prob=0.0, low_res_prob=1.0, photometric_prob=0.0)
ONLY_PHOTO = AugmentConfig(crop_prob=0.0, low_res_prob=0.0, photometric_prob=1.0)
ALL = AugmentConfig(crop_prob=1.0, low_res_prob=1.0, photometric_prob=1.0)
NONE = AugmentConfig(crop_prob=0.0, low_res_prob=0.0, photometric_prob=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _faces(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Natural-ish test images: smooth colour fields with edges and texture, uint8 (n, 3, 112, 112)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112] / 112.0
    out = []
    for _ in range(n):
        base = rng.uniform(30, 220, 3)[:, None, None] + 40 * np.sin(2 * np.pi * (rng.uniform(1, 4) * xx
                                                                                  + rng.uniform(1, 4) * yy))
        cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        base = base + disc * rng.uniform(-80, 80, 3)[:, None, None] + rng.normal(0, 6, (3, 112, 112))
        out.append(np.clip(base, 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out))


# ----------------------------------------------------------------------------- probabilities and records


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_probability_zero_leaves_images_unchanged(dtype):
    x = _faces(6)
    x = x if dtype == torch.uint8 else x.to(dtype) / 255.0
    y, rec = augment_batch(x, 0, NONE)
    assert y.dtype == dtype and torch.equal(y, x)
    assert not rec["crop_applied"].any() and not rec["resize_applied"].any() and not rec["photo_applied"].any()
    for key in ("crop_ratio", "resize_ratio", "brightness", "contrast", "saturation"):
        assert torch.all(rec[key] == 1.0), key


def test_probability_one_applies_each_op_and_records_it():
    x = _faces(16)
    for cfg, flag in ((ONLY_CROP, "crop_applied"), (ONLY_RESIZE, "resize_applied"), (ONLY_PHOTO, "photo_applied")):
        y, rec = augment_batch(x, 1, cfg)
        assert rec[flag].all()
        others = {"crop_applied", "resize_applied", "photo_applied"} - {flag}
        assert not any(rec[o].any() for o in others)
        changed = (y.int() - x.int()).abs().flatten(1).amax(1) > 0
        assert changed.float().mean() > 0.9, flag


def test_default_probabilities_are_point_two_each():
    rec = draw_params(20000, 112, 112, 3)
    for flag in ("crop_applied", "resize_applied", "photo_applied"):
        p = rec[flag].double().mean().item()
        assert abs(p - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000), (flag, p)
    # independent of each other
    both = (rec["crop_applied"] & rec["resize_applied"]).double().mean().item()
    assert abs(both - 0.04) < 4 * math.sqrt(0.04 * 0.96 / 20000)


def test_records_are_complete_and_per_sample():
    x = _faces(5)
    _, rec = augment_batch(x, 2)
    assert set(rec) == set(RECORD_FIELDS)
    assert all(len(v) == 5 for v in rec.values())
    _, one = augment(x[0], 2)
    assert set(one) == set(RECORD_FIELDS)
    assert all(isinstance(v, (bool, int, float)) for v in one.values())


def test_make_generator_gives_per_sample_streams():
    x = _faces(1)[0]
    a, ra = augment(x, make_generator(0, 3, 17), ALL)
    b, rb = augment(x, make_generator(0, 3, 17), ALL)
    c, rc = augment(x, make_generator(0, 4, 17), ALL)
    assert torch.equal(a, b) and ra == rb
    assert ra != rc


def test_same_seed_same_result_and_other_seed_differs():
    x = _faces(8)
    y1, r1 = augment_batch(x, 5, ALL)
    y2, r2 = augment_batch(x, torch.Generator().manual_seed(5), ALL)
    y3, _ = augment_batch(x, 6, ALL)
    assert torch.equal(y1, y2) and all(torch.equal(r1[k], r2[k]) for k in RECORD_FIELDS)
    assert not torch.equal(y1, y3)


# ----------------------------------------------------------------------------- crop


def test_crop_keeps_the_box_in_place_and_zeroes_the_rest():
    x = _faces(32).clamp_min(1)  # no zeros of its own, so zeros can only come from the canvas
    y, rec = augment_batch(x, 7, ONLY_CROP)
    for i in range(len(x)):
        t, l_, h, w = (int(rec[k][i]) for k in ("crop_top", "crop_left", "crop_height", "crop_width"))
        assert 0 <= t and t + h <= 112 and 0 <= l_ and l_ + w <= 112
        inside = torch.zeros(112, 112, dtype=torch.bool)
        inside[t:t + h, l_:l_ + w] = True
        assert torch.equal(y[i][:, inside], x[i][:, inside])  # pasted back unresized, at its own place
        assert torch.all(y[i][:, ~inside] == 0)
        kept = (y[i] != 0).any(0).double().mean().item()
        assert rec["crop_ratio"][i].item() == pytest.approx(kept)
        assert rec["crop_side_ratio"][i].item() == pytest.approx(min(h, w) / 112)


def _torchvision_crop_params(rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
    """RandomResizedCrop.get_params as torchvision documents it (scale 0.2-1, ratio 3/4-4/3), written
    here independently: returns (h, w)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(0.2, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return h, w
    return height, width


def test_crop_box_distribution_matches_torchvision_get_params():
    rec = draw_params(4000, 112, 112, 11, ONLY_CROP)
    rng = np.random.default_rng(0)
    ref = np.array([_torchvision_crop_params(rng, 112, 112) for _ in range(4000)])
    ours_area = (rec["crop_height"] * rec["crop_width"]).numpy() / 112**2
    ref_area = ref[:, 0] * ref[:, 1] / 112**2
    assert stats.ks_2samp(ours_area, ref_area).pvalue > 1e-3
    aspect = (rec["crop_width"] / rec["crop_height"]).numpy()
    assert stats.ks_2samp(aspect, ref[:, 1] / ref[:, 0]).pvalue > 1e-3
    assert ours_area.min() >= 0.19 and ours_area.max() <= 1.0
    # positions uniform over the valid range: the box centre averages to the image centre
    centre = (rec["crop_top"] + rec["crop_height"] / 2).double().mean().item()
    assert abs(centre - 56) < 1.5


# ----------------------------------------------------------------------------- low resolution


@pytest.mark.parametrize("method", INTERPOLATIONS)
def test_resize_kernels_match_opencv(method):
    rng = np.random.default_rng(1)
    for a, b in ((112, 22), (112, 57), (112, 97), (112, 112), (22, 112), (57, 112), (97, 112), (30, 45)):
        img = rng.random((a, a)).astype(np.float32)
        idx, w = resize_taps(a, b, method)
        ours = (img[idx] * w[:, :, None]).sum(1)
        ours = (ours[:, idx] * w[None]).sum(2)
        ref = cv2.resize(img, (b, b), interpolation=_OPENCV[method])
        assert np.abs(ours - ref).max() < 1e-4, (method, a, b)
        assert np.allclose(w.sum(1), 1.0)


@pytest.mark.parametrize("method,mode", [("nearest", "nearest"), ("bilinear", "bilinear"), ("bicubic", "bicubic")])
def test_resize_kernels_match_torch_interpolate(method, mode):
    x = torch.rand(1, 1, 112, 112, dtype=torch.float64)
    for b in (23, 56, 90, 112, 140):
        idx, w = resize_taps(112, b, method)
        ours = (x[0, 0].numpy()[idx] * w[:, :, None]).sum(1)
        ours = (ours[:, idx] * w[None]).sum(2)
        kw = {} if mode == "nearest" else {"align_corners": False}
        ref = torch.nn.functional.interpolate(x, size=(b, b), mode=mode, **kw)[0, 0].numpy()
        assert np.abs(ours - ref).max() < 1e-9, (method, b)


def test_area_downscale_by_an_integer_factor_is_a_block_mean():
    x = torch.rand(1, 1, 112, 112, dtype=torch.float64)
    idx, w = resize_taps(112, 28, "area")
    ours = (x[0, 0].numpy()[idx] * w[:, :, None]).sum(1)
    ours = (ours[:, idx] * w[None]).sum(2)
    assert np.allclose(ours, x[0, 0].numpy().reshape(28, 4, 28, 4).mean(axis=(1, 3)))


def test_low_resolution_on_uint8_matches_opencv_down_then_up():
    x = _faces(24, seed=3)
    y, rec = augment_batch(x, 13, ONLY_RESIZE)
    seen = set()
    for i in range(len(x)):
        r = rec["resize_ratio"][i].item()
        down, up = INTERPOLATIONS[int(rec["resize_down"][i])], INTERPOLATIONS[int(rec["resize_up"][i])]
        seen |= {down, up}
        side = int(r * 112)
        img = x[i].permute(1, 2, 0).numpy()
        ref = cv2.resize(cv2.resize(img, (side, side), interpolation=_OPENCV[down]), (112, 112),
                         interpolation=_OPENCV[up])
        diff = np.abs(ref.astype(int) - y[i].permute(1, 2, 0).numpy().astype(int))
        # OpenCV rounds its uint8 fixed-point coefficients; we resample in float32 and round once per step
        assert diff.max() <= 3 and diff.mean() < 0.3, (down, up, side)
    assert len(seen) >= 4


def test_resize_ratio_is_uniform_on_point_two_to_one_and_kernels_uniform():
    rec = draw_params(5000, 112, 112, 17, ONLY_RESIZE)
    r = rec["resize_ratio"].numpy()
    assert r.min() >= 0.2 and r.max() <= 1.0
    assert stats.kstest(r, stats.uniform(0.2, 0.8).cdf).pvalue > 1e-3
    for key in ("resize_down", "resize_up"):
        counts = np.bincount(rec[key].numpy(), minlength=len(INTERPOLATIONS))
        assert stats.chisquare(counts).pvalue > 1e-3
    not_applied = draw_params(50, 112, 112, 17, NONE)
    assert torch.all(not_applied["resize_down"] == -1)


def test_low_resolution_loses_detail():
    x = _faces(16, seed=4).double()
    cfg = AugmentConfig(crop_prob=0.0, low_res_prob=1.0, photometric_prob=0.0, low_res_range=(0.2, 0.3),
                        interpolations=("area",))
    y, _ = augment_batch(x / 255.0, 5, cfg)
    lap = lambda t: (t[..., 1:-1, 1:-1] * 4 - t[..., :-2, 1:-1] - t[..., 2:, 1:-1] - t[..., 1:-1, :-2]  # noqa: E731
                     - t[..., 1:-1, 2:]).abs().mean()
    assert lap(y) < 0.5 * lap(x / 255.0)


# ----------------------------------------------------------------------------- photometric


def test_jitter_factors_are_uniform_on_half_to_one_and_a_half():
    rec = draw_params(5000, 112, 112, 19, ONLY_PHOTO)
    for key in ("brightness", "contrast", "saturation"):
        v = rec[key].numpy()
        assert v.min() >= 0.5 and v.max() <= 1.5
        assert stats.kstest(v, stats.uniform(0.5, 1.0).cdf).pvalue > 1e-3
    counts = np.bincount(rec["photo_order"].numpy(), minlength=len(PHOTO_ORDERS))
    assert stats.chisquare(counts).pvalue > 1e-3
    fixed = draw_params(100, 112, 112, 19, AugmentConfig(0, photometric_prob=1.0, random_order=False))
    assert torch.all(fixed["photo_order"] == 0)


@pytest.mark.parametrize("key,enhancer", [("brightness", ImageEnhance.Brightness),
                                          ("contrast", ImageEnhance.Contrast),
                                          ("saturation", ImageEnhance.Color)])
def test_each_photometric_op_on_uint8_equals_pil_image_enhance(key, enhancer):
    """The official code jitters PIL images, so PIL's ImageEnhance is the reference."""
    x = _faces(6, seed=5)
    for f in (0.5, 0.83, 1.27, 1.5):
        params = draw_params(len(x), 112, 112, 0, AugmentConfig(0, low_res_prob=0, photometric_prob=1))
        for k in ("brightness", "contrast", "saturation"):
            params[k] = torch.full((len(x),), f if k == key else 1.0, dtype=torch.float64)
        y = apply_params(x, params)
        for i in range(len(x)):
            ref = np.asarray(enhancer(Image.fromarray(x[i].permute(1, 2, 0).numpy())).enhance(f))
            assert np.array_equal(y[i].permute(1, 2, 0).numpy(), ref), (key, f)


def test_photometric_on_float_follows_the_blend_formulas_in_the_drawn_order():
    x = _faces(8, seed=6).double() / 255.0
    y, rec = augment_batch(x, 23, ONLY_PHOTO)
    lw = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    for i in range(len(x)):
        z = x[i:i + 1].clone()
        for op in PHOTO_ORDERS[int(rec["photo_order"][i])]:
            gray = (z * lw).sum(1, keepdim=True)
            f = rec[("brightness", "contrast", "saturation")[op]][i].item()
            target = {0: torch.zeros_like(gray), 1: gray.mean().expand_as(gray), 2: gray}[op]
            z = (f * z + (1 - f) * target).clamp(0, 1)
        assert torch.allclose(y[i:i + 1], z, atol=1e-4)


# ----------------------------------------------------------------------------- batched == per sample


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_batched_path_equals_per_sample_path_bit_for_bit(dtype):
    x = _faces(40, seed=7)
    x = x if dtype == torch.uint8 else x.float() / 255.0
    cfg = AugmentConfig(crop_prob=0.5, low_res_prob=0.5, photometric_prob=0.5)
    yb, rb = augment_batch(x, torch.Generator().manual_seed(29), cfg)
    g = torch.Generator().manual_seed(29)
    singles = [augment(x[i], g, cfg) for i in range(len(x))]
    assert torch.equal(yb, torch.stack([s[0] for s in singles]))
    for i, (_, rec) in enumerate(singles):
        assert rec == {k: rb[k][i].item() for k in RECORD_FIELDS}
    assert rb["crop_applied"].any() and rb["resize_applied"].any() and rb["photo_applied"].any()


def test_float_outputs_stay_in_range_and_keep_dtype():
    x = _faces(16, seed=8).double() / 255.0
    y, _ = augment_batch(x, 31, ALL)
    assert y.dtype == torch.float64 and y.min() >= 0.0 and y.max() <= 1.0
    yh, _ = augment_batch(x.half(), 31, ALL)
    assert yh.dtype == torch.float16


# ----------------------------------------------------------------------------- misuse


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError):
        augment_batch(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 0)
    with pytest.raises(TypeError):
        augment_batch(torch.zeros(2, 3, 8, 8, dtype=torch.int32), 0)
    with pytest.raises(TypeError):
        augment(torch.zeros(3, 8, 8, dtype=torch.uint8), generator="seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AugmentConfig(crop_prob=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(low_res_range=(0.0, 1.0))
    with pytest.raises(ValueError):
        AugmentConfig(interpolations=("bilinear", "spline"))
    with pytest.raises(ValueError):
        AugmentConfig.from_dict({"crop_probability": 0.3})
    cfg = AugmentConfig.from_dict({"crop_prob": 0.3, "crop_aspect_ratio": [0.5, 2.0]})
    assert cfg.crop_aspect_ratio == (0.5, 2.0) and AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        make_generator(1, -2)
