"""Start-up of the ``ddim`` command, as ratios to ``python -c "import torch"`` timed in the same run.

Each command is a fresh process (1 torch thread, the shipped digits model); the table gives the median wall
time of --repeats runs, interleaved so that a change in the machine's load hits every command alike. With
--before REV the same commands also run on that git revision of the project (a temporary worktree on
PYTHONPATH), so the page shows before and after side by side.

    python benchmarks/startup.py --before cb51bdf --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _tables import command_line

ROOT = Path(__file__).resolve().parent.parent


def commands(out: str) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "ddim.cli"]
    return {
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "ddim --help": [*cli, "--help"],
        "ddim sample --method nope (argument error)": [*cli, "sample", "--method", "nope"],
        "ddim info": [*cli, "info"],
        "ddim sample -n 1 --steps 10": [*cli, "sample", "-n", "1", "--steps", "10", "--output", out, "--overwrite", "--no-progress"],
    }


def run_once(argv: list[str], src: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(src))
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default=None, help="git revision to compare with (e.g. the commit before the start-up work)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT / "src"}
        if args.before:
            wt = Path(tmp) / "before"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), args.before], check=True, capture_output=True)
            trees[f"at {args.before}"] = wt / "src"
        try:
            cmds = commands(str(Path(tmp) / "samples"))
            times: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in cmds}
            for r in range(args.repeats):
                for tree, src in trees.items():
                    for name, argv in cmds.items():
                        times[tree, name].append(run_once(argv, src))
                print(f"round {r + 1}/{args.repeats} done", flush=True)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_s = {tree: med[tree, "python -c 'import torch'"] for tree in trees}
    header = "| command | " + " | ".join(f"{tree}: s | {tree}: x import torch" for tree in trees) + " |"
    lines = [
        "# Start-up of the ddim command",
        "",
        command_line("startup.py"),
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"each command a fresh process with OMP_NUM_THREADS=1, median of {args.repeats} interleaved runs. "
        "The ratio divides by `import torch` timed in the same run.",
        "",
        header,
        "|---|" + "---:|---:|" * len(trees),
    ]
    for name in cmds:
        lines.append(f"| `{name}` | " + " | ".join(f"{med[tree, name]:.2f} | {med[tree, name] / torch_s[tree]:.2f}" for tree in trees) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
