"""Samplers as pure functions over an explicit grid: the generalized DDIM step, DDPM, inversion.

The one generalized step (DDIM paper eq. 12), from a visited step t to the next visited,
less noisy step (alpha-bar ``ab_prev``; 1 after the last visited step):

    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z,   z ~ N(0, I)
    sigma  = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)           (eq. 16)

The noise term is ``sigma * z`` (the seed document's ``sigma^2`` is a typo; tests pin this).
"ddpm" uses the DDPM posterior q(x_prev | x_t, x0_hat) of the (respaced) chain (DDPM eqs. 6-7);
"sigma-hat" keeps that mean with the larger noise scale sqrt(1 - ab_t / ab_prev) (DDPM's
"fixed large" variance, the DDIM paper's sigma-hat in Table 1), and adds no noise at the step
that lands on x_0 (as the official code masks t = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .prediction import check_prediction, eps_from_x0, to_eps_x0
from .schedule import NoiseSchedule, _math_dtype
from .solvers import SOLVERS, Multistep, heun_step, is_multistep
from .timesteps import check_timesteps
from .timesteps import timesteps as make_timesteps

__all__ = [
    "METHODS",
    "INVERSION_METHODS",
    "sample",
    "invert",
    "ddim_sigma",
    "ddim_step",
    "ddpm_posterior",
    "predict",
]

Model = Callable[[Tensor, Tensor], Any]
Generator = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, int, Tensor, Tensor], None]

METHODS: dict[str, str] = {
    "ddim": "generalized DDIM step (eq. 12); eta=0 deterministic ODE solver, eta=1 DDPM-like",
    "ddpm": "ancestral DDPM: posterior mean and variance beta-tilde of the (respaced) chain",
    "sigma-hat": "DDPM posterior mean with the 'fixed large' noise sqrt(1 - ab_t/ab_prev) (DDIM Table 1)",
    **SOLVERS,  # higher-order solvers (solvers.py)
}
INVERSION_METHODS: dict[str, str] = {
    "ddim": "plain DDIM inversion: the eta=0 step run towards noise, eps taken at the current point (1 call/step)",
    "fixed-point": "exact inversion: solves for the point the eta=0 step maps back onto x (Anderson; 1 + iterations calls/step)",
}


# --------------------------------------------------------------------------- the maths of one step
def ddim_sigma(ab_t: float, ab_prev: float, eta: float) -> float:
    """sigma_t(eta) of DDIM eq. 16; 0 when eta = 0 (never sqrt of a negative, e.g. in inversion)."""
    if eta == 0:
        return 0.0
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_prev)


def ddim_step(x0: Tensor, eps: Tensor, ab_prev: float, sigma: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """DDIM eq. 12: sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma * noise (the mean if noise is None)."""
    direction = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
    x = math.sqrt(ab_prev) * x0 + direction * eps
    return x if noise is None or sigma == 0 else x + sigma * noise


def ddpm_posterior(x_t: Tensor, x0: Tensor, ab_t: float, ab_prev: float) -> tuple[Tensor, float]:
    """Mean and variance beta-tilde of q(x_prev | x_t, x0) for the chain ab_t <- ab_prev (DDPM eqs. 6-7)."""
    beta = 1 - ab_t / ab_prev  # the effective beta of the skipped-over stretch
    mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x_t
    return mean, (1 - ab_prev) / (1 - ab_t) * beta


def _method_step(method: str, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, eta: float):
    """The deterministic part and noise scale of one step of ``method``: (mean, std)."""
    if method == "ddim":
        sigma = ddim_sigma(ab_t, ab_prev, eta)
        return ddim_step(x0, eps, ab_prev, sigma), sigma
    mean, var = ddpm_posterior(x, x0, ab_t, ab_prev)
    if method == "ddpm":
        return mean, math.sqrt(var)
    return mean, (0.0 if ab_prev == 1.0 else math.sqrt(1 - ab_t / ab_prev))  # sigma-hat


# --------------------------------------------------------------------------- model evaluation
def predict(
    model: Model,
    x: Tensor,
    t: int,
    ab_t: float,
    prediction: str = "eps",
    *,
    model_dtype: torch.dtype | None = None,
    clip_x0: float | None = None,
    dynamic_threshold: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Call ``model(x, t)`` and return (eps_hat, x0_hat) in x's dtype; optional x0 clipping re-derives eps."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    out = model(x if model_dtype is None else x.to(model_dtype), t_batch)
    out = getattr(out, "sample", out)  # diffusers UNets return an output object
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return a tensor shaped like its input {tuple(x.shape)}, got {shape}")
    eps, x0 = to_eps_x0(out.to(x.dtype), x, ab_t, prediction)
    if clip_x0 is None and dynamic_threshold is None:
        return eps, x0
    if dynamic_threshold is not None:  # Saharia et al. 2022 (Imagen), sec. 2.3
        flat = x0.abs().reshape(x0.shape[0], -1)
        s = torch.quantile(flat, dynamic_threshold, dim=1).clamp(min=1.0)
        s = s.reshape((-1,) + (1,) * (x0.dim() - 1))
        x0 = torch.maximum(torch.minimum(x0, s), -s) / s
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    return eps_from_x0(x0, x, ab_t), x0


def _randn(like: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise shaped like ``like``; one generator per image makes it batch-size independent."""
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
    if len(generator) != like.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {like.shape[0]}; give one per image")
    rows = [torch.randn(like.shape[1:], generator=g, device=g.device, dtype=like.dtype) for g in generator]
    return torch.stack(rows).to(like.device)


def _grid(schedule: NoiseSchedule, steps: int, spacing: str, timesteps: Sequence[int] | Tensor | None) -> Tensor:
    if timesteps is not None:
        return check_timesteps(timesteps, len(schedule))
    return make_timesteps(len(schedule), steps, spacing, schedule.alphas_cumprod)


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


# --------------------------------------------------------------------------- public samplers
def sample(
    model: Model,
    schedule: NoiseSchedule,
    x_T: Tensor,
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "uniform",
    method: str = "ddim",
    prediction: str = "eps",
    generator: Generator = None,
    *,
    timesteps: Sequence[int] | Tensor | None = None,
    clip_x0: float | None = None,
    dynamic_threshold: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """Run the reverse process from noise ``x_T`` over a grid of ``steps`` and return x_0.

    ``method`` is one of ``ddim.METHODS``; ``eta`` (DDIM eq. 16) applies to "ddim" only.
    ``timesteps`` overrides ``steps``/``spacing`` with an explicit decreasing grid.
    ``callback(i, t, x_prev, x0_hat)`` is called after every step. The result has x_T's device
    and dtype; the state is kept in float32 (float64 when x_T is float64), the model gets x_T's dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    if eta != 0 and method != "ddim":
        raise ValueError(f"eta applies to method='ddim' only; method={method!r} fixes its own noise")
    check_prediction(prediction)
    _check_options(clip_x0, dynamic_threshold)
    tau = _grid(schedule, steps, spacing, timesteps)
    x = x_T.to(_math_dtype(x_T))
    options = dict(model_dtype=x_T.dtype, clip_x0=clip_x0, dynamic_threshold=dynamic_threshold)
    multistep = Multistep(method) if is_multistep(method) else None
    for i in _progress(range(len(tau)), progress, f"{method} sampling"):
        t = int(tau[i])
        t_prev = int(tau[i + 1]) if i + 1 < len(tau) else -1
        ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        eps, x0 = predict(model, x, t, ab_t, prediction, **options)
        if multistep is not None:
            x, std = multistep.step(x, x0, ab_t, ab_prev)
        elif method == "heun":
            x_next = x0  # the last step (to alpha-bar 1) is Euler's = DDIM's: x0_hat
            if t_prev >= 0:  # Euler (= DDIM) predictor, then the trapezoid through the slope there
                euler = heun_step(x, eps, None, ab_t, ab_prev)
                eps_next, _ = predict(model, euler, t_prev, ab_prev, prediction, **options)
                x_next = heun_step(x, eps, eps_next, ab_t, ab_prev)
            x, std = x_next, 0.0
        else:
            x, std = _method_step(method, x, eps, x0, ab_t, ab_prev, eta)
        if std > 0:
            x = x + std * _randn(x, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x.to(x_T.dtype)


def invert(
    model: Model,
    schedule: NoiseSchedule,
    x0: Tensor,
    steps: int = 50,
    spacing: str = "uniform",
    prediction: str = "eps",
    method: str = "ddim",
    *,
    timesteps: Sequence[int] | Tensor | None = None,
    iterations: int = 3,
    tol: float = 0.0,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode data ``x0`` into a latent x_T by running the eta = 0 step towards noise over the reversed grid.

    ``sample(model, schedule, invert(...), steps, eta=0, spacing)`` decodes it again.

    - "ddim": plain inversion. The exact inverse of the sampler's step from z (level t) to x
      needs eps(z, t) at the unknown z; plain inversion uses eps(x, t) instead, so its round
      trip error shrinks only at first order in the step size. One model call per step.
    - "fixed-point": solves z = G(z), G(z) = the eta = 0 map from x to level t with eps(z, t),
      i.e. the z from which the sampler's own step lands exactly on x. Starts from the plain
      step and runs ``iterations`` Anderson-accelerated fixed-point updates (1 + iterations model
      calls per step; stops early once the update's RMS falls below ``tol``).

    ``callback(i, t, x_t, x_from)`` per step: the new latent at level t and the point it came from.
    """
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion method {method!r}; choose one of {', '.join(INVERSION_METHODS)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    check_prediction(prediction)
    ascending = _grid(schedule, steps, spacing, timesteps).flip(0)
    x = x0.to(_math_dtype(x0))
    ab_from = 1.0
    for i in _progress(range(len(ascending)), progress, f"{method} inversion"):
        t = int(ascending[i])
        ab_to = schedule.alpha_bar(t)

        def G(z: Tensor) -> Tensor:  # noqa: N802 - the fixed-point map; x, ab_from, ab_to of this step
            eps, _ = predict(model, z, t, ab_to, prediction, model_dtype=x0.dtype)
            return _ddim_map(x, eps, ab_from, ab_to)

        z = G(x)  # plain DDIM inversion
        if method == "fixed-point":
            z = _anderson(G, z, iterations, tol)
        if callback is not None:
            callback(i, t, z, x)
        x, ab_from = z, ab_to
    return x.to(x0.dtype)


def _ddim_map(x: Tensor, eps: Tensor, ab_from: float, ab_to: float) -> Tensor:
    """The eta = 0 DDIM map between levels with a given eps: sqrt(ab_to) x0_hat + sqrt(1 - ab_to) eps."""
    return ddim_step((x - math.sqrt(1 - ab_from) * eps) / math.sqrt(ab_from), eps, ab_to)


def _anderson(G: Callable[[Tensor], Tensor], z: Tensor, iterations: int, tol: float) -> Tensor:
    """Anderson-accelerated (depth 1) fixed-point iteration z <- G(z), per sample; ``iterations`` calls of G.

    Safeguarded per sample: the residual |G(z) - z| is sqrt(ab_to / ab_from) times the error of
    the sampler's step from z, and each sample returns the iterate with the smallest measured
    residual, so an overshooting extrapolation (near sharp mode boundaries G need not contract)
    never makes the answer worse than the plain step. The last call only verifies, so
    ``iterations=1`` returns the plain step.
    """
    dims = tuple(range(1, z.dim()))
    shape = (-1,) + (1,) * (z.dim() - 1)
    best = best_r = g_prev = f_prev = None
    for _ in range(iterations):
        g = G(z)
        f = g - z  # the residual
        r = f.pow(2).mean(dims)
        if best is None:
            best, best_r = z, r
        else:
            better = r < best_r
            best, best_r = torch.where(better.reshape(shape), z, best), torch.where(better, r, best_r)
        if tol > 0 and best_r.max().sqrt().item() < tol:
            return best
        if f_prev is None:
            z_next = g
        else:  # mix the last two iterates to cancel the residual's component along their difference
            df = f - f_prev
            gamma = (f * df).sum(dims, keepdim=True) / df.pow(2).sum(dims, keepdim=True).clamp(min=1e-300)
            z_next = g - gamma * (g - g_prev)
        g_prev, f_prev, z = g, f, z_next
    return z if best is None else best


def _check_options(clip_x0: float | None, dynamic_threshold: float | None) -> None:
    if clip_x0 is not None and not clip_x0 > 0:
        raise ValueError(f"clip_x0 must be a positive bound (e.g. 1.0 for pixels in [-1, 1]), got {clip_x0}")
    if dynamic_threshold is not None and not 0 < dynamic_threshold < 1:
        raise ValueError(f"dynamic_threshold is a quantile in (0, 1) (Imagen uses 0.995), got {dynamic_threshold}")
