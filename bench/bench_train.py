"""Training-step speed: images/s of one full step of the training loop, small backbone next to ir_18.

A step is what :func:`adaface_lab.train.train` does per batch: the official augmentations on the
device, the model's input conversion, forward through backbone and AdaFace head, cross-entropy,
backward and an SGD step (momentum, weight decay). Measured side by side in one run:

* the CPU demo backbone (``ir_tiny`` at 32 px, the default of ``adaface-lab train``) and ``ir_tiny``
  at its native 64 px, batch 128;
* ``ir_18`` at 112x112, batch 64 (the smallest official backbone).

``--device cuda`` measures ir_18 at 112x112 with bf16 autocast and channels-last (what the loop does
on CUDA) next to fp32; without CUDA it says so and measures nothing.

    python bench/bench_train.py                  # CPU, 2 threads
    python bench/bench_train.py --device cuda    # a GPU machine
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `adaface-lab train` sets it (see adaface_lab/cli.py)

import torch  # noqa: E402

from adaface_lab.backbones import build_backbone, preprocess  # noqa: E402
from adaface_lab.data.augment import AugmentConfig, augment_batch  # noqa: E402
from adaface_lab.heads import build_head  # noqa: E402


def step_rate(
    backbone: str, params: dict[str, Any], batch: int, device: torch.device, steps: int, warmup: int = 1,
    amp: bool = False, channels_last: bool = False, num_classes: int = 1000,
) -> float:
    """Images/s of full training steps (augment -> preprocess -> forward -> loss -> backward -> SGD)."""
    torch.manual_seed(0)
    model = build_backbone(backbone, **params).to(device)
    head = build_head("adaface", model.embedding_size, num_classes, validate=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9, weight_decay=5e-4)
    size = model.input_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    gen = torch.Generator().manual_seed(0)
    config = AugmentConfig()

    def one_step() -> None:
        x, _ = augment_batch(images, gen, config)
        x = preprocess(x, channel_order="rgb")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
            emb, norm = model(x)
            logits = head(emb.float(), norm.float(), labels)
        loss = head.loss(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("CUDA is not available on this machine: nothing measured (run with --device cuda on a GPU machine)")
            return 0
        device = torch.device(args.device)
        bf16 = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        steps = 5 if args.quick else 30
        fp32 = step_rate("ir_18", {}, 64, device, steps, warmup=3)
        print(f"{name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
        print(f"  ir_18 112x112 batch 64 fp32                   : {fp32:8.0f} img/s")
        if bf16:
            amp = step_rate("ir_18", {}, 64, device, steps, warmup=3, amp=True, channels_last=True)
            print(f"  ir_18 112x112 batch 64 bf16 AMP channels-last : {amp:8.0f} img/s   ({amp / fp32:.2f}x fp32)")
        else:
            print("  bf16 is not supported on this GPU: the training loop runs it in fp32")
        return 0

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    small_steps, big_steps = (2, 1) if args.quick else (6, 2)
    print(f"CPU, {torch.get_num_threads()} threads (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), "
          f"torch {torch.__version__}: one training step (augment, forward, AdaFace loss, backward, SGD)")  # fmt: skip
    demo = step_rate("ir_tiny", {"input_size": 32}, 128, device, small_steps)
    print(f"  ir_tiny  32x32   batch 128 (the CPU demo) : {demo:7.1f} img/s")
    tiny = step_rate("ir_tiny", {}, 128, device, small_steps)
    print(f"  ir_tiny  64x64   batch 128                : {tiny:7.1f} img/s")
    ir18 = step_rate("ir_18", {}, 64, device, big_steps)
    print(f"  ir_18   112x112  batch 64                 : {ir18:7.1f} img/s")
    print(f"  ratios: demo / ir_18 = {demo / ir18:.0f}x, ir_tiny 64 px / ir_18 = {tiny / ir18:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
