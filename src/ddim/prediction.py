"""What a network predicts: eps, x0 or v, and the one place that converts between them.

With a = sqrt(ab_t), s = sqrt(1 - ab_t) and x_t = a x0 + s eps (DDIM eq. 4):

    eps -> x0:  x0  = (x_t - s eps) / a            (DDIM eq. 9, the "predicted x0")
    x0  -> eps: eps = (x_t - a x0) / s
    v        :  v   = a eps - s x0                 (Salimans & Ho 2022, eq. in sec. 4)
                x0  = a x_t - s v,   eps = s x_t + a v
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .config import PREDICTIONS, check_prediction

__all__ = ["PREDICTIONS", "check_prediction", "network_output", "to_eps_x0", "eps_x0_to", "eps_from_x0"]

def network_output(out: Any) -> Tensor:
    """The tensor a network returned: diffusers' output objects (``.sample``) and tuples are unwrapped."""
    out = getattr(out, "sample", out)
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out


def to_eps_x0(out: Tensor, x_t: Tensor, ab: float | Tensor, prediction: str) -> tuple[Tensor, Tensor]:
    """Turn a network output of type ``prediction`` at (x_t, ab_t) into (eps-hat, x0-hat)."""
    a, s = ab**0.5, (1 - ab) ** 0.5
    if prediction == "eps":
        if _is_zero(a):
            raise ValueError(
                "alpha-bar is 0 at this step (zero terminal SNR), where an eps-prediction cannot give x0; "
                "use a v- or x0-prediction model, or a schedule without zero terminal SNR"
            )
        return out, torch.sub(x_t, out, alpha=s).div_(a) if isinstance(out, Tensor) and isinstance(s, float) else (x_t - s * out) / a
    if prediction == "x0":
        return eps_from_x0(out, x_t, ab), out
    if prediction == "v":
        return s * x_t + a * out, a * x_t - s * out
    check_prediction(prediction)
    raise AssertionError("unreachable")


def eps_from_x0(x0: Tensor, x_t: Tensor, ab: float | Tensor) -> Tensor:
    """eps consistent with x_t and a (possibly clipped) x0: (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""
    return (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5


def eps_x0_to(eps: Tensor, x0: Tensor, ab: float | Tensor, prediction: str) -> Tensor:
    """The training target of type ``prediction`` for a noise eps and clean x0 at level ab."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return ab**0.5 * eps - (1 - ab) ** 0.5 * x0
    check_prediction(prediction)
    raise AssertionError("unreachable")


def _is_zero(a: float | Tensor) -> bool:
    return bool((a == 0).any()) if isinstance(a, Tensor) else a == 0
