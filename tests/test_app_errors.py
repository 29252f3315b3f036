"""The app answers bad input with an error box, never a traceback; its checkpoint-path field does not say
whether a server path exists, nor show a file's bytes; on a course server (``ADAFACE_LAB_ROOT``) the
run-folder field and checkpoint paths read only what is under the shared folder."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from tests.app_pages import INSPECT_PAGE, ROOT, RUNS_PAGE, open_page, runs, texts  # noqa: F401
from tests.fake_runs import write_fake_run
from tests.test_checkpoint_limits import _state, _tiny_weights


def _typed_checkpoint(path: str):  # type: ignore[no-untyped-def]
    """The inspector with ``path`` typed in its checkpoint field: no exception, and its error boxes."""
    at = open_page(INSPECT_PAGE)
    at.radio(key="inspect:ckpt_src").set_value("path").run()
    at.text_input(key="inspect:ckpt_path").set_value(path).run()
    assert not at.exception, at.exception
    return at


def _run_folder(path: str):  # type: ignore[no-untyped-def]
    """The Training runs page with ``path`` typed as the run folder: no exception."""
    at = open_page(RUNS_PAGE)
    at.sidebar.text_input(key="runs:run").set_value(path).run()
    assert not at.exception, at.exception
    return at


def test_a_crafted_checkpoint_missing_keys_is_an_error_box(tmp_path: Path) -> None:
    content = _state(_tiny_weights())
    del content["backbone"]
    torch.save(content, tmp_path / "crafted.pt")
    errors = texts(_typed_checkpoint(str(tmp_path / "crafted.pt")), "error")
    assert any("damaged training checkpoint: missing backbone" in t for t in errors), errors


def test_the_checkpoint_field_does_not_say_whether_a_path_exists(tmp_path: Path) -> None:
    (tmp_path / "a folder").mkdir()
    (tmp_path / "private.txt").write_text("AAAA a private file's first line\n")
    said = {}
    for name in ("nothing here", "a folder", "private.txt", "x" * 300):
        errors = texts(_typed_checkpoint(str(tmp_path / name)), "error")
        assert len(errors) == 1, errors
        said[name] = errors[0].replace(str(tmp_path / name), "PATH")
    assert len(set(said.values())) == 1, said  # missing, a folder, not a checkpoint, a name too long: one answer
    assert "65" not in said["private.txt"] and "AAAA" not in said["private.txt"]


def test_a_5000_character_run_path_is_an_error_box() -> None:
    at = _run_folder("/" + "a" * 4999)
    assert any("5,000 characters is longer than any this app reads" in t for t in texts(at, "error"))
    at = _run_folder("/tmp/" + "b" * 300)  # one name longer than the file system takes
    assert any("No such folder" in t for t in texts(at, "error")), texts(at, "error")


def test_the_quality_score_page_answers_a_bad_run_folder_with_an_error_box(course: Path) -> None:
    for typed, said in (("/" + "a" * 4999, "longer than any this app reads"), ("/etc", "outside the folder")):
        at = open_page("views/quality_score.py", {"run": typed})
        assert any(said in t for t in texts(at, "error")), (typed, texts(at, "error"))


def test_a_run_whose_config_is_a_list_is_an_error_box(runs: Path) -> None:
    write_fake_run(runs / "mine")
    (runs / "mine" / "config.json").write_text("[]")
    at = open_page(RUNS_PAGE)
    errors = texts(at, "error")
    assert any(f"{runs / 'mine' / 'config.json'} is damaged: it holds a list" in t for t in errors), errors
    assert not at.get("plotly_chart")


# --------------------------------------------------------------------------- a course server


@pytest.fixture
def course(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A course folder holding the runs folder, set as ADAFACE_LAB_ROOT; beside it, a file outside."""
    root = runs.parent / "course"
    root.mkdir()
    monkeypatch.setenv("ADAFACE_LAB_RUNS", str(root / "runs"))
    monkeypatch.setenv("ADAFACE_LAB_ROOT", str(root))
    (tmp_path / "outside.txt").write_text("not for students")
    return root


def test_a_course_server_opens_runs_under_its_folder_only(course: Path, tmp_path: Path) -> None:
    write_fake_run(course / "runs" / "week1", epochs=2)
    at = open_page(RUNS_PAGE)
    assert at.sidebar.text_input(key="runs:run").value == "runs"  # paths are shown relative to the course folder
    assert at.get("plotly_chart") and not texts(at, "error")
    assert _run_folder("runs/week1").get("plotly_chart")  # relative paths start at the course folder
    said = {}
    for typed in (str(tmp_path), str(tmp_path / "no such folder"), "../../", "/etc"):
        errors = texts(_run_folder(typed), "error")
        assert len(errors) == 1 and "outside the folder this server shares" in errors[0], (typed, errors)
        said[typed] = errors[0].replace(typed, "PATH")
    assert len(set(said.values())) == 1, said  # the same answer whether the folder exists or not


def test_a_course_server_reads_checkpoints_under_its_folder_only(course: Path, tmp_path: Path) -> None:
    (course / "runs" / "week1").mkdir(parents=True)
    torch.save(_state(_tiny_weights(), head={"batch_mean": torch.tensor([20.0]), "batch_std": torch.tensor([5.0])}),
               course / "runs" / "week1" / "checkpoint.pt")  # fmt: skip
    at = _typed_checkpoint("runs/week1/checkpoint.pt")
    assert not texts(at, "error"), texts(at, "error")
    assert any("‖z‖" in d.value.columns for d in at.dataframe)
    said = {}
    for typed in (str(tmp_path / "outside.txt"), str(tmp_path / "missing.pt"), "../outside.txt"):
        errors = texts(_typed_checkpoint(typed), "error")
        assert len(errors) == 1 and "outside the folder this server shares" in errors[0], (typed, errors)
        said[typed] = errors[0].replace(typed, "PATH")
    assert len(set(said.values())) == 1, said


def test_uploads_keep_their_size_limit() -> None:
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["maxUploadSize"] == 20  # megabytes, as the inspector's help says
    assert "20 MB" in (ROOT / "app" / "views" / "quality_inspector.py").read_text()
