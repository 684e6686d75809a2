"""Does the error against a reference solution pick the grid that FD would pick?

``ddim optimize-grid --search coordinate`` minimises the mean squared distance between a sampler's result and a
fine reference solution from the same noise (a pathwise error); ``--search family`` keeps the grid with the lowest
FD. On each exact mixture of benchmarks/solver_family.py, for unipc3 on the grids of ``ddim.optimized_grid.family_grids``
plus p = 1.25 / 3 variants: the grid with the lowest FD (2000 samples, the bed's x_T and limit) against the grid
with the lowest squared error to a 100-step reference on a separate batch of 128 noise samples, and where the latter
ranks by FD.

    python benchmarks/grid_criteria.py --out docs/benchmarks     # about 10 minutes on 1 thread
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _tables import command_line
from solver_family import BEDS, _score, mixture_bed

import ddim
from ddim.timesteps import power_grid

CALLS = (4, 5, 6, 8, 10)
POWERS = (1, 1.25, 1.5, 2, 2.5, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--pilot", type=int, default=128, help="noise samples for the squared error against the reference")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = ap.parse_args()
    sched = ddim.NoiseSchedule.linear(1000)
    lines = ["# Picking a grid: squared error against a reference vs FD", "", command_line("grid_criteria.py"), "",
             f"unipc3; FD of {args.samples} samples above the bed's limit; squared error on {args.pilot} other noise samples against a "
             "100-step unipc3 log-SNR solution. 'rank': where the squared-error pick stands by FD among the "
             "candidates (0 = the FD best).", "",
             "| bed | calls | best by FD | its FD excess | best by squared error | its FD excess | rank |", "|---|---:|---|---:|---|---:|---:|"]
    for bed, kw in BEDS.items():
        mixture, x_T, score = mixture_bed(kw, args.samples)
        model = mixture.denoiser(sched)
        pilot = torch.randn(args.pilot, mixture.dim, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
        with torch.inference_mode():
            ref = ddim.sample(model, sched, pilot, steps=100, method="unipc3", spacing="logsnr")
            limit = score(ddim.sample(model, sched, x_T, steps=100, method="unipc3", spacing="logsnr"))
        for calls in CALLS:
            grids = {f"p={p:g} {'open' if o else 'to0'}": power_grid(1000, calls, p, o) for p in POWERS for o in (False, True)}
            grids |= {sp: ddim.timesteps(1000, calls, sp, sched.alphas_cumprod).tolist() for sp in ("quadratic", "logsnr")}
            fd, err = {}, {}
            with torch.inference_mode():
                for name, g in grids.items():
                    fd[name] = _score(score, ddim.sample(model, sched, x_T, method="unipc3", timesteps=g)) - limit
                    err[name] = float((ddim.sample(model, sched, pilot, method="unipc3", timesteps=g) - ref).pow(2).sum(1).mean())
            by_fd, by_err = min(fd, key=fd.get), min(err, key=err.get)
            rank = sorted(fd, key=fd.get).index(by_err)
            lines.append(f"| {bed} | {calls} | {by_fd} | {fd[by_fd]:+.4f} | {by_err} | {fd[by_err]:+.4f} | {rank} |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grid-criteria.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
