"""The sweep's one progress bar: runs done (fractions of the runs under way included), how many are in each
state, and a line for each run that ends. It reads the status table (:func:`.sweep.sweep_status`), the
same one ``adaface-lab sweep --status`` prints and the app's Sweeps page shows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd
from tqdm.auto import tqdm

__all__ = ["Monitor"]

_ORDER = ("training", "measuring", "queued", "done", "failed", "stopped")


class Monitor:
    """``poll()`` redraws the bar from ``status()``; ``close()`` ends it. ``show=False``: nothing shown."""

    def __init__(self, status: Callable[[], pd.DataFrame], total: int, show: bool = True) -> None:
        self.status, self.show = status, show
        self.bar = tqdm(total=total, desc="sweep", unit="run", disable=not show, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} runs "
                                   "[{elapsed}<{remaining}{postfix}]")  # fmt: skip
        self.seen: dict[str, str] = {}

    def poll(self) -> None:
        try:
            table = self.status()
        except (FileNotFoundError, ValueError):  # the queue is being written
            return
        for _, row in table.iterrows():
            before = self.seen.get(row["run"])
            if before is not None and before != row["state"] and row["state"] in ("done", "failed", "stopped"):
                if self.show:
                    self.bar.write(f"{row['state']:>7}: {row['label']}" + (f" ({row['detail']})" if row["detail"] else ""))
            self.seen[row["run"]] = row["state"]
        counts = Counter(table["state"])
        self.bar.n = float(table["fraction"].sum())
        self.bar.set_postfix_str(", ".join(f"{counts[s]} {s}" for s in _ORDER if counts[s]), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
