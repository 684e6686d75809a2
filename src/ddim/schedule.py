"""Noise schedules: betas -> alpha-bar, the forward process q(x_t | x_0), SNR and lambda.

Notation follows DESIGN.md section 2: ``betas[t]`` is the forward noise added at step t
(t = 0..T-1) and ``alphas_cumprod[t] = prod_{s<=t} (1 - betas[s])`` is alpha-bar_t, kept in
float64. The forward marginal is DDPM eq. 4 / DDIM eq. 4:

    x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,   eps ~ N(0, I).

lambda (this module is its only home) is DPM-Solver's time variable, *half* the log-SNR:

    lambda = log(alpha / sigma) = log(sqrt(ab) / sqrt(1 - ab)) = log_snr / 2,   +inf at ab = 1.

Grids that are even in lambda (timesteps.py) and the exponential-integrator solvers (solvers.py)
both use it through ``lambda_of``; ``NoiseSchedule.log_snr`` is the full log(ab / (1 - ab)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .config import SCHEDULE_KINDS

__all__ = ["NoiseSchedule", "SCHEDULE_KINDS", "lambda_of"]



def lambda_of(ab):
    """lambda = log(alpha / sigma) = log-SNR / 2 for alpha-bar ``ab`` (a float, numpy array or tensor; float64).

    A float gives a float, +inf at ab = 1 (the clean end after the last visited step)."""
    if isinstance(ab, Tensor):
        ab = ab.double()
        return 0.5 * (torch.log(ab) - torch.log1p(-ab))
    if isinstance(ab, np.ndarray):
        ab = ab.astype(np.float64)
        with np.errstate(divide="ignore"):
            return 0.5 * (np.log(ab) - np.log1p(-ab))
    ab = float(ab)
    return math.inf if ab >= 1.0 else 0.5 * (math.log(ab) - math.log1p(-ab))


class NoiseSchedule:
    """A discrete-time variance-preserving schedule, plain data over ``betas`` (float64, [T])."""

    def __init__(self, betas: Tensor, name: str = "custom") -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().flatten().clone()
        if betas.numel() < 1:
            raise ValueError("betas is empty: a schedule needs at least one step (T >= 1)")
        if not torch.isfinite(betas).all():
            raise ValueError("betas contains NaN or inf; every beta must be a finite number in (0, 1]")
        if (betas <= 0).any() or (betas > 1).any():
            lo, hi = betas.min().item(), betas.max().item()
            raise ValueError(
                f"every beta must lie in (0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "beta = 1 is allowed only as the last step (zero terminal SNR)"
            )
        if (betas[:-1] == 1).any():
            raise ValueError("beta = 1 destroys the signal; it is allowed only at the last step")
        self.betas = betas
        self.name = name
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self._ab = self.alphas_cumprod.tolist()  # Python floats: alpha_bar(t) is called twice per sampler step
        self.config: dict = {"kind": "custom", "betas": betas.tolist()}  # how to rebuild it (see from_config)

    @classmethod
    def _made(cls, betas: Tensor, kind: str, **params) -> NoiseSchedule:
        schedule = cls(betas, name=kind)
        schedule.config = {"kind": kind, **params}
        return schedule

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        """Rebuild a schedule from its ``config`` dict (as saved in a model folder)."""
        config = dict(config)
        kind, zero_snr = config.pop("kind", None), config.pop("zero_terminal_snr", False)
        if kind == "custom":
            schedule = cls.from_betas(config["betas"])
        elif kind in SCHEDULE_KINDS:
            schedule = getattr(cls, kind)(**config)
        else:
            raise ValueError(f"unknown schedule kind {kind!r} in config; expected one of {', '.join(SCHEDULE_KINDS)} or custom")
        return schedule.rescale_zero_terminal_snr() if zero_snr else schedule

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_betas(cls, betas: Tensor | list[float], name: str = "custom") -> NoiseSchedule:
        """Any sequence of betas in (0, 1] (only the last may equal 1)."""
        return cls(torch.as_tensor(betas, dtype=torch.float64), name=name)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Tensor, name: str = "custom") -> NoiseSchedule:
        """Betas recovered from a strictly decreasing alpha-bar table (alpha_t = ab_t / ab_{t-1})."""
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        prev = torch.cat([ab.new_ones(1), ab[:-1]])
        return cls(1.0 - ab / prev, name=name)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """DDPM's linear betas (Ho et al. 2020, sec. 4: 1e-4 .. 0.02 over T = 1000)."""
        _check_T(T)
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls._made(betas, "linear", T=T, beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def scaled_linear(cls, T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> NoiseSchedule:
        """Linear in sqrt(beta) (the latent-diffusion / Stable Diffusion schedule)."""
        _check_T(T)
        root = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64)
        return cls._made(root**2, "scaled_linear", T=T, beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal 2021 eq. 17: ab(t) = f(t)/f(0), f(t) = cos^2(pi/2 (t/T + s)/(1 + s)); betas capped."""
        _check_T(T)

        def f(u: Tensor) -> Tensor:
            return torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

        u = torch.arange(T + 1, dtype=torch.float64)
        ab = f(u) / f(u[:1])
        betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
        return cls._made(betas, "cosine", T=T, s=s, max_beta=max_beta)

    @classmethod
    def sigmoid(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, width: float = 6.0) -> NoiseSchedule:
        """Betas following a sigmoid from beta_start to beta_end over [-width, width] (GeoDiff-style)."""
        _check_T(T)
        ramp = torch.sigmoid(torch.linspace(-width, width, T, dtype=torch.float64))
        betas = beta_start + (beta_end - beta_start) * ramp
        return cls._made(betas, "sigmoid", T=T, beta_start=beta_start, beta_end=beta_end, width=width)

    def rescale_zero_terminal_snr(self) -> NoiseSchedule:
        """Lin et al. 2023, Algorithm 1: shift/scale sqrt(ab) so ab_{T-1} = 0 and ab_0 is unchanged.

        The result needs v- or x0-prediction: with eps-prediction the first sampling step divides by
        sqrt(ab_{T-1}) = 0, and the samplers refuse it.
        """
        root = self.alphas_cumprod.sqrt()
        first, last = root[0].item(), root[-1].item()
        root = (root - last) * first / (first - last)
        out = NoiseSchedule.from_alphas_cumprod(root**2, name=f"{self.name}+zero_snr")
        if self.config["kind"] != "custom":
            out.config = {**self.config, "zero_terminal_snr": True}
        return out

    # ------------------------------------------------------------------ queries
    @property
    def num_train_timesteps(self) -> int:
        """T, the number of training steps."""
        return self.betas.numel()

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        ab = self.alphas_cumprod
        return f"NoiseSchedule({self.name!r}, T={len(self)}, ab_0={ab[0].item():.6g}, ab_T-1={ab[-1].item():.3g})"

    def alpha_bar(self, t: int) -> float:
        """alpha-bar at a training step t in -1..T-1, as a Python float; ab(-1) = 1 (no noise)."""
        t = int(t)
        if not -1 <= t < len(self._ab):
            raise ValueError(f"timestep {t} is outside -1..{len(self) - 1}")
        return 1.0 if t < 0 else self._ab[t]

    def alpha_bar_at(self, t: Tensor | int, like: Tensor) -> Tensor:
        """alpha-bar at steps t [B], shaped to broadcast against ``like`` ([B, 1, 1, ...]), on its device, in
        the sampler-maths dtype of ``like`` (float32, or float64 if ``like`` is)."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long()
        if (t < 0).any() or (t >= len(self)).any():
            raise ValueError(f"timesteps must lie in 0..{len(self) - 1}, got {t.min().item()}..{t.max().item()}")
        values = self.alphas_cumprod[t].to(device=like.device, dtype=_math_dtype(like))
        return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))

    def add_noise(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Sample the forward marginal q(x_t | x_0): sqrt(ab_t) x0 + sqrt(1 - ab_t) noise (DDIM eq. 4)."""
        ab = self.alpha_bar_at(t, x0)
        out = ab.sqrt() * x0.to(ab.dtype) + (1 - ab).sqrt() * noise.to(ab.dtype)
        return out.to(x0.dtype)

    def snr(self, t: Tensor | int | None = None) -> Tensor:
        """Signal-to-noise ratio ab / (1 - ab), float64; the whole table when t is None."""
        ab = self.alphas_cumprod if t is None else self.alphas_cumprod[torch.as_tensor(t).long()]
        return ab / (1 - ab)

    def log_snr(self, t: Tensor | int | None = None) -> Tensor:
        """The full log-SNR log(ab / (1 - ab)) = 2 lambda, float64; the whole table when t is None."""
        return 2 * self.lambdas(t)

    def lambdas(self, t: Tensor | int | None = None) -> Tensor:
        """lambda = log(alpha / sigma) = log-SNR / 2 (see ``lambda_of``), float64, decreasing in t."""
        ab = self.alphas_cumprod if t is None else self.alphas_cumprod[torch.as_tensor(t).long()]
        return lambda_of(ab)


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (the number of training steps) must be a positive integer, got {T!r}")


def _math_dtype(x: Tensor) -> torch.dtype:
    """The dtype sampler maths runs in for a tensor like x: at least float32, float64 if x is."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
