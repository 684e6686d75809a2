"""Method x grid x budget on many exact mixtures at once: how often each choice is at the limit, and the best in hindsight.

The tool behind the choices of ``ddim.policy.RECOMMENDED`` with no model folder. It runs every method on every grid at
every budget on the exact Gaussian mixtures of the other pages (``--beds``: the seven of solver_family.py, the nine of
oracle_draws.py and its twelve held-out ones, 28 in all, and with ``fresh`` its twelve fresh ones of four shapes, 40),
each from its own shared x_T of 2,000 draws, float64. Entries
are FD above the bed's common limit (solver_family.py's: unipc3 and dpm++2m at 100 calls from the same x_T), divided
by the limit: the issue's target at 8 and 10 calls is at most 0.05.

A grid is a named spacing (``ddim.SPACINGS``) or a time-power curve ``pP[sF][o][t]``: t_i = round(F (T - 1) u_i^P)
(``timesteps.power_grid``; F = 1 unless given); ``o`` leaves out the call at t = 0 (open end); ``t`` moves the first
level to T - 1, so the curve's interior is kept but x_T is read where it is drawn. ``p2`` is time-quadratic, ``p2s0.9``
is ``quadratic-0.9``, ``p2s0.8t`` is ``quadratic-top`` (the DDIM paper's curve from 0.8 T, first call at T - 1). Any grid
may end in ``@D``: every level moved by D in lambda = log(alpha / sigma) (``shift_grid``; D < 0 towards noise). Data c
times wider looks at lambda + log c as data of scale 1 looks at lambda, so its grid is the other's moved by -log c.
The method ``auto`` is ``ddim.sample(method="auto")`` with no model folder: the table's method and grid at each budget.
``--peers`` also runs the six peer options of oracle_draws.py (k-diffusion, diffusers) from the same x_T, so each choice
is measured against the issue's 5-call target too: at most half the best peer's excess, counted as met where the best
peer is at the limit or below it and the choice is within 5% of it.

Each (bed, x_T seed)'s limit costs 200 calls, more than most sweeps' choices together, and depends only on the bed, the
x_T and torch: it is kept in ``benchmarks/.cache/limits/`` (``$DDIM_LIMIT_CACHE`` moves it; ``off`` turns it off) and
read back by every later run of the scripts that build mixture beds (``solver_family.bed_setup``).

    python benchmarks/grid_sweep.py --methods ipndm3 unipc3 --grids p2 p2s0.9 p2s0.9t p2s0.85t p2s0.8t --calls 8 10 12 \\
        --workers 2 --name grid-sweep-top --out docs/benchmarks                   # about 10 minutes on 2 cores
    python benchmarks/grid_sweep.py --render --name grid-sweep-top --out docs/benchmarks   # only redraw the page
"""

from __future__ import annotations

import argparse
import itertools
import re
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from _tables import machine_line, measured_rows, page_command, page_options
from oracle_draws import DRAWS, PEERS, SHAPES, bed_name
from solver_family import BEDS, SAMPLERS, _score, bed_setup

import ddim
from ddim.schedule import lambda_of
from ddim.timesteps import nearest_steps, power_grid, timesteps

BED_SETS = {"family": dict(BEDS),
            **{draws: {bed_name(shape, modes, seed): dict(dim=64, modes=modes, seed=seed, **SHAPES[shape])
                       for shape, modes, seed in DRAWS[draws]} for draws in DRAWS}}


def beds_of(sets) -> dict:
    """{bed name: GaussianMixture.random arguments} of the named BED_SETS, in order."""
    return {name: kw for s in sets for name, kw in BED_SETS[s].items()}


POWER = re.compile(r"p(?P<power>\d+(\.\d+)?)(s(?P<start>0?\.\d+|1(\.0*)?))?(?P<open>o)?(?P<top>t)?")


def grid_kwargs(grid: str, T: int, steps: int) -> dict:
    """``ddim.sample`` keywords for ``grid`` (a named spacing or ``pP[sF][o][t]``, optionally ``@D``; see the module doc) at
    ``steps`` levels."""
    if "@" in grid:
        base, _, delta = grid.rpartition("@")
        try:
            delta = float(delta)
        except ValueError:
            raise ValueError(f"grid {grid!r}: what follows '@' must be a number (a shift in lambda), e.g. quadratic-0.9@-0.5") from None
        return dict(timesteps=shift_grid(grid_levels(base, T, steps), delta, T))
    if grid in ddim.SPACINGS:
        return dict(steps=steps, spacing=grid)
    m = POWER.fullmatch(grid)
    if not m:
        raise ValueError(f"unknown grid {grid!r}: use a spacing ({', '.join(ddim.SPACINGS)}) or pP[sF][o][t], e.g. p2s0.9")
    return dict(timesteps=power_grid(T, steps, float(m["power"]), open_end=bool(m["open"]), start=float(m["start"] or 1.0), top=bool(m["top"])))


def grid_levels(grid: str, T: int, steps: int) -> list[int]:
    """The levels of ``grid`` (as ``grid_kwargs`` reads it) at ``steps`` levels, as ``ddim.sample`` runs them."""
    kw = grid_kwargs(grid, T, steps)
    return kw["timesteps"] if "timesteps" in kw else timesteps(T, kw["steps"], kw["spacing"]).tolist()


def shift_grid(tau, delta: float, T: int) -> list[int]:
    """``tau`` with every level moved by ``delta`` in lambda = log(alpha / sigma) on the linear schedule of length T (the
    beds' schedule), kept inside its ends and made distinct (``timesteps.nearest_steps``). Data scaled by c has at
    lambda what data of scale 1 has at lambda + log c, so a grid for data c times wider is the grid shifted by -log c."""
    lam = lambda_of(ddim.NoiseSchedule.linear(T).alphas_cumprod.double().numpy())
    return nearest_steps(lam, np.clip(lam[np.asarray(tau)] + delta, lam[-1], lam[0])).tolist()


SEED = ", x_T seed "


def draw_name(bed: str, xt_seed: int) -> str:
    """The name of ``bed`` from x_T seed ``xt_seed``: the bed's own for seed 1 (the other pages'), else with the seed."""
    return bed if xt_seed == 1 else f"{bed}{SEED}{xt_seed}"


def bed_of(name: str) -> str:
    """The bed a (bed, x_T draw) name of ``draw_name`` belongs to."""
    return name.split(SEED)[0]


def draw(model, sched, x_T, method: str, grid: str, calls: int):
    """Samples of ``method`` on ``grid`` at ``calls`` model calls; method "auto" is ddim.policy's table, as
    ddim.sample(method="auto") runs it with no model folder."""
    with torch.inference_mode():
        if method == "auto":
            return ddim.sample(model, sched, x_T, method="auto", spacing="auto", steps=calls)
        return ddim.sample(model, sched, x_T, method=method, **grid_kwargs(grid, len(sched), ddim.METHODS[method].steps_for(calls)))


def bed_rows(bed: str, kw: dict, methods, grids, calls, samples: int, peers: bool = False, xt_seed: int = 1) -> list[dict]:
    """Every method x grid x budget on one bed (run in a worker process: one thread each); with ``peers`` also the peers
    of oracle_draws.py, as rows of method "peer" whose grid is the peer's name. An x_T seed other than 1 (the other
    pages') is a bed of its own, named with it."""
    torch.set_num_threads(1)
    _, sched, model, x_T, score, limit = bed_setup(kw, samples, xt_seed)
    bed = draw_name(bed, xt_seed)
    rows = []
    pairs = [("auto", "table")] * ("auto" in methods) + [(m, g) for m in methods if m != "auto" for g in grids]
    for (method, grid), c in itertools.product(pairs, calls):
        value = _score(score, draw(model, sched, x_T, method, grid, c))
        rows.append(dict(bed=bed, method=method, grid=grid, calls=c, value=value, limit=limit, excess=value - limit))
    for name, c in itertools.product(PEERS if peers else (), calls):
        with torch.inference_mode():
            value = _score(score, SAMPLERS[name](model, sched, x_T, c))
        rows.append(dict(bed=bed, method="peer", grid=name, calls=c, value=value, limit=limit, excess=value - limit))
    print(f"{bed}: limit {limit:.4f}", flush=True)
    return rows


def choices(rows: list[dict]) -> list[tuple[str, str]]:
    """The (method, grid) pairs measured, peers left out."""
    return list(dict.fromkeys((r["method"], r["grid"]) for r in rows if r["method"] != "peer"))


def best_peer(rows: list[dict]) -> dict:
    """{(bed, calls): the lowest excess / limit of any peer} where the peers were run (``--peers``)."""
    best = {}
    for r in rows:
        if r["method"] == "peer":
            key = (r["bed"], r["calls"])
            best[key] = min(best.get(key, float("inf")), r["excess"] / r["limit"])
    return best


def against_peer(rel: float, peer: float) -> float:
    """``rel`` as a fraction of the best peer's excess ``peer`` (both over the limit); the target is at most 0.5. Where the
    peer is within 5% of the limit (or below it) there is no excess to halve: 0 if ``rel`` is within 5% too, else inf."""
    return rel / peer if peer > 0.05 else (0.0 if rel <= 0.05 else float("inf"))


def summary(rows: list[dict], calls: list[int]) -> list[str]:
    """Per method x grid and budget: beds within 5% of the limit, and the worst excess as a fraction of the limit; with
    the peers, beds within half the best peer's excess too, and the worst such fraction."""
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    cell = {(r["bed"], r["method"], r["grid"], r["calls"]): r["excess"] / r["limit"] for r in rows}
    combos, peer = choices(rows), best_peer(rows)
    lines = ["| method | grid | " + " | ".join(f"{c} calls: within 5% (worst)" for c in calls) + " |",
             "|---|---|" + "---:|" * len(calls)]
    for m, g in combos:
        parts = []
        for c in calls:
            have = [cell[(b, m, g, c)] for b in beds if (b, m, g, c) in cell]
            parts.append(f"{sum(v <= 0.05 for v in have)} / {len(have)} ({max(have):+.3f})")
        lines.append(f"| {m} | {g} | " + " | ".join(parts) + " |")
    best = [sum(min(cell[(b, m, g, c)] for m, g in combos if (b, m, g, c) in cell) <= 0.05 for b in beds) for c in calls]
    lines.append("| best per bed, in hindsight | | " + " | ".join(f"{n} / {len(beds)}" for n in best) + " |")
    if not peer:
        return lines
    lines += ["", "Against the best peer: beds where the choice is at most half as far above the limit as the best peer (the "
              "issue's 5-call target), and the worst ratio (inf: the best peer is within 5% of the limit there and the choice is not).", "",
              "| method | grid | " + " | ".join(f"{c} calls: within half (worst)" for c in calls) + " |", "|---|---|" + "---:|" * len(calls)]
    for m, g in combos:
        parts = []
        for c in calls:
            have = [against_peer(cell[(b, m, g, c)], peer[(b, c)]) for b in beds if (b, m, g, c) in cell and (b, c) in peer]
            parts.append(f"{sum(v <= 0.5 for v in have)} / {len(have)} ({max(have):.2f})" if have else "—")
        lines.append(f"| {m} | {g} | " + " | ".join(parts) + " |")
    best = [sum(min(against_peer(cell[(b, m, g, c)], peer[(b, c)]) for m, g in combos if (b, m, g, c) in cell) <= 0.5
                for b in beds if (b, c) in peer) for c in calls]
    lines.append("| best per bed, in hindsight | | " + " | ".join(f"{n} / {sum((b, c) in peer for b in beds)}" for n, c in zip(best, calls)) + " |")
    return lines


def per_bed(rows: list[dict], c: int) -> list[str]:
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    combos, peer = choices(rows), best_peer(rows)
    cell = {(r["bed"], r["method"], r["grid"], r["calls"]): r for r in rows}
    extra = " best peer |" if peer else ""
    lines = ["| bed | limit | " + " | ".join(f"{m} {g}" for m, g in combos) + f" |{extra}", "|---|---:|" + "---:|" * (len(combos) + bool(peer))]
    for b in beds:
        have = [cell.get((b, m, g, c)) for m, g in combos]
        limit = next(r["limit"] for r in have if r)
        tail = f" {peer[(b, c)]:+.3f} |" if (b, c) in peer else " — |" if peer else ""
        lines.append(f"| {b} | {limit:.4f} | " + " | ".join(f"{r['excess'] / limit:+.3f}" if r else "—" for r in have) + f" |{tail}")
    return lines


def shape_of(kw: dict) -> str:
    """The oracle_draws.py shape whose spread and component scales a bed has (any dimension and number of modes), else
    "other": our oracle and 16-D are "default", 2-D "sharp, wide", the 128-D far modes "far"."""
    args = {k: v for k, v in kw.items() if k in ("spread", "scale")}
    return next((shape for shape, a in SHAPES.items() if a == args), "other")


def by_shape(rows: list[dict], c: int) -> list[str]:
    """Per choice at ``c`` calls: (bed, x_T draw) pairs within 5% of the limit in each shape group (``shape_of``), and the
    median excess / limit of the default shape, the one the issue's own oracle behaves like."""
    kws = beds_of(BED_SETS)
    group = {b: shape_of(kws[bed_of(b)]) for b in dict.fromkeys(r["bed"] for r in rows) if bed_of(b) in kws}
    shapes = [s for s in (*SHAPES, "other") if s in group.values()]
    rel = {}
    for r in rows:
        if r["calls"] == c and r["method"] != "peer" and r["bed"] in group:
            rel.setdefault((r["method"], r["grid"], group[r["bed"]]), []).append(r["excess"] / r["limit"])
    lines = ["| method | grid | " + " | ".join(shapes) + " | default: median |", "|---|---|" + "---:|" * (len(shapes) + 1)]
    for m, g in choices(rows):
        cells = [rel.get((m, g, s), []) for s in shapes]
        median = f"{np.median(rel[(m, g, 'default')]):+.3f}" if (m, g, "default") in rel else "—"
        lines.append(f"| {m} | {g} | " + " | ".join(f"{sum(v <= 0.05 for v in vs)} / {len(vs)}" for vs in cells) + f" | {median} |")
    return lines


def per_draw(rows: list[dict], c: int) -> list[str]:
    """With several x_T draws per bed: per bed and choice, in how many draws it is within 5% of the limit, and the range
    of its excess / limit over the draws."""
    beds = list(dict.fromkeys(bed_of(r["bed"]) for r in rows))
    combos = choices(rows)
    rel = {}
    for r in rows:
        if r["calls"] == c and r["method"] != "peer":
            rel.setdefault((bed_of(r["bed"]), r["method"], r["grid"]), []).append(r["excess"] / r["limit"])
    lines = ["| bed | " + " | ".join(f"{m} {g}" for m, g in combos) + " |", "|---|" + "---:|" * len(combos)]
    for b in beds:
        cells = [rel.get((b, m, g), []) for m, g in combos]
        lines.append(f"| {b} | " + " | ".join(f"{sum(v <= 0.05 for v in vs)} / {len(vs)} ({min(vs):+.3f} to {max(vs):+.3f})" if vs else "—"
                                          for vs in cells) + " |")
    return lines


def median_summary(rows: list[dict], calls: list[int]) -> list[str]:
    """With several x_T draws per bed: per choice and budget, the beds whose median excess / limit over their draws is
    within 5%, and the highest such median: whether a choice is at the limit on a typical draw of each bed."""
    rel = {}
    for r in rows:
        if r["method"] != "peer":
            rel.setdefault((r["method"], r["grid"], r["calls"]), {}).setdefault(bed_of(r["bed"]), []).append(r["excess"] / r["limit"])
    lines = ["| method | grid | " + " | ".join(f"{c} calls: median within 5% (highest median)" for c in calls) + " |",
             "|---|---|" + "---:|" * len(calls)]
    for m, g in choices(rows):
        parts = []
        for c in calls:
            medians = [np.median(v) for v in rel.get((m, g, c), {}).values()]
            parts.append(f"{sum(v <= 0.05 for v in medians)} / {len(medians)} ({max(medians):+.3f})" if medians else "—")
        lines.append(f"| {m} | {g} | " + " | ".join(parts) + " |")
    return lines


def limit_spread(rows: list[dict]) -> list[str]:
    """With several x_T draws per bed: per bed, its common limit over the draws (mean, standard deviation / mean, range),
    and the median of that ratio over the beds. The limit is the FD of the exact flow's samples from one x_T, so its
    spread is how much the FD itself moves from one draw of 2,000 to the next, against which the 5% target is set."""
    limits = {}
    for r in rows:
        limits.setdefault(bed_of(r["bed"]), {})[r["bed"]] = r["limit"]
    lines = ["| bed | draws | mean limit | sd / mean | lowest | highest |", "|---|---:|---:|---:|---:|---:|"]
    ratios = []
    for b, per in limits.items():
        v = np.array(list(per.values()))
        if len(v) < 2:
            continue
        ratios.append(v.std(ddof=1) / v.mean())
        lines.append(f"| {b} | {len(v)} | {v.mean():.4f} | {ratios[-1]:.2f} | {v.min():.4f} | {v.max():.4f} |")
    lines += ["", f"Median sd / mean over the {len(ratios)} beds: {np.median(ratios):.2f} (5% of the limit is "
              f"{0.05 / np.median(ratios):.2f} of that spread)."]
    return lines


def measure(args) -> list[dict]:
    beds = beds_of(args.beds)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(bed_rows, b, kw, args.methods, args.grids, args.calls, args.samples, args.peers, seed)
                for b, kw in beds.items() for seed in args.xt_seeds]
        return [r for job in jobs for r in job.result()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["ipndm3", "unipc3"], choices=["auto", *ddim.METHODS],
                    help="'auto': the library's table at each budget (its grid column reads 'table'), run once, not per grid")
    ap.add_argument("--grids", nargs="+", default=["p2", "p2s0.9"], help="named spacings or pP[sF][o][t] (see above)")
    ap.add_argument("--calls", type=int, nargs="+", default=[8, 10, 12])
    ap.add_argument("--beds", nargs="+", choices=list(BED_SETS), default=["family", "shapes", "held-out"],
                    help="bed sets (default: the 28 the table was chosen on; add 'fresh' for the twelve drawn since)")
    ap.add_argument("--peers", action="store_true", help="also run the peers of oracle_draws.py on every bed and budget")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--xt-seeds", type=int, nargs="+", default=[1],
                    help="x_T draws per bed (seed 1 is the other pages'); each seed is a bed of its own in the tables")
    ap.add_argument("--workers", type=int, default=1, help="processes, one bed each at a time (one thread each)")
    page_options(ap, "grid-sweep")
    args = ap.parse_args()
    for g in args.grids:
        try:
            grid_kwargs(g, 1000, 8)
        except ValueError as e:
            ap.error(str(e))
    rows = measured_rows(args, lambda: measure(args))
    page = args.out / f"{args.name}.md"
    machine = machine_line(page, args.render,
                           f"Machine: {args.workers} processes of 1 CPU thread, torch {torch.__version__}. {args.samples} samples per cell, float64.")
    text = [page_command("grid_sweep.py", page, args.render), "", machine, "", __doc__.split("\n\n")[1], "",
            __doc__.split("\n\n")[2], "", "## How often each choice is at the limit", "", *summary(rows, args.calls)]
    draws = any(SEED in r["bed"] for r in rows)
    if len({shape_of(kw) for kw in beds_of(args.beds).values()}) > 1:
        for c in args.calls:
            text += ["", f"## By shape at {c} calls: (bed, x_T draw) pairs within 5% of the limit", "", *by_shape(rows, c)]
    if draws:
        text += ["", "## Beds at the limit on a typical draw: the median of excess / limit over each bed's x_T draws", "",
                 *median_summary(rows, args.calls), "", "## The limit over x_T draws", "", *limit_spread(rows)]
    for c in args.calls:
        if draws:
            text += ["", f"## Per bed over its x_T draws at {c} calls: draws within 5% of the limit (range of excess / limit)", "",
                     *per_draw(rows, c)]
        text += ["", f"## Per bed at {c} calls: FD above the limit / the limit", "", *per_bed(rows, c)]
    page.write_text("\n".join(text) + "\n")
    print("\n".join(summary(rows, args.calls)))


if __name__ == "__main__":
    main()
