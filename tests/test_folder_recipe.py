"""A folder of faces gets a recipe chosen from its images (adaface_lab.runs.folder_recipe): LFW-style
250 x 250 images cut to the face, aligned crops kept as they are, other shapes handled and said so; the
backbone by device; and explicit options always win."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaface_lab.config import TrainConfig
from adaface_lab.runs import FolderRecipe, folder_recipe, resolve_config, source_dataset

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _folder(root: Path, sizes: list[tuple[int, int]], identities: int = 3) -> Path:
    """``root/person_k/i.jpg``: one image per (width, height) in ``sizes`` for each identity, noise content."""
    rng = np.random.default_rng(0)
    for k in range(identities):
        person = root / f"person_{k}"
        person.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(person / f"{i:03d}.jpg", quality=90)
    return root


def test_lfw_style_images_are_cut_to_the_face_at_112_px(tmp_path: Path) -> None:
    recipe = folder_recipe(_folder(tmp_path / "lfw", [(250, 250)] * 4), CPU)
    assert (recipe.center_crop, recipe.image_size) == (112, 112)
    assert (recipe.backbone, recipe.backbone_params) == ("ir_tiny", {"input_size": 64})
    text = recipe.describe()
    assert "12 images" in text and "250 x 250" in text and "LFW-style" in text and "centre crop 112" in text
    # the data the resolved config implies: each image's centre 112 x 112, not enlarged or shrunk
    config, _ = resolve_config(TrainConfig(data=str(tmp_path / "lfw")), CPU)
    image = source_dataset(config)[0][0]
    original = np.asarray(Image.open(tmp_path / "lfw" / "person_0" / "000.jpg").convert("RGB"))
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), original[69:181, 69:181])


def test_the_backbone_follows_the_device(tmp_path: Path) -> None:
    root = _folder(tmp_path / "lfw", [(250, 250)] * 2)
    on_cuda = folder_recipe(root, CUDA)  # only the device's type is read: no GPU is needed to ask
    assert (on_cuda.backbone, on_cuda.backbone_params) == ("ir_18", {"input_size": 112})
    assert "ir_18 at 112 px" in on_cuda.describe() and "ir_tiny at 64 px" in folder_recipe(root, CPU).describe()


@pytest.mark.parametrize("side,expected", [(112, 112), (128, 112), (96, 96)], ids=["112", "128", "96"])
def test_aligned_crops_are_kept_whole_and_never_enlarged(tmp_path: Path, side: int, expected: int) -> None:
    recipe = folder_recipe(_folder(tmp_path / "aligned", [(side, side)] * 3), CPU)
    assert (recipe.center_crop, recipe.image_size) == (0, expected)
    assert "aligned face crops" in recipe.describe()


def test_odd_sizes_are_handled_and_said_so(tmp_path: Path) -> None:
    portrait = folder_recipe(_folder(tmp_path / "portrait", [(96, 112)] * 3), CPU)  # 112 x 96 aligned, standing
    assert (portrait.center_crop, portrait.image_size) == (96, 96) and "not square" in portrait.describe()
    big = folder_recipe(_folder(tmp_path / "big", [(300, 300)] * 3), CPU)
    assert (big.center_crop, big.image_size) == (0, 112) and "give center_crop" in big.describe()
    # mixed sizes: the most common decides, and the count says how mixed they were
    mixed = folder_recipe(_folder(tmp_path / "mixed", [(250, 250), (250, 250), (112, 112)]), CPU)
    assert mixed.center_crop == 112 and "6 of 9 sampled images are 250 x 250" in mixed.describe()


def test_a_folder_without_images_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "person_0").mkdir(parents=True)
    (tmp_path / "empty" / "person_0" / "notes.txt").write_text("no faces here")
    with pytest.raises(ValueError, match="no readable images"):
        folder_recipe(tmp_path / "empty", CPU)
    with pytest.raises(FileNotFoundError, match="not found"):
        folder_recipe(tmp_path / "missing", CPU)


def test_explicit_options_win_over_the_recipe(tmp_path: Path) -> None:
    root = str(_folder(tmp_path / "lfw", [(250, 250)] * 2))
    chosen, recipe = resolve_config(TrainConfig(data=root), CUDA)
    assert isinstance(recipe, FolderRecipe) and not chosen.chosen_from_data
    assert (chosen.center_crop, chosen.image_size, chosen.backbone, chosen.backbone_params) == (
        112, 112, "ir_18", {"input_size": 112})
    given, recipe = resolve_config(TrainConfig(data=root, center_crop=0, backbone="ir_tiny"), CUDA)
    # a backbone given without options gets its own defaults, not the recipe's model's
    assert (given.center_crop, given.image_size, given.backbone, given.backbone_params) == (0, 112, "ir_tiny", {})
    assert "given, and kept: center_crop=0, backbone=ir_tiny" in recipe.describe()
    everything = TrainConfig(data=root, center_crop=128, image_size=64, backbone="ir_tiny", backbone_params={})
    assert resolve_config(everything, CPU) == (everything, None)  # nothing left to choose: the folder is not read


def test_synthetic_faces_need_no_recipe() -> None:
    config = TrainConfig()
    assert (config.center_crop, config.image_size, config.backbone, config.backbone_params) == (
        0, 112, "ir_tiny", {"input_size": 32})
    assert resolve_config(config, CUDA) == (config, None)


def test_the_cli_says_auto_for_what_the_data_decides() -> None:
    from adaface_lab.cli import build_parser

    parse = lambda *args: vars(build_parser().parse_args(["train", *args]))  # noqa: E731
    assert parse("--center-crop", "none")["center_crop"] == 0  # the whole image
    assert parse("--center-crop", "auto")["center_crop"] is None and parse("--center-crop", "128")["center_crop"] == 128
    assert parse("--image-size", "auto")["image_size"] is None and parse("--image-size", "96")["image_size"] == 96
    assert parse("--backbone", "auto")["backbone"] is None and parse("--backbone", "ir_18")["backbone"] == "ir_18"
