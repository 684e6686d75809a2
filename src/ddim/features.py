"""Feature networks for sample-quality metrics: a small classifier trained on the dataset itself.

Inception-v3 features (FID) describe 299x299 photographs; on 8x8 digits they measure resizing
artefacts. So for a dataset like digits we train a small CNN classifier on its training split
and use its penultimate layer (``FeatureNet.features``) as the embedding. Metrics computed on it
are named after it ("FD-digits", "KID-digits"), never "FID".

A feature-network folder holds ``config.json`` (architecture, dataset, held-out accuracy, the
command that made it) and ``model.safetensors``. The digits one ships with the package::

    net = ddim.features.load_features("digits")     # or a folder path
    f = net.embed(images)                            # [N, feature_dim] float64 numpy

Inception-v3 (``inception_features``) is available when the optional ``pytorch-fid`` package and
its weights are already on the machine; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .images import quantize

__all__ = ["FeatureNet", "SHIPPED_FEATURES", "load_features", "features_for_dataset", "train_classifier", "save_features", "inception_features"]

SHIPPED_FEATURES = {"digits": "digits-classifier", "fashion-mnist": "fashion-mnist-classifier"}  # dataset -> folder under ddim/pretrained
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


class FeatureNet(nn.Module):
    """A small CNN classifier; ``features`` is the input of its last linear layer.

    Two 3x3 convolutions at full resolution, a strided one, another at half resolution, an
    adaptive average pool to 4x4, then a linear embedding of ``feature_dim`` and the class head.
    Works for any [C, H, W] with H, W >= 4.
    """

    def __init__(self, image_shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 10, width: int = 32, feature_dim: int = 64, name: str = "digits"):
        super().__init__()
        c = image_shape[0]
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes, self.width, self.feature_dim, self.name = num_classes, width, feature_dim, name
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(feature_dim, num_classes))
        # features are multiplied by this, set after training so the real training features have
        # unit variance per dimension on average (FD in units of the data's own spread)
        self.register_buffer("feature_scale", torch.ones(()))
        self.fingerprint = ""  # sha256 prefix of the weights file it was loaded from

    @property
    def config(self) -> dict:
        return dict(image_shape=list(self.image_shape), num_classes=self.num_classes, width=self.width, feature_dim=self.feature_dim, name=self.name)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x) * self.feature_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def embed(self, images: Tensor | np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Features [N, feature_dim] (float64) of images in [-1, 1], clipped and rounded to 8 bits
        first, i.e. of the images a user would save as PNG."""
        x = torch.as_tensor(images)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"feature network {self.name!r} takes images {self.image_shape}, got {tuple(x.shape[1:])}")
        x = quantize(x.float())
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = torch.cat([self.features(x[i : i + batch_size].to(dev)).double().cpu() for i in range(0, len(x), batch_size)])
        self.train(was)
        return out.numpy()


# --------------------------------------------------------------------------- folders
def _shipped(name: str) -> Path:
    return Path(str(resources.files("ddim") / "pretrained" / SHIPPED_FEATURES[name]))


def features_for_dataset(dataset: str) -> FeatureNet:
    """The shipped feature network for a dataset name, or a ValueError that says how to make one."""
    base = dataset.removesuffix("-train").removesuffix("-test")
    if base not in SHIPPED_FEATURES:
        raise ValueError(
            f"no shipped feature network for dataset {dataset!r} (shipped: {', '.join(SHIPPED_FEATURES)}); "
            f"train one with 'ddim train-classifier --dataset {base} --output FOLDER' and pass --features FOLDER"
        )
    return load_features(base)


def load_features(name_or_path: str | Path = "digits", device: str | torch.device = "cpu") -> FeatureNet:
    """Load a shipped feature network by dataset name or a folder written by ``save_features``."""
    path = _shipped(str(name_or_path)) if str(name_or_path) in SHIPPED_FEATURES else Path(name_or_path).expanduser()
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no feature network at {path}: expected config.json and model.safetensors (make one with 'ddim train-classifier')")
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    net = FeatureNet(**{k: cfg[k] for k in ("image_shape", "num_classes", "width", "feature_dim", "name")})
    net.load_state_dict(load_file(path / "model.safetensors"))
    net.fingerprint = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:12]
    net.info = cfg
    return net.eval().to(device)


def save_features(net: FeatureNet, folder: str | Path, info: dict) -> Path:
    """Write ``config.json`` (architecture + ``info``) and ``model.safetensors``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**net.config, **info}, indent=2) + "\n")
    net.fingerprint = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    return folder


# --------------------------------------------------------------------------- training
def _shift(x: Tensor, g: torch.Generator, max_shift: int) -> Tensor:
    """Random translations by up to ``max_shift`` pixels (zero-padded with the background value -1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def accuracy(net: FeatureNet, x: Tensor, y: Tensor) -> float:
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred == y).float().mean())


def train_classifier(dataset: str = "digits", *, epochs: int = 60, batch_size: int = 64, lr: float = 2e-3, max_shift: int = 1,
                     width: int = 32, feature_dim: int = 64, seed: int = 0, progress: bool = True) -> tuple[FeatureNet, dict]:
    """Train a FeatureNet on ``dataset``'s training split; report accuracy on its test split.

    Adam with a cosine-decayed learning rate, random shifts of up to ``max_shift`` pixels. The
    feature scale is then set so the training images' features have mean per-dimension variance 1.
    Returns the network (eval mode) and an info dict (accuracies, settings) for ``save_features``.
    """
    from .data import load_dataset

    train, test = load_dataset(dataset, split="train"), load_dataset(dataset, split="test")
    if not train.is_image or train.labels is None or not train.num_classes:
        raise ValueError(f"dataset {dataset!r} needs images with class labels to train a classifier on")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    base = dataset.split("/")[-1].removesuffix("-train")
    net = FeatureNet(tuple(train.sample_shape), train.num_classes, width, feature_dim, name=base)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    bar = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"classifier {base}", unit="epoch", dynamic_ncols=True)
    for _ in bar:
        net.train()
        order = torch.randperm(len(train), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(net(_shift(train.data[idx], g, max_shift)), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    net.eval()
    with torch.no_grad():
        feats = torch.cat([net.body(train.data[i : i + 1000]) for i in range(0, len(train), 1000)])  # batched: 60k images at once need GBs
        net.feature_scale.fill_(1 / feats.var(0).mean().sqrt())
    info = dict(
        dataset=dataset, train_images=len(train), test_images=len(test),
        train_accuracy=accuracy(net, train.data, train.labels), test_accuracy=accuracy(net, test.data, test.labels),
        epochs=epochs, batch_size=batch_size, lr=lr, max_shift=max_shift, seed=seed,
    )
    return net.eval(), info


# --------------------------------------------------------------------------- Inception (optional)
def inception_features(images: Tensor, batch_size: int = 100, device: str | torch.device = "cpu") -> np.ndarray:
    """2048-D Inception-v3 pool features (the FID network of pytorch-fid) of images in [-1, 1].

    Needs ``pip install 'ddim[fid]'`` and the weights file already in torch's hub cache (this
    never downloads); raises a ValueError that says which is missing.
    """
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        raise ValueError("Inception FID needs the optional package pytorch-fid: pip install 'ddim[fid]'") from None
    weights = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"Inception FID needs the weights file {weights}; it is not on this machine (copy it there, or run pytorch-fid once with internet)")
    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval().to(device)
    x = quantize(torch.as_tensor(images).float())
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(net((x[i : i + batch_size].to(device) + 1) / 2)[0].flatten(1).double().cpu())
    return torch.cat(out).numpy()
