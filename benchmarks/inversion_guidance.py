"""Inversion under classifier-free guidance: round trip x0 -> x_T -> x0 on the conditional digits model.

For each guidance scale w, the held-out test digits are inverted with the guided model (their
own labels) and decoded with the ordinary eta = 0 sampler and the same guided model, S steps on
the uniform grid. Methods: plain DDIM inversion; fixed-point inversion as it was before the
Anderson rework (depth-1 Anderson that returns the best verified iterate; a copy of the old code
is below, so the comparison runs in the same process); the current fixed-point inversion at
several iteration counts. Per method: the per-dimension MSE in the model's pixel space [-1, 1]
(the decoded image not clamped) and, for comparison with inversion-table2.md, clamped to [-1, 1]
and rescaled to [0, 1]; guided model calls in the inversion and in the decode; the ratio of
plain's MSE to the method's; wall seconds. A second table gives the per-step residual
|G(z) - z| (RMS per image; G(z) = the eta = 0 map from the step's start with eps(z)) of the
returned latents: where the fixed-point solve fails.

    python benchmarks/inversion_guidance.py --out docs/benchmarks

writes inversion-guidance.md, inversion-guidance.csv and inversion-guidance.png (16 digits at
the largest scale in --png-scale: input, plain, old fixed-point, current fixed-point).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _tables import command_line, write_csv

import ddim
from ddim.guidance import Guided
from ddim.images import save_grid
from ddim.sampling import CallCounter, _ddim_up, predict
from ddim.timesteps import timesteps as make_timesteps


def _old_anderson(G, z, iterations):
    """The fixed-point solver before the rework (depth-1 Anderson, returns the iterate with the smallest measured residual)."""
    dims = tuple(range(1, z.dim()))
    shape = (-1,) + (1,) * (z.dim() - 1)
    best = best_r = g_prev = f_prev = None
    for _ in range(iterations):
        g = G(z)
        f = g - z
        r = f.pow(2).mean(dims)
        if best is None:
            best, best_r = z, r
        else:
            better = r < best_r
            best, best_r = torch.where(better.reshape(shape), z, best), torch.where(better, r, best_r)
        if f_prev is None:
            z_next = g
        else:
            df = f - f_prev
            gamma = (f * df).sum(dims, keepdim=True) / df.pow(2).sum(dims, keepdim=True).clamp(min=1e-300)
            z_next = g - gamma * (g - g_prev)
        g_prev, f_prev, z = g, f, z_next
    return z if best is None else best


def old_fixed_point(model, schedule, x0, steps, iterations, callback=None):
    """The old ``ddim.invert(..., method="fixed-point")``: the plain step, then ``iterations`` calls of ``_old_anderson``."""
    tau = make_timesteps(len(schedule), steps, "uniform", schedule.alphas_cumprod)
    x, ab_prev = x0.float(), 1.0
    for i, t in enumerate(int(t) for t in tau.flip(0)):
        ab_t = schedule.alpha_bar(t)

        def G(z, x=x, t=t, ab_t=ab_t, ab_prev=ab_prev):  # noqa: N802
            return _ddim_up(x, predict(model, z, t, ab_t, model_dtype=x0.dtype)[0], ab_prev, ab_t)

        z = _old_anderson(G, G(x), iterations)
        if callback is not None:
            callback(i, t, z, x)
        x, ab_prev = z, ab_t
    return x.to(x0.dtype)


def residuals(model, schedule, steps):
    """A callback that records, per step, the RMS residual |G(z) - z| per image of the returned z (an uncounted call)."""
    tau = make_timesteps(len(schedule), steps, "uniform", schedule.alphas_cumprod).flip(0)
    out: list[torch.Tensor] = []

    def callback(i, t, z, x):
        ab_t, ab_prev = schedule.alpha_bar(t), (1.0 if i == 0 else schedule.alpha_bar(int(tau[i - 1])))
        eps, _ = predict(model, z, t, ab_t)
        out.append((_ddim_up(x, eps, ab_prev, ab_t) - z).pow(2).flatten(1).mean(1).sqrt())

    return callback, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="digits-cond")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 5.0, 7.5])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 3, 5], help="iteration counts of the current fixed-point method")
    p.add_argument("--png-scale", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    p.add_argument("--name", default="inversion-guidance", help="output files NAME.md, NAME.csv, NAME.png")
    args = p.parse_args()
    m = ddim.load(args.model)
    test = ddim.data.load_dataset(m.config.get("train", {}).get("dataset", "digits"), split="test")
    x0, labels = test.data[: args.images], test.labels[: args.images]
    S = args.steps
    methods = {"plain (`ddim`)": lambda f, cb: ddim.invert(f, m.schedule, x0, steps=S, method="ddim", prediction=m.prediction, callback=cb),
               "fixed-point before the rework, iterations=3": lambda f, cb: old_fixed_point(f, m.schedule, x0, S, 3, cb)}
    for k in args.iterations:
        methods[f"`fixed-point`, iterations={k}" + (" (default)" if k == 3 else "")] = (
            lambda f, cb, k=k: ddim.invert(f, m.schedule, x0, steps=S, method="fixed-point", iterations=k, prediction=m.prediction, callback=cb))
    rows, res, png = [], {}, {}
    with torch.no_grad():  # warm-up, so that the first timed run does not pay one-time costs
        ddim.sample(Guided(m.model, labels, 3.0, m.null_class), m.schedule, x0, steps=2, prediction=m.prediction)
    for w in args.scales:
        guided = Guided(m.model, labels, w, m.null_class)
        for name, run in methods.items():
            counted = CallCounter(guided)
            callback, r = residuals(guided, m.schedule, S)
            with torch.no_grad():
                start = time.perf_counter()
                z = run(counted, None)
                inv_calls = counted.calls
                back = ddim.sample(counted, m.schedule, z, steps=S, prediction=m.prediction)
                seconds = time.perf_counter() - start
                run(guided, callback)  # again, uncounted and untimed, for the per-step residuals
            err = (back - x0).pow(2).flatten(1).mean(1)
            rows.append(dict(scale=w, method=name, mse=err.mean().item(), mse_max_image=err.max().item(),
                             mse_01_clamped=((back.clamp(-1, 1) - x0) / 2).pow(2).mean().item(),
                             inversion_calls=inv_calls, decode_calls=counted.calls - inv_calls, seconds=seconds))
            res[(w, name)] = torch.stack(r)  # [S, images]
            if w == args.png_scale:
                png[name] = back[:16]
            print(f"w={w:g} {name:48s} MSE {rows[-1]['mse']:.3e} (max image {rows[-1]['mse_max_image']:.2e})  calls {inv_calls}+{rows[-1]['decode_calls']}  "
                  f"{seconds:.1f}s", flush=True)
    plain = {r["scale"]: r["mse"] for r in rows if r["method"] == "plain (`ddim`)"}
    for r in rows:
        r["plain_over_method"] = plain[r["scale"]] / r["mse"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}.csv")
    if png:
        names = list(methods)
        save_grid(torch.cat([x0[:16], png[names[0]], png[names[1]], png["`fixed-point`, iterations=3 (default)"]]), args.out / f"{args.name}.png", nrow=16)
    lines = [
        command_line("inversion_guidance.py"),
        "",
        f"Model `{args.model}`; the first {len(x0)} held-out test digits with their own labels; the guided model "
        f"(`ddim.guidance.Guided`, one batched call = 1 model call) inverts and decodes; S = {S}, uniform grid; decode = "
        f"`ddim.sample` (eta = 0). Machine {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "Round-trip MSE per dimension in the model's pixel space [-1, 1], decoded images not clamped (in brackets: clamped "
        "and rescaled to [0, 1], the unit of inversion-table2.md, = the first / 4 where nothing overshoots); plain / method = "
        "how many times lower than plain inversion's; calls = guided-model calls per image in the inversion (the decode is "
        f"{S} calls for every method); seconds = inversion + decode, all images.",
        "",
        "| guidance | method | MSE [-1, 1] ([0, 1] clamped) | worst image | plain / method | inversion calls | seconds |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['scale']:g} | {r['method']} | {r['mse']:.2e} ({r['mse_01_clamped']:.2e}) | {r['mse_max_image']:.1e} | "
              f"{r['plain_over_method']:.0f}x | {r['inversion_calls']} | {r['seconds']:.1f} |" for r in rows]
    groups = [(0, 1), (1, 5), (5, 10), (10, 20), (20, S)]
    groups = [(a, min(b, S)) for a, b in groups if a < S]
    lines += [
        "",
        "Where the solve fails: residual |G(z) - z| (RMS per image) of the returned latents by step index i (i = 0 is "
        "x0 -> the first level; higher i = more noise), max over the images (median in brackets); plain inversion's "
        "residual is the error of not solving at all.",
        "",
        "| guidance | method | " + " | ".join(f"i = {a}" if b == a + 1 else f"i = {a}..{b - 1}" for a, b in groups) + " |",
        "|---:|---|" + "---:|" * len(groups),
    ]
    for (w, name), R in res.items():
        if name.startswith("`fixed-point`") and "(default)" not in name:
            continue
        lines.append(f"| {w:g} | {name} | " + " | ".join(f"{R[a:b].max():.0e} ({R[a:b].median():.0e})" for a, b in groups) + " |")
    if png:
        lines += ["", f"![reconstructions at guidance {args.png_scale:g}]({args.name}.png)", "",
                  f"Guidance {args.png_scale:g}, rows from the top: input, plain, fixed-point before the rework, fixed-point (iterations=3)."]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
