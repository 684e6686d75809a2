"""``method="auto"`` / ``spacing="auto"``: which sampler and grid to use for a budget of model calls.

The one home of the choice; ``ddim.sample``, ``ddim.generate`` and the CLI all resolve through
``resolve``. With ``method="auto"`` the ``steps`` argument is read as the number of model calls per
sample, and the method's own step count follows from it (``Method.steps_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .methods import METHODS, get_method

__all__ = ["Choice", "resolve", "recommended", "RECOMMENDED", "FITTED_GRID_UP_TO", "AUTO"]

AUTO = "auto"

# the best method and grid per number of model calls without a fitted grid, from
# docs/benchmarks/solvers.md (see docs/solvers.md): (max calls, method, spacing), first match wins.
# Below 8 calls the multistep solvers on the log-SNR grid lost to plain DDIM on the digits model.
RECOMMENDED = ((7, "ddim", "uniform"), (10**9, "unipc3", "logsnr"))
FITTED_GRID_UP_TO = 8  # at <= 8 calls a grid fitted to the model (ddim optimize-grid) beat both, when the folder has one


@dataclass(frozen=True)
class Choice:
    """A resolved sampler: method, spacing name, visited levels, and an explicit grid where one was loaded."""

    method: str
    spacing: str
    steps: int
    timesteps: tuple[int, ...] | None = None


def recommended(calls: int) -> tuple[str, str]:
    """(method, spacing) that measured best at ``calls`` model calls per sample."""
    if calls == 1:
        return "ddim", "trailing"  # one step must start from the noisiest level, t = T - 1 (uniform's one step is t = 0)
    for limit, method, spacing in RECOMMENDED:
        if calls <= limit:
            return method, spacing
    return RECOMMENDED[-1][1:]


def resolve(method: str, spacing: str, steps: int, eta: float = 0.0, folder: str | Path | None = None) -> Choice:
    """Turn 'auto' / 'optimized' into a concrete method, spacing and grid.

    - ``method="auto"``: ``steps`` counts model calls. With eta != 0, DDIM (the only method eta applies to).
      Otherwise a grid fitted to the model (``folder``/grids.json, unipc) at <= FITTED_GRID_UP_TO calls when
      ``spacing`` is auto too, else the ``RECOMMENDED`` method; ``spacing="auto"`` takes its grid.
    - an explicit method with ``spacing="auto"``: the DDIM paper's uniform grid.
    - ``spacing="optimized"``: the grid fitted for (method, steps) in ``folder``/grids.json.
    """
    if method != AUTO:
        get_method(method)
    if method == AUTO:
        if eta != 0:
            method = "ddim"
        else:
            if spacing == AUTO and folder is not None and steps <= FITTED_GRID_UP_TO:
                from .optimized_grid import load_grid

                try:
                    return Choice("unipc", "optimized", steps, tuple(load_grid(folder, "unipc", steps)))
                except ValueError:
                    pass  # no fitted grid in the folder: the table's choice
            method, best = recommended(steps)
            steps = METHODS[method].steps_for(steps)
            spacing = best if spacing == AUTO else spacing
    if spacing == AUTO:
        spacing = "uniform"
    if spacing == "optimized":
        if folder is None:
            raise ValueError("spacing 'optimized' reads a grid fitted to a model folder; use ddim.generate with a loaded model, "
                             "or pass timesteps=load_grid(folder, method, steps)")
        from .optimized_grid import load_grid

        return Choice(method, spacing, steps, tuple(load_grid(folder, method, steps)))
    return Choice(method, spacing, steps)
