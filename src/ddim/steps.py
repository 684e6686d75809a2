"""The maths of one step between two visited levels, and the single-step methods built on it.

A step goes from the level just evaluated (alpha-bar ``ab_t``) to the next visited, less noisy level
(``ab_prev``; 1 after the last visited step). The one generalized step (DDIM paper eq. 12):

    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z,   z ~ N(0, I)
    sigma  = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)           (eq. 16)

The noise term is ``sigma * z`` (the seed document's ``sigma^2`` is a typo; tests pin this).
"ddpm" uses the DDPM posterior q(x_prev | x_t, x0_hat) of the (respaced) chain (DDPM eqs. 6-7);
"sigma-hat" keeps that mean with the larger noise scale sqrt(1 - ab_t / ab_prev) (DDPM's
"fixed large" variance, the DDIM paper's sigma-hat in Table 1), and adds no noise at the step
that lands on x_0 (as the official code masks t = 0). "heun" (Karras et al. 2022, EDM) is an
Euler (= DDIM) predictor and a trapezoidal corrector on x / alpha against sigma / alpha.

Every method steps through one interface (``Stepper``), so the sampling loop has one branch:
``stepper.step(x, eps, x0, ab_t, ab_prev, evaluate)`` returns (the next point's mean, noise std),
where ``evaluate(z)`` gives eps_hat of the model at z at the target level (Heun's second call; x0_hat, when a
stepper needs it, is (z - sqrt(1 - ab_prev) eps_hat) / sqrt(ab_prev), left to the stepper so nobody pays for it unused).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["Stepper", "Evaluate", "ddim_sigma", "ddim_step", "ddpm_posterior", "heun_step", "DDIMStep", "DDPMStep", "SigmaHatStep", "HeunStep"]

Evaluate = Callable[[Tensor], Tensor]


class Stepper(Protocol):
    """One run of a method: called once per visited level, after the model call there."""

    def step(self, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, evaluate: Evaluate) -> tuple[Tensor, float]: ...


# --------------------------------------------------------------------------- the maths
def ddim_sigma(ab_t: float, ab_prev: float, eta: float) -> float:
    """sigma_t(eta) of DDIM eq. 16; 0 when eta = 0 (never sqrt of a negative, e.g. in inversion)."""
    if eta == 0:
        return 0.0
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_prev)


def ddim_step(x0: Tensor, eps: Tensor, ab_prev: float, sigma: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """DDIM eq. 12: sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma * noise (the mean if noise is None)."""
    direction = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
    x = torch.add(math.sqrt(ab_prev) * x0, eps, alpha=direction)
    return x if noise is None or sigma == 0 else x + sigma * noise


def ddpm_posterior(x_t: Tensor, x0: Tensor, ab_t: float, ab_prev: float) -> tuple[Tensor, float]:
    """Mean and variance beta-tilde of q(x_prev | x_t, x0) for the chain ab_t <- ab_prev (DDPM eqs. 6-7)."""
    beta = 1 - ab_t / ab_prev  # the effective beta of the skipped-over stretch
    mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x_t
    return mean, (1 - ab_prev) / (1 - ab_t) * beta


def heun_step(x: Tensor, eps_t: Tensor, eps_prev: Tensor | None, ab_t: float, ab_prev: float) -> Tensor:
    """One Heun step on y = x / alpha against s = sigma / alpha (dy/ds = eps_hat). With ``eps_prev`` None
    it is the Euler step, which is DDIM's eta = 0 step exactly."""
    scaled, h = _heun_parts(x, ab_t, ab_prev)
    if eps_prev is None:
        return scaled.add_(eps_t, alpha=h)
    return scaled.add_(eps_t, alpha=h / 2).add_(eps_prev, alpha=h / 2)  # the slope is the mean of the two


def _heun_parts(x: Tensor, ab_t: float, ab_prev: float) -> tuple[Tensor, float]:
    """x * alpha_prev / alpha_t (a new tensor) and h = alpha_prev * (s_prev - s_t): the step is scaled + h * slope."""
    a_t, a_prev = math.sqrt(ab_t), math.sqrt(ab_prev)
    return x * (a_prev / a_t), a_prev * (math.sqrt(1 - ab_prev) / a_prev - math.sqrt(1 - ab_t) / a_t)


# --------------------------------------------------------------------------- single-step methods
class DDIMStep:
    """DDIM eq. 12 with sigma of eq. 16 at ``eta``."""

    def __init__(self, eta: float = 0.0) -> None:
        self.eta = float(eta)

    def step(self, x, eps, x0, ab_t, ab_prev, evaluate):
        sigma = ddim_sigma(ab_t, ab_prev, self.eta)
        return ddim_step(x0, eps, ab_prev, sigma), sigma


class DDPMStep:
    """Ancestral DDPM: the posterior mean and its variance beta-tilde."""

    def __init__(self, eta: float = 0.0) -> None:
        pass

    def step(self, x, eps, x0, ab_t, ab_prev, evaluate):
        mean, var = ddpm_posterior(x, x0, ab_t, ab_prev)
        return mean, math.sqrt(var)


class SigmaHatStep:
    """The DDPM posterior mean with the 'fixed large' noise sqrt(1 - ab_t / ab_prev); none on the last step."""

    def __init__(self, eta: float = 0.0) -> None:
        pass

    def step(self, x, eps, x0, ab_t, ab_prev, evaluate):
        mean, _ = ddpm_posterior(x, x0, ab_t, ab_prev)
        return mean, (0.0 if ab_prev == 1.0 else math.sqrt(1 - ab_t / ab_prev))


class HeunStep:
    """Euler (= DDIM) predictor, then the trapezoid through the slope there (2 calls; the last step, to
    alpha-bar 1, is Euler's = DDIM's: x0_hat)."""

    def __init__(self, eta: float = 0.0) -> None:
        pass

    def step(self, x, eps, x0, ab_t, ab_prev, evaluate):
        if ab_prev >= 1.0:
            return x0, 0.0
        scaled, h = _heun_parts(x, ab_t, ab_prev)  # heun_step's maths, with the shared part computed once
        eps_prev = evaluate(torch.add(scaled, eps, alpha=h))
        return scaled.add_(eps, alpha=h / 2).add_(eps_prev, alpha=h / 2), 0.0
