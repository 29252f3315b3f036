"""``adaface-lab train`` fails in one ``error: …`` line, with exit code 2 and no traceback, for every option or
folder no run can use, and refuses them before any work (no folder is made, nothing is allocated); a run
whose loss turns NaN stops, keeping its last good checkpoint; ``--resume`` checks the run's files first and
takes the settings from the checkpoint when ``config.json`` is damaged; Ctrl-C says how many steps, if any,
were lost. Most cases run through ``cli.main`` in this process; one runs the console command, for the
no-traceback guarantee."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from adaface_lab.cli import main
from adaface_lab.config import TrainConfig
from adaface_lab.runs import RunFolder, TrainingState, load_run
from adaface_lab.train import TrainingInterrupted, _TrainData, train

from .peak_memory import peak_bytes
from .test_train import TINY, _cli_args, _config, _snapshot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``adaface-lab ARGV`` in this process: exit code 2, no traceback, and the last stderr line (returned)
    starts with ``error:``."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    return lines[-1]


def _train_args(out: Path, *extra: str) -> list[str]:
    return ["train", *_cli_args({**TINY, "out": str(out)}), *extra]


# --------------------------------------------------------------------------- refused before any work


@pytest.mark.parametrize("extra, expect", [
    (["--backbone-param", "nosuch=1"], "unknown option(s): nosuch"),
    (["--backbone-param", "input_size=1048576"], "input_size 1048576"),
    (["--backbone-param", "embedding_size=300000"], "embedding_size 300000 exceeds the limit"),
    (["--backbone-param", "channels=[4096,4096,4096,4096]"], "parameters"),
    (["--head-param", "s=abc"], "s='abc'"),
    (["--head-param", "s=nan"], "s=nan"),
    (["--head-param", "nosuch=1"], "nosuch"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--weight-decay", "inf"], "weight_decay must be finite"),
    (["--lr", "1e5"], "lr × weight_decay"),
    (["--momentum", "1"], "momentum must be in [0, 1)"),
], ids=["backbone-unknown", "input-size-10TB", "embedding-300000", "channels-4096", "s-abc", "s-nan",
        "head-unknown", "lr-inf", "lr-nan", "wd-inf", "lr-x-wd", "momentum-1"])  # fmt: skip
def test_options_no_run_can_use_are_refused_before_any_work(extra: list[str], expect: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "run"
    peak, line = peak_bytes(lambda: _fails(_train_args(out, *extra), capsys))
    assert isinstance(line, str) and expect in line, line
    assert not out.exists()  # refused before the folder was made
    assert peak < 64 * 2**20  # nothing the option asked for was allocated (10 TB for input_size 1048576)


def test_out_naming_a_file_is_refused_and_the_file_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = _fails(_train_args(target), capsys)
    assert f"{target} is a file, not a run folder" in line and "nothing was written" in line
    assert target.read_text() == "mine"


def _identity_folder(root: Path, names: list[str], per_identity: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(per_identity):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name / f"{k}.png")
    return root


@pytest.mark.parametrize("holdout, expect", [
    (20, "found 1 identity with readable images, 0 left after holding out 20; training needs at least 2 "
         "(fewer --holdout-identities, or a folder with more identities)"),
    (0, "found 1 identity with readable images, 1 left after holding out 0; training needs at least 2 "
        "(a folder with more identities)"),
])  # fmt: skip
def test_a_folder_with_one_identity_is_said_in_the_users_terms(holdout: int, expect: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data = _identity_folder(tmp_path / "faces", ["alice"])
    out = tmp_path / "run"
    line = _fails(_train_args(out, "--data", str(data), "--holdout-identities", str(holdout)), capsys)
    assert line == f"error: {data}: {expect}"
    assert not out.exists()


def test_argparse_errors_end_in_an_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "--epochs", "two"], ["train", "--nosuch"], ["nosuch-command"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: adaface-lab"), err


def test_the_console_command_prints_no_traceback_unless_debug(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "adaface_lab.cli", "train", "--out", str(tmp_path / "run"),
            "--backbone-param", "nosuch=1"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: backbone ir_tiny nosuch=1: "), done.stderr
    debug = subprocess.run([*argv, "--debug"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ValueError" in debug.stderr


# --------------------------------------------------------------------------- a run that diverges


@pytest.mark.slow
def test_an_lr_that_diverges_stops_the_run_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    line = _fails(_train_args(out, "--lr", "1e20", "--weight-decay", "0"), capsys)
    assert line.startswith("error: training diverged at step ") and "(loss nan)" in line and "--lr (now 1e+20)" in line
    assert "no checkpoint had been written yet" in line
    assert not out.exists()  # nothing to resume: nothing left behind


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run paused after its first epoch (of three): the checkpoint a resumed session starts from."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(_config(tmp_path_factory.mktemp("one_epoch"), stop_after=1)).run_dir
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def paused(one_epoch: Path, tmp_path: Path) -> Path:
    """A copy of the paused run, to resume or to damage."""
    return Path(shutil.copytree(one_epoch, tmp_path / "run"))


@pytest.mark.slow
def test_divergence_keeps_the_last_good_checkpoint_and_records(paused: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    before = _snapshot(paused)
    step, calls = torch.optim.SGD.step, []

    def blows_up(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """The update of step 12 (the session's second) turns a weight into NaN, as an lr far too large does."""
        out = step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            self.param_groups[0]["params"][0].data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", blows_up)
    line = _fails(["train", "--out", str(paused), "--resume", "--no-progress", "--num-workers", "0"], capsys)
    assert line.startswith("error: training diverged at step 13 (loss nan): the last good checkpoint, ")
    assert "(step 10, 1 epochs), and the records of its epochs are kept" in line
    after = _snapshot(paused)
    for name, data in before.items():
        if name not in ("progress.json", "config.json"):  # (config.json: rewritten by every session, with --resume)
            assert after[name] == data, name  # checkpoint, records, steps, epochs: as they were
    assert RunFolder(paused).read_progress().state == "failed"
    assert load_run(paused).recorded_epochs == [1]


# --------------------------------------------------------------------------- resuming a damaged run


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["records part cut", "steps part cut", "records part gone", "epochs.csv cut",
                                    "checkpoint cut"])  # fmt: skip
def test_resume_refuses_a_damaged_run_and_leaves_it_as_it_was(paused: Path, damage: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    target = {"records part cut": "records.parquet/epoch_0001.parquet", "steps part cut": "steps.parquet/epoch_0001.parquet",
              "records part gone": "records.parquet/epoch_0001.parquet", "epochs.csv cut": "epochs.csv",
              "checkpoint cut": "checkpoint.pt"}[damage]  # fmt: skip
    (paused / target).unlink() if damage.endswith("gone") else _cut(paused / target)
    before = _snapshot(paused)
    line = _fails(["train", "--out", str(paused), "--resume", "--no-progress", "--num-workers", "0"], capsys)
    assert str(paused / target) in line, line
    assert _snapshot(paused) == before  # nothing was written


@pytest.mark.slow
@pytest.mark.parametrize("content", [None, "[]"], ids=["truncated", "a list"])
def test_resume_takes_the_settings_from_the_checkpoint_when_config_json_is_damaged(
        paused: Path, content: str | None, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    config = paused / "config.json"
    _cut(config) if content is None else config.write_text(content)
    with pytest.warns(UserWarning, match="continuing with the settings checkpoint.pt holds"):
        assert main(["train", "--out", str(paused), "--resume", "--no-progress", "--num-workers", "0"]) == 0
    run = load_run(paused)
    assert run.recorded_epochs == [1, 2, 3] and len(run.records) == 15 * 3
    assert run.records.groupby("epoch")["sample_id"].nunique().eq(15).all()
    assert run.train_config.backbone_params == TINY["backbone_params"]  # config.json written again, whole


# --------------------------------------------------------------------------- Ctrl-C


def _press_ctrl_c(times: int, at_step: int):  # type: ignore[no-untyped-def]
    """An on_step callback that sends SIGINT ``times`` times at ``at_step`` (a person pressing Ctrl-C)."""
    def on_step(info: dict) -> None:
        if info["step"] == at_step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
    return on_step


@pytest.mark.slow
def test_ctrl_c_says_the_step_is_checkpointed_and_twice_says_how_many_steps_were_lost(paused: Path) -> None:
    once = Path(shutil.copytree(paused, paused.parent / "once"))
    with pytest.raises(TrainingInterrupted) as stopped:  # pressed after step 14: the loop stops after step 15
        train(_config(once, resume=True), on_step=_press_ctrl_c(1, at_step=14))
    assert str(stopped.value) == "interrupted; the last completed step (15) is checkpointed: add --resume to continue"
    assert TrainingState.load(once / "checkpoint.pt").step == 15

    saved = (paused / "checkpoint.pt").read_bytes()
    with pytest.raises(TrainingInterrupted) as stopped:
        train(_config(paused, resume=True), on_step=_press_ctrl_c(2, at_step=14))
    assert str(stopped.value) == (f"interrupted at once: the last 4 steps (after step 10) were lost; "
                                  f"{paused / 'checkpoint.pt'} holds step 10: add --resume to continue from there")
    assert (paused / "checkpoint.pt").read_bytes() == saved  # the epoch-1 checkpoint, untouched
    assert RunFolder(paused).read_progress().state == "stopped"


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(TrainingInterrupted, match=r"before the first checkpoint \(3 steps done, none saved\)"):
        train(_config(out), on_step=_press_ctrl_c(2, at_step=3))
    assert not out.exists()


# --------------------------------------------------------------------------- nothing counted twice


@pytest.mark.slow
def test_an_identity_without_a_decodable_image_is_dropped_and_no_sample_recorded_twice(tmp_path: Path) -> None:
    data = _identity_folder(tmp_path / "faces", ["ann", "bob", "cy", "dee"], per_identity=4)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    (data / "eve").mkdir()
    jpeg = buf.getvalue()
    (data / "eve" / "0.jpg").write_bytes(jpeg[: jpeg.index(b"\xff\xda") + 16])  # whole header, cut after: undecodable
    with pytest.warns(RuntimeWarning) as caught:
        result = train(_config(tmp_path / "run", data=str(data), probe="all", epochs=2))
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"skipping unreadable image {data / 'eve' / '0.jpg'}") for m in said), said
    assert any(m.endswith("dropped 1 identity left without a readable image (eve)") for m in said), said
    records = pd.read_parquet(result.records)
    assert not records.duplicated(["epoch", "sample_id"]).any()
    assert len(records) == 2 * 16 and sorted(records["label"].unique()) == [0, 1, 2, 3]
    assert load_run(result.run_dir).config["run"]["num_classes"] == 4


def test_a_sample_read_in_place_of_an_undecodable_one_trains_but_is_not_recorded() -> None:
    """A reader that cannot decode sample 2 gives sample 3 in its place (``meta["substituted_for"] = 2``):
    sample 3 is then recorded once, where it is, preloaded or streamed."""

    class Substituting(torch.utils.data.Dataset):
        num_classes, targets = 2, [0, 0, 1, 1]

        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            j = 3 if i == 2 else i
            return torch.full((3, 4, 4), j, dtype=torch.uint8), self.targets[j], j, {"substituted_for": i if j != i else -1}

    for preload in (True, False):
        data = _TrainData(Substituting(), TrainConfig.from_overrides({**TINY, "preload": preload}), torch.device("cpu"),
                          False)  # fmt: skip
        (batch,) = data.batches([(np.arange(4), np.ones(4, bool))])
        assert batch.sample_ids.tolist() == [0, 1, 3, 3] and batch.recorded.tolist() == [True, True, False, True]
