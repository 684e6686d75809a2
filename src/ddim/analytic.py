"""Exact-score models: denoisers known in closed form, for tests and sampler benchmarks.

Both are callables ``model(x_t, t)`` like a trained network, but with no training error, so a
sampler's error is the sampler's alone.

- ``GaussianMixture``: data sum_k w_k N(mu_k, Sigma_k). Under the forward process component k
  becomes N(a mu_k, a^2 Sigma_k + s^2 I) (a = sqrt(ab_t), s = sqrt(1 - ab_t)), so the exact
  posterior mean E[x0 | x_t] (Tweedie) and eps = (x_t - a E[x0 | x_t]) / s are closed-form.
- ``EmpiricalDenoiser``: the optimal denoiser of a finite data set (a mixture of point masses):
  E[x0 | x_t] = sum_i softmax_i(-|x_t - a x_i|^2 / (2 s^2)) x_i. DDIM with it reproduces data points.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from .prediction import check_prediction, eps_x0_to
from .schedule import NoiseSchedule

__all__ = ["GaussianMixture", "EmpiricalDenoiser", "ExactDenoiser"]


class ExactDenoiser:
    """Base: ``model(x_t, t)`` returning eps, x0 or v from a closed-form ``posterior(x, a, s)``."""

    def __init__(self, schedule: NoiseSchedule, prediction: str = "eps") -> None:
        self.schedule = schedule
        self.prediction = check_prediction(prediction)

    def posterior(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(eps, E[x0 | x_t]) for flat float64 x [B, D] at levels a, s of shape [B, 1]."""
        raise NotImplementedError

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x_t.device).long().expand(x_t.shape[0])
        if (t == t[0]).all():  # the usual case: one level for the whole batch, broadcast it
            t = t[:1]
        ab = self.schedule.alphas_cumprod.to(x_t.device)[t].unsqueeze(1)
        flat = x_t.reshape(x_t.shape[0], -1).double()
        eps, x0 = self.posterior(flat, ab.sqrt(), (1 - ab).sqrt())
        out = eps_x0_to(eps, x0, ab, self.prediction)
        return out.reshape(x_t.shape).to(x_t.dtype)


class GaussianMixture:
    """A Gaussian mixture in D dimensions: exact samples, moments, and the exact denoiser at any t."""

    def __init__(self, means: Tensor, covariances: Tensor, weights: Tensor | None = None) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2:
            raise ValueError(f"means must be [K, D], got shape {tuple(means.shape)}")
        K, D = means.shape
        cov = torch.as_tensor(covariances, dtype=torch.float64)
        if cov.shape == (K, D):  # diagonal
            cov = torch.diag_embed(cov)
        if cov.shape != (K, D, D):
            raise ValueError(f"covariances must be [K, D, D] or [K, D] (diagonal), got {tuple(cov.shape)}")
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (K,) or (w < 0).any() or abs(w.sum().item() - 1) > 1e-9:
            raise ValueError("weights must be K non-negative numbers that sum to 1")
        self.means, self.covariances, self.weights = means, (cov + cov.transpose(1, 2)) / 2, w
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.covariances)
        if (self.eigenvalues < 0).any():
            raise ValueError("every covariance must be positive semi-definite")
        self.eigenvalues = self.eigenvalues.clamp(min=0)

    @classmethod
    def random(cls, dim: int, modes: int, seed: int = 0, spread: float = 0.5, scale: tuple[float, float] = (0.05, 0.3)) -> GaussianMixture:
        """A reproducible anisotropic mixture: means ~ N(0, spread^2 I), component stds in ``scale``, Dirichlet weights."""
        g = torch.Generator().manual_seed(seed)
        means = spread * torch.randn(modes, dim, generator=g, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(modes, dim, dim, generator=g, dtype=torch.float64))
        lo, hi = scale
        stds = lo * (hi / lo) ** torch.rand(modes, dim, generator=g, dtype=torch.float64)
        cov = q @ torch.diag_embed(stds**2) @ q.transpose(1, 2)
        # Dirichlet(2) weights from g: normalised Gamma(2) draws, each a sum of two Exp(1)
        gam = -torch.log(torch.rand(modes, generator=g, dtype=torch.float64)) - torch.log(torch.rand(modes, generator=g, dtype=torch.float64))
        weights = gam / gam.sum()
        return cls(means, cov, weights)

    def to(self, device: torch.device | str) -> GaussianMixture:
        """A copy whose tensors live on ``device``."""
        out = copy.copy(self)
        for name in ("means", "covariances", "weights", "eigenvalues", "eigenvectors"):
            setattr(out, name, getattr(self, name).to(device))
        return out

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> Tensor:
        """E[x0] = sum_k w_k mu_k."""
        return self.weights @ self.means

    @property
    def covariance(self) -> Tensor:
        """Cov[x0] = sum_k w_k (Sigma_k + mu_k mu_k^T) - mean mean^T."""
        second = torch.einsum("k,kij->ij", self.weights, self.covariances + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(self.mean, self.mean)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws, float64 [n, D]."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        root = self.eigenvectors * self.eigenvalues.sqrt()[:, None, :]
        return self.means[k] + torch.einsum("nij,nj->ni", root[k], z)

    def _components(self, x: Tensor, a: Tensor, s: Tensor):
        """Per-component whitened residuals y_k = U_k^T (x - a mu_k), variances c_k, log responsibilities."""
        c = a[:, :, None] ** 2 * self.eigenvalues[None] + s[:, :, None] ** 2  # [B, K, D]
        y = torch.einsum("bkd,kde->bke", x[:, None, :] - a[:, :, None] * self.means[None], self.eigenvectors)
        logp = torch.log(self.weights)[None] - 0.5 * ((y**2 / c).sum(-1) + torch.log(c).sum(-1))
        return y, c, torch.softmax(logp, dim=1)

    def assign(self, x: Tensor) -> Tensor:
        """The most likely component of each (clean) sample, [N] long."""
        x = x.reshape(x.shape[0], -1).double()
        one = x.new_ones(x.shape[0], 1)
        _, _, r = self._components(x, one, 0 * one + 1e-12)
        return r.argmax(1)

    def mode_weight_error(self, x: Tensor) -> float:
        """Total-variation distance between the fraction of samples per mode and the true weights."""
        counts = torch.bincount(self.assign(x), minlength=len(self.weights)).double()
        return 0.5 * (counts / counts.sum() - self.weights).abs().sum().item()

    def denoiser(self, schedule: NoiseSchedule, prediction: str = "eps") -> ExactDenoiser:
        """The exact ``model(x_t, t)`` for this mixture under ``schedule``."""
        return _MixtureDenoiser(self, schedule, prediction)


class _MixtureDenoiser(ExactDenoiser):
    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, prediction: str) -> None:
        super().__init__(schedule, prediction)
        self.mixture = mixture

    def posterior(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] != self.mixture.dim:
            raise ValueError(f"this mixture lives in {self.mixture.dim} dimensions, the input has {x.shape[1]}")
        if self.mixture.means.device != x.device:
            self.mixture = self.mixture.to(x.device)
        m = self.mixture
        y, c, r = m._components(x, a, s)
        # eps = -s * score = s sum_k r_k U_k diag(1 / c_k) y_k
        eps = s * torch.einsum("kde,bke->bd", m.eigenvectors, r[:, :, None] * y / c)
        # E[x0 | x_t] = (x - s eps) / a; at a = 0 (zero terminal SNR) the data mean sum_k r_k mu_k
        x0 = torch.where(a > 0, (x - s * eps) / a.clamp(min=1e-300), r @ m.means)
        return eps, x0


class EmpiricalDenoiser(ExactDenoiser):
    """The optimal denoiser of the empirical distribution of ``data`` [N, ...] under ``schedule``."""

    def __init__(self, data: Tensor, schedule: NoiseSchedule, prediction: str = "eps") -> None:
        super().__init__(schedule, prediction)
        self.data = torch.as_tensor(data).reshape(len(data), -1).double()
        if len(self.data) < 1:
            raise ValueError("the empirical denoiser needs at least one data point")

    def posterior(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        data = self.data.to(x.device)
        if x.shape[1] != data.shape[1]:
            raise ValueError(f"data points have {data.shape[1]} values, the input has {x.shape[1]}")
        d2 = (x**2).sum(1, keepdim=True) - 2 * a * (x @ data.T) + a**2 * (data**2).sum(1)[None]
        w = torch.softmax(-d2 / (2 * s**2), dim=1)
        x0 = w @ data
        return (x - a * x0) / s, x0
