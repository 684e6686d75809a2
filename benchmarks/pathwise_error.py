"""Where a few-call sampler's FD excess comes from on an exact mixture: samples that land in another mode, or error within a mode.

Each sampler starts from the same x_T (``--samples`` draws, float64) as a reference, ``unipc3`` on the log-SNR grid at 200 calls,
so every coarse sample has a reference sample to be compared with. A sample *flips* when the mixture's most likely
component of it differs from that of its reference sample (``GaussianMixture.assign``). Two hybrid sample sets split the
FD excess:
- "flips only": the reference samples, with the flipped ones replaced by the coarse ones: the excess that the wrong mode
  weights alone cause;
- "within modes": the coarse samples, with the flipped ones replaced by their reference samples: the excess of the
  error that stays inside a mode.

With ``--per-step`` the page says instead *where* the flips are made: the coarse run is stopped after each of its steps
and carried to t = 0 by the reference solver (on the reference's levels below the one reached), and each column is the
share of flipped samples (the FD excess in brackets) after that exact continuation. The first column reads x_T at the
grid's first level and continues exactly from there (the start alone); the last is the coarse run itself. A step that
raises the flips is where samples were put on the wrong side of a mode boundary; a later step can take some back.

Entries are FD above the bed's common limit (solver_family.py's, unipc3 and dpm++2m at 100 calls from the same x_T)
divided by the limit, as in grid_sweep.py; the issue's target at 8 and 10 calls is at most 0.05. Distances are per
sample, Euclidean, to the reference sample; RMS is their root mean square.

    python benchmarks/pathwise_error.py --calls 8 --samplers ipndm3:p2s0.9 unipc3:p2 --out docs/benchmarks   # about 5 minutes
    python benchmarks/pathwise_error.py --per-step --calls 8 --samplers ipndm3:p2s0.9 --xt-seeds 1 2 --name pathwise-steps-8 \
        --out docs/benchmarks
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _tables import machine_line, measured_rows, page_command, page_options
from grid_sweep import BED_SETS, bed_setup, beds_of, draw, draw_name, grid_kwargs, grid_levels
from solver_family import _score

import ddim

REFERENCE = ("unipc3", "logsnr", 200)  # method, grid, calls


def parse_sampler(text: str) -> tuple[str, str]:
    """'METHOD:GRID' (a grid as grid_sweep.py reads it) -> (method, grid)."""
    method, _, grid = text.partition(":")
    if method not in ddim.METHODS or not grid:
        raise ValueError(f"sampler {text!r}: write METHOD:GRID with METHOD one of {', '.join(ddim.METHODS)}, e.g. ipndm3:p2s0.9")
    grid_kwargs(grid, 1000, 8)  # a clear error for a grid it cannot read
    return method, grid


def bed_rows(bed: str, kw: dict, samplers, calls, samples: int, xt_seed: int = 1) -> list[dict]:
    mixture, sched, model, x_T, score, limit = bed_setup(kw, samples, xt_seed)
    bed = draw_name(bed, xt_seed)
    ref = draw(model, sched, x_T, *REFERENCE)
    ref_mode = mixture.assign(ref)
    excess = lambda x: (_score(score, x) - limit) / limit  # noqa: E731  FD above the limit / the limit
    rows = []
    for (method, grid), c in ((s, c) for s in samplers for c in calls):
        x = draw(model, sched, x_T, method, grid, c)
        flip = mixture.assign(x) != ref_mode
        dist = (x - ref).norm(dim=1).numpy()
        flips_only, within = ref.clone(), x.clone()
        flips_only[flip], within[flip] = x[flip], ref[flip]
        rows.append(dict(bed=bed, method=method, grid=grid, calls=c, limit=limit, excess=excess(x), reference=excess(ref),
                         flips_only=excess(flips_only), within_modes=excess(within), flipped=float(flip.double().mean()),
                         median=float(np.median(dist)), p99=float(np.quantile(dist, 0.99)), rms=float(np.sqrt((dist**2).mean()))))
    print(f"{bed}: limit {limit:.4f}", flush=True)
    return rows


def grid_of(method: str, grid: str, calls: int, T: int) -> list[int]:
    """The levels ``draw`` runs ``method`` on for ``grid`` at ``calls`` model calls."""
    return grid_levels(grid, T, ddim.METHODS[method].steps_for(calls))


def step_rows(bed: str, kw: dict, samplers, calls, samples: int, xt_seed: int = 1) -> list[dict]:
    """Per sampler and budget, one row per point the coarse run is continued exactly from (see the module doc)."""
    mixture, sched, model, x_T, score, limit = bed_setup(kw, samples, xt_seed)
    bed = draw_name(bed, xt_seed)
    method_ref, grid_ref, calls_ref = REFERENCE
    fine = grid_of(method_ref, grid_ref, calls_ref, len(sched))
    ref_mode = mixture.assign(draw(model, sched, x_T, *REFERENCE))

    def exact(x, t: int):
        """``x`` at level t carried to t = 0 by the reference solver on the reference's levels below t."""
        with torch.inference_mode():
            return ddim.sample(model, sched, x, method=method_ref, timesteps=[t] + [s for s in fine if s < t])

    rows = []
    for (method, grid), c in ((s, c) for s in samplers for c in calls):
        tau, states = grid_of(method, grid, c, len(sched)), []
        with torch.inference_mode():
            out = ddim.sample(model, sched, x_T, method=method, timesteps=tau, callback=lambda i, t, x, x0: states.append(x.clone()))
        points = [(f"x_T at {tau[0]}", exact(x_T, tau[0]))]
        points += [(f"{tau[i]} -> {tau[i + 1]}", exact(states[i], tau[i + 1])) for i in range(len(tau) - 1)] + [("coarse", out)]
        for k, (point, x) in enumerate(points):
            rows.append(dict(bed=bed, method=method, grid=grid, calls=c, step=k, point=point, limit=limit,
                             flipped=float((mixture.assign(x) != ref_mode).double().mean()), excess=(_score(score, x) - limit) / limit))
    print(f"{bed}: limit {limit:.4f}", flush=True)
    return rows


def steps_table(rows: list[dict], c: int) -> list[str]:
    """One line per bed and sampler at ``c`` calls: flipped share (excess / limit) after each continuation point."""
    have = [r for r in rows if r["calls"] == c]
    lines = []
    for m, g in dict.fromkeys((r["method"], r["grid"]) for r in have):
        mine = [r for r in have if (r["method"], r["grid"]) == (m, g)]
        points = list(dict.fromkeys(r["point"] for r in mine))
        lines += ["", f"`{m}` on `{g}`, after each step continued exactly: flipped (excess / limit)", "",
                  "| bed | " + " | ".join(points) + " |", "|---|" + "---:|" * len(points)]
        cell = {(r["bed"], r["point"]): r for r in mine}
        for b in dict.fromkeys(r["bed"] for r in mine):
            lines.append(f"| {b} | " + " | ".join(f"{100 * cell[(b, p)]['flipped']:.2f}% ({cell[(b, p)]['excess']:+.3f})"
                                                 if (b, p) in cell else "—" for p in points) + " |")
    return lines[1:]


def table(rows: list[dict], c: int) -> list[str]:
    lines = ["| bed | sampler | excess | flips only | within modes | reference | flipped | median | p99 | RMS |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in (r for r in rows if r["calls"] == c):
        lines.append(f"| {r['bed']} | {r['method']} {r['grid']} | {r['excess']:+.3f} | {r['flips_only']:+.3f} | {r['within_modes']:+.3f} | "
                     f"{r['reference']:+.3f} | {100 * r['flipped']:.1f}% | {r['median']:.3f} | {r['p99']:.3f} | {r['rms']:.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samplers", nargs="+", default=["ipndm3:p2s0.9", "unipc3:p2"], help="METHOD:GRID, grids as in grid_sweep.py")
    ap.add_argument("--calls", type=int, nargs="+", default=[8])
    ap.add_argument("--beds", nargs="+", choices=list(BED_SETS), default=["held-out"])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--xt-seeds", type=int, nargs="+", default=[1], help="x_T draws per bed (seed 1 is the other pages'), each a bed of its own")
    ap.add_argument("--per-step", action="store_true", help="where the flips are made: continue the coarse run exactly after each step")
    page_options(ap, "pathwise-error")
    args = ap.parse_args()
    try:
        samplers = [parse_sampler(s) for s in args.samplers]
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(1)
    beds = beds_of(args.beds)
    rows_of = step_rows if args.per_step else bed_rows
    rows = measured_rows(args, lambda: [r for b, kw in beds.items() for seed in args.xt_seeds
                                        for r in rows_of(b, kw, samplers, args.calls, args.samples, seed)])
    show = steps_table if rows and "step" in rows[0] else table
    page = args.out / f"{args.name}.md"
    machine = machine_line(page, args.render, f"Machine: 1 CPU thread, torch {torch.__version__}. {args.samples} samples per bed, float64.")
    parts = __doc__.split("\n\n")
    about = [parts[1], parts[2], parts[3]] if show is steps_table else [parts[1], parts[3]]
    text = [page_command("pathwise_error.py", page, args.render), "", machine, *(line for a in about for line in ("", a))]
    for c in args.calls:
        text += ["", f"## {c} calls", "", *show(rows, c)]
    page.write_text("\n".join(text) + "\n")
    for c in args.calls:
        print("\n".join(show(rows, c)))


if __name__ == "__main__":
    main()
