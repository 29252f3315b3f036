"""Per-image BRISQUE cache keyed by content hash: an in-memory LRU, optionally backed by SQLite on disk.

Key: BLAKE2b-128 of (backend, mode, shape, uint8 pixels), so the same pixels scored the same way are
computed once, whatever file or tensor they came from. NaN scores (degenerate images) are cached too.
The on-disk store is one SQLite file (default ``data/cache/brisque.sqlite``); SQLite's transactions
make each write atomic, and several processes may share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DEFAULT_DISK_PATH = Path("data") / "cache" / "brisque.sqlite"


def content_key(pixels: np.ndarray, backend: str, mode: str) -> str:
    """Hex key of one uint8 image (any layout; its shape is part of the key) scored by backend/mode."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"cache keys are computed on uint8 pixels, got {pixels.dtype}")
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{backend}|{mode}|{pixels.shape}|".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


class BrisqueCache:
    """LRU of ``max_items`` scores in memory; with ``path``, also read from / written to SQLite there."""

    def __init__(self, max_items: int = 200_000, path: str | os.PathLike[str] | None = None) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.path = Path(path) if path is not None else None
        self._mem: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (committed on success), always closed."""
        con = sqlite3.connect(self.path, timeout=30)
        try:
            with con:
                yield con
        finally:
            con.close()

    def __len__(self) -> int:
        return len(self._mem)

    def get_many(self, keys: list[str]) -> dict[str, float]:
        """The cached scores among ``keys`` (memory first, then disk); counts hits and misses."""
        found: dict[str, float] = {}
        with self._lock:
            for k in keys:
                if k in self._mem:
                    self._mem.move_to_end(k)
                    found[k] = self._mem[k]
        missing = [k for k in keys if k not in found]
        if missing and self.path is not None:
            with self._connect() as con:
                for start in range(0, len(missing), 500):  # SQLite's parameter limit
                    part = missing[start : start + 500]
                    rows = con.execute(
                        f"SELECT key, score FROM scores WHERE key IN ({','.join('?' * len(part))})", part
                    ).fetchall()
                    for k, v in rows:  # NULL stores NaN
                        found[k] = math.nan if v is None else float(v)
            self._remember({k: found[k] for k in missing if k in found})
        with self._lock:
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def put_many(self, scores: dict[str, float]) -> None:
        """Store scores in memory and, if on disk, in one transaction."""
        self._remember(scores)
        if self.path is not None and scores:
            rows = [(k, None if math.isnan(v) else float(v)) for k, v in scores.items()]
            with self._connect() as con:
                con.executemany("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", rows)

    def _remember(self, scores: dict[str, float]) -> None:
        with self._lock:
            for k, v in scores.items():
                self._mem[k] = float(v)
                self._mem.move_to_end(k)
            while len(self._mem) > self.max_items:
                self._mem.popitem(last=False)

    def clear_memory(self) -> None:
        """Forget the in-memory entries (the disk store, if any, is kept)."""
        with self._lock:
            self._mem.clear()


_DEFAULT: BrisqueCache | None = None


def default_cache() -> BrisqueCache:
    """The process-wide in-memory cache used by ``brisque(..., cache=True)``."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = BrisqueCache()
    return _DEFAULT
