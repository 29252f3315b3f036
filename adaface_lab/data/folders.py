"""Face images in identity folders: ``root/<identity>/*.jpg`` (the LFW layout).

::

    ds = ImageFolderFaces("../shared/data/lfw_min20", size=112, center_crop=128)
    image, label, sample_id, meta = ds[0]   # uint8 (3, 112, 112) RGB, int, int, {"path": ..., ...}

Labels follow the sorted identity names; ``sample_id`` is the index in the sorted file list
(stable as long as the set of files is). Bad files are handled in two places:

1. **at index time** each file is checked and unreadable ones are left out of the index:
   ``check="header"`` (the default) reads each header (no pixel decoding: about 0.1 ms per
   file), which catches files that are not images or exceed ``max_pixels``; ``check="decode"``
   decodes every image once (about 1 ms each), which also catches files truncated after their
   header. Identities left without images are dropped, with a warning naming them;
2. **at read time** a file that still fails to decode (truncated after its header under
   ``check="header"``, or deleted since) is recorded in ``skipped`` with a warning, and the next
   good sample in index order is returned in its place, its ``meta["substituted_for"]`` naming
   the index asked for. An epoch never crashes on a bad file; ``num_skipped`` counts both kinds.
   The substitute carries its own ``sample_id``, so a consumer that records per sample must
   leave substituted samples out (or use ``check="decode"``, after which none occur unless files
   change while reading).
"""

from __future__ import annotations

import concurrent.futures
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .images import DEFAULT_MAX_PIXELS, CorruptImageError, SkipCounter, SkipReporting, decode_image, probe_image

__all__ = ["ImageFolderFaces", "IMAGE_EXTENSIONS"]

#: File extensions read by default (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

Sample = tuple[torch.Tensor, int, int, dict[str, str | int | float]]
Check = Literal["header", "decode", "none"]


class ImageFolderFaces(SkipReporting, Dataset[Sample]):
    """Identity-folder face data set yielding ``(image, label, sample_id, meta)``.

    Args:
        root: folder holding one sub-folder per identity.
        size: output side in pixels (images are (3, size, size) uint8 RGB); ``None`` keeps
            each image's own size (then batches need equal-sized files).
        center_crop: side of a centre square cut before resizing (e.g. 128 of LFW's 250).
        extensions: file extensions to read (case-insensitive).
        check: ``"header"`` reads every file header at index time, ``"decode"`` decodes every
            image at index time (see the module doc), ``"none"`` trusts the file names (fastest
            for huge folders).
        max_pixels: decompression-bomb guard passed to :func:`decode_image`.

    Attributes:
        identities: sorted identity names; ``label`` indexes this list.
        num_classes: ``len(identities)``.
        samples: ``(path, label)`` per sample, sorted by identity then file name.
        targets: label per sample (list of int).
        skipped: paths left out or skipped as unreadable; ``num_skipped`` their count.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int | None = 112,
        center_crop: int | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        check: Check = "header",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {self.root}")
        if check not in ("header", "decode", "none"):
            raise ValueError(f"check must be 'header', 'decode' or 'none', got {check!r}")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not exts:
            raise ValueError("extensions must not be empty")
        self.size, self.center_crop, self.max_pixels = size, center_crop, max_pixels
        self._skips = SkipCounter()

        # Scan: root/<identity>/<file>, both levels sorted, hidden entries ignored.
        found: list[tuple[str, Path]] = []
        for ident_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(ident_dir.iterdir()):
                if f.suffix.lower() in exts and not f.name.startswith(".") and f.is_file():
                    found.append((ident_dir.name, f))
        if not found:
            raise ValueError(
                f"no images found in {self.root}: expected root/<identity>/*{{{','.join(exts)}}}"
            )
        if check != "none":
            found = self._readable(found, check)

        self.identities: list[str] = sorted({ident for ident, _ in found})
        index = {name: i for i, name in enumerate(self.identities)}
        self.samples: list[tuple[str, int]] = [(str(f), index[ident]) for ident, f in found]
        self.targets: list[int] = [label for _, label in self.samples]

    def _readable(self, found: list[tuple[str, Path]], check: Check) -> list[tuple[str, Path]]:
        """The files of ``found`` that pass ``check`` (the rest recorded as skipped); warns about
        identities left without images."""
        kept = []
        what = "decoding" if check == "decode" else "checking"
        quiet = len(found) < (500 if check == "decode" else 5000)
        # Pillow decodes without the GIL: threads share a full decode among the cores.
        workers = min(8, os.cpu_count() or 1) if check == "decode" else 1
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            problems = pool.map(lambda item: self._problem(item[1], check), found, chunksize=16)
            for (ident, f), problem in zip(found, tqdm(problems, total=len(found), desc=f"{what} {self.root.name}",
                                                       unit="file", leave=False, disable=quiet)):  # fmt: skip
                if problem is None:
                    kept.append((ident, f))
                else:
                    self._skips.record(str(f), problem)
        if not kept:
            raise ValueError(f"no readable images in {self.root} ({self._skips.num_skipped} unreadable files)")
        lost = sorted({ident for ident, _ in found} - {ident for ident, _ in kept})
        if lost:
            shown = ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else "")
            warnings.warn(
                f"{self.root}: dropped {len(lost)} identit{'ies' if len(lost) > 1 else 'y'} left without a readable image "
                f"({shown})", RuntimeWarning, stacklevel=3,
            )  # fmt: skip
        return kept

    def _problem(self, path: Path, check: Check) -> str | None:
        """Why ``path`` fails ``check``, or None when it passes."""
        try:
            if check == "decode":
                self._decode(str(path))
            else:
                probe_image(path, max_pixels=self.max_pixels)
        except (CorruptImageError, OSError) as e:
            return str(e)
        return None

    # ----------------------------------------------------------------- reporting

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"ImageFolderFaces(root={str(self.root)!r}, images={len(self)}, identities={self.num_classes}, "
            f"size={self.size}, center_crop={self.center_crop}, skipped={self.num_skipped})"
        )

    # ----------------------------------------------------------------- reading

    def load(self, index: int) -> torch.Tensor:
        """Decode sample ``index`` (no substitution): uint8 (3, size, size) RGB; may raise."""
        return self._decode(self.samples[index][0])

    def _decode(self, path: str) -> torch.Tensor:
        return decode_image(path, size=self.size, center_crop=self.center_crop, max_pixels=self.max_pixels)

    def __getitem__(self, index: int) -> Sample:
        index, i, image = self._first_readable(
            index, len(self.samples), "samples", lambda j: self.samples[j][0], self.load,
            (CorruptImageError, OSError), f"every image in {self.root}",
        )  # fmt: skip
        path, label = self.samples[i]
        meta: dict[str, str | int | float] = {
            "path": path,
            "identity": self.identities[label],
            "substituted_for": -1 if i == index else index,
        }
        return image, label, i, meta
