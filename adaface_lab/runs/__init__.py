"""A training run: its folder's layout, reading it back, the data its config implies, and the cache that
trains a config only once. The training loop (:mod:`adaface_lab.train`) writes a run through this package;
the CLI, the analyses' callers, the notebooks and the app read it through it.

::

    from adaface_lab.runs import load_run, get_or_train, notebook_config
    run = load_run("runs/demo")                  # records, steps, epochs, config (errors name the file)
    run.records_at(-1); run.backbone("cpu"); run.images([0, 1]); run.heldout_pairs(400)
    run = get_or_train(notebook_config("small"))  # trained on first use, then read from the cache

- :mod:`.layout` — the file names, the record columns, the checkpoint (:class:`TrainingState`), the
  progress file (:class:`Progress`), :class:`RunFolder` (reading and writing each file);
- :mod:`.run` — :class:`Run` and :func:`load_backbone` (a backbone from any checkpoint, in one place);
- :mod:`.datasets` — the training set and held-out identities a config implies, and a folder's recipe
  (crop, image size and backbone chosen from its images: :func:`folder_recipe`, :func:`resolve_config`);
- :mod:`.cache` — :func:`get_or_train`, :func:`run_key`, where a cached run lives and how far its training
  is (:func:`cached_run_path`, :func:`cached_progress`), and the notebooks' configs.
"""

from .cache import (
    FULL_FOLDER,
    FULL_SYNTHETIC,
    MODES,
    SMALL_SYNTHETIC,
    cached_progress,
    cached_run_path,
    default_cache_dir,
    get_or_train,
    notebook_config,
    run_key,
)
from .datasets import FolderRecipe, HeldOut, folder_recipe, resolve_config, source_dataset, training_data
from .layout import (
    AUGMENT_COLUMNS,
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CONFIG,
    EPOCHS,
    HEAD_EXTRA_COLUMNS,
    PROGRESS,
    RECORD_COLUMNS,
    RECORDS,
    RUN_FILES,
    STEPS,
    Progress,
    RunExistsError,
    RunFolder,
    TrainingState,
)
from .run import HeldOutPairs, Run, TrainedBackbone, load_backbone, load_run

__all__ = [
    "RECORDS", "STEPS", "EPOCHS", "CONFIG", "CHECKPOINT", "PROGRESS", "RUN_FILES",
    "RECORD_COLUMNS", "AUGMENT_COLUMNS", "HEAD_EXTRA_COLUMNS", "CHECKPOINT_FORMAT",
    "RunFolder", "RunExistsError", "Progress", "TrainingState",
    "Run", "load_run", "HeldOutPairs", "TrainedBackbone", "load_backbone",
    "HeldOut", "FolderRecipe", "folder_recipe", "resolve_config", "source_dataset", "training_data",
    "MODES", "SMALL_SYNTHETIC", "FULL_SYNTHETIC", "FULL_FOLDER", "notebook_config", "default_cache_dir",
    "run_key", "get_or_train", "cached_run_path", "cached_progress",
]  # fmt: skip
