"""adaface_lab.runs: a run read back from its folder, a clear error naming every missing or damaged file,
the data a run's config implies, and a backbone rebuilt from any checkpoint in one place."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adaface_lab.backbones import build_backbone, preprocess
from adaface_lab.cli import main
from adaface_lab.data.synthetic import SyntheticFaces
from adaface_lab.runs import Run, RunFolder, TrainingState, load_backbone, load_run
from adaface_lab.train import train
from tests import formulas
from tests.fake_runs import write_fake_run
from tests.test_train import TINY_BACKBONE, _config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real run: 8 identities trained, 2 held out, two epochs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(_config(tmp_path_factory.mktemp("run"), holdout_identities=2, epochs=2))
    finally:
        torch.set_num_threads(before)
    return result.run_dir


@pytest.fixture
def copy_of(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run to damage."""
    return Path(shutil.copytree(trained, tmp_path / "copy"))


# --------------------------------------------------------------------------- reading a run


def test_a_run_reads_back_what_training_wrote(trained: Path) -> None:
    run = load_run(trained)
    written = pd.read_parquet(trained / "records.parquet")
    assert len(run.records) == len(written) == 15 * 2 and run.recorded_epochs == [1, 2]
    np.testing.assert_allclose(run.records["quality"], formulas.quality(run.records["brisque"]))
    np.testing.assert_allclose(run.records["severity_quality"], 1 - run.records["severity"])
    assert run.records[["epoch", "sample_id"]].equals(run.records[["epoch", "sample_id"]].sort_values(["epoch", "sample_id"]))
    assert list(run.steps["step"]) == list(range(1, 21)) and list(run.epochs["epoch"]) == [1, 2]
    assert run.config["head"] == "adaface" and run.config["run"]["num_probe"] == 15
    # records at an epoch: by value, or counted from the end
    last = run.records_at(-1)
    assert set(last["epoch"]) == {2} and last.equals(run.records_at(2)) and len(last) == 15
    with pytest.raises(ValueError, match="not recorded"):
        run.records_at(7)
    # the settings as a TrainConfig, and the checkpoint
    assert run.train_config.backbone_params == TINY_BACKBONE and run.train_config.holdout_identities == 2
    state = run.checkpoint()
    assert state.epoch == 2 and state.step == 20 and state.step_in_epoch == 0 and len(state.history) == 2


def test_a_run_gives_back_its_images_and_held_out_pairs(trained: Path) -> None:
    run = load_run(trained)
    images = run.images([0, 5], size=40)
    faces = SyntheticFaces(8, 5, size=40, seed=0)
    assert torch.equal(images, torch.stack([faces[0][0], faces[5][0]]))
    held = run.heldout_pairs(n_pairs=30, seed=1)
    assert len(held.pairs.issame) == 30 and held.source == "severity" and held.quality.shape == (30, 2)
    # the held-out identities are SyntheticFaces identities 8 and 9 (after the 8 trained), never trained on
    outside = SyntheticFaces(2, 5, size=32, seed=0, first_identity=8)
    index = np.asarray(held.pairs.sources).reshape(-1, 2)
    np.testing.assert_allclose(held.quality, 1 - np.asarray(outside.severities)[index])


def test_missing_files_are_named(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no records.parquet"):
        load_run(tmp_path / "empty")
    for name in ("steps.parquet", "epochs.csv", "config.json"):
        folder = Path(shutil.copytree(trained, tmp_path / name))
        shutil.rmtree(folder / name) if (folder / name).is_dir() else (folder / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"{name} is missing from the run folder"):
            load_run(folder)
    folder = Path(shutil.copytree(trained, tmp_path / "no checkpoint"))
    (folder / "checkpoint.pt").unlink()
    run = Run.load(folder)  # the records are there; what needs the checkpoint says it is missing
    for read in (run.checkpoint, run.backbone):
        with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
            read()


def _cut(path: Path) -> None:
    """Keep the first half of the file, and never a whole last line (a cut inside one, as a crash leaves)."""
    data = path.read_bytes()
    keep = len(data) // 2
    path.write_bytes(data[: keep - 1 if data[keep - 1 : keep] == b"\n" else keep])


@pytest.mark.parametrize("name", ["epochs.csv", "config.json", "records.parquet/epoch_0002.parquet",
                                  "steps.parquet/epoch_0001.parquet"])
def test_a_truncated_run_file_is_an_error_that_names_it(copy_of: Path, name: str) -> None:
    _cut(copy_of / name)
    with pytest.raises(ValueError, match=rf"{copy_of / name}.* (truncated|damaged)"):
        load_run(copy_of)


def test_a_truncated_checkpoint_or_progress_file_is_named(copy_of: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = load_run(copy_of)
    _cut(copy_of / "checkpoint.pt")
    for read in (run.checkpoint, run.backbone, lambda: TrainingState.load(copy_of / "checkpoint.pt")):
        with pytest.raises(ValueError, match=str(copy_of / "checkpoint.pt")):
            read()
    _cut(copy_of / "progress.json")
    with pytest.raises(ValueError, match="progress.json is truncated"):
        RunFolder(copy_of).read_progress()
    # the CLI says which file when resuming from a damaged run
    _cut(copy_of / "config.json")
    assert main(["train", "--out", str(copy_of), "--resume", "--no-progress"]) == 2
    assert "config.json is truncated" in capsys.readouterr().err


def test_records_without_rows_or_columns_are_refused(tmp_path: Path) -> None:
    records = write_fake_run(tmp_path / "run", epochs=1, n=20, unscored=2)
    part = tmp_path / "run" / "records.parquet" / "epoch_0001.parquet"
    records.iloc[:0].to_parquet(part)
    with pytest.raises(ValueError, match="no rows"):
        load_run(tmp_path / "run")
    records.drop(columns=["p_y"]).to_parquet(part)
    with pytest.raises(ValueError, match="p_y"):
        load_run(tmp_path / "run")


# --------------------------------------------------------------------------- backbones from checkpoints


def _norms(model: torch.nn.Module, images: torch.Tensor, order: str) -> torch.Tensor:
    with torch.no_grad():
        return model(preprocess(images, channel_order=order, size=model.input_size))[1].reshape(-1)


def test_a_backbone_is_rebuilt_from_a_run_a_lightning_file_or_a_state_dict(trained: Path, tmp_path: Path) -> None:
    run = load_run(trained)
    state = run.checkpoint()
    reference = build_backbone("ir_tiny", **TINY_BACKBONE)
    reference.load_state_dict(state.backbone)
    reference.eval()
    images = SyntheticFaces(2, 2, size=32, seed=5)
    batch = torch.stack([images[i][0] for i in range(4)])
    expected = _norms(reference, batch, "rgb")

    model = run.backbone("cpu")
    assert not model.training and torch.equal(_norms(model, batch, "rgb"), expected)
    found = load_backbone(trained / "checkpoint.pt")
    assert (found.format, found.name, found.channel_order, found.epoch) == ("run", "ir_tiny", "rgb", 2)
    assert set(found.head_state) >= {"batch_mean", "batch_std"} and found.config["head"] == "adaface"

    # the same weights as an authors'-style Lightning file and as a plain DataParallel state dict; a
    # registered backbone's shapes are needed to guess the architecture, so use ir_tiny's own defaults
    plain = build_backbone("ir_tiny").eval()
    lightning = {"state_dict": {f"model.{k}": v for k, v in plain.state_dict().items()}
                 | {"head.batch_mean": torch.tensor([21.0]), "head.batch_std": torch.tensor([4.0])}, "epoch": 7}
    torch.save(lightning, tmp_path / "a.ckpt")
    torch.save({f"module.{k}": v for k, v in plain.state_dict().items()}, tmp_path / "b.pt")
    faces = torch.stack([SyntheticFaces(1, 2, size=64, seed=1)[i][0] for i in range(2)])
    for path, fmt, epoch in ((tmp_path / "a.ckpt", "lightning", 7), (tmp_path / "b.pt", "state_dict", None)):
        found = load_backbone(path)
        assert (found.name, found.format, found.channel_order, found.config, found.epoch) == (
            "ir_tiny", fmt, None, None, epoch)
        assert torch.equal(_norms(found.model, faces, "bgr"), _norms(plain, faces, "bgr"))
    assert float(load_backbone(tmp_path / "a.ckpt").head_state["batch_mean"][0]) == 21.0
    # weights of no registered shape: a plain message
    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="no registered backbone"):
        load_backbone(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        TrainingState.load(tmp_path / "a.ckpt")
