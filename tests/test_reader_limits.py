"""What a crafted or damaged file may cost the readers: every size a file states is checked before
anything is allocated, and every refusal is one plain ValueError naming the file.

One test per crafted file (each measured: its peak memory stays far below what the file claims),
then property tests feeding the RecordIO reader, the ``.bin`` reader and the image decoder random
bytes, truncations and absurd length fields (bounded in time: a fixed number of examples, each
under a deadline)."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from adaface_lab.data.folders import ImageFolderFaces
from adaface_lab.data.images import CorruptImageError, ImageTooLargeError, decode_image
from adaface_lab.data.recordio import RecordIODataset, read_index, write_recordio
from adaface_lab.data.verification import load_bin, write_bin

from .peak_memory import peak_bytes

#: What a small crafted file may cost at most (the attacks below cost 0.5 to 8 GB without the checks).
SMALL = 64 * 2**20


def _jpeg(seed: int, side: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _refused(fn, *names: str) -> str:  # type: ignore[no-untyped-def]
    """Run ``fn``: it must raise a ValueError naming each of ``names``, within :data:`SMALL` bytes."""
    peak, outcome = peak_bytes(fn)
    assert isinstance(outcome, ValueError), f"expected a ValueError, got {outcome!r}"
    message = str(outcome)
    assert all(n in message for n in names), message
    assert "\n" not in message
    assert peak < SMALL, f"peak {peak / 2**20:.0f} MiB for: {message}"
    return message


# --------------------------------------------------------------------------- crafted .bin files


def test_bin_with_one_bytearray_referenced_2000_times_is_refused(tmp_path: Path) -> None:
    image = bytearray(_jpeg(0)) + bytearray(1_000_000)  # 1 MB, pickled once, referenced 2,000 times
    path = tmp_path / "repeated.bin"
    path.write_bytes(pickle.dumps(([image] * 2000, [True] * 1000), protocol=4))
    assert path.stat().st_size < 1_100_000
    message = _refused(lambda: load_bin(path), str(path))
    assert "same image" in message


def test_bin_rebuilding_one_text_2000_times_is_refused(tmp_path: Path) -> None:
    # Protocol 2 rebuilds bytes with _codecs.encode(text, "latin1"): one 1 MB text in the memo,
    # then 2,000 calls on it would build 2 GB from a 2 MB file.
    text = ("\xff" * 1_000_000).encode("utf-8")
    ops = b"\x80\x02c_codecs\nencode\nq\x00" + b"X" + struct.pack("<I", len(text)) + text + b"q\x01"
    ops += b"X\x06\x00\x00\x00latin1q\x02]q\x03(" + b"h\x00h\x01h\x02\x86R" * 2000 + b"e"
    ops += b"](" + b"\x88" * 1000 + b"e\x86."
    path = tmp_path / "rebuilt.bin"
    path.write_bytes(ops)
    message = _refused(lambda: load_bin(path), str(path))
    assert "more bytes than the file holds" in message


@pytest.mark.parametrize(
    "stream",
    [
        # Unchecked, the unpickler allocates what these fields claim (1 GiB) before finding the data short.
        b"\x80\x04\x8e" + struct.pack("<Q", 2**30) + b"abc",  # BINBYTES8
        b"\x80\x04B" + struct.pack("<I", 2**30) + b"abc",  # BINBYTES
        b"\x80\x04\x8d" + struct.pack("<Q", 2**30) + b"abc",  # BINUNICODE8
        b"\x80\x02Nr" + struct.pack("<I", 2**26) + b".",  # LONG_BINPUT: a memo of 2**26 slots (0.5 GiB)
    ],
    ids=["bytes8-length", "bytes-length", "unicode8-length", "memo-index"],
)
def test_bin_with_absurd_length_or_memo_index_is_refused(tmp_path: Path, stream: bytes) -> None:
    path = tmp_path / "absurd.bin"
    path.write_bytes(stream)
    _refused(lambda: load_bin(path), str(path))


def test_bin_images_are_bounded_on_decoding(tmp_path: Path) -> None:
    big = io.BytesIO()
    Image.new("RGB", (400, 300), (90, 40, 10)).save(big, "PNG")
    path = write_bin(tmp_path / "big.bin", [big.getvalue(), big.getvalue() + b"\x00"] * 2, [True, False])
    pairs = load_bin(path)
    message = _refused(lambda: pairs.load_images(progress=False, max_bytes=1_000_000), "big", "size=")
    assert "4 images of (3, 300, 400)" in message
    images, valid = load_bin(path, size=16).load_images(progress=False, max_bytes=1_000_000)
    assert images.shape == (4, 3, 16, 16) and valid.all()


# --------------------------------------------------------------------------- crafted RecordIO files


def _recordio(tmp_path: Path) -> tuple[Path, Path]:
    """A small InsightFace-layout set: 5 images of 2 identities; record 0 is the header."""
    return write_recordio(tmp_path / "train", [(_jpeg(i), i // 3) for i in range(5)])


def _patch_float(path: Path, offset: int, value: float) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(data))


# Record 0 starts at byte 0: 8 bytes of framing, then the IRHeader (flag, label, id, id2: 24 bytes),
# then the header's two float labels (end of image keys, end of identity keys).
_END_IMAGES_AT, _END_IDS_AT = 8 + 24, 8 + 24 + 4


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -5.0, 0.0, 2.5, 2.0**30])
def test_recordio_header_values_must_be_whole_numbers_in_range(tmp_path: Path, value: float) -> None:
    rec, _ = _recordio(tmp_path)
    _patch_float(rec, _END_IMAGES_AT, value)
    message = _refused(lambda: RecordIODataset(rec), str(rec), "the header's end of image keys", repr(value))
    assert "expected a whole number from 1 to 16777216" in message


@pytest.mark.parametrize(
    "claimed, expect",
    [(3e7, "end of image keys is 30000000.0"), (1.6e7, "15999999 images, 2 identities) but {idx} holds only 8 records")],
)
def test_recordio_header_claiming_millions_of_images_costs_nothing(tmp_path: Path, claimed: float, expect: str) -> None:
    rec, idx = _recordio(tmp_path)
    _patch_float(rec, _END_IMAGES_AT, claimed)
    _patch_float(rec, _END_IDS_AT, claimed + 2)
    assert rec.stat().st_size < 10_000
    _refused(lambda: RecordIODataset(rec), str(rec), expect.format(idx=idx))


def test_recordio_identity_keys_missing_from_the_index(tmp_path: Path) -> None:
    rec, idx = _recordio(tmp_path)
    lines = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join(lines[:-2]))  # both identity records dropped
    _refused(lambda: RecordIODataset(rec), str(idx), "keys 0..7", "holds only 6 records")
    idx.write_text("".join(lines[:-2]) + "".join(ln.replace(ln.split()[0], str(100 + k), 1) for k, ln in enumerate(lines[-2:])))
    message = _refused(lambda: RecordIODataset(rec), str(idx))  # 8 records, but keys 6 and 7 are not among them
    assert "2 of the keys 0..7" in message and "[6, 7]" in message


def test_recordio_identity_range_outside_the_images(tmp_path: Path) -> None:
    rec, idx = _recordio(tmp_path)
    offset = read_index(idx)[7]  # the second identity record, images 4..6
    _patch_float(rec, offset + 8 + 24 + 4, 900.0)
    _refused(lambda: RecordIODataset(rec), str(rec), "identity record 7", "900.0")
    _patch_float(rec, offset + 8 + 24 + 4, 4.0)  # now (4, 4): an identity without images
    with pytest.warns(RuntimeWarning, match="1 of 2 identities have no images"):
        assert RecordIODataset(rec).identity_ranges == [(1, 4), (4, 4)]


@pytest.mark.parametrize(
    "line, expect",
    [
        ("9\tx12\n", "two whole numbers"),
        ("9\t-4\n", "two whole numbers"),
        ("9\t99999999\n", "past the end"),
        ("9\t" + "9" * 5000 + "\n", "too large"),
        ("0\t0\n", "appears twice"),
        ("\xff\xfe\n", "two whole numbers"),
    ],
)
def test_bad_index_lines_name_the_file_and_line(tmp_path: Path, line: str, expect: str) -> None:
    rec, idx = _recordio(tmp_path)
    with open(idx, "ab") as f:
        f.write(line.encode("latin-1"))
    _refused(lambda: RecordIODataset(rec), f"{idx}:9", expect)


@pytest.mark.parametrize("label", [-5.0, float("nan"), float("inf"), 2.0, 0.5])
def test_bad_labels_are_refused_by_targets_and_skipped_by_reading(tmp_path: Path, label: float) -> None:
    rec, idx = _recordio(tmp_path)
    _patch_float(rec, read_index(idx)[2] + 8 + 4, label)  # image record 2's label (2 identities: 0 and 1)
    ds = RecordIODataset(rec, size=16)
    _refused(lambda: ds.targets, str(rec), "label of record 2")
    with pytest.warns(RuntimeWarning, match=r"train.rec#2: .*label of record 2"):
        items = [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 1 and items[1][3]["substituted_for"] == 1
    assert [it[1] for it in items] == [0, 0, 0, 1, 1]  # the substitute (record 3) keeps its own label


def test_recordio_empty_or_truncated_rec_names_the_file(tmp_path: Path) -> None:
    rec, idx = _recordio(tmp_path)
    data = rec.read_bytes()
    rec.write_bytes(data[: len(data) // 2])
    _refused(lambda: RecordIODataset(rec), str(idx), "past the end")
    idx.unlink()
    _refused(lambda: RecordIODataset(rec), str(rec), "truncated")
    rec.write_bytes(b"")
    _refused(lambda: RecordIODataset(rec), str(rec), "no records")


# --------------------------------------------------------------------------- crafted images


def _with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims another size; the scan data is left as it is."""
    at = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height, width
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def test_64_megapixel_jpeg_header_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    path.write_bytes(_with_jpeg_size(_jpeg(1), 8000, 8000))
    assert path.stat().st_size < 2000
    peak, outcome = peak_bytes(lambda: decode_image(path))
    assert isinstance(outcome, ImageTooLargeError) and str(path) in str(outcome) and "64000000 pixels" in str(outcome)
    assert peak < SMALL


# --------------------------------------------------------------------------- identities without images


def test_decode_check_drops_files_truncated_after_their_header_and_their_identities(tmp_path: Path) -> None:
    for name, n in [("Ann", 2), ("Bo", 2), ("Cy", 1)]:
        (tmp_path / name).mkdir()
        for j in range(n):
            (tmp_path / name / f"{j}.jpg").write_bytes(_jpeg(10 * len(name) + j, 32))
    good = (tmp_path / "Cy" / "0.jpg").read_bytes()
    cut = good[: good.index(b"\xff\xda") + 16]  # headers intact, the scan cut short
    (tmp_path / "Cy" / "0.jpg").write_bytes(cut)
    (tmp_path / "Bo" / "1.jpg").write_bytes(cut)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header_checked = ImageFolderFaces(tmp_path, size=16)
    assert header_checked.num_classes == 3 and len(header_checked) == 5  # the header passes

    with pytest.warns(RuntimeWarning) as caught:
        ds = ImageFolderFaces(tmp_path, size=16, check="decode")
    messages = [str(w.message) for w in caught]
    assert any("dropped 1 identity left without a readable image (Cy)" in m for m in messages)
    assert ds.identities == ["Ann", "Bo"] and ds.num_classes == 2 and ds.num_skipped == 2
    assert [Path(p).relative_to(tmp_path).as_posix() for p, _ in ds.samples] == ["Ann/0.jpg", "Ann/1.jpg", "Bo/0.jpg"]
    items = [ds[i] for i in range(len(ds))]  # a full epoch: nothing substituted, each sample once
    assert [it[2] for it in items] == [0, 1, 2] and all(it[3]["substituted_for"] == -1 for it in items)
    assert [it[1] for it in items] == ds.targets == [0, 0, 1]


# --------------------------------------------------------------------------- property tests (fuzzing)

#: Bounded in time: a fixed, reproducible set of examples, each under a deadline (a hang fails).
FUZZ = settings(
    max_examples=80,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Images the fuzzed readers may decode (so that what a decoded image may cost stays far below SMALL).
FUZZ_PIXELS = 2**16

_ABSURD_FIELDS = st.sampled_from(
    [
        b"\xff\xff\xff\xff",  # the largest uint32 / -1
        b"\xff\xff\xff\x1f",  # the largest RecordIO record length with cflag 0
        b"\x00\x00\xc0\x7f",  # float32 NaN
        b"\x00\x00\x80\x7f",  # float32 inf
        b"\x00\x00\xa0\xc0",  # float32 -5
        b"\x00\x00\x80\x4b",  # float32 2**24
        b"\x00\x00\x00\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # the largest int64
    ]
)


def _damaged(data: bytes, fields: list[int] | None = None) -> st.SearchStrategy[bytes]:
    """``data`` with random damage: replaced by random bytes, cut short, or with fields overwritten
    by absurd values or random bytes, at any offset, a 4-byte-aligned one, or one of ``fields``
    (the offsets of the format's length and count fields)."""
    n = len(data)
    at = st.one_of(st.integers(0, n - 1), st.integers(0, (n - 1) // 4).map(lambda k: 4 * k))
    if fields:
        at = st.one_of(at, st.sampled_from(sorted(fields)))
    patch = st.tuples(at, st.one_of(_ABSURD_FIELDS, st.binary(min_size=1, max_size=8)))

    def overwrite(patches: list[tuple[int, bytes]]) -> bytes:
        out = data
        for i, new in patches:
            out = out[:i] + new + out[i + len(new) :]
        return out

    return st.one_of(
        st.binary(max_size=2 * n),
        st.integers(0, n - 1).map(lambda k: data[:k]),
        st.lists(patch, min_size=1, max_size=4).map(overwrite),
    )


def _clear_or_fine(outcome: object, name: str, caught: list[warnings.WarningMessage]) -> None:
    """What a reader may do with a damaged file: succeed, or raise one ValueError (RuntimeError when
    every record fails) whose message names the file; every warning it gives names the file too."""
    event(f"{type(outcome).__name__ if isinstance(outcome, BaseException) else 'read'}, {len(caught)} warnings")
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, (ValueError, RuntimeError)), repr(outcome)
        assert name in str(outcome) and "\n" not in str(outcome), str(outcome)
    assert all(name in str(w.message) for w in caught), [str(w.message) for w in caught]


def _recordio_seed() -> tuple[bytes, bytes, list[int]]:
    """The seed set's .rec and .idx bytes, and the offsets of every record's length field, IRHeader
    flag and label, and first two float labels (the header's key counts, identity ranges)."""
    with tempfile.TemporaryDirectory() as d:
        rec, idx = _recordio(Path(d))
        fields = [o + k for o in read_index(idx).values() for k in (4, 8, 12, 32, 36)]
        return rec.read_bytes(), idx.read_bytes(), fields


_REC, _IDX, _REC_FIELDS = _recordio_seed()


def _read_everything(ds: RecordIODataset) -> list[int]:
    labels = [ds[i][1] for i in range(len(ds))]
    return labels + ds.targets + [ds.num_classes]


@FUZZ
@given(data=st.data())
def test_recordio_reader_on_damaged_files(data: st.DataObject) -> None:
    rec_bytes, idx_bytes = _REC, _IDX
    which = data.draw(st.sampled_from(["rec", "rec without idx", "idx"]))
    if which == "idx":
        idx_bytes = data.draw(_damaged(idx_bytes))
    else:
        rec_bytes = data.draw(_damaged(rec_bytes, _REC_FIELDS))
    with tempfile.TemporaryDirectory() as d:
        rec = Path(d) / "fuzzed.rec"
        rec.write_bytes(rec_bytes)
        if which != "rec without idx":
            rec.with_suffix(".idx").write_bytes(idx_bytes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peak, outcome = peak_bytes(lambda: _read_everything(RecordIODataset(rec, size=8, max_pixels=FUZZ_PIXELS)))
    _clear_or_fine(outcome, "fuzzed.", caught)
    assert peak < SMALL


def _bin_seed() -> tuple[bytes, list[int]]:
    """A 2-pair .bin's bytes and the offsets of its opcodes' arguments (lengths, memo indices)."""
    with tempfile.TemporaryDirectory() as d:
        data = write_bin(Path(d) / "seed.bin", [_jpeg(i) for i in range(4)], [True, False]).read_bytes()
    return data, [pos + 1 for op, _, pos in pickletools.genops(data) if op.arg is not None]


_BIN, _BIN_FIELDS = _bin_seed()


@FUZZ
@given(damaged=_damaged(_BIN, _BIN_FIELDS))
def test_bin_reader_on_damaged_files(damaged: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzzed.bin"
        path.write_bytes(damaged)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peak, outcome = peak_bytes(lambda: load_bin(path, max_pixels=FUZZ_PIXELS).load_images(progress=False))
    _clear_or_fine(outcome, "fuzzed", caught)
    if not isinstance(outcome, BaseException):
        images, valid = outcome
        assert images.dtype == torch.uint8 and images.shape[0] == 2 * len(valid)
    assert peak < SMALL


def _image_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    seeds = {}
    for ext, image, kw in [
        ("jpg", rgb, {"quality": 90}),
        ("png", rgb, {}),
        ("png", Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)), {}),
        ("png", rgb.convert("RGBA"), {}),
        ("gif", rgb.convert("P"), {}),
        ("bmp", rgb, {}),
        ("tif", rgb, {"compression": "tiff_deflate"}),
        ("webp", rgb, {"quality": 80}),
    ]:
        buf = io.BytesIO()
        image.save(buf, {"jpg": "JPEG", "tif": "TIFF"}.get(ext, ext.upper()), **kw)
        seeds[f"{ext}-{image.mode}"] = buf.getvalue()
    return seeds


_IMAGE_SEEDS = _image_seeds()
# Offsets of width/height fields: PNG IHDR, BMP info header, GIF screen and first frame, JPEG SOF0.
_SIZE_FIELDS = {"png": [16, 18, 20, 22], "bmp": [18, 22], "gif": [6, 8, 17, 19], "jpg": []}
_jpg = _IMAGE_SEEDS["jpg-RGB"]
_SIZE_FIELDS["jpg"] = [_jpg.index(b"\xff\xc0") + k for k in (5, 7)]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's word on a damaged EXIF block
@FUZZ
@given(kind=st.sampled_from(sorted(_IMAGE_SEEDS)), data=st.data())
def test_image_decoder_on_damaged_files(kind: str, data: st.DataObject) -> None:
    damaged = data.draw(_damaged(_IMAGE_SEEDS[kind], _SIZE_FIELDS.get(kind.split("-")[0])))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzzed.{kind.split('-')[0]}"
        path.write_bytes(damaged)
        size = data.draw(st.sampled_from([None, 8]))
        peak, outcome = peak_bytes(lambda: decode_image(path, size=size, max_pixels=FUZZ_PIXELS))
    event(f"{kind}: {type(outcome).__name__ if isinstance(outcome, BaseException) else 'decoded'}")
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, CorruptImageError) and str(path) in str(outcome), repr(outcome)
    else:
        assert outcome.dtype == torch.uint8 and outcome.shape[0] == 3
        assert outcome.shape[1] * outcome.shape[2] <= FUZZ_PIXELS and (size is None or outcome.shape[1:] == (8, 8))
    assert peak < SMALL
