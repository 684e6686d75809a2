"""``ddim compare`` end to end on a tiny grid, resume, and its errors; ``ddim train-classifier``."""

import csv

import numpy as np
import pytest
import torch

import ddim
from ddim.cli import main
from ddim.compare import parse_sampler
from ddim.models import build_model, save_model


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("m") / "tiny-digits"
    return save_model(folder, build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps", {"train": {"dataset": "digits"}})


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DDIM_CACHE", str(tmp_path / "cache"))


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


GRID = ["--steps", 2, 4, "-n", 6, "--seeds", 0, 1, "--batch-size", 4, "--consistency", 3, "--no-progress", "--eta", 0, 1, "sigma-hat"]


@pytest.mark.slow
def test_compare_writes_every_output_and_resumes(tiny_digits, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run(["compare", tiny_digits, *GRID, "--output", out], capsys)
    assert code == 0, err
    assert "12 cells sampled, 0 reused" in stdout
    for name in ("report.md", "results.csv", "metrics_vs_steps.png", "fd_vs_time.png", "consistency.png", "config.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 12 and {r["sampler"] for r in rows} == {"0.0", "1.0", "σ̂"}
    assert all(float(r["calls_per_image"]) == int(r["steps"]) for r in rows)
    assert all(float(r["fd"]) > 0 and 0 <= float(r["precision"]) <= 1 for r in rows)
    report = (out / "report.md").read_text()
    assert "## FD-digits" in report and "| eta \\ S | 2 | 4 |" in report and "| σ̂ |" in report and " ± " in report
    assert "ddim compare " in report and "`digits` train split (the model's own training data)" in report
    assert "6 real images of the `test` split (a fixed random draw, as many as a cell's samples)" in report
    from PIL import Image

    assert Image.open(out / "consistency.png").size == (3 * (64 + 2) + 2, 2 * (64 + 2) + 2)  # 3 latents x 2 step counts

    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    code, stdout, _ = run(["compare", tiny_digits, *GRID, "--output", out], capsys)
    assert code == 0 and "0 cells sampled, 12 reused" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == cells
    assert list(csv.DictReader((out / "results.csv").open())) == rows  # same images, same numbers

    # a grown grid samples only the new cells; a changed setting resamples
    code, stdout, _ = run(["compare", tiny_digits, *GRID, 0.5, "--output", out], capsys)
    assert "4 cells sampled, 12 reused" in stdout
    code, stdout, _ = run(["compare", tiny_digits, *[a if a != 6 else 5 for a in GRID], "--output", out], capsys)
    assert "12 cells sampled, 0 reused" in stdout


@pytest.mark.slow
def test_cells_of_one_seed_share_x_T_and_seeds_differ(tiny_digits, tmp_path, capsys):
    import numpy as np

    out = tmp_path / "cmp"
    assert run(["compare", tiny_digits, "--steps", 2, 3, "--eta", 0, "-n", 4, "--seeds", 0, 1, "--consistency", 0, "--no-progress", "--output", out], capsys)[0] == 0
    # S = 2 with eta = 0 is deterministic from x_T, so equal x_T give equal images; reproduce seed 1 by hand
    m = ddim.load(tiny_digits)
    gens = [torch.Generator().manual_seed(1_000_000 + i) for i in range(4)]
    x_T = torch.stack([torch.randn(m.sample_shape, generator=g) for g in gens])
    with torch.no_grad():
        x0 = ddim.sample(m.model, m.schedule, x_T, steps=2)
    expect = ((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    with np.load(out / "cells" / "eta0-S2-seed1.npz") as f:
        np.testing.assert_array_equal(f["images"], expect)
    with np.load(out / "cells" / "eta0-S2-seed0.npz") as f:
        assert not np.array_equal(f["images"], expect)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eta", "2"], "eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got 2.0"),
        (["--eta", "fast"], "sampler 'fast' is neither a DDIM eta (a number in [0, 1]) nor a method (ddim, ddpm, sigma-hat, dpm++2m, dpm++3m, dpm++2m-sde, dpm++3m-sde, unipc, unipc3, unipc-bh1, unipc-bh2, unipc3-bh1, unipc3-bh2, ipndm, ipndm3, heun)"),
        (["--eta", "0", "0.0"], "the same sampler is listed twice in ['0', '0.0']"),
        (["--steps", "0", "10"], "steps must be an integer in 1..1000 (the model's training steps), got 0"),
        (["-n", "2"], "--num-images must be at least 4 (metrics need a few samples), got 2"),
        (["--seeds", "1", "1"], "seeds repeat: [1, 1]"),
        (["--features", "nowhere"], "no feature network at nowhere: expected config.json and model.safetensors"),
        (["--dataset", "moons"], "no shipped feature network for dataset 'moons'"),
        (["--dataset", "fashion-mnist"], "feature network 'fashion-mnist' takes images (1, 28, 28) but the model makes (1, 8, 8)"),
    ],
)
def test_compare_bad_input(tiny_digits, tmp_path, capsys, extra, message):
    code, _, err = run(["compare", tiny_digits, "--steps", "2", "-n", "4", "--no-progress", "--output", tmp_path / "o", *extra], capsys)
    assert code == 2
    assert err.startswith("ddim compare: error: ") and message in err


def test_compare_needs_to_know_the_dataset(tmp_path, capsys):
    folder = save_model(tmp_path / "anon", build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps")
    code, _, err = run(["compare", folder, "--steps", "2", "-n", "4", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "does not say which dataset it was trained on; pass --dataset" in err


def test_reference_split_defaults_to_unseen_data_when_there_is_enough():
    from ddim.compare import reference_split
    from ddim.data import FASHION_MNIST_DIR

    assert reference_split("digits", "auto") == "train"  # 179 test digits are too few for a reference
    assert reference_split("digits", "test") == "test"
    if FASHION_MNIST_DIR.is_dir():
        assert reference_split("fashion-mnist", "auto") == "test"


def test_parse_sampler_labels():
    assert parse_sampler("0") == ("ddim", 0.0, "0.0")
    assert parse_sampler("0.25") == ("ddim", 0.25, "0.25")
    assert parse_sampler("sigma-hat") == ("sigma-hat", 0.0, "σ̂")
    assert parse_sampler("ddpm") == ("ddpm", 0.0, "DDPM")


def test_a_truncated_cell_is_sampled_again(tiny_digits, tmp_path, capsys):
    args = ["compare", tiny_digits, "--steps", "2", "--eta", "0", "-n", "4", "--consistency", "0", "--no-progress", "--output", tmp_path / "o"]
    assert run(args, capsys)[0] == 0
    cell = tmp_path / "o" / "cells" / "eta0-S2-seed0.npz"
    good = np.load(cell)["images"]
    cell.write_bytes(cell.read_bytes()[:40])  # an interrupted copy: a truncated zip
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "1 cells sampled, 0 reused" in out
    np.testing.assert_array_equal(np.load(cell)["images"], good)


def test_score_agrees_with_compare_on_the_same_images(tiny_digits, tmp_path, capsys):
    """ddim score on a compare cell's images reports the numbers compare put in results.csv for that cell."""
    out = tmp_path / "cmp"
    code, _, err = run(["compare", tiny_digits, "--steps", 3, "-n", 8, "--eta", 0, "--consistency", 0, "--no-progress", "--output", out], capsys)
    assert code == 0, err
    (row,) = list(csv.DictReader((out / "results.csv").open()))
    (cell,) = list((out / "cells").glob("*.npz"))
    code, stdout, err = run(["score", cell, "--dataset", "digits", "--json"], capsys)
    assert code == 0, err
    import json

    got = json.loads(stdout)
    assert got["num_images"] == 8 and got["features"] == "digits"
    for key in ("fd", "kid", "precision", "recall"):
        assert got[key] == pytest.approx(float(row[key]), rel=1e-5, abs=1e-9), key  # the CSV keeps 6 significant digits


def test_score_reads_sample_folders_and_refuses_bad_input(tmp_path, capsys):
    assert main(["sample", "-n", "6", "--steps", "3", "--individual", "--no-progress", "--output", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    from ddim.score import score

    from_npz = score(tmp_path / "s", "digits")
    from_pngs = score(tmp_path / "s" / "images", "digits")
    assert from_npz["num_images"] == from_pngs["num_images"] == 6
    assert from_npz["fd"] == pytest.approx(from_pngs["fd"], rel=1e-6)  # the features see 8-bit images either way
    code, _, err = run(["score", tmp_path / "nowhere", "--dataset", "digits"], capsys)
    assert code == 2 and "no samples at" in err
    code, _, err = run(["score", tmp_path / "s", "--dataset", "fashion-mnist"], capsys)
    assert code == 2 and "feature network 'fashion-mnist' takes images (1, 28, 28), the samples are (1, 8, 8)" in err
