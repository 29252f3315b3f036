"""SyntheticFaces: determinism, the lab's sample convention, recorded severities, degradations that
really degrade (checked with NumPy), and identities that are separable at high quality only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from adaface_lab.data.synthetic import (
    DEGRADATIONS,
    MIXED_BETA,
    SyntheticFaces,
    sample_grid,
    save_sample_grid,
    severity_accuracy_curve,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _np(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy().astype(np.float64)


def _as_list(batch: list) -> list:
    return batch


def _high_frequency_fraction(img: torch.Tensor, cut: float = 0.1) -> float:
    """Share of the (mean-removed) luminance spectrum's energy above `cut` times the Nyquist radius
    (default a tenth: periods shorter than 20 px; uint8 rounding puts a floor under finer bands once the
    blur is strong)."""
    lum = _np(img) @ np.array([0.299, 0.587, 0.114])
    spec = np.abs(np.fft.fftshift(np.fft.fft2(lum - lum.mean()))) ** 2
    n = lum.shape[0]
    fy, fx = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij")
    radius = np.hypot(fx, fy) / (n / 2)
    return float(spec[radius > cut].sum() / spec.sum())


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_images_and_meta():
    a = SyntheticFaces(num_identities=4, images_per_identity=3, seed=7)
    b = SyntheticFaces(num_identities=4, images_per_identity=3, seed=7)
    for i in (0, 5, 11):
        xa, ya, ia, ma = a[i]
        xb, yb, ib, mb = b[i]
        assert torch.equal(xa, xb)
        assert (ya, ia, ma) == (yb, ib, mb)


def test_different_seed_gives_different_images():
    a = SyntheticFaces(num_identities=2, images_per_identity=2, seed=0)
    b = SyntheticFaces(num_identities=2, images_per_identity=2, seed=1)
    for i in range(4):
        assert not torch.equal(a[i][0], b[i][0])
    assert not np.array_equal(a.severities, b.severities)


def test_image_depends_only_on_seed_identity_and_index():
    small = SyntheticFaces(num_identities=3, images_per_identity=4, seed=3)
    large = SyntheticFaces(num_identities=8, images_per_identity=9, seed=3)
    for i in range(len(small)):
        _, label, _, meta = small[i]
        j = meta["identity"] * 9 + meta["index"]
        other = large[j]
        assert torch.equal(small[i][0], other[0])
        assert other[3]["severity"] == meta["severity"]
    # a held-out slice (first_identity / first_index) shows the same pictures under new labels
    shifted = SyntheticFaces(num_identities=2, images_per_identity=2, seed=3, first_identity=1, first_index=2)
    x, label, _, meta = shifted[0]
    assert (label, meta["identity"], meta["index"]) == (0, 1, 2)
    assert torch.equal(x, large[1 * 9 + 2][0])


def test_access_order_and_worker_processes_do_not_matter():
    ds = SyntheticFaces(num_identities=3, images_per_identity=4, seed=11)
    forward = [ds[i][0] for i in range(len(ds))]
    fresh = SyntheticFaces(num_identities=3, images_per_identity=4, seed=11)
    backward = [fresh[i][0] for i in reversed(range(len(fresh)))][::-1]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=_as_list)
    from_workers = [sample[0] for batch in loader for sample in batch]
    for f, bw, w in zip(forward, backward, from_workers):
        assert torch.equal(f, bw)
        assert torch.equal(f, w)


# ----------------------------------------------------------------------------- convention and records


def test_samples_follow_the_lab_convention():
    ds = SyntheticFaces(num_identities=5, images_per_identity=3, seed=2)
    assert len(ds) == 15 and ds.num_classes == 5
    assert ds.targets.tolist() == [i // 3 for i in range(15)]
    ids = set()
    for i in range(len(ds)):
        image, label, sample_id, meta = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 112, 112)
        assert isinstance(label, int) and label == ds.targets[i]
        assert isinstance(sample_id, int)
        ids.add(sample_id)
        assert all(isinstance(v, (int, float, str)) for v in meta.values())
        assert 0.0 <= meta["severity"] <= 1.0
        assert meta["quality"] == pytest.approx(1.0 - meta["severity"])
        assert meta["severity"] == ds.severities[i]  # the array is computed without rendering
        for key in ("blur_sigma", "lowres_factor", "noise_sigma", "contrast_factor", "jpeg_quality",
                    "occlusion_fraction"):
            assert key in meta
    assert len(ids) == len(ds)


def test_other_sizes_render_at_that_size():
    ds = SyntheticFaces(num_identities=1, images_per_identity=1, size=64)
    assert ds[0][0].shape == (3, 64, 64)


def test_mixed_severities_follow_the_documented_beta_with_a_long_tail():
    ds = SyntheticFaces(num_identities=400, images_per_identity=30, seed=5)  # no rendering needed
    s = ds.severities
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert stats.kstest(s, stats.beta(*MIXED_BETA).cdf).pvalue > 1e-3
    assert np.median(s) < 0.35  # most images fairly good...
    assert 0.02 < np.mean(s > 0.7) < 0.15  # ...with a tail of bad ones


def test_other_severity_specs():
    uni = SyntheticFaces(num_identities=200, images_per_identity=20, severity="uniform")
    assert stats.kstest(uni.severities, "uniform").pvalue > 1e-3
    fixed = SyntheticFaces(num_identities=3, images_per_identity=2, severity=0.4)
    assert np.all(fixed.severities == 0.4)
    # a callable is a quantile function applied to the same per-sample uniforms
    custom = SyntheticFaces(num_identities=50, images_per_identity=10, severity=lambda u: u**3)
    same_uniforms = SyntheticFaces(num_identities=50, images_per_identity=10, severity="uniform")
    assert np.allclose(custom.severities, same_uniforms.severities**3)
    with pytest.raises(ValueError):
        SyntheticFaces(severity="terrible")
    with pytest.raises(ValueError):
        SyntheticFaces(severity=1.5)
    with pytest.raises(ValueError):
        SyntheticFaces(num_identities=2, severity=lambda u: u + 2.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        SyntheticFaces(num_identities=0)
    with pytest.raises(TypeError):
        SyntheticFaces(images_per_identity=2.5)  # type: ignore[arg-type]
    ds = SyntheticFaces(num_identities=2, images_per_identity=2)
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError):
        ds.render(0, 0, severity=-0.1)
    with pytest.raises(ValueError):
        ds.render(0, 0, severity=0.5, degradations=("rain",))


def test_render_reproduces_the_data_set_and_records_its_severity():
    ds = SyntheticFaces(num_identities=3, images_per_identity=4, seed=4)
    image, _, _, meta = ds[7]
    assert torch.equal(ds.render(meta["identity"], meta["index"]), image)
    assert ds.meta(meta["identity"], meta["index"]) == meta
    assert ds.meta(0, 0, severity=0.8)["severity"] == 0.8
    assert ds.meta(0, 0, severity=0.0)["blur_sigma"] == 0.0
    assert ds.meta(0, 0, severity=0.0)["jpeg_quality"] == 100


# ----------------------------------------------------------------------------- degradations


def test_distance_from_the_pristine_image_grows_with_severity():
    ds = SyntheticFaces(seed=1)
    levels = (0.0, 0.25, 0.5, 0.75, 1.0)
    dist = np.zeros((8, len(levels)))
    for k in range(8):
        clean = _np(ds.render(k, k, 0.0))
        for j, s in enumerate(levels):
            dist[k, j] = np.abs(_np(ds.render(k, k, s)) - clean).mean()
    assert np.all(dist[:, 0] == 0.0)
    mean = dist.mean(axis=0)
    assert np.all(np.diff(mean) > 0), mean
    assert np.mean(np.diff(dist, axis=1) > 0) > 0.9  # per image too, almost always


def test_blur_and_low_resolution_remove_high_frequencies_and_noise_adds_them():
    ds = SyntheticFaces(seed=2)
    for k in range(4):
        clean = _high_frequency_fraction(ds.render(k, 0, 0.0))
        levels = (0.6, 0.8, 1.0)  # blur sigma >= 5 * 0.6**3 ~ 1 px at the lowest
        assert all(ds.meta(k, 0, s, degradations=("blur",))["blur_sigma"] >= 1.0 for s in levels)
        blur = [_high_frequency_fraction(ds.render(k, 0, s, degradations=("blur",))) for s in levels]
        noisy = _high_frequency_fraction(ds.render(k, 0, 0.6, degradations=("noise",)))
        assert clean > blur[0] > blur[1] > blur[2]
        # low resolution (side x0.1 at full strength): above the small image's Nyquist only the
        # bilinear upsampling's leakage is left
        low_res = ds.render(k, 0, 1.0, degradations=("lowres",))
        for cut in (0.1, 0.3):
            assert _high_frequency_fraction(low_res, cut) < _high_frequency_fraction(ds.render(k, 0, 0.0), cut)
        assert noisy > clean


def test_single_degradations_record_their_parameters_and_change_the_image():
    ds = SyntheticFaces(seed=3)
    clean = _np(ds.render(2, 1, 0.0))
    for name in DEGRADATIONS:
        meta = ds.meta(2, 1, 0.9, degradations=(name,))
        img = _np(ds.render(2, 1, 0.9, degradations=(name,)))
        assert np.abs(img - clean).mean() > 1.0, name
        touched = {
            "occlusion": meta["occlusion_fraction"] > 0,
            "blur": meta["blur_sigma"] > 0,
            "lowres": meta["lowres_factor"] < 1,
            "contrast": meta["contrast_factor"] < 1,
            "noise": meta["noise_sigma"] > 0,
            "jpeg": meta["jpeg_quality"] < 100,
        }
        assert [k for k, v in touched.items() if v] == [name]
    # contrast loss scales each channel's spread by the recorded factor (towards a flat fog colour)
    factor = ds.meta(2, 1, 1.0, degradations=("contrast",))["contrast_factor"]
    faded = _np(ds.render(2, 1, 1.0, degradations=("contrast",)))
    for ch in range(3):
        assert faded[..., ch].std() == pytest.approx(factor * clean[..., ch].std(), abs=0.6)


def test_occluder_covers_about_the_recorded_fraction():
    ds = SyntheticFaces(seed=4)
    ratios = []
    for k in range(10):
        meta = ds.meta(k, 3, 0.8, degradations=("occlusion",))
        changed = np.any(np.abs(_np(ds.render(k, 3, 0.8, degradations=("occlusion",)))
                                - _np(ds.render(k, 3, 0.0))) > 8, axis=2)
        expected = meta["occlusion_fraction"] * 0.8**2  # fraction of the 0.8-side face box, in image area
        ratios.append(changed.mean() / expected)
    assert 0.6 < np.median(ratios) <= 1.05


# ----------------------------------------------------------------------------- behaves like faces


def test_identification_accuracy_falls_with_severity():
    curve = severity_accuracy_curve(num_identities=60, train_per_identity=15, test_per_identity=10, bins=4,
                                    model="linear", seed=0, at_severities=(1.0,), size=64, progress=False)
    bins, worst = curve.iloc[:4], curve.iloc[4]
    acc = bins["accuracy"].to_numpy()
    chance = 1.0 / 60
    assert acc[0] > 10 * chance  # separable at high quality
    assert acc[0] > acc[-1] + 0.2  # clearly harder at high severity
    assert np.all(np.diff(acc) < 0.05), acc  # monotone-ish
    assert stats.spearmanr(bins["severity_mean"], acc).statistic < -0.7
    assert worst["accuracy"] < 4 * chance  # unrecognisable at severity 1 (about chance)
    assert bins["n"].sum() == 600


# ----------------------------------------------------------------------------- cache and pictures


def test_cache_round_trips_and_is_keyed_by_parameters(tmp_path):
    ds = SyntheticFaces(num_identities=3, images_per_identity=2, seed=9, cache_dir=tmp_path)
    assert ds.cache_path is not None and ds.cache_path.exists()
    plain = SyntheticFaces(num_identities=3, images_per_identity=2, seed=9)
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], plain[i][0])
        assert ds[i][3] == plain[i][3]
    mtime = ds.cache_path.stat().st_mtime_ns
    again = SyntheticFaces(num_identities=3, images_per_identity=2, seed=9, cache_dir=tmp_path)
    assert again.cache_path == ds.cache_path and again.cache_path.stat().st_mtime_ns == mtime
    other = SyntheticFaces(num_identities=3, images_per_identity=2, seed=10, cache_dir=tmp_path)
    assert other.cache_path != ds.cache_path
    assert not list(tmp_path.glob("*.tmp*"))


def test_sample_grid_and_png(tmp_path):
    grid = sample_grid(num_identities=2, severities=(0.0, 1.0), seed=0, gap=4)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 112 + 4, 2 * 112 + 4, 3)
    ds = SyntheticFaces(num_identities=2, images_per_identity=1, severity=0.0)
    assert np.array_equal(grid[:112, :112], ds.render(0, 0, 0.0).permute(1, 2, 0).numpy())
    assert np.all(grid[:, 112:116] == 255)
    path = save_sample_grid(tmp_path / "grid.png", num_identities=2, severities=(0.0, 1.0))
    assert np.array_equal(np.asarray(Image.open(path)), grid)
