"""The toy training page in a real browser: the animation plays, pauses and scrubs in the browser alone.

Served on localhost and driven in Debian's headless Chromium (the server fixture and browser settings of
tests/test_app_browser.py). Opens a shared link to the side-by-side mode (AdaFace and ArcFace), presses
Play and watches the plotly slider advance through the frames, pauses, and drags the slider; after each,
the points drawn must be exactly that frame's points. Throughout, the server must see no rerun, checked two
ways: the page's run counter (a hidden element the script rewrites on every run) does not move, and the
browser sends no ``rerun_script`` message on the websocket. Pressing the page's Train button at the end
must move both, so the two detectors are shown to see a rerun. Saves a screenshot to
reports/screenshots/toy_training.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg

from tests.test_app_browser import CHROMIUM, CHROMIUM_ARGS, ERROR_SELECTOR, _wait_idle, app_url  # noqa: F401

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "reports" / "screenshots" / "toy_training.png"
FEATURES = '[data-testid="stPlotlyChart"]:has(.updatemenu-button)'
GD = f"document.querySelector('{FEATURES} .js-plotly-plot')"
# the slider's active frame, that frame's name, and whether the drawn points of every trace the frames
# move equal the frame's own (base64 float32) coordinates
SHOWN = """() => {
  const gd = %s, active = gd._fullLayout.sliders[0].active, frame = gd._transitionData._frames[active];
  const decode = (a) => a.bdata ? Array.from(new Float32Array(Uint8Array.from(atob(a.bdata), c => c.charCodeAt(0)).buffer)) : Array.from(a);
  const same = frame.traces.every((t, i) => ['x', 'y'].every(axis => {
    const want = decode(frame.data[i][axis]), got = Array.from(gd._fullData[t][axis]);
    return want.length === got.length && want.every((v, j) => Math.abs(v - got[j]) < 1e-4);
  }));
  return {active, name: frame.name, frames: gd._transitionData._frames.length, same};
}""" % GD
RUNS = "() => Number(document.getElementById('toy-script-runs').dataset.runs)"


def _shown(page) -> dict:
    return page.evaluate(SHOWN)


def _slider_label(page) -> str:
    """The text plotly writes above the slider ("step N")."""
    return page.locator(f"{FEATURES} .slider-group > .slider-label").first.text_content()


def test_toy_animation_plays_and_scrubs_without_reruns(app_url: str) -> None:  # noqa: F811
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install_chromium.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    reruns: list[int] = []

    def watch(ws) -> None:
        def sent(payload) -> None:
            if isinstance(payload, (bytes, bytearray)) and BackMsg.FromString(bytes(payload)).WhichOneof("type") == "rerun_script":
                reruns.append(1)
        ws.on("framesent", sent)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.on("websocket", watch)
            page.goto(f"{app_url}/toy?pair=1", wait_until="domcontentloaded", timeout=30_000)
            page.wait_for_selector(f"{FEATURES} .main-svg", timeout=180_000)
            _wait_idle(page, 120_000)
            page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= 3",
                                   timeout=60_000)
            assert page.locator(ERROR_SELECTOR).count() == 0, page.locator(ERROR_SELECTOR).first.inner_text()
            titles = page.locator(f"{FEATURES} .g-gtitle, {FEATURES} .annotation-text").all_text_contents()
            assert any(t.startswith("AdaFace") for t in titles) and any(t.startswith("ArcFace") for t in titles), titles

            runs_before, reruns_before = page.evaluate(RUNS), len(reruns)
            start = _shown(page)
            assert start["active"] == start["frames"] - 1 and start["same"], start  # opens at the last step

            # ---- Play: the slider runs through the frames, from the first
            buttons = page.locator(f"{FEATURES} .updatemenu-button")
            assert buttons.nth(0).text_content().endswith("Play")
            buttons.nth(0).click()
            seen = []
            for _ in range(30):
                page.wait_for_timeout(100)
                seen.append(_shown(page)["active"])
            assert len(set(seen)) >= 5, seen
            assert seen[0] < start["active"] and seen[-1] > seen[0], seen  # restarted, then moved forward

            # ---- Pause: it stays where it is, and shows that frame's points
            buttons.nth(1).click()
            page.wait_for_timeout(300)
            paused = _shown(page)
            page.wait_for_timeout(800)
            assert _shown(page) == paused and paused["same"], paused

            # ---- Scrub: drag the slider's grip to the middle of its rail
            grip = page.locator(f"{FEATURES} .slider-grip-rect").first.bounding_box()
            rail = page.locator(f"{FEATURES} .slider-rail-rect").first.bounding_box()
            y = grip["y"] + grip["height"] / 2
            page.mouse.move(grip["x"] + grip["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(rail["x"] + 0.5 * rail["width"], y, steps=12)
            page.mouse.up()
            page.wait_for_timeout(500)
            scrubbed = _shown(page)
            middle = (scrubbed["frames"] - 1) / 2
            assert abs(scrubbed["active"] - middle) <= 3 and scrubbed["same"], scrubbed
            assert _slider_label(page) == f"step {scrubbed['name']}"

            # ---- none of it reran the script
            assert page.evaluate(RUNS) == runs_before
            assert len(reruns) == reruns_before

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)  # mid-way through training, scrubbed there

            # ---- and both detectors do see a rerun: the page's own Train button
            page.get_by_role("button", name="Train").click()
            page.wait_for_function(f"() => ({RUNS})() > {runs_before}", timeout=60_000)
            assert len(reruns) > reruns_before
        finally:
            browser.close()
