"""Classification heads: a cosine layer plus one margin from :mod:`adaface_lab.margins`.

Every head is called like the official AdaFace heads::

    head = build_head("adaface", embedding_size=512, num_classes=10_000)
    logits = head(embeddings, norms, labels)   # (B, d) unit-norm, (B, 1), (B,) -> (B, C), scaled by s
    loss = head.loss(logits, labels)           # cross-entropy (+ MagFace's regulariser)

The margin touches only the B target logits: the B×C matrix is one matmul and one scale, never
an arccos/cos over every class and never a B×C one-hot mask. (CurricularFace compares every
negative with its row's threshold, which its definition needs.) Non-target logits are s·c_j; the
official code computes s·clamp(c_j, −1+ε, 1−ε), which differs only where |c_j| > 1 − ε.

One generic :class:`MarginHead` serves every registered margin (a margin registered later too); only
methods with state have a head class of their own: AdaFace (the EMA of μ_z, σ_z), CurricularFace
(its t) and MagFace (its regulariser). State-dict keys are the official ones: ``kernel``, and
AdaFace's buffers ``t``, ``batch_mean``, ``batch_std``.

``detach_margin=True`` gives the insightface / CVLface convention: the same logits, but the margin
is computed without gradient, so df/dc = s for every method (DESIGN.md §2, "detached-margin").

After each forward, ``head.diagnostics`` holds detached per-sample tensors for logging: ``cos_y``,
``norm``, the margin applied (``margin_angle`` in radians, ``margin_add``, and ``margin_mult`` where
the method multiplies the angle) and each method's own state (AdaFace: ``z_hat``, ``batch_mean``,
``batch_std``; CurricularFace: ``t``; MagFace: ``regularizer``).
"""

from __future__ import annotations

import numbers
from dataclasses import fields
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import Registry
from .margins import MARGINS, Margin, build_margin, list_margins, magface_regularizer, margin_class


class _HeadRegistry(Registry[type["MarginHead"]]):
    """The head class of every registered margin: the stateful heads registered here by name, the
    generic :class:`MarginHead` for every other margin. Names follow the margin registry."""

    def names(self) -> list[str]:
        return list_margins()

    def __contains__(self, name: object) -> bool:
        return name in MARGINS

    def get(self, name: str) -> type["MarginHead"]:
        self.require(name)
        return self._entries.get(name, MarginHead)


HEADS: Registry[type["MarginHead"]] = _HeadRegistry("head")


def register_head(name: str) -> Callable[[type["MarginHead"]], type["MarginHead"]]:
    """Class decorator: register the head class of the margin ``name``, for a method with state."""

    def deco(cls: type[MarginHead]) -> type[MarginHead]:
        cls.margin_name = name
        return HEADS.add(name, cls)

    return deco


def list_heads() -> list[str]:
    """Names of every head: one per registered margin."""
    return HEADS.names()


def build_head(name: str, /, embedding_size: int = 512, num_classes: int = 1000,
               **params: Any) -> "MarginHead":
    """Make the head of the margin ``name``; ``params`` are the margin's (s, m, h, …) plus
    ``detach_margin`` and ``validate``.

    Raises ValueError for an unknown head, an unknown parameter name, a size that is not an integer
    ≥ 1 (embedding_size) or ≥ 2 (num_classes), or a parameter value outside its domain
    (:class:`~adaface_lab.margins.Domain`).
    """
    cls = HEADS.get(name)
    known = [*_HEAD_OPTIONS, *(f.name for f in fields(margin_class(name)))]
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(f"head {name!r} takes embedding_size, num_classes and {known}; unknown "
                         f"parameter(s): {sorted(unknown)}")
    return cls(embedding_size=embedding_size, num_classes=num_classes, margin_name=name, **params)


_HEAD_OPTIONS = ("detach_margin", "validate")
"""What :func:`build_head` takes besides the sizes and the margin's parameters."""


def _check_size(what: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{what} must be an integer ≥ {least}, got {value!r}")


# ----------------------------------------------------------------------------- input checks

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_inputs(
    embeddings: Any, norms: Any, labels: Any, embedding_size: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a head's inputs; returns norms as (B, 1) and labels as int64 (B,).

    Raises TypeError (not a tensor, labels not integer) or ValueError (shape, NaN/inf, negative
    norm, label out of range, embeddings not unit-norm) with a plain message.
    """
    for name, value in (("embeddings", embeddings), ("norms", norms), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if embeddings.ndim != 2 or embeddings.shape[1] != embedding_size:
        raise ValueError(
            f"embeddings must have shape (B, {embedding_size}), got {tuple(embeddings.shape)}"
        )
    batch = embeddings.shape[0]
    if batch == 0:
        raise ValueError("empty batch: embeddings has 0 rows")
    if labels.dtype not in _INT_DTYPES:
        raise TypeError(f"labels must be an integer tensor (class indices), got {labels.dtype}")
    if labels.shape not in ((batch,), (batch, 1)):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if norms.shape not in ((batch,), (batch, 1)):
        raise ValueError(f"norms must have shape ({batch}, 1), got {tuple(norms.shape)}")
    emb, nrm, lab = embeddings.detach(), norms.detach(), labels.detach()
    if not torch.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or inf")
    if not torch.isfinite(nrm).all():
        raise ValueError("norms contain NaN or inf")
    if (nrm < 0).any():
        raise ValueError("norms must be non-negative (they are feature norms ‖z‖)")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got values in [{lo}, {hi}]")
    tol = 1e-3 if emb.dtype in (torch.float32, torch.float64) else 2e-2
    deviation = float((emb.float().norm(dim=1) - 1).abs().max())
    if deviation > tol:
        raise ValueError(
            "embeddings must be unit-norm (pass embedding/‖embedding‖ and the norm separately); "
            f"largest |‖e‖ − 1| = {deviation:.3g}"
        )
    return norms.reshape(batch, 1), labels.reshape(batch).long()


# ----------------------------------------------------------------------------- base head


class MarginHead(nn.Module):
    """Cosine classifier with the margin ``margin_name`` on the target logit (any registered margin;
    methods with state subclass it and override the hooks below).

    Parameters: ``kernel`` (embedding_size, num_classes) — the class weights, stored transposed
    relative to ``nn.Linear`` as in the official code, so released head states load unchanged.
    """

    margin_name: ClassVar[str] = "softmax"
    """The margin of a stateful head class (the generic head takes it as an argument)."""

    def __init__(
        self,
        embedding_size: int = 512,
        num_classes: int = 1000,
        detach_margin: bool = False,
        validate: bool = True,
        margin_name: str | None = None,
        **margin_params: Any,
    ) -> None:
        super().__init__()
        _check_size("embedding_size", embedding_size, 1)
        _check_size("num_classes", num_classes, 2)
        if margin_name and type(self) is not MarginHead and margin_name != self.margin_name:
            raise ValueError(f"{type(self).__name__} is the head of {self.margin_name!r}, not {margin_name!r}")
        self.margin: Margin = build_margin(margin_name or self.margin_name, **margin_params)
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.detach_margin = detach_margin
        self.validate = validate
        self.kernel = nn.Parameter(torch.empty(embedding_size, num_classes))
        # the official initialisation: uniform, then every column renormalised to unit length
        with torch.no_grad():
            self.kernel.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        self.diagnostics: dict[str, torch.Tensor] = {}
        self.aux_loss: torch.Tensor | None = None

    @property
    def s(self) -> float:
        return self.margin.s

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.margin.params().items())
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, {params}, "
                f"detach_margin={self.detach_margin}")

    # -- forward -----------------------------------------------------------------------------
    def scaled_cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, d) unit embeddings -> s·cos θ (B, C) with the unit class weights.

        Computed as (e @ W) · (s / ‖W_j‖): scaling the B×C product once costs less than normalising
        the d×C weights and then scaling (about a quarter less for B = 256, d = 512, C = 20,000,
        forward and backward). Half-precision products (autocast) come back as float32, so the
        margin maths never runs in 16 bits.
        """
        scale = self.margin.s / self.kernel.norm(dim=0).clamp_min(1e-12)  # (C,)
        product = torch.mm(embeddings, self.kernel.to(embeddings.dtype))
        if product.dtype in (torch.float16, torch.bfloat16):
            product = product.float()
        return product * scale

    def forward(self, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, d) unit-norm embeddings, (B, 1) norms, (B,) labels -> (B, C) scaled logits."""
        if self.validate:
            norms, labels = _check_inputs(embeddings, norms, labels, self.embedding_size, self.num_classes)
        else:
            norms, labels = norms.reshape(-1, 1), labels.reshape(-1).long()
        return self._apply_margin(self.scaled_cosine(embeddings), norms, labels)

    def logits_from_cos(self, cos: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Apply the margin to a (B, C) cosine matrix (for analyses that start from cosines)."""
        return self._apply_margin(cos * self.margin.s, norms, labels)

    def _apply_margin(self, logits: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, C) s·cos -> logits with the margin: the B target entries are replaced in place."""
        s = self.margin.s
        rows = torch.arange(logits.shape[0], device=logits.device)
        norm = norms.reshape(-1).to(logits.dtype)
        c_y = logits[rows, labels] / s  # (B,) target cosines
        context = self._context(norm, c_y)

        if self.margin.modifies_negatives:
            negatives = self.margin.negative_logit(logits / s, c_y[:, None], **context)
            logits = logits + (negatives - logits).detach() if self.detach_margin else negatives
        target = self.margin.target_logit(c_y, **context)  # (B,)
        if self.detach_margin:
            target = s * c_y + (target - s * c_y).detach()
        logits[rows, labels] = target  # in place: only B entries change

        self.aux_loss = self._aux_loss(norm, context)
        self._record(c_y, norm, context)
        return logits

    # -- hooks for stateful methods ---------------------------------------------------------
    def _context(self, norm: torch.Tensor, c_y: torch.Tensor) -> dict[str, Any]:
        """Per-sample context the margin needs (and where stateful heads update their state)."""
        return {"norm": norm} if "norm" in self.margin.needs else {}

    def _aux_loss(self, norm: torch.Tensor, context: dict[str, Any]) -> torch.Tensor | None:
        return None

    def _record(self, c_y: torch.Tensor, norm: torch.Tensor, context: dict[str, Any]) -> None:
        diag = {"cos_y": c_y.detach(), "norm": norm.detach()}
        terms = self.margin.margin_terms(c_y.detach(), **{k: _detach(v) for k, v in context.items()})
        diag.update({k: v.detach() for k, v in terms.items()})
        self.diagnostics = diag

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the scaled logits, plus the method's auxiliary term (MagFace)."""
        ce = F.cross_entropy(logits, labels.reshape(-1).long(), reduction=reduction)
        if self.aux_loss is None:
            return ce
        return ce + (self.aux_loss if reduction != "sum" else self.aux_loss * logits.shape[0])


def _detach(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


# ----------------------------------------------------------------------------- heads with state


@register_head("magface")
class MagFaceHead(MarginHead):
    """MagFace: margin grows with the norm; ``aux_loss`` = λ_g · mean(1/a + a/u_a²).

    The norm is *not* detached: MagFace's regulariser (and its margin) act on it.
    """

    def _aux_loss(self, norm: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        m = self.margin
        self._regularizer = magface_regularizer(norm, m.l_a, m.u_a)
        return m.lambda_g * self._regularizer.mean()

    def _record(self, c_y: torch.Tensor, norm: torch.Tensor, context: dict[str, Any]) -> None:
        super()._record(c_y, norm, context)
        self.diagnostics["regularizer"] = self._regularizer.detach()


@register_head("curricularface")
class CurricularFaceHead(MarginHead):
    """CurricularFace: ArcFace target; hard negatives weighted by the adaptive ``t`` buffer, updated
    in training mode only (CurricularFace's own code updates it in eval mode too; its boundary past
    θ + m = π is ``boundary="official"``: docs/paper_vs_code.md)."""

    def __init__(self, embedding_size: int = 512, num_classes: int = 1000, **params: Any) -> None:
        super().__init__(embedding_size, num_classes, **params)
        self.register_buffer("t", torch.zeros(1))

    def _context(self, norm: torch.Tensor, c_y: torch.Tensor) -> dict[str, Any]:
        if self.training:  # t ← 0.01·mean(c_y) + 0.99·t, before use
            with torch.no_grad():
                self.t.mul_(0.99).add_(0.01 * c_y.detach().mean())
        return {"t": self.t}

    def _record(self, c_y: torch.Tensor, norm: torch.Tensor, context: dict[str, Any]) -> None:
        super()._record(c_y, norm, context)
        self.diagnostics["t"] = self.t.detach().clone().expand_as(c_y)


@register_head("adaface")
class AdaFaceHead(MarginHead):
    """AdaFace (official implementation): quality-adaptive margin from the feature norm.

    Buffers as the authors' checkpoints: ``t`` (unused, kept for loading), ``batch_mean`` (μ_z,
    starts at 20) and ``batch_std`` (σ_z, starts at 100). In training mode, each forward first
    updates them as an EMA of the batch's (clipped, detached) norms with weight ``t_alpha``, then
    computes ẑ with the updated values. A batch of one has no std: σ_z then keeps its value (the
    official code would turn it into NaN). In eval mode the buffers are only read (the official code
    updates them in eval mode too). These and the paper's differences from the code are listed in
    docs/paper_vs_code.md.
    """

    def __init__(self, embedding_size: int = 512, num_classes: int = 1000, **params: Any) -> None:
        super().__init__(embedding_size, num_classes, **params)
        self.register_buffer("t", torch.zeros(1))
        self.register_buffer("batch_mean", torch.ones(1) * 20)
        self.register_buffer("batch_std", torch.ones(1) * 100)

    def _context(self, norm: torch.Tensor, c_y: torch.Tensor) -> dict[str, Any]:
        safe = norm.detach().clamp(0.001, 100)
        if self.training:
            alpha = self.margin.t_alpha
            with torch.no_grad():
                self.batch_mean.mul_(1 - alpha).add_(alpha * safe.mean())
                if safe.numel() > 1:
                    self.batch_std.mul_(1 - alpha).add_(alpha * safe.std())
        z_hat = self.margin.z_hat(safe, self.batch_mean, self.batch_std).detach()
        return {"z_hat": z_hat}

    def _record(self, c_y: torch.Tensor, norm: torch.Tensor, context: dict[str, Any]) -> None:
        super()._record(c_y, norm, context)
        self.diagnostics["z_hat"] = context["z_hat"]
        self.diagnostics["batch_mean"] = self.batch_mean.detach().clone().expand_as(c_y)
        self.diagnostics["batch_std"] = self.batch_std.detach().clone().expand_as(c_y)


__all__ = [
    "MarginHead",
    "MagFaceHead",
    "CurricularFaceHead",
    "AdaFaceHead",
    "HEADS",
    "register_head",
    "build_head",
    "list_heads",
]
