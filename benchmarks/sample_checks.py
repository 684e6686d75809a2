"""Two checks of a sample set that FD does not make: class shares and copies of the training set.

For each .npz of images (a ``ddim compare`` cell, or ``ddim sample``'s samples.npz) and for the same
number of real test images:

- class shares: the dataset's shipped classifier labels every image; the table gives each class's
  share, the largest deviation from the test split's true label shares, and the mean top-class probability
  (how confidently the classifier recognises the images);
- copies: pixel distance from each image to its nearest training image, median and the share
  closer than the closest 1% of real test images are to the training set.

    python benchmarks/sample_checks.py docs/ddim-vs-ddpm-fashion-mnist/cells/eta0-S50-seed0.npz --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _tables import command_line

from ddim.data import load_dataset
from ddim.features import features_for_dataset
from ddim.images import from_pixels

CLASSES = {"fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]}


def read_images(path: Path) -> torch.Tensor:
    with np.load(path) as f:
        if "images" in f:  # compare cell: 8-bit
            return from_pixels(f["images"])
        return torch.from_numpy(f["samples"]).float().clamp(-1, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--out", type=Path, default=None, help="write the table to this markdown file too")
    args = p.parse_args()
    net = features_for_dataset(args.dataset)
    train = load_dataset(args.dataset, split="train").data.flatten(1)
    test_set = load_dataset(args.dataset, split="test")
    test = test_set.data
    names = CLASSES.get(args.dataset) or [str(i) for i in range(net.num_classes)]

    def nearest(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cdist(x[i : i + 250].flatten(1), train).min(1).values for i in range(0, len(x), 250)])

    sets = {f.stem if f.stem != "samples" else str(f.parent.name): read_images(f) for f in args.files}
    n = max(len(x) for x in sets.values())
    real = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n]]
    real_nn = nearest(real)
    close = torch.quantile(real_nn, 0.01).item()
    rows = {}
    for name, x in {f"real test images ({len(real)})": real, **sets}.items():
        with torch.no_grad():
            probs = torch.cat([net(x[i : i + 1000]).softmax(1) for i in range(0, len(x), 1000)])
        shares = torch.bincount(probs.argmax(1), minlength=net.num_classes).double() / len(x)
        d = real_nn if name.startswith("real") else nearest(x)
        rows[name] = (shares, probs.max(1).values.mean().item(), d.median().item(), (d < close).double().mean().item())
    ref = torch.bincount(test_set.labels, minlength=net.num_classes).double() / len(test_set)  # the test split's true shares
    lines = [command_line("sample_checks.py"), "",
             f"Classifier: the shipped `{net.name}` feature network's head ({net.info.get('test_accuracy', float('nan')):.1%} on the test split). "
             f"'close' = nearer to a training image than {close:.2f}, the distance the closest 1% of real test images have.", "",
             "| images | " + " | ".join(names) + " | max deviation from the test split's true shares | mean confidence | median NN distance | close |",
             "|---|" + "---:|" * (len(names) + 4)]
    for name, (shares, conf, med, frac) in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{s:.1%}" for s in shares.tolist())
                     + f" | {(shares - ref).abs().max().item():.1%} | {conf:.3f} | {med:.2f} | {frac:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
