"""Distances between sample sets and distributions."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["gaussian_stats", "frechet_distance"]


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
