"""Atomic writes: nothing half-written is ever visible, errors leave the old file, permissions are usual."""

from __future__ import annotations

import os
import stat

import pytest

from adaface_lab._atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "scores.csv"
    write_text_atomic(target, "a\n")
    write_text_atomic(target, "b\n")
    assert target.read_text() == "b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scores.csv"]


def test_an_error_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_files_get_the_usual_permissions_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "figure.png", b"png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
