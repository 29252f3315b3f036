"""Would data loading starve training? Loader images/s next to the backbones' images/s, one run.

Measures, on the same machine and in the same run (2 CPU threads by default):

* the identity-folder loader (decode + centre crop + resize to 112) through a DataLoader with
  0 and 2 worker processes, optionally followed by a per-sample pipeline (``--pipeline``);
* the forward pass of ``ir_18`` (the smallest official backbone) on a batch of 64 at 112x112;
* a training step (forward + backward) of the default teaching backbone at its input size.

Model figures are the best of ``--reps`` timed batches (robust to other load on a shared
machine); loader figures are the mean over ``--batches`` batches, so the verdict leans toward
"starves" when in doubt.

Data: ``../shared/data/lfw_min20`` (250x250 JPEGs, centre crop 128) when present, otherwise
a temporary folder of generated 250x250 JPEGs.

    python bench/bench_data.py
    python bench/bench_data.py --pipeline adaface_lab.data.augment:SOME_CALLABLE

``--pipeline module:callable`` names a function applied to every decoded sample in the loader
(in the worker processes): ``fn(image uint8 (3, H, W)) -> image`` or ``-> (image, meta)``.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from adaface_lab.backbones import DEFAULT_TEACHING_BACKBONE, build_backbone, preprocess
from adaface_lab.data.folders import ImageFolderFaces

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw_min20"


class _Piped(Dataset):
    """Applies ``fn`` to each sample's image; keeps the lab's 4-tuple."""

    def __init__(self, base: Dataset, fn: Callable | None) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        image, label, sample_id, meta = self.base[i]
        if self.fn is not None:
            out = self.fn(image)
            image = out[0] if isinstance(out, tuple) else out
        return image, label, sample_id


def _load_callable(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--pipeline must look like 'package.module:callable', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one core per worker process


def _make_fake_folder(root: Path, n_ids: int = 16, per_id: int = 32) -> None:
    rng = np.random.default_rng(0)
    for k in range(n_ids):
        d = root / f"person_{k:03d}"
        d.mkdir(parents=True)
        for j in range(per_id):
            small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(small).resize((250, 250), Image.BICUBIC).save(d / f"img_{j:04d}.jpg", quality=90)


def bench_loader(ds: Dataset, batch: int, workers: int, n_batches: int) -> float:
    """Images/s of a shuffled DataLoader over ``ds`` (first batch not timed)."""
    loader = DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        worker_init_fn=_worker_init if workers else None, persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    seen = 0
    for _ in range(n_batches):
        seen += next(it)[0].shape[0]
    return seen / (time.perf_counter() - t)


def bench_forward(name: str, images: torch.Tensor, reps: int) -> float:
    """Images/s of an eval-mode forward pass of ``name`` on ``images`` (uint8 RGB batch)."""
    model = build_backbone(name).eval()
    x = preprocess(images, channel_order="bgr", size=model.input_size)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(reps):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return x.shape[0] / min(times)  # best of reps: robust to other load on a shared machine


def bench_train_step(name: str, images: torch.Tensor, reps: int) -> float:
    """Images/s of forward + backward + SGD step of ``name`` (train mode)."""
    model = build_backbone(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = preprocess(images, channel_order="bgr", size=model.input_size)

    def step() -> None:
        emb, norm = model(x)
        (emb.sum() + norm.mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return x.shape[0] / min(times)  # best of reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=None, help="identity folder (default: lfw_min20 or generated)")
    p.add_argument("--center-crop", type=int, default=None, help="default 128 for 250x250 folders")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="timed loader batches")
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=2, help="timed forward passes")
    p.add_argument("--pipeline", default=None, help="'module:callable' applied per sample after decoding")
    p.add_argument("--teaching", default=DEFAULT_TEACHING_BACKBONE)
    p.add_argument("--quick", action="store_true", help="fewer timed batches (for `python -m bench --quick`)")
    args, unknown = p.parse_known_args()  # `python -m bench` passes its extra arguments to every script
    if unknown:
        print(f"(ignoring arguments meant for other benchmarks: {' '.join(unknown)})")
    if args.quick:
        args.batches, args.reps = min(args.batches, 3), 1
    torch.set_num_threads(args.threads)

    tmp = None
    root = args.root
    if root is None:
        if LFW.is_dir():
            root = LFW
        else:
            tmp = tempfile.TemporaryDirectory()
            root = Path(tmp.name)
            _make_fake_folder(root)
    crop = args.center_crop if args.center_crop is not None else 128
    ds = ImageFolderFaces(root, size=112, center_crop=crop)
    fn = _load_callable(args.pipeline) if args.pipeline else None
    piped = _Piped(ds, fn)
    print(f"data: {root} ({len(ds)} images, {ds.num_classes} identities), crop {crop} -> 112, "
          f"batch {args.batch}, {args.threads} threads, pipeline: {args.pipeline or 'decode only'}")

    rows: list[tuple[str, float]] = []
    for w in (int(v) for v in args.workers.split(",")):
        rows.append((f"loader, {w} worker{'s' if w != 1 else ''}", bench_loader(piped, args.batch, w, args.batches)))
    images = torch.stack([ds[i][0] for i in range(args.batch)])
    rows.append(("ir_18 forward (eval, 112 px)", bench_forward("ir_18", images, args.reps)))
    teach = build_backbone(args.teaching)
    rows.append((f"{args.teaching} train step ({teach.input_size} px)", bench_train_step(args.teaching, images, max(args.reps, 3))))

    ref = dict(rows)["ir_18 forward (eval, 112 px)"]
    print(f"\n{'stage':38s} {'images/s':>10s} {'ms/batch':>10s} {'÷ ir_18 fwd':>12s}")
    for name, ips in rows:
        print(f"{name:38s} {ips:10.1f} {1000 * args.batch / ips:10.1f} {ips / ref:12.2f}")
    best_loader = max(ips for name, ips in rows if name.startswith("loader"))
    for name, ips in rows[-2:]:
        verdict = "keeps up with" if best_loader >= ips else "would STARVE"
        print(f"-> best loader ({best_loader:.0f} img/s) {verdict} {name.split(' (')[0]} ({ips:.0f} img/s)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
