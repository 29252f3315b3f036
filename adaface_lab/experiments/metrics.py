"""What a sweep measures on each finished run: one registry of metric functions, each reading a
:class:`RunMetrics` (the run and what is computed from it once: its last epoch's records, its held-out
verification pairs, their scores) and returning ``{column: value}``.

::

    values, pairs = compute_metrics(load_run("runs/demo"), MetricSettings(pairs=1000))
    values["r_norm_qseverity"], values["ver_auc"], values["ver_auc_low"]

The metrics (columns of ``runs.csv``; :func:`metric_label` names them for figures):

- ``train_acc``, ``train_loss``: the last epoch's, from ``epochs.csv``;
- ``r_norm_q<quality>``, ``r_p_y_q<quality>``: last-epoch Pearson r of ‖z‖ and of P_y with each quality
  (``qseverity``: 1 − severity, SyntheticFaces' ground truth; ``qbrisque``: 1 − BRISQUE/100), by
  :func:`adaface_lab.analysis.quality_correlations` (NaN where the run has no such quality);
- ``ver_accuracy``, ``ver_auc``, ``ver_tar@far=<f>``: verification on pairs of the run's held-out
  identities (:meth:`adaface_lab.runs.Run.heldout_pairs`, flip-fused embeddings, 10-fold accuracy;
  :func:`adaface_lab.evaluate.evaluate_pairs`);
- the same per pair-quality bin, ``ver_<metric>_<bin>`` with bin ``high``/``mixed``/``low``
  (:func:`adaface_lab.evaluate.pair_quality_bins` at the median image quality of the pairs).

- ``edc_pauc_norm``, ``edc_pauc_quality`` and their ``_rel`` (relative to random quality): the partial area
  under the error-versus-discard curve (:mod:`adaface_lab.quality_eval.edc`; discard 0-20 %, FMR 1 %) of
  the feature norm and of the data's quality as the quality score of the held-out pairs.

A new metric is one function here, registered with :func:`register_metric`; it appears in ``runs.csv``,
``summary.csv``, the comparison, the notebook and the app without further changes. It reads what it needs
from :class:`RunMetrics`, e.g. the pair table (:attr:`RunMetrics.pair_table`: each pair's score, genuine
flag, both images' quality and norm, and its bin, also saved beside each run's metrics), as the EDC does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._registry import Registry
from ..analysis import quality_correlations
from ..evaluate import DEFAULT_FAR_TARGETS, evaluate_pairs, pair_quality_bins, verification_by_bin
from ..runs import HeldOutPairs, Run

__all__ = ["MetricSettings", "RunMetrics", "Metric", "METRICS", "register_metric", "compute_metrics",
           "metric_names", "metric_label", "BINS"]  # fmt: skip

#: Pair-quality bins, best first.
BINS: tuple[str, ...] = ("high", "mixed", "low")


@dataclass(frozen=True)
class MetricSettings:
    """How the metrics are taken: ``pairs`` verification pairs (at most; fewer when the held-out identities
    give fewer) drawn with ``pair_seed`` from each run's held-out identities; TAR at ``far_targets``."""

    pairs: int = 1000
    pair_seed: int = 0
    far_targets: tuple[float, ...] = DEFAULT_FAR_TARGETS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "far_targets": list(self.far_targets)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MetricSettings":
        return cls(int(values["pairs"]), int(values["pair_seed"]), tuple(float(f) for f in values["far_targets"]))


class RunMetrics:
    """What the metric functions read from one run; each piece is computed on first use, then kept."""

    def __init__(self, run: Run, settings: MetricSettings, device: str | torch.device = "cpu") -> None:
        self.run, self.settings, self.device = run, settings, device

    @cached_property
    def last_records(self) -> pd.DataFrame:
        """The last recorded epoch's records (one row per probe sample)."""
        return self.run.records_at(-1)

    @cached_property
    def heldout(self) -> HeldOutPairs | None:
        """Pairs of the run's held-out identities with each image's quality, or None (nothing held out)."""
        if int(self.run.config.get("holdout_identities", 0)) < 2:
            return None
        held = self.run.heldout_pairs(self.settings.pairs, self.settings.pair_seed)
        return held if len(held.pairs) >= 20 else None  # ten folds of genuine and impostor pairs at least

    @cached_property
    def verification(self) -> dict[str, Any] | None:
        """:func:`~adaface_lab.evaluate.evaluate_pairs` on the held-out pairs (None without them)."""
        if self.heldout is None:
            return None
        return evaluate_pairs(self.run.backbone(self.device), self.heldout.pairs,
                              channel_order=self.run.config.get("channel_order", "rgb"),
                              images=self.heldout.pairs.load_images(progress=False), far_targets=self.settings.far_targets,
                              progress=False)  # fmt: skip

    @cached_property
    def pair_table(self) -> pd.DataFrame | None:
        """One row per held-out pair: ``score``, ``issame``, ``valid``, ``quality_a``/``quality_b`` (higher is
        better; ``quality_source`` says which), ``norm_a``/``norm_b`` (flip-fused) and its quality ``bin``."""
        result, held = self.verification, self.heldout
        if result is None or held is None:
            return None
        return pd.DataFrame({
            "score": result["scores"], "issame": result["issame"], "valid": result["valid"],
            "quality_a": held.quality[:, 0], "quality_b": held.quality[:, 1],
            "norm_a": result["norms"][:, 0], "norm_b": result["norms"][:, 1],
            "bin": pair_quality_bins(held.quality), "quality_source": held.source,
        })  # fmt: skip


# --------------------------------------------------------------------------- the registry

#: A metric: ``f(ctx) -> {column: value}``; ``columns(settings)`` lists the columns it returns, in order.
@dataclass(frozen=True)
class Metric:
    compute: Callable[[RunMetrics], dict[str, float]]
    columns: Callable[[MetricSettings], list[str]]


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, columns: Callable[[MetricSettings], list[str]]) -> Callable[..., Any]:
    """Decorator: register ``f(ctx: RunMetrics) -> {column: value}`` under ``name``; ``columns(settings)``
    names every column it returns (a value it cannot compute is NaN, never left out)."""

    def deco(f: Callable[[RunMetrics], dict[str, float]]) -> Callable[[RunMetrics], dict[str, float]]:
        METRICS.add(name, Metric(f, columns))
        return f

    return deco


def metric_names(settings: MetricSettings | None = None) -> list[str]:
    """Every metric column, in registry order."""
    settings = settings or MetricSettings()
    return [c for name in METRICS.names() for c in METRICS.get(name).columns(settings)]


def compute_metrics(run: Run, settings: MetricSettings, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, float], pd.DataFrame | None]:  # fmt: skip
    """Every registered metric of ``run``: ({column: value}, the pair table or None)."""
    ctx = RunMetrics(run, settings, device)
    values: dict[str, float] = {}
    for name in METRICS.names():
        metric = METRICS.get(name)
        found = metric.compute(ctx)
        values.update({c: float(found.get(c, math.nan)) for c in metric.columns(settings)})
    return values, ctx.pair_table


# --------------------------------------------------------------------------- the metrics

_QUALITIES = ("qseverity", "qbrisque")
_VERIFICATION = ("accuracy", "auc")


def _tar_columns(settings: MetricSettings) -> list[str]:
    return [f"tar@far={f:g}" for f in settings.far_targets]


@register_metric("training", columns=lambda s: ["train_acc", "train_loss"])
def _training(ctx: RunMetrics) -> dict[str, float]:
    last = ctx.run.epochs.iloc[-1]
    return {"train_acc": float(last["acc"]), "train_loss": float(last["loss"])}


@register_metric("correlations", columns=lambda s: [f"r_{f}_{q}" for q in _QUALITIES for f in ("norm", "p_y")])
def _correlations(ctx: RunMetrics) -> dict[str, float]:
    return quality_correlations(ctx.last_records)


@register_metric("verification", columns=lambda s: [f"ver_{m}" for m in (*_VERIFICATION, *_tar_columns(s))])
def _verification(ctx: RunMetrics) -> dict[str, float]:
    result = ctx.verification
    if result is None:
        return {}
    out = {"ver_accuracy": result["accuracy"], "ver_auc": result["auc"]}
    out.update({f"ver_tar@far={f:g}": tar for f, tar in result["tar_at_far"].items()})
    return out


@register_metric("verification_by_bin", columns=lambda s: [
    f"ver_{m}_{b}" for b in BINS for m in (*_VERIFICATION, *_tar_columns(s))])
def _verification_by_bin(ctx: RunMetrics) -> dict[str, float]:
    table = ctx.pair_table
    if table is None:
        return {}
    ok = table[table["valid"]]
    by_bin = verification_by_bin(ok["score"], ok["issame"], ok["bin"], far_targets=ctx.settings.far_targets)
    out: dict[str, float] = {}
    for _, row in by_bin.iterrows():
        for m in (*_VERIFICATION, *_tar_columns(ctx.settings)):
            out[f"ver_{m}_{row['bin']}"] = float(row[m])
    return out


#: The qualities whose EDC is taken: the feature norm (flip-fused, as the pairs were scored) and the data's
#: own quality (1 − severity on SyntheticFaces, 1 − BRISQUE/100 else).
_EDC_QUALITIES = {"norm": ("norm_a", "norm_b"), "quality": ("quality_a", "quality_b")}
_EDC_FMR, _EDC_LIMIT = 0.01, 0.2


@register_metric("edc", columns=lambda s: [f"edc_pauc_{q}{r}" for q in _EDC_QUALITIES for r in ("", "_rel")])
def _edc(ctx: RunMetrics) -> dict[str, float]:
    """pAUC of the error-versus-discard curve over discard 0-20 % at FMR 1 % (:mod:`adaface_lab.quality_eval`),
    and relative to random quality (below 1: the measure discards the errors first): NaN where the pairs
    cannot give one (too few impostors for the FMR, no false non-match, no genuine pair left)."""
    from ..quality_eval import edc, edc_pauc

    table = ctx.pair_table
    if table is None:
        return {}
    ok = table[table["valid"]]
    out: dict[str, float] = {}
    for name, (a, b) in _EDC_QUALITIES.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # too few impostors for the FMR: no value
                area = edc_pauc(edc(ok["score"], ok["issame"], ok[a], ok[b], fmr=_EDC_FMR), limit=_EDC_LIMIT)
        except (ValueError, RuntimeWarning):
            continue
        out.update({f"edc_pauc_{name}": area.value, f"edc_pauc_{name}_rel": area.relative})
    return out


_LABELS = {
    "train_acc": "train accuracy (last epoch)", "train_loss": "train loss (last epoch)",
    "r_norm_qseverity": "r(‖z‖, 1 − severity)", "r_p_y_qseverity": "r(P<sub>y</sub>, 1 − severity)",
    "r_norm_qbrisque": "r(‖z‖, 1 − BRISQUE/100)", "r_p_y_qbrisque": "r(P<sub>y</sub>, 1 − BRISQUE/100)",
    "ver_accuracy": "verification accuracy", "ver_auc": "verification AUC",
    "edc_pauc_norm": "EDC pAUC of ‖z‖", "edc_pauc_norm_rel": "EDC pAUC of ‖z‖ ÷ random",
    "edc_pauc_quality": "EDC pAUC of the data's quality", "edc_pauc_quality_rel": "EDC pAUC of the data's quality ÷ random",
}  # fmt: skip


def metric_label(column: str, html: bool = True) -> str:
    """A readable name for a metric column (``ver_auc_low`` -> ``verification AUC, low-quality pairs``);
    ``html=False``: plain text (P_y rather than P<sub>y</sub>)."""
    if column in _LABELS:
        label = _LABELS[column]
    elif column.startswith("ver_tar@far=") and not column.endswith(BINS):
        label = f"verification TAR at FAR {column.split('=', 1)[1]}"
    else:
        label = next((f"{metric_label(column[: -len(b) - 1])}, {b}-quality pairs" for b in BINS
                      if column.endswith(f"_{b}")), column)  # fmt: skip
    return label if html else label.replace("<sub>", "_").replace("</sub>", "")
