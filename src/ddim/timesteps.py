"""Timestep grids tau: which S of the T training steps a sampler visits (the only home of spacing).

Every grid returned here is a strictly decreasing LongTensor of exactly S distinct steps in
0..T-1, for every S in 1..T. After the last visited step a sampler goes to alpha-bar = 1.

- "uniform":   tau_i = i * (T // S), i = 0..S-1 (DDIM paper sec. 5, ``range(0, T, T // S)``).
- "quadratic": tau_i = floor((i / (S - 1) * sqrt(0.8 T))^2) (the paper's CIFAR10 grid), with
               collisions pushed apart so that no step repeats (the official code's grid has only
               49 distinct steps at S = 50).
- "quadratic-open": the same curve without the call at t = 0: tau_i = floor((i / S * sqrt(0.8 T))^2),
               i = S..1 (the paper's grid of S + 1 steps, less its t = 0), so the last call is at
               floor(0.8 T / S^2) and the final step jumps from there to alpha-bar 1.
- "quadratic-0.9": round(0.9 (T - 1) (i / (S - 1))^2), collisions pushed apart: the same curve as
               "time-quadratic" but from 0.9 (T - 1), between it and the DDIM paper's start at 0.8 T
               (``power_grid(T, S, 2, start=0.9)``; at 8-12 calls it measured better than both on 64-D
               exact mixtures, docs/solvers.md). S = 1 gives [T - 1].
- "quadratic-top": round(0.8 (T - 1) (i / (S - 1))^2) with the first level moved to T - 1: the DDIM paper's
               curve from 0.8 T, but x_T is read at the level it is drawn at and the first step is one long
               step from there (``power_grid(T, S, 2, start=0.8, top=True)``; tried for `auto`
               at 11-12 calls: better on exact mixtures, worse on Fashion-MNIST, docs/solvers.md).
- "linspace":  round(linspace(0, T - 1, S)), reversed: both ends visited; S = 1 gives [T - 1].
- "time-quadratic": round((T - 1) (i / (S - 1))^2), collisions pushed apart: quadratic in time over the
               whole range (DPM-Solver's "time_quadratic"), so unlike "quadratic" it starts at t = T - 1
               (the DDIM paper's grid starts at 0.8 T, where x_T ~ N(0, I) is not yet the marginal).
- "trailing":  round(T - i * T / S) - 1, i = 0..S-1, in exact integer arithmetic (ties round up):
               starts at T - 1 (Lin et al. 2023, Table 2); exactly S steps (diffusers' float
               version gives S + 1 steps ending at -1 for some S).
- "logsnr":    uniform in lambda = log(alpha / sigma) (half the log-SNR, ``schedule.lambda_of``) between
               the ends of the schedule (DPM-Solver's choice), each level rounded to the training step
               with the nearest lambda.
- "karras":    sigma / alpha = (smax^(1/rho) + i / (S - 1) (smin^(1/rho) - smax^(1/rho)))^rho, rho = 7
               (Karras et al. 2022, eq. 5), rounded the same way.
``power_grid(T, S, p, open_end)`` gives the family that "linspace" (p = 1) and "time-quadratic" (p = 2) belong to,
with or without the call at t = 0 (``ddim optimize-grid --search family`` picks from it per model).
The last two spacings above depend on the noise schedule (pass ``alphas_cumprod``; without it DDPM's linear
schedule of length T is assumed, as ``NoiseSchedule.linear(T)``; ``ddim.sample`` always passes
the model's); rounded levels that collide are pushed apart, so they too give exactly S distinct
steps with both ends visited.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .config import SPACINGS
from .schedule import NoiseSchedule, lambda_of

__all__ = ["SPACINGS", "timesteps", "power_grid", "check_timesteps"]

SCHEDULE_SPACINGS = ("logsnr", "karras")  # need the schedule's alpha-bars
KARRAS_RHO = 7.0
QUADRATIC_CURVES = {"time-quadratic": (1.0, False), "quadratic-0.9": (0.9, False),  # power_grid(T, S, 2, start, top)
                    "quadratic-top": (0.8, True)}                                  # as a named spacing


def timesteps(T: int, S: int, spacing: str = "uniform", alphas_cumprod: Tensor | np.ndarray | None = None) -> Tensor:
    """The decreasing grid of S steps out of T for ``spacing`` (one of ``ddim.SPACINGS``)."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T (training steps) must be a positive integer, got {T!r}")
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or not 1 <= S <= T:
        raise ValueError(f"steps must be an integer in 1..{T} (the model's training steps), got {S!r}")
    T, S = int(T), int(S)
    if spacing == "uniform":
        ascending = np.arange(S) * (T // S)
    elif spacing == "quadratic":
        ascending = _spread(np.floor(np.linspace(0.0, np.sqrt(0.8 * T), S) ** 2).astype(np.int64), T)
    elif spacing == "quadratic-open":
        ascending = _spread(np.floor(np.linspace(0.0, np.sqrt(0.8 * T), S + 1)[1:] ** 2).astype(np.int64), T)
    elif spacing in QUADRATIC_CURVES:
        start, top = QUADRATIC_CURVES[spacing]
        ascending = np.array(power_grid(T, S, 2.0, start=start, top=top)[::-1])
    elif spacing == "linspace":
        ends = (0, T - 1) if S > 1 else (T - 1, T - 1)  # a single step starts from the noisiest one
        ascending = np.round(np.linspace(*ends, S)).astype(np.int64)
    elif spacing == "trailing":
        i = np.arange(S - 1, -1, -1, dtype=np.int64)
        ascending = (2 * T * (S - i) + S) // (2 * S) - 1  # round(T (S - i) / S) - 1, exact, ties up
    elif spacing in SCHEDULE_SPACINGS:
        ascending = _by_noise_level(T, S, spacing, alphas_cumprod)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return torch.from_numpy(ascending[::-1].copy()).long()


def power_grid(T: int, S: int, power: float, open_end: bool = False, start: float = 1.0, top: bool = False) -> list[int]:
    """A grid polynomial in time: t_i = round(start (T - 1) u_i^power), starting at start (T - 1), decreasing.

    ``open_end=False``: u_i = (S - 1 - i) / (S - 1), so the last call is at t = 0 (power 1 is "linspace", 2 is
    "time-quadratic"). ``open_end=True``: u_i = (S - i) / S, so the last call is at (T - 1) S^-power and the final
    step jumps from there to alpha-bar 1 (as diffusers' schedulers do with ``final_sigmas_type="zero"``): the call at
    t = 0, whose data prediction barely differs from its input, goes to the range above instead. ``start`` < 1 begins
    below the noisiest level and reads x_T as a draw at t_0 (as the DDIM paper's grid does from 0.8 T): the call at
    T - 1 moves little on data whose scale is far below sigma/alpha there (156 on the linear schedule), but the
    mismatch is an error that more calls do not remove (docs/solvers.md: far modes at 12-20 calls). ``top=True`` keeps
    that curve below the first level but moves the first level to T - 1: no mismatch, one long first step instead
    (whose error does not shrink with more calls either, so it suits a few calls only: docs/solvers.md). Collisions
    near t = 0 (high powers, many steps) are pushed apart, so the grid has exactly S distinct steps; S = 1 gives
    [T - 1] whatever ``start`` is (a single step must begin at the noisiest level).
    """
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or not 1 <= S <= T:
        raise ValueError(f"steps must be an integer in 1..{T} (the model's training steps), got {S!r}")
    if not power > 0:
        raise ValueError(f"power must be positive, got {power!r}")
    if not 0 < start <= 1:
        raise ValueError(f"start must be a fraction of T - 1 in (0, 1], got {start!r}")
    if S == 1:
        return [T - 1]
    u = np.arange(S, 0, -1) / S if open_end else np.arange(S - 1, -1, -1) / (S - 1)
    ascending = _spread(np.round(start * (T - 1) * u[::-1] ** power).astype(np.int64), T)
    if top:
        ascending[-1] = T - 1  # the others are at most start (T - 1) after _spread, below it unless start = 1
    return ascending[::-1].tolist()


def _by_noise_level(T: int, S: int, spacing: str, alphas_cumprod) -> np.ndarray:
    if alphas_cumprod is None:  # DDPM's linear schedule of length T, as NoiseSchedule.linear(T)
        alphas_cumprod = NoiseSchedule.linear(T).alphas_cumprod
    ab = torch.as_tensor(alphas_cumprod).double().cpu().numpy()
    if ab.shape != (T,):
        raise ValueError(f"alphas_cumprod has shape {ab.shape}, expected ({T},)")
    lam = lambda_of(ab)
    if S == 1:
        return np.array([T - 1])
    u = np.linspace(0.0, 1.0, S)
    if spacing == "logsnr":
        targets = lam[-1] + u * (lam[0] - lam[-1])
    else:
        lo, hi = np.exp(-lam[0]) ** (1 / KARRAS_RHO), np.exp(-lam[-1]) ** (1 / KARRAS_RHO)
        targets = -np.log((hi + u * (lo - hi)) ** KARRAS_RHO)
    return nearest_steps(lam, targets)[::-1]


def nearest_steps(lam: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The training steps whose lambda is nearest to each target, made distinct: a strictly
    decreasing grid of len(targets) steps (``lam``: the lambda of every training step, ``lambda_of``)."""
    nearest = np.abs(lam[None, :] - np.asarray(targets)[:, None]).argmin(1)
    return _spread(np.sort(nearest), len(lam))[::-1]


def _spread(ascending: np.ndarray, T: int) -> np.ndarray:
    """Make a non-decreasing integer grid strictly increasing inside 0..T-1, moving steps minimally."""
    out = ascending.copy()
    for i in range(1, len(out)):  # push collisions up
        out[i] = max(out[i], out[i - 1] + 1)
    out[-1] = min(out[-1], T - 1)
    for i in range(len(out) - 2, -1, -1):  # and back down where the top overflowed
        out[i] = min(out[i], out[i + 1] - 1)
    return out


def check_timesteps(grid: Sequence[int] | Tensor, T: int) -> Tensor:
    """Validate a user-given grid (strictly decreasing, in 0..T-1) and return it as a LongTensor."""
    tau = torch.as_tensor(grid).flatten()
    if tau.numel() < 1:
        raise ValueError("the timestep grid is empty; give at least one step")
    if tau.is_floating_point():
        if not torch.equal(tau, tau.round()):
            raise ValueError("timesteps must be integer training-step indices")
    tau = tau.long().cpu()
    if tau.min() < 0 or tau.max() >= T:
        raise ValueError(f"timesteps must lie in 0..{T - 1}, got {tau.min().item()}..{tau.max().item()}")
    if tau.numel() > 1 and not (tau[1:] < tau[:-1]).all():
        raise ValueError("timesteps must be strictly decreasing (noisiest first) with no repeats")
    return tau
