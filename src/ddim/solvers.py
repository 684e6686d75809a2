"""Higher-order solvers of the probability-flow ODE (and its SDE), in data (x0) prediction.

Notation: alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha / sigma) (half the log-SNR).
Between a level s and a less noisy level t, with h = lambda_t - lambda_s > 0, the exact solution
of the probability-flow ODE written for the data prediction m(lambda) = x0_hat is

    x_t = (sigma_t / sigma_s) x_s + alpha_t * integral_0^h e^(u - h) m(lambda_s + u) du          (ODE)

and of the reverse SDE (the variance-exploding noise of DDPM, with fresh z)

    x_t = (sigma_t / sigma_s) e^-h x_s + alpha_t * integral_0^h 2 e^(2(u - h)) m(lambda_s + u) du
          + sigma_t sqrt(1 - e^-2h) z                                                           (SDE)

A multistep solver replaces m by the polynomial through the latest x0_hat values (at level s
and the previous levels) and integrates it exactly. For the ODE the polynomial is in
rho = (sigma/alpha) / (sigma_s/alpha_s) (``sigma_weights``): x0_hat is a smooth function of the
noise scale sigma/alpha that levels off as it goes to 0, so a polynomial in it extrapolates well
over the long last steps, where a polynomial in lambda (which goes to infinity there)
overshoots; on the 64-D mixture oracle at 10 calls this halved the error of the 2M solver. The
SDE integral has weights e^(2(u-h)) and uses a polynomial in lambda (``weights``). With one value,
the ODE step is DDIM (eta = 0) and the SDE step is DDPM's posterior step (DDIM eta = 1), exactly.
Two and three values give the DPM-Solver++ 2M / 3M family; the UniPC family adds a corrector that
refits the polynomial through the x0_hat of the point just reached (no extra model call) and
redoes the step, which raises the order by one.

Heun (Karras et al. 2022, EDM) works on x / alpha as a function of sigma / alpha, where the ODE
is dx/dsigma = eps_hat: an Euler (= DDIM) predictor and a trapezoidal corrector, 2 calls per step.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

__all__ = ["SOLVERS", "Multistep", "heun_step", "is_multistep", "log_snr_half", "recommended", "phi_integral", "sigma_weights", "weights"]

SOLVERS: dict[str, str] = {
    "dpm++2m": "2nd-order multistep exponential integrator in x0 prediction (DPM-Solver++ 2M family), 1 call/step",
    "dpm++3m": "3rd-order multistep exponential integrator in x0 prediction (DPM-Solver++ 3M family), 1 call/step",
    "dpm++2m-sde": "stochastic 2nd-order multistep integrator of the reverse SDE (DDPM noise), 1 call/step",
    "dpm++3m-sde": "stochastic 3rd-order multistep integrator of the reverse SDE (DDPM noise), 1 call/step",
    "unipc": "2nd-order multistep predictor + corrector through the new x0_hat (UniPC family, order 3), 1 call/step",
    "unipc3": "3rd-order multistep predictor + corrector through the new x0_hat (UniPC family, order 4), 1 call/step",
    "heun": "Heun's 2nd-order method on x/alpha vs sigma/alpha (EDM); 2 calls/step, the last step 1",
}

MAX_EXTRAPOLATION = 2.0

# (order, corrector, stochastic) of the multistep methods
_MULTISTEP = {
    "dpm++2m": (2, False, False),
    "dpm++3m": (3, False, False),
    "dpm++2m-sde": (2, False, True),
    "dpm++3m-sde": (3, False, True),
    "unipc": (2, True, False),
    "unipc3": (3, True, False),
}


def log_snr_half(ab: float) -> float:
    """lambda = log(alpha / sigma) = log-SNR / 2; +inf at ab = 1."""
    return math.inf if ab >= 1.0 else 0.5 * (math.log(ab) - math.log1p(-ab))


def phi_integral(k: int, x: float) -> float:
    """I_k(x) = e^-x * integral_0^x e^v v^k dv (x >= 0), accurate for small x too."""
    if x < 2.0:  # e^-x sum_n x^(n+k+1) / (n! (n+k+1)): positive terms, no cancellation
        total, term, n = 0.0, x ** (k + 1), 0
        while True:
            add = term / (n + k + 1)
            total += add
            if add < 1e-18 * total:
                break
            n += 1
            term *= x / n
        return math.exp(-x) * total
    value = -math.expm1(-x)  # I_0
    for j in range(1, k + 1):
        value = x**j - j * value
    return value


def weights(nodes: list[float], h: float, stochastic: bool = False) -> np.ndarray:
    """Coefficients w_j with  integral_0^h c e^(c(u - h)) p(u) du = sum_j w_j m_j,  p the polynomial
    through (nodes[j] * h, m_j); c = 1 (ODE) or 2 (SDE). ``nodes`` are (lambda_j - lambda_s) / h."""
    c = 2.0 if stochastic else 1.0
    p = len(nodes)
    J = np.array([phi_integral(k, c * h) / (c * h) ** k for k in range(p)])  # c^-k I_k(ch) / h^k
    V = np.array([[s**k for k in range(p)] for s in nodes], dtype=np.float64)
    return np.linalg.solve(V.T, J)





def sigma_weights(rho_nodes: list[float], alpha_t: float, sigma_t: float, st_s: float) -> np.ndarray:
    """ODE step weights when x0_hat is a polynomial in rho = (sigma/alpha) / st_s (st_s = sigma_s/alpha_s):
    x_t = (sigma_t/sigma_s) x_s + sum_j w_j m_j, exact for such polynomials; finite at sigma_t = 0."""
    p = len(rho_nodes)
    rho_t = sigma_t / alpha_t / st_s
    C = [alpha_t - sigma_t / st_s]  # k = 0
    for k in range(1, p):
        if sigma_t == 0:
            C.append(0.0)
            continue
        integral = -math.log(rho_t) if k == 1 else (1 - rho_t ** (k - 1)) / (k - 1)
        C.append(sigma_t / st_s * integral)
    V = np.array([[r**k for k in range(p)] for r in rho_nodes], dtype=np.float64)
    return np.linalg.solve(V.T, np.array(C))


class Multistep:
    """State of one multistep run: the latest x0_hat values, their lambdas, and the last step taken
    (for the corrector). ``step`` is called once per visited level, after the model call there."""

    def __init__(self, method: str):
        self.order, self.corrector, self.stochastic = _MULTISTEP[method]
        self.history: list[tuple[float, Tensor]] = []  # (lambda, x0_hat), newest first
        self.last: tuple[Tensor, float, float, int] | None = None  # (x_s, lambda_s, sigma_s, order used)

    def _advance(self, x_s: Tensor, lam_s: float, sigma_s: float, lam_t: float, alpha_t: float, sigma_t: float,
                 points: list[tuple[float, Tensor]]) -> Tensor:
        h = lam_t - lam_s
        if not self.stochastic:
            w = sigma_weights([math.exp(lam_s - lam) for lam, _ in points], alpha_t, sigma_t, math.exp(-lam_s))
            out = sigma_t / sigma_s * x_s
            for wj, (_, m) in zip(w, points):
                out = out + float(wj) * m
            return out
        w = weights([(lam - lam_s) / h for lam, _ in points], h, self.stochastic)
        ratio = sigma_t / sigma_s * (math.exp(-h) if self.stochastic else 1.0)
        out = ratio * x_s
        for wj, (_, m) in zip(w, points):
            out = out + (alpha_t * float(wj)) * m
        return out

    def step(self, x: Tensor, x0: Tensor, ab_s: float, ab_t: float) -> tuple[Tensor, float]:
        """From level s (ab_s, the model just evaluated there: x0) to level t; returns (mean, noise std)."""
        lam_s, sigma_s = log_snr_half(ab_s), math.sqrt(1 - ab_s)
        if self.corrector and self.last is not None:
            x_p, lam_p, sigma_p, used = self.last
            points = [(lam_s, x0)] + self.history[:used]
            x = self._advance(x_p, lam_p, sigma_p, lam_s, math.sqrt(ab_s), sigma_s, points)
        self.history = [(lam_s, x0)] + self.history[: self.order - 1]
        if ab_t >= 1.0:  # the last step lands on x_0: the data prediction itself
            return x0, 0.0
        lam_t, alpha_t, sigma_t = log_snr_half(ab_t), math.sqrt(ab_t), math.sqrt(1 - ab_t)
        used = len(self.history)
        # extrapolating a polynomial far beyond the span of its nodes amplifies their errors: use
        # fewer nodes when the step is longer than MAX_EXTRAPOLATION times the span they cover
        while used > 1 and lam_t - lam_s > MAX_EXTRAPOLATION * (lam_s - self.history[used - 1][0]):
            used -= 1
        self.last = (x, lam_s, sigma_s, used)
        mean = self._advance(x, lam_s, sigma_s, lam_t, alpha_t, sigma_t, self.history[:used])
        std = sigma_t * math.sqrt(-math.expm1(-2 * (lam_t - lam_s))) if self.stochastic else 0.0
        return mean, std


def heun_step(x: Tensor, eps_s: Tensor, eps_t: Tensor | None, ab_s: float, ab_t: float) -> Tensor:
    """One Heun step on y = x / alpha against s = sigma / alpha (dy/ds = eps_hat). With ``eps_t`` None
    it is the Euler step, which is DDIM's eta = 0 step exactly."""
    a_s, a_t = math.sqrt(ab_s), math.sqrt(ab_t)
    ds = math.sqrt(1 - ab_t) / a_t - math.sqrt(1 - ab_s) / a_s
    slope = eps_s if eps_t is None else (eps_s + eps_t) / 2
    return a_t * (x / a_s + ds * slope)


# the best method and grid per number of model calls without a fitted grid, from
# docs/benchmarks/solvers.md (see docs/solvers.md): (max calls, method, spacing), first match wins.
# Below 8 calls the multistep solvers on the log-SNR grid lost to plain DDIM on the digits model.
RECOMMENDED = ((7, "ddim", "uniform"), (10**9, "unipc3", "logsnr"))
FITTED_GRID_UP_TO = 8  # at <= 8 calls a grid fitted to the model (ddim optimize-grid) beat both, when the folder has one


def recommended(calls: int) -> tuple[str, str]:
    """(method, spacing) that measured best at ``calls`` model calls per sample."""
    for limit, method, spacing in RECOMMENDED:
        if calls <= limit:
            return method, spacing
    return RECOMMENDED[-1][1:]


def is_multistep(method: str) -> bool:
    return method in _MULTISTEP
