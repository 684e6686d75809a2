"""Inversion and interpolation: slerp, the invert/interpolate commands, and their bad input."""

import numpy as np
import pytest
import torch

import ddim
from ddim.cli import main
from ddim.interpolation import slerp
from ddim.models import build_model, save_model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("m") / "tiny"
    save_model(folder, build_model("tiny"), ddim.NoiseSchedule.linear(1000), "eps")
    return folder


def test_slerp_endpoints_norm_and_angle():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 8, generator=g, dtype=torch.float64), torch.randn(1, 8, 8, generator=g, dtype=torch.float64)
    b = b / b.norm() * a.norm()  # on one sphere slerp moves at constant speed and keeps the norm
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    # equal angular steps: consecutive frames are equally far apart on the arc
    gaps = [(path[i + 1] - path[i]).norm().item() for i in range(4)]
    assert max(gaps) - min(gaps) < 1e-9 * max(gaps)
    torch.testing.assert_close(path.flatten(1).norm(dim=1), a.norm().expand(5))
    with pytest.raises(ValueError, match="same shape"):
        slerp(a, b[..., :4], [0.5])


def write_png(path, array, mode):
    from PIL import Image

    Image.fromarray(array.astype(np.uint8), mode).save(path)


def test_invert_and_interpolate_commands(model_folder, tmp_path, capsys):
    write_png(tmp_path / "a.png", np.full((8, 8), 40), "L")
    write_png(tmp_path / "b.png", np.eye(8) * 255, "L")
    code = main(["invert", str(model_folder), "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--steps", "5",
                 "--method", "fixed-point", "--output", str(tmp_path / "inv"), "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("per-dimension MSE") and out[1].endswith("reconstruction.png")
    saved = np.load(tmp_path / "inv" / "latents.npz")
    assert saved["latents"].shape == (2, 1, 8, 8) and str(saved["method"]) == "fixed-point"
    code = main(["interpolate", str(model_folder), "--dataset", "digits", "--steps", "4", "--frames", "5", "--output", str(tmp_path / "i1"), "--no-progress"])
    assert code == 0 and capsys.readouterr().out.strip().endswith("interpolation.png")
    code = main(["interpolate", str(model_folder), "--seeds", "1", "2", "--steps", "3", "--output", str(tmp_path / "i2"), "--no-progress"])
    assert code == 0
    code = main(["interpolate", str(model_folder), "--latents", str(tmp_path / "inv" / "latents.npz"), "--steps", "3", "--output", str(tmp_path / "i3"), "--no-progress"])
    assert code == 0 and (tmp_path / "i3" / "interpolation.png").is_file()


def test_a_latent_file_that_does_not_match_the_model(model_folder, tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", latents=np.zeros((2, 3, 16, 16), np.float32))
    code = main(["interpolate", str(model_folder), "--latents", str(tmp_path / "bad.npz"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"ddim interpolate: error: latents in {tmp_path / 'bad.npz'} have shape (3, 16, 16), but this model samples (1, 8, 8)"
    (tmp_path / "junk.npz").write_bytes(b"junk")
    code = main(["interpolate", str(model_folder), "--latents", str(tmp_path / "junk.npz"), "--output", str(tmp_path / "o")])
    assert code == 2 and "is not a latents.npz written by 'ddim invert'" in capsys.readouterr().err


@pytest.mark.slow
def test_exact_inversion_meets_its_target_on_the_shipped_model():
    """Issue target: at S = 50, round-trip MSE >= 100x below plain DDIM inversion at <= 4x its calls."""
    m = ddim.load("digits")
    x0 = ddim.data.load_dataset("digits", split="test").data[:8]
    calls = []

    def counted(x, t):
        calls.append(1)
        return m.model(x, t)

    result = {}
    with torch.no_grad():
        for method in ("ddim", "fixed-point"):
            calls.clear()
            z = ddim.invert(counted, m.schedule, x0, steps=50, method=method, iterations=3)
            result[method] = (len(calls), (ddim.sample(m.model, m.schedule, z, steps=50) - x0).div(2).pow(2).mean().item())
    assert result["fixed-point"][0] <= 4 * result["ddim"][0]
    assert result["fixed-point"][1] * 100 < result["ddim"][1], result


def test_interpolation_endpoints_decode_to_the_reconstructions(model_folder):
    m = ddim.load(model_folder)
    x0 = ddim.data.load_dataset("digits", split="test").data[:2]
    with torch.no_grad():
        z = ddim.invert(m.model, m.schedule, x0, steps=6)
        recon = ddim.sample(m.model, m.schedule, z, steps=6)
        frames = ddim.sample(m.model, m.schedule, slerp(z[0], z[1], torch.linspace(0, 1, 4)), steps=6)
    torch.testing.assert_close(frames[[0, -1]], recon, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: write_png(d / "x.png", np.zeros((16, 16)), "L"), "x.png is 16x16, but the model expects 8x8 images"),
        (lambda d: write_png(d / "x.png", np.zeros((8, 8, 3)), "RGB"), "x.png is RGB, but the model expects grayscale (1 channel) images"),
        (lambda d: (d / "x.png").write_bytes(b"junk"), "cannot read image"),
    ],
)
def test_invert_bad_images(model_folder, tmp_path, capsys, make, message):
    make(tmp_path)
    code = main(["invert", str(model_folder), "--images", str(tmp_path / "x.png"), "--output", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_invert_bad_arguments(model_folder, tmp_path, capsys):
    code = main(["invert", str(model_folder), "--output", str(tmp_path / "o")])
    assert code == 2 and "give either --images FILE [FILE ...] or --dataset NAME" in capsys.readouterr().err
    code = main(["invert", str(model_folder), "--dataset", "digits", "--method", "exact", "--output", str(tmp_path / "o")])
    assert code == 2 and "unknown --method 'exact'; choose one of ddim, fixed-point" in capsys.readouterr().err
    code = main(["invert", str(model_folder), "--dataset", "moons", "--output", str(tmp_path / "o")])
    assert code == 2 and "moons images are (2,), but the model expects (1, 8, 8)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--iterations", "-1"], "--iterations must be 0 or more, got -1"),
    (["--spacing", "even"], "unknown --spacing 'even'; choose one of uniform, quadratic"),
    (["--steps", "0"], "steps must be an integer in 1..1000 (the model's training steps), got 0"),
    (["-n", "0"], "--num-images must be at least 1, got 0"),
])
def test_invert_refuses_bad_settings_before_writing_anything(model_folder, tmp_path, capsys, extra, message):
    code = main(["invert", str(model_folder), "--dataset", "digits", *extra, "--output", str(tmp_path / "o"), "--no-progress"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
