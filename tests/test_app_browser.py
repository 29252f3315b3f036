"""The app in a real browser: served on localhost, Debian's headless Chromium driven by Playwright.

Opens a shared link to the gallery first (the router must handle it on a fresh server), then
loads the margin explorer, moves the ‖z‖ slider with the keyboard, waits for the rerun (the app
writes the new value into the URL and into the AdaFace-terms chart), checks that no error element
is on the page and that the charts are drawn, and saves a screenshot to
reports/screenshots/margin_explorer.png (and to $ADAFACE_LAB_SCREENSHOT when set).

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
CHART_SELECTOR = '[data-testid="stPlotlyChart"]'


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


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """`streamlit run app/streamlit_app.py` on a free localhost port; always stopped afterwards."""
    port = _free_port()
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


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
