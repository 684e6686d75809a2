"""Shared by the benchmark scripts: markdown tables, the CSV of result rows, the command line."""

from __future__ import annotations

import csv
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def steps_table(names: Sequence[str], steps: Sequence[int], cell: Callable[[str, int], str]) -> list[str]:
    """Lines of a markdown table with a 'S=..' column per step count and ``cell(name, S)`` entries."""
    lines = ["| method | " + " | ".join(f"S={S}" for S in steps) + " |", "|---|" + "---:|" * len(steps)]
    return lines + [f"| {n} | " + " | ".join(cell(n, S) for S in steps) + " |" for n in names]


def write_csv(rows: Sequence[dict], path: Path) -> None:
    """One CSV line per result row, columns from the first row."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def command_line(script: str) -> str:
    """'Command: `python benchmarks/SCRIPT args`', the first line of every benchmark page."""
    return f"Command: `python benchmarks/{script} " + shlex.join(sys.argv[1:]) + "`"


def page_command(script: str, page: Path, render: bool, line: int = 0) -> str:
    """The page's command line: this run's, or on a redraw from the CSV (``render``) the command of the run that measured
    the numbers (line ``line`` of the existing ``page``), with how the page was redrawn."""
    head = command_line(script)
    if not render:
        return head
    old = page.read_text().splitlines()[line].split(" (tables redrawn")[0] if page.is_file() else ""
    return f"{old} (tables redrawn from its CSV by {head.removeprefix('Command: ')})"


def _parsed(v: str):
    """A CSV cell as ``write_csv`` wrote it: an int, else a float (Python writes floats with a point, an exponent, inf or
    nan), else the text."""
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def read_rows(path: Path, text: Sequence[str] = ("bed", "sampler", "method", "grid")) -> list[dict]:
    """The rows of a CSV that ``write_csv`` wrote: ``text`` columns as strings, the others as ints, floats or strings,
    whichever each cell reads as; empty cells are left out."""
    with open(path, newline="") as f:
        return [{k: v if k in text else _parsed(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def page_options(ap, name: str) -> None:
    """--name, --out and --render: where a page and its CSV go, and redrawing the page from that CSV without measuring."""
    ap.add_argument("--name", default=name)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    ap.add_argument("--render", action="store_true", help="only redraw NAME.md from an existing NAME.csv")


def measured_rows(args, measure: Callable[[], list[dict]]) -> list[dict]:
    """The rows behind page ``args.name``: with ``--render`` those of the CSV (and ``args.calls`` set from them), else
    ``measure()``'s, written to OUT/NAME.csv."""
    path = args.out / f"{args.name}.csv"
    if args.render:
        rows = read_rows(path)
        args.calls = sorted({r["calls"] for r in rows})
        return rows
    rows = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, path)
    return rows


def machine_line(page: Path, render: bool, line: str, at: int = 2) -> str:
    """``line`` (this machine), or on a redraw the machine line (line ``at``) of the existing page that measured the numbers."""
    return page.read_text().splitlines()[at] if render and page.is_file() else line
