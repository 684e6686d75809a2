import math

import pytest
import torch

import ddim


def test_linear_matches_ddpm_paper(linear):
    assert linear.alphas_cumprod.dtype == torch.float64 and linear.alphas_cumprod.shape == (1000,)
    assert linear.betas[0].item() == pytest.approx(1e-4) and linear.betas[-1].item() == pytest.approx(0.02)
    # alpha-bar is the running product of (1 - beta), DDPM eq. 4
    expected = 1.0
    for t in (0, 1, 499, 999):
        expected = math.prod(1 - b for b in linear.betas[: t + 1].tolist())
        assert linear.alphas_cumprod[t].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear", "sigmoid"])
def test_constructors_give_valid_decreasing_schedules(name):
    s = getattr(ddim.NoiseSchedule, name)(1000)
    ab = s.alphas_cumprod
    assert len(s) == 1000 and (ab[1:] < ab[:-1]).all() and 0 < ab[-1] < ab[0] < 1
    assert (s.betas > 0).all() and (s.betas <= 1).all()


def test_cosine_follows_nichol_dhariwal_and_caps_beta():
    s = ddim.NoiseSchedule.cosine(1000)
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alphas_cumprod[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)
    assert s.betas.max().item() == pytest.approx(0.999)


def test_zero_terminal_snr_rescale():
    s = ddim.NoiseSchedule.scaled_linear(1000).rescale_zero_terminal_snr()
    assert s.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-20)
    assert s.alphas_cumprod[0].item() == pytest.approx(ddim.NoiseSchedule.scaled_linear(1000).alphas_cumprod[0].item())
    assert s.betas[-1].item() == pytest.approx(1.0)


def test_from_betas_round_trip(linear):
    again = ddim.NoiseSchedule.from_alphas_cumprod(linear.alphas_cumprod)
    torch.testing.assert_close(again.betas, linear.betas, rtol=1e-9, atol=1e-12)
    assert ddim.NoiseSchedule.from_betas([0.1, 0.2]).alphas_cumprod.tolist() == pytest.approx([0.9, 0.72])


def test_forward_marginal_moments(linear, gen):
    """x_t = sqrt(ab) x0 + sqrt(1-ab) eps has mean sqrt(ab) x0 and variance 1 - ab (DDIM eq. 4)."""
    x0 = torch.tensor([0.7, -1.0, 0.0], dtype=torch.float64)
    n = 200_000
    for t in (0, 10, 300, 999):
        noise = torch.randn(n, 3, generator=gen(t), dtype=torch.float64)
        xt = linear.add_noise(x0.expand(n, 3), torch.full((n,), t), noise)
        ab = linear.alphas_cumprod[t]
        torch.testing.assert_close(xt.mean(0), ab.sqrt() * x0, atol=5 * (1 / n) ** 0.5, rtol=0)
        torch.testing.assert_close(xt.var(0), (1 - ab).expand(3), atol=0, rtol=0.02)


def test_snr_and_log_snr(linear):
    ab = linear.alphas_cumprod
    torch.testing.assert_close(linear.snr(), ab / (1 - ab))
    torch.testing.assert_close(linear.log_snr(torch.tensor([5, 500])), torch.log(linear.snr(torch.tensor([5, 500]))))
    assert (linear.log_snr()[1:] < linear.log_snr()[:-1]).all()


@pytest.mark.parametrize(
    "betas, message",
    [
        ([], "betas is empty"),
        ([0.1, float("nan")], "NaN or inf"),
        ([0.0, 0.1], r"every beta must lie in \(0, 1\]"),
        ([0.1, 1.5], r"every beta must lie in \(0, 1\]"),
        ([1.0, 0.5], "only at the last step"),
    ],
)
def test_bad_betas_are_refused(betas, message):
    with pytest.raises(ValueError, match=message):
        ddim.NoiseSchedule.from_betas(betas)


def test_bad_T_and_timesteps(linear):
    with pytest.raises(ValueError, match="positive integer"):
        ddim.NoiseSchedule.linear(0)
    with pytest.raises(ValueError, match=r"timesteps must lie in 0\.\.999"):
        linear.add_noise(torch.zeros(2, 3), torch.tensor([0, 1000]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"outside -1\.\.999"):
        linear.alpha_bar(1000)
    assert linear.alpha_bar(-1) == 1.0


@pytest.mark.parametrize(
    "schedule",
    [
        ddim.NoiseSchedule.linear(1000),
        ddim.NoiseSchedule.cosine(500),
        ddim.NoiseSchedule.scaled_linear(1000).rescale_zero_terminal_snr(),
        ddim.NoiseSchedule.sigmoid(100, width=4.0),
        ddim.NoiseSchedule.from_betas([0.1, 0.3, 0.5]),
    ],
)
def test_config_round_trip(schedule):
    import json

    again = ddim.NoiseSchedule.from_config(json.loads(json.dumps(schedule.config)))
    torch.testing.assert_close(again.alphas_cumprod, schedule.alphas_cumprod, rtol=1e-12, atol=1e-15)


def test_lambda_has_one_convention_everywhere(linear):
    """lambda = log(alpha / sigma) = log-SNR / 2 (schedule.lambda_of): the table, floats and arrays agree,
    the clean end is +inf, and the logsnr grid is even in it."""
    import math

    import numpy as np

    from ddim.schedule import lambda_of

    torch.testing.assert_close(linear.lambdas(), linear.log_snr() / 2, rtol=0, atol=0)
    ab = linear.alphas_cumprod
    assert lambda_of(float(ab[10])) == pytest.approx(float(linear.lambdas(10)), rel=1e-15)
    np.testing.assert_allclose(lambda_of(ab.numpy()), linear.lambdas().numpy(), rtol=1e-15)
    assert lambda_of(1.0) == math.inf
    grid = ddim.timesteps(1000, 12, "logsnr", ab)
    gaps = np.diff(linear.lambdas(grid).numpy())
    assert gaps.std() < 0.05 * gaps.mean()  # even in lambda up to rounding to integer steps
