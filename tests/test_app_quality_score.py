"""Streamlit AppTest checks of the "Quality as a score" page: a run folder written here (a fake run's records, a
tiny untrained checkpoint, SyntheticFaces with identities held out); the EDC it charts is recomputed here from
norms and cosines taken straight from the model, and the face section's norm from the model on the degraded face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adaface_lab.backbones import preprocess
from adaface_lab.degrade import Degradation, degrade
from adaface_lab.quality_eval import edc, heldout_faces
from adaface_lab.runs import load_run
from tests.app_pages import open_page, runs, texts  # noqa: F401
from tests.fake_runs import write_fake_checkpoint, write_fake_run
from tests.test_app import _chart, _decode

SCORE_PAGE = "views/quality_score.py"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_run(folder: Path, holdout: int = 4) -> Path:
    write_fake_run(folder, epochs=2, n=40)
    write_fake_checkpoint(folder, holdout=holdout, images_per_identity=5)  # 4 × 5 = 20 held-out faces
    return folder


def _model_view(folder: Path) -> tuple[torch.Tensor, np.ndarray, torch.nn.Module]:
    """The held-out faces, their labels and the model, read here without the page."""
    run = load_run(folder)
    faces = heldout_faces(run)
    return faces.images, faces.labels, run.backbone()


def test_without_a_run_the_page_says_how_to_get_one(runs: Path) -> None:
    at = open_page(SCORE_PAGE)
    assert at.title[0].value == "Quality as a score"
    assert any("No run with a checkpoint" in t for t in texts(at, "info"))
    assert not at.get("plotly_chart")


def test_edc_curves_follow_the_chosen_measures_and_match_a_recomputation(runs: Path) -> None:
    folder = _tiny_run(runs / "tiny")
    at = open_page(SCORE_PAGE)
    spec = _chart(at, "edc_chart")
    names = [t.get("name", "") for t in spec["data"]]
    assert [n.split(" (pAUC")[0] for n in names[2:]] == ["norm", "brisque", "serfiq", "ground truth"]
    assert "FMR = 0.01" in spec["layout"]["title"]["text"]
    # the norm's curve, recomputed: norms and cosines from the model itself, every pair of the 20 faces
    images, labels, model = _model_view(folder)
    with torch.no_grad():
        emb, norm = model(preprocess(images, channel_order="rgb", size=32))
    sims = (emb @ emb.T).double().numpy()
    a, b = np.triu_indices(len(images), k=1)
    q = norm.reshape(-1).double().numpy()
    expected = edc(sims[a, b], labels[a] == labels[b], q[a], q[b], fmr=0.01)
    norm_trace = next(t for t in spec["data"] if t.get("name", "").startswith("norm"))
    np.testing.assert_allclose(_decode(norm_trace["y"]), expected["fnmr"], atol=1e-6)
    table = next(d.value for d in at.dataframe if "pAUC ÷ random" in d.value.columns)
    assert set(table["measure"]) == {"norm", "brisque", "serfiq", "ground truth"}
    # fewer measures, another FMR: the chart follows, and the URL says so
    at.sidebar.multiselect(key="qscore:qm").set_value(["norm"]).run()
    at.sidebar.radio(key="qscore:fmr").set_value("0.1").run()
    assert not at.exception
    spec = _chart(at, "edc_chart")
    assert [t.get("name", "").split(" (pAUC")[0] for t in spec["data"][2:]] == ["norm"]
    assert "FMR = 0.1" in spec["layout"]["title"]["text"]
    assert at.query_params["fmr"] in ("0.1", ["0.1"]) and at.query_params["qm"] in ("norm", ["norm"])


def test_a_face_under_the_degradation_slider_shows_the_models_norm(runs: Path) -> None:
    folder = _tiny_run(runs / "tiny")
    at = open_page(SCORE_PAGE)
    at.selectbox(key="qscore:kind").set_value("noise_sigma").run()
    at.slider(key="qscore:face").set_value(3).run()
    at.slider(key="qscore:step").set_value(4).run()  # noise σ = 30 grey levels
    assert not at.exception
    images, _, model = _model_view(folder)
    noisy = degrade(images[3], Degradation(noise_sigma=30.0))
    with torch.no_grad():
        _, norm = model(preprocess(noisy[None], channel_order="rgb", size=32))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["‖z‖"] == f"{float(norm):.2f}"
    assert 0 < float(metrics["SER-FIQ"]) <= 1
    sweep = _chart(at, "face_chart")
    assert [t["name"] for t in sweep["data"] if t.get("mode") == "lines+markers"] == ["‖z‖", "SER-FIQ"]


def test_the_view_is_in_the_url(runs: Path) -> None:
    _tiny_run(runs / "tiny")
    at = open_page(SCORE_PAGE, {"qm": "norm,serfiq", "fmr": "0.1", "kind": "scale", "step": "2"})
    assert at.sidebar.multiselect(key="qscore:qm").value == ["norm", "serfiq"]
    assert at.selectbox(key="qscore:kind").value == "scale" and at.slider(key="qscore:step").value == 2
    assert "FMR = 0.1" in _chart(at, "edc_chart")["layout"]["title"]["text"]


def test_a_run_without_held_out_identities_is_said_so(runs: Path) -> None:
    _tiny_run(runs / "closed", holdout=0)
    at = open_page(SCORE_PAGE)
    assert any("No held-out faces" in t and "held out 0 identities" in t for t in texts(at, "info"))
    assert not at.get("plotly_chart")
