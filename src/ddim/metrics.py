"""Distances between sample sets and distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["gaussian_stats", "frechet_distance", "kernel_distance", "precision_recall", "reference_features"]


def gaussian_stats(x: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of samples [N, ...] flattened to [N, D], float64 numpy."""
    x = torch.as_tensor(x).reshape(len(x), -1).double().cpu().numpy()
    if len(x) < 2:
        raise ValueError("need at least two samples to estimate a covariance")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), the 2-Wasserstein distance^2 of two Gaussians.

    The matrix square root is taken through symmetric eigendecompositions (no complex parts).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: means {mu1.shape} vs {mu2.shape}, covariances {cov1.shape} vs {cov2.shape}")
    w, v = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ cov2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def kernel_distance(x: np.ndarray, y: np.ndarray, subset_size: int | None = None, subsets: int = 20, seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased estimate of MMD^2 with the cubic kernel k(a, b) = (a.b / D + 1)^3.

    Off-diagonal means within each set, the full mean across them, so its expectation is exactly
    0 when x and y come from one distribution (any sizes). With ``subset_size`` smaller than
    either set, the estimate is averaged over ``subsets`` random subsets of that size (the usual
    KID protocol); the second number is the standard deviation across subsets (0 when the whole
    sets are used once).
    """
    x, y = np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    if min(len(x), len(y)) < 2:
        raise ValueError("KID needs at least two samples in each set")
    d = x.shape[1]

    def mmd(a: np.ndarray, b: np.ndarray) -> float:
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        m, n = len(a), len(b)
        return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1)) - 2 * kab.mean())

    if subset_size is None or subset_size >= min(len(x), len(y)):
        return mmd(x, y), 0.0
    if subset_size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    vals = [mmd(x[rng.choice(len(x), subset_size, replace=False)], y[rng.choice(len(y), subset_size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` against ``real``.

    Each set's manifold is the union of balls around its points, each reaching the point's k-th
    nearest neighbour in the same set. Precision: the share of fake points inside the real
    manifold (are samples realistic?). Recall: the share of real points inside the fake manifold
    (is the data covered?).
    """
    real = torch.as_tensor(np.asarray(real, np.float64)).reshape(len(real), -1)
    fake = torch.as_tensor(np.asarray(fake, np.float64)).reshape(len(fake), -1)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set, got {len(real)} real and {len(fake)} fake")

    def radii(a: Tensor) -> Tensor:  # distance to the k-th neighbour, self excluded (self is the 0-th)
        return torch.cat([torch.cdist(a[i : i + 1024], a).kthvalue(k + 1, dim=1).values for i in range(0, len(a), 1024)])

    def covered(points: Tensor, centres: Tensor, r: Tensor) -> float:
        inside = [(torch.cdist(points[i : i + 1024], centres) <= r[None]).any(1) for i in range(0, len(points), 1024)]
        return float(torch.cat(inside).double().mean())

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def reference_features(dataset: str, net, split: str = "train", cache_dir: str | Path | None = None) -> np.ndarray:
    """Features of a real dataset split under a feature network, cached on disk.

    The cache file is keyed by dataset, split and the network's weight fingerprint:
    ``{cache_dir}/{dataset}-{split}-{net.name}-{fingerprint}.npz`` with ``cache_dir`` defaulting
    to $DDIM_CACHE or ~/.cache/ddim. It holds the features and their mean and covariance.
    """
    from .data import load_dataset
    from .files import cache_dir as user_cache

    folder = Path(cache_dir).expanduser() / "reference" if cache_dir else user_cache("reference")
    tag = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset}-{split}-{net.name}-{net.fingerprint or 'unsaved'}")
    path = folder / f"{tag}.npz"
    if path.is_file() and net.fingerprint:
        with np.load(path) as f:
            return f["features"]
    feats = net.embed(load_dataset(dataset, split=split).data)
    if net.fingerprint:
        mu, cov = gaussian_stats(feats)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, features=feats, mu=mu, cov=cov)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs recomputation
    return feats


def sample_metrics(feats: np.ndarray, real: np.ndarray, real_stats: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """FD, KID, precision and recall of sample features against real features (what ``ddim compare`` and ``ddim score`` report)."""
    mu_r, cov_r = real_stats if real_stats is not None else gaussian_stats(real)
    mu, cov = gaussian_stats(feats)
    prec, rec = precision_recall(real, feats)
    return dict(fd=frechet_distance(mu, cov, mu_r, cov_r), kid=kernel_distance(feats, real)[0], precision=prec, recall=rec)
