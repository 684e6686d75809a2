"""Small file-system helpers shared by the trainer and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ensure_writable_dir", "cache_dir"]


def cache_dir(*parts: str) -> Path:
    """The user cache ($DDIM_CACHE, else ~/.cache/ddim), or a folder inside it: reference features, user grids."""
    return Path(os.environ.get("DDIM_CACHE") or Path.home() / ".cache" / "ddim").expanduser().joinpath(*parts)


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` if needed and prove it writable, or raise a one-line ValueError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".ddim-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to output folder {folder}: {err.strerror or err}") from None
