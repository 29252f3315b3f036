"""``adaface-lab checkup``: before trusting a model's feature norm as a quality score, check it on your faces.

::

    adaface-lab checkup --checkpoint adaface_ir101_webface12m.ckpt --data faces/      # the authors' model: BGR
    adaface-lab checkup --run runs/lfw --data ../shared/data/lfw_min20 --max-images 100
    adaface-lab checkup --checkpoint weights.pt --backbone ir_50 --channel-order rgb --data faces/ --out report/

Prints a summary (verdicts in plain words) and writes ``OUT/checkup.html`` (the summary and its figures,
plotly.js embedded once: one file that opens offline), ``OUT/trends.csv`` (the trends and their intervals) and
``OUT/sweep.csv`` (every face at every step, with its scores). What is measured, and how the verdicts are
judged: :mod:`adaface_lab.quality_eval.checkup`.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path
from typing import Any

import plotly.io as pio

from ._atomic import write_text_atomic
from .quality_eval.checkup import Checkup, checkup, find_faces, load_faces, sweep_bands

__all__ = ["add_checkup_subparser", "checkup_main", "checkup_html", "resolve_checkpoint", "run_checkup",
           "write_checkup_report"]  # fmt: skip

REPORT = "checkup.html"
TRENDS = "trends.csv"
SWEEP = "sweep.csv"


# --------------------------------------------------------------------------- the report


def checkup_html(result: Checkup) -> str:
    """The check-up as one HTML page: verdicts, the summary table, the figures (plotly.js embedded once)."""
    from .plots import channel_order_figure, degradation_sweep_figure, trend_figure

    measures = [m for m in ("norm", "brisque") if m in result.sweep.columns]
    figures = [trend_figure(result.trends), degradation_sweep_figure({m: sweep_bands(result.sweep, m) for m in measures}),
               channel_order_figure(result.channel)]  # fmt: skip
    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
             for i, fig in enumerate(figures)]  # fmt: skip
    verdicts = "".join(f"<li>{html.escape(v)}</li>" for v in result.verdicts())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Norm check-up: {html.escape(result.source)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}} li{{margin:.4em 0}}</style></head><body>
<h1>Can the feature norm be read as image quality here?</h1>
<h2>Verdicts</h2><ul>{verdicts}</ul>
<h2>How it was measured</h2>
<p>Each face is degraded one kind at a time at increasing strength (step 0 is the face itself). For one face,
ρ is the Spearman correlation between the step and the value along that face's versions (−1: it falls at
every step). The table gives the mean ρ over faces and its {result.level:.0%} interval from a bootstrap over
faces; a verdict says <em>falls</em> or <em>rises</em> only when the interval excludes 0. The channel-order
check embeds the undegraded faces fed BGR and fed RGB and compares how well each separates genuine from
impostor pairs (AUC over every pair of faces; the interval of the difference is a bootstrap over faces).</p>
<pre>{html.escape(result.summary())}</pre>
<h2>Figures</h2>{"".join(parts)}
</body></html>
"""


def write_checkup_report(result: Checkup, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``checkup.html``, ``trends.csv`` and ``sweep.csv`` into the folder ``out`` (each atomically)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; give a folder for the report")
    written = {"html": folder / REPORT, "trends": folder / TRENDS, "sweep": folder / SWEEP}
    write_text_atomic(written["trends"], result.trends.to_csv(index=False))
    paths = result.faces.paths
    sweep = result.sweep.assign(path=[paths[i] for i in result.sweep["image"]]) if paths else result.sweep
    write_text_atomic(written["sweep"], sweep.to_csv(index=False))
    write_text_atomic(written["html"], checkup_html(result))
    return written


# --------------------------------------------------------------------------- the command


def resolve_checkpoint(checkpoint: str | None, run: str | None) -> Path:
    """The checkpoint file of ``--checkpoint FILE`` or ``--run DIR`` (exactly one of them)."""
    from .runs import RunFolder

    if (checkpoint is None) == (run is None):
        raise ValueError("give exactly one of --checkpoint FILE or --run DIR" + (", not both" if checkpoint else ""))
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}" + (" (a folder: for a run give --run)"
                                                                        if path.is_dir() else ""))  # fmt: skip
        return path
    folder = RunFolder(Path(run))  # type: ignore[arg-type]
    if not folder.path.is_dir():
        raise FileNotFoundError(f"run folder not found: {folder.path}")
    if not folder.checkpoint.is_file():
        raise FileNotFoundError(f"no {folder.checkpoint.name} in {folder.path}: not a run of `adaface-lab train`, "
                                "or it has not finished an epoch")  # fmt: skip
    return folder.checkpoint


def run_checkup(args: argparse.Namespace) -> Checkup:
    """Load the checkpoint and the faces, run the check-up, write the report and print the summary."""
    from .runs import load_backbone

    path = resolve_checkpoint(args.checkpoint, args.run)
    if args.data is None:
        raise ValueError("give --data FOLDER: aligned faces, root/<identity>/*.jpg or image files in it")
    find_faces(args.data)  # a bad folder fails now, before a large checkpoint is read
    found = load_backbone(path, None if args.backbone == "auto" else args.backbone, device=args.device)
    order = args.channel_order if args.channel_order != "auto" else (found.channel_order or "bgr")
    crop = args.center_crop if args.center_crop is not None else (found.config or {}).get("center_crop")
    crop = None if crop in (None, 0) else int(crop)
    faces = load_faces(args.data, max_images=args.max_images, center_crop=crop, seed=args.seed)
    what = f"{path} ({found.name}, {found.format} checkpoint" + (f", epoch {found.epoch}" if found.epoch else "") + ")"
    print(f"checking {what} on {len(faces)} faces, fed {order.upper()}"
          + (f", centre crop {crop} px" if crop else ""), file=sys.stderr)  # fmt: skip
    result = checkup(found.model, faces, order, measures=("norm", "brisque") if args.brisque else ("norm",),
                     n_boot=args.bootstrap, seed=args.seed, batch_size=args.batch_size, device=args.device,
                     source=what)  # fmt: skip
    written = write_checkup_report(result, args.out)
    print(result.summary())
    print(f"\nreport: {written['html']} (tables: {written['trends'].name}, {written['sweep'].name})")
    return result


def _command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        run_checkup(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written (the report is written at the end)", file=sys.stderr)
        return 130
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .backbones import list_backbones

    p.add_argument("--checkpoint", metavar="FILE", help="a checkpoint: a run's checkpoint.pt, an authors' "
                   "Lightning .ckpt, or a plain state dict (read weights-only)")  # fmt: skip
    p.add_argument("--run", metavar="DIR", help="a run folder of `adaface-lab train` (its checkpoint.pt)")
    p.add_argument("--data", metavar="FOLDER", help="aligned faces: root/<identity>/*.jpg (for the channel-order "
                   "check) or image files directly in FOLDER")  # fmt: skip
    p.add_argument("--max-images", type=_positive, default=200,
                   help="faces drawn from FOLDER, identities taking turns (default 200: minutes on a CPU)")
    p.add_argument("--out", default="checkup", help="report folder (default: checkup)")
    p.add_argument("--channel-order", choices=("auto", "bgr", "rgb"), default="auto",
                   help="what the model is fed; auto: a run's own order, else BGR (the authors' models)")
    p.add_argument("--backbone", choices=("auto", *list_backbones()), default="auto", metavar="NAME",
                   help="backbone of a non-run checkpoint; auto: the one whose tensor shapes match")
    p.add_argument("--center-crop", type=int, default=None, metavar="N",
                   help="centre square (pixels) cut before resizing to 112, e.g. 112 for LFW's 250 px images; "
                        "default: a run's own setting, else none")  # fmt: skip
    p.add_argument("--no-brisque", dest="brisque", action="store_false", help="follow the norm only (faster)")
    p.add_argument("--bootstrap", type=_positive, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the face draw, the noise and the bootstrap")
    p.add_argument("--batch-size", type=_positive, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.set_defaults(func=_command)
    return p


def add_checkup_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``adaface-lab checkup`` (a hook of :data:`adaface_lab.cli.SUBCOMMAND_HOOKS`)."""
    p = subparsers.add_parser(
        "checkup", help="can this model's feature norm be read as image quality? (sweep, channel order, HTML report)",
        description="Degrade each face step by step and see whether the feature norm falls (as a quality "
        "should), rises or stays flat, beside BRISQUE; check which channel order separates identities; "
        "print verdicts and write an HTML report. Give --checkpoint FILE or --run DIR, and --data FOLDER.",
    )  # fmt: skip
    return _configure(p)


def checkup_main(argv: list[str] | None = None) -> int:
    """``python -m adaface_lab.checkup_report [options]``: as ``adaface-lab checkup``; returns the exit code."""
    parser = _configure(argparse.ArgumentParser(prog="python -m adaface_lab.checkup_report",
                                                description="Check a model's feature norm as a quality score."))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(checkup_main())
