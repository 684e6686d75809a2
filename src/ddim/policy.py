"""``method="auto"`` / ``spacing="auto"``: which sampler and grid to use for a budget of model calls.

The one home of the choice; ``ddim.sample``, ``ddim.generate`` and the CLI all resolve through
``resolve``. With ``method="auto"`` the ``steps`` argument is read as the number of model calls per
sample, and the method's own step count follows from it (``Method.steps_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .methods import METHODS, get_method

__all__ = ["Choice", "resolve", "recommended", "RECOMMENDED", "AUTO"]

AUTO = "auto"

# the method and grid per number of model calls, from docs/benchmarks/solver-family.md and open-grids.md (7 exact
# mixtures, the digits and Fashion-MNIST models; see docs/solvers.md): (max calls, method, spacing), first match wins.
# 4-6 calls: the DDIM paper's quadratic curve (from 0.8 T) without the call at t = 0 ("quadratic-open"), with the
# authors' UniPC-3 (bh2) at 4-5 and our unipc3 at 6. Against "quadratic" (the table before) it gives up 0.03 FD on our
# 64-D oracle at 5 calls and gains 3.6 on the two-far-modes mixture, where the paper's grid, ending at t = 0, spent a
# call on a step that moves nothing (open-grids.md: at 5 calls it is within half the best peer's excess on 6 of 7
# mixtures, and 0.52 of it on the far-modes one). 7: unipc3 on "quadratic". 8-12: iPNDM (ipndm3) on "quadratic-0.9"
# (time-quadratic from 0.9 T): on the exact mixtures iPNDM reaches the limit at 8 calls where unipc3 did not (our 64-D
# oracle 0.0000 vs 0.0044 above it on time-quadratic, solver-family-ipndm.md); starting at 0.9 T rather than T - 1 puts
# it within 5% of the limit on 6 of 12 held-out 64-D mixtures at 8 calls (3 from T - 1) and 10 of 12 at 10 calls (8),
# oracle-draws-heldout.md. A grid that starts below T - 1 reads x_T as a draw at its first level, an error that does
# not shrink with more calls: on the far-modes mixture ipndm3 on quadratic-0.9 goes from 0.51 below the limit at 8
# calls to 0.10 above it at 12 and 0.90 at 20 (solver-family-q09.md), so from 13 calls the table starts at T - 1 again.
# At 11 and 12 calls that floor costs less than it saves: over the 40 mixtures from seven x_T draws each (280 pairs),
# within 5% of the limit on 204 / 198 pairs against 143 / 171 for unipc3 on time-quadratic (grid-sweep-11-14-xt-draws.md,
# grid-sweep-12-15-xt-draws.md); at 13 it is level (202 / 190, the same 33 beds by their median draw), at 15 behind.
# On the learned models iPNDM on time-quadratic was worse than unipc3 (solver-family-digits-ipndm.md,
# solver-family-fashion-ipndm.md); on quadratic-0.9 at 9, 11 and 12 calls it is not (solver-family-*-q09.md,
# seed-ranges-11-12-q09.md), and at 8 and 10 the shipped models have their own picks. From 13 calls: unipc3 on
# time-quadratic. On the 28 exact mixtures
# it is within 5% of the limit on 18-28 of them at 11-20 calls, against 7-23 for logsnr (the table before at 13 and up),
# and its worst excess falls to 0.04 of the limit at 20 (grid-sweep-top.md, grid-sweep-top-13-18.md). "quadratic-top"
# (the paper's curve from 0.8 T, first call at T - 1) was within 5% on more mixtures at 11-16 calls but is 1.2 FD above
# the limit on Fashion-MNIST at 11 calls (time-quadratic 0.05; solver-family-fashion-mnist-top.md): not used.
# 2-3 calls: not measured yet, plain DDIM.
# A model folder gets a method and grid picked for it by FD where a search adopted one (ddim optimize-grid --method
# auto --search family: the shipped Fashion-MNIST model has them for 4-8, 10 and 12 calls, digits for 4-5, 8 and 10).
RECOMMENDED = ((3, "ddim", "uniform"), (5, "unipc3-bh2", "quadratic-open"), (6, "unipc3", "quadratic-open"), (7, "unipc3", "quadratic"),
               (12, "ipndm3", "quadratic-0.9"), (10**9, "unipc3", "time-quadratic"))


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
      Otherwise, with ``spacing="auto"`` and a folder, the method and grid a method x grid search adopted for the
      model at that budget (``folder``/grids.json "auto", ``ddim optimize-grid --method auto``) where there is one;
      else the ``RECOMMENDED`` method; with ``spacing="auto"`` a grid fitted to the model for that method
      and step count (``folder``/grids.json, ``ddim optimize-grid``) where one exists and was adopted (a family
      search that kept the table's grid does not count), else the table's grid.
    - an explicit method with ``spacing="auto"``: the DDIM paper's uniform grid.
    - ``spacing="optimized"``: the grid fitted for (method, steps) in ``folder``/grids.json.
    """
    if method != AUTO:
        get_method(method)
    if method == AUTO:
        if eta != 0:
            method = "ddim"
        else:
            method, best = recommended(steps)
            calls, steps = steps, METHODS[method].steps_for(steps)
            if spacing == AUTO and folder is not None:
                from .optimized_grid import load_auto, load_grid

                try:  # a method x grid search for this budget (ddim optimize-grid --method auto)
                    chosen, grid = load_auto(folder, calls)
                    return Choice(chosen, "optimized", METHODS[chosen].steps_for(calls), tuple(grid))
                except ValueError:
                    pass
                try:
                    return Choice(method, "optimized", steps, tuple(load_grid(folder, method, steps, adopted_only=True)))
                except ValueError:
                    pass  # no grid fitted for this method and step count: the table's grid
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
