"""Images per second on a GPU: ddim.sample against DDIMPipeline and DPMSolverMultistepScheduler, at equal model calls.

Models: a CIFAR-10-sized UNet2DModel with random weights (google/ddpm-cifar10-32's layout, 35.7M parameters,
32x32x3, DDPM's linear schedule) and the shipped models. For each model, model-call budget (--calls) and batch
(--batches), in fp32 and fp16, eager and compiled (torch.compile, mode reduce-overhead = CUDA graphs):

- ``ours ddim``: ``ddim.sample(method="ddim")`` over the uniform grid, S = calls (the DDIM paper's grid, which is
  DDIMScheduler's "leading" spacing), images moved to the CPU at the end as the pipeline does;
- ``DDIMPipeline``: diffusers' pipeline with its defaults (DDIMScheduler, eta 0, output_type "np");
- ``ours dpm++2m``: ``ddim.sample(method="dpm++2m", spacing="logsnr")``;
- ``DDPMPipeline + DPMSolverMultistep``: diffusers' unconditional pipeline with DPMSolverMultistepScheduler's defaults
  (DDIMPipeline passes eta to its scheduler, which DPMSolverMultistepScheduler does not take).

Every run of a cell starts from the same x_T (the pipeline's own draw from a seeded generator, reproduced
for ours), so the ``max |diff|`` column (pixels in [0, 1]) compares each output with the fp32 eager
DDIMPipeline output of the same model, calls and batch: the two DDIM rows use the same grid and should
agree to fp32 rounding; the DPM rows use different grids and final steps, so their difference is the
solvers' difference, not an error. Seconds per run are the median of --repeats runs after one warm-up run
(for compiled cells the warm-up is the compile, reported apart). Cells run in order of the list below and
stop when --budget-s is spent, so a short GPU lease still writes a page.

    python benchmarks/gpu.py --out docs/benchmarks                 # on a CUDA machine
    python benchmarks/gpu.py --dry-run --out /tmp/gpu-dry          # CPU, tiny sizes: checks the script still runs
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _tables import command_line

import ddim
from ddim.models import Denoiser, _diffusers_scheduler_config, _unet, unet2d_class

CIFAR = _unet(32, 3, (128, 256, 256, 256), (False, True, False, False), 2, 32)  # google/ddpm-cifar10-32's UNet2DModel
CONTENDERS = ("ours ddim", "DDIMPipeline", "ours dpm++2m", "DDPMPipeline + DPMSolverMultistep")


@dataclass
class Bed:
    name: str
    net: torch.nn.Module  # a diffusers UNet2DModel
    schedule: ddim.NoiseSchedule
    scheduler_config: dict


def beds(names: list[str], device: str) -> list[Bed]:
    out = []
    for name in names:
        if name in ("cifar10-size", "tiny"):
            torch.manual_seed(0)
            config = CIFAR if name == "cifar10-size" else ddim.models.PRESETS["tiny"]
            net, schedule = unet2d_class()(**config), ddim.NoiseSchedule.linear(1000)
            cfg = _diffusers_scheduler_config(schedule, "eps")
        else:
            m = ddim.load(name, device="cpu")
            net, schedule = m.model.net, m.schedule
            saved = json.loads((m.path / "scheduler" / "scheduler_config.json").read_text())
            cfg = {k: v for k, v in saved.items() if not k.startswith("_")}
        out.append(Bed(name, net.to(device).eval().requires_grad_(False), schedule, cfg))
    return out


def runner(bed: Bed, contender: str, dtype: torch.dtype, compile_mode: str | None, device: str):
    """A function (batch, calls, seed) -> images [B, H, W, C] in [0, 1] as numpy, for one contender and setting."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DPMSolverMultistepScheduler

    net = bed.net.to(dtype)
    if contender.startswith("ours"):
        model = Denoiser(net)
        if compile_mode:
            model = torch.compile(model, mode=compile_mode)
        method, spacing = ("ddim", "uniform") if contender == "ours ddim" else ("dpm++2m", "logsnr")
        shape = (net.config.in_channels, net.config.sample_size, net.config.sample_size)

        def run(batch: int, calls: int, seed: int) -> np.ndarray:
            g = torch.Generator(device).manual_seed(seed)  # the pipeline's own draw (randn_tensor with its generator)
            x_T = torch.randn((batch, *shape), generator=g, device=device, dtype=dtype)
            with torch.inference_mode():
                x = ddim.sample(model, bed.schedule, x_T, steps=calls, method=method, spacing=spacing)
            return (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()

        return run
    if contender == "DDIMPipeline":
        pipe = DDIMPipeline(unet=net, scheduler=DDIMScheduler.from_config(bed.scheduler_config))
    else:
        pipe = DDPMPipeline(unet=net, scheduler=DPMSolverMultistepScheduler.from_config(bed.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    if compile_mode:
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode)

    def run(batch: int, calls: int, seed: int) -> np.ndarray:
        g = torch.Generator(device).manual_seed(seed)
        with torch.inference_mode():
            return pipe(batch_size=batch, generator=g, num_inference_steps=calls, output_type="np").images.astype(np.float32)

    return run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["cifar10-size", "digits", "fashion-mnist"])
    p.add_argument("--calls", type=int, nargs="+", default=[10, 50])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16"], choices=("float32", "float16", "bfloat16"))
    p.add_argument("--compile", nargs="*", default=["none", "reduce-overhead"], help="none and/or torch.compile modes")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=480, help="stop starting new cells after this many seconds")
    p.add_argument("--dry-run", action="store_true", help="CPU, a tiny random UNet and digits, 2-3 calls, batches 1 and 4, fp32 eager, 1 repeat")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    if args.dry_run:
        device = "cpu"
        args.models, args.calls, args.batches, args.dtypes, args.compile, args.repeats = ["tiny", "digits"], [2, 3], [1, 4], ["float32"], ["none"], 1
    elif not torch.cuda.is_available():
        raise SystemExit("gpu.py measures a CUDA GPU and none is visible; on a CPU run it with --dry-run (a check that the script works)")
    else:
        device = "cuda"
    start_all = time.perf_counter()
    rows: list[dict] = []
    reference: dict[tuple, np.ndarray] = {}  # (model, calls, batch) -> fp32 eager DDIMPipeline output
    order = sorted(CONTENDERS, key=lambda c: c != "DDIMPipeline")  # the reference first
    for bed in beds(args.models, device):
        params = sum(p.numel() for p in bed.net.parameters())
        for compile_mode in args.compile:
            for dtype_name in args.dtypes:
                for contender in [c for c in order if c in args.contenders]:
                    if time.perf_counter() - start_all > args.budget_s:
                        print(f"budget spent: skipping {bed.name} {contender} {dtype_name} {compile_mode}", flush=True)
                        continue
                    dtype = getattr(torch, dtype_name)
                    run = runner(bed, contender, dtype, None if compile_mode == "none" else compile_mode, device)
                    for calls in args.calls:
                        for batch in args.batches:
                            sync(device)
                            t0 = time.perf_counter()
                            images = run(batch, calls, 0)
                            sync(device)
                            first_s = time.perf_counter() - t0
                            times = []
                            for _ in range(args.repeats):
                                t0 = time.perf_counter()
                                run(batch, calls, 0)
                                sync(device)
                                times.append(time.perf_counter() - t0)
                            key = (bed.name, calls, batch)
                            if contender == "DDIMPipeline" and dtype_name == "float32" and compile_mode == "none":
                                reference[key] = images
                            diff = float(np.abs(images - reference[key]).max()) if key in reference else float("nan")
                            s = statistics.median(times)
                            rows.append(dict(model=bed.name, parameters=params, contender=contender, dtype=dtype_name, compile=compile_mode,
                                             calls=calls, batch=batch, seconds=s, images_per_s=batch / s, first_run_s=first_s, max_abs_diff=diff))
                            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
                    bed.net.to(torch.float32)
    write(rows, args, device, time.perf_counter() - start_all)


def write(rows: list[dict], args, device: str, total_s: float) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "gpu.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.processor() or platform.machine()}), dry run"
    import diffusers

    lines = [
        "# Images per second on a GPU" if device == "cuda" else "# GPU benchmark: CPU dry run (not a GPU measurement)",
        "",
        command_line("gpu.py"),
        "",
        f"Device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}; {total_s:.0f} s in all. "
        f"Seconds per run: median of {args.repeats} after one warm-up run; max |diff|: pixels in [0, 1] against fp32 eager DDIMPipeline.",
        "",
        "| model | calls | batch | contender | dtype | compile | images/s | s per run | first run s | max abs diff |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['calls']} | {r['batch']} | {r['contender']} | {r['dtype']} | {r['compile']} | {r['images_per_s']:.1f} | "
                     f"{r['seconds']:.4f} | {r['first_run_s']:.2f} | {r['max_abs_diff']:.2g} |")
    lines += ["", "## Against DDIMPipeline's defaults (fp32, eager), equal model calls", "",
              "| model | calls | batch | DDIMPipeline images/s | best of ours | its images/s | ratio | its max abs diff |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        if r["contender"] == "DDIMPipeline" and r["dtype"] == "float32" and r["compile"] == "none":
            ours = [o for o in rows if o["contender"] == "ours ddim" and (o["model"], o["calls"], o["batch"]) == (r["model"], r["calls"], r["batch"])]
            if ours:
                best = max(ours, key=lambda o: o["images_per_s"])
                lines.append(f"| {r['model']} | {r['calls']} | {r['batch']} | {r['images_per_s']:.1f} | {best['dtype']}, {best['compile']} | "
                             f"{best['images_per_s']:.1f} | {best['images_per_s'] / r['images_per_s']:.2f}x | {best['max_abs_diff']:.2g} |")
    (args.out / "gpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'gpu.md'}")


if __name__ == "__main__":
    main()
