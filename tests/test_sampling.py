import math

import pytest
import torch

import ddim
from ddim.steps import ddim_sigma, ddim_step, ddpm_posterior


# ------------------------------------------------------------------ the generalized step
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("t, t_prev", [(999, 899), (500, 20), (40, -1), (1, 0)])
def test_step_preserves_the_marginal_when_eps_is_the_true_noise(linear, eta, t, t_prev, gen):
    """With eps_hat = the true eps, x_prev ~ q(x_prev | x0) = N(sqrt(ab_prev) x0, 1 - ab_prev) (DDIM eq. 7).

    A noise term written sigma^2 * z (the seed document's typo) gives variance
    1 - ab_prev - sigma^2 + sigma^4 and fails this for eta > 0.
    """
    n = 400_000
    x0 = torch.full((n, 1), 0.8, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen(0), dtype=torch.float64)
    z = torch.randn(n, 1, generator=gen(1), dtype=torch.float64)
    ab_t, ab_prev = linear.alpha_bar(t), linear.alpha_bar(t_prev)
    sigma = ddim_sigma(ab_t, ab_prev, eta)
    x_prev = ddim_step(x0, eps, ab_prev, sigma, z)
    assert x_prev.mean().item() == pytest.approx(math.sqrt(ab_prev) * 0.8, abs=6 / math.sqrt(n))
    assert x_prev.var().item() == pytest.approx(1 - ab_prev, rel=0.01, abs=1e-12)


def test_sigma_squared_typo_would_be_caught(linear):
    """The variance check above has the power to reject the typo: its variance differs by > 5%."""
    ab_t, ab_prev = linear.alpha_bar(500), linear.alpha_bar(20)
    sigma = ddim_sigma(ab_t, ab_prev, 1.0)
    right, typo = 1 - ab_prev, 1 - ab_prev - sigma**2 + sigma**4
    assert abs(typo - right) / right > 0.05


def test_eta_one_full_chain_is_the_ddpm_posterior(linear):
    """eta = 1 with S = T: mean and variance of DDPM eqs. 6-7, written from betas alone, for every t."""
    betas = linear.betas.tolist()
    x0, x_t = torch.tensor([0.3], dtype=torch.float64), torch.tensor([-1.2], dtype=torch.float64)
    ab = 1.0
    for t in range(1000):
        ab_prev, ab = ab, ab * (1 - betas[t])
        beta, alpha = betas[t], 1 - betas[t]
        mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * x_t
        var = (1 - ab_prev) / (1 - ab) * beta
        eps = (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        sigma = ddim_sigma(ab, ab_prev, 1.0)
        step_mean = ddim_step(x0, eps, ab_prev, sigma)
        assert sigma**2 == pytest.approx(var, rel=1e-9, abs=1e-300)
        torch.testing.assert_close(step_mean, mean, rtol=1e-8, atol=1e-10)
        posterior_mean, posterior_var = ddpm_posterior(x_t, x0, ab, ab_prev)
        torch.testing.assert_close(posterior_mean, mean, rtol=1e-8, atol=1e-10)
        assert posterior_var == pytest.approx(var, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("spacing", ddim.SPACINGS)
def test_ddpm_method_equals_ddim_eta_one_on_any_grid(linear, mixture, spacing, gen):
    model = mixture.denoiser(linear)
    x_T = torch.randn(64, 6, generator=gen(5), dtype=torch.float64)
    a = ddim.sample(model, linear, x_T, steps=37, eta=1.0, spacing=spacing, generator=gen(9))
    b = ddim.sample(model, linear, x_T, steps=37, method="ddpm", spacing=spacing, generator=gen(9))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_sigma_hat_uses_the_larger_noise(linear):
    """sigma-hat = sqrt(1 - ab_t/ab_prev) exceeds DDPM's sigma at eta=1 on every step of a short grid."""
    tau = ddim.timesteps(1000, 10).tolist()
    for t, t_prev in zip(tau, tau[1:]):
        ab_t, ab_prev = linear.alpha_bar(t), linear.alpha_bar(t_prev)
        assert math.sqrt(1 - ab_t / ab_prev) > ddim_sigma(ab_t, ab_prev, 1.0)


# ------------------------------------------------------------------ sample(): contract details
def test_eta_zero_is_deterministic_and_lands_on_a_single_data_point(linear, gen):
    point = torch.tensor([[0.25, -0.5, 0.75]], dtype=torch.float64)
    model = ddim.analytic.EmpiricalDenoiser(point, linear)
    x_T = torch.randn(8, 3, generator=gen(0), dtype=torch.float64)
    a = ddim.sample(model, linear, x_T, steps=10)
    torch.testing.assert_close(a, ddim.sample(model, linear, x_T, steps=10), rtol=0, atol=0)
    torch.testing.assert_close(a, point.expand(8, 3), rtol=0, atol=1e-10)


@pytest.mark.parametrize("method, eta", [("ddim", 0.5), ("ddpm", 0.0), ("sigma-hat", 0.0)])
def test_generator_makes_noise_reproducible_and_per_image_generators_batch_independent(linear, method, eta, gen):
    model = ddim.analytic.EmpiricalDenoiser(torch.randn(5, 2, 3, generator=gen(2)), linear)
    x_T = torch.randn(4, 2, 3, generator=gen(0))
    run = lambda g, x=x_T: ddim.sample(model, linear, x, steps=8, eta=eta, method=method, generator=g)  # noqa: E731
    torch.testing.assert_close(run(gen(1)), run(gen(1)), rtol=0, atol=0)
    assert not torch.equal(run(gen(1)), run(gen(2)))
    whole = run([gen(10 + i) for i in range(4)])
    halves = torch.cat([run([gen(10), gen(11)], x_T[:2]), run([gen(12), gen(13)], x_T[2:])])
    torch.testing.assert_close(whole, halves, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="got 3 generators for a batch of 4"):
        run([gen(0)] * 3)


@pytest.mark.parametrize("shape", [(3, 2), (3, 1, 4, 4), (3, 2, 2, 2, 2)])
@pytest.mark.parametrize("method", list(ddim.METHODS))
def test_any_trailing_shape_keeps_dtype_and_device(linear, shape, method, gen):
    model = ddim.analytic.EmpiricalDenoiser(torch.randn(4, *shape[1:], generator=gen(1)), linear)
    x_T = torch.randn(*shape, generator=gen(0))
    out = ddim.sample(model, linear, x_T, steps=5, method=method, generator=gen(3))
    assert out.shape == x_T.shape and out.dtype == x_T.dtype and out.device == x_T.device
    assert torch.isfinite(out).all()


def test_accepts_a_diffusers_unet_and_calls_back_every_step(linear):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).eval()
    seen = []
    with torch.no_grad():
        out = ddim.sample(unet, linear, torch.randn(2, 1, 8, 8), steps=4, callback=lambda i, t, x, x0: seen.append((i, t)))
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    assert seen == [(0, 750), (1, 500), (2, 250), (3, 0)]


def test_clipping_is_off_by_default_and_rederives_eps(linear, gen):
    """A far-away data point: unclipped DDIM lands on it; clip_x0=1 keeps every x0_hat in [-1, 1]."""
    point = torch.tensor([[3.0, -2.0]], dtype=torch.float64)
    model = ddim.analytic.EmpiricalDenoiser(point, linear)
    x_T = torch.randn(4, 2, generator=gen(0), dtype=torch.float64)
    torch.testing.assert_close(ddim.sample(model, linear, x_T, steps=20), point.expand(4, 2), rtol=0, atol=1e-9)
    seen = []
    clipped = ddim.sample(model, linear, x_T, steps=20, clip_x0=1.0, callback=lambda i, t, x, x0: seen.append(x0))
    assert all(x0.abs().max() <= 1.0 for x0 in seen)
    torch.testing.assert_close(clipped, torch.tensor([[1.0, -1.0]], dtype=torch.float64).expand(4, 2))
    dyn = ddim.sample(model, linear, x_T, steps=20, dynamic_threshold=0.9)
    assert dyn.abs().max() <= 1.0 + 1e-9


def test_zero_terminal_snr_needs_v_or_x0_prediction(gen):
    sched = ddim.NoiseSchedule.linear(1000).rescale_zero_terminal_snr()
    data = torch.tensor([[0.5, -0.5]], dtype=torch.float64)
    x_T = torch.randn(3, 2, generator=gen(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        ddim.sample(ddim.analytic.EmpiricalDenoiser(data, sched), sched, x_T, steps=10, spacing="trailing")
    out = ddim.sample(ddim.analytic.EmpiricalDenoiser(data, sched, "v"), sched, x_T, steps=10, spacing="trailing", prediction="v")
    torch.testing.assert_close(out, data.expand(3, 2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_prediction_types_give_the_same_samples(linear, mixture, prediction, eta, gen):
    x_T = torch.randn(32, 6, generator=gen(0), dtype=torch.float64)
    ref = ddim.sample(mixture.denoiser(linear), linear, x_T, steps=20, eta=eta, generator=gen(1))
    out = ddim.sample(mixture.denoiser(linear, prediction), linear, x_T, steps=20, eta=eta, generator=gen(1), prediction=prediction)
    torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-7)


def test_explicit_timesteps_override_steps(linear, mixture, gen):
    model = mixture.denoiser(linear)
    x_T = torch.randn(4, 6, generator=gen(0), dtype=torch.float64)
    a = ddim.sample(model, linear, x_T, timesteps=ddim.timesteps(1000, 12, "trailing"))
    torch.testing.assert_close(a, ddim.sample(model, linear, x_T, steps=12, spacing="trailing"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="euler"), r"unknown method 'euler'; choose one of ddim, ddpm, sigma-hat, dpm\+\+2m"),
        (dict(eta=-0.1), r"eta must lie in \[0, 1\]"),
        (dict(eta=1.5), r"eta must lie in \[0, 1\]"),
        (dict(eta=0.5, method="ddpm"), "eta applies to method='ddim' only"),
        (dict(prediction="noise"), "unknown prediction type 'noise'"),
        (dict(steps=1001), r"steps must be an integer in 1\.\.1000"),
        (dict(spacing="edm"), "unknown spacing 'edm'"),
        (dict(clip_x0=0), "clip_x0 must be a positive bound"),
        (dict(dynamic_threshold=1.5), r"dynamic_threshold is a quantile in \(0, 1\)"),
    ],
)
def test_bad_arguments_say_what_to_do(linear, kwargs, message):
    model = ddim.analytic.EmpiricalDenoiser(torch.zeros(1, 2), linear)
    with pytest.raises(ValueError, match=message):
        ddim.sample(model, linear, torch.randn(2, 2), **kwargs)


def test_model_with_wrong_output_shape(linear):
    with pytest.raises(ValueError, match=r"shaped like its input \(2, 3\), got \(2, 1\)"):
        ddim.sample(lambda x, t: x[:, :1], linear, torch.randn(2, 3), steps=2)


def test_invert_bad_arguments(linear):
    with pytest.raises(ValueError, match="unknown inversion method 'exact'; choose one of ddim, fixed-point"):
        ddim.invert(lambda x, t: x, linear, torch.zeros(1, 2), method="exact")
    with pytest.raises(ValueError, match="iterations must be a non-negative integer, got -1"):
        ddim.invert(lambda x, t: x, linear, torch.zeros(1, 2), method="fixed-point", iterations=-1)


@pytest.mark.parametrize("x_T, message", [
    ([[0.0, 1.0]], r"x_T must be a torch.Tensor shaped \[B, ...\], got list"),
    (torch.zeros(2, 2, dtype=torch.long), r"x_T must be a floating-point tensor .* got torch.int64"),
    (torch.zeros(2), r"x_T must be batched, \[B, ...\] with B >= 1 \(e.g. x\[None\] for one sample\), got shape \(2,\)"),
    (torch.full((1, 2), float("nan")), "x_T contains NaN or inf"),
])
def test_the_api_says_what_x_T_to_pass(linear, x_T, message):
    model = ddim.analytic.EmpiricalDenoiser(torch.zeros(1, 2), linear)
    with pytest.raises(ValueError, match=message):
        ddim.sample(model, linear, x_T, steps=3)
    if isinstance(x_T, torch.Tensor) and x_T.is_floating_point() and x_T.dim() == 2:
        with pytest.raises(ValueError, match=message.replace("x_T", "x0")):
            ddim.invert(model, linear, x_T, steps=3)


def test_the_api_checks_generator_and_steps_against_timesteps(linear, gen):
    model = ddim.analytic.EmpiricalDenoiser(torch.zeros(1, 2), linear)
    x_T = torch.randn(2, 2, generator=gen(0))
    with pytest.raises(ValueError, match=r"generator must be None, a torch.Generator, or a list of them \(one per image\), got int; "
                                         r"for a seed pass torch.Generator\(\).manual_seed\(seed\)"):
        ddim.sample(model, linear, x_T, steps=3, eta=1.0, generator=0)
    with pytest.raises(ValueError, match="steps=10 disagrees with the 3 given timesteps; pass one of them"):
        ddim.sample(model, linear, x_T, steps=10, timesteps=[900, 500, 0])
    torch.testing.assert_close(ddim.sample(model, linear, x_T, steps=3, timesteps=[900, 500, 0]), ddim.sample(model, linear, x_T, timesteps=[900, 500, 0]))


def test_a_model_that_does_not_fit_x_T_is_one_clear_error(linear):
    net = torch.nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"the model failed on x of shape \(2, 3\), torch.float32, on cpu \(.*\); give x_T batched like the model's input"):
        ddim.sample(lambda x, t: net(x), linear, torch.zeros(2, 3), steps=2)


def test_non_finite_model_output_is_refused(linear):
    with pytest.raises(ValueError, match=r"the model returned NaN or inf at step t=980: its weights may be damaged"):
        ddim.sample(lambda x, t: x * float("nan"), linear, torch.zeros(2, 3), steps=50)
