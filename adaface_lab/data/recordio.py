"""InsightFace ``train.rec`` / ``train.idx`` (MXNet RecordIO) read and written without mxnet.

The format, as written by dmlc-core's ``RecordIOWriter`` and mxnet's ``recordio.pack``:

* **framing** (``.rec``): each record is ``uint32 magic 0xced7230a``, ``uint32 lrec``, the
  payload, then zero padding to a multiple of 4 bytes. ``lrec`` holds the payload length in
  its low 29 bits and a continuation flag ``cflag`` in its top 3 bits: 0 = whole record;
  1/2/3 = first/middle/last part. The writer splits a payload wherever the magic word occurs
  at a 4-byte-aligned offset inside it, dropping those 4 bytes; the reader re-inserts the magic
  between parts. All integers little-endian.
* **index** (``.idx``): text lines ``"<key>\\t<byte offset of the record>"``.
* **IRHeader** at the start of each payload: ``struct "<IfQQ"`` = (flag uint32, label
  float32, id uint64, id2 uint64), 24 bytes. When ``flag > 0`` the label is not the float
  field but ``flag`` float32 values following the header. The image bytes (JPEG) follow.
* **InsightFace layout**: record 0 is a header whose label is ``(a, b)``: image records are keys
  ``1 .. a-1``; identity records are keys ``a .. b-1``, each with label ``(start, end)``, the
  range of image keys of that identity. Image records carry the class label (float) in the
  header. Without such a header every key in the index is an image record.

::

    ds = RecordIODataset("faces_emore/")        # or ".../train" or ".../train.rec"
    image, label, sample_id, meta = ds[0]        # sample_id is the record key

**Limits.** Every size a file states is checked against the file before anything is allocated:
a record's length against the bytes left in the ``.rec``, every ``.idx`` offset against the
``.rec``'s size, the header's key counts against the records the index holds (so memory stays
proportional to the files, whatever they claim). Header values and labels must be whole numbers
(labels from 0 to 2**24 - 1, the largest float32 counts exactly, and below the number of identity
records when there are some); a value that is NaN, infinite, negative or out of range is a
``ValueError`` naming the file and the record. Record images go through :func:`decode_image`
(its ``max_pixels`` guard included).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .images import DEFAULT_MAX_PIXELS, CorruptImageError, SkipCounter, SkipReporting, decode_image, encode_jpeg

__all__ = [
    "MAGIC",
    "IRHeader",
    "pack_record",
    "unpack_record",
    "frame_record",
    "iter_framed_records",
    "read_index",
    "RecordIODataset",
    "write_recordio",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_FLOAT32_EXACT = 1 << 24  # float32 labels are exact integers below this


class IRHeader(NamedTuple):
    """MXNet image-record header. ``label`` is a float, or a tuple of floats when ``flag > 0``."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


# --------------------------------------------------------------------------- payload (IRHeader)


def pack_record(header: IRHeader, payload: bytes) -> bytes:
    """IRHeader + payload -> record bytes (mxnet's ``recordio.pack``).

    A scalar label is stored in the header (flag 0); a sequence label is stored after the
    header as float32 values, with ``flag`` set to their count.
    """
    label = header.label
    if isinstance(label, (int, float, np.integer, np.floating)):
        head = struct.pack(_IR_FORMAT, 0, float(label), int(header.id), int(header.id2))
        return head + bytes(payload)
    values = np.asarray(label, dtype="<f4").ravel()
    if values.size == 0:
        raise ValueError("a sequence label must not be empty")
    head = struct.pack(_IR_FORMAT, values.size, 0.0, int(header.id), int(header.id2))
    return head + values.tobytes() + bytes(payload)


def unpack_record(record: bytes) -> tuple[IRHeader, bytes]:
    """Record bytes -> (IRHeader, payload) (mxnet's ``recordio.unpack``)."""
    if len(record) < _IR_SIZE:
        raise ValueError(f"record of {len(record)} bytes is shorter than the {_IR_SIZE}-byte IRHeader")
    flag, label, id_, id2 = struct.unpack_from(_IR_FORMAT, record, 0)
    body = record[_IR_SIZE:]
    if flag > 0:
        if len(body) < 4 * flag:
            raise ValueError(f"record says {flag} float labels but holds only {len(body)} bytes after the header")
        values = np.frombuffer(body, dtype="<f4", count=flag)
        return IRHeader(flag, tuple(float(v) for v in values), id_, id2), bytes(body[4 * flag:])
    return IRHeader(flag, float(label), id_, id2), bytes(body)


# --------------------------------------------------------------------------- framing


def frame_record(record: bytes) -> bytes:
    """Frame one record for a ``.rec`` file exactly as dmlc-core's ``RecordIOWriter`` does."""
    n = len(record)
    if n >= 1 << 29:
        raise ValueError("RecordIO records must be shorter than 2**29 bytes")
    out = bytearray()
    start = 0
    # Split wherever the magic word sits at a 4-byte-aligned offset of the payload.
    for i in range(0, n - n % 4, 4):
        if record[i:i + 4] == _MAGIC_BYTES:
            cflag = 1 if start == 0 else 2
            out += _MAGIC_BYTES + struct.pack("<I", (cflag << 29) | (i - start)) + record[start:i]
            start = i + 4
    cflag = 3 if start != 0 else 0
    out += _MAGIC_BYTES + struct.pack("<I", (cflag << 29) | (n - start)) + record[start:]
    out += b"\x00" * (-n % 4)
    return bytes(out)


def _read_framed(buf: bytes | mmap.mmap, offset: int) -> tuple[bytes, int]:
    """Read the record starting at ``offset``; returns (record bytes, offset of the next one)."""
    parts: list[bytes] = []
    pos = offset
    while True:
        if pos + 8 > len(buf):
            raise ValueError(f"truncated RecordIO file: record header at byte {pos} runs past the end")
        magic, lrec = struct.unpack_from("<II", buf, pos)
        if magic != MAGIC:
            raise ValueError(f"bad RecordIO magic 0x{magic:08x} at byte {pos} (expected 0x{MAGIC:08x})")
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        start = pos + 8
        if start + length > len(buf):
            raise ValueError(f"truncated RecordIO file: record at byte {pos} needs {length} bytes")
        parts.append(bytes(buf[start:start + length]))
        pos = start + length + (-length % 4)
        if cflag in (0, 3):
            break
        parts.append(_MAGIC_BYTES)
    return b"".join(parts), pos


def iter_framed_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte offset, record bytes)`` for every record of a ``.rec`` file, in order."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = 0
            while pos < size:
                try:
                    record, nxt = _read_framed(buf, pos)
                except ValueError as e:
                    raise ValueError(f"{path}: {e}") from None
                yield pos, record
                pos = nxt


def read_index(path: str | os.PathLike[str], rec_size: int | None = None) -> dict[int, int]:
    """Read a ``.idx`` file: ``{key: byte offset}``.

    Each line must hold two whole numbers ``key >= 0`` and ``offset >= 0``, keys must not repeat,
    and with ``rec_size`` (the ``.rec``'s size in bytes) every offset must leave room for a record
    header (``offset + 8 <= rec_size``). Anything else is a ValueError naming the file and line.
    """
    index: dict[int, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                key, offset = _index_line(line)
                if key in index:
                    raise ValueError(f"key {key} appears twice")
                if rec_size is not None and offset + 8 > rec_size:
                    raise ValueError(f"offset {offset} is past the end of the {rec_size}-byte .rec file")
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            index[key] = offset
    return index


def _index_line(line: bytes) -> tuple[int, int]:
    """(key, offset) of one ``.idx`` line: two whole numbers separated by white space."""
    fields = line.split()
    shown = line.strip()[:80].decode("ascii", "replace")
    if len(fields) != 2 or not all(f.isdigit() for f in fields):  # bytes.isdigit: ASCII digits only
        raise ValueError(f"expected 'key<TAB>offset' (two whole numbers >= 0), got {shown!r}")
    if any(len(f) > 19 for f in fields):  # beyond any file offset or key a writer produces
        raise ValueError(f"number too large in {shown!r}")
    return int(fields[0]), int(fields[1])


def _whole(value: float, lo: int, hi: int, what: str) -> int:
    """``value`` as an int when it is a whole number in [lo, hi]; else a ValueError about ``what``."""
    if not (math.isfinite(value) and value == int(value) and lo <= value <= hi):
        raise ValueError(f"{what} is {value!r}: expected a whole number from {lo} to {hi}")
    return int(value)


# --------------------------------------------------------------------------- dataset


def _resolve(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        rec, idx = p / "train.rec", p / "train.idx"
    elif p.suffix in (".rec", ".idx"):
        rec, idx = p.with_suffix(".rec"), p.with_suffix(".idx")
    else:
        rec, idx = p.parent / (p.name + ".rec"), p.parent / (p.name + ".idx")
    if not rec.is_file():
        raise FileNotFoundError(f"RecordIO file not found: {rec}")
    return rec, idx


Sample = tuple[torch.Tensor, int, int, dict[str, str | int | float]]


class RecordIODataset(SkipReporting, Dataset[Sample]):
    """InsightFace RecordIO face data set yielding ``(image, label, sample_id, meta)``.

    Args:
        path: a folder holding ``train.rec``/``train.idx``, a prefix (``.../train``) or the
            ``.rec`` path. Without a ``.idx`` file the ``.rec`` is scanned once to index it.
        size: output side (uint8 (3, size, size) RGB); ``None`` keeps the stored size.
        center_crop: optional centre crop before resizing (see :func:`decode_image`).

    ``sample_id`` is the record key. ``identity_ranges`` maps identity-record order to the
    (start, end) key range when the file has the InsightFace header. Undecodable images are
    skipped and counted (``num_skipped``) and the next good record is returned instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | None = 112,
        center_crop: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.rec_path, self.idx_path = _resolve(path)
        self.size, self.center_crop, self.max_pixels = size, center_crop, max_pixels
        self._skips = SkipCounter()
        self._buf: mmap.mmap | None = None
        if self.idx_path.is_file():
            self.offsets = read_index(self.idx_path, rec_size=self.rec_path.stat().st_size)
        else:
            self.offsets = {
                key: off
                for key, (off, _) in enumerate(
                    tqdm(iter_framed_records(self.rec_path), desc="indexing .rec", unit="rec", leave=False)
                )
            }
        if not self.offsets:
            raise ValueError(f"no records in {self.rec_path}")
        self.identity_ranges: list[tuple[int, int]] = []
        self.keys: Sequence[int] = self._layout()
        if not self.keys:
            raise ValueError(f"no image records in {self.rec_path}")
        self._targets: list[int] | None = None

    def _layout(self) -> Sequence[int]:
        """The image keys, filling ``identity_ranges`` from the InsightFace header when there is one.

        Every count in the header is checked against the index before anything is built from it.
        """
        header0 = self._header(0) if 0 in self.offsets else None
        if header0 is None or header0.flag == 0 or not isinstance(header0.label, tuple) or len(header0.label) < 2:
            return sorted(self.offsets)
        top = _FLOAT32_EXACT
        end_images = _whole(header0.label[0], 1, top, f"{self.rec_path}: the header's end of image keys")
        end_ids = _whole(header0.label[1], end_images, top, f"{self.rec_path}: the header's end of identity keys")
        if end_ids > len(self.offsets):
            where = self.idx_path if self.idx_path.is_file() else self.rec_path
            raise ValueError(
                f"{self.rec_path}: the header names keys 0..{end_ids - 1} ({end_images - 1} images, "
                f"{end_ids - end_images} identities) but {where} holds only {len(self.offsets)} records"
            )
        missing = [k for k in range(end_ids) if k not in self.offsets]  # at most len(offsets) keys
        if missing:
            raise ValueError(
                f"{self.idx_path}: {len(missing)} of the keys 0..{end_ids - 1} named by the header of "
                f"{self.rec_path.name} are missing (e.g. {missing[:5]})"
            )
        for key in range(end_images, end_ids):
            lab = self._header(key).label
            if not isinstance(lab, tuple) or len(lab) < 2:
                raise ValueError(f"{self.rec_path}: identity record {key} has no (start, end) label")
            what = f"{self.rec_path}: identity record {key}'s"
            start = _whole(lab[0], 1, end_images, f"{what} first image key")
            self.identity_ranges.append((start, _whole(lab[1], start, end_images, f"{what} end of image keys")))
        empty = sum(start == end for start, end in self.identity_ranges)
        if empty:  # their labels stay (they are the file's); a head keeps a class nothing trains
            warnings.warn(f"{self.rec_path}: {empty} of {len(self.identity_ranges)} identities have no images",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
        return range(1, end_images)

    # ----------------------------------------------------------------- low level

    def _record(self, offset: int) -> bytes:
        if self._buf is None:
            with open(self.rec_path, "rb") as f:  # the map keeps the file open on its own
                self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # ValueError if empty
        return _read_framed(self._buf, offset)[0]

    def _header(self, key: int) -> IRHeader:
        return self.read(key)[0]

    def __getstate__(self) -> dict:
        # mmaps do not pickle; each DataLoader worker reopens the file lazily.
        state = self.__dict__.copy()
        state["_buf"] = None
        return state

    def close(self) -> None:
        if self._buf is not None:
            self._buf.close()
            self._buf = None

    def read(self, key: int) -> tuple[IRHeader, bytes]:
        """Header and image bytes of record ``key``; a ValueError naming the file and record when the
        record is damaged, KeyError when the index has no such key."""
        if key not in self.offsets:
            raise KeyError(f"{self.rec_path}: no record {key} in the index")
        try:
            return unpack_record(self._record(self.offsets[key]))
        except ValueError as e:
            raise ValueError(f"{self.rec_path}: record {key}: {e}") from None

    def _label(self, header: IRHeader, key: int) -> int:
        """The class label of image record ``key``: a whole number in [0, num_classes) (ValueError)."""
        lab = header.label
        value = lab[0] if isinstance(lab, tuple) else lab
        top = len(self.identity_ranges) - 1 if self.identity_ranges else _FLOAT32_EXACT - 1
        return _whole(value, 0, top, f"{self.rec_path}: the label of record {key}")

    # ----------------------------------------------------------------- dataset API

    @property
    def targets(self) -> list[int]:
        """Label per sample (reads every record header once, then cached)."""
        if self._targets is None:
            self._targets = [
                self._label(self._header(k), k)
                for k in tqdm(self.keys, desc="reading labels", unit="rec", leave=False, disable=len(self.keys) < 50_000)
            ]
        return self._targets

    @property
    def num_classes(self) -> int:
        if self.identity_ranges:
            return len(self.identity_ranges)
        return max(self.targets) + 1

    def __len__(self) -> int:
        return len(self.keys)

    def _decoded(self, i: int) -> tuple[int, torch.Tensor]:
        """(label, uint8 (3, size, size) image) of the i-th record; ValueError when either is bad."""
        key = self.keys[i]
        header, payload = self.read(key)
        label = self._label(header, key)
        return label, decode_image(payload, size=self.size, center_crop=self.center_crop, max_pixels=self.max_pixels)

    def __getitem__(self, index: int) -> Sample:
        index, i, (label, image) = self._first_readable(
            index, len(self.keys), "records", lambda j: f"{self.rec_path}#{self.keys[j]}", self._decoded,
            (CorruptImageError, ValueError), f"every record of {self.rec_path}",
        )  # fmt: skip
        key = self.keys[i]
        meta: dict[str, str | int | float] = {"record": key, "substituted_for": -1 if i == index else index}
        return image, label, key, meta


# --------------------------------------------------------------------------- writer


def write_recordio(
    path_prefix: str | os.PathLike[str],
    samples: Iterable[tuple[bytes | torch.Tensor | np.ndarray, int]],
    jpeg_quality: int = 95,
) -> tuple[Path, Path]:
    """Write ``<prefix>.rec`` and ``<prefix>.idx`` in InsightFace's layout; returns their paths.

    ``samples`` are ``(image, label)`` with the image as encoded bytes (written unchanged) or a
    uint8 (3, H, W) RGB array (JPEG-encoded). Records are grouped by label (a stable sort, as
    InsightFace's tools do), so image keys 1..N follow label order; identity records follow,
    then record 0 holds the ranges. Both files are written atomically.
    """
    prefix = Path(path_prefix)
    if prefix.suffix == ".rec":
        prefix = prefix.with_suffix("")
    items: list[tuple[bytes, int]] = []
    for image, label in samples:
        if isinstance(label, bool) or int(label) != label or int(label) < 0:
            raise ValueError(f"labels must be non-negative ints, got {label!r}")
        data = encode_jpeg(image, jpeg_quality)
        items.append((data, int(label)))
    if not items:
        raise ValueError("write_recordio needs at least one sample")
    items.sort(key=lambda t: t[1])  # stable: keeps the given order within a label
    labels = sorted({lab for _, lab in items})
    n_images = len(items)
    end_images = n_images + 1
    end_ids = end_images + len(labels)
    if end_ids >= _FLOAT32_EXACT or labels[-1] >= _FLOAT32_EXACT:
        raise ValueError("too many records for float32 labels (InsightFace's format limit is 2**24)")

    ranges: dict[int, list[int]] = {}
    for key, (_, lab) in enumerate(items, start=1):
        ranges.setdefault(lab, [key, key])[1] = key + 1
    records: list[bytes] = [pack_record(IRHeader(2, (float(end_images), float(end_ids)), 0, 0), b"")]
    records += [pack_record(IRHeader(0, float(lab), key, 0), data) for key, (data, lab) in enumerate(items, start=1)]
    records += [
        pack_record(IRHeader(2, (float(ranges[lab][0]), float(ranges[lab][1])), end_images + j, 0), b"")
        for j, lab in enumerate(labels)
    ]

    rec_path, idx_path = prefix.parent / (prefix.name + ".rec"), prefix.parent / (prefix.name + ".idx")
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    rec_tmp = _atomic_tmp(rec_path)
    idx_tmp = _atomic_tmp(idx_path)
    try:
        with open(rec_tmp, "wb") as f:
            for key, record in enumerate(records):
                lines.append(f"{key}\t{f.tell()}\n")
                f.write(frame_record(record))
        with open(idx_tmp, "w", encoding="ascii") as f:
            f.writelines(lines)
        os.replace(rec_tmp, rec_path)
        os.replace(idx_tmp, idx_path)
    finally:
        for tmp in (rec_tmp, idx_tmp):
            if tmp.exists():
                tmp.unlink()
    return rec_path, idx_path


def _atomic_tmp(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)
