"""How far can a static grid take a method? A grid fitted to each mixture in hindsight, on the FD it is scored by.

grid_sweep.py picks among a few named grids; this asks what the best grid of a given number of calls could do on each
bed, with the bed known. Starting from ``--start`` (the table's grid at 8-10 calls, ``quadratic-0.9``), it moves one
level at a time in lambda = log(alpha / sigma), by +-0.4 and then halving steps (``--rounds`` rounds; the first level
may move up to T - 1), keeping a move only if the bed's FD above its common limit falls: a coordinate search on the very
score of the other pages, from the very x_T it is scored on. The result is a ceiling for static grids, not a grid to
ship: it has seen its x_T. ``check`` scores the fitted grid from a second x_T (other seeds, its own limit), to show how
much of the gain is the grid and how much is fitting that x_T's draws.

    python benchmarks/grid_ceiling.py --method ipndm3 --calls 8 --beds held-out fresh --workers 2 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from _tables import machine_line, measured_rows, page_command, page_options
from grid_sweep import BED_SETS, bed_setup, beds_of, grid_kwargs, grid_levels
from solver_family import _score

import ddim
from ddim.schedule import lambda_of
from ddim.timesteps import nearest_steps


def fit_grid(run, tau: list[int], lam: np.ndarray, rounds: int) -> tuple[list[int], float]:
    """Coordinate search in lambda from grid ``tau`` for the lowest ``run(grid)``; returns (grid, its value)."""
    lams, best = lam[np.asarray(tau)].astype(float), run(tau)
    current, delta = list(tau), 0.4
    for _ in range(rounds):
        for k in range(len(tau)):
            for sign in (1.0, -1.0):
                trial = lams.copy()
                trial[k] += sign * delta
                # lambda rises along the grid (t falls); the first level may reach T - 1, the last t = 0
                lo, hi = lams[k - 1] if k else lam[-1], lams[k + 1] if k + 1 < len(tau) else lam[0]
                if not ((lo < trial[k] if k else lo <= trial[k]) and (trial[k] < hi if k + 1 < len(tau) else trial[k] <= hi)):
                    continue
                grid = nearest_steps(lam, trial).tolist()
                if grid == current or len(set(grid)) < len(grid):
                    continue
                value = run(grid)
                if value < best:
                    best, lams, current = value, trial, grid
        delta /= 2
    return current, best


def bed_rows(bed: str, kw: dict, method: str, calls: list[int], start: str, rounds: int, samples: int) -> list[dict]:
    torch.set_num_threads(1)
    _, sched, model, x_T, score, limit = bed_setup(kw, samples)
    *_, check_T, _, check_limit = bed_setup(kw, samples, xt_seed=2)
    lam = lambda_of(sched.alphas_cumprod.double().numpy())
    rows = []
    for c in calls:
        def run(grid, x=x_T):
            with torch.inference_mode():
                return _score(score, ddim.sample(model, sched, x, method=method, timesteps=grid))

        tau = grid_levels(start, len(sched), ddim.METHODS[method].steps_for(c))
        fitted, value = fit_grid(run, tau, lam, rounds)
        rows.append(dict(bed=bed, method=method, calls=c, start_grid=" ".join(map(str, tau)), fitted=" ".join(map(str, fitted)),
                         limit=limit, start=(run(tau) - limit) / limit, fit=(value - limit) / limit,
                         check_limit=check_limit, check_start=(run(tau, check_T) - check_limit) / check_limit,
                         check_fit=(run(fitted, check_T) - check_limit) / check_limit))
        print(f"{bed} {c} calls: {rows[-1]['start']:+.3f} -> {rows[-1]['fit']:+.3f} (check {rows[-1]['check_start']:+.3f} -> "
              f"{rows[-1]['check_fit']:+.3f}) {fitted}", flush=True)
    return rows


def tables(rows: list[dict]) -> list[str]:
    lines = []
    for c in dict.fromkeys(r["calls"] for r in rows):
        have = [r for r in rows if r["calls"] == c]
        n = len(have)
        lines += ["", f"## {c} calls: FD above the limit / the limit", "",
                  f"Within 5% of the limit: the start grid on {sum(r['start'] <= 0.05 for r in have)} of {n} beds, the fitted grid on "
                  f"{sum(r['fit'] <= 0.05 for r in have)}; from the second x_T, {sum(r['check_start'] <= 0.05 for r in have)} and "
                  f"{sum(r['check_fit'] <= 0.05 for r in have)}.", "",
                  "| bed | start | fitted in hindsight | second x_T: start | second x_T: fitted | fitted grid |", "|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r['bed']} | {r['start']:+.3f} | {r['fit']:+.3f} | {r['check_start']:+.3f} | {r['check_fit']:+.3f} | {r['fitted']} |" for r in have]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="ipndm3", choices=[m for m, spec in ddim.METHODS.items() if not spec.stochastic])
    ap.add_argument("--calls", type=int, nargs="+", default=[8])
    ap.add_argument("--start", default="p2s0.9", help="the grid the search starts from (grid_sweep.py's names)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--beds", nargs="+", choices=list(BED_SETS), default=["held-out"])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1)
    page_options(ap, "grid-ceiling")
    args = ap.parse_args()
    try:
        grid_kwargs(args.start, 1000, 8)
    except ValueError as e:
        ap.error(str(e))
    beds = beds_of(args.beds)

    def measure():
        with ProcessPoolExecutor(args.workers) as pool:
            jobs = [pool.submit(bed_rows, b, kw, args.method, args.calls, args.start, args.rounds, args.samples) for b, kw in beds.items()]
            return [r for job in jobs for r in job.result()]

    rows = measured_rows(args, measure)
    page = args.out / f"{args.name}.md"
    machine = machine_line(page, args.render, f"Machine: {args.workers} processes of 1 CPU thread, torch {torch.__version__}. "
                                              f"{args.samples} samples per bed, float64.")
    text = [page_command("grid_ceiling.py", page, args.render), "", machine, "", __doc__.split("\n\n")[1], *tables(rows)]
    page.write_text("\n".join(text) + "\n")
    print("\n".join(tables(rows)))


if __name__ == "__main__":
    main()
