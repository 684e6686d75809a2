"""Grids fitted to a model: the search lowers the error it measures, round trips, and its errors."""

import json

import pytest
import torch

import ddim
from ddim.cli import main
from ddim.models import build_model, save_model
from ddim.optimized_grid import load_grid, optimize_grid, save_grid


def test_fitted_grid_lowers_the_error_against_the_reference(linear, gen):
    mixture = ddim.analytic.GaussianMixture.random(dim=8, modes=4, seed=2)
    model = mixture.denoiser(linear)
    fit, check = torch.randn(256, 8, generator=gen(0), dtype=torch.float64), torch.randn(256, 8, generator=gen(1), dtype=torch.float64)
    r = optimize_grid(model, linear, 6, "unipc", fit, check, reference_steps=100, rounds=2, progress=False)
    g = torch.tensor(r["grid"])
    assert len(g) == 6 and g[0] == 999 and (g[1:] < g[:-1]).all() and g.min() >= 0
    assert r["fit_loss"] < 0.9 * r["fit_loss_logsnr"]  # measured: about 3x lower
    assert r["check_loss"] < r["check_loss_logsnr"]  # and it carries over to other noise


def test_grids_file_round_trip_and_missing_grid(tmp_path):
    save_grid(tmp_path, "unipc", 10, {"grid": [999, 500, 0]})
    save_grid(tmp_path, "dpm++2m", 5, {"grid": [999, 0]})
    assert load_grid(tmp_path, "unipc", 10) == [999, 500, 0]
    with pytest.raises(ValueError, match=r"no fitted 7-step grid for unipc in .*grids.json \(have: unipc S=10, dpm\+\+2m S=5\); make one with 'ddim optimize-grid MODEL --method unipc --steps 7'"):
        load_grid(tmp_path, "unipc", 7)


def test_optimize_grid_cli_then_sample_with_it(tmp_path, capsys):
    torch.manual_seed(0)
    folder = save_model(tmp_path / "tiny", build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps")
    code = main(["optimize-grid", str(folder), "--steps", "4", "--images", "4", "--reference-steps", "20", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "unipc S=4:" in capsys.readouterr().out
    grid = load_grid(folder, "unipc", 4)
    code = main(["sample", str(folder), "-n", "2", "--steps", "4", "--method", "unipc", "--spacing", "optimized", "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0
    import numpy as np

    assert np.load(tmp_path / "s" / "samples.npz")["timesteps"].tolist() == grid
    code = main(["sample", str(folder), "-n", "2", "--steps", "6", "--method", "unipc", "--spacing", "optimized", "--output", str(tmp_path / "t"), "--no-progress"])
    assert code == 2 and "no fitted 6-step grid for unipc" in capsys.readouterr().err
    code = main(["optimize-grid", str(folder), "--steps", "4", "--method", "ddpm", "--no-progress"])
    assert code == 2 and "grids are fitted for deterministic methods; 'ddpm' is stochastic" in capsys.readouterr().err


@pytest.mark.parametrize("steps, method, spacing", [(3, "ddim", "uniform"), (5, "unipc3", "quadratic"), (10, "unipc3", "time-quadratic"), (20, "unipc3", "logsnr")])
def test_auto_picks_the_measured_best(tmp_path, capsys, steps, method, spacing):
    import numpy as np

    code = main(["sample", "-n", "2", "--steps", str(steps), "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = np.load(tmp_path / "s" / "samples.npz")
    assert (str(saved["method"]), str(saved["spacing"])) == (method, spacing)
    if spacing == "optimized":
        assert saved["timesteps"].tolist() == load_grid(ddim.load("digits").path, "unipc", steps)


@pytest.mark.slow
def test_grids_fitted_to_a_shipped_model_go_to_the_user_cache(tmp_path, capsys, monkeypatch):
    """The shipped folder is never written (it may be site-packages, or tracked files under an editable install)."""
    import hashlib

    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))
    shipped = ddim.load("digits").path
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped.rglob("*") if p.is_file()}
    code = main(["optimize-grid", "digits", "--steps", "4", "--images", "4", "--reference-steps", "12", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert f"saved in {tmp_path / 'cache' / 'grids' / 'digits' / 'grids.json'}" in capsys.readouterr().out
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped.rglob("*") if p.is_file()} == before
    user = load_grid(shipped, "unipc", 4)  # the user's grid is found ...
    assert len(user) == 4 and load_grid(shipped, "unipc", 5) == json.loads((shipped / "grids.json").read_text())["unipc"]["5"]["grid"]  # ... beside the shipped ones


def test_reference_steps_must_exceed_the_fitted_steps(capsys):
    code = main(["optimize-grid", "digits", "--steps", "5", "--reference-steps", "0", "--no-progress"])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "ddim optimize-grid: error: reference_steps (--reference-steps) must be more than the fitted grid's 5 steps (at most T = 1000 are used), got 0")
