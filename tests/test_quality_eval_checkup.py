"""The norm check-up: trends against scipy's Spearman, verdicts on cases whose answer is known (a model whose
norm is the image's sharpness: it falls with blur and rises with noise), a channel-order check that catches a
model fed the wrong order, folders of faces, and the `adaface-lab checkup` command on the authors' checkpoint
format, on a lab run, and on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

from adaface_lab import cli
from adaface_lab.backbones import build_backbone
from adaface_lab.data.synthetic import SyntheticFaces
from adaface_lab.quality_eval import (
    channel_order_check,
    checkup,
    degradation_sweep,
    image_trends,
    load_faces,
    sweep_bands,
    trend_summary,
    trend_verdict,
)
from adaface_lab.runs import TrainingState
from tests.test_train import TINY_BACKBONE as TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A short sweep: three steps per kind keeps the tests quick.
LEVELS = {"blur_sigma": (0.0, 1.5, 3.0), "scale": (1.0, 0.5, 0.25), "noise_sigma": (0.0, 10.0, 30.0),
          "jpeg_quality": (100, 30, 5)}  # fmt: skip


# --------------------------------------------------------------------------- models whose answer is known


class Sharpness(torch.nn.Module):
    """A 'backbone' whose feature is the image's Laplacian (high frequencies): its norm falls when the image is
    blurred and rises when noise is added — a known answer for the verdicts."""

    input_size = 56

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(3, 1, 3, 3)
        z = F.conv2d(x, kernel, groups=3).flatten(1)  # (B, 3·54·54)
        norm = z.norm(dim=1, keepdim=True)
        return z / norm.clamp_min(1e-12), norm


class FirstChannelOnly(torch.nn.Module):
    """A 'backbone' that sees only the first input channel (red when fed RGB, blue when fed BGR), pooled to 8×8."""

    input_size = 32

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.adaptive_avg_pool2d(x[:, :1], 8).flatten(1) + 2.0  # (B, 64), offset: never zero
        norm = z.norm(dim=1, keepdim=True)
        return z / norm, norm


def _identity_in_red(n_ids: int = 10, per_id: int = 4, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Faces whose identity lives in the red channel (a smooth pattern per identity, mild noise) while the blue
    channel is fresh noise in every image: uint8 (n_ids·per_id, 3, 32, 32) and the labels."""
    g = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.rand(n_ids, 1, 4, 4, generator=g), size=32, mode="bilinear")  # (I, 1, 32, 32)
    labels = np.repeat(np.arange(n_ids), per_id)
    red = patterns[labels] + 0.05 * torch.randn(len(labels), 1, 32, 32, generator=g)
    blue = F.interpolate(torch.rand(len(labels), 1, 4, 4, generator=g), size=32, mode="bilinear")
    green = torch.full_like(red, 0.5)
    images = (torch.cat([red, green, blue], dim=1).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, np.ndarray]:
    """Twelve pristine SyntheticFaces of four identities at 112 px, and their labels."""
    ds = SyntheticFaces(num_identities=4, images_per_identity=3, size=112, seed=3)
    images = torch.stack([ds.render(i // 3, i % 3, severity=0.0) for i in range(12)])
    return images, np.repeat(np.arange(4), 3)


# --------------------------------------------------------------------------- trends and verdicts


def _sweep_of(values: np.ndarray) -> pd.DataFrame:
    """A sweep table holding ``values`` (N, K, L) as the 'norm' of N images under K kinds at L steps."""
    n, k, steps = values.shape
    kinds = ["blur_sigma", "scale", "noise_sigma", "jpeg_quality"][:k]
    rows = [{"image": i, "degradation": kinds[j], "step": s, "strength": float(s), "norm": values[i, j, s]}
            for i in range(n) for j in range(k) for s in range(steps)]  # fmt: skip
    return pd.DataFrame(rows)


def test_image_trends_are_scipys_spearman_of_step_and_value_per_image():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 2, 5)).round(1)  # rounded: ties within an image occur
    values[0, 0] = 7.0  # a constant image has no trend
    values[1, 1, 2] = np.nan  # nor has one with a missing value
    trends = image_trends(_sweep_of(values), "norm")
    for i in range(30):
        for j, kind in enumerate(["blur_sigma", "scale"]):
            expected = np.nan if (i, j) in ((0, 0), (1, 1)) else spearmanr(np.arange(5), values[i, j]).statistic
            np.testing.assert_allclose(trends.loc[i, kind], expected, atol=1e-12)


def test_trend_summary_finds_what_was_built_in_with_an_interval_of_the_right_width():
    rng = np.random.default_rng(1)
    steps = np.arange(5.0)
    falls = -steps + rng.normal(0, 1.0, (200, 1, 5))  # falls with the step, noisily
    rises = steps + rng.normal(0, 1.0, (200, 1, 5))
    flat = rng.normal(0, 1.0, (200, 1, 5))
    summary = trend_summary(_sweep_of(np.concatenate([falls, rises, flat], axis=1)), ["norm"], n_boot=4000, seed=2)
    rows = summary.set_index("degradation")
    assert list(rows.index) == ["blur_sigma", "scale", "noise_sigma", "all"]
    assert rows.loc["blur_sigma", "verdict"] == "falls" and rows.loc["scale", "verdict"] == "rises"
    assert rows.loc["noise_sigma", "verdict"] == "flat" and rows.loc["noise_sigma", "low"] < 0 < rows.loc["noise_sigma", "high"]
    per_image = image_trends(_sweep_of(falls), "norm")["blur_sigma"]
    assert rows.loc["blur_sigma", "rho"] == pytest.approx(per_image.mean())
    # the bootstrap interval of a mean is about ±1.96 standard errors
    se = per_image.std(ddof=1) / np.sqrt(len(per_image))
    width = rows.loc["blur_sigma", "high"] - rows.loc["blur_sigma", "low"]
    assert width == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert rows.loc["blur_sigma", "falls_share"] == pytest.approx((per_image < 0).mean())
    assert rows.loc["all", "n_images"] == 200


@pytest.mark.parametrize("low, high, verdict", [(-0.5, -0.1, "falls"), (0.1, 0.4, "rises"), (-0.1, 0.2, "flat"),
                                                (-0.2, 0.0, "flat"), (np.nan, np.nan, "unknown")])  # fmt: skip
def test_trend_verdict_reads_the_interval_only(low, high, verdict):
    assert trend_verdict(low, high) == verdict


def test_a_sharpness_norm_falls_with_blur_and_rises_with_noise(faces):
    images, labels = faces
    result = checkup(Sharpness(), images, "rgb", labels=labels, levels=LEVELS, measures=("norm",), n_boot=500,
                     progress=False)  # fmt: skip
    assert result.trend("norm", "blur_sigma")["verdict"] == "falls"
    assert result.trend("norm", "noise_sigma")["verdict"] == "rises"
    assert result.trend("norm", "blur_sigma")["rho"] == -1.0  # every face, every step
    text = "\n".join(result.verdicts())
    assert "falls as the faces are degraded by blur" in text and "RISES as the faces are degraded by noise" in text
    # the sweep holds each face at each step: step 0 is the face itself, the same for every kind
    sweep = result.sweep
    assert len(sweep) == 12 * 4 * 3
    first = sweep[sweep["step"] == 0].groupby("image")["norm"].nunique()
    assert (first == 1).all()
    bands = sweep_bands(sweep, "norm").set_index(["degradation", "step"])
    blurred = sweep[(sweep["degradation"] == "blur_sigma")].pivot(index="image", columns="step", values="norm")
    assert bands.loc[("blur_sigma", 2), "median"] == pytest.approx(np.median(blurred[2] - blurred[0]))


def test_brisque_joins_the_sweep_and_the_summary(faces):
    images, _ = faces
    sweep = degradation_sweep(None, images[:4], "rgb", levels={"blur_sigma": (0.0, 2.0, 4.0)}, measures=("brisque",),
                              progress=False)  # fmt: skip
    assert list(sweep.columns) == ["image", "degradation", "step", "strength", "brisque"]
    summary = trend_summary(sweep, n_boot=200).set_index("degradation")
    assert summary.loc["blur_sigma", "measure"] == "brisque"
    assert summary.loc["blur_sigma", "rho"] == pytest.approx(image_trends(sweep, "brisque")["blur_sigma"].mean())
    with pytest.raises(ValueError, match="need a backbone"):
        degradation_sweep(None, images[:2], "rgb")
    with pytest.raises(ValueError, match="must start at 1.0"):
        degradation_sweep(Sharpness(), images[:2], "rgb", levels={"scale": (0.5, 0.25, 0.1)}, measures=("norm",))


# --------------------------------------------------------------------------- channel order


def test_the_channel_order_check_catches_a_model_fed_the_wrong_order():
    images, labels = _identity_in_red()
    wrong = channel_order_check(FirstChannelOnly(), images, "bgr", labels, n_boot=300)
    assert wrong.better == "rgb" and wrong.wrong_order
    assert wrong.auc["rgb"] > wrong.auc["bgr"] and wrong.auc_diff[2] < 0
    assert "WARNING" in wrong.verdict() and "fed BGR, but RGB separates" in wrong.verdict()
    result = checkup(FirstChannelOnly(), images, "bgr", labels=labels, levels=LEVELS, measures=("norm",), n_boot=300,
                     progress=False)  # fmt: skip
    assert result.verdicts()[0].startswith("WARNING — channel order")  # said first: it undoes the rest
    right = channel_order_check(FirstChannelOnly(), images, "rgb", labels, n_boot=300)
    assert right.better == "rgb" and not right.wrong_order and "looks right" in right.verdict()
    # the AUC is the chance that a genuine pair outscores an impostor pair (ties half), counted pair by pair
    s, same = wrong.scores["rgb"], wrong.issame
    g, i = s[same][:, None], s[~same][None, :]
    assert wrong.auc["rgb"] == pytest.approx(((g > i).sum() + 0.5 * (g == i).sum()) / (g.size * i.size))
    assert len(s) == 40 * 39 // 2


def test_without_identities_the_channel_check_compares_norms_only():
    images, _ = _identity_in_red()
    check = channel_order_check(FirstChannelOnly(), images, "bgr")
    assert check.auc is None and check.better is None and not check.wrong_order
    assert "no identities" in check.verdict()
    assert set(check.norms) == {"bgr", "rgb"} and not np.allclose(check.norms["bgr"], check.norms["rgb"])


# --------------------------------------------------------------------------- folders of faces


def _write_faces(root: Path, n_ids: int = 4, per_id: int = 5, flat: bool = False) -> Path:
    """SyntheticFaces written as JPEGs: root/<identity>/<k>.jpg, or all directly in root (flat)."""
    ds = SyntheticFaces(num_identities=n_ids, images_per_identity=per_id, size=96, seed=1)
    for c in range(n_ids):
        folder = root if flat else root / f"person_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_id):
            image = ds.render(c, k, severity=0.1).permute(1, 2, 0).numpy()
            Image.fromarray(image).save(folder / f"{'p%d_' % c if flat else ''}{k}.jpg", quality=95)
    return root


def test_load_faces_reads_identity_folders_and_flat_folders(tmp_path: Path):
    root = _write_faces(tmp_path / "ids")
    faces = load_faces(root, max_images=8, seed=0, progress=False)
    assert faces.images.shape == (8, 3, 112, 112) and faces.images.dtype == torch.uint8
    assert faces.found == 20 and faces.identities == [f"person_{c}" for c in range(4)]
    assert np.bincount(faces.labels).tolist() == [2, 2, 2, 2]  # identities take turns: each keeps a genuine pair
    assert all(Path(p).parent.name == faces.identities[c] for p, c in zip(faces.paths, faces.labels))
    again = load_faces(root, max_images=8, seed=0, progress=False)
    assert again.paths == faces.paths and torch.equal(again.images, faces.images)
    flat = load_faces(_write_faces(tmp_path / "flat", flat=True), max_images=50, progress=False)
    assert flat.labels is None and flat.n_identities is None and len(flat) == flat.found == 20


def test_load_faces_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_faces(tmp_path / "nowhere")
    (tmp_path / "a.txt").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        load_faces(tmp_path / "a.txt")
    (tmp_path / "empty" / "someone").mkdir(parents=True)
    (tmp_path / "empty" / "someone" / "notes.txt").write_text("no faces here")
    with pytest.raises(ValueError, match="no images in"):
        load_faces(tmp_path / "empty")


# --------------------------------------------------------------------------- the command


def _authors_checkpoint(path: Path) -> Path:
    """A checkpoint in the layout of the authors' released files: Lightning, ``model.``-prefixed backbone keys,
    ``head.kernel`` (embedding × classes) and the AdaFace buffers (see tests/test_checkpoint.py)."""
    torch.manual_seed(0)
    model = build_backbone("ir_tiny")
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({"head.kernel": torch.randn(model.embedding_size, 10), "head.t": torch.zeros(1),
                  "head.batch_mean": torch.full((1,), 20.0), "head.batch_std": torch.full((1,), 100.0)})  # fmt: skip
    torch.save({"epoch": 3, "global_step": 100, "state_dict": state, "hyper_parameters": {"arch": "ir_tiny"}}, path)
    return path


def _lab_run(folder: Path) -> Path:
    """A run folder holding a lab checkpoint (its config says the backbone, RGB input and no centre crop)."""
    torch.manual_seed(1)
    model = build_backbone("ir_tiny", **TINY)
    config = {"backbone": "ir_tiny", "backbone_params": TINY, "channel_order": "rgb", "center_crop": None,
              "head": "adaface"}  # fmt: skip
    folder.mkdir(parents=True)
    TrainingState(backbone=model.state_dict(), head={"batch_mean": torch.full((1,), 20.0)}, optimizer={},
                  scheduler={}, epoch=2, step=10, config=config).save(folder / "checkpoint.pt")  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_faces(tmp_path_factory.mktemp("faces"), n_ids=3, per_id=4)


def test_checkup_runs_on_an_authors_checkpoint_fed_bgr(tmp_path: Path, data: Path, capsys):
    ckpt = _authors_checkpoint(tmp_path / "adaface_ir_tiny.ckpt")
    out = tmp_path / "report"
    code = cli.main(["checkup", "--checkpoint", str(ckpt), "--data", str(data), "--max-images", "12",
                     "--bootstrap", "200", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "ir_tiny, lightning checkpoint, epoch 3" in printed.out and "fed BGR; 12 faces of 3 identities" in printed.out
    trends = pd.read_csv(out / "trends.csv")
    assert set(trends["measure"]) == {"norm", "brisque"} and set(trends["verdict"]) <= {"falls", "rises", "flat"}
    sweep = pd.read_csv(out / "sweep.csv")
    assert len(sweep) == 12 * 4 * 5 and sweep["path"].str.startswith(str(data)).all()
    page = (out / "checkup.html").read_text()
    assert page.count("* plotly.js v") == 1  # plotly.js embedded once: the page opens offline
    assert page.count("class=\"plotly-graph-div\"") == 3 and "Channel order" in page


def test_checkup_reads_a_lab_run_and_feeds_it_rgb(tmp_path: Path, data: Path, capsys):
    run = _lab_run(tmp_path / "run")
    code = cli.main(["checkup", "--run", str(run), "--data", str(data), "--max-images", "6", "--no-brisque",
                     "--bootstrap", "100", "--out", str(tmp_path / "r")])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "run checkpoint, epoch 2" in printed.out and "fed RGB; 6 faces" in printed.out
    assert set(pd.read_csv(tmp_path / "r" / "trends.csv")["measure"]) == {"norm"}


@pytest.mark.parametrize("case, message", [
    ("neither", "give exactly one of --checkpoint FILE or --run DIR"),
    ("both", "give exactly one of --checkpoint FILE or --run DIR, not both"),
    ("missing checkpoint", "checkpoint not found: "),
    ("missing run", "run folder not found: "),
    ("run without checkpoint", "no checkpoint.pt in "),
    ("no data", "give --data FOLDER"),
    ("missing data", "data folder not found: "),
    ("no images", "no images in "),
])  # fmt: skip
def test_bad_input_gives_one_clear_error(tmp_path: Path, data: Path, capsys, case: str, message: str):
    ckpt = str(_authors_checkpoint(tmp_path / "a.ckpt"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_a_run").mkdir()
    args = {
        "neither": ["--data", str(data)],
        "both": ["--checkpoint", ckpt, "--run", str(tmp_path), "--data", str(data)],
        "missing checkpoint": ["--checkpoint", str(tmp_path / "nope.ckpt"), "--data", str(data)],
        "missing run": ["--run", str(tmp_path / "nope"), "--data", str(data)],
        "run without checkpoint": ["--run", str(tmp_path / "not_a_run"), "--data", str(data)],
        "no data": ["--checkpoint", ckpt],
        "missing data": ["--checkpoint", ckpt, "--data", str(tmp_path / "nowhere")],
        "no images": ["--checkpoint", ckpt, "--data", str(tmp_path / "empty")],
    }[case]
    code = cli.main(["checkup", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not (tmp_path / "out").exists()  # nothing written
