"""IResNet backbones (the official AdaFace ``ir_*`` family) and small teaching variants.

One registry, filled by the :func:`register_backbone` decorator and read by
:func:`build_backbone` (the timm pattern)::

    model = build_backbone("ir_50")            # the authors' architecture, 112x112 input
    model = build_backbone("ir_tiny")          # a teaching variant, 64x64 input, fast on a CPU
    x = preprocess(images_uint8_rgb, channel_order="bgr", size=model.input_size)
    emb, norm = model(x)                       # (B, 512) unit vectors, (B, 1) norms

The ``ir_18/34/50/101`` models reproduce the official module tree exactly (DESIGN.md §3), so
their ``state_dict()`` keys, shapes and dtypes equal the authors' and their checkpoints load
unchanged (see :mod:`adaface_lab.checkpoint`). The teaching variants use the same blocks with
fewer channels, fewer units and a smaller input, and the same ``(embedding, norm)`` output.

Every backbone has the attributes ``input_size`` (the square side in pixels it expects) and
``embedding_size``. Input conversion is done only by :func:`preprocess`, with an explicit
channel order: the authors' AdaFace weights expect BGR, insightface's expect RGB.

Limits, checked before anything is allocated (a size typed by mistake, or asked for by a crafted
checkpoint, is an error rather than an attempt at terabytes): ``input_size`` ≤ :data:`MAX_INPUT_SIZE`,
``embedding_size`` ≤ :data:`MAX_EMBEDDING_SIZE`, and at most :data:`MAX_PARAMETERS` parameters in all
(:func:`parameter_count`).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import Registry

__all__ = [
    "BasicBlockIR",
    "IResNet",
    "BACKBONES",
    "register_backbone",
    "build_backbone",
    "list_backbones",
    "preprocess",
    "DEFAULT_TEACHING_BACKBONE",
    "MAX_INPUT_SIZE",
    "MAX_EMBEDDING_SIZE",
    "MAX_PARAMETERS",
    "parameter_count",
    "ir_18",
    "ir_34",
    "ir_50",
    "ir_101",
    "ir_tiny",
    "ir_small",
    "ir_mini56",
]

#: The backbone the CPU demo trains by default (fast: see ``bench/bench_data.py``).
DEFAULT_TEACHING_BACKBONE = "ir_tiny"

BACKBONES: Registry[Callable[..., "IResNet"]] = Registry("backbone", sort=True)

#: The largest input side, in pixels (the official models take 112; activations grow with its square).
MAX_INPUT_SIZE = 1024
#: The longest embedding (the official models use 512).
MAX_EMBEDDING_SIZE = 8192
#: The most parameters a backbone may hold: 2**28, 1 GiB of float32 (IR-101 holds 65 million).
MAX_PARAMETERS = 2**28


# --------------------------------------------------------------------------- registry


def register_backbone(fn: Callable[..., "IResNet"]) -> Callable[..., "IResNet"]:
    """Decorator: register a backbone factory under its function name."""
    return BACKBONES.add(fn.__name__, fn)


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return BACKBONES.names()


def build_backbone(name: str, **kwargs: object) -> "IResNet":
    """Build a registered backbone by name; ``kwargs`` go to its factory.

    Raises ``ValueError`` naming the known backbones when ``name`` is unknown, the options every backbone
    takes (:class:`IResNet`'s, but ``units``) when an option is unknown, and the limit when a size exceeds it.
    """
    factory = BACKBONES.get(name)
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"backbone {name!r} takes {', '.join(_OPTIONS)}; unknown option(s): {', '.join(unknown)}")
    return factory(**kwargs)


# --------------------------------------------------------------------------- modules


class BasicBlockIR(nn.Module):
    """The IResNet unit: pre-activation residual branch plus a (possibly strided) shortcut.

    residual: BN, Conv3x3, BN, PReLU, Conv3x3(stride), BN.
    shortcut: MaxPool2d(1, stride) when channels match, else Conv1x1(stride) + BN.
    Input (B, in_channels, H, W) -> output (B, depth, H/stride, W/stride).
    """

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IResNet(nn.Module):
    """IResNet returning ``(embedding / ‖embedding‖, ‖embedding‖)``.

    Args:
        units: number of BasicBlockIR units per stage; the first unit of each stage has stride 2.
        channels: output channels per stage (same length as ``units``).
        input_size: side of the square input in pixels; must be divisible by 2**len(units).
        embedding_size: length of the embedding.
        stem_channels: channels of the input layer (the official models use 64).
        dropout: dropout probability before the final linear layer (official: 0.4).

    The module tree is ``input_layer`` (Conv3x3, BN, PReLU), ``body`` (a flat Sequential of
    units) and ``output_layer`` (BN2d, Dropout, Flatten, Linear, BatchNorm1d(affine=False)),
    as in the authors' code, so the official key names come out unchanged.
    """

    def __init__(
        self,
        units: Sequence[int],
        channels: Sequence[int] = (64, 128, 256, 512),
        input_size: int = 112,
        embedding_size: int = 512,
        stem_channels: int = 64,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        units, channels = _whole_numbers("units", units), _whole_numbers("channels", channels)
        input_size, embedding_size, stem_channels = (_whole_numbers(name, [value])[0] for name, value in (
            ("input_size", input_size), ("embedding_size", embedding_size), ("stem_channels", stem_channels)))
        if len(units) == 0 or len(units) != len(channels):
            raise ValueError(f"units {units} and channels {channels} must be non-empty and of equal length")
        if min(units) < 1 or min(channels) < 1 or stem_channels < 1 or embedding_size < 1:
            raise ValueError("units, channels, stem_channels and embedding_size must be positive")
        stride_total = 2 ** len(units)
        if input_size < stride_total or input_size % stride_total != 0 or input_size > MAX_INPUT_SIZE:
            raise ValueError(
                f"input_size {input_size} must be a multiple of 2**{len(units)} = {stride_total} (one stride-2 "
                f"unit per stage) from {stride_total} to {MAX_INPUT_SIZE} pixels"
            )
        if embedding_size > MAX_EMBEDDING_SIZE:
            raise ValueError(f"embedding_size {embedding_size} exceeds the limit of {MAX_EMBEDDING_SIZE}")
        count = parameter_count(units, channels, input_size, embedding_size, stem_channels)
        if count > MAX_PARAMETERS:
            raise ValueError(f"this backbone would hold {count:,} parameters ({4 * count / 2**30:.1f} GiB of float32), "
                             f"beyond the limit of {MAX_PARAMETERS:,}; choose a smaller input_size, embedding_size "
                             "or channels")  # fmt: skip
        if not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size = int(input_size)
        self.embedding_size = int(embedding_size)
        self.units, self.channels = units, channels

        self.input_layer = nn.Sequential(
            nn.Conv2d(3, stem_channels, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.PReLU(stem_channels),
        )
        # output_layer is created before body, as in the authors' code, so that state_dict()
        # lists the keys in the same order as their checkpoints.
        side = input_size // stride_total
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels[-1]),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, embedding_size),  # (B, C*side*side) -> (B, E)
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        blocks: list[nn.Module] = []
        in_ch = stem_channels
        for n_units, depth in zip(units, channels):
            blocks.append(BasicBlockIR(in_ch, depth, stride=2))
            blocks.extend(BasicBlockIR(depth, depth, stride=1) for _ in range(n_units - 1))
            in_ch = depth
        self.body = nn.Sequential(*blocks)
        self._init_weights()

    def _init_weights(self) -> None:
        # Same scheme as the authors' `initialize_weights` (kaiming for conv/linear, BN at 1/0).
        if self.input_layer[0].weight.is_meta:
            return  # shapes only (torch.device("meta")): nothing to initialise
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, input_size, input_size) float -> (unit embedding (B, E), norm (B, 1))."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            raise ValueError(
                f"expected input of shape (B, 3, {self.input_size}, {self.input_size}), got {tuple(x.shape)}; "
                f"use adaface_lab.backbones.preprocess(images, channel_order=..., size={self.input_size})"
            )
        x = self.input_layer(x)
        x = self.body(x)
        x = self.output_layer(x)  # (B, E)
        norm = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)  # (B, 1)
        # The clamp only matters for an exactly-zero embedding (the official code would give NaN).
        return x / norm.clamp_min(torch.finfo(x.dtype).tiny), norm

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, embedding_size={self.embedding_size}"


def _whole_numbers(what: str, values: Sequence[object]) -> tuple[int, ...]:
    """``values`` as ints; ValueError when one is not a whole number (a bool, a string, 3.5)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what} must be a list of whole numbers, got {values!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        shown = repr(values[0]) if len(values) == 1 else repr(list(values))
        raise ValueError(f"{what} must be {'a whole number' if len(values) == 1 else 'whole numbers'}, got {shown}")
    return tuple(int(v) for v in values)  # type: ignore[call-overload]


def parameter_count(units: Sequence[int], channels: Sequence[int], input_size: int, embedding_size: int,
                    stem_channels: int) -> int:  # fmt: skip
    """The number of parameters of the :class:`IResNet` these sizes make, counted without making it."""
    count = 3 * stem_channels * 9 + 3 * stem_channels  # stem: Conv3x3, BN (weight, bias), PReLU
    in_ch = stem_channels
    for n_units, depth in zip(units, channels):
        for k in range(n_units):
            cin = in_ch if k == 0 else depth
            # BN(cin), Conv3x3, BN, PReLU, Conv3x3, BN; a Conv1x1 + BN shortcut when the channels change
            count += 2 * cin + 9 * cin * depth + 5 * depth + 9 * depth * depth
            count += cin * depth + 2 * depth if cin != depth else 0
        in_ch = depth
    side = input_size // 2 ** len(units)
    # output: BN2d, Linear (weight, bias); the final BatchNorm1d has no parameters (affine=False)
    return count + 2 * in_ch + in_ch * side * side * embedding_size + embedding_size


# --------------------------------------------------------------------------- registered models


@register_backbone
def ir_18(**kwargs: object) -> IResNet:
    """Official IR-18: units [2, 2, 2, 2], channels 64-512, 112x112 input."""
    return IResNet(units=(2, 2, 2, 2), **kwargs)  # type: ignore[arg-type]


@register_backbone
def ir_34(**kwargs: object) -> IResNet:
    """Official IR-34: units [3, 4, 6, 3], 112x112 input."""
    return IResNet(units=(3, 4, 6, 3), **kwargs)  # type: ignore[arg-type]


@register_backbone
def ir_50(**kwargs: object) -> IResNet:
    """Official IR-50: units [3, 4, 14, 3], 112x112 input."""
    return IResNet(units=(3, 4, 14, 3), **kwargs)  # type: ignore[arg-type]


@register_backbone
def ir_101(**kwargs: object) -> IResNet:
    """Official IR-101 (the authors' ``num_layers=100``): units [3, 13, 30, 3], 112x112 input."""
    return IResNet(units=(3, 13, 30, 3), **kwargs)  # type: ignore[arg-type]


def _teaching(defaults: dict[str, object], kwargs: dict[str, object]) -> IResNet:
    return IResNet(**{**defaults, **kwargs})  # type: ignore[arg-type]


@register_backbone
def ir_tiny(**kwargs: object) -> IResNet:
    """Teaching IResNet for CPU demos: 64x64 input, 4 stages of one unit, channels 16-128.

    The default backbone of the CPU demo (``DEFAULT_TEACHING_BACKBONE``).
    """
    return _teaching(
        dict(units=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_channels=16, input_size=64, dropout=0.2),
        kwargs,
    )


@register_backbone
def ir_small(**kwargs: object) -> IResNet:
    """Teaching IResNet: IR-18's layout at half width (32-256 channels) on 64x64 input."""
    return _teaching(
        dict(units=(2, 2, 2, 2), channels=(32, 64, 128, 256), stem_channels=32, input_size=64, dropout=0.2),
        kwargs,
    )


@register_backbone
def ir_mini56(**kwargs: object) -> IResNet:
    """Teaching IResNet: 56x56 input, 3 stages (32, 64, 128 channels), 7x7 final map like the official."""
    return _teaching(
        dict(units=(1, 2, 1), channels=(32, 64, 128), stem_channels=32, input_size=56, dropout=0.2),
        kwargs,
    )


#: The options every registered backbone takes (:class:`IResNet`'s; the factory fixes ``units``).
_OPTIONS: tuple[str, ...] = tuple(n for n in inspect.signature(IResNet.__init__).parameters if n not in ("self", "units"))


# --------------------------------------------------------------------------- input conversion


def preprocess(
    images: torch.Tensor,
    channel_order: Literal["bgr", "rgb"],
    size: int | None = None,
) -> torch.Tensor:
    """Convert RGB images to model input: float32, ``(x/255 - 0.5)/0.5`` in [-1, 1].

    Args:
        images: RGB images, (N, 3, H, W) or (3, H, W); uint8 in 0..255 or float in [0, 1].
        channel_order: the order the *model* expects, required: ``"bgr"`` for the authors'
            AdaFace weights (channels are reversed here), ``"rgb"`` for insightface's.
        size: output side in pixels; images are resized (bilinear, antialiased) when their
            size differs. ``None`` keeps the size.

    Returns:
        float32 tensor of the same rank as ``images``: (N, 3, size, size) or (3, size, size).
    """
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' (AdaFace weights) or 'rgb' (insightface), got {channel_order!r}")
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.to(torch.float32) / 255.0
    elif images.is_floating_point():
        x = images.to(torch.float32)
        if x.numel() and (not torch.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1.0 + 1e-6):
            raise ValueError("float images must be finite and in [0, 1] (uint8 images are 0..255)")
    else:
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}")
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)  # (1, 3, H, W)
    if size is not None:
        if int(size) < 1:
            raise ValueError(f"size must be a positive int, got {size}")
        size = int(size)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            x = x.clamp_(0.0, 1.0)
    if channel_order == "bgr":
        x = x.flip(1)  # RGB -> BGR
    x = (x - 0.5) / 0.5
    return x if batched else x.squeeze(0)
