"""Every quality measure's EDC on a run's held-out faces — what notebook 07 builds step by step and the app's
"Quality as a score" page shows::

    faces = heldout_faces(run, max_images=300)           # the identities the run never trained on
    scored = score_faces(run.backbone(), faces, run.train_config.channel_order)   # the slow part: cache it
    found = compare_edcs(scored, fmr=0.01)                # every pair of faces, EDC per measure, random band
    found.paucs, found.tables, found.baseline

Every pair of the faces is compared (:func:`~.fusion.all_pairs`), so pairs share images; the random band is
drawn per image (:func:`~.edc.random_edc` with ``pairs=``), the null of a per-image measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..evaluate import embed
from .checkup import Faces, _pick
from .edc import DEFAULT_DISCARD, RandomBaseline, edc_tables, pauc_table, random_edc
from .fusion import all_pairs
from .measures import BRISQUE_SIZE, image_qualities

if TYPE_CHECKING:
    from ..runs import Run

__all__ = ["EDCComparison", "ScoredFaces", "TRUTH", "compare_edcs", "heldout_faces", "score_faces"]

#: The column of the ground-truth quality (1 − severity) on SyntheticFaces.
TRUTH = "ground truth"


def heldout_faces(run: "Run", max_images: int | None = None, seed: int = 0, size: int = BRISQUE_SIZE) -> Faces:
    """The images of the identities ``run`` held out of training, uint8 RGB at ``size`` px, with their labels;
    on SyntheticFaces also ``truth`` (1 − severity). Up to ``max_images`` of them, identities taking turns
    (``None``: all). ValueError when the run held no identities out."""
    from ..runs import training_data

    cfg = run.train_config
    _, held = training_data(cfg, size)
    if held is None or len(held.labels) < 2:
        raise ValueError(f"{run.path} held out {cfg.holdout_identities} identities: no held-out faces to compare")
    targets = np.asarray(held.dataset.targets)
    index = np.flatnonzero(np.isin(targets, held.labels))  # the held-out images in the data set
    if max_images is not None:
        index = index[_pick(targets[index], len(index), int(max_images), seed)]
    images = torch.stack([held.dataset[int(i)][0] for i in index])  # (N, 3, size, size)
    severities = getattr(held.dataset, "severities", None)
    truth = None if severities is None else 1.0 - np.asarray(severities, dtype=np.float64)[index]
    return Faces(images=images, labels=targets[index], folder=str(cfg.data), found=int(np.isin(targets, held.labels).sum()),
                 truth=truth)  # fmt: skip


@dataclass
class ScoredFaces:
    """Faces with a quality per measure (``qualities``: one column each, ``TRUTH`` too when known), their unit
    embeddings (N, E) and norms (N,), one view each."""

    faces: Faces
    qualities: pd.DataFrame
    embeddings: np.ndarray
    norms: np.ndarray


def score_faces(backbone: nn.Module, faces: Faces, channel_order: Literal["bgr", "rgb"], *,
                measures: Sequence[str] = ("norm", "brisque", "serfiq"), passes: int = 100, seed: int = 0,
                batch_size: int = 64, device: str | torch.device | None = None,
                progress: bool = True) -> ScoredFaces:  # fmt: skip
    """Rate every face by ``measures`` (:func:`~.measures.image_qualities`) and embed it."""
    if faces.labels is None:
        raise ValueError("the EDC compares pairs of faces: it needs identity labels")
    q = image_qualities(backbone, faces.images, channel_order, measures=measures, passes=passes, seed=seed,
                        batch_size=batch_size, device=device, progress=progress)  # fmt: skip
    if faces.truth is not None:
        q[TRUTH] = faces.truth
    emb, norms = embed(backbone, faces.images, channel_order, batch_size=batch_size, device=device, flip=False,
                       progress=progress)  # fmt: skip
    return ScoredFaces(faces, q, emb.numpy().astype(np.float64), norms.numpy().reshape(-1).astype(np.float64))


@dataclass
class EDCComparison:
    """EDC ``tables`` per measure on every pair of the faces, the per-image random ``baseline`` and the pAUC
    table ``paucs`` (:func:`~.edc.pauc_table`, best first)."""

    tables: dict[str, pd.DataFrame]
    baseline: RandomBaseline
    paucs: pd.DataFrame
    limit: float


def compare_edcs(scored: ScoredFaces, *, measures: Sequence[str] | None = None, fmr: float = 0.01,
                 limit: float = 0.2, draws: int = 200, seed: int = 0) -> EDCComparison:  # fmt: skip
    """The EDC of each of ``measures`` (default: every column of ``scored.qualities``) over every pair of faces."""
    names = list(scored.qualities.columns) if measures is None else list(measures)
    unknown = [m for m in names if m not in scored.qualities.columns]
    if unknown or not names:
        raise ValueError(f"measures must be some of {list(scored.qualities.columns)}, got {names}")
    scores, issame, pairs = all_pairs(scored.embeddings, scored.faces.labels)
    tables = edc_tables(scores, issame, {m: scored.qualities[m].to_numpy() for m in names}, pairs=pairs, fmr=fmr,
                        discard=DEFAULT_DISCARD)  # fmt: skip
    baseline = random_edc(scores, issame, fmr=fmr, pairs=pairs, draws=draws, seed=seed)
    return EDCComparison(tables, baseline, pauc_table(tables, limit=limit, baseline=baseline), limit)
