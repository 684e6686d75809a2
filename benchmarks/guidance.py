"""Classifier-free guidance on the shipped conditional digits model: class accuracy vs quality.

For each guidance scale w, N images (N / 10 per class, the same noise for every w) are sampled
and scored with the shipped digits classifier: the share classified as the requested class,
FD-digits / KID against the training split, and precision / recall.

    python benchmarks/guidance.py --out docs/benchmarks

writes guidance.md, guidance.csv and guidance.png (one row of samples per scale).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _tables import command_line, write_csv

import ddim
from ddim.features import load_features
from ddim.guidance import Guided
from ddim.images import save_grid
from ddim.metrics import frechet_distance, gaussian_stats, kernel_distance, precision_recall, reference_features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="digits-cond")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0, 3.0, 5.0])
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--method", default="unipc")
    p.add_argument("--spacing", default="logsnr")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()

    m = ddim.load(args.model)
    net = load_features("digits")
    real = reference_features("digits", net, "train")
    mu_r, cov_r = gaussian_stats(real)
    labels = torch.arange(args.images) % m.num_classes
    x_T = torch.stack([torch.randn(m.sample_shape, generator=torch.Generator().manual_seed(i)) for i in range(args.images)])
    rows, strips = [], []
    for w in args.scales:
        start = time.perf_counter()
        with torch.inference_mode():
            x0 = ddim.sample(Guided(m.model, labels, w, m.null_class), m.schedule, x_T, steps=args.steps, method=args.method, spacing=args.spacing)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            from ddim.images import quantize

            predicted = net(quantize(x0)).argmax(1)
        feats = net.embed(x0)
        prec, rec = precision_recall(real, feats)
        row = {"scale": w, "class_accuracy": float((predicted == labels).float().mean()), "fd": frechet_distance(*gaussian_stats(feats), mu_r, cov_r),
               "kid": kernel_distance(feats, real)[0], "precision": prec, "recall": rec, "seconds": seconds}
        rows.append(row)
        strips.append(x0[:20])
        print(" ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "guidance.csv")
    save_grid(torch.cat(strips), args.out / "guidance.png", nrow=20)
    lines = [
        command_line("guidance.py"),
        "",
        f"Model `{args.model}` ({m.num_classes} classes + the null class), {args.images} images per scale "
        f"({args.images // m.num_classes} per class, the same noise for every scale), {args.method} with {args.steps} steps on the {args.spacing} grid. "
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; {time.strftime('%Y-%m-%d')}.",
        "Class accuracy: the share of images that the shipped digits classifier (98.9% on held-out real digits) assigns to the requested class.",
        "",
        "| guidance scale | class accuracy | FD-digits | KID-digits x 10^3 | precision | recall | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['scale']:g} | {r['class_accuracy']:.3f} | {r['fd']:.3f} | {r['kid'] * 1e3:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['seconds']:.1f} |" for r in rows]
    lines += ["", "![samples per scale](guidance.png)", "", f"Rows: scales {', '.join(f'{w:g}' for w in args.scales)} from the top; columns: classes 0-9 twice."]
    (args.out / "guidance.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
