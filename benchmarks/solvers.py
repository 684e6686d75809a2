"""Sample quality per model call: our solvers and step grids against diffusers' schedulers.

Two test beds, every number from the same run:

1. the exact-score Gaussian-mixture oracle (64 dims, 10 modes): Frechet distance of N samples to
   the true mean and covariance, next to the finite-sample floor (exact draws of N);
2. a model (``--model``, default the shipped digits model): FD-<dataset> of N images against the real
   split ``ddim compare`` uses (the test split when it has >= 1,000 images, else the training split).

Every sampler starts from the same noise; diffusers' schedulers drive the same model callables.
Model calls are counted, not assumed (Heun makes 2 per step but 1 on the last).

    python benchmarks/solvers.py --out docs/benchmarks
    python benchmarks/solvers.py --model fashion-mnist --skip-oracle --calls 5 8 10 20 --images 300 --name solvers-fashion-mnist

writes solvers.md, solvers.csv and solvers.png.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from _tables import command_line, steps_table, write_csv

import ddim
from ddim.metrics import frechet_distance, gaussian_stats
from ddim.sampling import CallCounter

CALLS = (5, 8, 10, 15, 20, 50)


GRIDS: dict = {}  # (bed, method, steps) -> fitted grid, filled per test bed before it runs


def ours(method: str, spacing: str):
    def run(model, sched, x_T, calls):
        steps = ddim.METHODS[method].steps_for(calls)
        if spacing == "optimized":
            return ddim.sample(model, sched, x_T, method=method, timesteps=GRIDS[(BED[0], method, steps)])
        return ddim.sample(model, sched, x_T, steps=steps, method=method, spacing=spacing)

    return run


BED = ["oracle"]


def auto(model, sched, x_T, calls):
    """What ``ddim.sample(method="auto", spacing="auto")`` picks for ``calls`` (no fitted grid: no model folder)."""
    return ddim.sample(model, sched, x_T, steps=calls, method="auto", spacing="auto")


def diffusers_run(kind: str, **options):
    def run(model, sched, x_T, calls):
        import diffusers

        base = dict(num_train_timesteps=len(sched), beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
        if kind == "ddim":
            s = diffusers.DDIMScheduler(**base, clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
        elif kind == "dpm":
            s = diffusers.DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++", **options)
        else:
            s = diffusers.UniPCMultistepScheduler(**base, **options)
        s.set_timesteps(calls)
        x = x_T
        for t in s.timesteps:
            tt = torch.as_tensor(t).long().expand(len(x))
            x = s.step(model(x, tt), t, x).prev_sample
        return x

    return run


SAMPLERS = {
    "ours auto (ddim sample's default)": auto,
    "ours DDIM (uniform, the paper's)": ours("ddim", "uniform"),
    "ours DDIM (logsnr)": ours("ddim", "logsnr"),
    "ours DDIM (quadratic)": ours("ddim", "quadratic"),
    "ours dpm++2m (logsnr)": ours("dpm++2m", "logsnr"),
    "ours dpm++2m (karras)": ours("dpm++2m", "karras"),
    "ours dpm++3m (logsnr)": ours("dpm++3m", "logsnr"),
    "ours unipc (logsnr)": ours("unipc", "logsnr"),
    "ours unipc (karras)": ours("unipc", "karras"),
    "ours unipc (trailing)": ours("unipc", "trailing"),
    "ours unipc3 (logsnr)": ours("unipc3", "logsnr"),
    "ours unipc3 (quadratic)": ours("unipc3", "quadratic"),
    "ours unipc (fitted grid)": ours("unipc", "optimized"),
    "ours heun (karras)": ours("heun", "karras"),
    "ours dpm++2m-sde (logsnr)": ours("dpm++2m-sde", "logsnr"),
    "diffusers DDIM": diffusers_run("ddim"),
    "diffusers DPM++ 2M": diffusers_run("dpm", solver_order=2),
    "diffusers DPM++ 2M karras": diffusers_run("dpm", solver_order=2, use_karras_sigmas=True),
    "diffusers DPM++ 2M lu-lambdas": diffusers_run("dpm", solver_order=2, use_lu_lambdas=True),
    "diffusers DPM++ 3M": diffusers_run("dpm", solver_order=3),
    "diffusers UniPC": diffusers_run("unipc", solver_order=2),
    "diffusers UniPC karras": diffusers_run("unipc", solver_order=2, use_karras_sigmas=True),
}


def measure(name, run, model, sched, x_T, calls, score) -> dict:
    if name.endswith("(fitted grid)") and (BED[0], "unipc", calls) not in GRIDS:
        return {"sampler": name, "calls": calls, "model_calls": 0, "value": float("nan"), "seconds": 0.0}
    counted = CallCounter(model)
    start = time.perf_counter()
    with torch.inference_mode():
        x = run(counted, sched, x_T, calls)
    seconds = time.perf_counter() - start
    value = score(x)
    print(f"{name:36s} calls={counted.calls:3d}  {value:.5f}  ({seconds:.1f}s)", flush=True)
    return {"sampler": name, "calls": calls, "model_calls": counted.calls, "value": value, "seconds": seconds}


def oracle(args) -> tuple[list[dict], float, float]:
    sched = ddim.NoiseSchedule.linear(1000)
    mixture = ddim.analytic.GaussianMixture.random(dim=64, modes=10, seed=0)
    model = mixture.denoiser(sched)
    mu, cov = mixture.mean.numpy(), mixture.covariance.numpy()
    score = lambda x: frechet_distance(*gaussian_stats(x), mu, cov)  # noqa: E731
    floors = [score(mixture.sample(args.samples, torch.Generator().manual_seed(100 + i))) for i in range(3)]
    print(f"oracle floor (exact draws, N={args.samples}): {np.mean(floors):.5f} +- {np.std(floors):.5f}", flush=True)
    x_T = torch.randn(args.samples, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    from ddim.optimized_grid import optimize_grid

    BED[0] = "oracle"
    fit, check = (torch.randn(512, 64, generator=torch.Generator().manual_seed(1000 + k), dtype=torch.float64) for k in (0, 1))
    for c in args.calls:  # fitted on other noise than the evaluation batch
        r = optimize_grid(model, sched, c, "unipc", fit, check, progress=False)
        GRIDS[("oracle", "unipc", c)] = r["grid"]
        print(f"oracle fitted grid S={c}: {r['grid']} (check error {r['check_loss_logsnr']:.4g} -> {r['check_loss']:.4g})", flush=True)
    names = [n for n in SAMPLERS if not args.samplers or n in args.samplers]
    rows = [measure(n, SAMPLERS[n], model, sched, x_T, c, score) | {"bed": "oracle"} for n in names for c in args.calls]
    return rows, float(np.mean(floors)), float(np.std(floors))


def model_bed(args) -> list[dict]:
    """FD-<dataset> of ``args.images`` samples of a shipped model or folder, against the real split
    that ``ddim compare`` uses by default (the test split when it is large enough, else train)."""
    from ddim.compare import SEED_STRIDE, reference_split
    from ddim.features import features_for_dataset
    from ddim.metrics import reference_features
    from ddim.optimized_grid import load_grid

    m = ddim.load(args.model)
    dataset = m.config.get("train", {}).get("dataset", args.model)
    BED[0] = "model"
    for c in args.calls:  # fitted by: ddim optimize-grid MODEL --method unipc --steps 5 8 10 15 20
        try:
            GRIDS[("model", "unipc", c)] = load_grid(m.path, "unipc", c)
        except ValueError:
            print(f"no fitted {c}-step grid in the {args.model} model folder; that cell stays empty", flush=True)
    net = features_for_dataset(dataset)
    split = reference_split(dataset, "auto")
    real = reference_features(dataset, net, split)
    BED.append(f"FD-{net.name} of {args.images} images against the {split} split ({len(real)} images)")
    mu_r, cov_r = gaussian_stats(real)
    score = lambda x: frechet_distance(*gaussian_stats(net.embed(x)), mu_r, cov_r)  # noqa: E731
    gens = [torch.Generator().manual_seed(i) for i in range(args.images)]  # seed 0 of ddim compare
    assert SEED_STRIDE > args.images
    x_T = torch.stack([torch.randn(m.sample_shape, generator=g) for g in gens])
    names = [n for n in SAMPLERS if not args.samplers or n in args.samplers]
    return [measure(n, SAMPLERS[n], m.model, m.schedule, x_T, c, score) | {"bed": "model"} for n in names for c in args.calls]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=10000, help="oracle samples per cell")
    p.add_argument("--model", default="digits", help="shipped model name or folder for the second test bed (default digits)")
    p.add_argument("--images", type=int, default=500, help="model samples per cell")
    p.add_argument("--calls", type=int, nargs="+", default=list(CALLS))
    p.add_argument("--samplers", nargs="+", default=None, choices=list(SAMPLERS), metavar="NAME", help="only these samplers (default: all)")
    p.add_argument("--skip-model", action="store_true", help="the oracle only")
    p.add_argument("--skip-oracle", action="store_true", help="the model only")
    p.add_argument("--name", default="solvers", help="output files NAME.md, NAME.csv, NAME.png (default solvers)")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()

    rows, floor, floor_sd = oracle(args) if not args.skip_oracle else ([], float("nan"), float("nan"))
    if not args.skip_model:
        rows += model_bed(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    write_markdown(args, rows, floor, floor_sd)
    plot(args, rows, floor)


def _fmt(value: float, spec: str) -> str:
    return "—" if value != value else format(value, spec)


def write_markdown(args, rows, floor, floor_sd) -> None:
    names = list(SAMPLERS)
    lines = [
        command_line("solvers.py"),
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{time.strftime('%Y-%m-%d')}. Columns: model calls per sample (Heun: the nearest odd count at or below).",
        "",
        f"## Gaussian-mixture oracle (64 dims, 10 modes, N = {args.samples})",
        "",
        f"Frechet distance to the true distribution. Finite-sample floor (exact draws of N, 3 repeats): {floor:.4f} ± {floor_sd:.4f}.",
        "",
    ]
    cell = {(r["bed"], r["sampler"], r["calls"]): r for r in rows}
    if args.skip_oracle:
        lines = lines[:4]
    else:
        lines += steps_table([n for n in names if ("oracle", n, args.calls[0]) in cell], args.calls, lambda n, c: _fmt(cell[("oracle", n, c)]["value"], ".4f"))
    if any(r["bed"] == "model" for r in rows):
        used = [n for n in names if ("model", n, args.calls[0]) in cell]
        lines += ["", f"## Model {args.model!r} ({BED[-1]})", ""]
        lines += steps_table(used, args.calls, lambda n, c: _fmt(cell[("model", n, c)]["value"], ".3f"))
    bed = "model" if args.skip_oracle else "oracle"
    lines += ["", f"Model calls actually made ({bed}):", ""]
    lines += steps_table([n for n in names if (bed, n, args.calls[0]) in cell], args.calls, lambda n, c: str(cell[(bed, n, c)]["model_calls"]))
    (args.out / f"{args.name}.md").write_text("\n".join(lines).replace("| method |", "| sampler |").replace("S=", "") + "\n")


def plot(args, rows, floor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beds = [b for b in ("oracle", "model") if any(r["bed"] == b for r in rows)]
    fig, axes = plt.subplots(1, len(beds), figsize=(7 * len(beds), 5), squeeze=False)
    for ax, bed in zip(axes[0], beds):
        for name in SAMPLERS:
            pts = sorted((r["model_calls"], r["value"]) for r in rows if r["bed"] == bed and r["sampler"] == name and r["value"] == r["value"])
            if not pts:
                continue
            style = "--" if name.startswith("diffusers") else "-"
            ax.plot(*zip(*pts), style, marker="o", ms=3, label=name)
        if bed == "oracle":
            ax.axhline(floor, color="gray", lw=1, ls=":", label="finite-sample floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model calls per sample")
        ax.set_ylabel("FD to the truth" if bed == "oracle" else "FD (the dataset's classifier features)")
        ax.set_title("Gaussian-mixture oracle" if bed == "oracle" else f"model {args.model!r}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / f"{args.name}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
