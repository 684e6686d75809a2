"""The sampler's own cost per model call, ours vs the corresponding diffusers scheduler, with a trivial model.

The model is ``0.1 * x`` (no network), so what is timed is the sampler: the grid, the step maths, the
noise, the loop. For each method: ``ddim.sample`` (our loop), our ``ddim.pipelines.Scheduler`` driven by
a diffusers-style loop (``set_timesteps``, then ``step`` per call), and the diffusers scheduler that
implements the same method, driven by the same loop. Microseconds per model call (best of --repeats),
and the ratio ours / diffusers, measured in the same run.

    python benchmarks/sampler_overhead.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from _tables import command_line, write_csv

import ddim
from ddim.pipelines import Scheduler

BETAS = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


def peers() -> dict:
    """Our method name -> a fresh diffusers scheduler implementing it."""
    import diffusers as d

    dpm = lambda order, kind: d.DPMSolverMultistepScheduler(**BETAS, solver_order=order, algorithm_type=kind)
    return {
        "ddim": lambda: d.DDIMScheduler(**BETAS, clip_sample=False),
        "ddpm": lambda: d.DDPMScheduler(**BETAS, clip_sample=False),
        "sigma-hat": lambda: d.DDPMScheduler(**BETAS, clip_sample=False, variance_type="fixed_large"),
        "dpm++2m": lambda: dpm(2, "dpmsolver++"),
        "dpm++3m": lambda: dpm(3, "dpmsolver++"),
        "dpm++2m-sde": lambda: dpm(2, "sde-dpmsolver++"),
        "dpm++3m-sde": lambda: dpm(3, "sde-dpmsolver++"),
        "unipc": lambda: d.UniPCMultistepScheduler(**BETAS, solver_order=2),
        "unipc3": lambda: d.UniPCMultistepScheduler(**BETAS, solver_order=3),
        "unipc-bh1": lambda: d.UniPCMultistepScheduler(**BETAS, solver_order=2, solver_type="bh1"),
        "unipc-bh2": lambda: d.UniPCMultistepScheduler(**BETAS, solver_order=2, solver_type="bh2"),
        "heun": lambda: d.HeunDiscreteScheduler(**BETAS),
    }


def model(x: torch.Tensor, t) -> torch.Tensor:
    return 0.1 * x


def loop(scheduler, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """A diffusers pipeline's denoising loop; returns the result and the model calls made."""
    import inspect

    g = torch.Generator().manual_seed(0)
    extra = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}  # as pipelines decide
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    calls = 0
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t)
        calls += 1
        x = scheduler.step(out, t, x, **extra).prev_sample
    return x, calls


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shape", type=int, nargs="+", default=[4, 8, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    schedule = ddim.NoiseSchedule.linear(1000)
    x = torch.randn(args.batch, *args.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for method, make_peer in peers().items():
        calls = ddim.METHODS[method].calls(args.steps)
        sample = lambda: ddim.sample(model, schedule, x, steps=args.steps, method=method, generator=torch.Generator().manual_seed(0))
        ours_sched = Scheduler(**BETAS, method=method)
        peer = make_peer()
        _, peer_calls = loop(peer, x, args.steps)
        _, ours_calls = loop(ours_sched, x, args.steps)
        assert ours_calls == calls, (method, ours_calls, calls)
        t_sample = best_of(sample, args.repeats) / calls
        t_sched = best_of(lambda: loop(ours_sched, x, args.steps), args.repeats) / ours_calls
        t_peer = best_of(lambda: loop(peer, x, args.steps), args.repeats) / peer_calls
        rows.append(dict(method=method, diffusers=type(peer).__name__, us_per_call_sample=1e6 * t_sample, us_per_call_scheduler=1e6 * t_sched,
                         us_per_call_diffusers=1e6 * t_peer, calls_ours=calls, calls_diffusers=peer_calls,
                         ratio_sample=t_sample / t_peer, ratio_scheduler=t_sched / t_peer))
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "sampler-overhead.csv")
    lines = [
        "# The sampler's own cost per model call, vs diffusers",
        "",
        command_line("sampler_overhead.py"),
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"model = 0.1 * x (no network), batch {args.batch}, shape {tuple(args.shape)}, S = {args.steps}, best of {args.repeats}.",
        "",
        "| method | diffusers scheduler | ddim.sample (us/call) | our Scheduler in a pipeline loop | diffusers | sample / diffusers | Scheduler / diffusers |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['method']} | {r['diffusers']} | {r['us_per_call_sample']:.0f} | {r['us_per_call_scheduler']:.0f} | {r['us_per_call_diffusers']:.0f} | "
              f"{r['ratio_sample']:.2f} | {r['ratio_scheduler']:.2f} |" for r in rows]
    lines += ["", "Per model call: a diffusers Heun step is two calls, as ours. The ratios are measured in the same run; the absolute",
              "microseconds move with the machine's load."]
    (args.out / "sampler-overhead.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
