"""Markdown tables for benchmark pages: one row per method, one column per step count."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def steps_table(names: Sequence[str], steps: Sequence[int], cell: Callable[[str, int], str]) -> list[str]:
    """Lines of a markdown table with a 'S=..' column per step count and ``cell(name, S)`` entries."""
    lines = ["| method | " + " | ".join(f"S={S}" for S in steps) + " |", "|---|" + "---:|" * len(steps)]
    return lines + [f"| {n} | " + " | ".join(cell(n, S) for S in steps) + " |" for n in names]
