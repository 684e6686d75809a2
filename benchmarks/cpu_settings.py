"""Threads and torch.compile on this CPU: the shipped digits UNet's forward time per batch.

For each torch thread count (--threads): the eager network, and -- with another process keeping one core
busy (a plain Python loop, started by this script), which is what a shared machine looks like -- the
eager network again. Then torch.compile (default mode) at 1 thread: its compile time (the first call)
and the time per batch after it. Milliseconds per forward of --batch images, median of --repeats.

    python benchmarks/cpu_settings.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path

import torch
from _tables import command_line

import ddim


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def per_batch(f, x, t, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        f(x, t)
        for _ in range(repeats):
            start = time.perf_counter()
            f(x, t)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="digits")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    m = ddim.load(args.model)
    x = torch.randn(args.batch, *m.sample_shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((args.batch,), 500)
    rows = []
    for n in args.threads:
        torch.set_num_threads(n)
        rows.append((f"eager, {n} thread(s), machine otherwise idle", per_batch(m.model, x, t, args.repeats)))
        stop = mp.Event()
        busy = mp.Process(target=_spin, args=(stop,), daemon=True)
        busy.start()
        try:
            rows.append((f"eager, {n} thread(s), one other process busy", per_batch(m.model, x, t, args.repeats)))
        finally:
            stop.set()
            busy.join()
        print(rows[-2:], flush=True)
    torch.set_num_threads(1)
    start = time.perf_counter()
    compiled = torch.compile(m.model)
    with torch.inference_mode():
        compiled(x, t)
    compile_s = time.perf_counter() - start
    rows.append(("torch.compile (default), 1 thread, after its first call", per_batch(compiled, x, t, args.repeats)))
    print(rows[-1], compile_s, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Threads and torch.compile on this CPU",
        "",
        command_line("cpu_settings.py"),
        "",
        f"Machine: {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, torch {torch.__version__}. "
        f"Model `{args.model}` ({m.num_parameters:,} parameters), forward of a batch of {args.batch}, median of {args.repeats}.",
        "",
        "| setting | ms per batch |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in rows]
    lines += ["", f"torch.compile's first call (the compile) took {compile_s:.1f} s.", "",
              "`ddim sample --threads N` sets the thread count; `--compile` compiles and reports the first call apart."]
    (args.out / "cpu-settings.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
