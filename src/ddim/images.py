"""Pictures: PNG grids of image batches, scatter plots of 2-D samples, strips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_pixels", "from_pixels", "quantize", "to_uint8", "make_grid", "save_grid", "save_scatter", "save_png"]


def to_pixels(images: Tensor) -> Tensor:
    """Model space [-1, 1] -> the 256 levels of an 8-bit image (uint8 tensor, same layout, on the CPU; clipped)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_pixels(pixels: Tensor | np.ndarray) -> Tensor:
    """uint8 pixels -> float32 model space [-1, 1] (same layout)."""
    return torch.as_tensor(pixels).float() / 127.5 - 1


def quantize(x: Tensor) -> Tensor:
    """Clip to [-1, 1] and round to the 256 levels of an 8-bit image, staying in model space (x's device and dtype)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def to_uint8(images: Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] for PNG files (values outside [-1, 1] are clipped)."""
    return to_pixels(images).permute(0, 2, 3, 1).numpy()


def make_grid(images: Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile [N, C, H, W] images in [-1, 1] into one uint8 array [rows*H, cols*W, C], each upscaled ``scale`` times."""
    pix = to_uint8(images)
    if scale > 1:
        pix = pix.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = pix.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = pix[i]
    return grid


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 [H, W, C] array (C = 1 or 3) as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)
    return path


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Save a PNG grid of images in [-1, 1]; small images are upscaled so the grid is readable."""
    if scale is None:
        scale = max(1, 64 // images.shape[-1])
    return save_png(make_grid(images, nrow, scale=scale), path)


def save_scatter(points: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> Path:
    """Scatter plot of 2-D samples (optionally over reference data) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4))
    if reference is not None:
        ax.scatter(*reference[:, :2].cpu().T, s=2, c="lightgray", label="data")
    ax.scatter(*points[:, :2].detach().cpu().float().T, s=2, c="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
