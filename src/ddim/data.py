"""Datasets, loaded whole into memory as float32 tensors in [-1, 1] (2-D toy sets: unit scale).

``load_dataset(spec)`` understands:

- ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits (ships with scikit-learn; the default);
- ``"fashion-mnist"``: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (/usr/share/datasets);
- a folder of MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` and labels), or ``idx:PATH``;
- a folder of PNG/JPEG images (searched recursively), or ``images:PATH``;
- ``"moons"``, ``"swissroll"``, ``"8gaussians"``: 2-D toy sets.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["Dataset", "load_dataset", "read_idx", "open_image", "images_for_model", "DATASETS", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TOY_SETS = ("moons", "swissroll", "8gaussians")
DATASETS = ("digits", "fashion-mnist", *TOY_SETS)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels (1-D) and images (3-D) of unsigned bytes


@dataclass
class Dataset:
    """In-memory data: ``data`` [N, C, H, W] (images, in [-1, 1]) or [N, D]; optional labels [N]."""

    data: Tensor
    labels: Tensor | None
    name: str
    num_classes: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.data.dim() == 4


def load_dataset(
    spec: str = "digits",
    *,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    num_points: int = 8000,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name or path (see the module docstring); raise ValueError with a fix on bad input."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if spec == "digits":
        return _digits(split)
    if spec == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise FileNotFoundError(
                f"Fashion-MNIST not found at {FASHION_MNIST_DIR}; install it with "
                "'apt-get install dataset-fashion-mnist' or pass the folder with its IDX files"
            )
        return _idx_folder(FASHION_MNIST_DIR, split, "fashion-mnist")
    if spec in TOY_SETS:
        return _toy(spec, num_points, seed)
    kind, _, rest = spec.partition(":")
    if kind in ("idx", "images") and rest:
        path = Path(rest).expanduser()
    else:
        kind, path = "auto", Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no dataset {spec!r}: not a known name ({', '.join(DATASETS)}) and no such folder")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; give the folder that holds the images or IDX files")
    if kind == "idx" or (kind == "auto" and _idx_files(path, "images")):
        return _idx_folder(path, split, path.name)
    return _image_folder(path, image_size, channels)


# --------------------------------------------------------------------------- digits
def _digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0 * 2 - 1).unsqueeze(1)  # 0..16 -> [-1, 1]
    y = torch.from_numpy(bunch.target.astype(np.int64))
    # a fixed, stratified-enough split: every 10th image is held out
    held = torch.arange(len(x)) % 10 == 9
    keep = held if split == "test" else ~held
    return Dataset(x[keep], y[keep], f"digits-{split}", num_classes=10)


# --------------------------------------------------------------------------- IDX (MNIST format)
def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (.gz or plain): MNIST images [N, H, W] or labels [N]."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4:
        raise ValueError(f"{path} is too short to be an IDX file")
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    if ndim not in IDX_MAGIC or magic != IDX_MAGIC[ndim]:
        raise ValueError(
            f"{path} is not an MNIST-format IDX file of bytes: magic number 0x{magic:08x}, "
            f"expected 0x{IDX_MAGIC[3]:08x} (images) or 0x{IDX_MAGIC[1]:08x} (labels)"
        )
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise ValueError(f"{path} is truncated: header says {shape}, found {body.size} bytes of data")
    return body.reshape(shape)


def _idx_files(folder: Path, what: str) -> list[Path]:
    tag = "idx3-ubyte" if what == "images" else "idx1-ubyte"
    return sorted(p for p in folder.iterdir() if tag in p.name)


def _idx_folder(folder: Path, split: str, name: str) -> Dataset:
    prefixes = ("train",) if split == "train" else ("t10k", "test")
    images = [p for p in _idx_files(folder, "images") if p.name.startswith(prefixes)]
    if not images:
        raise ValueError(f"no {split} images in {folder}: expected a file named like {prefixes[0]}-images-idx3-ubyte[.gz]")
    x = read_idx(images[0])
    if x.ndim != 3:
        raise ValueError(f"{images[0]} holds labels, not images")
    labels = [p for p in _idx_files(folder, "labels") if p.name.startswith(prefixes)]
    y = None
    if labels:
        y = read_idx(labels[0])
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{labels[0]} has {len(y)} labels for {len(x)} images in {images[0]}")
        y = torch.from_numpy(y.astype(np.int64))
    data = torch.from_numpy(x.astype(np.float32) / 255.0 * 2 - 1).unsqueeze(1)
    return Dataset(data, y, f"{name}-{split}", num_classes=int(y.max()) + 1 if y is not None else None)


# --------------------------------------------------------------------------- image folders
def open_image(path: str | Path):
    """Open an image file fully (PIL), with a one-line error for a missing or unreadable file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"no image file {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def images_for_model(paths: list[str | Path], shape: tuple[int, ...]) -> Tensor:
    """Image files as a [N, C, H, W] tensor in [-1, 1] for a model of sample shape (C, H, W); no silent resizing."""
    c, h, w = shape
    out = []
    for path in paths:
        im = open_image(path)
        gray = im.mode in ("L", "1", "I;16", "I", "LA")
        if (c == 1) != gray or (c == 3 and im.mode not in ("RGB", "RGBA", "P")):
            raise ValueError(f"{path} is {'grayscale' if gray else im.mode}, but the model expects {'grayscale (1 channel)' if c == 1 else 'RGB (3 channels)'} images")
        if im.size != (w, h):
            raise ValueError(f"{path} is {im.size[0]}x{im.size[1]}, but the model expects {w}x{h} images")
        pix = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0 * 2 - 1
        out.append(torch.from_numpy(pix)[None] if c == 1 else torch.from_numpy(pix).permute(2, 0, 1))
    return torch.stack(out)


def _image_folder(folder: Path, image_size: int | None, channels: int | None) -> Dataset:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, recursively)")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    images = [open_image(path) for path in files]
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I;16", "I") for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    if image_size is None:
        sizes = {im.size for im in images}
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise ValueError(
                f"images in {folder} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); "
                "pass an image size (--image-size N) to resize and center-crop them"
            )
    arrays = [np.asarray(_fit(im.convert(mode), image_size), dtype=np.float32) for im in images]
    x = torch.from_numpy(np.stack(arrays)) / 255.0 * 2 - 1
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)
    return Dataset(x.contiguous(), None, folder.name)


def _fit(im, size: int | None):
    """Resize the shorter side to ``size`` and center-crop to size x size (no-op without a size)."""
    if size is None:
        return im
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


# --------------------------------------------------------------------------- 2-D toys
def _toy(name: str, n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(n, noise=0.05, random_state=seed)
        x = (x - [0.5, 0.25]) / [0.87, 0.5]
    elif name == "swissroll":
        from sklearn.datasets import make_swiss_roll

        x, _ = make_swiss_roll(n, noise=0.3, random_state=seed)
        x, y = x[:, [0, 2]] / 7.0, None
    else:  # 8 Gaussians on a circle of radius 2, std 0.1 (scaled to unit-ish spread)
        k = rng.integers(0, 8, n)
        centers = np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1) * 2
        x, y = (centers + 0.1 * rng.standard_normal((n, 2))) / 1.414, k
    labels = None if y is None else torch.from_numpy(np.asarray(y, np.int64))
    classes = None if y is None else int(labels.max()) + 1
    return Dataset(torch.from_numpy(x.astype(np.float32)), labels, name, classes)
