"""The data sets a run's config implies: the images it trained on (by sample id) and the identities it held
out, built the same way for the training loop and for whoever reads the run afterwards; and, for a folder
of faces, the recipe chosen from its images (:func:`folder_recipe`, :func:`resolve_config`).

- SyntheticFaces (``data="synthetic"``): ``num_identities`` identities trained on; the held-out identities
  are further identities of the same generator (``first_identity=num_identities``), never trained on.
- An identity folder: ``holdout_identities`` of its identities drawn at random from the run's seed are held
  out; the others are trained on, relabelled 0..K-1 (sample ids stay the folder's own). Every image is
  decoded once when the folder is indexed (``check="decode"``): a file that cannot be decoded is left out
  of the index, and an identity left without images is dropped, with a warning, before anything trains, so
  no sample is ever replaced by another while training (which would record one sample twice).

Images are made at the config's ``image_size`` (112 px unless a folder's faces are smaller): that is the
size they are augmented and scored with BRISQUE at; the network's own input size is applied afterwards.

::

    recipe = folder_recipe("../shared/data/lfw_min20", torch.device("cpu"))
    print(recipe.describe())   # LFW-style 250 x 250 -> centre crop 112, 112 px; ir_tiny at 64 px on a CPU
    config, recipe = resolve_config(TrainConfig(data="../shared/data/lfw_min20"), torch.device("cpu"))
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import PAPER_IMAGE_SIZE, STREAM_HOLDOUT, TrainConfig, seed_for

if TYPE_CHECKING:
    from ..data.verification import VerificationPairs

__all__ = ["HeldOut", "FolderRecipe", "folder_recipe", "resolve_config", "source_dataset", "training_data"]

#: LFW's deep-funneled images: 250 x 250 with the face in about the central 112 px (the paper's crop side).
LFW_SIDE, LFW_FACE_CROP = 250, 112
#: Square images up to this side are taken for aligned face crops (112 x 112 as the paper's, 96, 128, ...).
ALIGNED_MAX_SIDE = 160
#: The backbone (and options) a folder gets by device: one that learns in minutes on a CPU, the paper's
#: smallest IResNet at the paper's 112 px on CUDA (ir_tiny's 64 px and ir_18's 112 px are their own sizes).
FOLDER_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    "cuda": ("ir_18", {"input_size": 112}), "cpu": ("ir_tiny", {"input_size": 64})}


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


def source_dataset(cfg: TrainConfig, size: int | None = None) -> Any:
    """The run's data at ``size`` pixels (default: the config's ``image_size``), indexed by the sample ids its
    records carry (for an identity folder: every identity, the held-out ones included). ``cfg`` must be
    resolved (:func:`resolve_config`)."""
    if cfg.chosen_from_data:
        raise ValueError(f"the config leaves {', '.join(cfg.chosen_from_data)} to be chosen from the data: "
                         "resolve it first (adaface_lab.runs.resolve_config)")  # fmt: skip
    size = cfg.image_size if size is None else size
    if cfg.data == "synthetic":
        from ..data.synthetic import SyntheticFaces

        return SyntheticFaces(cfg.num_identities, cfg.images_per_identity, size=size, seed=cfg.seed,
                              severity=cfg.severity)  # fmt: skip
    from ..data.folders import ImageFolderFaces

    root = Path(cfg.data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (give 'synthetic' or a root/<identity>/*.jpg folder)")
    return ImageFolderFaces(root, size=size, center_crop=cfg.center_crop or None, check="decode")


def training_data(cfg: TrainConfig, size: int | None = None) -> tuple[Dataset, HeldOut | None]:
    """The training set (images at ``size``, default the config's ``image_size``) and the held-out identities
    (None when none are held out). ``cfg`` must be resolved (:func:`resolve_config`)."""
    base = source_dataset(cfg, size)
    size = cfg.image_size if size is None else size
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


# ============================================================================ a folder's recipe


@dataclass(frozen=True)
class FolderRecipe:
    """What a folder of faces gets when a run leaves it to the data (:func:`folder_recipe`).

    ``center_crop``: side of the centre square cut from each image (0: the whole image); ``image_size``: the
    side images are made, augmented and scored with BRISQUE at; ``backbone``/``backbone_params``: the model
    for the device; ``detected``/``chosen``: what the sampled images showed and what was chosen, in words.
    """

    center_crop: int
    image_size: int
    backbone: str
    backbone_params: dict[str, Any] = field(default_factory=dict)
    detected: str = ""
    chosen: str = ""

    def describe(self) -> str:
        return f"data: {self.detected}\nchosen: {self.chosen}"


def folder_recipe(root: str | Path, device: torch.device | str = "cpu", sample: int = 64) -> FolderRecipe:
    """The crop, image size and backbone a folder of faces gets by default, from the sizes of up to ``sample``
    of its images (headers only, spread over the sorted file list) and the device:

    - **LFW-style** 250 x 250 (deep-funneled): the centre 112 x 112, which holds the face, kept at 112 px;
    - **aligned crops** (square, side up to 160, e.g. the paper's 112 x 112): the whole image, at 112 px or at
      its own side when smaller (never enlarged);
    - **not square**: the centre square of the shorter side, at 112 px or that side when smaller;
    - **another square size**: the whole image at 112 px, with a note to give ``center_crop`` to cut the face.

    The most common size decides. Backbone: ``ir_18`` at 112 px on CUDA, ``ir_tiny`` at its 64 px elsewhere
    (it learns on a CPU in minutes; :data:`FOLDER_BACKBONES`). Raises FileNotFoundError / ValueError for a
    missing folder or one without readable images.
    """
    sizes, total = _sample_sizes(Path(root), sample)
    (w, h), count = Counter(sizes).most_common(1)[0]
    share = f"{count} of {len(sizes)} sampled images" if count < len(sizes) else f"all {len(sizes)} sampled images"
    detected = f"{total} images in {Path(root).name}; {share} are {w} x {h}"
    side = min(w, h)
    if w == h == LFW_SIDE:
        crop, size = LFW_FACE_CROP, PAPER_IMAGE_SIZE
        kind = f"LFW-style (deep-funneled: the face in the central {LFW_FACE_CROP} px)"
        how = f"centre crop {crop} x {crop}, kept at {size} px"
    elif w == h and side <= ALIGNED_MAX_SIDE:
        crop, size = 0, min(side, PAPER_IMAGE_SIZE)
        kind = "aligned face crops"
        how = f"the whole image at {size} px" + (" (its own size, not enlarged)" if side < PAPER_IMAGE_SIZE else "")
    elif w != h:
        crop, size = side, min(side, PAPER_IMAGE_SIZE)
        kind = "not square"
        how = f"the centre {side} x {side} square at {size} px"
    else:
        crop, size = 0, PAPER_IMAGE_SIZE
        kind = f"neither LFW's {LFW_SIDE} x {LFW_SIDE} nor aligned crops up to {ALIGNED_MAX_SIDE} px"
        how = f"the whole image at {size} px (give center_crop to cut the face out)"
    kind_of_device = "cuda" if torch.device(device).type == "cuda" else "cpu"
    backbone, params = FOLDER_BACKBONES[kind_of_device]
    model = f"{backbone} at {params['input_size']} px ({'CUDA' if kind_of_device == 'cuda' else 'not CUDA'})"
    return FolderRecipe(crop, size, backbone, dict(params), f"{detected}: {kind}",
                        f"{how}; BRISQUE on the augmented {size} px image; {model}")  # fmt: skip


def resolve_config(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[TrainConfig, FolderRecipe | None]:
    """``cfg`` with every field a folder's recipe chooses filled in (given values win), and the recipe (None
    when nothing was left to choose). A backbone given without options gets its own defaults."""
    missing = cfg.chosen_from_data
    if not missing:
        return cfg, None
    recipe = folder_recipe(cfg.data, device)
    backbone = cfg.backbone if cfg.backbone is not None else recipe.backbone
    params = cfg.backbone_params if cfg.backbone_params is not None else (
        recipe.backbone_params if backbone == recipe.backbone else {})  # fmt: skip
    resolved = dataclasses.replace(
        cfg, center_crop=recipe.center_crop if cfg.center_crop is None else cfg.center_crop,
        image_size=recipe.image_size if cfg.image_size is None else cfg.image_size,
        backbone=backbone, backbone_params=dict(params))  # fmt: skip
    given = [name for name in ("center_crop", "image_size", "backbone", "backbone_params") if name not in missing]
    if given:
        recipe = dataclasses.replace(recipe, chosen=f"{recipe.chosen}; given, and kept: "
                                     + ", ".join(f"{n}={getattr(cfg, n)}" for n in given))  # fmt: skip
    return resolved, recipe


def _sample_sizes(root: Path, sample: int) -> tuple[list[tuple[int, int]], int]:
    """(width, height) of up to ``sample`` images spread over ``root/<identity>/*`` (sorted), and how many
    image files there are."""
    from ..data.folders import IMAGE_EXTENSIONS
    from ..data.images import CorruptImageError, probe_image

    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (give 'synthetic' or a root/<identity>/*.jpg folder)")
    files = [f for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
             for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")]
    picks = np.unique(np.linspace(0, len(files) - 1, num=min(sample, len(files))).round().astype(int)) if files else []
    sizes = []
    for i in picks:
        try:
            w, h, _ = probe_image(files[int(i)])
        except (CorruptImageError, OSError):
            continue
        sizes.append((w, h))
    if not sizes:
        raise ValueError(f"no readable images in {root} (expected root/<identity>/*.jpg)")
    return sizes, len(files)

