"""Samplers on a shipped model over disjoint seed ranges: FD per range, and each sampler's paired difference to the first.

FD on a few hundred images moves by about 0.1-0.3 from one set of real images to another (the FD noise of the other
pages), which hides most differences between good samplers. Two samplers run from the same x_T and scored against the
same reference share most of that noise, so their difference is steadier than either FD. This runs each sampler on
``--ranges`` disjoint ranges of seeds (``--images`` = N images each: seeds 0..N-1, N..2N-1, ...; the image of seed s is
drawn from torch.manual_seed(s), as on solver_family.py's model beds, which use the first range) and reports,
per budget, the FD of each range and the difference to the first sampler: a sign that holds in every range is a
difference the seeds do not explain. Samplers are named as in solver_family.py (``ours auto`` uses the model folder's
picks, as ``ddim sample`` does).

    python benchmarks/seed_ranges.py --models digits fashion-mnist --calls 12 15 --images 500 --ranges 3 \\
        --samplers 'ours unipc3 (time-quadratic)' 'ours ipndm3 (time-quadratic)' --name seed-ranges-12-15 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from _tables import machine_line, measured_rows, page_command, page_options
from solver_family import SAMPLERS, check_models, model_noise, model_scorer, with_folder
from tqdm import tqdm


def measure(args) -> list[dict]:
    rows = []
    for name in args.models:
        m, _, net, score = model_scorer(name)
        samplers = with_folder({s: SAMPLERS[s] for s in args.samplers}, m)
        cells = list(itertools.product(range(args.ranges), args.calls, samplers))
        for r, c, s in tqdm(cells, desc=name, unit="run"):
            first = r * args.images
            with torch.inference_mode():
                x = samplers[s](m.model, m.schedule, model_noise(m, first, args.images), c)
            rows.append(dict(model=name, features=net.name, calls=c, first_seed=first, images=args.images, sampler=s, fd=float(score(x))))
    return rows


def mean_sd(v: np.ndarray) -> str:
    """'mean ± sd' (sd over the ranges; 0 with one range)."""
    return f"{v.mean():+.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}"


def tables(rows: list[dict]) -> list[str]:
    fd = {(r["model"], r["calls"], r["first_seed"], r["sampler"]): r["fd"] for r in rows}
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    lines = []
    for model, c in dict.fromkeys((r["model"], r["calls"]) for r in rows):
        firsts = sorted({f for (mm, cc, f, _s) in fd if (mm, cc) == (model, c)})
        feats, n = next((r["features"], r["images"]) for r in rows if r["model"] == model)
        base = samplers[0]
        lines += ["", f"## {model}, {c} calls: FD-{feats}, {n} images per range", "",
                  "| sampler | " + " | ".join(f"seeds {f}-{f + n - 1}" for f in firsts) + " | mean ± sd | minus the first, per range | mean ± sd |",
                  "|---|" + "---:|" * (len(firsts) + 3)]
        for s in samplers:
            v = np.array([fd[(model, c, f, s)] for f in firsts])
            d = v - np.array([fd[(model, c, f, base)] for f in firsts])
            diff = ("—", "—") if s == base else (", ".join(f"{x:+.3f}" for x in d), mean_sd(d))
            lines.append(f"| {s} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {mean_sd(v).lstrip('+')} | " + " | ".join(diff) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["digits"], help="shipped models or model folders")
    ap.add_argument("--samplers", nargs="+", default=["ours unipc3 (time-quadratic)", "ours ipndm3 (time-quadratic)"],
                    help="names as in solver_family.py; differences are to the first")
    ap.add_argument("--calls", type=int, nargs="+", default=[12])
    ap.add_argument("--images", type=int, default=500, help="images per seed range")
    ap.add_argument("--ranges", type=int, default=3, help="disjoint seed ranges")
    page_options(ap, "seed-ranges")
    args = ap.parse_args()
    unknown = [s for s in args.samplers if s not in SAMPLERS]
    if unknown:
        ap.error(f"unknown sampler {unknown[0]!r}: use names of solver_family.py's tables, e.g. 'ours unipc3 (time-quadratic)'")
    if not args.render:
        check_models(ap, args.models)
    rows = measured_rows(args, lambda: measure(args))
    page = args.out / f"{args.name}.md"
    machine = machine_line(page, args.render, f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}.")
    text = [page_command("seed_ranges.py", page, args.render), "", machine, "", __doc__.split("\n\n")[1], *tables(rows)]
    page.write_text("\n".join(text) + "\n")
    print("\n".join(tables(rows)))


if __name__ == "__main__":
    main()
