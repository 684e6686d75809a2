"""A family of time grids on the exact-mixture test beds: where should few model calls go?

Grid ``p=P to0`` (``ddim.timesteps.power_grid``): t_i = round((T - 1) u_i^P), u_i = (S - 1 - i) / (S - 1), i = 0..S-1, so it starts at T - 1 and its
last call is at t = 0 (P = 1 is ``linspace``, P = 2 is ``time-quadratic``). Grid ``p=P open``: u_i = (S - i) / S,
so the last call is at (T - 1) S^-P and the final step jumps from there to alpha-bar 1, as diffusers' schedulers do
with ``final_sigmas_type="zero"``; the call at t = 0 is saved for the range above. For unipc3 and dpm++2m, on
every mixture of benchmarks/solver_family.py (same x_T, same limit), with diffusers' UniPC bh2 and our current
``auto`` choice at 4-7 calls (unipc3 on ``quadratic``) beside them. Entries: FD above the bed's common limit.

    python benchmarks/grid_family.py --out docs/benchmarks
    python benchmarks/grid_family.py --methods unipc3 --powers 1 1.25 1.5 2 2.5 3 3.5 --calls 4 5 6 7 8 10 12 15 20 --name grid-family-unipc3 --out docs/benchmarks
    python benchmarks/grid_family.py --skip-mixtures --models fashion-mnist digits --name grid-family-models --out docs/benchmarks
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _tables import command_line, write_csv
from solver_family import BEDS, SAMPLERS, mixture_rows, model_beds, ours

import ddim
from ddim.timesteps import power_grid

CALLS = (4, 5, 6, 8, 10)


def power(method: str, p: float, to_zero: bool):
    def run(model, sched, x_T, calls):
        S = ddim.METHODS[method].steps_for(calls)
        return ddim.sample(model, sched, x_T, method=method, timesteps=power_grid(len(sched), S, p, open_end=not to_zero))

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--powers", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5])
    ap.add_argument("--methods", nargs="+", default=["unipc3", "dpm++2m"], help="our methods to run on each power grid")
    ap.add_argument("--calls", type=int, nargs="+", default=list(CALLS), help="model-call budgets")
    ap.add_argument("--models", nargs="*", default=[], help="shipped models as extra beds (FD as in solver-family.md)")
    ap.add_argument("--images", type=int, default=300, help="images per model cell")
    ap.add_argument("--skip-mixtures", action="store_true")
    ap.add_argument("--name", default="grid-family")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = ap.parse_args()
    samplers = {f"ours {m} p={p:g} {'to0' if z else 'open'}": power(m, p, z) for m in args.methods for p in args.powers for z in (True, False)}
    samplers["ours unipc3 (quadratic)"] = ours("unipc3", "quadratic")
    samplers["ours unipc3 (logsnr)"] = ours("unipc3", "logsnr")
    samplers["diffusers UniPC bh2"] = SAMPLERS["diffusers UniPC bh2"]
    rows = []
    for bed, kw in ({} if args.skip_mixtures else BEDS).items():
        rows += mixture_rows(bed, kw, args.samples, samplers, args.calls)
    args.model_calls = None
    rows += [dict(bed=r["bed"], sampler=r["sampler"], calls=r["calls"], value=r["value"], limit=r["limit"], excess=r["excess"])
             for r in model_beds(args, samplers)]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    lines = ["# A family of time grids on the test beds", "", command_line("grid_family.py"), "",
             f"Mixtures: {args.samples} samples per cell, float64; models: FD of {args.images} images as in solver-family.md; the x_T and "
             "limits of solver-family.md. Entries: FD above the bed's limit; **bold**: the best of our grids for that bed and budget.", ""]
    for bed in dict.fromkeys(r["bed"] for r in rows):
        cells = {(r["sampler"], r["calls"]): r["excess"] for r in rows if r["bed"] == bed}
        best = {c: min(v for (s, cc), v in cells.items() if cc == c and s.startswith("ours")) for c in args.calls}
        lines += [f"## {bed} (limit {rows[[r['bed'] for r in rows].index(bed)]['limit']:.4f})", "",
                  "| sampler | " + " | ".join(f"{c} calls" for c in args.calls) + " |", "|---|" + "---:|" * len(args.calls)]
        for name in samplers:
            lines.append(f"| {name} | " + " | ".join((f"**{cells[name, c]:+.4f}**" if cells[name, c] == best[c] else f"{cells[name, c]:+.4f}")
                                                    for c in args.calls) + " |")
        lines.append("")
    (args.out / f"{args.name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
