"""The image quality inspector (page 4) in a real browser: served on localhost, Debian's headless Chromium
driven by Playwright (the server fixture and browser settings of tests/test_app_browser.py).

Opens /quality, moves the blur slider with the keyboard and waits for the rerun (the URL and the
BRISQUE metric change), uploads a file that is not an image through the real file input
(``set_input_files``) and expects the page's error message and no exception element, then uploads a
16-bit PNG (converted, with a note), points the page at a small checkpoint file and waits for the
norm → ẑ → margin charts; saves a screenshot to reports/screenshots/quality_inspector.png.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_app_browser import CHART_SELECTOR, CHROMIUM, CHROMIUM_ARGS, _step_slider, _wait_idle, app_url  # noqa: F401
from tests.test_app_quality_inspector import _hand_norms, _save_lightning, _tiny_weights

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "reports" / "screenshots" / "quality_inspector.png"
EXCEPTION = '[data-testid="stException"]'
ERROR = '[data-testid="stAlertContentError"]'
WARNING = '[data-testid="stAlertContentWarning"]'
METRIC = '[data-testid="stMetricValue"]'


@pytest.fixture(autouse=True)
def _empty_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The served app's default runs folder: an empty temporary one (set before the server starts)."""
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("ADAFACE_LAB_RUNS", str(tmp_path / "runs"))


def _face_16bit_png() -> bytes:
    """The astronaut face as a 16-bit grey PNG (values × 257, so the full 16-bit range is used)."""
    from adaface_lab.degrade import astronaut_face

    grey = astronaut_face(200).float().mean(0).numpy()
    buf = io.BytesIO()
    Image.fromarray((grey * 257).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def test_quality_inspector_in_chromium(app_url: str, tmp_path: Path) -> None:  # noqa: F811
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from _uploads import read_upload
    from adaface_lab.degrade import degrade

    # a small checkpoint whose head statistics put the uploaded face, before and after blur, inside ẑ's range
    face16 = _face_16bit_png()
    face = read_upload("face16.png", face16).image
    weights = _tiny_weights()
    norms = _hand_norms(weights, torch.stack([face, degrade(face, blur_sigma=1.0)]))
    mean, std = round(float(norms.mean()), 2), round(float(3 * abs(norms[0] - norms[1]) + 0.5), 2)
    ckpt = tmp_path / "tiny.ckpt"
    _save_lightning(ckpt, weights, mean, std)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2300})
            page.goto(f"{app_url}/quality", wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_selector(f"{CHART_SELECTOR} .main-svg", timeout=45_000)
            _wait_idle(page)
            assert "Image quality inspector" in page.locator('[data-testid="stSidebarNav"]').inner_text()
            before = page.locator(METRIC).first.inner_text()

            # blur σ: ten steps of 0.1 with the keyboard
            _step_slider(page, "blur σ", "1")
            page.wait_for_function("() => window.location.search.includes('blur=1')", timeout=30_000)
            _wait_idle(page)
            page.wait_for_function(
                f"(b) => document.querySelector('{METRIC}').innerText !== b", arg=before, timeout=30_000)
            assert float(page.locator(METRIC).first.inner_text()) > float(before)  # blur worsens BRISQUE here
            assert page.locator(EXCEPTION).count() == 0

            # a file that is not an image, through the real file input
            page.locator('[data-testid="stSidebar"] label').filter(has_text="upload").click()
            _wait_idle(page)
            upload = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            upload.set_input_files({"name": "notes.png", "mimeType": "image/png",
                                    "buffer": b"this is not a picture\n" * 50})
            page.wait_for_selector(ERROR, timeout=30_000)
            _wait_idle(page)
            assert "not an image" in page.locator(ERROR).first.inner_text()
            assert page.locator(EXCEPTION).count() == 0

            # a 16-bit PNG: converted, with a note, and scored
            upload.set_input_files({"name": "face16.png", "mimeType": "image/png", "buffer": face16})
            page.wait_for_selector(WARNING, timeout=30_000)
            _wait_idle(page)
            assert "16-bit" in page.locator(WARNING).first.inner_text()
            assert page.locator(ERROR).count() == 0 and page.locator(EXCEPTION).count() == 0
            page.wait_for_function(
                "() => document.querySelectorAll('[data-testid=\"stImage\"] img').length === 2", timeout=30_000)

            # a checkpoint: norm → ẑ → margin, and the feature plane at that norm
            page.locator('[data-testid="stMain"] label').filter(has_text="a run's checkpoint or a path").click()
            _wait_idle(page)
            path_box = page.locator('[data-testid="stTextInput"]').filter(has_text="checkpoint path").locator("input")
            path_box.fill(str(ckpt))
            path_box.press("Enter")
            page.wait_for_function(  # the sweep, the adaptive terms and the feature plane
                f"() => document.querySelectorAll('{CHART_SELECTOR}').length === 3", timeout=45_000)
            page.wait_for_selector(f"{CHART_SELECTOR} .heatmaplayer image, {CHART_SELECTOR} .hm image",
                                   state="attached", timeout=30_000)
            _wait_idle(page)
            main = page.inner_text('[data-testid="stMain"]')
            assert "Loaded: Lightning checkpoint: ir_tiny backbone" in main or "ir_tiny" in main, main[-800:]
            assert f"μ_z = {mean:.2f}, σ_z = {std:.2f}" in main  # the head's EMA buffers from the file
            assert page.locator(ERROR).count() == 0 and page.locator(EXCEPTION).count() == 0

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
