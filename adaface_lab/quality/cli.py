"""``adaface-lab quality PATH... [--out scores.csv] [--backend] [--mode]``: BRISQUE scores to CSV.

Wiring into the ``adaface-lab`` console script (``adaface_lab.cli``)::

    from adaface_lab.quality import add_quality_subparser
    add_quality_subparser(subparsers)        # registers "quality", sets args.func
    ...
    args = parser.parse_args(argv); return args.func(args)

or call :func:`quality_main` with the arguments after ``quality``. Also runnable as
``python -m adaface_lab.quality PATH...``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._atomic import atomic_path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="image files, or folders (searched recursively for images)")
    p.add_argument(
        "--out", default="scores.csv", help="CSV to write (columns path,brisque,quality); '-' = stdout"
    )
    p.add_argument("--backend", choices=("torch", "pybrisque"), default="torch", help="default: torch")
    p.add_argument(
        "--mode",
        choices=("matlab", "pybrisque"),
        default=None,
        help="matlab (original) or pybrisque variant; default: matlab for torch, pybrisque for pybrisque",
    )
    p.add_argument("--batch-size", type=int, default=256, help="images scored per batch (default 256)")
    p.add_argument("--device", default=None, help="torch device for the torch backend (default cpu)")
    p.add_argument(
        "--cache",
        default=str(Path("data") / "cache" / "brisque.sqlite"),
        help="on-disk score cache keyed by content hash (default data/cache/brisque.sqlite)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk cache")


def add_quality_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``quality`` sub-command on an ``argparse`` subparsers object; sets ``func``."""
    p = subparsers.add_parser(
        "quality",
        help="BRISQUE scores of images to a CSV",
        description="Score images with BRISQUE (lower is better) and write path,brisque,quality rows.",
    )
    _add_arguments(p)
    p.set_defaults(func=run_quality)
    return p


def collect_images(paths: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded recursively to their image files (sorted). Missing -> error."""
    out: list[Path] = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {s}")
    return out


def _write_csv_atomic(out: str, rows: list[tuple[str, float, float]]) -> None:
    header = ("path", "brisque", "quality")
    if out == "-":
        w = csv.writer(sys.stdout)
        w.writerow(header)
        w.writerows(rows)
        return
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def run_quality(args: argparse.Namespace) -> int:
    """Score ``args.paths`` and write the CSV; returns the exit status (0)."""
    from .cache import BrisqueCache
    from .score import brisque, quality_from_brisque
    from .torch_backend import DegenerateImageWarning

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    files = collect_images(args.paths)
    if not files:
        raise FileNotFoundError(f"no image files found under {list(args.paths)}")
    cache = None if args.no_cache else BrisqueCache(path=args.cache)
    rows: list[tuple[str, float, float]] = []
    n_nan = 0
    with tqdm(total=len(files), desc="BRISQUE", unit="img", file=sys.stderr) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk = files[start : start + args.batch_size]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DegenerateImageWarning)  # counted and reported below
                scores = brisque(
                    [str(f) for f in chunk],
                    backend=args.backend,
                    mode=args.mode,
                    cache=cache if cache is not None else False,
                    device=args.device,
                    batch_size=args.batch_size,
                )
            for f, s in zip(chunk, scores.tolist()):
                rows.append((str(f), s, quality_from_brisque(s)))
                n_nan += s != s
            bar.update(len(chunk))
    _write_csv_atomic(args.out, rows)
    where = "stdout" if args.out == "-" else args.out
    msg = f"scored {len(rows)} images -> {where}"
    if n_nan:
        msg += f" ({n_nan} constant/degenerate: score NaN)"
    print(msg, file=sys.stderr)
    return 0


def quality_main(argv: Sequence[str] | None = None) -> int:
    """``adaface-lab quality`` as a function: ``argv`` are the arguments after ``quality``."""
    parser = argparse.ArgumentParser(
        prog="adaface-lab quality", description="BRISQUE scores of images to a CSV."
    )
    _add_arguments(parser)
    return run_quality(parser.parse_args(argv))
