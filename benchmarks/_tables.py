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
