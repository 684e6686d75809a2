"""The README's command tour runs top to bottom as written (on tiny settings appended to each command)."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from ddim.cli import main
from ddim.data import FASHION_MNIST_DIR

README = Path(__file__).resolve().parents[1] / "README.md"

# appended to each command (argparse keeps the last value), so the tour takes seconds, not hours
TINY = {
    "sample": ["-n", "4"],  # ddim score needs 4
    "invert": ["-n", "2"],
    "compare": ["-n", "4", "--steps", "2", "--eta", "0", "--consistency", "0", "--seeds", "0"],
    "optimize-grid": ["--images", "16", "--reference-steps", "20"],  # 16: the least --search family takes
    "train": ["--steps", "2", "--batch-size", "8", "--sample-every", "0", "--checkpoint-every", "2"],
    "train-resume": ["--steps", "4"],
}


def tour() -> list[list[str]]:
    """Every `ddim ...` line of the README's bash blocks, in order, without its comment."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("ddim "):
                commands.append(shlex.split(line.split("  #")[0])[1:])
    return commands


def test_the_tour_is_found():
    commands = tour()
    assert len(commands) > 20 and ["info"] in commands


@pytest.mark.slow
def test_the_readme_tour_runs_top_to_bottom(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))
    for name in ("a.png", "b.png"):  # the README's own images for `ddim invert --images a.png b.png`
        Image.fromarray(np.random.default_rng(len(name)).integers(0, 256, (8, 8), dtype=np.uint8), "L").save(name)
    ran = 0
    for args in tour():
        if any("path/to" in a for a in args):
            continue  # placeholders for the reader's own data
        if args[0] == "explore":
            continue  # serves a web page until Ctrl-C; tests/test_explore.py drives it in a browser
        if "fashion-mnist" in args and args[0] == "train" and not FASHION_MNIST_DIR.is_dir():
            continue  # the Debian data set is not on this machine
        extra = TINY["train-resume" if "--resume" in args else args[0]] if (args[0] in TINY or "--resume" in args) else []
        code = main(args + extra)
        err = capsys.readouterr().err
        assert code == 0, f"`ddim {shlex.join(args)}` failed: {err}"
        ran += 1
    assert ran > 20
