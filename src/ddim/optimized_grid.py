"""Step grids fitted to one model, method and step count.

The grid search minimises the global error of a deterministic sampler: the mean squared distance
between its S-step result and a fine reference solution (``reference_steps`` steps of unipc3 on
the log-SNR grid) from the same x_T, on a fitting batch. It starts from the log-SNR grid, keeps
the first level at T - 1 (where x_T ~ N(0, I) holds), and moves one level at a time in lambda
(coordinate search with step sizes halving from ``start_step``), accepting a move only if the
loss falls. A second batch (other seeds) checks that the gain is not an artefact of the fit.

``pick_grid`` searches differently: it draws with every grid of a small family (``family_grids``: grids polynomial in
time, ``timesteps.power_grid``, ending at t = 0 or open, plus the paper's ``quadratic``, ``logsnr`` and EDM's
``karras``) and keeps the one with the lowest score, FD against the model's data set in ``ddim optimize-grid
--search family``. Which grid wins depends on the data more than on the solver (docs/solvers.md: images of clothes and two far-apart modes want calls
spread evenly in time, tight clusters want them packed near t = 0), and a score on the data is what a user cares
about; the family keeps the search to a few dozen draws and the choice readable. Given several methods it searches
method x grid, since which solver wins at few calls depends on the model too (on Fashion-MNIST at 5 calls the authors'
UniPC-3 led ours; on the exact mixtures ours led theirs).

Grids are saved in the model folder as ``grids.json``: ``{"unipc": {"10": {"grid": [999, ...], ...}}, ...}``
with the fit's losses beside them; ``ddim sample --spacing optimized`` reads them. A method x grid search is saved
under ``"auto"``, keyed by model calls, each entry naming its method; ``method="auto"`` reads it first. A model shipped
inside the package is read-only to the tool: grids fitted to it go to the user cache
($DDIM_CACHE/grids/NAME/grids.json, see ``grids_file``) and are read over the shipped ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .methods import get_method
from .sampling import sample
from .schedule import NoiseSchedule, lambda_of
from .timesteps import nearest_steps, power_grid, timesteps

__all__ = ["optimize_grid", "pick_grid", "check_methods", "family_grids", "FAMILY_POWERS", "save_grid", "load_grid", "load_auto", "adopted_grids", "grids_file",
           "GRIDS_FILE", "AUTO_KEY", "AUTO_METHODS"]

GRIDS_FILE = "grids.json"
AUTO_KEY = "auto"  # grids.json's entry for method x grid searches, keyed by model calls; each names its method
AUTO_METHODS = ("unipc3", "unipc3-bh2", "ipndm3")  # the methods such a search tries by default (ddim optimize-grid --method auto)


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


def check_methods(methods: Sequence[str], steps: int, T: int, reference_steps: int | None = None,
                  equal_calls: bool | None = None) -> None:
    """``check_fit`` for each method. Several methods are compared at equal model calls (as is a pick for ``method="auto"``,
    whose budget counts calls: ``equal_calls``), so each must take one per step."""
    for m in methods:
        check_fit(m, steps, reference_steps or steps + 1, T)
        if (len(methods) > 1 if equal_calls is None else equal_calls) and get_method(m).calls_per_step != 1:
            raise ValueError(f"methods are compared at equal model calls, one per step; {m!r} takes {get_method(m).calls_per_step}")


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


FAMILY_POWERS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def family_grids(schedule: NoiseSchedule, steps: int) -> dict[str, list[int]]:
    """The candidates of ``pick_grid`` for ``steps`` levels, by name; a grid equal to an earlier one is left out."""
    T = len(schedule)
    grids = {}
    for power in FAMILY_POWERS:
        for open_end in (False, True):
            grids[f"time-power {power:g}{' open' if open_end else ''}"] = power_grid(T, steps, power, open_end)
    for spacing in ("quadratic", "quadratic-open", "logsnr", "karras"):
        grids[spacing] = timesteps(T, steps, spacing, schedule.alphas_cumprod).tolist()
    seen, out = set(), {}
    for name, grid in grids.items():
        if tuple(grid) not in seen:
            seen.add(tuple(grid))
            out[name] = grid
    return out


def pick_grid(model, schedule: NoiseSchedule, steps: int, method: str | Sequence[str], fit: Tensor, check: Tensor, score, *,
              prediction: str = "eps", baseline: list[int] | None = None, baseline_method: str | None = None, margin: float = 0.05,
              progress: bool = True) -> dict:
    """The grid of ``family_grids`` whose samples from noise batch ``fit`` score lowest (``score``: samples -> float,
    lower is better, e.g. FD). With several methods (one model call per step each), every method x grid pair is a
    candidate, named "METHOD GRID". The winner and ``baseline`` (a grid to compare with, e.g. auto's table grid, drawn
    with ``baseline_method``, by default the first method) are then scored on the ``check`` batch, and the winner is
    kept only if it beats the baseline there too, by at least ``margin`` (a fraction of the baseline's score); else
    ``grid`` / ``method`` are the baseline's and ``choice`` is "baseline". A gain that is only the fit batch's luck, or
    too small to tell from FD's noise, is not adopted. Returns a dict with ``method``, ``grid``, ``choice`` (its family
    name) and every score."""
    methods = [method] if isinstance(method, str) else list(method)
    check_methods(methods, steps, len(schedule))

    def run(x_T: Tensor, m: str, grid: list[int]) -> float:
        with torch.inference_mode():
            x = sample(model, schedule, x_T, method=m, prediction=prediction, timesteps=grid)
        return float(score(x)) if torch.isfinite(x).all() else math.inf

    family = family_grids(schedule, steps)
    candidates = {(name if len(methods) == 1 else f"{m} {name}"): (m, grid) for m in methods for name, grid in family.items()}
    items = _bar(candidates.items(), progress, desc=f"{steps}-step grids for {'/'.join(methods)}")
    scores = {name: run(fit, *pair) for name, pair in items}
    choice = min(scores, key=scores.get)
    chosen, grid = candidates[choice]
    result = {"method": chosen, "grid": grid, "search": "family", "choice": choice, "fit_scores": scores,
              "check_score": run(check, chosen, grid), "fit_images": len(fit), "check_images": len(check)}
    if baseline is not None:
        base_method = baseline_method or methods[0]
        result.update(baseline=list(baseline), baseline_method=base_method, baseline_check_score=run(check, base_method, list(baseline)))
        if (base_method, list(baseline)) != (chosen, grid) and result["check_score"] > (1 - margin) * result["baseline_check_score"]:
            # the fit batch's winner did not beat the baseline on the check batch by the margin: keep the baseline
            result.update(method=base_method, grid=list(baseline), choice="baseline")
    return result


def _bar(items, progress: bool, desc: str):
    if not progress:
        return items
    from tqdm.auto import tqdm

    items = list(items)
    return tqdm(items, desc=desc, unit="grid", dynamic_ncols=True)


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


def _merged(folder: str | Path) -> dict:
    """The folder's own grids.json with the user's (``grids_file``) read over it."""
    own, user = Path(folder) / GRIDS_FILE, grids_file(folder)
    data = _read(own)
    if user != own:
        for m, grids in _read(user).items():
            data.setdefault(m, {}).update(grids)
    return data


def adopted_grids(folder: str | Path) -> dict[str, list[int]]:
    """Method -> the step counts with a fitted grid that ``method="auto"`` would use (family searches that kept the
    table's grid left out), for ``ddim info``."""
    out = {}
    for method, grids in _merged(folder).items():
        steps = sorted(int(s) for s, r in grids.items() if r.get("choice") != "baseline")
        if steps:
            out[method] = steps
    return out


def load_auto(folder: str | Path, calls: int) -> tuple[str, list[int]]:
    """(method, grid) that a method x grid family search (``ddim optimize-grid --method auto``) adopted for ``calls``
    model calls; ValueError where there is none, or the search kept the table's choice."""
    entry = _merged(folder).get(AUTO_KEY, {}).get(str(calls))
    if entry is None or entry.get("choice") == "baseline":
        raise ValueError(f"no method x grid choice fitted for {calls} calls in {folder}")
    return entry["method"], entry["grid"]


def load_grid(folder: str | Path, method: str, steps: int, adopted_only: bool = False) -> list[int]:
    """The grid fitted for (method, steps): the user's (``grids_file``) over the folder's own grids.json. With
    ``adopted_only`` (as ``method="auto"`` reads them), a family search that kept its baseline counts as no grid."""
    own, user = Path(folder) / GRIDS_FILE, grids_file(folder)
    data = _merged(folder)
    try:
        entry = data[method][str(steps)]
        if adopted_only and entry.get("choice") == "baseline":
            raise KeyError(steps)
        return entry["grid"]
    except KeyError:
        have = ", ".join(f"{m} S={s}" for m, d in data.items() for s in d) or "none"
        where = own if user == own else f"{own} or {user}"
        raise ValueError(f"no fitted {steps}-step grid for {method} in {where} (have: {have}); make one with "
                         f"'ddim optimize-grid MODEL --method {method} --steps {steps}'") from None
