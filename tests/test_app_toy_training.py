"""Streamlit AppTest checks of the Toy training page (app/views/toy_training.py).

Each test acts on widgets or opens a shared link and checks what the page then shows against the library:
the animation's last frame must hold the features that :func:`adaface_lab.toy.train_toy` records for the
settings on screen (trained here again, with the page's one torch thread, so bit for bit the same run), the
side-by-side mode trains only the head it lacks (the cache), and a shared link sets every control.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import adaface_lab.toy
from adaface_lab.toy import train_toy
from tests.app_pages import open_page, runs, texts  # noqa: F401
from tests.test_app import _decode

PAGE = "views/toy_training.py"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every train_toy call the page makes, as (head, its arguments), from an empty cache."""
    st.cache_data.clear()
    calls: list[tuple[str, dict[str, Any]]] = []
    real = adaface_lab.toy.train_toy

    def counting(head: str, steps: int, dim: int, seed: int, **kwargs: Any):
        progress = kwargs.pop("progress")
        reported: list[tuple[int, int]] = []
        run = real(head, steps, dim, seed, progress=lambda d, t: (reported.append((d, t)), progress(d, t)),
                   **kwargs)
        calls.append((head, {"steps": steps, "dim": dim, "seed": seed, "reported": reported, **kwargs}))
        return run

    monkeypatch.setattr(adaface_lab.toy, "train_toy", counting)
    return calls


def _spec(at: AppTest, key: str = "toy_feature_chart") -> dict[str, Any]:
    for element in at.get("plotly_chart"):
        if element.key == key:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no chart {key!r}")


def _last_frame_points(spec: dict[str, Any], panel: int, n_classes: int = 5) -> list[np.ndarray]:
    """Per class, the (n, D) features the last animation frame draws in ``panel`` (0-based)."""
    frame = spec["frames"][-1]
    first = panel * 2 * n_classes  # each panel's frame data: its classes' points, then its arrows
    out = []
    for trace in frame["data"][first:first + n_classes]:
        axes = [a for a in ("x", "y", "z") if a in trace]
        out.append(np.stack([_decode(trace[a]) for a in axes], axis=1))
    return out


def _assert_shows(spec: dict[str, Any], panel: int, run) -> None:
    """The panel's last frame draws exactly the run's features at its last recorded step."""
    assert spec["frames"][-1]["name"] == str(int(run.step[-1]))
    for c, points in enumerate(_last_frame_points(spec, panel)):
        np.testing.assert_allclose(points, run.features[-1][run.labels == c], rtol=1e-6, atol=1e-5)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_trains_what_the_sliders_say_after_train_is_pressed(trained) -> None:
    at = open_page(PAGE, {"steps": "60"})
    assert [head for head, _ in trained] == ["adaface"] and trained[0][1]["steps"] == 60
    assert trained[0][1]["reported"][-1] == (60, 60)  # the progress bar was fed to the end
    first = _spec(at)
    _assert_shows(first, 0, train_toy("adaface", 60, 2, 0, s=4.0, m=0.4, h=0.333))

    at.sidebar.slider(key="toy:m").set_value(0.6).run()
    at.sidebar.slider(key="toy:h").set_value(0.5).run()
    assert any("press **Train**" in t for t in texts(at, "info"))
    assert len(trained) == 1 and _spec(at)["frames"][-1] == first["frames"][-1]  # nothing trained yet

    at.button(key="toy:train").click().run()
    assert not at.exception and not texts(at, "info")
    assert trained[-1][1]["m"] == 0.6 and trained[-1][1]["h"] == 0.5 and trained[-1][1]["s"] == 4.0
    run = train_toy("adaface", 60, 2, 0, s=4.0, m=0.6, h=0.5)
    _assert_shows(_spec(at), 0, run)
    assert at.query_params["m"] == "0.6" and at.query_params["h"] == "0.5"
    clean = run.correct[-1][run.quality >= 1].mean()
    assert _metrics(at)["AdaFace: clean samples nearest their class"] == f"{100 * clean:.0f} %"


def test_side_by_side_trains_only_the_head_it_lacks(trained) -> None:
    at = open_page(PAGE, {"steps": "50"})
    at.sidebar.toggle(key="toy:pair").set_value(True).run()
    assert at.sidebar.selectbox(key="toy:versus").value == "arcface"  # ArcFace against AdaFace by default
    at.button(key="toy:train").click().run()
    assert not at.exception
    assert [head for head, _ in trained] == ["adaface", "arcface"]  # AdaFace came from the cache
    spec = _spec(at)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("AdaFace") and titles[1].startswith("ArcFace")
    _assert_shows(spec, 1, train_toy("arcface", 50, 2, 0, s=4.0, m=0.4))
    assert "ArcFace: mean ‖z‖ of clean − the rest" in _metrics(at)

    at.sidebar.toggle(key="toy:pair").set_value(False).run()
    at.button(key="toy:train").click().run()
    assert len(trained) == 2 and len(_spec(at)["layout"]["annotations"]) == 1  # back to one, no training


def test_a_shared_link_sets_head_scale_and_sphere(trained) -> None:
    at = open_page(PAGE, {"loss": "sphereface", "dim": "3", "steps": "50", "ts": "8", "degraded": "0.5",
                          "conv": "detached"})
    keys = {s.key for s in at.sidebar.slider}
    assert "toy:sm" in keys and "toy:h" not in keys and "toy:m" not in keys  # SphereFace's own m
    head, args = trained[-1]
    assert head == "sphereface" and args["dim"] == 3 and args["s"] == 8.0 and args["degraded"] == 0.5
    assert args["detach_margin"] is True and args["record_every"] == 1
    spec = _spec(at)
    assert {t["type"] for t in spec["data"][:10]} == {"scatter3d"}
    assert "s = 8" in spec["layout"]["annotations"][0]["text"]
    _assert_shows(spec, 0, train_toy("sphereface", 50, 3, 0, s=8.0, m=1.35, degraded=0.5, detach_margin=True))


def test_a_long_run_records_a_bounded_number_of_steps(trained) -> None:
    at = open_page(PAGE, {"steps": "1200", "loss": "softmax"})
    head, args = trained[-1]
    assert args["steps"] == 1200 and args["record_every"] == 4
    assert _spec(at)["frames"][-1]["name"] == "1199"  # the last step is recorded all the same


def test_bad_values_in_the_link_fall_back_to_defaults(trained) -> None:
    at = open_page(PAGE, {"loss": "nope", "dim": "7", "steps": "-5", "degraded": "abc"})
    head, args = trained[-1]
    assert head == "adaface" and args["dim"] == 2 and args["steps"] == 20 and args["degraded"] == 0.3
    assert not texts(at, "error")


def test_gst_slider_shows_abs_g_at_that_step(trained) -> None:
    at = open_page(PAGE, {"steps": "50"})
    run = train_toy("adaface", 50, 2, 0, s=4.0, m=0.4, h=0.333)
    at.select_slider(key="toy:gst_step").set_value(int(run.step[10])).run()
    assert not at.exception
    spec = _spec(at, "toy_gst_chart")
    assert f"step {int(run.step[10])}" in spec["layout"]["title"]["text"]
    shown = np.concatenate([_decode(trace["y"]) for trace in spec["data"]])
    np.testing.assert_allclose(np.sort(shown), np.sort(np.abs(run.g[10])), rtol=1e-6)
