"""Fast samplers on a family of exact-score test beds, against the peers' original code; the regret of ``auto``.

Test beds: Gaussian mixtures with exact scores (``ddim.analytic``), differently shaped on purpose
(dimension 2 to 256, 2 to 50 modes, sharp to broad components, Dirichlet weights), plus optionally
shipped models (``--models digits``). Every sampler of a bed starts from the same x_T. Quality is the
Frechet distance to the true mixture (models: FD-<dataset> against the split ``ddim compare`` uses),
read against the bed's *common limit*: the FD that unipc3 and dpm++2m reach at 100 calls from that
x_T (their mean; the ODE's own answer, which no sampler can beat except by luck).

Peers, their original code: k-diffusion's ``sample_dpmpp_2m`` (loaded unchanged, see _peers.py) on its
own Karras grid (its recommended use) and on our log-SNR grid; diffusers' DPMSolverMultistepScheduler
and UniPCMultistepScheduler (ports by their authors: bh1 / bh2, lower-order final, default spacing).

    python benchmarks/solver_family.py --out docs/benchmarks                 # mixtures
    python benchmarks/solver_family.py --models digits --out docs/benchmarks # and the digits model

writes solver-family.csv / .md: every cell, the limit per bed, and the regret table of ``auto``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from _peers import k_sample
from _tables import machine_line, measured_rows, page_command, page_options

import ddim
from ddim.metrics import frechet_distance, gaussian_stats
from ddim.sampling import CallCounter

BUDGETS = (4, 5, 6, 8, 10, 12, 15, 20)
BEDS = {  # name -> GaussianMixture.random arguments
    "64-D, 10 modes (our oracle)": dict(dim=64, modes=10, seed=0),
    "2-D, 8 sharp modes": dict(dim=2, modes=8, seed=1, spread=1.0, scale=(0.02, 0.1)),
    "16-D, 5 modes": dict(dim=16, modes=5, seed=2),
    "64-D, 50 sharp modes": dict(dim=64, modes=50, seed=3, spread=0.3, scale=(0.01, 0.05)),
    "256-D, 20 broad modes": dict(dim=256, modes=20, seed=4, spread=0.5, scale=(0.1, 0.5)),
    "128-D, 2 far modes": dict(dim=128, modes=2, seed=5, spread=1.5, scale=(0.02, 0.2)),
    "8-D, 3 unequal modes": dict(dim=8, modes=3, seed=6, spread=1.0, scale=(0.05, 0.5)),
}
OURS = [("ddim", "uniform"), ("ddim", "quadratic"), ("dpm++2m", "logsnr"), ("dpm++2m", "quadratic"), ("dpm++2m", "linspace"),
        ("unipc", "logsnr"), ("unipc", "quadratic"), ("unipc", "linspace"), ("unipc3", "logsnr"), ("unipc3", "quadratic"),
        ("unipc3", "time-quadratic"), ("unipc3", "linspace"), ("unipc-bh2", "trailing"), ("unipc-bh2", "quadratic"), ("unipc-bh1", "trailing"),
        ("unipc3", "quadratic-open"), ("unipc3-bh2", "quadratic-open"), ("ipndm", "time-quadratic"), ("ipndm3", "time-quadratic"),
        ("ipndm3", "quadratic"), ("ipndm3", "quadratic-0.9"), ("unipc3", "quadratic-top")]


def ours(method: str, spacing: str):
    def run(model, sched, x_T, calls):
        return ddim.sample(model, sched, x_T, steps=ddim.METHODS[method].steps_for(calls), method=method, spacing=spacing)

    return run


def auto(model, sched, x_T, calls, folder=None):
    """``method="auto"`` as ``ddim sample`` runs it: on a model bed with the folder, so a grid fitted to the model is used."""
    from ddim.policy import resolve

    choice = resolve("auto", "auto", calls, folder=folder)
    return ddim.sample(model, sched, x_T, steps=choice.steps, method=choice.method, spacing=choice.spacing, timesteps=choice.timesteps)


def kdiff(grid: str, sampler: str = "dpmpp_2m"):
    """k-diffusion's ``sample_<sampler>`` on its Karras grid (rho 7 between the model's sigma_min and sigma_max) or on one of
    our integer grids (then sigma = 0)."""
    def run(model, sched, x_T, calls):
        if grid == "karras":
            ks, _ = __import__("_peers").kdiffusion()
            ab = sched.alphas_cumprod.to(x_T.dtype)
            s = ((1 - ab) / ab).sqrt()
            sigmas = ks.get_sigmas_karras(calls, s[0].item(), s[-1].item(), device="cpu").to(x_T.dtype)
            return _k_on_sigmas(ks, model, sched, x_T, sigmas, sampler)
        return k_sample(sampler, model, sched, x_T, ddim.timesteps(len(sched), calls, grid, sched.alphas_cumprod))

    return run


def _k_on_sigmas(ks, model, sched, x_T, sigmas, sampler: str = "dpmpp_2m"):
    from _peers import kdiffusion

    _, ke = kdiffusion()
    denoiser = ke.DiscreteEpsDDPMDenoiser(model, sched.alphas_cumprod.to(x_T.dtype), quantize=True)
    return getattr(ks, f"sample_{sampler}")(denoiser, x_T * (1 + sigmas[0] ** 2).sqrt(), sigmas, disable=True)


def diffusers_run(kind: str, **options):
    def run(model, sched, x_T, calls):
        import diffusers

        base = dict(num_train_timesteps=len(sched), beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
        s = (diffusers.DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++", **options) if kind == "dpm"
             else diffusers.UniPCMultistepScheduler(**base, **options))
        s.set_timesteps(calls)
        x = x_T
        for t in s.timesteps:
            x = s.step(model(x, torch.as_tensor(t).long().expand(len(x))), t, x).prev_sample
        return x

    return run


SAMPLERS = {
    "ours auto": auto,
    **{f"ours {m} ({sp})": ours(m, sp) for m, sp in OURS},
    "k-diffusion dpmpp_2m (karras)": kdiff("karras"),
    "k-diffusion dpmpp_2m (our logsnr)": kdiff("logsnr"),
    # k-diffusion's linear multistep (order 4, variable-step weights in sigma = sbar): the peer nearest iPNDM
    "k-diffusion lms (karras)": kdiff("karras", "lms"),
    "k-diffusion lms (our time-quadratic)": kdiff("time-quadratic", "lms"),
    "diffusers DPM++ 2M": diffusers_run("dpm", solver_order=2),
    "diffusers DPM++ 3M": diffusers_run("dpm", solver_order=3),
    "diffusers UniPC bh2": diffusers_run("unipc", solver_order=2, solver_type="bh2"),
    # as configured by default (final_sigmas_type="zero") diffusers' bh1 returns NaN here: B(h) = h is infinite on the step to sigma = 0
    "diffusers UniPC bh1": diffusers_run("unipc", solver_order=2, solver_type="bh1"),
    "diffusers UniPC-3 bh2": diffusers_run("unipc", solver_order=3, solver_type="bh2"),
}


def _score(score, x) -> float:
    """The bed's FD, or inf where a sampler diverged (NaN/inf samples, or a covariance that cannot be decomposed)."""
    if not torch.isfinite(x).all():
        return float("inf")
    try:
        return float(score(x))
    except np.linalg.LinAlgError:
        return float("inf")


def limit_parts(model, sched, x_T, score) -> list[float]:
    """The bed's score for unipc3 and dpm++2m at 100 calls on the log-SNR grid from x_T; their mean is the common limit."""
    return [score(ddim.sample(model, sched, x_T, steps=100, method=m, spacing="logsnr")) for m in ("unipc3", "dpm++2m")]


def run_bed(name: str, model, sched, x_T, score, budgets, noise: float, samplers: dict | None = None) -> list[dict]:
    budgets = list(budgets)
    limits = limit_parts(model, sched, x_T, score)
    limit = float(np.mean(limits))
    print(f"{name}: limit {limit:.5f} (unipc3 {limits[0]:.5f}, dpm++2m {limits[1]:.5f})", flush=True)
    rows = []
    for sampler, run in (samplers or SAMPLERS).items():
        for calls in budgets:
            counter = CallCounter(model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                x = run(counter, sched, x_T, calls)
            value = _score(score, x)
            rows.append(dict(bed=name, sampler=sampler, calls=calls, model_calls=counter.calls, value=value, limit=limit,
                             excess=value - limit, noise=noise, seconds=time.perf_counter() - t0))
        print(f"  {sampler:36s} " + " ".join(f"{r['excess']:+.4f}" for r in rows[-len(budgets):]), flush=True)
    return rows


def mixture_bed(kw: dict, samples: int, xt_seed: int = 1):
    """One mixture bed: (the mixture, its x_T of ``samples`` draws from seed ``xt_seed``, FD to the true mixture as a
    function of samples)."""
    mixture = ddim.analytic.GaussianMixture.random(**kw)
    mu, cov = mixture.mean.numpy(), mixture.covariance.numpy()
    x_T = torch.randn(samples, mixture.dim, generator=torch.Generator().manual_seed(xt_seed), dtype=torch.float64)
    return mixture, x_T, lambda x: frechet_distance(*gaussian_stats(x), mu, cov)


def limit_cache() -> Path | None:
    """Where common limits are kept (``benchmarks/.cache/limits/``, or ``$DDIM_LIMIT_CACHE``), or None when that is
    ``off``. A limit costs 200 calls on 2,000 draws and depends only on the bed, its x_T and torch, so the scripts that
    build mixture beds (``bed_setup``) read it back instead of recomputing it."""
    where = os.environ.get("DDIM_LIMIT_CACHE", str(Path(__file__).resolve().parent / ".cache" / "limits"))
    return None if where == "off" else Path(where)


def cached_limit(kw: dict, samples: int, xt_seed: int, T: int, compute) -> float:
    """The common limit of the bed ``kw`` from x_T seed ``xt_seed``: read from the cache, else ``compute()`` and kept. The
    key holds everything the value depends on, torch's version and the limit's definition included; one file per key,
    written whole and renamed into place, so parallel workers cannot leave half a file."""
    where = limit_cache()
    if where is None:
        return compute()
    key = json.dumps(dict(bed=kw, samples=samples, xt_seed=xt_seed, T=T, torch=torch.__version__,
                          limit="mean FD of unipc3 and dpm++2m, 100 calls, logsnr grid, float64"), sort_keys=True)
    path = where / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    if path.exists():
        kept = json.loads(path.read_text())
        if kept["key"] == key:
            return kept["limit"]
    limit = compute()
    where.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(f".{os.getpid()}.part")
    part.write_text(json.dumps(dict(key=key, limit=limit)))
    os.replace(part, path)
    return limit


def bed_setup(kw: dict, samples: int, xt_seed: int = 1):
    """One mixture bed on the linear schedule: (mixture, schedule, exact model, x_T, FD to the mixture, common limit)."""
    mixture, x_T, score = mixture_bed(kw, samples, xt_seed)
    sched = ddim.NoiseSchedule.linear(1000)
    model = mixture.denoiser(sched)

    def compute() -> float:
        with torch.inference_mode():
            return float(np.mean(limit_parts(model, sched, x_T, score)))

    return mixture, sched, model, x_T, score, cached_limit(kw, samples, xt_seed, len(sched), compute)


def mixture_rows(bed: str, kw: dict, samples: int, samplers: dict, calls) -> list[dict]:
    """Every sampler at every budget on one mixture bed (its x_T and limit as above), printed a row at a time."""
    _, sched, model, x_T, score, limit = bed_setup(kw, samples)
    rows = []
    for name, run in samplers.items():
        for c in calls:
            with torch.inference_mode():
                value = _score(score, run(model, sched, x_T, c))
            rows.append(dict(bed=bed, sampler=name, calls=c, value=value, limit=limit, excess=value - limit))
        print(f"{bed} | {name}: " + " ".join(f"{r['excess']:+.4f}" for r in rows[-len(calls):]), flush=True)
    return rows


def mixtures(args) -> list[dict]:
    sched = ddim.NoiseSchedule.linear(1000)
    rows = []
    for name, kw in BEDS.items():
        mixture, x_T, score = mixture_bed(kw, args.samples)
        noise = float(np.std([score(mixture.sample(args.samples, torch.Generator().manual_seed(50 + i))) for i in range(5)]))
        rows += run_bed(name, mixture.denoiser(sched), sched, x_T, score, args.calls, noise)
    return rows


def check_models(parser: argparse.ArgumentParser, names) -> None:
    """Stop with the parser's one-line error, before any run, if a model name or folder in ``names`` cannot be loaded."""
    for name in names or ():
        try:
            ddim.load(name)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))


def model_scorer(name: str):
    """(the loaded model, its dataset, the feature network, FD of images against the split ``ddim compare`` uses)."""
    from ddim.compare import reference_split
    from ddim.features import features_for_dataset
    from ddim.metrics import reference_features

    m = ddim.load(name)
    dataset = m.config.get("train", {}).get("dataset", name)
    net = features_for_dataset(dataset)
    mu_r, cov_r = gaussian_stats(reference_features(dataset, net, reference_split(dataset, "auto")))
    return m, dataset, net, lambda x: frechet_distance(*gaussian_stats(net.embed(x)), mu_r, cov_r)


def model_noise(m, first: int, images: int) -> torch.Tensor:
    """x_T for ``images`` images of model ``m``, one seed each: first, first + 1, ..."""
    return torch.stack([torch.randn(m.sample_shape, generator=torch.Generator().manual_seed(i)) for i in range(first, first + images)])


def with_folder(samplers: dict, m) -> dict:
    """``samplers`` with "ours auto" (if there) reading model ``m``'s folder, as ``ddim sample`` does."""
    samplers = dict(samplers)
    if "ours auto" in samplers:
        samplers["ours auto"] = lambda model, sched, x_T, calls, folder=m.path: auto(model, sched, x_T, calls, folder)
    return samplers


def model_beds(args, samplers: dict | None = None) -> list[dict]:
    rows = []
    for name in args.models:
        m, dataset, net, score = model_scorer(name)
        x_T = model_noise(m, 0, args.images)
        from ddim.data import load_dataset

        real = load_dataset(dataset, split="train").data
        draws = [real[torch.randperm(len(real), generator=torch.Generator().manual_seed(i))[: args.images]] for i in range(5)]
        noise = float(np.std([score(d) for d in draws]))  # FD's spread over draws of real images of the same count
        bed_samplers = with_folder(samplers or SAMPLERS, m)
        rows += run_bed(f"model {name} (FD-{net.name}, {args.images} images)", m.model, m.schedule, x_T, score, args.model_calls or args.calls, noise,
                        bed_samplers)
    return rows


def regret_table(rows: list[dict], budgets) -> list[str]:
    """Per bed and budget: auto's excess over the limit, the best of ours, the best peer's, and auto / best peer."""
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    cell = {(r["bed"], r["sampler"], r["calls"]): r["excess"] for r in rows}
    lines = ["| bed | " + " | ".join(f"{c} calls" for c in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for bed in beds:
        parts = []
        for c in budgets:
            if (bed, "ours auto", c) not in cell:
                parts.append("—")
                continue
            a = cell[(bed, "ours auto", c)]
            peers = [v for (b, s, cc), v in cell.items() if b == bed and cc == c and not s.startswith("ours")]
            best = min(v for (b, s, cc), v in cell.items() if b == bed and cc == c)
            parts.append(f"{a:+.4f} / {best:+.4f} / " + (f"{min(peers):+.4f}" if peers else "—"))  # no peer rows: a run of ours only
        lines.append(f"| {bed} | " + " | ".join(parts) + " |")
    return lines


def policy_table(rows: list[dict], budgets) -> tuple[list[str], dict]:
    """For each budget, our (method, spacing) with the smallest worst-case regret over the beds.

    Regret on a bed = max(0, excess - best - 2 noise) / scale: best is the smallest excess of any sampler (ours or
    a peer's) at that budget, noise the bed's FD sampling noise (the spread of FD over 5 sets of exact draws or real
    images of the same count; differences within it are ties),
    and scale the excess of plain DDIM on the paper's uniform grid at the smallest budget (so 1 = the whole error
    of the DDIM paper's sampler at 4 calls). Scale-free: a 2-D bed weighs as much as a 256-D one."""
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    cell = {(r["bed"], r["sampler"], r["calls"]): r["excess"] for r in rows}
    noise = {r["bed"]: r.get("noise", 0.0) for r in rows}
    candidates = [f"ours {m} ({sp})" for m, sp in OURS if any(r["sampler"] == f"ours {m} ({sp})" for r in rows)]
    scale = {b: cell[(b, "ours ddim (uniform)", min(c for (bb, _s, c) in cell if bb == b))] for b in beds}
    lines = ["| calls | choice | worst regret (bed) | mean regret | runner-up (worst) |", "|---:|---|---|---:|---|"]
    chosen = {}
    for c in budgets:
        scored = []
        for k in candidates:
            regrets = []
            for b in beds:
                if (b, k, c) not in cell:
                    continue
                best = min(v for (bb, _s, cc), v in cell.items() if bb == b and cc == c)
                regrets.append((max(0.0, cell[(b, k, c)] - best - 2 * noise[b]) / scale[b], b))
            worst = max(regrets)
            scored.append((round(worst[0], 4), float(np.mean([r for r, _ in regrets])), k, worst[1]))
        scored.sort()
        (w, mean, k, bed), runner = scored[0], scored[1]
        chosen[c] = k
        lines.append(f"| {c} | {k} | {w:.3f} ({bed}) | {mean:.3f} | {runner[2]} ({runner[0]:.3f}) |")
    return lines, chosen


def current_auto(rows: list[dict]) -> list[dict]:
    """The "ours auto" rows as the library's current table (ddim.policy.recommended) picks: the row of the chosen
    candidate where it was measured, so the regret table follows the code even when the table changed after a run."""
    from ddim.policy import recommended

    by = {(r["bed"], r["sampler"], r["calls"]): r for r in rows}
    out = []
    for r in rows:
        if r["sampler"] == "ours auto" and not r["bed"].startswith("model "):  # a model bed's auto may use the folder's fitted grids,
            # which no other row holds: its measured row stays
            method, spacing = recommended(r["calls"])
            r = {**by.get((r["bed"], f"ours {method} ({spacing})", r["calls"]), r), "sampler": "ours auto"}
        out.append(r)
    return out


def write_markdown(args, rows) -> None:
    rows = current_auto(rows)
    page = args.out / f"{args.name}.md"
    machine = machine_line(page, args.render, f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
                           f"{time.strftime('%Y-%m-%d')}. {args.samples} samples per mixture cell, float64.")
    lines = [page_command("solver_family.py", page, args.render), "", machine, "",
             "Each entry: FD above the bed's common limit (FD of unipc3 and dpm++2m at 100 calls from the same x_T, their mean). "
             "Lower is better; a slightly negative entry is a lucky coarse solution, within noise.", "",
             "## Regret of `auto`: auto / best of all / best peer (FD above the limit)", ""]
    lines += regret_table(rows, args.calls)
    noise = {r["bed"]: r.get("noise", 0.0) for r in rows}
    has_scale = {r["bed"] for r in rows if r["sampler"] == "ours ddim (uniform)"} == set(noise)
    policy = policy_table(rows, args.calls)[0] if has_scale else ["(not drawn: a run of a few samplers without 'ours ddim (uniform)', "
                                                                  "the scale of its regrets)"]
    lines += ["", "## The most robust of our samplers per budget", "",
              "Regret on a bed = max(0, excess - best excess of any sampler - 2 x the bed's FD noise) / (excess of plain DDIM on the "
              "uniform grid at the bed's smallest budget): 0 = as good as the best available there (within noise). The choice minimises "
              "the worst bed. FD noise per bed (std over 5 sets of exact draws, or of real images for a model): "
              + ", ".join(f"{b} {v:.4f}" for b, v in noise.items()) + ".", ""]
    lines += policy
    for bed in dict.fromkeys(r["bed"] for r in rows):
        limit = next(r["limit"] for r in rows if r["bed"] == bed)
        lines += ["", f"## {bed} (limit {limit:.4f})", "", "| sampler | " + " | ".join(map(str, args.calls)) + " |", "|---|" + "---:|" * len(args.calls)]
        for sampler in dict.fromkeys(r["sampler"] for r in rows):  # as measured (a --render lists no others)
            vals = {r["calls"]: r["excess"] for r in rows if r["bed"] == bed and r["sampler"] == sampler}
            lines.append(f"| {sampler} | " + " | ".join(f"{vals[c]:+.4f}" if c in vals else "—" for c in args.calls) + " |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2000, help="samples per mixture cell")
    p.add_argument("--models", nargs="*", default=[], help="shipped models or folders as extra test beds (e.g. digits)")
    p.add_argument("--images", type=int, default=500, help="images per model cell")
    p.add_argument("--calls", type=int, nargs="+", default=list(BUDGETS))
    p.add_argument("--model-calls", type=int, nargs="+", default=None, help="budgets for the model beds (default: --calls)")
    p.add_argument("--skip-mixtures", action="store_true")
    p.add_argument("--samplers", nargs="+", metavar="NAME", help="run only these rows (names as in the tables, e.g. 'ours auto')")
    page_options(p, "solver-family")
    args = p.parse_args()
    check_models(p, args.models)
    if args.samplers and not args.render:
        unknown = [n for n in args.samplers if n not in SAMPLERS]
        if unknown:
            p.error(f"unknown sampler(s) {', '.join(map(repr, unknown))}; choose from {', '.join(map(repr, SAMPLERS))}")
        for n in [n for n in SAMPLERS if n not in args.samplers]:
            del SAMPLERS[n]
    rows = measured_rows(args, lambda: ([] if args.skip_mixtures else mixtures(args)) + model_beds(args))
    write_markdown(args, rows)


if __name__ == "__main__":
    main()
