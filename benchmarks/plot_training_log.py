"""Plot a run's log.csv (loss vs step) as PNG.

    python benchmarks/plot_training_log.py runs/digits/log.csv docs/digits-training-curve.png
    python benchmarks/plot_training_log.py runs/fashion-mnist/log.csv docs/fashion-mnist-training-curve.png "Fashion-MNIST DDPM"
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(log: str, png: str, name: str = "digits DDPM") -> None:
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss)
    ax.set(yscale="log", xlabel="optimizer step", ylabel="training loss (MSE on eps)", title=f"{name}: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main(*sys.argv[1:4])
