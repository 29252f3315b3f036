"""The ``adaface-lab`` command: one sub-command per job.

::

    adaface-lab train --out runs/demo                         # SyntheticFaces, ir_tiny, AdaFace (CPU demo)
    adaface-lab train --data ../shared/data/lfw_min20 --out runs/lfw   # crop, size and model chosen from the data
    adaface-lab train --out runs/demo --resume                # continue the run in runs/demo from its checkpoint
    adaface-lab train --out runs/demo --overwrite             # replace the run in runs/demo
    torchrun --nproc-per-node 2 -m adaface_lab.cli train ...  # DistributedDataParallel
    adaface-lab sweep --grid head=arcface,adaface --seeds 3 --out sweeps/heads   # a grid × seeds, with CIs
    adaface-lab quality PATH...                               # BRISQUE scores to a CSV
    adaface-lab checkup --run runs/demo --data FOLDER         # can the norm be read as quality here?

Other modules define their sub-commands: ``SUBCOMMAND_HOOKS`` lists their ``add_<name>_subparser(subparsers)``
functions, each registering a parser whose ``func(args)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With the default spinning, a
# small model on 2 threads ran ~10x slower whenever other processes shared the cores (bench/bench_train.py
# conditions, ir_tiny at 32 px: 31 img/s spinning, 336 img/s passive). Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkup_report import add_checkup_subparser  # noqa: E402
from .errors import USER_ERRORS, one_line  # noqa: E402
from .experiments.cli import add_sweep_subparser  # noqa: E402
from .quality import add_quality_subparser  # noqa: E402  (it loads torch: after OMP_WAIT_POLICY is set)
from .reports import add_reports_subparser  # noqa: E402

__all__ = ["main", "build_parser", "SUBCOMMAND_HOOKS", "add_train_options", "train_overrides"]

#: The functions that register the sub-commands besides ``train``, in the order ``--help`` lists them.
SUBCOMMAND_HOOKS: tuple[Callable[[Any], argparse.ArgumentParser], ...] = (
    add_sweep_subparser,
    add_quality_subparser,
    add_reports_subparser,
    add_checkup_subparser,
)

# Help for the train options, by TrainConfig field (the option is --field-name).
_TRAIN_HELP: dict[str, str] = {
    "data": "'synthetic' (built-in SyntheticFaces) or a folder root/<identity>/*.jpg",
    "num_identities": "SyntheticFaces: identities to train on",
    "images_per_identity": "SyntheticFaces: images per identity",
    "severity": "SyntheticFaces severity distribution: mixed or uniform",
    "center_crop": "folders: side of the centre square cut first, e.g. 112 of LFW's 250; none: the whole image; "
    "auto: chosen from the data",
    "image_size": "side (px) the images are made, augmented and scored with BRISQUE at, before the network's own "
    "input size; auto: 112 (a folder's own side when smaller)",
    "holdout_identities": "identities kept out of training for verification pairs (0: none)",
    "eval_pairs": "verification pairs drawn from the held-out identities",
    "backbone": "backbone name (adaface_lab.backbones); auto: ir_tiny on SyntheticFaces; on a folder ir_tiny "
    "(64 px) without CUDA, ir_18 (112 px) with it",
    "backbone_params": "backbone option KEY=VALUE, repeatable, e.g. input_size=64; without any, ir_tiny on "
    "SyntheticFaces gets input_size=32 (the CPU demo), a folder's chosen backbone the size above, others their own",
    "head": "head name (adaface_lab.heads)",
    "head_params": "head option KEY=VALUE, repeatable (e.g. m=0.4 h=0.333 s=64)",
    "channel_order": "channel order the model is fed: rgb or bgr",
    "epochs": "epochs",
    "batch_size": "batch size per process",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay (not on BatchNorm)",
    "lr_milestones": "LR drops as fractions of the run, comma-separated",
    "lr_gamma": "LR factor at each milestone",
    "crop_prob": "probability of the crop augmentation",
    "lowres_prob": "probability of the low-resolution augmentation",
    "photometric_prob": "probability of the photometric augmentation",
    "probe": "probe samples recorded every epoch: a number or 'all'",
    "brisque": "score each probe's augmented image with BRISQUE",
    "eval_each_epoch": "verify on held-out identities after every epoch",
    "seed": "seed of every random stream",
    "device": "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps",
    "amp": "bf16 autocast on CUDA",
    "channels_last": "channels-last memory format (none: on CUDA only)",
    "compile": "torch.compile the model",
    "num_workers": "loader worker processes",
    "threads": "CPU threads for torch (default: one per core; on a busy shared machine 1 can be much faster)",
    "preload": "hold the decoded training set in memory (none: when it fits in 4 GiB)",
    "out": "run folder",
    "resume": "continue the run in --out from its checkpoint",
    "overwrite": "replace the run already in --out (without this or --resume, that is refused)",
    "stop_after": "end this session after this epoch (checkpointed; --resume continues)",
    "progress": "progress bars and epoch summaries",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adaface-lab`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Every failure a user can act on (:data:`adaface_lab.errors.USER_ERRORS`) ends in one ``error: …`` line
    on stderr and exit code 2 (130 after Ctrl-C), never a traceback; ``--debug`` shows it. argparse's own
    errors (an unknown option, a bad value) end in an ``error: …`` line too, with exit code 2.
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {one_line(e) if str(e) else 'interrupted'}", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 2)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on a last line that starts with ``error:`` (as every other failure)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with ``train`` and the sub-commands of :data:`SUBCOMMAND_HOOKS`."""
    parser = _Parser(
        prog="adaface-lab", description="A lab for quality-adaptive margin losses (AdaFace and its relatives)."
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_train_subparser(subparsers)
    for hook in SUBCOMMAND_HOOKS:
        hook(subparsers)
    for command in subparsers.choices.values():  # after the command too; a command's own --debug stays
        try:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        except argparse.ArgumentError:
            pass
    return parser


_DEBUG_HELP = "show the traceback of a failure"


# --------------------------------------------------------------------------- train


def add_train_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train``: one option per :class:`~adaface_lab.config.TrainConfig` field."""
    from .runs import RUN_FILES

    p = subparsers.add_parser(
        "train", help="train a backbone and record norm, P_y, margin and quality per probe sample and epoch",
        description=f"Train with a margin head and write {', '.join(RUN_FILES)} under --out. Options not "
        "given keep their defaults (or, with --resume, the run's saved values). A folder that holds a run "
        "is refused unless --resume or --overwrite says what to do with it. Images are made, augmented and "
        "scored with BRISQUE at --image-size (112 px, the paper's), then resized to the network's input "
        "(bilinear, antialiased). With --data FOLDER, what is not given is chosen from its images and printed: "
        "LFW-style 250 x 250 images are cut to the centre 112 x 112 (the face), aligned square crops up to "
        "160 px are kept whole (at 112 px, or their own side when smaller), other shapes give their centre "
        "square; the backbone is ir_tiny at 64 px without CUDA (learns in minutes on a CPU) and ir_18 at "
        "112 px with it.",
    )  # fmt: skip
    add_train_options(p)
    p.set_defaults(func=_run_train)
    return p


def add_train_options(p: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> None:
    """Add one option per :class:`~adaface_lab.config.TrainConfig` field (``--field-name``; dict fields as
    a repeatable ``--head-param KEY=VALUE``) to ``p``, except the fields in ``skip``. An option not given
    is absent from the parsed namespace (:func:`train_overrides` reads what was)."""
    from .config import TrainConfig

    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = None if f.name in _AUTO else getattr(defaults, f.name)  # "auto", not SyntheticFaces' choice
        kind = _FIELD_KINDS.get(f.name) or _parse_kind(hints[f.name])
        shown = "" if f.name == "backbone_params" else f" (default: {_show(default, f.name in _AUTO)})"
        common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": f"{_TRAIN_HELP.get(f.name, f.name)}{shown}"}  # fmt: skip
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind == "pairs":
            p.add_argument(flag.removesuffix("s"), action="append", metavar="KEY=VALUE", type=_key_value, **common)
        else:
            p.add_argument(flag, type=kind, metavar=_METAVARS.get(kind, "VALUE"), **common)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on a command line parsed with :func:`add_train_options`, as
    ``TrainConfig.from_overrides`` takes them (``--head-param`` pairs gathered into a dict)."""
    from .config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    for name in ("head_params", "backbone_params"):
        if name in given:
            given[name] = dict(given[name])
    return given


def _parse_kind(hint: Any) -> Any:
    """The argparse converter for a TrainConfig field type."""
    args = set(typing.get_args(hint)) - {type(None)}
    origin = typing.get_origin(hint)
    if hint is bool or args == {bool}:
        return bool
    if origin is dict or any(typing.get_origin(a) is dict for a in args):
        return "pairs"
    if origin is tuple:
        return _float_list
    if args == {int, str}:
        return _int_or_all
    if args == {int}:
        return _int_or_none
    if args == {str}:
        return str
    return hint


def _show(value: Any, auto: bool = False) -> str:
    if value is None:
        return "auto" if auto else "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:.4g}" for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def _int_or_all(text: str) -> int | str:
    return "all" if text == "all" else int(text)


def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _int_or_auto(text: str) -> int | None:
    return None if text.lower() == "auto" else int(text)


def _crop_side(text: str) -> int | None:
    """``auto`` (chosen from the data), ``none`` (the whole image: 0) or a side in pixels."""
    return 0 if text.lower() == "none" else _int_or_auto(text)


def _str_or_auto(text: str) -> str | None:
    return None if text.lower() == "auto" else text


# Fields whose None means "chosen from the data" (shown and typed as "auto"), and their converters.
_FIELD_KINDS: dict[str, Any] = {"center_crop": _crop_side, "image_size": _int_or_auto, "backbone": _str_or_auto}
_AUTO = frozenset(_FIELD_KINDS)


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


_METAVARS: dict[Any, str] = {int: "N", float: "X", str: "TEXT", _int_or_all: "N|all", _int_or_none: "N|none",
                             _float_list: "X,X,...", _int_or_auto: "N|auto", _crop_side: "N|none|auto",
                             _str_or_auto: "NAME|auto"}  # fmt: skip


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it can be (numbers, true/false, lists), else as a float
    where Python reads one (``nan``, ``inf``: refused later, by name), else as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = float(raw)
        except ValueError:
            value = raw
    return key.strip(), value


def _run_train(args: argparse.Namespace) -> int:
    """``adaface-lab train``: errors reach :func:`main` (one line each); Ctrl-C says what is checkpointed."""
    from .config import TrainConfig
    from .runs import RUN_FILES, RunFolder
    from .train import train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = train_overrides(args)
    overrides: dict[str, Any] = {}
    if given.get("resume"):
        # the run's settings; runtime options (device, threads, stop_after, ...) come from this command line
        saved = RunFolder(Path(given.get("out", TrainConfig().out))).settings_to_resume()
        overrides = {k: v for k, v in saved.items() if k in fields - TrainConfig.RUNTIME_FIELDS}
    overrides.update(given)
    result = train(TrainConfig.from_overrides(overrides))
    if result.summary:
        print(f"run folder: {result.run_dir} ({', '.join(RUN_FILES)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
