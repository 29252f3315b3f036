"""The one builder of fake training runs for the tests (and the app benchmark): records in the training
loop's schema with a known norm–quality relation, the steps that go with them, and a run folder written
through :class:`adaface_lab.runs.RunFolder`, so its layout is the library's own.

The relation built in: severity ~ Beta(1.2, 2.5) (true quality 1 − severity); BRISQUE tracks severity with
noise (a few images unscored: NaN); at epoch e the norm is 20 + sign·4e·(1 − severity) + N(0, 2), so it
tracks quality more every epoch (``sign=-1`` reverses that), while P_y depends on quality only weakly.
Sample ids are 7, 10, 13, … (ids need not be 0..n-1); epochs start at 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adaface_lab.runs import RunFolder
from tests import formulas

STEPS_PER_EPOCH = 10


def fake_records(n: int = 400, epochs: int = 5, sign: float = 1.0, seed: int = 0, unscored: int = 25) -> pd.DataFrame:
    """``n`` probe samples × ``epochs`` epochs of records (no ``quality`` column: readers derive it);
    ``unscored`` rows have no BRISQUE (NaN)."""
    rng = np.random.default_rng(seed)
    severity = rng.beta(1.2, 2.5, n)
    true_q = 1.0 - severity
    brisque = 100.0 * (1.0 - true_q) + rng.normal(0, 8, n)  # BRISQUE tracks severity, with noise
    frames = []
    for e in range(1, epochs + 1):
        norm = 20.0 + sign * 4.0 * e * true_q + rng.normal(0, 2.0, n)
        logit = 0.5 * true_q + rng.normal(0, 1.0, n) + 0.3 * (e - 1)
        z_hat = formulas.z_hat(norm, norm.mean(), norm.std(), 0.333)
        g_angle, g_add = formulas.adaface_terms(z_hat, 0.4)
        frames.append(pd.DataFrame({
            "sample_id": np.arange(n) * 3 + 7, "label": np.arange(n) % 17, "epoch": e,
            "step": (e - 1) * STEPS_PER_EPOCH + 5, "norm": norm, "p_y": 1.0 / (1.0 + np.exp(-logit)),
            "cos_y": np.tanh(logit), "z_hat": z_hat, "margin_angle": g_angle, "margin_add": g_add,
            "loss": rng.uniform(0, 5, n), "brisque": brisque, "severity": severity,
            "crop_applied": rng.uniform(size=n) < 0.2,
        }))  # fmt: skip
    rec = pd.concat(frames, ignore_index=True)
    rec.loc[rng.choice(len(rec), unscored, replace=False), "brisque"] = np.nan
    return rec


def fake_steps(epochs: int) -> pd.DataFrame:
    """``STEPS_PER_EPOCH`` optimiser steps per epoch, global step from 1: the loss falls by 0.1 a step,
    μ_z = 20 + 0.3·i and σ_z = 100 − 2·i at the i-th step (from 0)."""
    i = np.arange(epochs * STEPS_PER_EPOCH)
    return pd.DataFrame({
        "epoch": i // STEPS_PER_EPOCH + 1, "step": i + 1, "batch": 32, "loss": 5.0 - 0.1 * i, "acc": 0.005 * i,
        "lr": 0.1, "batch_mean": 20 + 0.3 * i, "batch_std": 100.0 - 2 * i, "images_per_s": 500.0,
    })  # fmt: skip


def write_fake_run(folder: Path, epochs: int = 4, n: int = 400, sign: float = 1.0, seed: int = 0,
                   unscored: int = 25) -> pd.DataFrame:  # fmt: skip
    """A run folder (records and steps per epoch, epochs.csv, config.json) as the training loop writes it.
    Returns the records written."""
    records, steps = fake_records(n, epochs, sign, seed, unscored), fake_steps(epochs)
    run = RunFolder(folder)
    run.prepare(overwrite=False)
    run.write_config({"data": "synthetic", "backbone": "ir_tiny", "head": "adaface", "epochs": epochs})
    history = []
    for e in range(1, epochs + 1):
        part = steps[steps["epoch"] == e]
        history.append({"epoch": e, "steps": len(part), "loss": part["loss"].mean(), "acc": part["acc"].mean()})
        run.write_epoch(e, records[records["epoch"] == e], part, history)
    return records


def write_fake_checkpoint(folder: Path, holdout: int = 4, images_per_identity: int = 4, seed: int = 1) -> dict:
    """Give a run folder (from :func:`write_fake_run`) a config that rebuilds its data (SyntheticFaces, 6
    identities trained, ``holdout`` held out) and a checkpoint of an untrained tiny ir_tiny (seeded) fed RGB.
    Returns the config written."""
    import torch

    from adaface_lab.backbones import build_backbone
    from adaface_lab.runs import TrainingState
    from tests.test_train import TINY_BACKBONE

    config = {"data": "synthetic", "num_identities": 6, "images_per_identity": images_per_identity,
              "holdout_identities": holdout, "backbone": "ir_tiny", "backbone_params": TINY_BACKBONE,
              "head": "adaface", "channel_order": "rgb", "seed": 0, "epochs": 4}  # fmt: skip
    torch.manual_seed(seed)
    model = build_backbone("ir_tiny", **TINY_BACKBONE)
    run = RunFolder(folder)
    run.write_config(config)
    TrainingState(backbone=model.state_dict(), head={}, optimizer={}, scheduler={}, epoch=4, step=40,
                  config=config).save(run.checkpoint)  # fmt: skip
    return config
