"""The training loop: records, resume, interruption, DDP on the CPU, and the CLI.

Every run here is tiny (a 32-pixel IResNet with a few channels on 40 SyntheticFaces images), so the
file stays within its time budget; what is checked is the plumbing a user relies on: one record row
per probe sample and epoch with the right values, bit-identical resumption, checkpoints that survive
a kill, and DDP records gathered on rank 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adaface_lab.cli import main
from adaface_lab.data.augment import apply_params
from adaface_lab.data.synthetic import SyntheticFaces
from adaface_lab.quality import brisque_torch
from adaface_lab.runs import AUGMENT_COLUMNS, RECORD_COLUMNS, Progress, RunExistsError, RunFolder, TrainingState, load_run
from adaface_lab.train import TrainConfig, pick_device, train

from . import formulas

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY_BACKBONE = {"input_size": 32, "channels": [8, 16, 16, 32], "stem_channels": 8, "embedding_size": 32}
# 8 identities x 5 images = 40 samples, batches of 4 -> 10 steps per epoch, 30 steps in 3 epochs.
TINY = dict(
    num_identities=8, images_per_identity=5, holdout_identities=0, epochs=3, batch_size=4, probe=15,
    lr_milestones=[0.4], num_workers=0, progress=False, backbone_params=TINY_BACKBONE,
)  # fmt: skip


def _config(out: Path, **kw: object) -> TrainConfig:
    return TrainConfig.from_overrides({**TINY, **kw}, out=str(out))


def _cli_args(values: dict) -> list[str]:
    """TrainConfig values as `adaface-lab train` options."""
    args: list[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if key == "backbone_params":
            for k, v in value.items():
                args += ["--backbone-param", f"{k}={json.dumps(v)}"]
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def _subprocess_env() -> dict[str, str]:
    # the same thread count as this process (one), so CPU results can be compared bit for bit
    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not stall when other processes load the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    """The reference: three epochs in one go; with what ``on_step`` was given at each step, and the
    progress file as it read at that moment."""
    calls: list[tuple[dict, Progress | None]] = []
    folder = RunFolder(tmp_path_factory.mktemp("straight"))
    result = train(_config(folder.path), on_step=lambda info: calls.append((info, folder.read_progress())))
    return result, calls


@pytest.fixture(scope="module")
def straight(straight_run):
    return straight_run[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- records


def test_records_have_one_row_per_probe_sample_and_epoch(straight) -> None:
    rec = pd.read_parquet(straight.records)
    for column in (*RECORD_COLUMNS, *AUGMENT_COLUMNS):
        assert column in rec.columns, column
    assert len(rec) == 15 * 3
    ids_by_epoch = rec.groupby("epoch")["sample_id"].apply(lambda s: tuple(sorted(s)))
    assert list(ids_by_epoch.index) == [1, 2, 3]
    assert all(len(set(ids)) == 15 for ids in ids_by_epoch)  # each probe once per epoch
    assert len(set(ids_by_epoch)) == 1  # the same fixed probe set every epoch

    # labels and ground truth from SyntheticFaces' own rules
    ds = SyntheticFaces(8, 5, size=32, seed=0)
    np.testing.assert_array_equal(rec["label"], rec["sample_id"] // 5)
    np.testing.assert_allclose(rec["severity"], ds.severities[rec["sample_id"]])
    # each row was taken at a step of its own epoch (10 steps per epoch)
    assert ((rec["step"] - 1) // 10 + 1 == rec["epoch"]).all()
    assert rec["p_y"].between(0, 1).all() and (rec["norm"] > 0).all()
    # AdaFace's margin only ever lowers the target logit (f(c) < s·c for every ẑ in [-1, 1]), so the
    # probability under the margin never exceeds the probability without it
    assert (rec["p_y"] <= rec["p_y_plain"] + 1e-12).all() and (rec["p_y"] < rec["p_y_plain"]).mean() > 0.9
    # AdaFace has no auxiliary term: each sample's recorded loss is its cross-entropy, -log P_y
    np.testing.assert_allclose(rec["loss"], -np.log(rec["p_y"]), rtol=1e-6, atol=1e-9)


def test_brisque_is_scored_on_the_augmented_112_px_image(straight) -> None:
    """The paper's resolution: each probe's BRISQUE is that of its image rendered at 112 px and augmented as
    its record says, rebuilt here from the record alone (not from the run's random streams), although the
    network was fed 32 px."""
    rec = pd.read_parquet(straight.records)
    np.testing.assert_allclose(rec["quality"], formulas.quality(rec["brisque"]))
    run = json.loads(straight.config.read_text())["run"]
    assert (run["image_size"], run["brisque_size"], run["input_size"]) == (112, 112, 32)
    touched = rec["crop_applied"] | rec["resize_applied"] | rec["photo_applied"]
    assert touched.any() and (~touched).any()
    for kind in ("crop_applied", "resize_applied", "photo_applied"):
        assert rec[kind].any(), kind  # every augmentation is among the rebuilt images

    faces = SyntheticFaces(8, 5, size=112, seed=0)
    images = torch.stack([faces[int(i)][0] for i in rec["sample_id"]])  # (R, 3, 112, 112) as rendered
    params = {name: torch.from_numpy(rec[name].to_numpy().copy()) for name in AUGMENT_COLUMNS}
    augmented = apply_params(images, params)  # the lab's augmentation (checked against OpenCV and PIL) replayed
    np.testing.assert_allclose(rec["brisque"], brisque_torch(augmented).numpy(), rtol=1e-9, atol=1e-9)
    # and not the score of the image at the network's size, which measures something else
    small = brisque_torch(preprocess_to(augmented, 32)).numpy()
    assert np.abs(rec["brisque"].to_numpy() - small).max() > 1.0


def preprocess_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized as the network's input is (bilinear, antialiased), back to uint8."""
    x = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def test_adaface_terms_follow_the_recorded_norm_and_ema(straight) -> None:
    """ẑ = clip(h(‖z‖ − μ)/(σ + ε), −1, 1) with the step's EMA μ, σ; g_angle = −mẑ, g_add = mẑ + m."""
    rec = pd.read_parquet(straight.records)
    steps = pd.read_parquet(straight.steps).set_index("step")
    mu, sigma = steps.loc[rec["step"], "batch_mean"].to_numpy(), steps.loc[rec["step"], "batch_std"].to_numpy()
    np.testing.assert_allclose(rec["z_hat"], formulas.z_hat(rec["norm"], mu, sigma, 0.333), rtol=1e-4, atol=1e-5)
    g_angle, g_add = formulas.adaface_terms(rec["z_hat"], 0.4)
    np.testing.assert_allclose(rec["margin_angle"], g_angle, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec["margin_add"], g_add, rtol=1e-5, atol=1e-6)


def test_steps_epochs_and_config_files(straight) -> None:
    steps = pd.read_parquet(straight.steps)
    assert list(steps["step"]) == list(range(1, 31))
    assert (steps.groupby("epoch")["batch"].sum() == 40).all()
    # LR 0.1 until the milestone at 40 % of the 30 steps, then x0.1
    np.testing.assert_allclose(steps["lr"], [0.1] * 12 + [0.01] * 18)
    epochs = pd.read_csv(straight.epochs)
    assert list(epochs["epoch"]) == [1, 2, 3] and epochs["images_per_s"].gt(0).all()
    config = json.loads(straight.config.read_text())
    assert config["head"] == "adaface" and config["run"]["num_probe"] == 15 and config["run"]["num_classes"] == 8


def test_folder_data_holds_out_identities_and_evaluates_them(tmp_path: Path) -> None:
    from PIL import Image

    faces = SyntheticFaces(6, 4, size=48, seed=3)
    for i in range(len(faces)):
        image, label, _, _ = faces[i]
        folder = tmp_path / "faces" / f"person_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    run = train(_config(tmp_path / "run", data=str(tmp_path / "faces"), holdout_identities=2, eval_pairs=20,
                        eval_each_epoch=True, epochs=1, probe="all"))  # fmt: skip
    rec = pd.read_parquet(run.records)
    found = json.loads(run.config.read_text())["run"]
    held = found["holdout_labels"]
    assert len(held) == 2 and len(rec) == 4 * 4  # the 4 kept identities' 16 images, each recorded once
    # 48 x 48 crops: kept whole and scored at their own size (never enlarged), as config.json says
    assert (found["image_size"], found["brisque_size"], found["input_size"]) == (48, 48, 32)
    assert "aligned face crops" in found["recipe"] and "the whole image at 48 px" in found["recipe"]
    kept_ids = [i for i in range(24) if i // 4 not in held]  # sample ids are the folder's sorted file order
    assert sorted(rec["sample_id"]) == kept_ids
    assert sorted(rec["label"].unique()) == [0, 1, 2, 3] and rec["severity"].isna().all()
    epochs = pd.read_csv(run.epochs)
    assert 0.0 <= epochs["eval_accuracy"].iloc[0] <= 1.0


# --------------------------------------------------------------------------- on_step and the progress file


def test_on_step_is_called_once_per_step_with_the_documented_numbers(straight_run) -> None:
    result, calls = straight_run
    infos = [info for info, _ in calls]
    assert len(infos) == 30 and all(set(i) == {"step", "total_steps", "epoch", "loss", "images_per_s", "eta_s"}
                                    for i in infos)  # fmt: skip
    assert [i["step"] for i in infos] == list(range(1, 31)) and {i["total_steps"] for i in infos} == {30}
    assert [i["epoch"] for i in infos] == [1] * 10 + [2] * 10 + [3] * 10
    # the loss is the step's, as steps.parquet records it; the speed and time left are plain numbers
    steps = pd.read_parquet(result.steps)
    np.testing.assert_allclose([i["loss"] for i in infos], steps["loss"], rtol=0, atol=0)
    assert all(i["images_per_s"] > 0 and i["eta_s"] >= 0 for i in infos) and infos[-1]["eta_s"] == 0


def test_the_progress_file_is_valid_during_and_after_the_run(straight_run) -> None:
    result, calls = straight_run
    during = [p for _, p in calls]
    assert all(p is not None for p in during)  # written before the first step, and readable at every step
    assert {p.state for p in during} <= {"preparing", "running"}
    assert all(p.step <= info["step"] and p.total_steps == 30 for (info, _), p in zip(calls, during))
    after = RunFolder(result.run_dir).read_progress()
    assert after.state == "finished" and after.step == after.total_steps == 30 and after.fraction == 1.0
    assert after.epoch == after.epochs == 3 and after.steps_per_epoch == 10 and after.eta_s == 0
    assert after.loss == pytest.approx(float(pd.read_parquet(result.steps)["loss"].iloc[-1]))


def test_epochs_csv_correlations_are_the_analysis_of_the_records(straight) -> None:
    """One implementation: epochs.csv's r columns equal correlation_by_epoch on the records read back."""
    from adaface_lab.analysis import correlation_by_epoch

    run = load_run(straight.run_dir)
    for quality, source in (("quality", "brisque"), ("severity_quality", "severity")):
        corr = correlation_by_epoch(run.records, quality=quality)
        for feature in ("norm", "p_y"):
            np.testing.assert_allclose(run.epochs[f"r_{feature}_q{source}"], corr[f"r_{feature}"], rtol=1e-12)


# --------------------------------------------------------------------------- a run already in the folder


def test_a_run_in_the_folder_is_not_replaced_without_overwrite(straight, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(straight.run_dir, folder)
    before = _snapshot(folder)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        train(_config(folder, head="arcface"))
    assert main(["train", *_cli_args({**TINY, "out": str(folder)}), "--head", "arcface"]) == 2
    message = capsys.readouterr().err
    assert "--resume" in message and "--overwrite" in message and str(folder) in message
    assert _snapshot(folder) == before  # byte for byte: nothing was written

    # --overwrite replaces it: an ArcFace run of one epoch now, nothing left of the old one
    (folder / "notes.txt").write_text("mine")  # not a run file: left alone
    assert main(["train", *_cli_args({**TINY, "out": str(folder), "epochs": 1}), "--head", "arcface",
                 "--overwrite"]) == 0  # fmt: skip
    run = load_run(folder)
    assert run.config["head"] == "arcface" and run.recorded_epochs == [1] and len(run.epochs) == 1
    assert sorted(p.name for p in (folder / "records.parquet").iterdir()) == ["epoch_0001.parquet"]
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="exclude each other"):
        _config(folder, resume=True, overwrite=True)


# --------------------------------------------------------------------------- resume and interruption


def test_resume_at_an_epoch_boundary_reproduces_the_run(straight, tmp_path: Path) -> None:
    first = train(_config(tmp_path, stop_after=1))
    assert pd.read_parquet(first.records)["epoch"].max() == 1
    resumed = train(_config(tmp_path, resume=True))
    pd.testing.assert_frame_equal(pd.read_parquet(resumed.records), pd.read_parquet(straight.records), check_exact=True)
    a, b = TrainingState.load(straight.checkpoint), TrainingState.load(resumed.checkpoint)
    assert _weights_equal(a.backbone, b.backbone) and _weights_equal(a.head, b.head)


def test_resume_refuses_changed_settings(straight, tmp_path: Path) -> None:
    train(_config(tmp_path, stop_after=1))
    with pytest.raises(ValueError, match="seed"):
        train(_config(tmp_path, resume=True, seed=1))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_run_leaves_a_loadable_checkpoint_and_resumes_exactly(straight, tmp_path: Path, sig: int) -> None:
    cmd = [sys.executable, "-m", "adaface_lab.cli", "train", *_cli_args({**TINY, "out": str(tmp_path)})]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read().decode()
    proc.send_signal(sig)  # somewhere in epoch 2
    out = proc.communicate(timeout=120)[0].decode()

    # the checkpoint loads weights-only, and the records hold whole epochs up to it
    state = torch.load(ckpt, weights_only=True)
    rec = pd.read_parquet(tmp_path / "records.parquet")
    assert (rec.groupby("epoch").size() == 15).all()
    assert rec["epoch"].max() >= state["epoch"] >= 1
    if sig != signal.SIGKILL:  # asked to stop: it checkpoints the last completed step and says how to go on
        assert proc.returncode == 130, out
        assert RunFolder(tmp_path).read_progress().state == "stopped"
        assert "--resume" in out
        assert state["step"] > 10  # it saved the last completed step of epoch 2 or later, not epoch 1's end
    else:
        assert proc.returncode == -signal.SIGKILL

    # resuming through the CLI (options come from the run's config.json) ends where the straight run did
    assert main(["train", "--out", str(tmp_path), "--resume", "--no-progress", "--num-workers", "0"]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "records.parquet"), pd.read_parquet(straight.records), check_exact=True
    )
    a, b = TrainingState.load(straight.checkpoint), TrainingState.load(ckpt)
    assert _weights_equal(a.backbone, b.backbone) and _weights_equal(a.head, b.head)


# --------------------------------------------------------------------------- DDP


def test_ddp_two_cpu_processes_gather_records_on_rank_zero(tmp_path: Path) -> None:
    # 27 samples over 2 processes: one padded repeat, which trains but must not add a record row
    values = {**TINY, "num_identities": 9, "images_per_identity": 3, "probe": "all", "epochs": 2, "out": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "adaface_lab.cli", "train", *_cli_args(values)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rec = pd.read_parquet(tmp_path / "records.parquet")
    assert len(rec) == 27 * 2
    for _, group in rec.groupby("epoch"):
        assert sorted(group["sample_id"]) == list(range(27))
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    # per process 14 positions in batches of 4: 4 steps per epoch, each over both processes
    assert len(steps) == 8 and list(steps["batch"][:4]) == [8, 8, 8, 4]
    assert json.loads((tmp_path / "config.json").read_text())["run"]["world_size"] == 2


# --------------------------------------------------------------------------- config and CLI


def test_pick_device_checks_names_and_gives_each_ddp_process_its_gpu() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")
    if torch.cuda.is_available():
        assert pick_device("cuda", local_rank=0) == torch.device("cuda", 0)
        assert pick_device("auto", local_rank=0) == torch.device("cuda", 0)
    else:  # asking for CUDA where there is none is an error, in a DDP process too (not a silent CPU run)
        for local_rank in (None, 0):
            with pytest.raises(ValueError, match="CUDA is not available"):
                pick_device("cuda", local_rank=local_rank)
        assert pick_device("auto", local_rank=0) == torch.device("cpu")


def test_config_overrides_reject_unknown_keys_and_wrong_types() -> None:
    assert TrainConfig.from_overrides({"epochs": 2, "lr": 1}).lr == 1.0
    with pytest.raises(ValueError, match="epoch"):
        TrainConfig.from_overrides({"epoch": 2})
    with pytest.raises(TypeError, match="epochs"):
        TrainConfig.from_overrides({"epochs": "2"})
    with pytest.raises(ValueError, match="backbone"):
        TrainConfig.from_overrides({"backbone": "resnet_nope"})


def test_cli_help_and_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data", "--backbone", "--head", "--epochs", "--batch-size", "--out", "--resume", "--probe",
                   "--image-size", "--center-crop N|none|auto"):
        assert option in text
    flat = " ".join(text.split())  # the folder recipe is documented where the options are
    assert "LFW-style 250 x 250 images are cut to the centre 112 x 112" in flat and "ir_18 at 112 px" in flat
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "two"])


def test_cli_resume_without_a_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
