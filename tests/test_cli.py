import os
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
        (["sample", "{model}", "--device", "foo"], "ddim sample: error: unknown device 'foo'; use cpu, cuda, cuda:N or mps"),
        (["sample", "{model}", "--seed", "18446744073709551616"], "ddim sample: error: seeds must lie in -2^63..2^64-1 (what a torch generator takes), got 18446744073709551616"),
        (["sample", "digits-cond", "--guidance", "nan"], "ddim sample: error: the guidance scale must be a finite number >= 0 (1 = no guidance), got nan"),
        (["invert", "{model}", "--dataset", "digits", "-n", "100000"], "ddim invert: error: --num-images 100000 is more than the 179 images of digits-test; ask for at most 179"),
        (["invert", "{model}", "--dataset", "digits", "-n", "0"], "ddim invert: error: --num-images must be at least 1, got 0"),
        (["info", "{missing}"], "ddim info: error: no model folder at {missing}; give a folder with model_index.json or one of: digits, digits-cond, fashion-mnist"),
        (["train", "--dataset", "{missing}", "--output", "{tmp}/run"], "ddim train: error: no dataset '{missing}': not a known name (digits, fashion-mnist, moons, swissroll, 8gaussians) and no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_folder, tmp_path, capsys, args, message):
    (tmp_path / "afile").write_text("x")
    subs = dict(missing=tmp_path / "missing", tmp=tmp_path, model=model_folder, file=tmp_path / "afile")
    code, out, err = run([a.format(**subs) for a in args], capsys)
    assert code == 2 and err.strip() == message.format(**subs) and "Traceback" not in err


def test_cuda_on_a_machine_without_one_is_one_line(model_folder, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(["sample", model_folder, "--device", "cuda", "--output", tmp_path / "o", "--no-progress"], capsys)
    assert code == 2 and err.startswith("ddim sample: error: device 'cuda' is not available here (torch ") and err.strip().endswith("use --device cpu")
    assert not (tmp_path / "o").exists()


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize("damage", ["truncated", "header", "missing"])
def test_a_damaged_weights_file_is_named_in_one_line(model_folder, tmp_path, capsys, damage):
    weights = _copy_model(model_folder, tmp_path / "m")
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        weights.write_bytes(b"\xff" * 16 + data[16:])
    else:
        weights.unlink()
    code, _, err = run(["sample", tmp_path / "m", "--output", tmp_path / "o", "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"ddim sample: error: the model's weights {weights} are missing" if damage == "missing" else f"ddim sample: error: cannot read the model's weights {weights} (")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, text", [("ddim_config.json", "{not json"), ("model_index.json", "[1, 2"), ("unet/config.json", "")])
def test_an_invalid_json_file_of_a_model_folder_is_named(model_folder, tmp_path, capsys, name, text):
    _copy_model(model_folder, tmp_path / "m")
    (tmp_path / "m" / name).write_text(text)
    code, _, err = run(["info", tmp_path / "m"], capsys)
    assert code == 2 and err.startswith(f"ddim info: error: {tmp_path / 'm' / name} is not valid JSON (")


def test_invert_and_interpolate_refuse_a_vector_model(tmp_path, capsys):
    torch.manual_seed(0)
    save_model(tmp_path / "moons", build_model("mlp"), ddim.NoiseSchedule.linear(1000), "eps", {"dataset": "moons"})
    for command in (["invert", "--dataset", "moons"], ["interpolate", "--seeds", "1", "2"]):
        code, _, err = run([command[0], tmp_path / "moons", *command[1:], "--output", tmp_path / "o", "--no-progress"], capsys)
        assert code == 2 and err.strip() == (f"ddim {command[0]}: error: ddim {command[0]} works on image models; {tmp_path / 'moons'} samples vectors of shape (2,) "
                                             "(use ddim.invert / ddim.slerp from Python for those)")
        assert not (tmp_path / "o").exists()


def test_info(model_folder, capsys):
    code, out, _ = run(["info", model_folder], capsys)
    assert code == 0 and "UNet2DModel" in out and "sample_shape" in out and "[1, 8, 8]" in out


@pytest.mark.slow
def test_cli_as_a_real_process_trains_then_samples(tmp_path):
    exe = [sys.executable, "-m", "ddim.cli"]
    r = subprocess.run(exe + ["train", "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--output", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(exe + ["sample", str(tmp_path / "run"), "-n", "4", "--steps", "3", "--output", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("grid.png"), r.stderr
    r = subprocess.run(exe + ["sample", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_weights_with_nan_data_but_an_intact_header_fail_with_the_cause(model_folder, tmp_path, capsys):
    """Corrupted tensor data (the header still parses) used to give an all-NaN samples.npz and a black grid, exit 0."""
    import json as _json
    import struct

    weights = _copy_model(model_folder, tmp_path / "m")
    data = bytearray(weights.read_bytes())
    start = 8 + struct.unpack("<Q", bytes(data[:8]))[0]  # safetensors: u64 header length, JSON header, then the tensor bytes
    assert _json.loads(bytes(data[8:start]))  # the header is intact
    data[start:] = b"\xff" * (len(data) - start)  # every float32 becomes NaN
    weights.write_bytes(bytes(data))
    code, _, err = run(["sample", tmp_path / "m", "-n", 2, "--steps", 3, "--output", tmp_path / "o", "--no-progress"], capsys)
    assert code == 2 and "the model returned NaN or inf at step t=" in err and "weights may be damaged" in err
    assert not (tmp_path / "o" / "samples.npz").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("ddim ")


def test_one_step_is_refused_with_the_reason_or_gives_an_image(model_folder, tmp_path, capsys):
    """--steps 1 used to return the noise (auto chose DDIM on the uniform grid [0])."""
    code, _, err = run(["sample", model_folder, "--steps", 1, "--output", tmp_path / "a", "--no-progress"], capsys)
    assert code == 2 and err.strip() == ("ddim sample: error: one step cannot make an image with this eps-prediction model: its x0 estimate "
                                         "at t = 999 divides the model's error by sqrt(alpha-bar) = 0.0064; use at least 2 steps")
    code, _, err = run(["sample", model_folder, "--steps", 1, "--method", "ddim", "--spacing", "uniform", "--output", tmp_path / "a", "--no-progress"], capsys)
    assert code == 2 and "one step on the 'uniform' grid visits only t = 0 and returns the noise almost unchanged" in err
    assert not (tmp_path / "a").exists()
    torch.manual_seed(0)
    v_model = save_model(tmp_path / "v", build_model("tiny"), ddim.NoiseSchedule.linear(1000), "v")  # x0 = -v at t = T-1: one step is an image
    code, _, err = run(["sample", v_model, "--steps", 1, "-n", 2, "--output", tmp_path / "b", "--no-progress"], capsys)
    assert code == 0, err
    saved = np.load(tmp_path / "b" / "samples.npz")
    assert (str(saved["spacing"]), saved["timesteps"].tolist()) == ("trailing", [999])


def test_overwrite_removes_the_replaced_runs_images(model_folder, tmp_path, capsys):
    base = ["sample", model_folder, "--steps", 2, "--output", tmp_path, "--individual", "--no-progress"]
    assert run(base + ["-n", 5], capsys)[0] == 0
    assert run(base + ["-n", 2, "--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["000000.png", "000001.png"]
    (tmp_path / "images" / "mine.txt").write_text("not ours")
    assert run(base[:-2] + ["-n", 1, "--overwrite", "--no-progress"], capsys)[0] == 0  # without --individual: no stale PNGs either
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["mine.txt"]


def test_interpolate_writes_nothing_when_its_input_is_bad(model_folder, tmp_path, capsys):
    code, _, err = run(["interpolate", model_folder, "--latents", tmp_path / "none.npz", "--output", tmp_path / "o", "--no-progress"], capsys)
    assert code == 2 and err.strip() == f"ddim interpolate: error: no latent file {tmp_path / 'none.npz'}"
    assert not (tmp_path / "o").exists()


def test_argument_errors_answer_before_the_model_loads(model_folder, tmp_path, capsys, monkeypatch):
    import ddim.models

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(ddim.models, "load", no_load)
    for bad, message in [(["--steps", "0"], "steps must be a positive integer, got 0"), (["--eta", "2"], "eta must lie in [0, 1]"),
                         (["--guidance", "-1"], "the guidance scale must be a finite number >= 0"), (["--seed", "-99999999999999999999"], "seeds must lie in")]:
        code, _, err = run(["sample", model_folder, *bad, "--output", tmp_path / "o", "--no-progress"], capsys)
        assert code == 2 and message in err, err


def test_help_and_argument_errors_answer_without_importing_torch():
    """The parser is built from torch-free modules (config.py, methods.py): --help and bad arguments answer at once."""
    probe = ("import sys\nfrom ddim.cli import main\nfor argv in {argv!r}:\n    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
             "heavy = [m for m in ('torch', 'numpy', 'diffusers') if m in sys.modules]\nassert not heavy, heavy\n")
    argvs = [["--help"], ["sample", "--help"], ["sample", "--method", "nope"], ["train", "--schedule", "nope"], ["compare", "--spacing", "nope"],
             ["sample", "--threads", "0"]]
    r = subprocess.run([sys.executable, "-c", probe.format(argv=argvs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "invalid choice: 'nope'" in r.stderr and "usage: ddim" in r.stdout


def test_import_ddim_is_lazy_and_complete():
    probe = ("import sys, ddim; assert 'torch' not in sys.modules; print(sorted(n for n in ddim.__all__ if not hasattr(ddim, n)))\n"
             "import ddim.timesteps, ddim.generate  # binding the submodules must not hide the functions of the same names\n"
             "assert ddim.timesteps(10, 2).tolist() == [5, 0] and ddim.generate.__module__ == 'ddim.generate'\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr + r.stdout


def test_threads_sets_torch_threads_and_refuses_nonsense(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["info", "digits", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exit_:
            main(["sample", "--threads", bad])
        assert exit_.value.code == 2 and f"--threads must be a positive integer, got '{bad}'" in capsys.readouterr().err


def _samples(folder):
    return np.load(folder / "samples.npz")["samples"]


@pytest.mark.slow
def test_sharded_sampling_is_the_same_for_one_and_two_processes(tmp_path):
    """accelerate launch with 2 CPU processes: each takes every 2nd shard; samples.npz equals 1 process's, bit for bit."""
    args = ["sample", "digits", "-n", "10", "--shard-size", "3", "--batch-size", "2", "--steps", "4", "--method", "dpm++2m", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    one = subprocess.run([sys.executable, "-m", "ddim.cli", *args, "--output", str(tmp_path / "one")], capture_output=True, text=True, env=env,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ddim.cli", *args, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("grid.png") == 1  # rank 0 assembles and reports
    assert np.array_equal(_samples(tmp_path / "one"), _samples(tmp_path / "two"))
    assert not (tmp_path / "two" / "shards").exists()


def test_sampling_resumes_from_its_shards(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sample", "digits-cond", "-n", "7", "--shard-size", "3", "--steps", "3", "--method", "ddim", "--no-progress", "--output", str(out)]
    assert main(args + ["--keep-shards"]) == 0
    full = _samples(out)
    shards = sorted((out / "shards").glob("*.npz"))
    assert [p.name for p in shards] == ["000000.npz", "000001.npz", "000002.npz"]
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    for name in ("samples.npz", "grid.png", "shards/000001.npz"):  # as if the run had stopped after two shards
        (out / name).unlink()
    assert main(args) == 0
    assert np.array_equal(_samples(out), full)
    # one shard regenerated, the others reused; a labelled model keeps image i's label i % 10 across shards
    assert main(["sample", "digits-cond", "-n", "7", "--shard-size", "100", "--steps", "3", "--method", "ddim", "--no-progress",
                 "--output", str(tmp_path / "whole")]) == 0
    # (other batches, so equal to float32 rounding only: a batch's composition changes the network's rounding)
    assert np.allclose(_samples(tmp_path / "whole"), full, atol=1e-4)
    assert not (out / "shards").exists() and before  # removed once samples.npz is written


def test_resume_refuses_shards_of_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "-n", "4", "--shard-size", "2", "--steps", "3", "--no-progress", "--keep-shards", "--output", str(out)]) == 0
    (out / "samples.npz").unlink()
    (out / "grid.png").unlink()
    code = main(["sample", "-n", "4", "--shard-size", "2", "--steps", "3", "--seed", "5", "--no-progress", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "holds the shards of a different run (differs in: seed); pass the same settings to resume it" in err
    assert main(["sample", "-n", "4", "--shard-size", "0", "--output", str(tmp_path / "x")]) == 2
    assert "--shard-size must be at least 1, got 0" in capsys.readouterr().err


def test_half_precision_is_refused_on_cpu_with_the_reason(tmp_path, capsys):
    code = main(["sample", "-n", "2", "--steps", "3", "--dtype", "bfloat16", "--device", "cpu", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--dtype bfloat16 is refused on CPU: half-precision networks run slower than float32 there" in err
    assert not (tmp_path / "o").exists()
    assert main(["sample", "-n", "2", "--steps", "3", "--dtype", "float32", "--no-progress", "--output", str(tmp_path / "f")]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not any(__import__("shutil").which(c) for c in ("cc", "gcc", "clang")), reason="torch.compile on CPU needs a C compiler")
def test_compile_reports_its_time_and_gives_the_same_images(tmp_path, capsys):
    args = ["sample", "-n", "2", "--steps", "3", "--method", "ddim", "--no-progress"]
    assert main(args + ["--output", str(tmp_path / "eager")]) == 0
    assert main(args + ["--compile", "--output", str(tmp_path / "compiled")]) == 0
    assert "torch.compile (default): " in capsys.readouterr().err
    np.testing.assert_allclose(_samples(tmp_path / "compiled"), _samples(tmp_path / "eager"), atol=1e-4)
