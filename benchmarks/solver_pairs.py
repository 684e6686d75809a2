"""Any of our (method, spacing) pairs on the exact-mixture beds of solver_family.py, quickly, beside diffusers' UniPC bh2.

Same beds, x_T, limits and FD as solver-family.md (entries: FD above the bed's common limit), without the model beds
and the regret tables: a quick look before a full family run.

    python benchmarks/solver_pairs.py --pairs unipc-bh1:trailing unipc-bh2:trailing unipc-bh2:quadratic unipc3:quadratic \\
        --name unipc-authors --out docs/benchmarks
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _tables import command_line, write_csv
from solver_family import BEDS, SAMPLERS, mixture_rows, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", required=True, metavar="METHOD:SPACING")
    ap.add_argument("--beds", nargs="*", default=None, help="bed names of solver_family.BEDS (default: all)")
    ap.add_argument("--calls", type=int, nargs="+", default=[4, 5, 6, 8, 10])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--name", default="solver-pairs")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = ap.parse_args()
    samplers = {f"ours {m} ({sp})": ours(m, sp) for m, sp in (pair.split(":", 1) for pair in args.pairs)}
    samplers["diffusers UniPC bh2"] = SAMPLERS["diffusers UniPC bh2"]
    rows = []
    for bed in args.beds or BEDS:
        rows += mixture_rows(bed, BEDS[bed], args.samples, samplers, args.calls)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    lines = [f"# {args.name}: (method, spacing) pairs on the exact mixtures", "", command_line("solver_pairs.py"), "",
             f"{args.samples} samples per cell, float64; the beds, x_T and limits of solver-family.md. Entries: FD above the bed's limit.", ""]
    for bed in dict.fromkeys(r["bed"] for r in rows):
        cells = {(r["sampler"], r["calls"]): r["excess"] for r in rows if r["bed"] == bed}
        lines += [f"## {bed}", "", "| sampler | " + " | ".join(f"{c} calls" for c in args.calls) + " |", "|---|" + "---:|" * len(args.calls)]
        lines += [f"| {name} | " + " | ".join(f"{cells[name, c]:+.4f}" for c in args.calls) + " |" for name in samplers]
        lines.append("")
    (args.out / f"{args.name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
