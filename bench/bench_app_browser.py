"""The margin pages as a user feels them: headless Chromium, a key press on a slider, until the figures
show the new data; and a warm reload, until every figure is drawn (issue 16: ≤ 250 ms per press and
≤ 2 s per load, median, on 2 idle cores).

    python bench/bench_app_browser.py [--presses 12] [--loads 5] [--against REF | --against none]

For the margin explorer (key presses on the ‖z‖ slider: all four figures change) and the method
gallery (on the scale s: every plane of the grid and the curves change). Each press moves to a
value not seen before, so no cache helps; the clock starts at the key's keydown in the page and
stops at the first animation frame where every chart on the page holds data different from before
the press and every picture in them (a heatmap's, an image's) is decoded. With each press: the CPU
time it cost the server process and the page's main thread (Chrome's ThreadTime), which other work
on the machine inflates far less than the wall time, and the kilobytes the page received.

The app is measured alone first: the targets are judged there. Then ``--against REF`` serves a
second copy of the app, the git revision REF (default: the app before the in-place charts of issue
16), on its own port, and measures both side by side: presses and loads alternate between the two,
so that other work on the machine weighs on both alike (``--against none`` skips it). Two apps on
two cores slow each other, so the side-by-side numbers are for comparing the two columns, not for
the targets. The machine's load average is printed with the figures: timings on a shared machine
are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_app_browser import CHROMIUM, CHROMIUM_ARGS, served  # noqa: E402

BEFORE = "266af02"
"""The app before the in-place charts and per-figure fragments (issue 16)."""
TARGET_PRESS_MS, TARGET_LOAD_MS = 250.0, 2000.0
PAGES = (("margin explorer", "", "feature norm", 4), ("method gallery", "gallery", "scale s", 2))
"""(name, URL path, label of the slider pressed, number of figures)."""

# In the page: a per-chart signature of what it shows (title, annotation texts and samples of every
# trace's x, y, z and image source, whether plain arrays or plotly's base64 typed arrays), read from
# Plotly's own graph div, so that it works however the chart got there.
_SIGNATURES = r"""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
  const sample = (v) => {
    if (v === null || v === undefined) return '';
    if (typeof v === 'object' && v.bdata !== undefined) {
      const b = String(v.bdata), n = b.length; let out = n + ':';
      for (let k = 1; k < 16; k++) out += b.substr(Math.floor(n * k / 16), 8);
      return out;
    }
    if (v.length === undefined) return String(v);
    const n = v.length; let out = n + ':';
    for (let k = 0; k < 16; k++) {
      const e = v[Math.floor((n - 1) * k / 15)];
      out += (e !== null && typeof e === 'object') ? sample(e) : String(e);
      out += ',';
    }
    return out;
  };
  const layout = gd.layout || {};
  const texts = (layout.annotations || []).map(a => a.text).join('|');
  return JSON.stringify(layout.title || '') + texts + (gd.data || []).map(
    t => sample(t.x) + sample(t.y) + sample(t.z) + sample(t.source)).join(';');
})"""

# Logs (time, kind, size) of websocket messages received; the clock starts at a keydown.
_INIT = """(() => {
  window.__bench = {log: [], t0: 0};
  const log = (kind, size) => window.__bench.log.push([performance.now(), kind, size || 0]);
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Native(...args);
    ws.addEventListener('message', e => log('recv', e.data.byteLength || e.data.size || 0));
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
  document.addEventListener('keydown', () => { window.__bench = {log: [], t0: performance.now()}; },
                            true);
})();"""

_ARM = """([before, n, timeoutMs]) => {
  const signatures = %s;
  const old = new Set(before);
  const start = performance.now();
  // an image trace's picture is put in the page only once loaded, after its data are in place
  const sourcesShown = () => Array.from(document.querySelectorAll('.js-plotly-plot')).every(gd => {
    const shown = new Set(Array.from(gd.querySelectorAll('image')).map(
      im => im.getAttribute('href') || im.getAttribute('xlink:href')));
    return (gd.data || []).every(t => t.type !== 'image' || !t.source || shown.has(t.source));
  });
  window.__done = new Promise(resolve => {
    const tick = () => {
      const now = signatures();
      if (now.length === n && now.every(s => !old.has(s)) && sourcesShown()) {
        // pictures (a heatmap's, an image trace's) count once decoded, at the next frame
        const images = Array.from(document.querySelectorAll('.js-plotly-plot image'));
        Promise.all(images.map(im => im.decode().catch(() => null))).then(
          () => requestAnimationFrame(() => resolve(performance.now())));
      } else if (performance.now() - start > timeoutMs) {
        resolve(null);
      } else {
        requestAnimationFrame(tick);
      }
    };
    tick();
  });
}""" % _SIGNATURES

_DRAWN = """(n) => {
  const gds = Array.from(document.querySelectorAll('.js-plotly-plot'));
  return gds.length === n && gds.every(g => g._fullData && g._fullData.length &&
                                           g.querySelector('.main-svg'));
}"""


@dataclass
class Figures:
    """What one app copy measured on one page."""

    presses: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    received_kb: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    page_cpu: list[float] = field(default_factory=list)
    missed: int = 0


@dataclass
class Server:
    url: str
    pid: int

    def cpu_ms(self) -> float:
        """CPU time the server process has used so far (user + system, all threads), in ms."""
        fields_ = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return 1000.0 * (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(tree: Path, log: Path) -> Iterator[Server]:
    """The app of ``tree`` served on localhost (tests/test_app_browser.py's server)."""
    with served(log, tree.resolve()) as (url, pid):
        yield Server(url, pid)


def export_revision(ref: str, into: Path) -> Path:
    """The files of git revision ``ref`` of this repository, written under ``into``."""
    archive = into / "app.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), ref], cwd=ROOT, check=True)
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


class Session:
    """One app copy in one browser tab, on one page."""

    def __init__(self, browser, server: Server, path: str, label: str, n_charts: int) -> None:
        self.page = browser.new_page(viewport={"width": 1600, "height": 1450})
        self.page.add_init_script(_INIT)
        self.server, self.n = server, n_charts
        self.cdp = self.page.context.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        self.page.goto(f"{server.url}/{path}", wait_until="domcontentloaded", timeout=60_000)
        self._wait_drawn()
        self.thumb = (self.page.locator('[data-testid="stSlider"]').filter(has_text=label)
                      .locator('input[type="range"]'))

    def _wait_drawn(self) -> None:
        self.page.wait_for_function(_DRAWN, arg=self.n, timeout=90_000, polling="raf")
        self.page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)

    def _thread_ms(self) -> float:
        """CPU time of the page's main thread so far, in ms (Chrome's ThreadTime metric)."""
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return 1000.0 * next(m["value"] for m in metrics if m["name"] == "ThreadTime")

    def press(self, out: Figures) -> None:
        """One key press on the slider; the time until every chart shows new data, and the CPU
        time the server and the page's main thread spent until then."""
        self.page.wait_for_timeout(400)  # let the last run's tail settle
        before = self.page.evaluate(_SIGNATURES)
        self.page.evaluate(_ARM, [before, self.n, 30_000])
        self.thumb.focus()
        cpu = self.server.cpu_ms(), self._thread_ms()
        self.thumb.press("ArrowRight")
        done = self.page.evaluate("() => window.__done")
        bench = self.page.evaluate("() => window.__bench")
        if done is None or not bench["t0"]:
            out.missed += 1
            return
        out.server_cpu.append(self.server.cpu_ms() - cpu[0])
        out.page_cpu.append(self._thread_ms() - cpu[1])
        out.presses.append(done - bench["t0"])
        out.received_kb.append(sum(s for t, k, s in bench["log"] if k == "recv" and t <= done) / 1e3)
        self._wait_drawn()

    def load(self, out: Figures) -> None:
        """A warm reload: the time from navigation start until every chart is drawn."""
        self.page.reload(wait_until="commit", timeout=60_000)
        self.page.wait_for_function(_DRAWN, arg=self.n, timeout=90_000, polling="raf")
        out.loads.append(self.page.evaluate("() => performance.now()"))
        self._wait_drawn()


def _row(name: str, values: list[float], target: float | None = None) -> str:
    if not values:
        return f"  {name:34s} {'—':>9s}"
    med, worst = statistics.median(values), max(values)
    verdict = "" if target is None else f"   {'OK' if med <= target else 'OVER'} (target ≤ {target:.0f})"
    return f"  {name:34s} {med:9.0f} {worst:9.0f}{verdict}"


def measure(copies: dict[str, Server], presses: int, loads: int) -> dict[tuple[str, str], Figures]:
    """Presses and loads on every page, alternating between the app ``copies`` (name → server)."""
    from playwright.sync_api import sync_playwright

    results: dict[tuple[str, str], Figures] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            for page_name, path, label, n in PAGES:
                sessions = {name: Session(browser, server, path, label, n)
                            for name, server in copies.items()}
                for name in copies:
                    results[page_name, name] = Figures()
                for _ in range(loads):
                    for name, session in sessions.items():
                        session.load(results[page_name, name])
                for _ in range(presses):
                    for name, session in sessions.items():
                        session.press(results[page_name, name])
                for session in sessions.values():
                    session.page.close()
        finally:
            browser.close()
    return results


def report(results: dict[tuple[str, str], Figures], copies: list[str], load: tuple[float, ...],
           judge: bool = True) -> None:
    """Print ``results``; ``judge``: say OK/OVER against the targets (the app served alone)."""
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
          f" (1 / 5 / 15 min) before, {os.getloadavg()[0]:.2f} after")
    press_target, load_target = (TARGET_PRESS_MS, TARGET_LOAD_MS) if judge else (None, None)
    for page_name, *_ in PAGES:
        print(f"\n{page_name}{'':24s} {'median ms':>9s} {'worst ms':>9s}")
        for name in copies:
            f = results[page_name, name]
            print(f" [{name}]")
            print(_row(f"key press → figures updated ({len(f.presses)})", f.presses, press_target))
            print(_row(f"warm reload → figures drawn ({len(f.loads)})", f.loads, load_target))
            if f.presses:
                print(_row("  CPU per press: server ms", f.server_cpu))
                print(_row("  CPU per press: page main thread ms", f.page_cpu))
                print(_row("  received per press, kB", f.received_kb))
            if f.missed:
                print(f"  {f.missed} press(es) never showed new data within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=12, help="key presses per page and copy (≥ 10)")
    parser.add_argument("--loads", type=int, default=5, help="warm reloads per page and copy")
    parser.add_argument("--against", default=BEFORE,
                        help=f"git revision measured side by side (default {BEFORE}); 'none' to skip")
    parser.add_argument("--quick", action="store_true", help="(make bench --quick) fewer repeats")
    args = parser.parse_args()
    if args.quick:
        args.presses, args.loads = 10, 3
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: run scripts/install_chromium.sh")
        return 1
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_app_browser_")))
        this = {"this tree": stack.enter_context(serve(ROOT, scratch / "this.log"))}
        # 1. the targets: this app alone on the machine (a second app's server and page would share
        #    the two cores with it)
        print(f"Margin pages in headless Chromium, {args.presses} presses and {args.loads} warm loads "
              "per page: this tree served alone (the targets are judged here)")
        load = os.getloadavg()
        report(measure(this, args.presses, args.loads), list(this), load)
        if args.against.lower() == "none":
            return 0
        # 2. before and after: the reference revision beside it, presses and loads alternating
        try:
            before = export_revision(args.against, scratch)
        except (subprocess.CalledProcessError, OSError) as err:
            print(f"(no side-by-side copy: git revision {args.against!r} unavailable: {err})")
            return 0
        copies = {**this, args.against: stack.enter_context(serve(before, scratch / "before.log"))}
        print(f"\nSide by side, alternating between {', '.join(copies)} (both copies share the cores: "
              "compare the columns, not these numbers with the targets)")
        load = os.getloadavg()
        report(measure(copies, args.presses, args.loads), list(copies), load, judge=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
