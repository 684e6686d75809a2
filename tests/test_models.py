import json

import pytest
import torch

import ddim
from ddim.models import build_model, load, save_model


@pytest.fixture
def tiny_folder(tmp_path):
    torch.manual_seed(0)
    net = build_model("tiny")
    save_model(tmp_path / "m", net, ddim.NoiseSchedule.linear(1000), "eps", {"dataset": "test"})
    return tmp_path / "m", net


def test_save_load_round_trip(tiny_folder):
    folder, net = tiny_folder
    assert {p.name for p in folder.iterdir()} >= {"model_index.json", "unet", "scheduler", "ddim_config.json"}
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    m = load(folder)
    assert m.sample_shape == (1, 8, 8) and m.prediction == "eps" and len(m.schedule) == 1000
    torch.testing.assert_close(m.schedule.alphas_cumprod, ddim.NoiseSchedule.linear(1000).alphas_cumprod)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(m.model(x, t), net(x, t).sample)


@pytest.mark.slow
def test_diffusers_pipelines_load_our_folder(tiny_folder):
    from diffusers import DDIMPipeline, DDPMPipeline

    folder, _ = tiny_folder
    for cls in (DDPMPipeline, DDIMPipeline):
        pipe = cls.from_pretrained(folder)
        images = pipe(batch_size=1, num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)).images
        assert images.shape == (1, 8, 8, 1)


def test_we_load_a_diffusers_made_folder(tmp_path):
    """A folder as diffusers writes it (like a local copy of google/ddpm-cifar10-32), with other settings."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1)
    # google/ddpm-cifar10-32's scheduler settings, and a cosine / v-prediction variant
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(beta_schedule="linear", variance_type="fixed_large", clip_sample=True)).save_pretrained(tmp_path / "a")
    m = load(tmp_path / "a")
    assert m.sample_shape == (3, 16, 16) and m.prediction == "eps"
    torch.testing.assert_close(m.schedule.alphas_cumprod, ddim.NoiseSchedule.linear(1000).alphas_cumprod)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")).save_pretrained(tmp_path / "b")
    m = load(tmp_path / "b")
    assert m.prediction == "v"
    torch.testing.assert_close(m.schedule.alphas_cumprod, ddim.NoiseSchedule.cosine(1000).alphas_cumprod, rtol=1e-6, atol=1e-7)
    x = ddim.sample(m.model, m.schedule, torch.randn(1, 3, 16, 16), steps=3, prediction=m.prediction)
    assert x.shape == (1, 3, 16, 16)


def test_mlp_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_model("mlp", sample_shape=(2,))
    save_model(tmp_path / "mlp", net, ddim.NoiseSchedule.cosine(100), "v")
    m = load(tmp_path / "mlp")
    assert m.sample_shape == (2,) and m.prediction == "v" and len(m.schedule) == 100
    x, t = torch.randn(5, 2), torch.arange(5)
    with torch.no_grad():
        torch.testing.assert_close(m.model(x, t), net(x, t))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder at"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a model folder: expected unet/config.json"):
        load(tmp_path / "empty")


def test_presets_build_and_run():
    for preset, shape in [("tiny", (1, 8, 8)), ("digits", (1, 8, 8)), ("mnist", (1, 28, 28)), ("fashion", (1, 28, 28)), ("mlp", (2,))]:
        net = build_model(preset, sample_shape=shape)
        out = net(torch.randn(2, *shape), torch.tensor([0, 999]))
        assert getattr(out, "sample", out).shape == (2, *shape)
    with pytest.raises(ValueError, match="not divisible by 4"):
        build_model("mnist", sample_shape=(1, 30, 30))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_model("huge")


def test_shipped_digits_model():
    m = ddim.load("digits")
    assert m.sample_shape == (1, 8, 8) and m.prediction == "eps" and len(m.schedule) == 1000
    assert m.config["dataset"] == "digits-train" and m.num_parameters < 2_000_000
    cfg = json.loads((m.path / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["beta_schedule"] == "linear" and cfg["num_train_timesteps"] == 1000
    with torch.no_grad():
        x = ddim.sample(m.model, m.schedule, torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)), steps=10)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.slow
def test_shipped_fashion_mnist_model_makes_garments():
    from ddim.features import load_features

    m = ddim.load("fashion-mnist")
    assert m.sample_shape == (1, 28, 28) and m.prediction == "eps" and len(m.schedule) == 1000 and m.num_classes is None
    assert m.config["dataset"] == "fashion-mnist-train" and m.config["preset"] == "fashion"
    assert (m.path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size < 15e6
    x_T = torch.stack([torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(i)) for i in range(24)])
    with torch.no_grad():
        x = ddim.sample(m.model, m.schedule, x_T, steps=20)
        probs = load_features("fashion-mnist")(x.clamp(-1, 1)).softmax(1)
    assert x.shape == (24, 1, 28, 28) and torch.isfinite(x).all()
    # the classifier trained on real garments is confident on the samples; noise or blobs would not be
    assert probs.max(1).values.mean() > 0.8
    assert len(set(probs.argmax(1).tolist())) >= 5  # several garment classes, not one mode


@pytest.mark.slow
def test_the_narrow_unet_import_gives_diffusers_own_class_and_leaves_diffusers_whole():
    """models.unet2d_class skips diffusers' unets/transformers package __init__s; afterwards both import in full, with the same class."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from ddim.models import unet2d_class\n"
        "U = unet2d_class()\n"
        "assert 'diffusers.models.unets' not in sys.modules and 'diffusers.models.transformers' not in sys.modules\n"
        "import diffusers.models.unets as unets, diffusers.models.transformers as transformers\n"
        "from diffusers import UNet2DModel, UNet2DConditionModel, DDPMPipeline\n"
        "assert U is UNet2DModel is unets.UNet2DModel and UNet2DConditionModel is unets.UNet2DConditionModel\n"
        "assert hasattr(transformers, 'Transformer2DModel') and hasattr(transformers, 'DualTransformer2DModel')\n"
        "assert isinstance(DDPMPipeline.from_pretrained(sys.argv[1]).unet, U)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe, str(load("digits").path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
