"""The registry of sampling methods: the only place a method's name and properties are defined.

Sampling (sampling.py), grid fitting (optimized_grid.py), the auto policy (policy.py), the CLI and the
benchmarks read ``METHODS``. To add a method: write its stepper (an object with
``step(x, eps, x0, ab_t, ab_prev, evaluate) -> (mean, noise std)``, see steps.py) and add one entry here.
The steppers are imported when a run starts, so the registry itself loads without torch (the CLI's parser reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .steps import Stepper

__all__ = ["Method", "METHODS", "get_method", "INVERSION_METHODS"]


@dataclass(frozen=True)
class Method:
    """A sampler: how to start one run of it, and what it costs and guarantees.

    ``order``: the order of convergence of the deterministic method (pinned in tests/test_solvers.py);
    for a stochastic method the order of the polynomial its step integrates. ``stochastic``: draws
    fresh noise every step whatever eta is; ``takes_eta``: eta (DDIM eq. 16) applies.
    ``calls_per_step``: model calls per step; the last step (to alpha-bar 1) always costs one.
    """

    name: str
    description: str
    make: Callable[[float], Stepper] = field(repr=False)  # eta -> a fresh stepper for one run
    order: int = 1
    stochastic: bool = False
    takes_eta: bool = False
    calls_per_step: int = 1

    def start(self, eta: float, steps: int) -> Stepper:
        """A fresh stepper for a run of ``steps`` visited levels; a stepper that takes lower-order final steps
        (``plan``) is told how many there are."""
        stepper = self.make(eta)
        if hasattr(stepper, "plan"):
            stepper.plan(steps)
        return stepper

    def calls(self, steps: int) -> int:
        """Model calls per sample for ``steps`` visited levels."""
        return self.calls_per_step * (steps - 1) + 1

    def steps_for(self, calls: int) -> int:
        """The most visited levels that ``calls`` model calls per sample pay for (at least 1)."""
        return max(1, (calls - 1) // self.calls_per_step + 1)

    def is_stochastic(self, eta: float = 0.0) -> bool:
        return self.stochastic or (self.takes_eta and eta != 0)

    def __str__(self) -> str:
        return self.description


def _stepper(name: str) -> Callable[[float], Stepper]:
    """eta -> ``steps.name(eta)``."""
    return lambda eta: getattr(import_module(".steps", __package__), name)(eta)


def _solver(name: str, *args) -> Callable[[float], Stepper]:
    """eta -> ``solvers.name(*args)`` (these methods take no eta)."""
    return lambda eta: getattr(import_module(".solvers", __package__), name)(*args)


def _multistep(order: int, corrector: bool = False, stochastic: bool = False) -> Callable[[float], Stepper]:
    return _solver("Multistep", order, corrector, stochastic)


_ENTRIES = [
    Method("ddim", "generalized DDIM step (eq. 12); eta=0 deterministic ODE solver, eta=1 DDPM-like", _stepper("DDIMStep"), takes_eta=True),
    Method("ddpm", "ancestral DDPM: posterior mean and variance beta-tilde of the (respaced) chain", _stepper("DDPMStep"), stochastic=True),
    Method("sigma-hat", "DDPM posterior mean with the 'fixed large' noise sqrt(1 - ab_t/ab_prev) (DDIM Table 1)", _stepper("SigmaHatStep"), stochastic=True),
    Method("dpm++2m", "DPM-Solver++(2M) as its authors and k-diffusion write it (x0 linear in lambda, coefficient 1/(2r)), 1 call/step",
           _solver("DPMSolverPP2M"), order=2),
    Method("dpm++3m", "3rd-order multistep exponential integrator in x0 prediction (DPM-Solver++ 3M family), 1 call/step",
           _multistep(3), order=3),
    Method("dpm++2m-sde", "stochastic 2nd-order multistep integrator of the reverse SDE (DDPM noise), 1 call/step",
           _multistep(2, stochastic=True), order=2, stochastic=True),
    Method("dpm++3m-sde", "stochastic 3rd-order multistep integrator of the reverse SDE (DDPM noise), 1 call/step",
           _multistep(3, stochastic=True), order=3, stochastic=True),
    Method("unipc", "2nd-order multistep predictor + corrector through the new x0_hat (UniPC family, order 3), 1 call/step",
           _multistep(2, corrector=True), order=3),
    Method("unipc3", "3rd-order multistep predictor + corrector through the new x0_hat (UniPC family, order 4), 1 call/step",
           _multistep(3, corrector=True), order=4),
    Method("unipc-bh1", "UniPC-2 as its authors write it: UniP-2 predictor + UniC corrector with B(h) = h, 1 call/step",
           _solver("UniPC", "bh1"), order=3),
    Method("unipc-bh2", "UniPC-2 as its authors write it: UniP-2 predictor + UniC corrector with B(h) = e^h - 1, 1 call/step",
           _solver("UniPC", "bh2"), order=3),
    Method("unipc3-bh1", "UniPC-3 as its authors write it: UniP-3 predictor + UniC corrector with B(h) = h, 1 call/step",
           _solver("UniPC", "bh1", 3), order=3),  # 3, not 4: its lower-order final steps (tests/test_solvers.py)
    Method("unipc3-bh2", "UniPC-3 as its authors write it: UniP-3 predictor + UniC corrector with B(h) = e^h - 1, 1 call/step",
           _solver("UniPC", "bh2", 3), order=3),
    Method("ipndm", "iPNDM (DEIS paper): Adams-Bashforth up to order 4 on eps against sigma/alpha with equal-step weights, "
           "lower-order warm start and lower-order final steps, 1 call/step",
           _solver("IPNDM", 4), order=3),  # 3, not 4: its lower-order final steps (tests/test_solvers.py)
    Method("ipndm3", "iPNDM with Adams-Bashforth up to order 3 (else as ipndm), 1 call/step", _solver("IPNDM", 3), order=3),
    Method("heun", "Heun's 2nd-order method on x/alpha vs sigma/alpha (EDM); 2 calls/step, the last step 1", _stepper("HeunStep"),
           order=2, calls_per_step=2),
]
METHODS: dict[str, Method] = {m.name: m for m in _ENTRIES}

INVERSION_METHODS: dict[str, str] = {
    "ddim": "plain DDIM inversion: the eta=0 step run towards noise, eps taken at the current point (1 call/step)",
    "fixed-point": "exact inversion: solves for the point the eta=0 step maps back onto x (type-II Anderson with history; 1 + iterations calls/step)",
}


def get_method(name: str) -> Method:
    """The registry entry of ``name``, or a ValueError listing the choices."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None

