"""Benchmark scripts that need hardware this machine lacks run here in their dry-run mode, so they cannot rot unnoticed."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_gpu_benchmark_dry_run_writes_its_page_and_our_ddim_equals_ddimpipeline(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "gpu.py", "--dry-run", "--out", str(tmp_path)], cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "gpu.csv")))
    contenders = {row["contender"] for row in rows}
    assert contenders == {"ours ddim", "DDIMPipeline", "ours dpm++2m", "DDPMPipeline + DPMSolverMultistep"}
    assert {row["model"] for row in rows} == {"tiny", "digits"} and len(rows) == 2 * 4 * 2 * 2
    for row in rows:
        assert float(row["images_per_s"]) > 0
        if row["contender"] in ("ours ddim", "DDIMPipeline"):  # the same grid from the same x_T: the same images
            assert float(row["max_abs_diff"]) < 1e-4, row
    page = (tmp_path / "gpu.md").read_text()
    assert "CPU dry run (not a GPU measurement)" in page and "## Against DDIMPipeline's defaults" in page


def test_gpu_benchmark_refuses_a_machine_without_cuda():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = subprocess.run([sys.executable, "gpu.py", "--out", "unused"], cwd=BENCHMARKS, capture_output=True, text=True)
    assert r.returncode == 1 and "none is visible; on a CPU run it with --dry-run" in r.stderr


def test_grid_sweep_reads_its_grid_names_and_writes_its_page(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_sweep import BED_SETS, bed_rows, grid_kwargs
    finally:
        sys.path.remove(str(BENCHMARKS))
    import ddim

    assert grid_kwargs("quadratic", 1000, 8) == dict(steps=8, spacing="quadratic")
    for name, spacing in [("p2", "time-quadratic"), ("p2s0.9", "quadratic-0.9"), ("p2s0.8t", "quadratic-top"), ("p1", "linspace")]:
        assert grid_kwargs(name, 1000, 11)["timesteps"] == ddim.timesteps(1000, 11, spacing).tolist(), name
    assert grid_kwargs("p3o", 1000, 5)["timesteps"][-1] == round(999 / 125)  # open end: no call at t = 0
    with pytest.raises(ValueError, match=r"unknown grid 'p2x': use a spacing \(uniform, .*\) or pP\[sF\]\[o\]\[t\], e.g. p2s0.9"):
        grid_kwargs("p2x", 1000, 8)
    bed = "64-D, 10 modes (our oracle)"  # 'auto' is the library's table: at 5 calls the authors' UniPC-3 on quadratic-open
    auto, table = bed_rows(bed, BED_SETS["family"][bed], ["auto", "unipc3-bh2"], ["quadratic-open"], [5], 60)
    assert ddim.policy.recommended(5) == ("unipc3-bh2", "quadratic-open") and (auto["method"], auto["grid"]) == ("auto", "table")
    assert auto["value"] == table["value"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "grid_sweep.py", "--beds", "family", "--samples", "60", "--calls", "4", "--methods", "auto", "ddim", "--grids", "p2",
           "p2s0.8t", "--name", "t", "--out", str(tmp_path)]
    r = subprocess.run(run, cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == 7 * 3 and {(row["method"], row["grid"]) for row in rows} == {("auto", "table"), ("ddim", "p2"), ("ddim", "p2s0.8t")}
    page = (tmp_path / "t.md").read_text()
    assert "| ddim | p2s0.8t | " in page and "| auto | table | " in page and "## Per bed at 4 calls" in page
    assert "| best per bed, in hindsight | | " in page
    r = subprocess.run(run[:2] + ["--render", "--name", "t", "--out", str(tmp_path)], cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    redrawn = (tmp_path / "t.md").read_text().splitlines()
    assert redrawn[0].startswith(page.splitlines()[0] + " (tables redrawn from its CSV by `python benchmarks/grid_sweep.py --render")
    assert redrawn[1:] == page.splitlines()[1:]  # the same tables and the machine that measured them
    bad = subprocess.run(run[:2] + ["--grids", "p2x"], cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "error: unknown grid 'p2x'" in bad.stderr and "Traceback" not in bad.stderr


def test_pathwise_error_splits_the_excess_and_the_reference_has_none():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from pathwise_error import bed_rows, parse_sampler, table
        from solver_family import BEDS
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert parse_sampler("ipndm3:p2s0.9") == ("ipndm3", "p2s0.9")
    with pytest.raises(ValueError, match=r"sampler 'p2s0.9': write METHOD:GRID with METHOD one of ddim, .*, e.g. ipndm3:p2s0.9"):
        parse_sampler("p2s0.9")
    with pytest.raises(ValueError, match=r"unknown grid 'q2'"):
        parse_sampler("unipc3:q2")
    bed = next(iter(BEDS))
    # the reference itself (unipc3, logsnr, 200 calls) and a coarse sampler, from the same x_T
    same, coarse = bed_rows(bed, dict(BEDS)[bed], [("unipc3", "logsnr"), ("ddim", "p1")], [200, 3], 80)[::3]
    assert same["calls"] == 200 and same["flipped"] == 0 and same["median"] == same["rms"] == 0
    assert same["excess"] == same["flips_only"] == same["within_modes"] == same["reference"]
    assert coarse["calls"] == 3 and coarse["rms"] > coarse["median"] > 0 and coarse["excess"] > same["excess"]
    assert 0 <= coarse["flipped"] <= 1 and (coarse["flipped"] > 0) == (coarse["flips_only"] != coarse["reference"])
    assert f"| {bed} | ddim p1 | {coarse['excess']:+.3f} |" in "\n".join(table([same, coarse], 3))
