"""Does knowing the data's mean and covariance help a few-call sampler? Samplers built on it, on the exact mixtures.

At the noisiest levels the data prediction is affine in x_t: there x0_hat = mu + alpha C (alpha^2 C + sigma^2 I)^-1
(x_t - alpha mu) to first order in alpha, for any data of mean mu and covariance C. So a sampler's first call, at the
first level of its grid, shows both: a least-squares fit of x0_hat against x_t over the batch (2,000 draws, 2-256
dimensions) gives them (``fit_gaussian``). Its relative residual, ``resid`` (the part of x0_hat the fit misses), is
how far from Gaussian the data already looks at that level; it grows with how far apart the modes are. On data with
that mean and covariance the flow and the data prediction are known in closed form; how far down a bed still follows
them is what ``free-level`` against ``extra-call`` shows. Four ways to spend that knowledge, at the number of model
calls in the column unless said:

- ``free-level``: the table's method and grid with one more level, halfway (in t) between its first two, evaluated on
  the Gaussian fitted to the first call: no extra call. ``extra-call`` is the same grid with that level a model call
  (one call more than the column says): where the two agree, the Gaussian's level is as good as the model's.
- ``warm``: the first call at T - 1, then the table's method and grid taken with as many levels as leave the rest of
  the budget for the levels at or below t = 700 (sigma / alpha = 12, a choice); the levels above it are evaluated on
  the Gaussian.
- ``gauss-ei``: an exponential integrator around the Gaussian. With z = x - alpha mu the flow in lambda is
  dz/dlambda = A(lambda) z + alpha R, where the Gaussian part A z is integrated exactly (per eigen-direction of C the
  Gaussian's flow scales z by sqrt(alpha^2 c + sigma^2)) and only the rest R = x0_hat - (the Gaussian's x0_hat) by a
  polynomial through the latest values (order 3, in sigma / alpha, lower-order final steps), on time-quadratic from
  T - 1. On a Gaussian it is exact whatever the number of calls (tests/test_benchmark_scripts.py).

Entries are FD above the bed's common limit divided by the limit, as on the grid_sweep.py pages.

    python benchmarks/gaussian_start.py --calls 4 5 6 8 10 --workers 2 --out docs/benchmarks   # about 12 minutes on 2 cores
    python benchmarks/gaussian_start.py --models digits --calls 4 5 6 7 8 --name gaussian-start-digits --out docs/benchmarks
    python benchmarks/gaussian_start.py --beds fresh --calls 5 6 8 --workers 2 --name gaussian-start-fresh --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _tables import machine_line, measured_rows, page_command, page_options, read_rows
from grid_sweep import BED_SETS, bed_setup, beds_of, draw
from oracle_draws import PEERS
from solver_family import SAMPLERS as PEER_SAMPLERS
from solver_family import _score, check_models

import ddim
from ddim.analytic import GaussianMixture
from ddim.schedule import lambda_of

NODES, WEIGHTS = np.polynomial.legendre.leggauss(24)


def fit_gaussian(x: torch.Tensor, x0: torch.Tensor, a: float, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, C) of the Gaussian whose data prediction at level (a, s) is the least-squares affine fit of x0 on x."""
    ones = torch.ones(len(x), 1, dtype=x.dtype)
    coef = torch.linalg.lstsq(torch.cat([x, ones], 1), x0).solution
    W, b = (coef[:-1] + coef[:-1].T) / 2, coef[-1]  # x0 = x W + b, W = a C (a^2 C + s^2)^-1
    eye = torch.eye(W.shape[0], dtype=W.dtype)
    values, vectors = torch.linalg.eigh(s**2 * W @ torch.linalg.inv(a * eye - a**2 * W))
    C = (vectors * values.clamp(min=1e-12)) @ vectors.T  # a flat direction: the fit's eigenvalue near 0 may come out below it
    return torch.linalg.solve(eye - a * W, b), (C + C.T) / 2


class FitFirst:
    """``model`` whose first call also fits the Gaussian (``fit_gaussian``); after it, calls at a level in ``free`` go
    to that Gaussian's exact denoiser instead. Counts the model's calls (``calls``) and keeps the fit's ``resid``."""

    def __init__(self, model, sched, free=()) -> None:
        self.model, self.sched, self.free = model, sched, set(free)
        self.gaussian, self.calls, self.resid = None, 0, float("nan")

    def __call__(self, x, t):
        level = int(torch.as_tensor(t).flatten()[0])
        if self.gaussian is not None and level in self.free:
            return self.gaussian(x, t)
        self.calls += 1
        eps = self.model(x, t)
        if self.gaussian is None:
            ab = self.sched.alpha_bar(level)
            a, s = math.sqrt(ab), math.sqrt(1 - ab)
            x0 = (x - s * eps) / a
            mu, C = fit_gaussian(x.reshape(len(x), -1).double(), x0.reshape(len(x), -1).double(), a, s)
            self.gaussian = GaussianMixture(mu[None], C[None]).denoiser(self.sched)
            fitted = (x - s * self.gaussian(x, t)) / a
            self.resid = float((x0 - fitted).norm() / (x0 - x0.mean(0)).norm())
        return eps


def first_call(model, sched, x_T: torch.Tensor):
    """The Gaussian (mu, C) fitted to the model's call at T - 1."""
    fit = FitFirst(model, sched)
    fit(x_T, torch.tensor([len(sched) - 1]))
    return fit.gaussian.mixture.mean, fit.gaussian.mixture.covariance


def free_level(model, sched, x_T, calls: int, real: bool = False):
    """``free-level`` (``real``: ``extra-call``), module doc. Returns (samples, the fit's resid)."""
    method, spacing = ddim.policy.recommended(calls)
    grid = ddim.timesteps(len(sched), ddim.METHODS[method].steps_for(calls), spacing).tolist()
    middle = (grid[0] + grid[1] + 1) // 2
    fit = FitFirst(model, sched, () if real else [middle])
    x = ddim.sample(fit, sched, x_T, method=method, timesteps=[grid[0], middle, *grid[1:]])
    assert fit.calls == calls + real
    return x, fit.resid


def warm(model, sched, x_T, calls: int, handover: int = 700):
    """``warm`` (module doc): 1 call at T - 1, the table's grid evaluated on the Gaussian above ``handover``."""
    method, spacing = ddim.policy.recommended(calls)
    steps = next(S for S in range(calls, len(sched)) if (ddim.timesteps(len(sched), S, spacing) <= handover).sum() >= calls - 1)
    grid = [len(sched) - 1, *(t for t in ddim.timesteps(len(sched), steps, spacing).tolist() if t < len(sched) - 1)]
    fit = FitFirst(model, sched, [t for t in grid[1:] if t > handover])
    x = ddim.sample(fit, sched, x_T, method=method, timesteps=grid)
    assert fit.calls == calls
    return x


def gauss_ei(model, sched, x_T, calls: int, order: int = 3):
    """``gauss-ei`` (module doc) on time-quadratic; the call at T - 1 is both the fit and the first node."""
    grid = ddim.timesteps(len(sched), calls, "time-quadratic").tolist()
    ab = [sched.alpha_bar(t) for t in grid]
    lam = [float(lambda_of(v)) for v in ab]
    x, history = x_T, []  # (lambda, R in C's eigenbasis), newest first
    for i, t in enumerate(grid):
        a, s = math.sqrt(ab[i]), math.sqrt(1 - ab[i])
        x0 = (x - s * model(x, torch.tensor([t]))) / a
        if i == 0:
            mu, C = fit_gaussian(x, x0, a, s)
            c, U = torch.linalg.eigh(C)
            c = c.clamp(min=0).numpy()
        z = (x - a * mu) @ U
        history = [(lam[i], x0 @ U - mu @ U - z * torch.from_numpy(a * c / (a * a * c + s * s)))] + history[: order - 1]
        if i == len(grid) - 1:
            return x0
        k = min(len(history), len(grid) - 1 - i)  # lower-order final steps
        lo, hi = lam[i], lam[i + 1]
        u = lo + (NODES + 1) / 2 * (hi - lo)
        au2 = 1 / (1 + np.exp(-2 * u))  # alpha^2 at lambda u
        spread = lambda a2: np.sqrt(a2 * c + 1 - a2)  # noqa: E731 - the Gaussian's std along each direction at alpha^2 = a2
        at2 = 1 / (1 + math.exp(-2 * hi))
        kernel = (spread(at2)[None] / spread(au2[:, None])) * np.sqrt(au2)[:, None] * (WEIGHTS / 2 * (hi - lo))[:, None]
        rho = np.exp(lo - u)  # sigma/alpha over its value at lambda_i
        nodes = [math.exp(lo - lj) for lj, _ in history[:k]]
        y = z * torch.from_numpy(spread(at2) / spread(ab[i]))
        for j in range(k):
            basis = np.prod([(rho - nodes[m]) / (nodes[j] - nodes[m]) for m in range(k) if m != j], axis=0) if k > 1 else np.ones_like(rho)
            y = y + history[j][1] * torch.from_numpy((kernel * np.asarray(basis)[:, None]).sum(0))
        x = math.sqrt(at2) * mu + y @ U.T
    return x


SAMPLERS = ("table", "free-level", "extra-call", "warm", "gauss-ei")
# ``gated``: free-level where resid * sigma / alpha at the grid's first level is below GATE, else the table. The product
# grows with how far apart the modes are; GATE was set between far modes (9.8 at 5 calls, 11.9 at 8) and every other bed
# of the 28 (at most 4.8) before the fresh beds were drawn, to test it there.
GATE = 7.0
# The fresh 64-D beds of oracle_draws.py (--draws fresh), drawn after GATE was set, to test it there
FRESH = BED_SETS["fresh"]
PEER_PAGES = ("solver-family-ipndm.csv", "solver-family-tq.csv", "oracle-draws.csv", "oracle-draws-heldout.csv")


def bed_rows(bed: str, kw: dict, calls, samples: int, peers: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    _, sched, model, x_T, score, limit = bed_setup(kw, samples)
    rows = []
    with torch.inference_mode():
        for c in calls:
            free, resid = free_level(model, sched, x_T, c)
            samplers = dict(table=draw(model, sched, x_T, "auto", "table", c), **{"free-level": free},
                            **{"extra-call": free_level(model, sched, x_T, c, real=True)[0]}, warm=warm(model, sched, x_T, c),
                            **{"gauss-ei": gauss_ei(model, sched, x_T, c)})
            if peers:  # the peers of oracle_draws.py, from the same x_T
                samplers.update({name: PEER_SAMPLERS[name](model, sched, x_T, c) for name in PEERS})
            rows += [dict(bed=bed, sampler=name, calls=c, value=_score(score, x), limit=limit, resid=resid) for name, x in samplers.items()]
    print(f"{bed}: limit {limit:.4f}", flush=True)
    return rows


def best_peers(folder: Path) -> dict:
    """{(bed, calls): the lowest excess / limit of any peer} over the pages of PEER_PAGES in ``folder`` (same beds, x_T, limits)."""
    best = {}
    for page in PEER_PAGES:
        if (folder / page).is_file():
            for r in read_rows(folder / page):
                if not r["sampler"].startswith("ours"):
                    key = (r["bed"], r["calls"])
                    best[key] = min(best.get(key, math.inf), r["excess"] / r["limit"])
    return best


def first_ratio(calls: int) -> float:
    """sigma / alpha at the first level of the table's grid at ``calls`` calls (linear schedule of 1,000 steps)."""
    sched = ddim.NoiseSchedule.linear(1000)
    method, spacing = ddim.policy.recommended(calls)
    ab = sched.alpha_bar(int(ddim.timesteps(1000, ddim.METHODS[method].steps_for(calls), spacing)[0]))
    return math.sqrt((1 - ab) / ab)


def page(rows: list[dict], calls, peers: dict) -> list[str]:
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    rel = {(r["bed"], r["sampler"], r["calls"]): (r["value"] - r["limit"]) / r["limit"] for r in rows}
    resid = {(r["bed"], r["calls"]): r["resid"] for r in rows}
    peers, ratio = dict(peers), {c: first_ratio(c) for c in calls}
    for r in rows:  # peers run here (--beds fresh)
        if r["sampler"] in PEERS:
            peers[(r["bed"], r["calls"])] = min(peers.get((r["bed"], r["calls"]), math.inf), rel[(r["bed"], r["sampler"], r["calls"])])
    for b, c in resid:  # gated: derived, no run of its own
        rel[(b, "gated", c)] = rel[(b, "free-level" if resid[(b, c)] * ratio[c] < GATE else "table", c)]
    columns = (*SAMPLERS, "gated")
    lines = ["| sampler | " + " | ".join(f"{c} calls: within 5% (worst)" for c in calls) + " |", "|---|" + "---:|" * len(calls)]
    for n in columns:
        parts = [f"{sum(rel[(b, n, c)] <= 0.05 for b in beds)} / {len(beds)} ({max(rel[(b, n, c)] for b in beds):+.3f})" for c in calls]
        lines.append(f"| {n}{' (one call more)' if n == 'extra-call' else ''} | " + " | ".join(parts) + " |")
    for c in calls:
        lines += ["", f"## Per bed at {c} calls: FD above the limit / the limit", "",
                  "| bed | resid | " + " | ".join(columns) + " | best peer | free-level / best peer | gated / best peer |",
                  "|---|---:|" + "---:|" * (len(columns) + 3)]
        for b in beds:
            peer = peers.get((b, c))
            ratios = [f"{rel[(b, n, c)] / peer:.2f}" if peer and peer > 0 else "—" for n in ("free-level", "gated")]
            lines.append(f"| {b} | {resid[(b, c)]:.3f} | " + " | ".join(f"{rel[(b, n, c)]:+.3f}" for n in columns)
                         + f" | {f'{peer:+.3f}' if peer is not None else '—'} | " + " | ".join(ratios) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, nargs="+", default=[5, 8, 10])
    ap.add_argument("--beds", nargs="+", choices=list(BED_SETS), default=["family", "shapes", "held-out"],
                    help="'fresh': twelve 64-D beds drawn to test GATE, with the peers run on them (not in the default)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--models", nargs="+", help="learned models instead of the mixtures (ddim.load names, e.g. digits)")
    ap.add_argument("--images", type=int, default=300, help="with --models: images per sampler (seeds 0..N-1)")
    page_options(ap, "gaussian-start")
    args = ap.parse_args()
    if args.models:
        check_models(ap, args.models)
        return model_page(args)
    if min(args.calls) < 4:
        ap.error("--calls must be at least 4: the table's grid then has two levels to put the free one between")
    rows = measured_rows(args, lambda: measure(args))
    out = args.out / f"{args.name}.md"
    machine = machine_line(out, args.render, f"Machine: {args.workers} processes of 1 CPU thread, torch {torch.__version__}. "
                           f"{args.samples} samples per cell, float64.")
    peers = (f"The best peer is the lowest excess of any peer on {', '.join(PEER_PAGES)} (same beds, x_T and limits), or on the "
             f"fresh beds of the peers run here ({', '.join(PEERS)}). ``gated`` is free-level where resid times sigma / alpha "
             f"at the grid's first level is below {GATE:g}, else the table (derived from those two columns).")
    text = [page_command("gaussian_start.py", out, args.render), "", machine, "", *__doc__.split("\n\n")[1:4], "", peers, "",
            "## How often each sampler is at the limit", ""]
    tables = page(rows, args.calls, best_peers(args.out))
    out.write_text("\n".join(text + tables) + "\n")
    print("\n".join(tables[: len(SAMPLERS) + 3]))


def model_page(args) -> None:
    """``--models``: the table (no model folder), ``auto`` with the folder, free-level and extra-call on learned models, FD
    above the limit as solver_family.py measures it (the first ``--images`` seeds, FD against the training split)."""
    import solver_family

    samplers = {"ours table (no model folder)": lambda model, sched, x_T, c: draw(model, sched, x_T, "auto", "table", c),
                "ours auto": solver_family.auto,
                "ours free-level": lambda model, sched, x_T, c: free_level(model, sched, x_T, c)[0],
                "ours extra-call": lambda model, sched, x_T, c: free_level(model, sched, x_T, c, real=True)[0]}
    args.model_calls = None
    rows = measured_rows(args, lambda: solver_family.model_beds(args, samplers))
    out = args.out / f"{args.name}.md"
    cell = {(r["bed"], r["sampler"], r["calls"]): r for r in rows}
    lines = []
    for bed in dict.fromkeys(r["bed"] for r in rows):
        noise = next(r["noise"] for r in rows if r["bed"] == bed)
        lines += ["", f"## {bed}: FD above the limit (FD noise {noise:.3f}), model calls in brackets", "",
                  "| sampler | " + " | ".join(f"{c} calls" for c in args.calls) + " |", "|---|" + "---:|" * len(args.calls)]
        for s in samplers:
            lines.append(f"| {s} | " + " | ".join(f"{cell[(bed, s, c)]['excess']:+.4f} ({cell[(bed, s, c)]['model_calls']})" for c in args.calls) + " |")
    machine = machine_line(out, args.render, f"Machine: {torch.get_num_threads()} CPU threads, torch {torch.__version__}.")
    text = [page_command("gaussian_start.py", out, args.render), "", machine, "", __doc__.split("\n\n")[2], "",
            "On a learned model the fit needs a batch larger than the image's number of values (here 64 for digits).", *lines]
    out.write_text("\n".join(text) + "\n")
    print("\n".join(lines))


def measure(args) -> list[dict]:
    beds = beds_of(args.beds)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(bed_rows, b, kw, args.calls, args.samples, b in FRESH) for b, kw in beds.items()]
        return [r for job in jobs for r in job.result()]


if __name__ == "__main__":
    main()
