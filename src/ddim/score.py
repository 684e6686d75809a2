"""``ddim score``: FD, KID, precision and recall of a set of samples against a data set's reference.

The same feature network, reference features (cached) and metrics as ``ddim compare``
(``metrics.sample_metrics``), so a folder drawn with ``ddim sample`` (or sharded over processes)
scores to the numbers compare reports for the same images.

Samples are read from: a ``samples.npz`` of ``ddim sample`` (float, [-1, 1]); a cell ``.npz`` of
``ddim compare`` (8-bit ``images``); an output folder holding ``samples.npz``; or a folder of PNG images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .images import from_pixels

__all__ = ["read_samples", "score"]


def read_samples(path: str | Path) -> Tensor:
    """Images [N, C, H, W] in [-1, 1] from a samples.npz / compare cell .npz, a ``ddim sample`` folder, or a folder of PNGs."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "samples.npz").is_file():
        path = path / "samples.npz"
    if not path.exists():
        raise FileNotFoundError(f"no samples at {path}: give a samples.npz, a ddim sample output folder, or a folder of PNG images")
    if path.is_file():
        try:
            data = np.load(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {path} as .npz ({err})") from None
        if "samples" in data:
            return torch.from_numpy(np.asarray(data["samples"], dtype=np.float32))
        if "images" in data:
            return from_pixels(data["images"])
        raise ValueError(f"{path} has neither 'samples' (ddim sample) nor 'images' (ddim compare cells); it holds {', '.join(data.files)}")
    from .data import load_dataset

    return load_dataset(str(path)).data


def score(samples: Tensor | np.ndarray | str | Path, dataset: str, *, features: str | Path | None = None, reference_split: str = "auto",
          cache_dir: str | Path | None = None) -> dict:
    """FD / KID / precision / recall of ``samples`` (images in [-1, 1], or a path for ``read_samples``) against ``dataset``.

    ``features``: a feature network folder or shipped name (default: the one shipped for ``dataset``);
    ``reference_split``: "train", "test" or "auto" (the test split where it is large enough, as ``ddim compare``).
    """
    from .compare import reference_split as pick_split
    from .features import features_for_dataset, load_features
    from .metrics import reference_features, sample_metrics

    images = read_samples(samples) if isinstance(samples, (str, Path)) else torch.as_tensor(samples)
    if images.dim() != 4 or len(images) < 4:
        raise ValueError(f"need at least 4 images shaped [N, C, H, W] to score, got shape {tuple(images.shape)}")
    net = load_features(features) if features else features_for_dataset(dataset)
    if tuple(images.shape[1:]) != tuple(net.image_shape):
        raise ValueError(f"feature network {net.name!r} takes images {tuple(net.image_shape)}, the samples are {tuple(images.shape[1:])}")
    split = pick_split(dataset, reference_split)
    real = reference_features(dataset, net, split, cache_dir)
    return dict(dataset=dataset, split=split, features=net.name, num_images=len(images), **sample_metrics(net.embed(images), real))
