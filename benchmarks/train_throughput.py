"""Training throughput: our trainer (accelerate, EMA, logging, counter-based RNG) vs a plain hand loop.

Both train the same UNet preset on the same data with the same batch size and Adam. The trainer's
per-step cost is measured as the difference of two run lengths, so its fixed start-up and final
save/sample-grid costs cancel. Runs alternate A/B/A/B to spread machine noise over both.

    python benchmarks/train_throughput.py --preset digits --batch-size 128 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _tables import command_line

from ddim.data import load_dataset
from ddim.models import build_model
from ddim.schedule import NoiseSchedule
from ddim.training import TrainConfig, train


def hand_loop(preset: str, batch: int, steps: int) -> float:
    """Seconds per step of the simplest correct DDPM loop (no EMA, no logging, no accelerate)."""
    data = load_dataset("digits").data
    torch.manual_seed(0)
    net = build_model(preset, sample_shape=tuple(data.shape[1:]))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    ab = NoiseSchedule.linear(1000).alphas_cumprod.float()
    start = None
    for step in range(steps + 3):
        if step == 3:
            start = time.perf_counter()
        x0 = data[torch.randint(len(data), (batch,))]
        plain_step(net, opt, ab, x0, torch.randint(1000, (batch,)), torch.randn_like(x0))
    return (time.perf_counter() - start) / steps


def plain_step(net, opt, ab, x0, t, noise) -> None:
    """One step of the DDPM objective on eps (Adam, clip 1.0), with nothing else around it."""
    a = ab[t].reshape(-1, 1, 1, 1)
    loss = torch.nn.functional.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def trainer(preset: str, batch: int, steps: int) -> float:
    """Seconds per step of ddim.training.train, as (t(short + steps) - t(short)) / steps."""
    def timed(n: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(dataset="digits", preset=preset, batch_size=batch, steps=n, output=f"{tmp}/run",
                              sample_every=10**9, checkpoint_every=10**9, log_every=10, warmup=1)
            start = time.perf_counter()
            train(cfg, progress=False)
            return time.perf_counter() - start

    short = 5
    return (timed(short + steps) - timed(short)) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="digits")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    hand, ours = [], []
    for r in range(args.repeats):
        hand.append(hand_loop(args.preset, args.batch_size, args.steps))
        ours.append(trainer(args.preset, args.batch_size, args.steps))
        print(f"repeat {r}: hand loop {args.batch_size / hand[-1]:.0f} img/s, trainer {args.batch_size / ours[-1]:.0f} img/s", flush=True)
    h, o = statistics.median(hand), statistics.median(ours)
    lines = [
        command_line("train_throughput.py"),
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU, fp32.",
        f"Preset {args.preset!r}, batch {args.batch_size}, {args.steps} timed steps, median of {args.repeats} alternating repeats.",
        "",
        "| loop | images/s | ms/step | relative |",
        "|---|---:|---:|---:|",
        f"| plain hand loop (Adam, clip, no EMA) | {args.batch_size / h:.0f} | {1000 * h:.0f} | 1.00 |",
        f"| ddim trainer (accelerate, EMA, log) | {args.batch_size / o:.0f} | {1000 * o:.0f} | {h / o:.2f} |",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train-throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
