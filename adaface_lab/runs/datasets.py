"""The data sets a run's config implies: the images it trained on (by sample id) and the identities it held
out, built the same way for the training loop and for whoever reads the run afterwards.

- SyntheticFaces (``data="synthetic"``): ``num_identities`` identities trained on; the held-out identities
  are further identities of the same generator (``first_identity=num_identities``), never trained on.
- An identity folder: ``holdout_identities`` of its identities drawn at random from the run's seed are held
  out; the others are trained on, relabelled 0..K-1 (sample ids stay the folder's own). Every image is
  decoded once when the folder is indexed (``check="decode"``): a file that cannot be decoded is left out
  of the index, and an identity left without images is dropped, with a warning, before anything trains, so
  no sample is ever replaced by another while training (which would record one sample twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import STREAM_HOLDOUT, seed_for

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..data.verification import VerificationPairs

__all__ = ["HeldOut", "source_dataset", "training_data"]


@dataclass
class HeldOut:
    """Held-out identities: the data set they are in and their labels there."""

    dataset: Dataset
    labels: list[int]

    @property
    def max_pairs(self) -> int:
        """The most verification pairs these identities give: twice their same-identity pairs."""
        targets = np.asarray(self.dataset.targets)
        sizes = np.bincount(targets[np.isin(targets, self.labels)])
        return 2 * int(sum(int(k) * (int(k) - 1) // 2 for k in sizes))

    def pairs(self, n_pairs: int, seed: int) -> "VerificationPairs":
        """Up to ``n_pairs`` verification pairs, half same identity (fewer when :attr:`max_pairs` is less)."""
        from ..data.verification import pairs_from_identities

        return pairs_from_identities(self.dataset, self.labels, n_pairs=min(n_pairs, self.max_pairs), seed=seed)


class _Relabelled(Dataset):
    """A subset of a data set whose labels are renumbered 0..K-1 (held-out identities removed)."""

    def __init__(self, base: Dataset, indices: np.ndarray, label_map: dict[int, int]) -> None:
        self.base, self.indices, self.label_map = base, indices, label_map
        self.targets = np.array([label_map[int(t)] for t in np.asarray(base.targets)[indices]], dtype=np.int64)
        self.num_classes = len(label_map)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, dict[str, Any]]:
        image, label, sample_id, meta = self.base[int(self.indices[i])]
        return image, self.label_map[int(label)], sample_id, meta


def source_dataset(cfg: "TrainConfig", size: int) -> Any:
    """The run's data at ``size`` pixels, indexed by the sample ids its records carry (for an identity
    folder: every identity, the held-out ones included)."""
    if cfg.data == "synthetic":
        from ..data.synthetic import SyntheticFaces

        return SyntheticFaces(cfg.num_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                              severity=cfg.severity)  # fmt: skip
    from ..data.folders import ImageFolderFaces

    root = Path(cfg.data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (give 'synthetic' or a root/<identity>/*.jpg folder)")
    return ImageFolderFaces(root, size=size, center_crop=cfg.center_crop, check="decode")


def training_data(cfg: "TrainConfig", size: int) -> tuple[Dataset, HeldOut | None]:
    """The training set (images at ``size``) and the held-out identities (None when none are held out)."""
    base = source_dataset(cfg, size)
    if cfg.data == "synthetic":
        if not cfg.holdout_identities:
            return base, None
        from ..data.synthetic import SyntheticFaces

        held = SyntheticFaces(cfg.holdout_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                              severity=cfg.severity, first_identity=cfg.num_identities)  # fmt: skip
        return base, HeldOut(held, list(range(cfg.holdout_identities)))

    left = base.num_classes - cfg.holdout_identities
    if left < 2:
        found = f"found {base.num_classes} identit{'y' if base.num_classes == 1 else 'ies'} with readable images"
        hint = "fewer --holdout-identities, or a folder with more" if cfg.holdout_identities else "a folder with more"
        raise ValueError(f"{cfg.data}: {found}, {max(left, 0)} left after holding out {cfg.holdout_identities}; "
                         f"training needs at least 2 ({hint} identities)")
    if cfg.holdout_identities == 0:
        return base, None
    rng = np.random.default_rng(seed_for(cfg.seed, STREAM_HOLDOUT))
    held_labels = sorted(int(c) for c in rng.choice(base.num_classes, cfg.holdout_identities, replace=False))
    kept = [c for c in range(base.num_classes) if c not in set(held_labels)]
    indices = np.flatnonzero(~np.isin(np.asarray(base.targets), held_labels))
    return _Relabelled(base, indices, {c: i for i, c in enumerate(kept)}), HeldOut(base, held_labels)
