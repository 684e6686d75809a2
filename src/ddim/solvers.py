"""Higher-order solvers of the probability-flow ODE (and its SDE), in data (x0) prediction.

Notation: alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha / sigma) (half the log-SNR,
``schedule.lambda_of``). A step goes from the level t just evaluated to the next visited, less noisy
level "prev" (as everywhere in ddim). With h = lambda_prev - lambda_t > 0, the exact solution of the
probability-flow ODE written for the data prediction m(lambda) = x0_hat is

    x_prev = (sigma_prev / sigma_t) x_t + alpha_prev * integral_0^h e^(u - h) m(lambda_t + u) du        (ODE)

and of the reverse SDE (the variance-exploding noise of DDPM, with fresh z)

    x_prev = (sigma_prev / sigma_t) e^-h x_t + alpha_prev * integral_0^h 2 e^(2(u - h)) m(lambda_t + u) du
             + sigma_prev sqrt(1 - e^-2h) z                                                             (SDE)

A multistep solver replaces m by the polynomial through the latest x0_hat values (at level t
and the previous levels) and integrates it exactly. For the ODE the polynomial is in
rho = (sigma/alpha) / (sigma_t/alpha_t) (``sigma_weights``): x0_hat is a smooth function of the
noise scale sigma/alpha that levels off as it goes to 0, so a polynomial in it extrapolates well
over the long last steps, where a polynomial in lambda (which goes to infinity there)
overshoots; on the 64-D mixture oracle at 10 calls this halved the error of the 2M solver. The
SDE integral has weights e^(2(u-h)) and uses a polynomial in lambda (``sde_weights``). With one value,
the ODE step is DDIM (eta = 0) and the SDE step is DDPM's posterior step (DDIM eta = 1), exactly.
Two and three values give the DPM-Solver++ 2M / 3M family; the UniPC family adds a corrector that
refits the polynomial through the x0_hat of the point just reached (no extra model call) and
redoes the step, which raises the order by one.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .schedule import lambda_of

__all__ = ["Multistep", "DPMSolverPP2M", "UniPC", "IPNDM", "ADAMS_BASHFORTH", "MAX_EXTRAPOLATION", "phi", "phi_integral", "sigma_weights",
           "sde_weights"]

MAX_EXTRAPOLATION = 2.0


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


def sde_weights(nodes: list[float], h: float) -> np.ndarray:
    """Coefficients w_j with  integral_0^h 2 e^(2(u - h)) p(u) du = sum_j w_j m_j,  p the polynomial
    through (nodes[j] * h, m_j) (the SDE integral). ``nodes`` are (lambda_j - lambda_t) / h."""
    p = len(nodes)
    J = np.array([phi_integral(k, 2 * h) / (2 * h) ** k for k in range(p)])  # 2^-k I_k(2h) / h^k
    V = np.array([[s**k for k in range(p)] for s in nodes], dtype=np.float64)
    return np.linalg.solve(V.T, J)


def sigma_weights(rho_nodes: list[float], alpha_prev: float, sigma_prev: float, st_t: float) -> np.ndarray:
    """ODE step weights when x0_hat is a polynomial in rho = (sigma/alpha) / st_t (st_t = sigma_t/alpha_t):
    x_prev = (sigma_prev/sigma_t) x_t + sum_j w_j m_j, exact for such polynomials; finite at sigma_prev = 0."""
    p = len(rho_nodes)
    rho_prev = sigma_prev / alpha_prev / st_t
    C = [alpha_prev - sigma_prev / st_t]  # k = 0
    for k in range(1, p):
        if sigma_prev == 0:
            C.append(0.0)
            continue
        integral = -math.log(rho_prev) if k == 1 else (1 - rho_prev ** (k - 1)) / (k - 1)
        C.append(sigma_prev / st_t * integral)
    V = np.array([[r**k for k in range(p)] for r in rho_nodes], dtype=np.float64)
    return np.linalg.solve(V.T, np.array(C))


class Multistep:
    """One run of a multistep method: the latest x0_hat values, their lambdas, and the last step taken
    (for the corrector). ``step`` is called once per visited level, after the model call there."""

    def __init__(self, order: int, corrector: bool = False, stochastic: bool = False):
        self.order, self.corrector, self.stochastic = order, corrector, stochastic
        self.history: list[tuple[float, Tensor]] = []  # (lambda, x0_hat), newest first
        self.last: tuple[Tensor, float, float, int] | None = None  # (x_t, lambda_t, sigma_t, order used)

    def _advance(self, x_t: Tensor, lam_t: float, sigma_t: float, lam_prev: float, alpha_prev: float, sigma_prev: float,
                 points: list[tuple[float, Tensor]]) -> Tensor:
        """The step from level t to level prev with x0_hat the polynomial through ``points``."""
        if self.stochastic:
            h = lam_prev - lam_t
            w = sde_weights([(lam - lam_t) / h for lam, _ in points], h)
            out = (sigma_prev / sigma_t * math.exp(-h)) * x_t
            for wj, (_, m) in zip(w, points):
                out = out + (alpha_prev * float(wj)) * m
            return out
        w = sigma_weights([math.exp(lam_t - lam) for lam, _ in points], alpha_prev, sigma_prev, math.exp(-lam_t))
        out = sigma_prev / sigma_t * x_t
        for wj, (_, m) in zip(w, points):
            out = out + float(wj) * m
        return out

    def step(self, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, evaluate=None) -> tuple[Tensor, float]:
        """From level t (the model just evaluated there: x0) to level prev; returns (mean, noise std)."""
        lam_t, sigma_t = lambda_of(ab_t), math.sqrt(1 - ab_t)
        if self.corrector and self.last is not None:  # redo the last step through the new x0_hat
            x_p, lam_p, sigma_p, used = self.last
            points = [(lam_t, x0)] + self.history[:used]
            x = self._advance(x_p, lam_p, sigma_p, lam_t, math.sqrt(ab_t), sigma_t, points)
        self.history = [(lam_t, x0)] + self.history[: self.order - 1]
        if ab_prev >= 1.0:  # the last step lands on x_0: the data prediction itself
            return x0, 0.0
        lam_prev, alpha_prev, sigma_prev = lambda_of(ab_prev), math.sqrt(ab_prev), math.sqrt(1 - ab_prev)
        used = len(self.history)
        # extrapolating a polynomial far beyond the span of its nodes amplifies their errors: use
        # fewer nodes when the step is longer than MAX_EXTRAPOLATION times the span they cover
        while used > 1 and lam_prev - lam_t > MAX_EXTRAPOLATION * (lam_t - self.history[used - 1][0]):
            used -= 1
        self.last = (x, lam_t, sigma_t, used)
        mean = self._advance(x, lam_t, sigma_t, lam_prev, alpha_prev, sigma_prev, self.history[:used])
        std = sigma_prev * math.sqrt(-math.expm1(-2 * (lam_prev - lam_t))) if self.stochastic else 0.0
        return mean, std


class DPMSolverPP2M:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) as its authors and k-diffusion write it: the data prediction
    extrapolated linearly in lambda with the midpoint-style coefficient 1/(2r),

        D = (1 + 1/(2r)) x0_t - 1/(2r) x0_last,   r = h_last / h,   h = lambda_prev - lambda_t
        x_prev = (sigma_prev / sigma_t) x_t + alpha_prev (1 - e^-h) D

    first-order (DDIM) on the first step, and x0_t itself on the step to alpha-bar 1 (denoising to zero).
    Unlike ``Multistep`` (a polynomial in rho), its extrapolation does not fade as the step h grows: on long
    steps (few calls) it keeps the second-order term, which measured better at 5-10 calls on most exact
    mixtures (docs/solvers.md)."""

    def __init__(self) -> None:
        self.last: tuple[float, Tensor] | None = None  # (lambda, x0_hat) of the previous level

    def step(self, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, evaluate=None) -> tuple[Tensor, float]:
        lam_t = lambda_of(ab_t)
        last, self.last = self.last, (lam_t, x0)
        if ab_prev >= 1.0:
            return x0, 0.0
        h = lambda_of(ab_prev) - lam_t
        d = x0
        if last is not None:
            r = (lam_t - last[0]) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * last[1]
        return (math.sqrt(1 - ab_prev) / math.sqrt(1 - ab_t)) * x + (math.sqrt(ab_prev) * -math.expm1(-h)) * d, 0.0



def phi(k: int, z: float) -> float:
    """phi_k(z) = sum_n z^n / (n + k)!  (phi_0 = e^z, phi_{k+1}(z) = (phi_k(z) - 1/k!) / z), accurate near z = 0 too."""
    if abs(z) < 1.0:  # the series: no cancellation
        total, term, n = 0.0, 1.0 / math.factorial(k), 0
        while abs(term) > 1e-18 * max(abs(total), 1e-300):
            total += term
            n += 1
            term *= z / (n + k)
        return total
    value = math.exp(z)
    for j in range(k):
        value = (value - 1 / math.factorial(j)) / z
    return value


class _LowerOrderFinal:
    """Lower-order final steps: a multistep method told the length of its run (``plan``, which ``Method.start`` calls)
    takes the k-th step from the end at order at most k, so the step onto alpha-bar 1 is the data prediction itself."""

    steps_left: int | None = None  # None (not told): only the step onto alpha-bar 1 is of lower order

    def plan(self, steps: int) -> None:
        """Told the number of steps of the run before the first."""
        self.steps_left = steps

    def _capped(self, order: int) -> int:
        """``order``, at most the number of steps left (this one included); counts this step off."""
        if self.steps_left is not None:
            order = min(order, self.steps_left)
            self.steps_left -= 1
        return order


class UniPC(_LowerOrderFinal):
    """UniPC (Zhao et al. 2023) of order 1-3 as its authors write it, in data prediction: the UniP-p predictor and
    the UniC corrector, with B(h) = h ("bh1") or e^h - 1 ("bh2"). In lambda, with h = lambda_prev - lambda_t, the
    data predictions m (newest m_t; older m_k at r_k = (lambda_k - lambda_t) / h < 0) and D_k = (m_k - m_t) / r_k:

        predictor  x_prev = (sigma_prev / sigma_t) x_t + alpha_prev (1 - e^-h) m_t - alpha_prev B(-h) sum_k a_k D_k
        corrector  once the model has been called at the predicted x_prev (no extra call), the same step is redone
                   with D_p = m_prev - m_t at r_p = 1 added: ... - alpha_prev B(-h) sum_k c_k D_k

    where b_i = i! (-h) phi_{i+1}(-h) / B(-h), a solves sum_k a_k r_k^i = b_{i+1} over the p - 1 older nodes
    (a = 1/2 at order 2) and c the same system with the node r_p = 1 (c = 1/2 after a first-order predictor).
    The order of a step is at most the number of data predictions seen so far and at most the number of steps
    left (lower-order final steps, as in the authors' code and diffusers'), so the step onto alpha-bar 1 is the
    data prediction itself. At order 2 with bh2 the predictor is DPM-Solver++(2M). Equal to diffusers'
    UniPCMultistepScheduler (solver_order = 2 or 3, lower_order_final, final_sigmas_type="zero") on the same grid
    (tests/test_diffusers_agreement.py).
    """

    def __init__(self, variant: str = "bh2", order: int = 2) -> None:
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"unknown UniPC variant {variant!r}; choose bh1 or bh2")
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        self.variant, self.order = variant, order
        self.history: list[tuple[float, Tensor]] = []  # (lambda, x0_hat), newest first, at most ``order``
        self.last: tuple[Tensor, float, float, int] | None = None  # the last predictor step: (x_t, lambda_t, sigma_t, its order)

    def _b(self, h: float) -> float:
        """B(hh) at hh = -h: -h (bh1) or e^-h - 1 (bh2)."""
        return -h if self.variant == "bh1" else math.expm1(-h)

    def _update(self, x_s: Tensor, lam_s: float, sigma_s: float, lam: float, alpha: float, sigma: float, order: int,
                new: Tensor | None) -> Tensor:
        """The step from level s (data prediction history[0]) to lambda with ``order`` nodes; with ``new`` (the data
        prediction at the target) the corrector, else the predictor."""
        h = lam - lam_s
        b_h = self._b(h)
        m_s = self.history[0][1]
        out = (sigma / sigma_s) * x_s + (alpha * -math.expm1(-h)) * m_s
        r = [(lam_k - lam_s) / h for lam_k, _ in self.history[1:order]]
        d = [(m_k - m_s) / r_k for r_k, (_, m_k) in zip(r, self.history[1:order])]
        if new is not None:
            r, d = r + [1.0], d + [new - m_s]
        if not d:
            return out
        if len(d) == 1 and (new is None or order == 1):
            coef = [0.5]
        else:
            rhs = [math.factorial(i) * -h * phi(i + 1, -h) / b_h for i in range(1, len(d) + 1)]
            coef = np.linalg.solve(np.array([[r_k**i for r_k in r] for i in range(len(d))]), np.array(rhs)).tolist()
        total = sum(float(c) * d_k for c, d_k in zip(coef, d))
        return out - (alpha * b_h) * total

    def step(self, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, evaluate=None) -> tuple[Tensor, float]:
        lam_t, alpha_t, sigma_t = lambda_of(ab_t), math.sqrt(ab_t), math.sqrt(1 - ab_t)
        if self.last is not None:  # UniC: redo the step that led here through the new data prediction x0
            x_s, lam_s, sigma_s, order = self.last
            x = self._update(x_s, lam_s, sigma_s, lam_t, alpha_t, sigma_t, order, x0)
        self.history = [(lam_t, x0)] + self.history[: self.order - 1]
        order = self._capped(len(self.history))
        if ab_prev >= 1.0:
            return x0, 0.0
        lam_prev, alpha_prev, sigma_prev = lambda_of(ab_prev), math.sqrt(ab_prev), math.sqrt(1 - ab_prev)
        self.last = (x, lam_t, sigma_t, order)
        return self._update(x, lam_t, sigma_t, lam_prev, alpha_prev, sigma_prev, order, None), 0.0


# Adams-Bashforth weights for equal steps, newest value first: the integral over the next step of the polynomial
# through the latest k values, in units of the step
ADAMS_BASHFORTH = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


class IPNDM(_LowerOrderFinal):
    """iPNDM (Zhang & Chen 2022, the "improved PNDM" of the DEIS paper): Adams-Bashforth on the DDIM ODE written in
    xbar = x / alpha against sbar = sigma / alpha, where it reads d xbar / d sbar = eps_hat. One step:

        xbar_prev = xbar_t + (sbar_prev - sbar_t) * sum_j c_j eps_j      (c = ADAMS_BASHFORTH[k], eps_j newest first)

    The weights are the equal-step ones whatever the grid, as its authors use them: on a grid that is not uniform
    in sbar the method is then only second-order as the steps shrink (tests/test_solvers.py), but at 5-12 calls the
    fixed weights extrapolate eps in the step index, which is far gentler than a polynomial in sbar (which spans
    156 to 0.01 on the linear schedule); the variable-step weights measured 2-10x worse on the exact mixtures.
    k is at most ``order``, the number of eps_hat seen (the warm start with lower orders) and the number of steps
    left (lower-order final steps: the step onto alpha-bar 1 is the data prediction itself, the one before it
    second-order, ...); without the final ones, the long last steps extrapolate eps far and the 64-D mixture
    oracle at 8 calls lands 0.023 above its limit instead of 0.000 (docs/solvers.md). With k = 1 the step is DDIM
    (eta = 0) exactly.
    """

    def __init__(self, order: int = 3) -> None:
        if order not in ADAMS_BASHFORTH:
            raise ValueError(f"iPNDM order must be 1 to 4, got {order}")
        self.order = order
        self.history: list[Tensor] = []  # eps_hat, newest first, at most ``order``

    def step(self, x: Tensor, eps: Tensor, x0: Tensor, ab_t: float, ab_prev: float, evaluate=None) -> tuple[Tensor, float]:
        self.history = [eps] + self.history[: self.order - 1]
        k = self._capped(len(self.history))
        if ab_prev >= 1.0:
            return x0, 0.0
        alpha_t, alpha_prev = math.sqrt(ab_t), math.sqrt(ab_prev)
        dsbar = math.sqrt(1 - ab_prev) / alpha_prev - math.sqrt(1 - ab_t) / alpha_t
        slope = sum(c * e for c, e in zip(ADAMS_BASHFORTH[k], self.history))
        return (alpha_prev / alpha_t) * x + (alpha_prev * dsbar) * slope, 0.0
