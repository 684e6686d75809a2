"""The DDIM paper's Table 2 on our data: round-trip error x0 -> x_T -> x0 on held-out test images.

For each S: plain DDIM inversion, the exact fixed-point inversion, and diffusers'
DDIMInverseScheduler + DDIMScheduler, all on the same model and images in the same run.
Error is the per-dimension MSE with pixels in [0, 1] (the paper's unit), with model calls and
wall time per method.

    python benchmarks/inversion_table2.py --images 100 --out docs/benchmarks
    python benchmarks/inversion_table2.py --model fashion-mnist --images 64 --name inversion-table2-fashion-mnist
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _tables import command_line, steps_table, write_csv

import ddim
from ddim.sampling import CallCounter

PAPER = {10: 0.014, 20: 0.0065, 50: 0.0023, 100: 0.0009, 200: 0.0004, 500: 0.0001, 1000: 0.0001}


def ours(m, x0, S, method, iterations):
    f = CallCounter(m.model)
    x_T = ddim.invert(f, m.schedule, x0, steps=S, method=method, iterations=iterations, prediction=m.prediction)
    back = ddim.sample(f, m.schedule, x_T, steps=S, prediction=m.prediction)
    return back, f.calls


def diffusers_pair(m, x0, S):
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    cfg = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False,
               set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    f = CallCounter(m.model)
    inv, fwd = DDIMInverseScheduler(**cfg), DDIMScheduler(**cfg)
    inv.set_timesteps(S)
    fwd.set_timesteps(S)
    x = x0
    for t in inv.timesteps:
        x = inv.step(f(x, t.expand(len(x))), t, x).prev_sample
    for t in fwd.timesteps:
        x = fwd.step(f(x, t.expand(len(x))), t, x).prev_sample
    return x, f.calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="digits")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, nargs="+", default=list(PAPER))
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    p.add_argument("--name", default="inversion-table2", help="output files NAME.md and NAME.csv")
    args = p.parse_args()
    m = ddim.load(args.model)
    dataset = m.config.get("train", {}).get("dataset", "digits")
    x0 = ddim.data.load_dataset(dataset, split="test").data[: args.images]
    methods = {
        "plain DDIM inversion": lambda S: ours(m, x0, S, "ddim", 0),
        f"fixed-point ({args.iterations} iterations)": lambda S: ours(m, x0, S, "fixed-point", args.iterations),
        "diffusers DDIMInverseScheduler + DDIMScheduler": lambda S: diffusers_pair(m, x0, S),
    }
    rows = []
    with torch.no_grad():
        for S in args.steps:
            for name, run in methods.items():
                start = time.perf_counter()
                back, calls = run(S)
                seconds = time.perf_counter() - start
                mse = (((back.clamp(-1, 1) - x0) / 2) ** 2).mean().item()
                rows.append(dict(steps=S, method=name, mse=mse, calls_per_image=calls, seconds=seconds))
                print(f"S={S:5d} {name:48s} MSE {mse:.3e}  calls {calls}  {seconds:.1f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    names = list(methods)
    cell = {(r["method"], r["steps"]): r for r in rows}
    lines = [
        command_line("inversion_table2.py"),
        "",
        f"Model {args.model!r}; {len(x0)} held-out {dataset} images (test split); uniform spacing; machine {platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}.",
        "Per-dimension MSE of x0 -> x_T -> x0, pixels in [0, 1] (model calls per image for inversion + decoding):",
        "",
        *steps_table(names, args.steps, lambda n, S: f"{cell[(n, S)]['mse']:.2e} ({cell[(n, S)]['calls_per_image']})"),
        "| DDIM paper, CIFAR10 (plain) | " + " | ".join(f"{PAPER.get(S, float('nan')):.4f}" for S in args.steps) + " |",
        "",
        "Wall time (seconds, all images, inversion + decoding):",
        "",
        *steps_table(names, args.steps, lambda n, S: f"{cell[(n, S)]['seconds']:.1f}"),
    ]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
