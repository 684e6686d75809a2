import subprocess
import sys

import numpy as np
import pytest
import torch

import ddim
from ddim.cli import main
from ddim.models import build_model, save_model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("m") / "tiny"
    save_model(folder, build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps", {"dataset": "test"})
    return folder


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_grid_npz_and_pngs(model_folder, tmp_path, capsys):
    out = tmp_path / "s"
    code, stdout, _ = run(["sample", model_folder, "-n", 5, "--steps", 4, "--batch-size", 2, "--output", out, "--individual", "--no-progress"], capsys)
    assert code == 0 and stdout.strip() == str(out / "grid.png")
    saved = np.load(out / "samples.npz")
    assert saved["samples"].shape == (5, 1, 8, 8) and int(saved["steps"]) == 4
    assert len(list((out / "images").glob("*.png"))) == 5
    # per-image seeds: the batch size does not change the images
    code, _, _ = run(["sample", model_folder, "-n", 5, "--steps", 4, "--batch-size", 5, "--output", tmp_path / "t", "--no-progress"], capsys)
    np.testing.assert_allclose(np.load(tmp_path / "t" / "samples.npz")["samples"], saved["samples"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method, extra", [("ddpm", []), ("sigma-hat", []), ("ddim", ["--eta", "0.5", "--spacing", "trailing"])])
def test_sample_methods(model_folder, tmp_path, capsys, method, extra):
    code, _, err = run(["sample", model_folder, "-n", 2, "--steps", 3, "--method", method, *extra, "--output", tmp_path / method, "--no-progress"], capsys)
    assert code == 0, err


def test_existing_outputs_are_kept_unless_overwrite(model_folder, tmp_path, capsys):
    args = ["sample", model_folder, "-n", 1, "--steps", 2, "--output", tmp_path, "--no-progress"]
    assert run(args, capsys)[0] == 0
    before = (tmp_path / "samples.npz").read_bytes()
    code, _, err = run(args + ["--seed", "5"], capsys)
    assert code == 2 and err.strip() == f"ddim sample: error: {tmp_path / 'grid.png'} already exists; pass --overwrite or choose another --output"
    assert (tmp_path / "samples.npz").read_bytes() == before
    assert run(args + ["--seed", "5", "--overwrite"], capsys)[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "{missing}"], "ddim sample: error: no model folder at {missing}; give a folder with model_index.json or one of: digits, digits-cond, fashion-mnist"),
        (["sample", "{tmp}"], "ddim sample: error: {tmp} is not a model folder: expected unet/config.json and scheduler/scheduler_config.json in it"),
        (["sample", "{model}", "--steps", "1001"], "ddim sample: error: steps must be an integer in 1..1000 (the model's training steps), got 1001"),
        (["sample", "{model}", "--eta", "-0.5"], "ddim sample: error: eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got -0.5"),
        (["sample", "{model}", "--method", "ddpm", "--eta", "0.5"], "ddim sample: error: eta applies to method='ddim' only; method='ddpm' fixes its own noise"),
        (["sample", "{model}", "--output", "{file}/sub"], "ddim sample: error: cannot write to output folder {file}/sub: Not a directory"),
        (["sample", "{model}", "--class", "3"], "ddim sample: error: a class label needs a class-conditional model; this one has no classes"),
        (["info", "{missing}"], "ddim info: error: no model folder at {missing}; give a folder with model_index.json or one of: digits, digits-cond, fashion-mnist"),
        (["train", "--dataset", "{missing}", "--output", "{tmp}/run"], "ddim train: error: no dataset '{missing}': not a known name (digits, fashion-mnist, moons, swissroll, 8gaussians) and no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_folder, tmp_path, capsys, args, message):
    (tmp_path / "afile").write_text("x")
    subs = dict(missing=tmp_path / "missing", tmp=tmp_path, model=model_folder, file=tmp_path / "afile")
    code, out, err = run([a.format(**subs) for a in args], capsys)
    assert code == 2 and err.strip() == message.format(**subs) and "Traceback" not in err


def test_info(model_folder, capsys):
    code, out, _ = run(["info", model_folder], capsys)
    assert code == 0 and "UNet2DModel" in out and "sample_shape" in out and "[1, 8, 8]" in out


def test_cli_as_a_real_process_trains_then_samples(tmp_path):
    exe = [sys.executable, "-m", "ddim.cli"]
    r = subprocess.run(exe + ["train", "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--output", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(exe + ["sample", str(tmp_path / "run"), "-n", "4", "--steps", "3", "--output", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("grid.png"), r.stderr
    r = subprocess.run(exe + ["sample", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
