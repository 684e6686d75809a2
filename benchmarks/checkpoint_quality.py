"""Sample quality along a training run: FD of the EMA weights in every checkpoint, against training hours.

For each ``RUN/checkpoints/step-N`` it loads the EMA weights the trainer saved there (and, for
comparison, the raw weights the optimizer was at), draws
``--images`` samples from the same seeds (``--method`` / ``--steps``), and measures FD, KID,
precision and recall with the dataset's feature network against the split ``ddim compare`` uses by
default (the test split for Fashion-MNIST). The x axis is training hours at the run's median
undisturbed rate (log.csv), so time the machine spent on other jobs does not count.

    python benchmarks/checkpoint_quality.py runs/fashion-mnist --images 300 --steps 10 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import torch
from _tables import command_line, write_csv
from safetensors.torch import load_file

import ddim
from ddim.compare import reference_split
from ddim.features import features_for_dataset
from ddim.metrics import frechet_distance, gaussian_stats, kernel_distance, precision_recall, reference_features


def ema_weights(checkpoint: Path) -> dict:
    """The EMA model's state dict from an accelerate checkpoint (the trainer registers it first)."""
    state = torch.load(checkpoint / "custom_checkpoint_0.pkl", map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--method", default="unipc3")
    p.add_argument("--spacing", default="logsnr")
    p.add_argument("--every", type=int, default=1000, help="only checkpoints at multiples of this step, and the latest")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()

    m = ddim.load(args.run)
    dataset = m.config["train"]["dataset"]
    net = features_for_dataset(dataset)
    split = reference_split(dataset, "auto")
    real = reference_features(dataset, net, split)
    mu_r, cov_r = gaussian_stats(real)
    with open(args.run / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    sec_per_step = 1 / statistics.median(float(r["steps_per_s"]) for r in log)
    x_T = torch.stack([torch.randn(m.sample_shape, generator=torch.Generator().manual_seed(i)) for i in range(args.images)])
    rows = []
    latest = (args.run / "checkpoints" / "latest").read_text().strip()
    for ckpt in sorted((args.run / "checkpoints").glob("step-*")):
        if ckpt.name.endswith(".tmp") or not (ckpt / "step.json").is_file():
            continue
        step = json.loads((ckpt / "step.json").read_text())["step"]
        if step % args.every and ckpt.name != latest:
            continue
        row = dict(step=step, hours=round(step * sec_per_step / 3600, 3))
        for tag, weights in (("", ema_weights(ckpt)), ("raw_", load_file(ckpt / "model.safetensors"))):
            m.model.net.load_state_dict(weights)
            with torch.inference_mode():
                x = ddim.sample(m.model, m.schedule, x_T, steps=args.steps, method=args.method, spacing=args.spacing, prediction=m.prediction)
            feats = net.embed(x)
            prec, rec = precision_recall(real, feats)
            row |= {f"{tag}fd": frechet_distance(*gaussian_stats(feats), mu_r, cov_r), f"{tag}kid": kernel_distance(feats, real)[0],
                    f"{tag}precision": prec, f"{tag}recall": rec}
        rows.append(row)
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-checkpoint-quality"
    write_csv(rows, args.out / f"{name}.csv")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["hours"] for r in rows], [r["fd"] for r in rows], marker="o", label="EMA weights (what the trainer saves)")
    ax.plot([r["hours"] for r in rows], [r["raw_fd"] for r in rows], marker="s", ls="--", label="raw weights (the optimizer's)")
    ax.legend()
    for r in rows:
        ax.annotate(f"{r['step']}", (r["hours"], r["fd"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=f"training hours on 2 CPU cores (at {sec_per_step:.2f} s/step; labels = step)", ylabel=f"FD-{net.name} ({split} split)",
           yscale="log", title=f"{dataset}: sample quality vs training time")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(args.out / f"{name}.png", dpi=120)
    lines = [command_line("checkpoint_quality.py"), "",
             f"EMA weights of each checkpoint; {args.images} samples ({args.method}, {args.steps} steps, {args.spacing}), seeds 0..{args.images - 1}; "
             f"FD-{net.name} etc. against the {split} split ({len(real)} images). Hours = step x {sec_per_step:.3f} s (the run's median rate).", "",
             "| step | hours | FD (EMA) | KID x 10^3 (EMA) | precision (EMA) | recall (EMA) | FD (raw) | KID x 10^3 (raw) | precision (raw) | recall (raw) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['hours']:.2f} | " + " | ".join(f"{r[t + 'fd']:.3f} | {r[t + 'kid'] * 1e3:.2f} | {r[t + 'precision']:.3f} | {r[t + 'recall']:.3f}"
                                                             for t in ("", "raw_")) + " |" for r in rows]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
