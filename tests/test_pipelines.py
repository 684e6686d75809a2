"""ddim.pipelines: our samplers as a diffusers scheduler, and inversion of a pipeline's guided model.

Pixel pipelines use the shipped digits UNet; the latent, text-conditioned pipeline is built from random
weights here (ddim.testing.tiny_text_pipeline), so nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

import ddim
from ddim.models import schedule_from_diffusers, shipped_path
from ddim.pipelines import GuidedUNet, Scheduler, invert

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def digits_pipe():
    pipe = diffusers.DDPMPipeline.from_pretrained(shipped_path("digits"))
    pipe.set_progress_bar_config(disable=True)
    pipe.stock_config = pipe.scheduler.config  # the shipped DDPMScheduler's; tests swap schedulers from it
    return pipe


@pytest.fixture(scope="module")
def text_pipe():
    from ddim.testing import tiny_text_pipeline

    pipe = tiny_text_pipeline()
    pipe.stock_config = pipe.scheduler.config
    return pipe


@pytest.fixture(scope="module")
def digits():
    return ddim.data.load_dataset("digits", split="test").data[:6]


def _count_calls(unet):
    counter = {"calls": 0}
    handle = unet.register_forward_hook(lambda *_: counter.__setitem__("calls", counter["calls"] + 1))
    return counter, handle


# --------------------------------------------------------------------------- the scheduler
@pytest.mark.parametrize("method", list(ddim.METHODS))
def test_pixel_pipeline_equals_ddim_sample(digits_pipe, method):
    """DDPMPipeline with our scheduler draws x_T from the generator, then steps: the same as ddim.sample, bit for bit."""
    m = ddim.load("digits")
    digits_pipe.scheduler = Scheduler.from_config(digits_pipe.stock_config, method=method, spacing="logsnr")
    counter, handle = _count_calls(digits_pipe.unet)
    try:
        got = digits_pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5, output_type="np").images
    finally:
        handle.remove()
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn((2, 1, 8, 8), generator=g)
    with torch.no_grad():
        want = ddim.sample(m.model, m.schedule, x_T, steps=5, method=method, spacing="logsnr", generator=g)
    want = (want / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert (got == want).all()
    assert counter["calls"] == ddim.METHODS[method].calls(5) == len(digits_pipe.scheduler.timesteps)


def test_config_comes_from_the_pipeline_and_survives_save_and_load(digits_pipe, tmp_path):
    ours = Scheduler.from_config(digits_pipe.stock_config, method="unipc3", spacing="time-quadratic")
    assert ours.config.beta_schedule == digits_pipe.stock_config.beta_schedule
    assert torch.allclose(ours.alphas_cumprod.double(), ddim.load("digits").schedule.alphas_cumprod)
    digits_pipe.scheduler = ours
    digits_pipe.save_pretrained(tmp_path)
    again = diffusers.DiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(again.scheduler, Scheduler)
    assert (again.scheduler.config.method, again.scheduler.config.spacing) == ("unipc3", "time-quadratic")


def test_auto_counts_model_calls(digits_pipe):
    sch = Scheduler.from_config(digits_pipe.stock_config, method="auto", spacing="auto")
    sch.set_timesteps(10)
    choice = ddim.policy.resolve("auto", "auto", 10)
    assert sch.method == choice.method and len(sch.timesteps) == 10
    assert sch.levels == ddim.timesteps(1000, choice.steps, choice.spacing, sch.schedule.alphas_cumprod).tolist()


def test_ddim_on_diffusers_grid_matches_ddimscheduler(digits_pipe):
    """Method ddim on diffusers' grid ("leading" = our "uniform") gives DDIMScheduler's images (set_alpha_to_one=True);
    with set_alpha_to_one=False (Stable Diffusion's configs) diffusers' last step stops at alpha-bar of step 0, ours at 1."""
    unet = digits_pipe.unet
    results = {}
    for name, sch in {
        "ours": Scheduler.from_config(digits_pipe.stock_config, method="ddim"),
        "diffusers": diffusers.DDIMScheduler.from_config(digits_pipe.stock_config, set_alpha_to_one=True),
        "diffusers-sd": diffusers.DDIMScheduler.from_config(digits_pipe.stock_config, set_alpha_to_one=False),
    }.items():
        pipe = diffusers.DDIMPipeline(unet=unet, scheduler=sch)
        pipe.scheduler = sch  # DDIMPipeline converts any scheduler to DDIMScheduler on construction
        pipe.set_progress_bar_config(disable=True)
        results[name] = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="np").images
        assert type(pipe.scheduler) is type(sch)
    assert abs(results["ours"] - results["diffusers"]).max() < 1e-5
    assert abs(results["ours"] - results["diffusers-sd"]).max() > 1e-3


def test_eta_from_the_pipeline_call(digits_pipe):
    m = ddim.load("digits")
    pipe = diffusers.DDIMPipeline(unet=digits_pipe.unet, scheduler=digits_pipe.scheduler)
    pipe.scheduler = Scheduler.from_config(digits_pipe.stock_config)
    pipe.set_progress_bar_config(disable=True)
    got = pipe(batch_size=2, generator=torch.Generator().manual_seed(1), eta=0.5, num_inference_steps=6, output_type="np").images
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn((2, 1, 8, 8), generator=g)
    with torch.no_grad():
        want = ddim.sample(m.model, m.schedule, x_T, steps=6, eta=0.5, generator=g)
    assert (got == (want / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()).all()


@pytest.mark.parametrize("method", ["ddim", "unipc3", "heun", "dpm++2m-sde"])
def test_text_pipeline_equals_ddim_sample_under_guidance(text_pipe, method):
    text_pipe.scheduler = Scheduler.from_config(text_pipe.stock_config, method=method, spacing="trailing")
    sched = schedule_from_diffusers(dict(text_pipe.stock_config))
    x_T = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    got = text_pipe("a red cat", latents=x_T, num_inference_steps=4, guidance_scale=3.0, output_type="latent",
                    num_images_per_prompt=2, generator=torch.Generator().manual_seed(5)).images
    cond, uncond = text_pipe.encode_prompt("a red cat", "cpu", 2, True)
    with torch.no_grad():
        want = ddim.sample(GuidedUNet(text_pipe.unet, cond, uncond, 3.0), sched, x_T, steps=4, method=method, spacing="trailing",
                           generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["ddim", "unipc3", "heun"])
def test_img2img_starts_part_way(text_pipe, method):
    """strength 0.5 of 6 steps: the pipeline runs the last 3 levels, the model calls the method needs for them."""
    text_pipe.scheduler = Scheduler.from_config(text_pipe.stock_config, method=method)
    img2img = diffusers.StableDiffusionImg2ImgPipeline(**text_pipe.components)
    img2img.set_progress_bar_config(disable=True)
    image = torch.rand((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    counter, handle = _count_calls(img2img.unet)
    try:
        out = img2img("a cat", image=image, strength=0.5, num_inference_steps=6, guidance_scale=2.0, output_type="latent",
                      generator=torch.Generator().manual_seed(0)).images
    finally:
        handle.remove()
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert counter["calls"] == ddim.METHODS[method].calls(3)
    assert img2img.scheduler.step_index == len(img2img.scheduler.timesteps)


def test_scheduler_bad_input(digits_pipe):
    with pytest.raises(ValueError, match="unknown method 'euler'; choose one of auto, ddim"):
        Scheduler.from_config(digits_pipe.stock_config, method="euler")
    with pytest.raises(ValueError, match="unknown spacing"):
        Scheduler(spacing="cubic")
    with pytest.raises(ValueError, match="eta applies to method='ddim' only"):
        Scheduler(method="unipc3", eta=0.5)
    sch = Scheduler()
    with pytest.raises(ValueError, match=r"call set_timesteps\(num_inference_steps\) before step\(\)"):
        sch.step(torch.zeros(1, 2), 999, torch.zeros(1, 2))
    sch.set_timesteps(2)
    with pytest.raises(ValueError, match="timestep 7 is not on this scheduler's grid"):
        sch.step(torch.zeros(1, 2), 7, torch.zeros(1, 2))


# --------------------------------------------------------------------------- inversion
def test_invert_is_ddim_invert_on_the_pipelines_guided_model(text_pipe):
    text_pipe.scheduler = Scheduler.from_config(text_pipe.stock_config)
    image = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    got = invert(text_pipe, image, prompt=["a cat", "a dog"], steps=5, guidance_scale=4.0, method="fixed-point", negative_prompt="blur")
    cond, uncond = text_pipe.encode_prompt(["a cat", "a dog"], "cpu", 1, True, ["blur", "blur"])
    with torch.no_grad():
        latents = text_pipe.vae.encode(image * 2 - 1).latent_dist.mean * text_pipe.vae.config.scaling_factor
        want = ddim.invert(GuidedUNet(text_pipe.unet, cond, uncond, 4.0), schedule_from_diffusers(dict(text_pipe.stock_config)),
                           latents, steps=5, method="fixed-point")
    assert torch.equal(got, want)


def test_round_trip_through_the_pipeline_fixed_point_beats_plain(text_pipe):
    """invert, then pipe(latents=...) with our eta=0 DDIM scheduler: back to the image's latents, far closer with fixed-point."""
    text_pipe.scheduler = Scheduler.from_config(text_pipe.stock_config)
    image = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        target = text_pipe.vae.encode(image * 2 - 1).latent_dist.mean * text_pipe.vae.config.scaling_factor
    errors = {}
    for method in ("ddim", "fixed-point"):
        z = invert(text_pipe, image, prompt="a cat", steps=10, guidance_scale=3.0, method=method)
        back = text_pipe("a cat", latents=z, num_inference_steps=10, guidance_scale=3.0, output_type="latent", num_images_per_prompt=2).images
        errors[method] = (back - target).pow(2).mean().item()
    assert errors["fixed-point"] < errors["ddim"] / 5, errors


def test_invert_pixel_pipeline(digits_pipe, digits):
    """A pixel pipeline inverts the pixels; the round trip through our scheduler's own loop returns them."""
    m = ddim.load("digits")
    digits_pipe.scheduler = Scheduler.from_config(digits_pipe.stock_config)
    z = invert(digits_pipe, digits, steps=20, method="fixed-point")
    with torch.no_grad():
        assert torch.equal(z, ddim.invert(m.model, m.schedule, digits, steps=20, method="fixed-point"))
        x = z
        sch = digits_pipe.scheduler
        sch.set_timesteps(20)
        for t in sch.timesteps:
            x = sch.step(digits_pipe.unet(x, t).sample, t, x).prev_sample
    assert (x - digits).pow(2).mean() < 1e-4


def test_invert_bad_input(text_pipe, digits_pipe, digits):
    with pytest.raises(ValueError, match="the image is 3x15x15; this pipeline's VAE needs 3 channels and a height and width divisible by 2"):
        invert(text_pipe, torch.rand(1, 3, 15, 15), prompt="x")
    with pytest.raises(ValueError, match="got 3 entries in prompt for 2 images"):
        invert(text_pipe, torch.rand(2, 3, 16, 16), prompt=["a", "b", "c"])
    with pytest.raises(ValueError, match="has no unet"):
        invert(object(), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="has no text encoder: leave prompt"):
        invert(digits_pipe, digits, prompt="a digit")
    with pytest.raises(ValueError, match="the image is 1x16x16 but this pipeline's UNet takes 1x8x8"):
        invert(digits_pipe, torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="unknown inversion method"):
        invert(digits_pipe, digits, method="edict-typo")


def test_the_docs_editing_example_runs(capsys):
    """docs/pipelines.md's runnable block (invert under one prompt, regenerate under another) runs as written."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "pipelines.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "tiny_text_pipeline()" in b)
    exec(compile(block, "docs/pipelines.md", "exec"), {})
    assert "torch.Size([1, 3, 16, 16])" in capsys.readouterr().out


def test_invert_warns_when_the_pipeline_would_not_decode_it(digits_pipe, digits):
    digits_pipe.scheduler = Scheduler.from_config(digits_pipe.stock_config, method="unipc3")
    with pytest.warns(UserWarning, match="regenerate the image only under DDIM with eta = 0"):
        invert(digits_pipe, digits[:1], steps=3, method="ddim")


def test_a_pipelines_own_timesteps_argument_sets_the_grid(text_pipe):
    text_pipe.scheduler = Scheduler.from_config(text_pipe.stock_config, method="unipc")
    x_T = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    got = text_pipe("a cat", latents=x_T, timesteps=[901, 601, 301, 1], guidance_scale=1.0, output_type="latent").images
    assert text_pipe.scheduler.levels == [901, 601, 301, 1]
    cond = text_pipe.encode_prompt("a cat", "cpu", 1, False)[0]
    with torch.no_grad():
        want = ddim.sample(GuidedUNet(text_pipe.unet, cond), schedule_from_diffusers(dict(text_pipe.stock_config)), x_T,
                           timesteps=[901, 601, 301, 1], method="unipc")
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
