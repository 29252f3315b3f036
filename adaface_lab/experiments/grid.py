"""A sweep's grid: which train options vary and over which values, read as ``adaface-lab train`` reads them.

::

    axes = parse_grid(["head-param.h=0,0.333", "head-param.m=0.4,0.5"])
    points = grid_points(axes)      # every combination: [{"head-param.h": 0, "head-param.m": 0.4}, ...]
    point_overrides(points[0], axes, shared={"epochs": 3})
    # {"epochs": 3, "head_params": {"h": 0, "m": 0.4}}

A grid key is a train option's name without its dashes (``head``, ``epochs``, ``crop-prob``), or, for the
KEY=VALUE options, ``head-param.KEY`` and ``backbone-param.KEY``; options joined by ``+`` take the same
values together (``crop-prob+lowres-prob+photometric-prob=0,0.2``: augmentation off and on). Values are separated by commas (by
semicolons when the text holds one, for a list-valued option such as ``lr-milestones``) and converted by
the train command's own parser (:func:`adaface_lab.cli.add_train_options`), so a value means here what it
means on ``adaface-lab train``'s command line. Every mistake is a :class:`GridError` of one plain line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig

__all__ = ["SET_BY_THE_SWEEP", "GridError", "Axis", "parse_grid", "parse_point", "grid_points", "point_overrides", "point_label",
           "same_value"]  # fmt: skip

#: TrainConfig fields the sweep sets itself, and why a grid cannot vary them.
SET_BY_THE_SWEEP: dict[str, str] = {
    "seed": "the seeds are the sweep's own axis: use --seeds N",
    "out": "the sweep decides each run's folder (in its run cache under --out)",
    "resume": "the sweep resumes by itself: a finished run is read from its cache",
    "overwrite": "the sweep never replaces a finished run",
    "stop_after": "every run of a sweep trains to its last epoch",
    "progress": "the sweep shows one progress bar for all its runs",
}


class GridError(ValueError):
    """A bad grid, grid point or seed count; the message is one plain line."""


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print the usage and exit
        raise GridError(message)


def _train_parser() -> _RaisingParser:
    from ..cli import add_train_options  # here: the CLI imports this package

    parser = _RaisingParser(prog="grid", add_help=False)
    add_train_options(parser)
    return parser


@dataclass(frozen=True)
class Axis:
    """One grid axis: the option ``key`` as typed (``head-param.h``), the TrainConfig ``field`` it sets
    (``head_params``), the entry of a dict field (``sub``, e.g. ``h``) and its ``values``, converted.

    Options joined by ``+`` (``crop-prob+lowres-prob+photometric-prob=0,0.2``) are one axis that sets them
    all to the same value: the first is this axis, the others are ``tied`` (each with its own values)."""

    key: str
    field: str
    sub: str | None
    values: tuple[Any, ...]
    tied: tuple["Axis", ...] = ()

    @classmethod
    def of(cls, key: str, values: Sequence[Any]) -> "Axis":
        """An axis whose values are already converted (as written in ``sweep.json``)."""
        first, *others = key.split("+")
        name, _, sub = first.partition(".")
        field = name.replace("-", "_") + ("s" if sub else "")
        return cls(key, field, sub or None, tuple(values), tuple(cls.of(k, values) for k in others))

    def settings(self, value: Any) -> list[tuple[str, str | None, Any]]:
        """(field, dict entry or None, value) of every option this axis sets at ``value``."""
        i = next(i for i, v in enumerate(self.values) if same_value(v, value))
        return [(a.field, a.sub, a.values[i]) for a in (self, *self.tied)]


def parse_grid(specs: Sequence[str], sweep_options: Collection[str] = ()) -> list[Axis]:
    """The axes of ``--grid KEY=V1,V2,...`` texts, in order. ``sweep_options``: names of the sweep's own
    options, refused as grid keys with a message saying so. Raises :class:`GridError`."""
    parser = _train_parser()
    axes: list[Axis] = []
    for spec in specs:
        key, values = _split(spec)
        axis = _axis(parser, key, values, spec, sweep_options)
        if any(a.key == axis.key for a in axes):
            raise GridError(f"--grid {spec}: the key {axis.key!r} is given twice; list all its values in one --grid")
        axes.append(axis)
    return axes


def parse_point(spec: str, axes: Sequence[Axis]) -> dict[str, Any]:
    """A grid point named as ``KEY=VALUE[,KEY=VALUE...]`` (e.g. ``--baseline head=arcface``): some or all of
    the axes, each with one of its values. Raises :class:`GridError`."""
    parser = _train_parser()
    point: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, values = _split(part)
        axis = next((a for a in axes if a.key == key.strip()), None)
        if axis is None:
            raise GridError(f"--baseline {spec}: {key.strip()!r} is not an axis of this grid "
                            f"(axes: {', '.join(a.key for a in axes) or 'none'})")  # fmt: skip
        (value,) = _axis(parser, axis.key, values, part, ()).values
        if not any(same_value(value, v) for v in axis.values):
            raise GridError(f"--baseline {spec}: {value!r} is not among the grid's values of {axis.key} "
                            f"({', '.join(map(str, axis.values))})")  # fmt: skip
        point[axis.key] = value
    if not point:
        raise GridError(f"--baseline {spec!r} names no grid value (expected KEY=VALUE, e.g. head=arcface)")
    return point


def grid_points(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest ([{}] without axes)."""
    return [dict(zip([a.key for a in axes], combo)) for combo in itertools.product(*(a.values for a in axes))]


def point_overrides(point: Mapping[str, Any], axes: Sequence[Axis], shared: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainConfig overrides of one grid point: ``shared`` (the options every run gets) with the
    point's values set. Raises :class:`GridError` when an axis is also a shared option."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in shared.items()}
    for axis in axes:
        for field, sub, value in axis.settings(point[axis.key]):
            if field in shared and (sub is None or sub in (shared[field] or {})):
                raise GridError(f"{axis.key} is both a grid axis and a shared option: give it in one place")
            out[field] = value if sub is None else {**out.get(field, {}), sub: value}
    return out


def point_label(point: Mapping[str, Any]) -> str:
    """``head=arcface, head-param.h=0.333`` (``all runs`` for the grid without axes)."""
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "all runs"


def same_value(a: Any, b: Any) -> bool:
    """Two grid values are the same: equal numbers (0 and 0.0, as a CSV reads them back), else equal text."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return str(a) == str(b)


# --------------------------------------------------------------------------- one axis


def _split(spec: str) -> tuple[str, str]:
    key, sep, values = spec.partition("=")
    if not sep or not key.strip():
        raise GridError(f"--grid {spec!r}: expected KEY=VALUE1,VALUE2,... (e.g. head=arcface,adaface)")
    return key.strip(), values


def _axis(parser: _RaisingParser, key: str, text: str, spec: str, sweep_options: Collection[str]) -> Axis:
    if "+" in key:  # options set together
        parts = [_axis(parser, k.strip(), text, spec, sweep_options) for k in key.split("+")]
        if len({p.key for p in parts}) < len(parts):
            raise GridError(f"--grid {spec}: an option is named twice in {key!r}")
        return dataclasses.replace(parts[0], key="+".join(p.key for p in parts), tied=tuple(parts[1:]))
    name, _, sub = key.partition(".")
    action = _train_option(parser, name, key, spec, sweep_options)
    name = _flag(action)[2:]  # the option's own spelling (num_identities -> num-identities)
    key = f"{name}.{sub}" if sub else name
    is_pairs = isinstance(action, argparse._AppendAction)
    if is_pairs != bool(sub):
        hint = f"{name}.KEY, e.g. {name}.h" if is_pairs else name
        raise GridError(f"--grid {spec}: {name!r} takes {'KEY=VALUE entries' if is_pairs else 'one value'}: "
                        f"write the key as {hint}")  # fmt: skip
    texts = [t.strip() for t in text.split(";" if ";" in text else ",")]
    if not any(texts):
        raise GridError(f"--grid {spec}: no values (expected {key}=VALUE1,VALUE2,...)")
    if not all(texts):
        raise GridError(f"--grid {spec}: an empty value in the list (two separators in a row, or one at an end)")
    values = tuple(_convert(parser, action, sub or None, t, spec) for t in texts)
    for i, v in enumerate(values):
        if any(same_value(v, w) for w in values[:i]):
            raise GridError(f"--grid {spec}: the value {texts[i]!r} is listed twice")
    return Axis(key, action.dest, sub or None, values)


def _train_option(parser: _RaisingParser, name: str, key: str, spec: str,
                  sweep_options: Collection[str]) -> argparse.Action:  # fmt: skip
    """The train parser's action for option ``name``; GridError saying why when there is none."""
    actions = {s[2:]: a for a in parser._actions for s in a.option_strings if s.startswith("--")}
    field = name.replace("-", "_")
    if field in SET_BY_THE_SWEEP:
        raise GridError(f"--grid {spec}: {name!r} cannot vary across runs: {SET_BY_THE_SWEEP[field]}")
    if name in sweep_options:
        raise GridError(f"--grid {spec}: {name!r} is an option of the sweep, not a train option of its runs; "
                        "grid keys are train options such as head, epochs or head-param.h")  # fmt: skip
    action = actions.get(name) or actions.get(field.replace("_", "-"))
    if action is None:
        close = difflib.get_close_matches(name, [a for a in actions if not a.startswith("no-")], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise GridError(f"--grid {spec}: unknown key {key!r}; {hint}grid keys are the options of "
                        "`adaface-lab train` (head, epochs, head-param.h, ...)")  # fmt: skip
    if action.dest in TrainConfig.RUNTIME_FIELDS:
        raise GridError(f"--grid {spec}: {name!r} does not change what a run records (a runtime setting), so "
                        f"runs differing only in it are one run: give it once as --{name}")  # fmt: skip
    return action


def _convert(parser: _RaisingParser, action: argparse.Action, sub: str | None, text: str, spec: str) -> Any:
    """One value, converted by the train parser exactly as on the command line."""
    flag = _flag(action)
    if isinstance(action, argparse.BooleanOptionalAction):
        word = text.lower()
        if word not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise GridError(f"--grid {spec}: {text!r} is not a yes/no value (true, false, on, off, 1, 0)")
        args = [flag if word in ("true", "yes", "on", "1") else "--no-" + flag[2:]]
    else:
        args = [flag, f"{sub}={text}" if sub else text]
    try:
        value = getattr(parser.parse_args(args), action.dest)
    except GridError as e:
        raise GridError(f"--grid {spec}: {e}") from None
    except (TypeError, ValueError) as e:
        raise GridError(f"--grid {spec}: {text!r}: {e}") from None
    return dict(value)[sub] if sub else value


def _flag(action: argparse.Action) -> str:
    return next(s for s in action.option_strings if s.startswith("--") and not s.startswith("--no-"))
