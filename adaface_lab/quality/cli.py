"""``adaface-lab quality PATH... [--out scores.csv] [--backend] [--mode]``: BRISQUE scores to CSV.

Wiring into the ``adaface-lab`` console script (``adaface_lab.cli``)::

    from adaface_lab.quality import add_quality_subparser
    add_quality_subparser(subparsers)        # registers "quality", sets args.func
    ...
    args = parser.parse_args(argv); return args.func(args)

or call :func:`quality_main` with the arguments after ``quality``. Also runnable as
``python -m adaface_lab.quality PATH...``.

Images are decoded as the training reader decodes them (:func:`adaface_lab.data.decode_image`:
16-bit scaled to 8 bits, alpha over black, EXIF rotation), and files with more than
``--max-pixels`` pixels (40 MP by default) are refused before decoding. A file that cannot be
read is skipped, named on stderr and counted, and the others are written. A failure (a missing
path, ``--out`` naming a folder, no readable image at all, ...) prints one ``error: ...`` line
and exits with status 2, writing nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._atomic import atomic_path
from ..data.images import DEFAULT_MAX_PIXELS, CorruptImageError
from ..errors import one_line
from .score import brisque, load_image, quality_from_brisque

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
)
#: BRISQUE's smallest image side (its 7x7 window on the half-size second scale).
MIN_SIDE = 8
#: Pixels decoded and scored together at most (a larger image is scored alone). The torch backend
#: needs about 170 bytes per pixel (measured at 4 and 10 MP), so a batch costs at most about 1.4 GB
#: (a 40 MP image alone, the most --max-pixels lets through by default, about 7 GB).
BATCH_PIXELS = 8_000_000
#: Skipped files named one per line on stderr; the rest are counted.
SKIPS_LISTED = 20


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
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"skip images with more pixels than this, unread (default {DEFAULT_MAX_PIXELS:,}, as the training reader)",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")


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


def _check_out(out: str) -> None:
    """Refuse an ``--out`` that cannot be written before any image is scored."""
    if out == "-":
        return
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name, e.g. {path / 'scores.csv'}")
    parent = path.parent
    while not parent.exists():  # atomic_path creates the missing folders
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: no permission to write in {parent}")


def _readable(path: Path, max_pixels: int) -> tuple[np.ndarray | None, str]:
    """(H, W, 3) uint8 pixels of ``path`` and "", or None and why it cannot be scored."""
    try:
        pixels = load_image(path, max_pixels=max_pixels)
    except CorruptImageError as e:  # also ImageTooLargeError
        return None, e.reason
    except OSError as e:  # deleted since it was listed, no permission, ...
        return None, e.strerror or type(e).__name__
    if min(pixels.shape[:2]) < MIN_SIDE:
        return None, f"{pixels.shape[1]}x{pixels.shape[0]} pixels: BRISQUE needs at least {MIN_SIDE}x{MIN_SIDE}"
    return pixels, ""


def _batches(files: list[Path], args: argparse.Namespace, skipped: list[tuple[Path, str]]) -> Iterator[tuple[list[Path], list[np.ndarray]]]:
    """Decoded images in batches of at most ``args.batch_size`` images and :data:`BATCH_PIXELS` pixels
    (a single larger image goes alone); unreadable files are appended to ``skipped``."""
    names: list[Path] = []
    pixels: list[np.ndarray] = []
    total = 0
    for f in files:
        image, why = _readable(f, args.max_pixels)
        if image is None:
            skipped.append((f, why))
            if len(skipped) <= SKIPS_LISTED:
                tqdm.write(f"skipped {f}: {why}", file=sys.stderr)
            continue
        n = image.shape[0] * image.shape[1]
        if names and (len(names) == args.batch_size or total + n > BATCH_PIXELS):
            yield names, pixels
            names, pixels, total = [], [], 0
        names.append(f)
        pixels.append(image)
        total += n
    if names:
        yield names, pixels


def _score_files(args: argparse.Namespace) -> int:
    """The work of ``adaface-lab quality``; raises on a failure (see :func:`run_quality`)."""
    from .cache import BrisqueCache
    from .torch_backend import DegenerateImageWarning

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    _check_out(args.out)
    files = collect_images(args.paths)
    if not files:
        raise FileNotFoundError(f"no image files found under {' '.join(args.paths)}")
    cache = None if args.no_cache else BrisqueCache(path=args.cache)
    rows: list[tuple[str, float, float]] = []
    skipped: list[tuple[Path, str]] = []
    with tqdm(total=len(files), desc="BRISQUE", unit="img", file=sys.stderr) as bar:
        for names, pixels in _batches(files, args, skipped):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DegenerateImageWarning)  # counted and reported below
                scores = brisque(pixels, backend=args.backend, mode=args.mode, cache=cache if cache is not None else False,
                                 device=args.device, batch_size=args.batch_size)  # fmt: skip
            rows += [(str(f), s, quality_from_brisque(s)) for f, s in zip(names, scores.tolist())]
            bar.n = len(rows) + len(skipped)
            bar.refresh()
    if not rows:
        first, why = skipped[0]
        if len(files) == 1:
            raise ValueError(f"cannot score {first}: {why}")
        raise ValueError(f"none of the {len(files)} image files could be scored (the first, {first}: {why})")
    _write_csv_atomic(args.out, rows)
    print(_summary(rows, skipped, args.out), file=sys.stderr)
    return 0


def _summary(rows: list[tuple[str, float, float]], skipped: list[tuple[Path, str]], out: str) -> str:
    msg = f"scored {len(rows)} images -> {'stdout' if out == '-' else out}"
    n_nan = sum(s != s for _, s, _ in rows)
    if n_nan:
        msg += f"; {n_nan} constant/degenerate (score NaN)"
    if skipped:
        listed = "listed above" if len(skipped) <= SKIPS_LISTED else f"the first {SKIPS_LISTED} listed above"
        msg += f"; skipped {len(skipped)} file{'s' * (len(skipped) != 1)} ({listed})"
    return msg


def run_quality(args: argparse.Namespace) -> int:
    """Score ``args.paths`` and write the CSV. Returns the exit status: 0 when the CSV is written
    (unreadable files are skipped, listed and counted), 2 on a failure (one ``error: ...`` line on
    stderr, no traceback unless ``--debug``; nothing written), 130 on Ctrl-C."""
    try:
        return _score_files(args)
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as e:  # every failure ends in one line; --debug shows the traceback
        if getattr(args, "debug", False):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


def quality_main(argv: Sequence[str] | None = None) -> int:
    """``adaface-lab quality`` as a function: ``argv`` are the arguments after ``quality``."""
    parser = argparse.ArgumentParser(
        prog="adaface-lab quality", description="BRISQUE scores of images to a CSV."
    )
    _add_arguments(parser)
    return run_quality(parser.parse_args(argv))
