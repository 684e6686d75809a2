"""Which network and batch size make the best use of a fixed CPU budget? Held-out loss vs training seconds.

Each candidate trains the DDPM objective (eps-prediction, linear betas, T = 1000, Adam, warm-up,
grad clip 1.0) on the Fashion-MNIST training split for the same number of wall-clock seconds,
alone on the machine, one after another. Every ``--eval-every`` training seconds it measures the
loss on a fixed held-out batch: 512 test-split images, timesteps spread evenly over 0..T-1 and
fixed noise, so the curves are comparable without the sampling noise of the training loss (the
evaluation time is kept off the training clock).

    python benchmarks/train_sweep.py --seconds 240 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _tables import command_line, write_csv
from train_throughput import plain_step

from ddim.data import load_dataset
from ddim.models import _unet
from ddim.schedule import NoiseSchedule

# name -> (UNet2DModel config at 28x28, batch size)
CANDIDATES = {
    "w32-64-128 b64": (_unet(28, 1, (32, 64, 128), (False, False, False), 1, 16), 64),
    "w32-64-64 b64": (_unet(28, 1, (32, 64, 64), (False, False, False), 1, 16), 64),
    "w48-96-192 b64": (_unet(28, 1, (48, 96, 192), (False, False, False), 1, 16), 64),
    "w32-64-128 b128": (_unet(28, 1, (32, 64, 128), (False, False, False), 1, 16), 128),
    "mnist-preset b128": (_unet(28, 1, (32, 64, 128), (False, False, True), 1, 16), 128),
}


def held_out_batch(n: int = 512, T: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x0 = load_dataset("fashion-mnist", split="test").data[:n]
    g = torch.Generator().manual_seed(1234)
    t = torch.linspace(0, T - 1, n).round().long()
    return x0, t, torch.randn(x0.shape, generator=g)


@torch.no_grad()
def held_out_loss(net, ab, batch) -> float:
    x0, t, noise = batch
    net.eval()
    a = ab[t].reshape(-1, 1, 1, 1)
    losses = [torch.nn.functional.mse_loss(net(a[i:i + 128].sqrt() * x0[i:i + 128] + (1 - a[i:i + 128]).sqrt() * noise[i:i + 128],
                                               t[i:i + 128]).sample, noise[i:i + 128]).item() for i in range(0, len(t), 128)]
    net.train()
    return sum(losses) / len(losses)


def run(name: str, seconds: float, eval_every: float, lr: float, warmup: int, train_x, batch) -> list[dict]:
    from diffusers import UNet2DModel

    config, bs = CANDIDATES[name]
    torch.manual_seed(0)
    net = UNet2DModel(**config)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    ab = NoiseSchedule.linear(1000).alphas_cumprod.float()
    g = torch.Generator().manual_seed(0)
    rows, clock, step, next_eval = [], 0.0, 0, 0.0
    while True:
        if clock >= next_eval:
            rows.append(dict(candidate=name, params_M=round(params / 1e6, 2), batch=bs, step=step, images=step * bs,
                             train_s=round(clock, 1), held_out_loss=round(held_out_loss(net, ab, batch), 5)))
            print(rows[-1], flush=True)
            next_eval += eval_every
            if clock >= seconds:
                return rows
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        x0 = train_x[torch.randint(len(train_x), (bs,), generator=g)]
        t = torch.randint(1000, (bs,), generator=g)
        plain_step(net, opt, ab, x0, t, torch.randn(x0.shape, generator=g))
        step += 1
        clock += time.perf_counter() - start


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(r["candidate"] for r in rows):
        rs = [r for r in rows if r["candidate"] == name and r["step"] > 0]
        ax.plot([r["train_s"] / 3600 for r in rs], [r["held_out_loss"] for r in rs], marker="o", ms=3,
                label=f"{name} ({rs[0]['params_M']}M)")
    ax.set(xlabel="training CPU-hours (2 cores, wall clock)", ylabel="held-out loss (MSE on eps, 512 test images)",
           title="Fashion-MNIST DDPM: loss vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--seconds", type=float, default=240)
    p.add_argument("--eval-every", type=float, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    train_x = load_dataset("fashion-mnist").data
    batch = held_out_batch()
    rows = []
    for name in args.candidates:
        rows += run(name, args.seconds, args.eval_every, args.lr, args.warmup, train_x, batch)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "fashion-train-sweep.csv")
    plot(rows, args.out / "fashion-train-sweep.png")
    lines = [command_line("train_sweep.py"), "",
             f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU, fp32; lr {args.lr}, "
             f"warm-up {args.warmup} steps, {args.seconds:.0f} training seconds per candidate.", "",
             "| candidate | parameters | batch | steps | images seen | held-out loss at the end |", "|---|---:|---:|---:|---:|---:|"]
    for name in args.candidates:
        last = [r for r in rows if r["candidate"] == name][-1]
        lines.append(f"| {name} | {last['params_M']}M | {last['batch']} | {last['step']} | {last['images']} | {last['held_out_loss']:.4f} |")
    (args.out / "fashion-train-sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
