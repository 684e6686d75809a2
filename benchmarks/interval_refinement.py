"""Where does an 8-call sampler's FD excess come from? Refine one interval of its grid at a time.

On an exact-mixture bed of benchmarks/solver_family.py (same x_T, same common limit), unipc3 draws with an 8-call
grid; then, for each interval [t_i, t_i+1] of that grid, with 10 extra levels inside that interval only (18 calls in
all; the other intervals as before). If the excess came from one coarse interval, refining it would remove most of
it, and refining the others would leave it. Entries: FD above the limit.

    python benchmarks/interval_refinement.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _tables import command_line, write_csv
from solver_family import BEDS, limit_parts, mixture_bed

import ddim
from ddim.timesteps import power_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beds", nargs="+", default=["64-D, 10 modes (our oracle)", "16-D, 5 modes"], choices=list(BEDS))
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--extra", type=int, default=10, help="levels added inside the refined interval")
    ap.add_argument("--name", default="interval-refinement")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = ap.parse_args()
    sched = ddim.NoiseSchedule.linear(1000)
    grids = {"time-quadratic": ddim.timesteps(1000, 8, "time-quadratic").tolist(),
             "time-power 3 open": power_grid(1000, 8, 3.0, open_end=True)}
    rows = []
    lines = [command_line("interval_refinement.py"), "",
             f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}. unipc3, 8-call grids, {args.samples} samples, "
             "float64. Entries: FD above the bed's common limit.", ""]
    for bed in args.beds:
        mixture, x_T, score = mixture_bed(BEDS[bed], args.samples)
        model = mixture.denoiser(sched)
        limit = sum(limit_parts(model, sched, x_T, score)) / 2

        def excess(grid: list[int]) -> float:
            with torch.inference_mode():
                return float(score(ddim.sample(model, sched, x_T, method="unipc3", timesteps=grid))) - limit

        lines += [f"## {bed} (limit {limit:.4f})", ""]
        for name, base in grids.items():
            plain = excess(base)
            rows.append(dict(bed=bed, grid=name, refined="none", calls=len(base), excess=plain))
            lines += [f"{name} `{base}`: {plain:+.5f} at 8 calls", "", "| refined interval | calls | FD above the limit |", "|---|---:|---:|"]
            levels = base + [0]
            for a, b in zip(levels[:-1], levels[1:]):
                if a == b:  # the grid's last call is at t = 0: nothing to refine before the final jump
                    continue
                grid = sorted(set(base) | set(torch.linspace(a, b, args.extra + 2).round().long().tolist()), reverse=True)
                value = excess(grid)
                rows.append(dict(bed=bed, grid=name, refined=f"{a}-{b}", calls=len(grid), excess=value))
                lines.append(f"| {a} -> {b} | {len(grid)} | {value:+.5f} |")
                print(f"{bed} | {name} | {a}->{b}: {value:+.5f}", flush=True)
            lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
