"""How much memory a call takes at its peak, for the tests that feed readers crafted files.

Two measures, the larger counts: the rise of the process's resident-set peak (Linux: the peak is
reset through ``/proc/self/clear_refs`` before the call and read from ``VmHWM`` after it), which
sees every allocation that touches memory, C libraries' included; and tracemalloc's peak, which
sees every allocation made through Python's allocators (bytes, lists, NumPy arrays) even when its
pages are never touched, such as a buffer sized from a crafted length field.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_resident_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def peak_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(peak bytes above the level at the start, fn's result or the exception it raised) of ``fn()``."""
    rss_start = _status_kib("VmRSS")
    resident = rss_start is not None and _reset_resident_peak()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    traced_start = tracemalloc.get_traced_memory()[0]
    try:
        outcome: Any = fn()
    except Exception as e:  # the caller inspects it
        outcome = e
    traced_peak = tracemalloc.get_traced_memory()[1] - traced_start
    if started:
        tracemalloc.stop()
    rss_peak = 0
    if resident:
        hwm = _status_kib("VmHWM")
        rss_peak = 1024 * (hwm - rss_start) if hwm is not None and rss_start is not None else 0
    return max(traced_peak, rss_peak), outcome
