"""The app in a real browser: served on localhost, Debian's headless Chromium driven by Playwright.

Opens a shared link to the gallery first (the router must handle it on a fresh server), then
loads the margin explorer, moves the ‖z‖ slider with the keyboard, waits for the rerun (the app
writes the new value into the URL and into the AdaFace-terms chart), checks that no error element
is on the page and that the charts are drawn, and saves a screenshot to
reports/screenshots/margin_explorer.png (and to $ADAFACE_LAB_SCREENSHOT when set).

A second test checks how a slider move reaches the browser: the charts are updated in place
(the same graph elements, ``Plotly.react``), and a chart the control does not affect is neither
sent nor redrawn.

Chromium comes from Debian (scripts/install_chromium.sh); Playwright's own browser downloads are
never used. A missing Chromium fails this test, it does not skip it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
CHROMIUM = Path(os.environ.get("ADAFACE_LAB_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = ROOT / "reports" / "screenshots" / "margin_explorer.png"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ERROR_SELECTOR = '[data-testid="stException"], [data-testid="stAlertContentError"]'
CHART_SELECTOR = ".js-plotly-plot"
"""A Plotly graph, however the page drew it (app/_charts.py's component or st.plotly_chart)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"streamlit not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def served(log: Path, tree: Path = ROOT) -> Iterator[tuple[str, int]]:
    """`streamlit run` of the app in ``tree`` (importing that tree's adaface_lab) on a free
    localhost port: its URL and the server's process id; always stopped afterwards."""
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(tree / "app" / "streamlit_app.py"),
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """The app of this tree, served on localhost for one test."""
    with served(tmp_path / "streamlit.log") as (url, _):
        yield url


def _wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit's "running" indicator is gone."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
        timeout=timeout_ms,
    )


def _step_slider(page, label: str, target: str, key: str = "ArrowRight", max_presses: int = 40) -> None:
    """Move the slider labelled ``label`` with the keyboard until its value reads ``target``.

    One key press at a time, re-focusing the thumb before each: a Streamlit rerun can redraw the
    widget mid-sequence and drop a press, so the presses are counted by the value they reach, not
    assumed. Fails if the value never gets there.
    """
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).locator('input[type="range"]')
    for _ in range(max_presses):
        if thumb.input_value() == target:
            return
        thumb.focus()
        thumb.press(key)
        page.wait_for_timeout(50)
    assert thumb.input_value() == target, f"slider {label!r} stuck at {thumb.input_value()}, wanted {target}"


def test_margin_explorer_in_chromium(app_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh "
                    "(apt-get install chromium) before this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1450})
            # A shared link to page 2 as the fresh server's first request: the router must run
            # (our navigation in the sidebar, not Streamlit's folder-based one).
            page.goto(f"{app_url}/gallery?s=32", wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_selector(f"{CHART_SELECTOR} .main-svg", timeout=45_000)
            _wait_idle(page)
            nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Margin explorer" in nav and "Method gallery" in nav, nav
            assert "s = 32" in page.inner_text('[data-testid="stMain"]')
            assert page.locator(ERROR_SELECTOR).count() == 0

            page.goto(app_url, wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_selector(f"{CHART_SELECTOR} .main-svg", timeout=45_000)
            _wait_idle(page)
            page.wait_for_function(
                f"() => document.querySelectorAll('{CHART_SELECTOR} .main-svg').length >= 4",
                timeout=30_000,
            )
            assert "‖z‖ = 30 →" in page.inner_text("body")

            # Move the ‖z‖ slider four steps (0.5 each) with the keyboard.
            _step_slider(page, "feature norm", "32")
            page.wait_for_function("() => window.location.search.includes('norm=32')",
                                   timeout=30_000)
            _wait_idle(page)
            page.wait_for_function(
                "() => document.body.innerText.includes('‖z‖ = 32 →')", timeout=30_000)

            assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
            charts = page.locator(CHART_SELECTOR)
            assert charts.count() == 4
            # plotly drew something: the feature plane's heatmap and the curves' paths
            heatmap = f"{CHART_SELECTOR} .heatmaplayer image, {CHART_SELECTOR} .hm image"
            assert page.locator(heatmap).count() >= 1
            assert page.locator(f"{CHART_SELECTOR} .scatterlayer .trace path").count() >= 8

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            extra = os.environ.get("ADAFACE_LAB_SCREENSHOT")
            if extra:
                Path(extra).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=extra, full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


_RENDERS = r"""() => Array.from(document.querySelectorAll('.adaface-lab-chart')).map(gd => {
  gd.__probe = gd.__probe || Math.random();
  return {probe: gd.__probe, renders: Number(gd.dataset.renders),
          title: ((gd.layout && gd.layout.title && gd.layout.title.text) || '').replace(/<\/?b>/g, '')};
})"""


def test_a_slider_move_updates_only_its_charts_in_place(app_url: str) -> None:
    """Moving φ on the explorer redraws the plane and both curve charts where they are: the same
    graph elements (not new ones), each redrawn once more; AdaFace's terms chart, which φ does not
    change, is not redrawn, and the page's websocket brings no sidebar widget."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1450})
            frames: list[bytes] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(
                f if isinstance(f, bytes) else f.encode())))
            page.goto(app_url, wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_function(
                "() => { const g = Array.from(document.querySelectorAll('.adaface-lab-chart')); "
                "return g.length === 4 && g.every(x => x.querySelector('.main-svg') && "
                "Number(x.dataset.renders) >= 1); }", timeout=45_000)
            _wait_idle(page)
            before = page.evaluate(_RENDERS)
            assert [c["title"].split(" (")[0] for c in before] == [
                "AdaFace", "Gradient scaling term", "Target logit f(θ<sub>y</sub>) / s",
                "AdaFace's adaptive terms"]
            frames.clear()

            _step_slider(page, "angle φ", "91")
            page.wait_for_function("() => window.location.search.includes('phi=91')", timeout=30_000)
            page.wait_for_function(
                "(b) => { const r = Array.from(document.querySelectorAll('.adaface-lab-chart'))"
                ".map(g => Number(g.dataset.renders)); return r[0] > b[0] && r[1] > b[1] && r[2] > b[2]; }",
                arg=[c["renders"] for c in before], timeout=30_000)
            _wait_idle(page)
            page.wait_for_timeout(500)  # anything late would show now
            after = page.evaluate(_RENDERS)

            assert [c["probe"] for c in after] == [c["probe"] for c in before]  # the same elements
            assert [a["renders"] - b["renders"] for a, b in zip(after, before)] == [1, 1, 1, 0]
            assert "φ = 91°" in after[1]["title"]
            received = b"".join(frames)
            assert b"terms_chart" not in received and b"plane_chart" in received
            assert b"margin m" not in received and b"scale s" not in received  # no sidebar widget
            assert page.locator(ERROR_SELECTOR).count() == 0
        finally:
            browser.close()
