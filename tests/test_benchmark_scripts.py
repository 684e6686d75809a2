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
