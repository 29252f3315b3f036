"""What a crafted or damaged checkpoint may cost: the sizes a file asks for are checked against the tensors it
holds, or the backbones' documented limits, before anything is made; a file that is not a torch zip archive
is refused unread, without its bytes in the message; every refusal is a ValueError naming the file.

One test per crafted file (each measured: its peak memory stays far below what the file asks for), then
property tests feeding the checkpoint loader random bytes, truncations and absurd length fields of the zip
archive and of its pickle (bounded in time: a fixed number of examples, each under a deadline)."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from adaface_lab.backbones import MAX_PARAMETERS, build_backbone
from adaface_lab.checkpoint import NotACheckpointError, UnsafeCheckpointError, load_checkpoint
from adaface_lab.config import TrainConfig
from adaface_lab.runs import TrainingState, load_backbone

from .peak_memory import peak_bytes
from .test_reader_limits import FUZZ, SMALL, _damaged, _refused

TINY_BACKBONE = {"input_size": 32, "channels": [8, 16, 16, 32], "stem_channels": 8, "embedding_size": 32}


def _state(weights: dict[str, torch.Tensor], head: dict[str, torch.Tensor] | None = None, **config: object) -> dict:
    """A training checkpoint's content (as torch.load gives it back), with ``config`` over the defaults."""
    cfg = TrainConfig(backbone_params=TINY_BACKBONE).to_dict() | config
    return {f: v for f, v in vars(TrainingState(backbone=weights, head=head or {}, optimizer={}, scheduler={},
                                                epoch=1, step=10, config=cfg)).items()}  # fmt: skip


def _tiny_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_backbone("ir_tiny", **TINY_BACKBONE).state_dict()


# --------------------------------------------------------------------------- crafted checkpoints


@pytest.mark.parametrize("params", [
    {**TINY_BACKBONE, "embedding_size": 300_000},  # beyond the documented limit
    {**TINY_BACKBONE, "embedding_size": 8192, "input_size": 1024},  # within each limit, 2 G parameters in all
    {**TINY_BACKBONE, "embedding_size": 8192},  # a possible backbone, but not the one whose tensors the file holds
], ids=["embedding-300000", "2G-parameters", "not-the-files-shapes"])  # fmt: skip
def test_a_small_run_checkpoint_asking_for_a_huge_backbone_is_refused_unmade(tmp_path: Path, params: dict) -> None:
    path = tmp_path / "crafted.pt"
    torch.save(_state({}, backbone_params=params), path)  # 1.5 KB: no tensors, a config asking for a lot
    assert path.stat().st_size < 4096
    _refused(lambda: load_backbone(path), str(path))


def test_the_authors_architecture_asked_of_a_file_of_tiny_tensors_is_refused_unmade(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pt"
    torch.save(_state(_tiny_weights(), backbone="ir_101", backbone_params={}), path)  # IR-101 would be 260 MB
    message = _refused(lambda: load_backbone(path), str(path), "ir_101", "differ from the file's")
    assert "for the config" in message


def test_a_tensor_viewing_a_few_bytes_as_billions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pt"
    huge = torch.zeros(1).expand(2**20, 2**14)  # 16 G elements over 4 bytes (copied, 64 GB)
    torch.save(_state(_tiny_weights(), head={"batch_mean": huge, "batch_std": torch.ones(1)}), path)
    _refused(lambda: load_backbone(path), str(path), "(1048576, 16384)")


def test_a_checkpoint_missing_its_keys_is_named(tmp_path: Path) -> None:
    path = tmp_path / "crafted.pt"
    content = _state(_tiny_weights())
    del content["backbone"], content["optimizer"]
    content["epoch"] = "seven"
    torch.save(content, path)
    message = _refused(lambda: load_backbone(path), str(path), "missing backbone, optimizer", "epoch (str, not int)")
    assert message.startswith(f"{path} is a damaged training checkpoint")


def test_a_bare_pickle_claiming_a_terabyte_is_refused_unread(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf, _use_new_zipfile_serialization=False)  # torch < 1.6's format
    old = b"cpuq\x06K\x04"  # the storage's persistent id: ('storage', FloatStorage, key, 'cpu', 4 elements)
    assert buf.getvalue().count(old) == 1
    path = tmp_path / "legacy.pt"
    path.write_bytes(buf.getvalue().replace(old, b"cpuq\x06\x8a\x06" + (2**40).to_bytes(6, "little")))
    with pytest.raises(UnsafeCheckpointError, match="bare pickle"):
        load_checkpoint(path)
    _refused(lambda: load_checkpoint(path), str(path), "legacy format")


def test_a_file_that_is_no_checkpoint_is_refused_without_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("AAAA the first line of a private file\n")
    with pytest.raises(NotACheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert message == f"{path} is not a readable PyTorch checkpoint (not a zip archive)"
    assert "65" not in message.replace(str(path), "") and "AAAA" not in message


def test_a_compressed_entry_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2**20)}, buf)  # 4 MB of zeros: deflates to a few kB
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info.filename))
    assert path.stat().st_size < 64 * 1024
    _refused(lambda: load_checkpoint(path), str(path), "compressed")


def test_the_backbone_limit_is_the_parameters_counted_before_making_it() -> None:
    from adaface_lab.backbones import parameter_count

    for name in ("ir_tiny", "ir_18", "ir_mini56"):
        model = build_backbone(name)
        stem = model.input_layer[0].out_channels
        assert parameter_count(model.units, model.channels, model.input_size, model.embedding_size, stem) == sum(
            p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=f"beyond the limit of {MAX_PARAMETERS:,}"):
        build_backbone("ir_18", input_size=1024)  # 512·64·64·512 weights in the last layer alone


# --------------------------------------------------------------------------- damaged checkpoints, at random


def _seed() -> tuple[bytes, list[int]]:
    """A small run checkpoint's bytes, and the offsets of its zip fields (sizes, offsets, counts) and of its
    pickle's opcode arguments (lengths, memo indices, tensor sizes and strides)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.pt"
        torch.save(_state(_tiny_weights(), head={"batch_mean": torch.ones(1) * 20, "batch_std": torch.ones(1)}), path)
        data = path.read_bytes()
    fields: list[int] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            at = info.header_offset
            fields += [at + k for k in (18, 22, 26, 28)]  # local header: sizes, name and extra lengths
            if info.filename.endswith("data.pkl"):
                name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
                start = at + 30 + name_len + extra_len
                pkl = data[start : start + info.file_size]
                fields += [start + pos + 1 for op, _, pos in pickletools.genops(pkl) if op.arg is not None]
    end = data.rindex(b"PK\x05\x06")
    fields += [end + k for k in (8, 10, 12, 16)]  # end record: entry counts, directory size and offset
    return data, fields


_SEED, _FIELDS = _seed()


@FUZZ
@given(damaged=_damaged(_SEED, _FIELDS), through=st.sampled_from(["load_backbone", "load_checkpoint"]))
def test_the_checkpoint_loader_on_damaged_files(damaged: bytes, through: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzzed.pt"
        path.write_bytes(damaged)
        read = load_backbone if through == "load_backbone" else load_checkpoint
        peak, outcome = peak_bytes(lambda: read(path))
    event(f"{through}: {type(outcome).__name__}")
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, ValueError), repr(outcome)
        assert str(path) in str(outcome) and "\n" not in str(outcome), str(outcome)
    assert peak < SMALL


def test_pickle_protocol_bytes_mark_a_bare_pickle() -> None:
    """The loader tells bare pickles by their first two bytes: every protocol torch has written starts so."""
    for protocol in (2, 3, 4, 5):
        assert pickle.dumps({}, protocol=protocol)[:2] == bytes([0x80, protocol])
