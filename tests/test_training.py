import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import ddim
from ddim.training import TrainConfig, train

pytestmark = pytest.mark.slow  # every test here trains

FAST = dict(batch_size=8, log_every=2, sample_every=100, checkpoint_every=3, grid_size=4, sample_steps=3, warmup=2)


def weights(folder):
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("dataset, preset", [("digits", "tiny"), ("digits", "digits"), ("moons", "mlp")])
def test_a_few_steps_per_preset_make_a_loadable_model(tmp_path, dataset, preset):
    out = train(TrainConfig(dataset=dataset, preset=preset, output=str(tmp_path / "run"), steps=3, **FAST), progress=False)
    m = ddim.load(out)
    assert m.config["preset"] == preset and m.config["trained_steps"] == 3
    assert (out / "log.csv").read_text().splitlines()[0] == "step,loss,lr,steps_per_s,images_per_s,elapsed_s"
    assert (out / "samples" / "step-0000003.png").is_file()


def test_fashion_and_cifar_presets_on_folders(tmp_path):
    import numpy as np
    from test_data import write_idx, write_pngs

    (tmp_path / "idx").mkdir()
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte", np.random.default_rng(0).integers(0, 256, (4, 28, 28)))
    out = train(TrainConfig(dataset=str(tmp_path / "idx"), output=str(tmp_path / "a"), steps=1, **{**FAST, "batch_size": 2}), progress=False)
    assert ddim.load(out).sample_shape == (1, 28, 28) and ddim.load(out).config["preset"] == "fashion"
    write_pngs(tmp_path / "png", [(40, 36)] * 3)
    cfg = TrainConfig(dataset=str(tmp_path / "png"), image_size=32, flip=True, output=str(tmp_path / "b"), steps=1, **{**FAST, "batch_size": 2})
    out = train(cfg, progress=False)
    assert ddim.load(out).sample_shape == (3, 32, 32) and ddim.load(out).config["preset"] == "cifar"


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    base = dict(dataset="digits", preset="tiny", prediction="v", grad_accum=2, **FAST)
    straight = train(TrainConfig(output=str(tmp_path / "straight"), steps=6, **base), progress=False)
    first = train(TrainConfig(output=str(tmp_path / "resumed"), steps=3, **base), progress=False)
    resumed = train(TrainConfig(output=str(first), steps=6), resume=True, progress=False)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    rows = (resumed / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "3", "4", "6"]  # the first run logged its last step


def test_a_crash_mid_checkpoint_leaves_the_last_good_one(tmp_path):
    out = train(TrainConfig(output=str(tmp_path / "run"), preset="tiny", steps=3, **FAST), progress=False)
    ckpts = out / "checkpoints"
    (ckpts / "step-0000006.tmp").mkdir()  # a write that died half-way
    (ckpts / "step-0000006.tmp" / "model.safetensors").write_bytes(b"partial")
    assert (ckpts / "latest").read_text() == "step-0000003"
    train(TrainConfig(output=str(out), steps=6), resume=True, progress=False)
    assert (ckpts / "latest").read_text() == "step-0000006" and not (ckpts / "step-0000006.tmp").exists()


def test_output_is_not_overwritten_unless_asked(tmp_path):
    cfg = TrainConfig(output=str(tmp_path / "run"), preset="tiny", steps=1, **FAST)
    train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="is not empty; pass --resume to continue it or --overwrite"):
        train(cfg, progress=False)
    train(cfg, overwrite=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(TrainConfig(output=str(tmp_path / "fresh"), steps=2), resume=True, progress=False)


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=0), r"batch_size \(--batch-size\) must be at least 1, got 0"),
    (dict(schedule="quadratic"), r"unknown schedule \(--schedule\) 'quadratic'"),
    (dict(ema_decay=1.0), r"ema_decay \(--ema-decay\) must lie in \[0, 1\)"),
    (dict(image_size=0), r"image_size \(--image-size\) must be a positive number of pixels, got 0"),
    (dict(sample_every=-1), r"sample_every \(--sample-every\) must be 0 \(no sample grids\) or more"),
    (dict(seed=2**64), r"seed \(--seed\) must lie in -2\^63..2\^63-1"),
])
def test_bad_config_values_name_field_and_flag(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change).validate()


def test_cli_resume_keeps_the_runs_settings_and_refuses_conflicting_flags(tmp_path, capsys):
    from ddim.cli import main

    out = tmp_path / "run"
    base = ["train", "--preset", "tiny", "--batch-size", "4", "--output", str(out), "--sample-every", "0", "--checkpoint-every", "2", "--no-progress"]
    assert main(base + ["--steps", "2"]) == 0
    assert main(["train", "--output", str(out), "--resume", "--no-progress"]) == 0  # no --steps: the run's own 2, not the default 8000
    assert json.loads((out / "train_config.json").read_text())["steps"] == 2
    assert json.loads((out / "checkpoints" / "step-0000002" / "step.json").read_text())["step"] == 2
    capsys.readouterr()
    assert main(["train", "--output", str(out), "--resume", "--batch-size", "8", "--steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ddim train: error: --batch-size 8 conflicts with the run's saved 4 ({out / 'train_config.json'}): a resumed run keeps its "
                   "settings; drop --batch-size, or start a new run in another --output")
    assert main(["train", "--output", str(out), "--resume", "--batch-size", "4", "--steps", "4", "--no-progress"]) == 0  # the same value is fine
    assert json.loads((out / "train_config.json").read_text())["steps"] == 4
    assert not (out / "samples").exists()  # --sample-every 0: no grids, not even at the end


def test_a_bad_data_set_leaves_no_output_folder(tmp_path, capsys):
    from ddim.cli import main

    (tmp_path / "empty").mkdir()
    code = main(["train", "--dataset", str(tmp_path / "empty"), "--output", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_two_cpu_processes_with_accelerate_launch(tmp_path):
    """accelerate launch starts 2 processes that form one gloo group (per-process RNG states, summed throughput)."""
    out = tmp_path / "mp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ddim.cli", "train", "--dataset", "digits",
           "--preset", "tiny", "--steps", "4", "--batch-size", "8", "--output", str(out), "--log-every", "2",
           "--checkpoint-every", "4", "--sample-every", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("model folder:") == 1  # only rank 0 reports
    ckpt = out / "checkpoints" / "step-0000004"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert ddim.load(out).config["trained_steps"] == 4
