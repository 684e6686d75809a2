"""Step grids fitted to one model, method and step count.

The grid search minimises the global error of a deterministic sampler: the mean squared distance
between its S-step result and a fine reference solution (``reference_steps`` steps of unipc3 on
the log-SNR grid) from the same x_T, on a fitting batch. It starts from the log-SNR grid, keeps
the first level at T - 1 (where x_T ~ N(0, I) holds), and moves one level at a time in lambda
(coordinate search with step sizes halving from ``start_step``), accepting a move only if the
loss falls. A second batch (other seeds) checks that the gain is not an artefact of the fit.

Grids are saved in the model folder as ``grids.json``: ``{"unipc": {"10": [999, ...]}, ...}``
with the fit's losses beside them; ``ddim sample --spacing optimized`` reads them. A model shipped
inside the package is read-only to the tool: grids fitted to it go to the user cache
($DDIM_CACHE/grids/NAME/grids.json, see ``grids_file``) and are read over the shipped ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .methods import get_method
from .sampling import sample
from .schedule import NoiseSchedule, lambda_of
from .timesteps import nearest_steps, timesteps

__all__ = ["optimize_grid", "save_grid", "load_grid", "grids_file", "GRIDS_FILE"]

GRIDS_FILE = "grids.json"


def _loss(model, schedule, x_T: Tensor, ref: Tensor, grid: list[int], method: str, prediction: str) -> float:
    with torch.inference_mode():
        x = sample(model, schedule, x_T, method=method, prediction=prediction, timesteps=grid)
    return float((x.double() - ref.double()).pow(2).flatten(1).sum(1).mean())


def check_fit(method: str, steps: int, reference_steps: int, T: int) -> None:
    """The settings of a fit, checked before any model call."""
    if get_method(method).stochastic:
        raise ValueError(f"grids are fitted for deterministic methods; {method!r} is stochastic")
    if not 3 <= steps <= min(T, 200):
        raise ValueError(f"steps must lie in 3..{min(T, 200)} for a fitted grid, got {steps}")
    if not min(reference_steps, T) > steps:
        raise ValueError(f"reference_steps (--reference-steps) must be more than the fitted grid's {steps} steps "
                         f"(at most T = {T} are used), got {reference_steps}")


def optimize_grid(model, schedule: NoiseSchedule, steps: int, method: str, fit: Tensor, check: Tensor, *, prediction: str = "eps",
                  reference_steps: int = 200, start_step: float = 0.4, rounds: int = 3, progress: bool = True) -> dict:
    """Fit a grid of ``steps`` levels for ``method`` on noise batch ``fit``; report its loss and the log-SNR
    grid's on ``fit`` and on ``check``. Returns a dict with ``grid`` and the losses."""
    check_fit(method, steps, reference_steps, len(schedule))
    T = len(schedule)
    lam_of = lambda_of(schedule.alphas_cumprod.numpy())  # decreasing in t

    def to_t(lams: np.ndarray) -> list[int]:
        return nearest_steps(lam_of, lams).tolist()

    with torch.inference_mode():
        refs = [sample(model, schedule, x, method="unipc3", spacing="logsnr", steps=min(reference_steps, T), prediction=prediction) for x in (fit, check)]
    start = timesteps(T, steps, "logsnr", schedule.alphas_cumprod).tolist()
    lams, current = lam_of[start].copy(), start
    best = _loss(model, schedule, fit, refs[0], start, method, prediction)
    first = best
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=rounds * (steps - 1) * 2, desc=f"fitting a {steps}-step grid for {method}", unit="try", dynamic_ncols=True)
    delta = start_step
    for _ in range(rounds):
        for k in range(1, steps):
            for sign in (1.0, -1.0):
                trial = lams.copy()
                trial[k] += sign * delta
                hi = lams[k + 1] if k + 1 < steps else lam_of[0]
                if not lams[k - 1] < trial[k] <= hi:
                    if bar is not None:
                        bar.update(1)
                    continue
                grid = to_t(trial)
                loss = _loss(model, schedule, fit, refs[0], grid, method, prediction) if grid != current else math.inf
                if loss < best:
                    best, lams, current = loss, trial, grid
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{best:.3g}")
        delta /= 2
    if bar is not None:
        bar.close()
    grid = current
    return {
        "grid": grid, "start": start, "fit_loss": best, "fit_loss_logsnr": first,
        "check_loss": _loss(model, schedule, check, refs[1], grid, method, prediction),
        "check_loss_logsnr": _loss(model, schedule, check, refs[1], start, method, prediction),
        "reference_steps": reference_steps, "fit_images": len(fit), "check_images": len(check),
    }


def grids_file(folder: str | Path) -> Path:
    """Where grids fitted to the model in ``folder`` are written: its own grids.json, or for a model shipped
    inside the package (never written to) the user cache's grids/NAME/grids.json."""
    from .files import cache_dir
    from .models import shipped_name

    name = shipped_name(folder)
    return cache_dir("grids", name, GRIDS_FILE) if name else Path(folder) / GRIDS_FILE


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and fit the grids again") from None


def save_grid(folder: str | Path, method: str, steps: int, result: dict) -> Path:
    """Add a fitted grid to ``grids_file(folder)``; returns that file."""
    path = grids_file(folder)
    data = _read(path)
    data.setdefault(method, {})[str(steps)] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return path


def load_grid(folder: str | Path, method: str, steps: int) -> list[int]:
    """The grid fitted for (method, steps): the user's (``grids_file``) over the folder's own grids.json."""
    own, user = Path(folder) / GRIDS_FILE, grids_file(folder)
    data = _read(own)
    if user != own:
        for m, grids in _read(user).items():
            data.setdefault(m, {}).update(grids)
    try:
        return data[method][str(steps)]["grid"]
    except KeyError:
        have = ", ".join(f"{m} S={s}" for m, d in data.items() for s in d) or "none"
        where = own if user == own else f"{own} or {user}"
        raise ValueError(f"no fitted {steps}-step grid for {method} in {where} (have: {have}); make one with "
                         f"'ddim optimize-grid MODEL --method {method} --steps {steps}'") from None
