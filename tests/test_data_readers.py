"""Real-data readers on files the tests write in the real formats: image decoding of awkward
files, identity folders, InsightFace RecordIO and .bin, LFW pairs.txt, and drawn pairs."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaface_lab.data.folders import ImageFolderFaces
from adaface_lab.data.images import CorruptImageError, ImageTooLargeError, decode_image
from adaface_lab.data.recordio import (
    IRHeader,
    RecordIODataset,
    frame_record,
    iter_framed_records,
    pack_record,
    unpack_record,
    write_recordio,
)
from adaface_lab.data.verification import (
    UnsafePickleError,
    load_bin,
    load_pairs_txt,
    pairs_from_identities,
    write_bin,
)

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw_min20"
if not LFW.is_dir():
    LFW = Path("/work/shared/data/lfw_min20")


# --------------------------------------------------------------------------- helpers


def _rgb(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth random RGB image (H, W, 3) uint8: upsampled noise, so JPEG keeps it well."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _jpeg(seed: int, h: int = 40, w: int = 48) -> bytes:
    return _encode(Image.fromarray(_rgb(seed, h, w)), "JPEG", quality=95)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png16_rgb(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (colour type 2, bit depth 16)."""
    h, w, _ = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def _as_hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy().astype(np.int64)


# --------------------------------------------------------------------------- decode_image


def test_awkward_modes_become_8bit_rgb(tmp_path: Path) -> None:
    rgb = _rgb(0)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))

    out = _as_hwc(decode_image(_encode(Image.fromarray(gray), "PNG")))  # grayscale
    assert (out == gray[..., None]).all()

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent band
    rgba[10:20, :, 3] = 128  # half transparent band
    out = _as_hwc(decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert (out[:10] == 0).all()  # composited over black
    assert (out[20:] == rgb[20:]).all()  # opaque pixels unchanged
    assert np.abs(out[10:20] - rgb[10:20].astype(np.int64) * 128 / 255).max() <= 1

    cmyk = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=98)
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    out = _as_hwc(decode_image(cmyk))
    assert np.abs(out - rgb).mean() < 4  # the colours survive the CMYK JPEG

    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    expected = np.asarray(pal.convert("RGB"))
    assert (_as_hwc(decode_image(_encode(pal, "PNG"))) == expected).all()

    # 16-bit grayscale: scaled by 255/65535, not clipped at 255.
    g16 = np.random.default_rng(1).integers(0, 65536, (20, 30)).astype(np.uint16)
    path16 = tmp_path / "gray16.png"
    Image.fromarray(g16).save(path16)
    out = _as_hwc(decode_image(path16))
    assert (np.abs(out[..., 0] - np.round(g16 * 255.0 / 65535.0)) <= 1).all()
    assert out[..., 0].max() > 200 and (out[..., 0] == out[..., 2]).all()

    # 16-bit RGB PNG (48 bits per pixel), written by hand.
    c16 = np.random.default_rng(2).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    out = _as_hwc(decode_image(_png16_rgb(c16)))
    assert (np.abs(out - c16 / 257.0) <= 1).all()


def test_corrupt_truncated_missing_and_oversized(tmp_path: Path) -> None:
    data = _jpeg(3)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="cut.jpg"):
        decode_image(truncated)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00not an image at all" * 10)
    with pytest.raises(CorruptImageError, match="junk.jpg"):
        decode_image(junk)
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "absent.jpg")
    # A PNG whose header claims 100000 x 100000 pixels is refused before decoding.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")
    with pytest.raises(ImageTooLargeError):
        decode_image(bomb)
    big = _encode(Image.new("RGB", (300, 300)), "PNG")
    assert decode_image(big).shape == (3, 300, 300)
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        decode_image(big, max_pixels=300 * 299)


def test_center_crop_and_resize() -> None:
    # 250x250 blue image with a red 128x128 centre square: the LFW-style crop keeps only red.
    arr = np.zeros((250, 250, 3), np.uint8)
    arr[..., 2] = 255
    arr[61:189, 61:189] = (255, 0, 0)
    png = _encode(Image.fromarray(arr), "PNG")
    crop = _as_hwc(decode_image(png, center_crop=128))
    assert crop.shape == (128, 128, 3) and (crop == (255, 0, 0)).all()
    small = _as_hwc(decode_image(png, size=112, center_crop=128))
    assert small.shape == (112, 112, 3) and (small[2:-2, 2:-2] == (255, 0, 0)).all()
    odd = _encode(Image.new("RGB", (250, 251)), "PNG")
    assert [tuple(decode_image(odd, center_crop=c).shape) for c in (127, 128)] == [(3, 127, 127), (3, 128, 128)]
    # A crop larger than the image pads with zeros around it.
    padded = _as_hwc(decode_image(_encode(Image.new("RGB", (20, 20), (9, 9, 9)), "PNG"), center_crop=40))
    assert padded.shape == (40, 40, 3) and (padded[:10] == 0).all() and (padded[10:30, 10:30] == 9).all()


def test_large_jpeg_fast_path_matches_full_decode() -> None:
    data = _jpeg(4, 800, 800)
    ours = decode_image(data, size=112).double()
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((112, 112), Image.BILINEAR), dtype=np.float64)
    assert (ours.permute(1, 2, 0).numpy() - full).__abs__().mean() < 3


# --------------------------------------------------------------------------- identity folders


def _make_tree(root: Path) -> dict[str, list[str]]:
    layout = {"Bob": ["Bob_0001.jpg", "Bob_0002.png", "Bob_0003.JPG"], "Alice": ["Alice_0001.jpg", "Alice_0002.jpg"], "Carol": ["Carol_0001.bmp"]}
    for k, (name, files) in enumerate(layout.items()):
        (root / name).mkdir(parents=True)
        for j, f in enumerate(files):
            img = Image.fromarray(_rgb(10 * k + j, 60, 50))
            img = img.convert("L") if f.endswith(".png") else img
            img.save(root / name / f, {"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}[f.rsplit(".", 1)[1].lower()])
    (root / "Alice" / "notes.txt").write_text("ignored")
    (root / "Alice" / ".hidden.jpg").write_bytes(b"ignored")
    (root / "stray.jpg").write_bytes(_jpeg(99))  # not inside an identity folder: ignored
    return layout


def test_folder_reader_labels_and_samples(tmp_path: Path) -> None:
    _make_tree(tmp_path)
    ds = ImageFolderFaces(tmp_path, size=32)
    assert ds.identities == ["Alice", "Bob", "Carol"] and ds.num_classes == 3
    assert len(ds) == 6 and ds.targets == [0, 0, 1, 1, 1, 2]
    image, label, sample_id, meta = ds[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert label == 1 and sample_id == 2 and meta["identity"] == "Bob" and meta["path"].endswith("Bob_0001.jpg")
    assert all(isinstance(v, (str, int, float)) for v in meta.values())
    assert ds.num_skipped == 0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))  # default collation works
    assert batch[0].shape == (4, 3, 32, 32) and batch[1].tolist() == [0, 0, 1, 1]


def test_folder_reader_skips_and_counts_bad_files(tmp_path: Path) -> None:
    _make_tree(tmp_path)
    (tmp_path / "Bob" / "Bob_0004.jpg").write_bytes(b"<html>not a jpeg</html>")  # bad header
    data = _jpeg(5, 60, 50)
    (tmp_path / "Alice" / "Alice_0003.jpg").write_bytes(data[: len(data) // 3])  # truncated body
    cmyk = Image.fromarray(_rgb(6, 60, 50)).convert("CMYK")
    cmyk.save(tmp_path / "Carol" / "Carol_0002.jpg", "JPEG")
    with pytest.warns(RuntimeWarning, match="Bob_0004"):
        ds = ImageFolderFaces(tmp_path, size=32)
    assert ds.num_skipped == 1 and len(ds) == 8  # the bad header is left out at index time

    bad_index = next(i for i, (p, _) in enumerate(ds.samples) if p.endswith("Alice_0003.jpg"))
    with pytest.warns(RuntimeWarning, match="Alice_0003"):
        items = [ds[i] for i in range(len(ds))]  # a full epoch: no crash
    assert ds.num_skipped == 2 and any(s.endswith("Alice_0003.jpg") for s in ds.skipped)
    substitute = items[bad_index]
    assert substitute[3]["substituted_for"] == bad_index and substitute[2] == bad_index + 1
    assert all(it[0].shape == (3, 32, 32) for it in items)
    with pytest.raises(IndexError, match="index -9 out of range for 8 samples"):
        ds[-9]


def test_folder_reader_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderFaces(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageFolderFaces(tmp_path / "empty")
    (tmp_path / "dirs" / "Someone").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageFolderFaces(tmp_path / "dirs")


@pytest.mark.lfw
@pytest.mark.skipif(not LFW.is_dir(), reason="../shared/data/lfw_min20 is absent")
def test_lfw_min20_folder() -> None:
    ds = ImageFolderFaces(LFW, size=112, center_crop=128)
    assert len(ds) == 3023 and ds.num_classes == 62 and ds.num_skipped == 0
    counts = np.bincount(ds.targets)
    assert counts.min() >= 20 and counts.sum() == 3023
    for i in np.linspace(0, len(ds) - 1, 16).astype(int):
        image, label, sample_id, meta = ds[int(i)]
        assert image.shape == (3, 112, 112) and image.dtype == torch.uint8
        assert sample_id == i and meta["substituted_for"] == -1
        assert Path(meta["path"]).parent.name == ds.identities[label]
        assert image.float().std() > 10  # a real photo, not a blank


# --------------------------------------------------------------------------- RecordIO


MAGIC = 0xCED7230A


def _independent_parse(rec: bytes) -> list[tuple[int, bytes]]:
    """A separate reading of the dmlc RecordIO framing: (offset, payload) per record."""
    out, pos = [], 0
    while pos < len(rec):
        start, chunks = pos, []
        while True:
            magic, lrec = struct.unpack("<II", rec[pos : pos + 8])
            assert magic == MAGIC
            flag, length = lrec >> 29, lrec & 0x1FFFFFFF
            chunks.append(rec[pos + 8 : pos + 8 + length])
            padded = (length + 3) // 4 * 4
            assert rec[pos + 8 + length : pos + 8 + padded] == b"\x00" * (padded - length)
            pos += 8 + padded
            if flag in (0, 3):
                break
            assert flag in (1, 2)
            chunks.append(struct.pack("<I", MAGIC))
        out.append((start, b"".join(chunks)))
    return out


def _ir_header(payload: bytes) -> tuple[int, list[float], int, bytes]:
    flag, label, ident, _ = struct.unpack("<IfQQ", payload[:24])
    if flag > 0:
        labels = list(struct.unpack(f"<{flag}f", payload[24 : 24 + 4 * flag]))
        return flag, labels, ident, payload[24 + 4 * flag :]
    return flag, [label], ident, payload[24:]


def test_framing_splits_on_aligned_magic_like_dmlc() -> None:
    m = struct.pack("<I", MAGIC)
    payload = b"AAAA" + m + b"BBBBB"
    expected = m + struct.pack("<I", (1 << 29) | 4) + b"AAAA" + m + struct.pack("<I", (3 << 29) | 5) + b"BBBBB" + b"\x00" * 3
    assert frame_record(payload) == expected
    unaligned = b"AA" + m + b"B"  # not at a multiple of 4: no split
    assert frame_record(unaligned) == m + struct.pack("<I", 7) + unaligned + b"\x00"
    assert [p for _, p in _independent_parse(expected + frame_record(unaligned))] == [payload, unaligned]
    header = IRHeader(0, 3.0, 17, 0)
    assert unpack_record(pack_record(header, b"xyz")) == (header, b"xyz")
    multi = IRHeader(2, (5.0, 9.0), 1, 0)
    assert unpack_record(pack_record(multi, b"")) == (multi, b"")


def test_recordio_round_trip_and_bytes(tmp_path: Path) -> None:
    m = struct.pack("<I", MAGIC)
    samples: list[tuple[bytes | torch.Tensor, int]] = []
    for label, n in [(0, 3), (1, 2), (2, 4)]:
        for j in range(n):
            samples.append((_jpeg(100 * label + j), label))
    # A JPEG followed by the magic word at an aligned offset forces a split record.
    tricky = _jpeg(7)
    tricky += b"\x00" * (-len(tricky) % 4) + m + b"tail"
    samples[4] = (tricky, 1)
    tensor_image = torch.from_numpy(_rgb(8)).permute(2, 0, 1).contiguous()
    samples.append((tensor_image, 2))
    rec, idx = write_recordio(tmp_path / "train", samples)

    # The bytes, read by the independent parser above.
    records = _independent_parse(rec.read_bytes())
    n_img = len(samples)
    assert len(records) == 1 + n_img + 3
    offsets = [int(line.split("\t")[1]) for line in idx.read_text().splitlines()]
    assert offsets == [off for off, _ in records]
    assert [int(line.split("\t")[0]) for line in idx.read_text().splitlines()] == list(range(len(records)))
    flag, head, _, _ = _ir_header(records[0][1])
    assert flag == 2 and head == [n_img + 1, n_img + 4]
    ranges = [_ir_header(records[k][1])[1] for k in range(n_img + 1, n_img + 4)]
    assert ranges == [[1, 4], [4, 6], [6, 11]]
    for key in range(1, n_img + 1):
        flag, label, ident, image_bytes = _ir_header(records[key][1])
        assert flag == 0 and ident == key and label[0] == samples[key - 1][1]
        if isinstance(samples[key - 1][0], bytes):
            assert image_bytes == samples[key - 1][0]  # written unchanged
    split_parts = sum(1 for _ in iter_framed_records(rec))
    assert split_parts == len(records)
    assert rec.read_bytes().count(m) > len(records)  # the split record has two frame headers

    # And read back by the dataset, with and without the index file.
    for drop_idx in (False, True):
        if drop_idx:
            idx.unlink()
        ds = RecordIODataset(tmp_path)
        assert len(ds) == n_img and ds.num_classes == 3
        assert ds.identity_ranges == [(1, 4), (4, 6), (6, 11)]
        assert ds.targets == [lab for _, lab in samples]
        for i, (src, label) in enumerate(samples):
            image, got_label, sample_id, meta = ds[i]
            assert got_label == label and sample_id == i + 1 and meta["record"] == i + 1
            if isinstance(src, bytes):
                assert ds.read(i + 1)[1] == src
                assert torch.equal(image, decode_image(src, size=112))
            else:
                assert (image.int() - decode_image(ds.read(i + 1)[1], size=112).int()).abs().max() == 0
        assert ds.num_skipped == 0


def test_recordio_skips_and_counts_undecodable_records(tmp_path: Path) -> None:
    samples = [(_jpeg(1), 0), (b"\xff\xd8 broken jpeg", 0), (_jpeg(2), 1)]
    write_recordio(tmp_path / "data", samples)
    ds = RecordIODataset(tmp_path / "data.rec", size=24)
    with pytest.warns(RuntimeWarning, match="data.rec#2"):
        items = [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 1
    assert items[1][2] == 3 and items[1][3]["substituted_for"] == 1
    assert ds[-1][2] == items[2][2] and ds[-2][3]["substituted_for"] == 1  # negative indices from the end
    with pytest.raises(IndexError, match="index 3 out of range for 3 records"):
        ds[3]
    write_recordio(tmp_path / "broken", [(b"\xff\xd8 broken", 0), (b"\xff\xd8 also broken", 1)])
    broken = RecordIODataset(tmp_path / "broken.rec", size=24)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match=r"broken.rec failed to decode \(2 skipped\)"):
        broken[1]
    with pytest.raises(FileNotFoundError):
        RecordIODataset(tmp_path / "absent")


# --------------------------------------------------------------------------- .bin


def _marker_pickle(marker: Path) -> bytes:
    class WritesMarker:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(([b"jpeg", WritesMarker()], [True]), protocol=pickle.HIGHEST_PROTOCOL)


def test_bin_round_trip(tmp_path: Path) -> None:
    images: list[bytes | torch.Tensor] = [_jpeg(20 + i, 112, 112) for i in range(39)]
    images.append(torch.from_numpy(_rgb(60, 112, 112)).permute(2, 0, 1).contiguous())
    issame = [bool(i % 2) for i in range(20)]
    path = write_bin(tmp_path / "lfw.bin", images, issame)

    bins, flags = pickle.loads(path.read_bytes())  # the format itself: a plain pickle
    assert flags == issame and bins[:39] == images[:39]
    pairs = load_bin(path)
    assert pairs.sources == bins and pairs.issame.tolist() == issame and len(pairs) == 20
    assert pairs.folds.tolist() == [f for f in range(10) for _ in range(2)]  # contiguous 10-fold
    stacked, valid = pairs.load_images()
    assert stacked.shape == (40, 3, 112, 112) and valid.all()
    assert torch.equal(stacked[3], decode_image(images[3]))
    a, b, same = pairs.pair(1)
    assert torch.equal(a, stacked[2]) and torch.equal(b, stacked[3]) and same is True


def test_bin_written_by_older_pythons_loads(tmp_path: Path) -> None:
    jpg = _jpeg(30)
    # Python 3, protocol 2: bytes are stored as _codecs.encode(text, "latin1").
    (tmp_path / "p2.bin").write_bytes(pickle.dumps(([jpg, jpg], [True]), protocol=2))
    assert load_bin(tmp_path / "p2.bin").sources == [jpg, jpg]
    # Python 2 style: str as SHORT_BINSTRING, lists, NEWTRUE/NEWFALSE, TUPLE2 (hand-assembled).
    short = b"\xff\xd8\xff\xe0"
    py2 = b"\x80\x02](U\x04" + short + b"U\x04" + short + b"U\x04" + short + b"U\x04" + short + b"e](\x88\x89e\x86."
    (tmp_path / "py2.bin").write_bytes(py2)
    pairs = load_bin(tmp_path / "py2.bin")
    assert pairs.sources == [short] * 4 and pairs.issame.tolist() == [True, False]


def test_malicious_bin_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(_marker_pickle(marker))
    with pytest.raises(UnsafePickleError, match="system"):
        load_bin(evil)
    assert not marker.exists()
    pickle.loads(evil.read_bytes())  # the payload is real when unpickled unsafely
    assert marker.exists()
    (tmp_path / "dict.bin").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="expected a pickle"):
        load_bin(tmp_path / "dict.bin")


# --------------------------------------------------------------------------- pairs.txt


def _lfw_like(root: Path) -> None:
    for k, name in enumerate(["Ann_Lee", "Bo_Chen", "Cy_Dao", "Di_Eve"]):
        (root / name).mkdir(parents=True)
        for j in range(1, 4):
            Image.fromarray(_rgb(k * 10 + j, 250, 250)).save(root / name / f"{name}_{j:04d}.jpg")


def test_pairs_txt(tmp_path: Path) -> None:
    root = tmp_path / "lfw"
    _lfw_like(root)
    lines = [
        "2\t2",
        "Ann_Lee\t1\t2", "Bo_Chen\t1\t3",
        "Ann_Lee\t1\tBo_Chen\t2", "Cy_Dao\t3\tDi_Eve\t1",
        "Cy_Dao\t1\t2", "Di_Eve 2 3",
        "Ann_Lee\t3\tDi_Eve\t3", "Bo_Chen\t2\tCy_Dao\t2",
    ]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = load_pairs_txt(tmp_path / "pairs.txt", root, size=112, center_crop=128)
    assert pairs.issame.tolist() == [True, True, False, False, True, True, False, False]
    assert pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and pairs.num_folds == 2
    assert pairs.sources[0] == root / "Ann_Lee" / "Ann_Lee_0001.jpg"
    assert pairs.sources[6] == root / "Cy_Dao" / "Cy_Dao_0003.jpg"
    assert pairs.sources[11] == root / "Di_Eve" / "Di_Eve_0003.jpg"
    images, valid = pairs.load_images()
    assert images.shape == (16, 3, 112, 112) and valid.all()

    (tmp_path / "dev.txt").write_text("1\nAnn_Lee 1 2\nBo_Chen 1 Cy_Dao 1\n")  # one-number header
    dev = load_pairs_txt(tmp_path / "dev.txt", root)
    assert dev.issame.tolist() == [True, False] and dev.folds.tolist() == [0, 0]

    (tmp_path / "missing.txt").write_text("1\t1\nAnn_Lee\t1\t9\nAnn_Lee\t1\tBo_Chen\t1\n")
    with pytest.raises(FileNotFoundError, match="Ann_Lee_0009"):
        load_pairs_txt(tmp_path / "missing.txt", root)
    with pytest.warns(RuntimeWarning):
        kept = load_pairs_txt(tmp_path / "missing.txt", root, on_missing="skip")
    assert len(kept) == 1 and kept.num_skipped == 1

    (tmp_path / "short.txt").write_text("10\t300\nAnn_Lee\t1\t2\n")
    with pytest.raises(ValueError, match="header says"):
        load_pairs_txt(tmp_path / "short.txt", root)
    (tmp_path / "bad.txt").write_text("1\nAnn_Lee 1\nBo_Chen 1 Cy_Dao 1\n")
    with pytest.raises(ValueError, match="3 \\(same\\) or 4"):
        load_pairs_txt(tmp_path / "bad.txt", root)


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, labels: list[int]) -> None:
        self.targets = labels

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return torch.full((3, 4, 4), i, dtype=torch.uint8), self.targets[i], i, {}


def test_pairs_from_held_out_identities() -> None:
    labels = [c for c in range(12) for _ in range(5)]
    ds = _ListDataset(labels)
    held_out = [8, 9, 10, 11]
    pairs = pairs_from_identities(ds, held_out, n_pairs=60, seed=3)
    assert len(pairs) == 60 and pairs.issame.sum() == 30
    src = np.asarray(pairs.sources).reshape(-1, 2)
    lab = np.asarray(labels)[src]
    assert set(lab.ravel()) <= set(held_out)
    assert ((lab[:, 0] == lab[:, 1]) == pairs.issame).all()  # flags match the labels
    assert len({tuple(sorted(p)) for p in src.tolist()}) == 60 and (src[:, 0] != src[:, 1]).all()
    for f in range(10):  # every fold holds genuine and impostor pairs alike
        assert pairs.issame[pairs.folds == f].sum() == 3 and (pairs.folds == f).sum() == 6
    image, _, _ = pairs.pair(0)
    assert int(image[0, 0, 0]) == src[0, 0]  # images come through the data set
    again = pairs_from_identities(ds, held_out, n_pairs=60, seed=3)
    other = pairs_from_identities(ds, held_out, n_pairs=60, seed=4)
    assert again.sources == pairs.sources and other.sources != pairs.sources
    with pytest.raises(ValueError, match="distinct same-identity"):
        pairs_from_identities(ds, held_out, n_pairs=200, seed=0)  # only 4*10 genuine pairs exist


def test_load_images_decodes_a_repeated_source_once() -> None:
    """Held-out pairs reuse few images many times: each distinct source is made once and copied; a
    source that cannot be read marks every pair that uses it, with one warning."""
    from adaface_lab.data.verification import CorruptImageError, VerificationPairs

    calls: list[int] = []

    def loader(source: int) -> torch.Tensor:
        calls.append(source)
        if source == 9:
            raise CorruptImageError(f"image {source}", "unreadable")
        return torch.full((3, 4, 4), source, dtype=torch.uint8)

    sources = [1, 2, 1, 3, 2, 3, 9, 1, 9, 2]  # five pairs; source 9 in pairs 3 and 4
    pairs = VerificationPairs(sources, np.array([True, False, True, False, True]), np.zeros(5), loader=loader)
    with pytest.warns(RuntimeWarning) as warned:
        images, valid = pairs.load_images(progress=False)
    assert sorted(calls) == [1, 2, 3, 9] and len(warned) == 1
    assert [int(img[0, 0, 0]) for img in images] == [1, 2, 1, 3, 2, 3, 0, 1, 0, 2]
    assert valid.tolist() == [True, True, True, False, False]
    unhashable = VerificationPairs([[1], [1]], np.array([True]), np.zeros(1), loader=lambda s: loader(s[0]))
    assert unhashable.load_images(progress=False)[0].shape == (2, 3, 4, 4)  # decoded each time, still right
