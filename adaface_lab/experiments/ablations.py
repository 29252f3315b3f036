"""The paper's ablation questions as sweeps, and the settings each mode runs them with
(``notebooks/06_ablations.ipynb``).

::

    plan = ablation_plan("small")                     # or ("full"), ("full", data="../shared/data/lfw_min20")
    for ablation in plan.ablations:
        result = plan.run(ablation, Execution(jobs=2))  # a SweepResults; trained once, then read from the store

The questions, each a grid with a baseline (:data:`ABLATIONS`): (a) AdaFace's h; (b) its m; (c) its quality
proxy, the norm or P_y; (d) the augmentations off or on (the three probabilities together); (e) AdaFace
against ArcFace, CosFace, MagFace and CurricularFace; (f) the scale study: the last epoch's r(‖z‖, quality)
against the number of training identities (SyntheticFaces only: it is the one data set whose size the lab
can vary freely).

Modes: ``small`` is the test suite's (a tiny IResNet at 32 px, 60 SyntheticFaces identities, 3 epochs, 2
seeds: about two minutes on two idle cores for every question); ``full`` is sized for about an hour of CPU:
on SyntheticFaces the lab's demo run (800 identities × 6 images, ir_tiny at 32 px, 10 epochs) with 3 seeds
and identities 100 to 3,000 for (f); on a face folder the setting of notebook 3 on LFW (centre crop 112,
ir_tiny at 64 px, 10 held-out identities) for 8 epochs with 3 seeds, (f) then read from (or trained into)
the same store on SyntheticFaces. Every question shares one store, so a setting two questions have in
common (AdaFace with its defaults is in all of them) is trained once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..runs import default_cache_dir
from .execution import Execution
from .metrics import MetricSettings
from .sweep import SweepResults, SweepSpec, run_sweep, run_sweeps

__all__ = ["Ablation", "ABLATIONS", "AblationPlan", "ablation_plan", "TINY_BACKBONE", "SMALL", "FULL_SYNTHETIC",
           "FULL_FOLDER"]  # fmt: skip

#: A very small IResNet (ir_tiny with a few channels, 32 px) that trains in seconds on a CPU.
TINY_BACKBONE: dict[str, Any] = {"input_size": 32, "channels": [8, 16, 16, 32], "stem_channels": 8,
                                 "embedding_size": 32}  # fmt: skip
#: Small mode: every run shared by the questions, on SyntheticFaces (BRISQUE off: at 32 px it barely tracks
#: the true severity, README; the ground truth 1 − severity is the quality here).
SMALL: dict[str, Any] = dict(num_identities=60, images_per_identity=6, holdout_identities=20, epochs=3,
                             batch_size=32, probe="all", brisque=False, eval_each_epoch=False,
                             backbone_params=TINY_BACKBONE)  # fmt: skip
#: Full mode on SyntheticFaces: the demo run (TrainConfig's defaults), 50 held-out identities for pairs.
FULL_SYNTHETIC: dict[str, Any] = dict(holdout_identities=50, eval_each_epoch=False)
#: Full mode on a face folder: notebook 3's LFW setting (runs.FULL_FOLDER), 8 epochs.
FULL_FOLDER: dict[str, Any] = dict(center_crop=112, backbone_params={}, holdout_identities=10, epochs=8,
                                   batch_size=64, probe="all", eval_each_epoch=False)  # fmt: skip
_SEEDS = {"small": 2, "full": 3}
_PAIRS = {"small": 400, "full": 1000}
_SIZES = {"small": (30, 60, 180), "full": (100, 300, 800, 3000)}


@dataclass(frozen=True)
class Ablation:
    """One question: its ``grid`` and ``baseline`` (texts as ``adaface-lab sweep`` takes them), the axis
    plotted (``x``), the metric its verdict is read in (``metric``; ``"r_norm"``: the correlation of the
    norm with the data's quality), and ``head`` (None: the grid varies the head)."""

    key: str
    title: str
    grid: tuple[str, ...]
    baseline: str | None
    metric: str = "ver_auc"
    head: str | None = "adaface"
    synthetic_only: bool = False

    @property
    def x(self) -> str:
        return self.grid[0].split("=", 1)[0]


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("a", "(a) AdaFace's h", ("head-param.h=0,0.22,0.333,0.66",), "head-param.h=0.333"),
    Ablation("b", "(b) AdaFace's m", ("head-param.m=0.3,0.4,0.5",), "head-param.m=0.4"),
    Ablation("c", "(c) the quality proxy: ‖z‖ or P_y", ("head-param.proxy=norm,p_y",), "head-param.proxy=norm"),
    Ablation("d", "(d) augmentations off and on", ("crop-prob+lowres-prob+photometric-prob=0,0.2",),
             "crop-prob+lowres-prob+photometric-prob=0.2"),
    Ablation("e", "(e) AdaFace against the margins it builds on",
             ("head=adaface,arcface,cosface,magface,curricularface",), "head=adaface", head=None),
    Ablation("f", "(f) the scale study", ("num-identities={sizes}",), None, metric="r_norm", synthetic_only=True),
)


@dataclass
class AblationPlan:
    """What one mode and data set run: the options every run of a question shares, the seeds, the pairs,
    and where the runs and the sweeps are kept (``store``)."""

    mode: str
    data: str
    shared: dict[str, Any]
    synthetic: dict[str, Any]  #: the options of the scale study (SyntheticFaces whatever ``data`` is)
    seeds: int
    pairs: int
    sizes: tuple[int, ...]
    store: Path
    ablations: tuple[Ablation, ...] = field(default=ABLATIONS)

    @property
    def quality_metric(self) -> str:
        """The norm's correlation with the data's quality: the ground truth on SyntheticFaces, BRISQUE else."""
        return "r_norm_qseverity" if self.data == "synthetic" else "r_norm_qbrisque"

    def metric(self, ablation: Ablation) -> str:
        """The metric ``ablation``'s verdict is read in."""
        if ablation.metric != "r_norm":
            return ablation.metric
        return "r_norm_qseverity" if ablation.synthetic_only or self.data == "synthetic" else "r_norm_qbrisque"

    def spec(self, ablation: Ablation) -> SweepSpec:
        shared = dict(self.synthetic if ablation.synthetic_only else self.shared)
        if ablation.head is not None:
            shared["head"] = ablation.head
        grid = [g.format(sizes=",".join(map(str, self.sizes))) for g in ablation.grid]
        for text in grid:  # the question's grid wins over the mode's shared options
            for option in text.split("=", 1)[0].split("+"):
                if "." not in option:
                    shared.pop(option.replace("-", "_"), None)
        return SweepSpec.parse(grid, self.seeds, shared, ablation.baseline, MetricSettings(pairs=self.pairs))

    def out(self, ablation: Ablation) -> Path:
        data = "synthetic" if ablation.synthetic_only or self.data == "synthetic" else Path(self.data).name
        return self.store / "sweeps" / f"{self.mode}-{data}-{ablation.key}"

    def run(self, ablation: Ablation, execution: Execution | None = None, progress: bool = True) -> SweepResults:
        """The question's sweep: the runs not in the store yet are trained, every run measured."""
        return run_sweep(self.spec(ablation), self.out(ablation), execution, store=self.store, progress=progress)

    def run_all(self, execution: Execution | None = None, progress: bool = True) -> dict[str, SweepResults]:
        """Every question's sweep, by one set of workers (each run once): {ablation key: results}."""
        results = run_sweeps([(self.spec(a), self.out(a)) for a in self.ablations], execution, self.store, progress)
        return {a.key: r for a, r in zip(self.ablations, results)}


def ablation_plan(mode: Literal["small", "full"] = "small", data: str = "synthetic", epochs: int | None = None,
                  device: str = "auto", seeds: int | None = None, overrides: dict[str, Any] | None = None,
                  store: str | os.PathLike[str] | None = None) -> AblationPlan:  # fmt: skip
    """The settings of ``mode`` on ``data`` (``"synthetic"``, or in full mode a folder root/<identity>/*.jpg);
    ``epochs``, ``seeds``: None keeps the mode's; ``overrides``: further TrainConfig fields for every run
    (on a folder, the folder's runs: the scale study keeps SyntheticFaces' settings); ``store``: where runs and sweeps are kept (default: ``ablations/`` in
    the notebooks' run cache, :func:`adaface_lab.runs.default_cache_dir`)."""
    if mode not in _SEEDS:
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}")
    synthetic = data == "synthetic"
    if mode == "small" and not synthetic:
        raise ValueError("small mode trains on SyntheticFaces only; use mode='full' for a folder")
    if not synthetic and not Path(data).is_dir():
        raise FileNotFoundError(f"data folder not found: {data} (expected root/<identity>/*.jpg)")
    base = SMALL if mode == "small" else FULL_SYNTHETIC
    common = {"device": device, **({"epochs": epochs} if epochs is not None else {}), **(overrides or {})}
    # on a folder, epochs and overrides are the folder runs': the scale study keeps SyntheticFaces' own settings,
    # so that it reads the runs a SyntheticFaces plan made (and two plans never give its sweep two specs)
    scale = {**base, **common} if synthetic else {**base, "device": device}
    shared = scale if synthetic else {**FULL_FOLDER, "data": str(Path(data).resolve()), **common}
    return AblationPlan(mode, data, shared, scale, seeds or _SEEDS[mode], _PAIRS[mode], _SIZES[mode],
                        Path(store) if store is not None else default_cache_dir() / "ablations")  # fmt: skip
