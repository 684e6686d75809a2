"""The table's grid at 4-12 calls: the DDIM paper's quadratic grid, with and without its call at t = 0.

"quadratic" (0.8 T down to t = 0, quadratic in time) spends its last call at t = 0, where the data prediction barely
moves the sample. "quadratic-open" is the same curve with S + 1 levels less that call, so the last call is at
0.8 T / S^2 and the final step jumps to alpha-bar 1 from there. Both run with our ``unipc3`` and with the authors'
UniPC-3 (``unipc3-bh2``) on the 7 exact mixtures of solver_family.py (same x_T, same common limit), beside
time-quadratic (the table's grid at 8-12 calls) and two other curves from 0.8 T (powers 1.5 and 2.5, open) for
reference. Entries: FD above the bed's limit; per candidate, the worst ratio over the beds of its excess to the best
peer's (read from solver-family.csv, the same beds; the issue's 5-call target is 0.5), over the beds where that peer is
above the limit; where it is at or below it, a ratio means nothing, and the last column gives our largest excess there.

    python benchmarks/open_grids.py --out docs/benchmarks           # about 20 minutes on 1 thread
    python benchmarks/open_grids.py --render --out docs/benchmarks  # only redraw the page from its CSV
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _tables import machine_line, measured_rows, page_command, page_options, read_rows
from solver_family import BEDS, limit_parts, mixture_bed

import ddim


def from_800(power: float):
    """t_i = floor(0.8 T u_i^power), u_i = i / S for i = S..1: a curve from 0.8 T without the call at t = 0."""
    def grid(T: int, S: int) -> list[int]:
        levels = [int(0.8 * T * (i / S) ** power) for i in range(S, 0, -1)]
        for k in range(1, len(levels)):  # push collisions apart (none at the budgets run here)
            levels[k] = min(levels[k], levels[k - 1] - 1)
        return levels

    return grid


GRIDS = {
    "quadratic": lambda T, S: ddim.timesteps(T, S, "quadratic").tolist(),
    "quadratic-open": lambda T, S: ddim.timesteps(T, S, "quadratic-open").tolist(),
    "time-quadratic": lambda T, S: ddim.timesteps(T, S, "time-quadratic").tolist(),
    "0.8T power 1.5 open": from_800(1.5),
    "0.8T power 2.5 open": from_800(2.5),
}
METHODS = ("unipc3", "unipc3-bh2")


def best_peers(path: Path) -> dict:
    """(bed, calls) -> the lowest excess of any peer sampler in a solver_family.py CSV."""
    best: dict = {}
    for r in read_rows(path) if path.exists() else []:
        if not r["sampler"].startswith("ours"):
            best[(r["bed"], r["calls"])] = min(best.get((r["bed"], r["calls"]), float("inf")), r["excess"])
    return best


def verdict(cell: dict, peers: dict, method: str, grid: str, calls: int) -> tuple[str, str]:
    """(worst excess / best peer's excess over the beds where that peer is above the limit, our largest excess on the others)."""
    above = [cell[(b, method, grid)] / peers[(b, calls)] for b in BEDS if peers[(b, calls)] > 0]
    at = [cell[(b, method, grid)] for b in BEDS if peers[(b, calls)] <= 0]
    return (f"{max(above):.2f}" if above else "—"), (f"{max(at):+.4f}" if at else "—")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--calls", type=int, nargs="+", default=[4, 5, 6, 7, 8, 10, 12])
    ap.add_argument("--peers", type=Path, default=Path(__file__).resolve().parent.parent / "docs/benchmarks/solver-family.csv",
                    help="solver_family.py CSV of the same beds")
    page_options(ap, "open-grids")
    args = ap.parse_args()
    peers = best_peers(args.peers)
    rows = measured_rows(args, lambda: measure(args, peers))
    write_page(args, rows, peers)


def measure(args, peers: dict) -> list[dict]:
    sched = ddim.NoiseSchedule.linear(1000)
    rows = []
    for bed, kw in BEDS.items():
        mixture, x_T, score = mixture_bed(kw, args.samples)
        model = mixture.denoiser(sched)
        limit = sum(limit_parts(model, sched, x_T, score)) / 2
        for method in METHODS:
            for grid_name, grid in GRIDS.items():
                for calls in args.calls:
                    with torch.inference_mode():
                        x = ddim.sample(model, sched, x_T, method=method, timesteps=grid(len(sched), calls))
                    excess = float(score(x)) - limit if torch.isfinite(x).all() else float("inf")
                    rows.append(dict(bed=bed, method=method, grid=grid_name, calls=calls, limit=limit, excess=excess,
                                     peer=peers.get((bed, calls), float("nan"))))
                print(f"{bed} | {method} on {grid_name}: " + " ".join(f"{r['excess']:+.4f}" for r in rows[-len(args.calls):]), flush=True)
    return rows


def write_page(args, rows: list[dict], peers: dict) -> None:
    head = page_command("open_grids.py", args.out / f"{args.name}.md", args.render, line=2)
    lines = [f"# {__doc__.splitlines()[0]}", "", head, "",
             machine_line(args.out / f"{args.name}.md", args.render,
                          f"Machine: {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}; {args.samples} samples per cell, float64.", at=4),
             "Entries: FD above the bed's common limit (the x_T and limits of solver-family.md). Best peer: the lowest excess",
             f"of any peer sampler at that budget in {args.peers.name} (k-diffusion, diffusers' DPM-Solver++ and UniPC).", ""]
    candidates = [(m, g) for m in METHODS for g in GRIDS]
    for calls in args.calls:
        cell = {(r["bed"], r["method"], r["grid"]): r["excess"] for r in rows if r["calls"] == calls}
        have_peers = all((b, calls) in peers for b in BEDS)
        lines += [f"## {calls} calls", "", "| method on grid | " + " | ".join(BEDS) + " | worst ratio to best peer (peer above limit) "
                  "| our worst excess (peer at or below limit) |", "|---|" + "---:|" * (len(BEDS) + 2)]
        for m, g in candidates:
            worst = verdict(cell, peers, m, g, calls) if have_peers else ("no peer run", "no peer run")
            lines.append(f"| {m} on {g} | " + " | ".join(f"{cell[(b, m, g)]:+.4f}" for b in BEDS) + f" | {worst[0]} | {worst[1]} |")
        if have_peers:
            lines.append("| best peer | " + " | ".join(f"{peers[(b, calls)]:+.4f}" for b in BEDS) + " | 1 | |")
        lines.append("")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / args.name}.md")


if __name__ == "__main__":
    main()
