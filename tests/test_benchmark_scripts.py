"""Benchmark scripts that need hardware this machine lacks run here in their dry-run mode, so they cannot rot unnoticed."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    # '@D' moves every level by D in lambda: 0 changes nothing; towards noise (D < 0) every level goes up, towards data down
    q09 = grid_kwargs("p2s0.9", 1000, 8)["timesteps"]
    assert grid_kwargs("p2s0.9@0", 1000, 8)["timesteps"] == q09 == grid_kwargs("quadratic-0.9@0", 1000, 8)["timesteps"]
    noisier, cleaner = grid_kwargs("p2s0.9@-0.5", 1000, 8)["timesteps"], grid_kwargs("p2s0.9@0.5", 1000, 8)["timesteps"]
    assert all(a > b > c for a, b, c in zip(noisier, q09, cleaner) if b) and noisier[-1] > 0 == q09[-1] == cleaner[-1]
    assert grid_kwargs("uniform@-12", 1000, 4)["timesteps"] == [999, 998, 997, 996]  # pushed past T - 1: kept inside, distinct
    with pytest.raises(ValueError, match=r"grid 'p2@x': what follows '@' must be a number \(a shift in lambda\), e.g. quadratic-0.9@-0.5"):
        grid_kwargs("p2@x", 1000, 8)
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


def test_grid_sweep_measures_each_choice_against_the_best_peer():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_sweep import against_peer, per_bed, summary
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert against_peer(0.2, 0.5) == 0.4 and against_peer(0.04, -0.1) == 0.0 and against_peer(0.06, 0.03) == float("inf")
    excess = {"a": dict(x=0.2, y=0.6, p=0.5, q=0.9), "b": dict(x=0.3, y=0.04, p=0.01, q=0.2)}  # excess / limit, limit 2
    rows = [dict(bed=b, method="peer" if g in "pq" else "ours", grid=g, calls=5, value=2 * (1 + v), limit=2.0, excess=2 * v)
            for b, cells in excess.items() for g, v in cells.items()]
    text = "\n".join(summary(rows, [5]) + per_bed(rows, 5))
    # a: best peer 0.5, so x (0.4 of it) meets the target and y (1.2) does not; b: best peer at the limit, so only y does
    assert "| ours | x | 0 / 2 (+0.300) |" in text and "| ours | x | 1 / 2 (inf) |" in text and "| ours | y | 1 / 2 (1.20) |" in text and "(inf: the best peer" in text
    assert "| best per bed, in hindsight | | 2 / 2 |" in text and "| peer |" not in text  # peers are not choices
    assert "| a | 2.0000 | +0.200 | +0.600 | +0.500 |" in text and "| b | 2.0000 | +0.300 | +0.040 | +0.010 |" in text


def test_read_rows_gives_back_what_write_csv_wrote(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _tables import read_rows, write_csv
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = [dict(bed="64-D, 5 modes", calls=8, value=0.25, limit=3.0, fitted="899 661 0", excess=float("inf"), model="digits")]
    write_csv(rows, tmp_path / "r.csv")
    assert read_rows(tmp_path / "r.csv") == rows and type(read_rows(tmp_path / "r.csv")[0]["limit"]) is float


def test_grid_ceiling_search_keeps_grids_valid_and_only_takes_gains():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_ceiling import bed_rows, fit_grid, tables
        from grid_sweep import BED_SETS
    finally:
        sys.path.remove(str(BENCHMARKS))
    import numpy as np

    import ddim
    from ddim.schedule import lambda_of

    lam = lambda_of(ddim.NoiseSchedule.linear(1000).alphas_cumprod.double().numpy())
    seen = []
    target = np.array([999, 700, 400, 200, 100, 40, 10, 0])

    def run(grid):  # a made-up score, lowest at ``target``
        seen.append(list(grid))
        return float(np.abs(np.asarray(grid) - target).sum())

    start = [899, 661, 459, 294, 165, 73, 18, 0]
    grid, value = fit_grid(run, start, lam, rounds=3)
    assert value < run(start) and value == run(grid) and grid[0] > 899  # the first level may move up, towards T - 1
    assert all(len(set(g)) == len(g) and g == sorted(g, reverse=True) and 0 <= g[-1] and g[0] <= 999 for g in seen)
    bed = "64-D, 10 modes (our oracle)"
    (row,) = bed_rows(bed, BED_SETS["family"][bed], "ipndm3", [8], "p2s0.9", 1, 60)
    assert row["fit"] <= row["start"] and row["start_grid"] == "899 661 459 294 165 73 18 0"
    assert f"| {bed} | {row['start']:+.3f} | {row['fit']:+.3f} |" in "\n".join(tables([row]))


def test_grid_sweep_counts_each_bed_over_its_x_t_draws():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_sweep import SEED, bed_rows, per_draw
        from solver_family import mixture_bed
    finally:
        sys.path.remove(str(BENCHMARKS))
    kw = dict(dim=4, modes=2, seed=0)
    assert not torch.equal(mixture_bed(kw, 10)[1], mixture_bed(kw, 10, xt_seed=2)[1])  # another draw of x_T
    assert torch.equal(mixture_bed(kw, 10)[1], mixture_bed(kw, 10, xt_seed=1)[1])  # seed 1 is the other pages' x_T
    (row,) = bed_rows("b", kw, ["ddim"], ["p2"], [4], 30, xt_seed=3)
    assert row["bed"] == f"b{SEED}3"
    rows = [dict(bed=b, method="ours", grid="x", calls=8, excess=e, limit=1.0) for b, e in (("a", 0.01), (f"a{SEED}2", 0.3), (f"a{SEED}3", -0.2))]
    assert per_draw(rows, 8)[-1] == "| a | 2 / 3 (-0.200 to +0.300) |"


def test_grid_sweep_takes_each_beds_median_draw_and_the_spread_of_its_limit():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_sweep import SEED, limit_spread, median_summary
    finally:
        sys.path.remove(str(BENCHMARKS))
    # bed a: excess / limit 0.01, 0.3, -0.2 over three draws (median 0.01); bed b one draw at 0.06
    rows = [dict(bed=b, method="ours", grid="x", calls=8, excess=e * lim, limit=lim)
            for b, e, lim in (("a", 0.01, 1.0), (f"a{SEED}2", 0.3, 2.0), (f"a{SEED}3", -0.2, 3.0), ("b", 0.06, 1.0))]
    rows.append(dict(bed="a", method="peer", grid="p", calls=8, excess=9.0, limit=1.0))  # peers are not choices
    assert median_summary(rows, [8])[-1] == "| ours | x | 1 / 2 (+0.060) |"
    lines = limit_spread(rows)
    assert lines[2] == "| a | 3 | 2.0000 | 0.50 | 1.0000 | 3.0000 |" and not any(line.startswith("| b |") for line in lines)
    assert lines[-1].startswith("Median sd / mean over the 1 beds: 0.50 (5% of the limit is 0.10 of that spread)")


def test_grid_sweep_keeps_each_limit_once_per_bed_and_x_t_and_reads_it_back(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from solver_family import bed_setup, cached_limit
    finally:
        sys.path.remove(str(BENCHMARKS))
    monkeypatch.setenv("DDIM_LIMIT_CACHE", str(tmp_path))
    kw = dict(dim=4, modes=2, seed=0, scale=(0.1, 0.2))
    computed = []
    first = cached_limit(kw, 30, 1, 1000, lambda: computed.append(1) or 0.25)
    again = cached_limit(kw, 30, 1, 1000, lambda: computed.append(1) or 9.0)
    other = cached_limit(kw, 30, 2, 1000, lambda: computed.append(1) or 0.5)  # another x_T: another limit
    assert (first, again, other, len(computed)) == (0.25, 0.25, 0.5, 2) and len(list(tmp_path.glob("*.json"))) == 2
    monkeypatch.setenv("DDIM_LIMIT_CACHE", "off")
    assert cached_limit(kw, 30, 1, 1000, lambda: 9.0) == 9.0
    monkeypatch.setenv("DDIM_LIMIT_CACHE", str(tmp_path / "real"))
    limit = bed_setup(dict(dim=4, modes=2, seed=0), 40)[-1]  # computed, then read back: the same float
    assert bed_setup(dict(dim=4, modes=2, seed=0), 40)[-1] == limit > 0
    monkeypatch.setenv("DDIM_LIMIT_CACHE", "off")
    assert bed_setup(dict(dim=4, modes=2, seed=0), 40)[-1] == limit


def test_grid_sweep_counts_pairs_per_shape():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_sweep import BED_SETS, SEED, by_shape, shape_of
    finally:
        sys.path.remove(str(BENCHMARKS))
    family = BED_SETS["family"]
    assert [shape_of(family[b]) for b in ("64-D, 10 modes (our oracle)", "2-D, 8 sharp modes", "128-D, 2 far modes", "8-D, 3 unequal modes")] \
        == ["default", "sharp, wide", "far", "other"]
    oracle, wide = "64-D, 10 modes (our oracle)", "64-D, 5 modes, sharp, wide (seed 110)"
    rows = [dict(bed=b, method="ipndm3", grid="p2", calls=8, excess=e, limit=1.0)
            for b, e in ((oracle, 0.01), (f"{oracle}{SEED}2", 0.3), (f"{oracle}{SEED}3", -0.2), (wide, 0.06))]
    rows.append(dict(bed=oracle, method="peer", grid="x", calls=8, excess=0.0, limit=1.0))  # peers are not choices
    assert by_shape(rows, 8)[-1] == "| ipndm3 | p2 | 2 / 3 | 0 / 1 | +0.010 |"


def test_pathwise_error_splits_the_excess_and_the_reference_has_none():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from pathwise_error import bed_rows, grid_of, parse_sampler, step_rows, steps_table, table
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
    # --per-step: continued exactly from x_T at the grid's first level (T - 1 here, where the reference starts) it is the
    # reference itself; the last point is the coarse run
    steps = step_rows(bed, dict(BEDS)[bed], [("ddim", "p1")], [3], 80)
    tau = grid_of("ddim", "p1", 3, 1000)
    assert [r["point"] for r in steps] == [f"x_T at {tau[0]}", f"{tau[0]} -> {tau[1]}", f"{tau[1]} -> {tau[2]}", "coarse"] and tau[0] == 999
    assert steps[0]["flipped"] == 0 and steps[0]["excess"] == same["excess"] and steps[-1]["excess"] == coarse["excess"]
    assert steps[-1]["flipped"] == coarse["flipped"] and all(0 <= r["flipped"] <= 1 for r in steps)
    assert steps_table(steps, 3)[2] == f"| x_T at 999 | 999 -> {tau[1]} | {tau[1]} -> 0 | coarse |".replace("| x_T", "| bed | x_T")


def test_seed_ranges_pairs_samplers_per_range_and_names_a_bad_sampler(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = [sys.executable, "seed_ranges.py", "--models", "digits", "--calls", "4", "--images", "30", "--ranges", "2",
           "--samplers", "ours ddim (uniform)", "ours unipc3 (time-quadratic)", "--name", "t", "--out", str(tmp_path)]
    r = subprocess.run(run, cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [(row["first_seed"], row["sampler"]) for row in rows] == [("0", "ours ddim (uniform)"), ("0", "ours unipc3 (time-quadratic)"),
                                                                     ("30", "ours ddim (uniform)"), ("30", "ours unipc3 (time-quadratic)")]
    fd = [float(row["fd"]) for row in rows]
    page = (tmp_path / "t.md").read_text()
    assert "## digits, 4 calls: FD-digits, 30 images per range" in page and "| seeds 0-29 | seeds 30-59 |" in page
    # the second sampler's difference to the first, per range, then its mean
    assert f"| {fd[1] - fd[0]:+.3f}, {fd[3] - fd[2]:+.3f} | {(fd[1] - fd[0] + fd[3] - fd[2]) / 2:+.3f} ± " in page
    r = subprocess.run(run[:2] + ["--render", "--name", "t", "--out", str(tmp_path)], cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "t.md").read_text().splitlines()[1:] == page.splitlines()[1:]  # redrawn from the CSV: the same tables
    bad = subprocess.run(run[:2] + ["--samplers", "ours nope"], cwd=BENCHMARKS, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown sampler 'ours nope': use names of solver_family.py's tables" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_grid_surrogate_scores_choices_on_the_gaussian_stand_in(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from grid_surrogate import stand_in_errors
        from solver_family import BEDS
    finally:
        sys.path.remove(str(BENCHMARKS))
    kw = BEDS["16-D, 5 modes"]
    err = stand_in_errors(kw, [("unipc3", "p2"), ("ddim", "p2")], [4, 8, 300])
    assert err[("unipc3", "p2", 300)] == 0  # the reference itself
    assert err[("unipc3", "p2", 8)] < err[("unipc3", "p2", 4)] and err[("unipc3", "p2", 8)] < err[("ddim", "p2", 8)]
    r = subprocess.run([sys.executable, "grid_surrogate.py", "--sweep", str(tmp_path / "none.csv")], cwd=BENCHMARKS, capture_output=True, text=True)
    assert r.returncode == 2 and "none.csv does not exist: give a CSV that benchmarks/grid_sweep.py wrote (--sweep)" in r.stderr


def test_gaussian_start_fits_the_data_from_one_call_and_keeps_the_budget():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from gaussian_start import first_call, free_level, gauss_ei, warm
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    import ddim
    from ddim.analytic import GaussianMixture

    sched = ddim.NoiseSchedule.linear(1000)
    gaussian = GaussianMixture.random(dim=8, modes=1, seed=3)
    calls = []

    def model(x, t, inner=gaussian.denoiser(sched)):
        calls.append(int(torch.as_tensor(t).flatten()[0]))
        return inner(x, t)

    x_T = torch.randn(300, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mu, C = first_call(model, sched, x_T)  # the data prediction at T - 1 is affine: its fit is the data's mean and covariance
    assert torch.allclose(mu, gaussian.mean, rtol=0, atol=1e-9) and torch.allclose(C, gaussian.covariance, rtol=0, atol=1e-9)
    ref = ddim.sample(model, sched, x_T, method="unipc3", steps=300, spacing="time-quadratic")
    for n in (3, 8):  # on a Gaussian the integrator around it is exact at any budget, where unipc3 is not
        calls.clear()
        assert (gauss_ei(model, sched, x_T, n) - ref).abs().max() < 1e-3 < (ddim.sample(model, sched, x_T, method="unipc3", steps=n,
                                                                                          spacing="time-quadratic") - ref).abs().max()
    assert calls[:n] == ddim.timesteps(1000, n, "time-quadratic").tolist()
    for n in (8, 10):  # warm: one call at T - 1, then only the levels at or below 700
        calls.clear()
        warm(model, sched, x_T, n)
        assert len(calls) == n and calls[0] == 999 and max(calls[1:]) <= 700
    # free-level: the table's grid and one level more, on the Gaussian: on Gaussian data as good as calling the model there
    calls.clear()
    free, resid = free_level(model, sched, x_T, 8)
    grid = ddim.timesteps(1000, 8, "quadratic-0.9").tolist()
    assert calls == grid and resid < 1e-3
    extra, _ = free_level(model, sched, x_T, 8, real=True)
    assert calls[8:] == [grid[0], (grid[0] + grid[1] + 1) // 2, *grid[1:]] and (free - extra).abs().max() < 1e-3


def test_gaussian_start_gate_picks_the_free_level_only_where_the_fit_residual_is_small():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from gaussian_start import FRESH, GATE, PEERS, SAMPLERS, first_ratio, page
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert len(FRESH) == 12 and first_ratio(5) > 25  # the 5-call grid starts at t = 800, sigma / alpha 25.7
    rows = []
    for bed, resid in (("near", 0.5 * GATE / first_ratio(5)), ("far", 2 * GATE / first_ratio(5))):
        values = dict(zip(SAMPLERS, (1.3, 1.1, 1.2, 1.4, 1.5)), **{PEERS[0]: 2.0})  # limit 1: excess = value - 1
        rows += [dict(bed=bed, sampler=s, calls=5, value=v, limit=1.0, resid=resid) for s, v in values.items()]
    text = "\n".join(page(rows, [5], {}))
    # the table's 0.3 where the residual is past the gate, the free level's 0.1 where it is not; the peer run here is the best
    assert "| near | " in text and "+0.100 | +1.000 | 0.10 | 0.10 |" in text and "+0.300 | +1.000 | 0.10 | 0.30 |" in text


@pytest.mark.parametrize("script", ["gaussian_start.py", "solver_family.py", "seed_ranges.py"])
def test_benchmarks_name_a_missing_model_in_one_line_before_any_run(tmp_path, script):
    r = subprocess.run([sys.executable, script, "--models", "nope", "--out", str(tmp_path)], cwd=BENCHMARKS, capture_output=True, text=True,
                       timeout=120)  # solver_family.py would run its mixtures first, for minutes, if it did not check up front
    assert r.returncode == 2 and "error: no model folder at nope; give a folder with model_index.json or one of: digits" in r.stderr
    assert "Traceback" not in r.stderr
