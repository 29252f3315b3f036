"""Backbones: the official IResNet layout key by key, every registered model's output contract,
and the explicit input conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaface_lab.backbones import (
    build_backbone,
    list_backbones,
    preprocess,
    register_backbone,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
if not REFERENCE.is_dir():  # the shared folder sits beside the checkout (../shared)
    REFERENCE = Path("/work/shared/reference")


def _reference_rows(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in (REFERENCE / f"official_{name}_state_dict.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows.append((key, dims, dtype))
    return rows


def _model_rows(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]


def _on_meta(name: str, **kwargs: object) -> torch.nn.Module:
    with torch.device("meta"):  # no memory, no init cost: shapes and dtypes only
        return build_backbone(name, **kwargs)


@pytest.mark.parametrize("name", ["ir_18", "ir_50", "ir_101"])
def test_state_dict_equals_official_reference(name: str) -> None:
    expected = _reference_rows(name)
    got = _model_rows(_on_meta(name))
    assert [k for k, _, _ in got] == [k for k, _, _ in expected]  # same keys, same order
    assert got == expected  # and same shapes and dtypes


def test_ir_34_follows_the_official_block_templates() -> None:
    # ir_34 has no reference file; its blocks must be exactly the official blocks of ir_50
    # (same stage widths), arranged as units [3, 4, 6, 3].
    ref50 = _reference_rows("ir_50")

    def block(rows: list, i: int) -> list[tuple[str, tuple[int, ...], str]]:
        prefix = f"body.{i}."
        return [(k[len(prefix):], s, d) for k, s, d in rows if k.startswith(prefix)]

    stage_starts_50 = [0, 3, 7, 21]  # units [3, 4, 14, 3]
    first_block = {s: block(ref50, i) for s, i in enumerate(stage_starts_50)}
    later_block = {s: block(ref50, i + 1) for s, i in enumerate(stage_starts_50)}

    rows34 = _model_rows(_on_meta("ir_34"))
    n_blocks = len({k.split(".")[1] for k, _, _ in rows34 if k.startswith("body.")})
    assert n_blocks == 3 + 4 + 6 + 3
    i = 0
    for stage, units in enumerate([3, 4, 6, 3]):
        for u in range(units):
            assert block(rows34, i) == (first_block[stage] if u == 0 else later_block[stage]), f"body.{i}"
            i += 1
    non_body = lambda rows: [r for r in rows if not r[0].startswith("body.")]  # noqa: E731
    assert non_body(rows34) == non_body(ref50)


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_returns_unit_embeddings_and_their_norms(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name)
    size = model.input_size
    assert isinstance(size, int) and size >= 16
    official = name in ("ir_18", "ir_34", "ir_50", "ir_101")
    assert size == 112 if official else size <= 64  # teaching variants exist to train on a CPU
    captured: dict[str, torch.Tensor] = {}
    model.output_layer.register_forward_hook(lambda m, i, o: captured.__setitem__("raw", o.detach()))
    # Official models: one image in eval mode keeps ir_101 (24 GFLOPs per image) affordable.
    # Teaching models: a small batch in train mode, and the backward pass too.
    batch = 1 if official else 3
    model.train(not official)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.set_grad_enabled(not official):
        emb, norm = model(x)
    assert emb.shape == (batch, model.embedding_size) and norm.shape == (batch, 1)
    assert torch.isfinite(emb).all() and torch.isfinite(norm).all()
    assert torch.allclose(emb.detach().norm(dim=1), torch.ones(batch), atol=1e-5)
    # The norm is that of the output layer's result, taken before normalisation.
    raw = captured["raw"]
    assert torch.allclose(norm.detach().squeeze(1), raw.norm(dim=1), rtol=1e-5)
    assert torch.allclose((emb * norm).detach(), raw, atol=1e-5 * float(raw.abs().max()))
    if not official:
        (emb.sum() + norm.mean()).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_registry_rejects_unknown_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="ir_50"):  # the message lists the known names
        build_backbone("resnet_50")
    with pytest.raises(ValueError, match="already registered"):

        @register_backbone
        def ir_18() -> None:  # noqa: F811
            return None


def test_wrong_input_size_is_a_clear_error() -> None:
    model = build_backbone("ir_tiny").eval()
    with pytest.raises(ValueError, match="preprocess"):
        model(torch.zeros(1, 3, 112, 112))


# --------------------------------------------------------------------------- preprocess


def test_preprocess_scaling_and_channel_order() -> None:
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8))
    expected_rgb = (img.double() / 255.0 - 0.5) / 0.5  # the official formula, by hand
    rgb = preprocess(img, channel_order="rgb")
    bgr = preprocess(img, channel_order="bgr")
    assert rgb.dtype == torch.float32 and rgb.shape == (2, 3, 8, 8)
    assert torch.allclose(rgb.double(), expected_rgb, atol=1e-6)
    for c in range(3):
        assert torch.allclose(bgr[:, c].double(), expected_rgb[:, 2 - c], atol=1e-6)
    assert rgb.min() >= -1 and rgb.max() <= 1
    # A float image in [0, 1] gives the same input as its uint8 version; rank is kept.
    single = preprocess(img[0].float() / 255.0, channel_order="rgb")
    assert single.shape == (3, 8, 8) and torch.allclose(single, rgb[0], atol=1e-6)


def test_preprocess_resizes_like_pillow() -> None:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
    arr = np.array(Image.fromarray(small).resize((112, 112), Image.BICUBIC))  # a smooth image
    ours = preprocess(torch.from_numpy(arr).permute(2, 0, 1)[None], channel_order="rgb", size=64)[0]
    pil = np.asarray(Image.fromarray(arr).resize((64, 64), Image.BILINEAR), dtype=np.float64)  # antialiased
    pil = (torch.from_numpy(pil).permute(2, 0, 1) / 255.0 - 0.5) / 0.5
    assert ours.shape == (3, 64, 64)
    assert (ours.double() - pil).abs().mean() < 2 / 255  # two independent resamplers agree


def test_preprocess_requires_an_explicit_valid_channel_order() -> None:
    img = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(TypeError):
        preprocess(img)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="bgr"):
        preprocess(img, channel_order="BGR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        preprocess(img.long(), channel_order="rgb")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess(torch.full((1, 3, 4, 4), 255.0), channel_order="rgb")
    with pytest.raises(ValueError):
        preprocess(torch.zeros(1, 4, 4, 3, dtype=torch.uint8), channel_order="rgb")
