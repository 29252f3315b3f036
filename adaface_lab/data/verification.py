"""1:1 verification pairs: InsightFace ``.bin`` files, LFW ``pairs.txt``, and pairs drawn from a data set.

All three give a :class:`VerificationPairs`: ``2P`` image sources where pair ``k`` is
``(sources[2k], sources[2k+1])``, the ``issame`` flags (P,), and the fold of each pair (P,)
for the 10-fold protocol::

    pairs = load_bin("lfw.bin")                                  # sources are encoded bytes
    pairs = load_pairs_txt("pairs.txt", "lfw/", center_crop=128)   # sources are paths
    pairs = pairs_from_identities(ds, held_out_labels, n_pairs=600, seed=0)
    images, valid = pairs.load_images()                          # uint8 (2P, 3, H, W), (P,) bool

``.bin`` files are pickles, so they are read with an unpickler whose ``find_class`` refuses
every global (the only exceptions rebuild plain ``bytes``/``bytearray`` from their
protocol-2 encoding). A pickle that would call code raises :class:`UnsafePickleError`
before anything runs.

**Limits.** What a ``.bin`` costs is bounded by its size, whatever it claims: before unpickling,
every length field and memo index is checked against the bytes the file holds (a pickle can
otherwise make the unpickler allocate what a length field says); while unpickling, the bytes
rebuilt from text may not exceed the file's size; and the images may reference at most
:data:`MAX_REFERENCE_RATIO` times the image bytes the file holds (one image referenced thousands
of times is refused: it would be decoded thousands of times). :meth:`VerificationPairs.load_images`
refuses to allocate more than ``max_bytes`` (4 GiB by default) and says so before decoding them all.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import pickletools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .images import DEFAULT_MAX_PIXELS, CorruptImageError, decode_image, encode_jpeg
from .._atomic import atomic_path

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_REFERENCE_RATIO",
    "UnsafePickleError",
    "VerificationPairs",
    "load_bin",
    "write_bin",
    "load_pairs_txt",
    "pairs_from_identities",
    "kfold_indices",
]


#: A ``.bin``'s images may add up to at most this many times the file's size (references to one
#: image count once per reference); beyond, the file is refused.
MAX_REFERENCE_RATIO = 2
#: Default limit of :meth:`VerificationPairs.load_images` on the decoded images, in bytes.
DEFAULT_MAX_BYTES = 4 * 2**30


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A ``.bin`` pickle asked for a global (a class or function): refused, nothing was run."""


class _OverBudget(ValueError):
    """A pickle asked for more memory than its file could hold (message without the file name)."""


# --------------------------------------------------------------------------- restricted unpickling


def _bytes_from_latin1(text: str = "", encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError("refused a bytes rebuild with an unexpected encoding")
    return text.encode("latin-1")


def _bytearray_from_latin1(text: str | bytes = b"", encoding: str = "latin1") -> bytearray:
    if isinstance(text, bytes):
        return bytearray(text)
    return bytearray(_bytes_from_latin1(text, encoding))


_ALLOWED = {
    ("_codecs", "encode"): _bytes_from_latin1,
    ("builtins", "bytes"): _bytes_from_latin1,
    ("__builtin__", "bytes"): _bytes_from_latin1,
    ("builtins", "bytearray"): _bytearray_from_latin1,
    ("__builtin__", "bytearray"): _bytearray_from_latin1,
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only bytes, bytearray, lists, tuples, bools, ints, floats, str, None,
    and rebuilds at most ``budget`` bytes through ``bytes``/``bytearray`` calls in all."""

    def __init__(self, file: io.BytesIO, budget: int) -> None:
        super().__init__(file, encoding="bytes")
        self._budget = budget

    def find_class(self, module: str, name: str) -> Any:
        try:
            rebuild = _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: a verification .bin holds only image bytes "
                f"and issame flags, never classes or functions"
            ) from None
        return functools.partial(self._rebuild, rebuild)

    def _rebuild(self, rebuild: Callable[..., bytes | bytearray], text: str | bytes = b"", *args: Any) -> bytes | bytearray:
        # The result has len(text) bytes: charge them before building it.
        self._budget -= len(text) if isinstance(text, (str, bytes)) else 0
        if self._budget < 0:
            raise _OverBudget("it rebuilds more bytes than the file holds (the same data used again and again)")
        return rebuild(text, *args)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: a verification .bin holds only plain data")


_MEMO_WRITES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_opcodes(data: bytes) -> None:
    """Walk the pickle's opcodes without building anything: every length field must fit in the
    bytes that follow (pickletools checks it) and every memo index must be below the number of
    opcodes before it (as a pickler writes them), so the unpickler never allocates what a crafted
    field claims. Raises ValueError (or pickle errors) on a malformed stream."""
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in _MEMO_WRITES and not (isinstance(arg, int) and 0 <= arg <= count):
            raise _OverBudget(f"memo index {arg} at opcode {count} is beyond any object the pickle made")


def _restricted_load(data: bytes) -> Any:
    _check_opcodes(data)
    return _DataOnlyUnpickler(io.BytesIO(data), budget=len(data)).load()


# --------------------------------------------------------------------------- the pairs object


def kfold_indices(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold index of each of ``n`` items for contiguous, unshuffled K-fold (as sklearn's KFold).

    The first ``n % n_folds`` folds get one extra item.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


class _DatasetImage:
    """Picklable loader: the image of sample ``i`` of a lab data set."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> torch.Tensor:
        return self.dataset[int(index)][0]


@dataclass
class VerificationPairs:
    """Pairs for 1:1 verification.

    Attributes:
        sources: 2P image sources (bytes, paths, or data-set indices); pair k is
            ``(sources[2k], sources[2k+1])``.
        issame: (P,) bool, True for a genuine (same-identity) pair.
        folds: (P,) int fold index in ``0..num_folds-1``.
        name: a label for reports.
        size, center_crop: decoding options for bytes/path sources.
        loader: how to turn a source into a uint8 (3, H, W) RGB image; default decodes
            bytes/paths with :func:`decode_image`.
        skipped: pairs dropped while building (e.g. missing files), as text.
        max_pixels: decompression-bomb guard for bytes/path sources (see :func:`decode_image`).
    """

    sources: list[Any]
    issame: np.ndarray
    folds: np.ndarray
    name: str = "pairs"
    size: int | None = None
    center_crop: int | None = None
    loader: Callable[[Any], torch.Tensor] | None = None
    skipped: list[str] = field(default_factory=list)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        self.issame = np.asarray(self.issame, dtype=bool).reshape(-1)
        self.folds = np.asarray(self.folds, dtype=np.int64).reshape(-1)
        if len(self.sources) != 2 * len(self.issame):
            raise ValueError(f"need 2 images per pair: {len(self.sources)} images for {len(self.issame)} pairs")
        if len(self.folds) != len(self.issame):
            raise ValueError(f"folds ({len(self.folds)}) and issame ({len(self.issame)}) differ in length")

    def __len__(self) -> int:
        return len(self.issame)

    def __repr__(self) -> str:
        return (
            f"VerificationPairs(name={self.name!r}, pairs={len(self)}, same={int(self.issame.sum())}, "
            f"folds={self.num_folds}, skipped={self.num_skipped})"
        )

    @property
    def num_folds(self) -> int:
        return int(self.folds.max()) + 1 if len(self.folds) else 0

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` of the 2P as uint8 (3, H, W) RGB; may raise CorruptImageError."""
        src = self.sources[i]
        if self.loader is not None:
            return self.loader(src)
        return decode_image(src, size=self.size, center_crop=self.center_crop, max_pixels=self.max_pixels)

    def pair(self, k: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Pair ``k``: (image a, image b, issame)."""
        return self.image(2 * k), self.image(2 * k + 1), bool(self.issame[k])

    def load_images(self, progress: bool = True, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[torch.Tensor, np.ndarray]:
        """Decode all 2P images: (uint8 (2P, 3, H, W), valid (P,) bool).

        An image that fails to decode becomes zeros, is warned about once, and marks its pair
        invalid, so an evaluation can leave it out and report the count. A source met again (held-out
        pairs reuse few images many times) is decoded once and copied. The output is allocated
        from the first decoded image's shape: ValueError when it would exceed ``max_bytes``, or as
        soon as an image of another shape turns up (pass ``size`` to resize them all).
        """
        n = len(self.sources)
        out: torch.Tensor | None = None
        valid = np.ones(len(self), dtype=bool)
        bad: list[int] = []
        first: dict[Any, int] = {}  # a source → where it was first decoded
        for i in tqdm(range(n), desc=f"decoding {self.name}", unit="img", disable=not progress or n < 2000):
            try:
                seen = first.setdefault(self.sources[i], i)
            except TypeError:  # an unhashable source: decoded every time
                seen = i
            if seen != i:
                if seen in bad or out is None:
                    valid[i // 2] = False
                    bad.append(i)
                else:
                    out[i] = out[seen]
                continue
            try:
                image = self.image(i)
            except (CorruptImageError, OSError) as e:
                valid[i // 2] = False
                bad.append(i)
                warnings.warn(f"{self.name}: image {i} unreadable ({e}); its pair is marked invalid", RuntimeWarning, stacklevel=2)
                continue
            if out is None:
                need = n * image.numel()
                if need > max_bytes:
                    raise ValueError(
                        f"{self.name}: {n} images of {tuple(image.shape)} need {need / 2**30:.1f} GiB, more than "
                        f"max_bytes={max_bytes / 2**30:.1f} GiB; pass size= to resize them on decoding"
                    )
                out = torch.empty((n, *image.shape), dtype=torch.uint8)  # (2P, 3, H, W)
            elif image.shape != out.shape[1:]:
                raise ValueError(
                    f"{self.name}: image {i} is {tuple(image.shape)} but earlier ones are {tuple(out.shape[1:])}; "
                    f"pass size= to resize them"
                )
            out[i] = image
        if out is None:
            raise CorruptImageError(self.name, "no image could be decoded")
        out[bad] = 0
        return out, valid


# --------------------------------------------------------------------------- .bin files


def load_bin(
    path: str | os.PathLike[str], size: int | None = None, n_folds: int = 10, max_pixels: int = DEFAULT_MAX_PIXELS
) -> VerificationPairs:
    """Read an InsightFace verification ``.bin`` (a pickle of ``(list of image bytes, list of issame)``).

    Uses a restricted unpickler: any class or function in the file raises
    :class:`UnsafePickleError` and nothing in it is executed. Folds follow the official
    evaluation (contiguous 10-fold over pairs). ``size`` resizes on decoding (``None`` keeps
    the stored 112x112); ``max_pixels`` bounds each stored image. See the module doc for the limits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification file not found: {path}")
    data = path.read_bytes()
    try:
        obj = _restricted_load(data)
    except UnsafePickleError:
        raise
    except _OverBudget as e:
        raise ValueError(f"{path} is refused: {e}") from None
    except Exception as e:
        raise ValueError(f"{path} is not a readable verification .bin: {type(e).__name__}: {e}") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{path}: expected a pickle of (image bytes list, issame list), got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: the first element must be a list of encoded images (bytes)")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(s, (bool, int)) and s in (0, 1) for s in issame):
        raise ValueError(f"{path}: the second element must be a list of bools")
    referenced = sum(len(b) for b in bins)
    if referenced > MAX_REFERENCE_RATIO * len(data):
        raise ValueError(
            f"{path} is refused: its {len(bins)} images reference {referenced:,} bytes of image data, more than "
            f"{MAX_REFERENCE_RATIO} x the file's {len(data):,} bytes (the same image used again and again)"
        )
    converted: dict[int, bytes] = {}  # one copy per distinct object, however often it is referenced
    for b in bins:
        if id(b) not in converted:
            converted[id(b)] = bytes(b)
    return VerificationPairs(
        sources=[converted[id(b)] for b in bins],
        issame=np.asarray(issame, dtype=bool),
        folds=kfold_indices(len(issame), n_folds),
        name=path.stem,
        size=size,
        max_pixels=max_pixels,
    )


def write_bin(
    path: str | os.PathLike[str],
    images: Sequence[bytes | torch.Tensor | np.ndarray],
    issame: Sequence[bool],
    jpeg_quality: int = 95,
) -> Path:
    """Write an InsightFace-style ``.bin``: pickle of (list of image bytes, list of bool), atomically.

    ``images`` are 2P encoded images (written unchanged) or uint8 (3, H, W) RGB arrays
    (JPEG-encoded); pair k is images 2k and 2k+1.
    """
    if len(images) != 2 * len(issame):
        raise ValueError(f"need 2 images per pair: {len(images)} images for {len(issame)} pairs")
    bins = [encode_jpeg(im, jpeg_quality) for im in images]
    flags = [bool(s) for s in issame]
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump((bins, flags), f, protocol=4)
    return path


# --------------------------------------------------------------------------- LFW pairs.txt


def load_pairs_txt(
    pairs_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    size: int | None = 112,
    center_crop: int | None = None,
    extension: str = "jpg",
    on_missing: Literal["error", "skip"] = "error",
) -> VerificationPairs:
    """Read LFW's ``pairs.txt`` over an identity folder.

    Format: a header ``"<folds>\\t<n>"`` (e.g. ``10 300``; a single number means one fold),
    then per fold ``n`` same-identity lines ``name i j`` and ``n`` different-identity lines
    ``name1 i name2 j``. Image ``name i`` is ``root/name/name_%04d.<extension>``.
    Missing files raise ``FileNotFoundError`` (``on_missing="error"``) or drop their pairs and
    are listed in ``skipped`` (``on_missing="skip"``).
    """
    pairs_path, root = Path(pairs_path), Path(root)
    if not pairs_path.is_file():
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    lines = [ln.split() for ln in pairs_path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{pairs_path} is empty")

    per_fold: int | None = None
    if all(tok.isdigit() for tok in lines[0]) and len(lines[0]) in (1, 2):
        header, lines = lines[0], lines[1:]
        n_folds, n = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
        per_fold = 2 * n
        if len(lines) != n_folds * per_fold:
            raise ValueError(
                f"{pairs_path}: header says {n_folds} folds x {n} same + {n} different pairs = "
                f"{n_folds * per_fold} lines, found {len(lines)}"
            )

    def image_path(name: str, number: str, lineno: int) -> Path:
        if not number.isdigit():
            raise ValueError(f"{pairs_path}:{lineno}: image number {number!r} is not an integer")
        return root / name / f"{name}_{int(number):04d}.{extension}"

    sources: list[Path] = []
    issame: list[bool] = []
    folds: list[int] = []
    skipped: list[str] = []
    offset = 2 if per_fold is not None else 1
    for j, tok in enumerate(lines):
        lineno = j + offset
        if len(tok) == 3:
            a, b, same = image_path(tok[0], tok[1], lineno), image_path(tok[0], tok[2], lineno), True
        elif len(tok) == 4:
            a, b, same = image_path(tok[0], tok[1], lineno), image_path(tok[2], tok[3], lineno), False
        else:
            raise ValueError(f"{pairs_path}:{lineno}: expected 3 (same) or 4 (different) fields, got {len(tok)}")
        missing = [str(p) for p in (a, b) if not p.is_file()]
        if missing:
            if on_missing == "error":
                raise FileNotFoundError(f"{pairs_path}:{lineno}: image not found: {missing[0]}")
            skipped.append(f"line {lineno}: missing {', '.join(missing)}")
            continue
        sources += [a, b]
        issame.append(same)
        folds.append(j // per_fold if per_fold is not None else -1)
    if not issame:
        raise ValueError(f"{pairs_path}: no usable pairs ({len(skipped)} skipped)")
    fold_arr = np.asarray(folds) if per_fold is not None else kfold_indices(len(issame), 10)
    if skipped:
        warnings.warn(f"{pairs_path}: {len(skipped)} pairs skipped for missing images", RuntimeWarning, stacklevel=2)
    return VerificationPairs(
        sources=sources,
        issame=np.asarray(issame),
        folds=fold_arr,
        name=pairs_path.stem,
        size=size,
        center_crop=center_crop,
        skipped=skipped,
    )


# --------------------------------------------------------------------------- pairs from a data set


def _dataset_targets(dataset: Any) -> np.ndarray:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr), dtype=np.int64)
    warnings.warn("data set has no `targets`: reading every sample to get labels (slow)", RuntimeWarning, stacklevel=3)
    return np.asarray([dataset[i][1] for i in tqdm(range(len(dataset)), desc="labels", unit="img")], dtype=np.int64)


def pairs_from_identities(
    dataset: Any,
    identities: Iterable[int],
    n_pairs: int,
    seed: int,
    n_folds: int = 10,
) -> VerificationPairs:
    """Draw ``n_pairs`` verification pairs (half same, half different) from the given labels.

    Args:
        dataset: any lab data set (``__getitem__`` -> (image, label, sample_id, meta)), with a
            ``targets`` attribute ideally (else labels are read sample by sample).
        identities: the labels to draw from, e.g. identities held out of training.
        n_pairs: number of pairs; ``n_pairs // 2`` genuine, the rest impostor, all distinct.
        seed: seed of the draw (same seed, same pairs).
        n_folds: folds for the 10-fold protocol; each fold holds an equal share of genuine and
            impostor pairs.

    Sources are indices into ``dataset``; images are read through it.
    """
    if n_pairs < 2:
        raise ValueError(f"n_pairs must be >= 2, got {n_pairs}")
    targets = _dataset_targets(dataset)
    ids = sorted({int(i) for i in identities})
    if len(ids) < 2:
        raise ValueError("need at least 2 identities to draw different-identity pairs")
    by_id = {c: np.flatnonzero(targets == c) for c in ids}
    absent = [c for c, idx in by_id.items() if len(idx) == 0]
    if absent:
        raise ValueError(f"identities not in the data set: {absent[:10]}")
    n_same, n_diff = n_pairs // 2, n_pairs - n_pairs // 2
    rng = np.random.default_rng(seed)

    multi = [c for c in ids if len(by_id[c]) >= 2]
    possible_same = sum(len(by_id[c]) * (len(by_id[c]) - 1) // 2 for c in multi)
    if n_same > possible_same:
        raise ValueError(f"only {possible_same} distinct same-identity pairs exist, {n_same} asked")
    same: dict[tuple[int, int], None] = {}
    while len(same) < n_same:
        c = multi[rng.integers(len(multi))]
        a, b = rng.choice(by_id[c], size=2, replace=False)
        same.setdefault((int(min(a, b)), int(max(a, b))), None)

    sizes = np.array([len(by_id[c]) for c in ids])
    possible_diff = (sizes.sum() ** 2 - (sizes**2).sum()) // 2
    if n_diff > possible_diff:
        raise ValueError(f"only {possible_diff} distinct different-identity pairs exist, {n_diff} asked")
    diff: dict[tuple[int, int], None] = {}
    while len(diff) < n_diff:
        c1, c2 = rng.choice(len(ids), size=2, replace=False)
        a, b = rng.choice(by_id[ids[c1]]), rng.choice(by_id[ids[c2]])
        diff.setdefault((int(min(a, b)), int(max(a, b))), None)

    same_chunks = np.array_split(np.asarray(list(same), dtype=np.int64).reshape(-1, 2), n_folds)
    diff_chunks = np.array_split(np.asarray(list(diff), dtype=np.int64).reshape(-1, 2), n_folds)
    sources: list[int] = []
    issame: list[bool] = []
    folds: list[int] = []
    for f in range(n_folds):
        for chunk, flag in ((same_chunks[f], True), (diff_chunks[f], False)):
            sources += chunk.ravel().tolist()
            issame += [flag] * len(chunk)
            folds += [f] * len(chunk)
    return VerificationPairs(
        sources=sources,
        issame=np.asarray(issame),
        folds=np.asarray(folds),
        name=f"pairs_from_identities(seed={seed})",
        loader=_DatasetImage(dataset),
    )
