"""Grids fitted to a model: the search lowers the error it measures, round trips, and its errors."""

import json

import pytest
import torch

import ddim
from ddim.cli import main
from ddim.models import build_model, save_model
from ddim.optimized_grid import family_grids, load_auto, load_grid, optimize_grid, pick_grid, save_grid


def test_fitted_grid_lowers_the_error_against_the_reference(linear, gen):
    mixture = ddim.analytic.GaussianMixture.random(dim=8, modes=4, seed=2)
    model = mixture.denoiser(linear)
    fit, check = torch.randn(256, 8, generator=gen(0), dtype=torch.float64), torch.randn(256, 8, generator=gen(1), dtype=torch.float64)
    r = optimize_grid(model, linear, 6, "unipc", fit, check, reference_steps=100, rounds=2, progress=False)
    g = torch.tensor(r["grid"])
    assert len(g) == 6 and g[0] == 999 and (g[1:] < g[:-1]).all() and g.min() >= 0
    assert r["fit_loss"] < 0.9 * r["fit_loss_logsnr"]  # measured: about 3x lower
    assert r["check_loss"] < r["check_loss_logsnr"]  # and it carries over to other noise


def test_family_search_keeps_the_best_scoring_grid_only_if_it_holds_on_the_check_batch(linear, gen):
    """Scored by the FD to the true mixture: the family's winner beats the logsnr baseline on both batches and is kept; a
    winner that does not lead the baseline on the check batch by the margin is not."""
    from ddim.metrics import frechet_distance, gaussian_stats

    mixture = ddim.analytic.GaussianMixture.random(dim=8, modes=3, seed=6, spread=1.0, scale=(0.05, 0.5))
    mu, cov = mixture.mean.numpy(), mixture.covariance.numpy()
    score = lambda x: frechet_distance(*gaussian_stats(x), mu, cov)  # noqa: E731
    fit, check = torch.randn(1000, 8, generator=gen(0), dtype=torch.float64), torch.randn(1000, 8, generator=gen(1), dtype=torch.float64)
    family = family_grids(linear, 5)
    assert len({tuple(g) for g in family.values()}) == len(family) >= 12 and all(len(g) == 5 and g[0] >= 800 for g in family.values())
    logsnr = ddim.timesteps(1000, 5, "logsnr", linear.alphas_cumprod).tolist()
    r = pick_grid(linear_model := mixture.denoiser(linear), linear, 5, "unipc3", fit, check, score, baseline=logsnr, progress=False)
    assert r["choice"] == min(r["fit_scores"], key=r["fit_scores"].get) and r["grid"] == family[r["choice"]]
    assert r["check_score"] < r["baseline_check_score"] and r["fit_scores"][r["choice"]] < r["fit_scores"]["logsnr"]
    calls = []

    def luck(x):  # the fit batch's scores as before; on the check batch the winner leads the baseline by 3% only: 0.97 vs 1.0
        calls.append(1)
        return score(x) if len(calls) <= len(family) else (0.97 if len(calls) == len(family) + 1 else 1.0)

    kept = pick_grid(linear_model, linear, 5, "unipc3", fit, check, luck, baseline=logsnr, progress=False)
    assert kept["choice"] == "baseline" and kept["grid"] == logsnr and len(calls) == len(family) + 2
    calls.clear()
    adopted = pick_grid(linear_model, linear, 5, "unipc3", fit, check, luck, baseline=logsnr, margin=0.02, progress=False)
    assert adopted["choice"] == r["choice"]  # with a 2% margin, a 3% lead on the check batch is enough


def test_family_search_needs_a_data_set_with_a_feature_network(tmp_path, capsys):
    folder = save_model(tmp_path / "tiny", build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps")
    code = main(["optimize-grid", str(folder), "--steps", "4", "--method", "unipc3", "--search", "family", "--no-progress"])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "ddim optimize-grid: error: --search family scores grids by FD against a data set, and this model folder does not say which it was "
        "trained on; pass --dataset NAME")
    code = main(["optimize-grid", str(folder), "--steps", "4", "--method", "unipc3", "--search", "family", "--dataset", "fashion-mnist",
                 "--no-progress"])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "ddim optimize-grid: error: the feature network for 'fashion-mnist' takes images (1, 28, 28), the model draws (1, 8, 8); pass the --dataset "
        "the model was trained on")
    code = main(["optimize-grid", "digits", "--steps", "4", "--method", "unipc3", "--search", "family", "--images", "8", "--no-progress"])
    assert code == 2 and "--search family needs at least 16 --images for an FD, got 8" in capsys.readouterr().err


def test_family_search_cli_on_digits_then_auto_reads_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))
    code = main(["optimize-grid", "digits", "--steps", "6", "--method", "unipc3", "--search", "family", "--images", "64", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("unipc3 S=6: kept ") and "on the check batch" in out
    saved = json.loads((tmp_path / "cache" / "grids" / "digits" / "grids.json").read_text())["unipc3"]["6"]
    # the baseline is the table's grid where auto picks this method at this budget (unipc3 at 6 calls)
    assert saved["search"] == "family" and saved["baseline_spacing"] == ddim.policy.recommended(6)[1] == "quadratic-open" and len(saved["fit_scores"]) >= 12
    code = main(["sample", "digits", "-n", "2", "--steps", "6", "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0
    import numpy as np

    assert np.load(tmp_path / "s" / "samples.npz")["timesteps"].tolist() == saved["grid"]


def test_method_by_grid_search_cli_on_digits_then_auto_draws_with_its_choice(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))
    code = main(["optimize-grid", "digits", "--steps", "5", "--method", "auto", "--methods", "unipc3", "unipc3-bh2", "--search", "family",
                 "--images", "64", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("auto calls=5: kept ")
    saved = json.loads((tmp_path / "cache" / "grids" / "digits" / "grids.json").read_text())["auto"]["5"]
    family = family_grids(ddim.load("digits").schedule, 5)
    assert set(saved["fit_scores"]) == {f"{m} {g}" for m in ("unipc3", "unipc3-bh2") for g in family}
    assert (saved["baseline_method"], saved["baseline_spacing"]) == ddim.policy.recommended(5)
    best = min(saved["fit_scores"], key=saved["fit_scores"].get)
    if saved["choice"] == "baseline":
        assert (saved["method"], saved["grid"]) == (saved["baseline_method"], saved["baseline"])
    else:
        assert saved["choice"] == best  # the table's own choice, or one that beat it by 5% on the check batch
        assert saved["check_score"] <= 0.95 * saved["baseline_check_score"] or saved["grid"] == saved["baseline"]
        assert f"{saved['method']} " + " ".join(best.split()[1:]) == best and saved["grid"] == family[best.split(" ", 1)[1]]
    code = main(["sample", "digits", "-n", "2", "--steps", "5", "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0
    import numpy as np

    assert np.load(tmp_path / "s" / "samples.npz")["timesteps"].tolist() == saved["grid"]


def test_auto_reads_the_method_a_search_adopted_and_ignores_a_kept_baseline(tmp_path):
    from ddim.policy import Choice, resolve

    save_grid(tmp_path, "auto", 5, {"method": "unipc3-bh2", "grid": [999, 799, 599, 400, 200], "choice": "unipc3-bh2 time-power 1 open"})
    save_grid(tmp_path, "auto", 6, {"method": "unipc3", "grid": [999, 800, 600, 400, 200, 0], "choice": "baseline"})
    assert resolve("auto", "auto", 5, folder=tmp_path) == Choice("unipc3-bh2", "optimized", 5, (999, 799, 599, 400, 200))
    assert resolve("auto", "auto", 6, folder=tmp_path) == resolve("auto", "auto", 6)  # the table's choice, as with no folder
    save_grid(tmp_path, "auto", 7, {"method": "unipc3-bh2", "grid": [999, 800, 600, 400, 200, 100, 50], "choice": "unipc3-bh2 x"})
    # an explicit grid: the table's method, no fitted pick
    assert resolve("auto", "logsnr", 7, folder=tmp_path).method == ddim.policy.recommended(7)[0] == "unipc3"


def test_method_auto_needs_the_family_search(capsys):
    assert main(["optimize-grid", "digits", "--steps", "5", "--method", "auto", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "ddim optimize-grid: error: --method auto searches method x grid by FD: add --search family"
    assert main(["optimize-grid", "digits", "--steps", "5", "--methods", "unipc3", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ddim optimize-grid: error: --methods is for --method auto (a method x grid search); with one --method, leave it out")
    assert main(["optimize-grid", "digits", "--steps", "5", "--method", "auto", "--methods", "unipc3", "heun", "--search", "family",
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ddim optimize-grid: error: methods are compared at equal model calls, one per step; 'heun' takes 2")
    assert main(["optimize-grid", "digits", "--steps", "5", "--method", "auto", "--methods", "heun", "--search", "family", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (  # auto's budget counts model calls, so even alone it must take one per step
        "ddim optimize-grid: error: methods are compared at equal model calls, one per step; 'heun' takes 2")
    assert main(["optimize-grid", "digits", "--steps", "5", "--method", "auto", "--methods", "unipc3", "ddpm", "--search", "family",
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "ddim optimize-grid: error: grids are fitted for deterministic methods; 'ddpm' is stochastic"


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


@pytest.mark.parametrize("steps, method, spacing", [(3, "ddim", "uniform"), (4, "unipc3-bh2", "optimized"), (5, "unipc3-bh2", "optimized"),
                                                    (6, "unipc3", "quadratic-open"), (9, "ipndm3", "quadratic-0.9"), (10, "unipc3", "optimized"),
                                                    (12, "ipndm3", "quadratic-0.9"), (13, "unipc3", "time-quadratic"),
                                                    (20, "unipc3", "time-quadratic")])
def test_auto_picks_the_measured_best(tmp_path, capsys, monkeypatch, steps, method, spacing):
    import numpy as np

    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))  # no grids the user fitted

    code = main(["sample", "-n", "2", "--steps", str(steps), "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = np.load(tmp_path / "s" / "samples.npz")
    assert (str(saved["method"]), str(saved["spacing"])) == (method, spacing)
    if spacing == "optimized":  # shipped, picked by FD (docs/solvers.md): the authors' UniPC-3 at 4 and 5 calls, unipc3 on an open
        # grid at 8 and 10 (where the table has ipndm3); at 6, 7 and 12 the search kept the table's choice of its time
        assert saved["timesteps"].tolist() == load_auto(ddim.load("digits").path, steps)[1] == {
            4: [800, 355, 88, 0], 5: [999, 639, 360, 160, 40], 10: [999, 809, 639, 490, 360, 250, 160, 90, 40, 10]}[steps]


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


def test_info_lists_the_grids_auto_would_use(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))
    assert main(["info", "digits"]) == 0
    assert "fitted_grids   unipc S=5 8 10 15 20; unipc3 S=5; auto calls=4 5 8 10\n" in capsys.readouterr().out  # at the other budgets the
    # searches kept the table's grid (unipc3) or its method and grid (auto)
    save_grid(ddim.load("digits").path, "unipc3", 9, {"grid": [999, 500, 0], "choice": "time-power 2"})  # to the user cache
    assert main(["info", "digits"]) == 0
    assert "fitted_grids   unipc S=5 8 10 15 20; unipc3 S=5 9; auto calls=4 5 8 10\n" in capsys.readouterr().out
