"""Checkpoints: the authors' Lightning layout loads and reproduces outputs; mismatches are named;
malicious pickles are refused without running; saving is atomic."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from adaface_lab.backbones import build_backbone
from adaface_lab.checkpoint import (
    UnsafeCheckpointError,
    load_backbone_checkpoint,
    load_checkpoint,
    save_checkpoint,
    split_lightning_state_dict,
)


def _randomised(name: str, seed: int, **kwargs: object) -> torch.nn.Module:
    """A backbone whose every tensor (BN statistics and PReLU slopes included) is random."""
    torch.manual_seed(seed)
    model = build_backbone(name, **kwargs)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in key else torch.randn_like(t) * 0.05)
    return model.eval()


def _lightning_checkpoint(model: torch.nn.Module, num_classes: int = 7, **extra: object) -> dict:
    """The layout of the authors' released .ckpt files (DESIGN.md §3), built by hand."""
    state = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    state["head.kernel"] = torch.randn(model.embedding_size, num_classes)  # (embedding, classes)
    state["head.t"] = torch.zeros(1)
    state["head.batch_mean"] = torch.ones(1) * 20
    state["head.batch_std"] = torch.ones(1) * 100
    return {
        "epoch": 26,
        "global_step": 123456,
        "pytorch-lightning_version": "1.8.6",
        "state_dict": state,
        "hyper_parameters": {"arch": "ir_18", "head": "adaface", "m": 0.4, "h": 0.333, "lr_milestones": [12, 20, 24]},
        **extra,
    }


def test_lightning_checkpoint_loads_and_gives_identical_outputs(tmp_path: Path) -> None:
    source = _randomised("ir_18", seed=1)
    ckpt = _lightning_checkpoint(source)
    path = tmp_path / "adaface_ir18.ckpt"
    torch.save(ckpt, path)

    target = _randomised("ir_18", seed=2)  # different weights before loading
    assert not torch.equal(target.state_dict()["body.0.res_layer.1.weight"], source.state_dict()["body.0.res_layer.1.weight"])
    x = torch.randn(1, 3, 112, 112)
    with torch.inference_mode():
        expected_emb, expected_norm = source(x)
    report = load_backbone_checkpoint(path, target)
    with torch.inference_mode():
        emb, norm = target(x)

    assert torch.equal(emb, expected_emb) and torch.equal(norm, expected_norm)
    assert report.ok and report.format == "lightning"
    assert len(report.loaded_keys) == len(source.state_dict())
    assert set(report.head_state_dict) == {"kernel", "t", "batch_mean", "batch_std"}
    assert torch.equal(report.head_state_dict["kernel"], ckpt["state_dict"]["head.kernel"])
    assert report.meta["epoch"] == 26 and report.meta["global_step"] == 123456


def test_split_lightning_state_dict() -> None:
    sd = {"model.a.weight": torch.ones(1), "head.kernel": torch.zeros(2, 3), "other.x": torch.ones(2)}
    backbone, head = split_lightning_state_dict(sd)
    assert list(backbone) == ["a.weight"] and list(head) == ["kernel"]
    assert head["kernel"].shape == (2, 3)


def test_plain_and_dataparallel_state_dicts_load(tmp_path: Path) -> None:
    source = _randomised("ir_tiny", seed=3)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = source(x)[0]
    for name, sd in {
        "plain.pt": source.state_dict(),
        "dp.pth": {f"module.{k}": v for k, v in source.state_dict().items()},
    }.items():
        torch.save(sd, tmp_path / name)
        target = _randomised("ir_tiny", seed=4)
        report = load_backbone_checkpoint(tmp_path / name, target)
        assert report.ok and report.format == "state_dict"
        with torch.inference_mode():
            assert torch.equal(target(x)[0], expected)


def test_mismatches_are_named_and_strict_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tiny.ckpt"
    torch.save(_lightning_checkpoint(_randomised("ir_tiny", seed=5)), path)

    other = _randomised("ir_tiny", seed=6, embedding_size=256)  # a different output width
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"output_layer\.3\.weight.*\(512, 2048\).*\(256, 2048\)"):
        load_backbone_checkpoint(path, other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # untouched

    report = load_backbone_checkpoint(path, other, strict=False)
    mismatched = {k for k, _, _ in report.shape_mismatches}
    assert mismatched == {"output_layer.3.weight", "output_layer.3.bias", "output_layer.4.running_mean", "output_layer.4.running_var"}
    assert not report.ok and "shape mismatches" in str(report)
    assert torch.equal(other.state_dict()["input_layer.0.weight"], torch.load(path, weights_only=True)["state_dict"]["model.input_layer.0.weight"])

    deeper = _randomised("ir_small", seed=7)  # more blocks: missing keys, and wider: mismatches
    with pytest.raises(ValueError, match=r"missing from file.*body\.\d"):
        load_backbone_checkpoint(path, deeper)
    torch.save(deeper.state_dict(), tmp_path / "small.pt")  # and the other way round
    report = load_backbone_checkpoint(tmp_path / "small.pt", _randomised("ir_tiny", seed=8), strict=False)
    assert "body.7.res_layer.1.weight" in report.unexpected_keys  # ir_tiny has 4 blocks, ir_small 8
    assert "body.1.shortcut_layer.0.weight" in report.missing_keys  # tiny's body.1 starts a stage
    with pytest.raises(ValueError, match=r"\d+ unexpected in file: body\.4"):
        load_backbone_checkpoint(tmp_path / "small.pt", _randomised("ir_tiny", seed=8))


class _WritesMarker:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    zip_ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "callbacks": _WritesMarker(marker)}, zip_ckpt)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"state_dict": _WritesMarker(marker)}, protocol=2))
    for path in (zip_ckpt, legacy):
        with pytest.raises(UnsafeCheckpointError, match="refused"):
            load_backbone_checkpoint(path, build_backbone("ir_tiny"))
        assert not marker.exists()
    # The payload is real: unpickling it the unsafe way would have created the marker.
    pickle.loads(legacy.read_bytes())
    assert marker.exists()


def test_lightning_metadata_containers_load_as_plain_data(tmp_path: Path) -> None:
    # Lightning 1.x pickles hyper-parameters as its AttributeDict; recreate that class under its
    # real module name only while saving, so the file holds exactly that global.
    mod = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = mod.__name__, "AttributeDict"
    mod.AttributeDict = AttributeDict  # type: ignore[attr-defined]
    names = ["pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    saved = {n: sys.modules.get(n) for n in names}
    for n in names[:-1]:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[names[-1]] = mod
    path = tmp_path / "with_hparams.ckpt"
    try:
        model = _randomised("ir_tiny", seed=8)
        torch.save(_lightning_checkpoint(model, hparams=AttributeDict(arch="ir_tiny", m=0.4)), path)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    with pytest.raises(pickle.UnpicklingError, match="AttributeDict"):
        torch.load(path, weights_only=True)  # plain weights-only loading refuses it
    obj = load_checkpoint(path)
    assert obj["hparams"] == {"arch": "ir_tiny", "m": 0.4} and type(obj["hparams"]) is dict
    assert load_backbone_checkpoint(path, build_backbone("ir_tiny")).ok

    ns_path = tmp_path / "with_namespace.ckpt"  # argparse.Namespace arguments, as some scripts save
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1, arch="ir_50")}, ns_path)
    args = load_checkpoint(ns_path)["args"]
    assert (args.lr, args.arch) == (0.1, "ir_50") and not isinstance(args, argparse.Namespace)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(bad)


def test_save_checkpoint_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run" / "last.ckpt"
    first = {"step": 1, "w": torch.arange(5.0)}
    save_checkpoint(first, path)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["w"], first["w"])
    # A save that fails half-way leaves the previous file intact and no temporary behind.
    with pytest.raises(Exception):
        save_checkpoint({"step": 2, "w": torch.zeros(3), "bad": lambda: None}, path)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
