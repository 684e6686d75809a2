"""The exact-score oracles, and sampler behaviour measured on them (no training noise)."""

import math

import pytest
import torch

import ddim
from ddim.metrics import frechet_distance, gaussian_stats


def test_mixture_eps_is_minus_sigma_times_the_score(linear, mixture, gen):
    """eps(x_t) = -sqrt(1 - ab) grad log p_t(x_t), with p_t the mixture pushed through q(x_t | x_0)."""
    t = torch.tensor([30, 400, 900])
    x = torch.randn(3, 6, generator=gen(0), dtype=torch.float64).requires_grad_(True)
    ab = linear.alphas_cumprod[t][:, None]
    logp = 0
    comps = []
    for k in range(len(mixture.weights)):
        cov = ab[:, :, None] * mixture.covariances[k] + (1 - ab)[:, :, None] * torch.eye(6, dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(ab.sqrt() * mixture.means[k], covariance_matrix=cov)
        comps.append(torch.log(mixture.weights[k]) + dist.log_prob(x))
    logp = torch.logsumexp(torch.stack(comps), dim=0).sum()
    (score,) = torch.autograd.grad(logp, x)
    eps = mixture.denoiser(linear)(x.detach(), t)
    torch.testing.assert_close(eps, -(1 - ab).sqrt() * score, rtol=1e-8, atol=1e-10)


def test_mixture_moments_and_exact_samples(mixture, gen):
    x = mixture.sample(200_000, gen(0))
    mu, cov = gaussian_stats(x)
    torch.testing.assert_close(torch.from_numpy(mu), mixture.mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.from_numpy(cov), mixture.covariance, atol=0.01, rtol=0)
    assert mixture.mode_weight_error(x) < 0.01


def test_empirical_denoiser_reproduces_training_points(linear, gen):
    data = torch.randn(5, 4, generator=gen(1), dtype=torch.float64)
    out = ddim.sample(ddim.analytic.EmpiricalDenoiser(data, linear), linear, torch.randn(50, 4, generator=gen(2), dtype=torch.float64), steps=50)
    nearest = torch.cdist(out, data).min(1).values
    assert nearest.max() < 1e-6


def fd(mixture, x):
    mu, cov = gaussian_stats(x)
    return frechet_distance(mu, cov, mixture.mean.numpy(), mixture.covariance.numpy())


@pytest.fixture(scope="module")
def bench(linear, gen):
    m = ddim.analytic.GaussianMixture.random(dim=8, modes=4, seed=1)
    return m, m.denoiser(linear), torch.randn(4000, 8, generator=gen(42), dtype=torch.float64)


@pytest.mark.slow
def test_quality_improves_as_S_grows(linear, bench, gen):
    mixture, model, x_T = bench
    dist = [fd(mixture, ddim.sample(model, linear, x_T, steps=S)) for S in (5, 10, 20, 100)]
    assert dist[0] > dist[1] > dist[2] > dist[3]
    floor = fd(mixture, mixture.sample(len(x_T), gen(7)))
    assert dist[3] < 3 * floor + 1e-3  # S = 100 is at the finite-sample floor


def test_ddim_beats_eta_one_at_50_steps(linear, bench, gen):
    mixture, model, x_T = bench
    det = fd(mixture, ddim.sample(model, linear, x_T, steps=50, eta=0.0))
    sto = fd(mixture, ddim.sample(model, linear, x_T, steps=50, eta=1.0, generator=gen(3)))
    assert det < sto


@pytest.mark.slow
def test_inversion_then_sampling_reconstructs_at_first_order(linear, bench, gen):
    """Plain inversion's round-trip error falls as S grows, roughly as 1/S (first order)."""
    mixture, model, _ = bench
    x0 = mixture.sample(256, gen(5))
    errors = []
    for S in (25, 50, 100, 200):
        x_T = ddim.invert(model, linear, x0, steps=S)
        back = ddim.sample(model, linear, x_T, steps=S)
        errors.append((back - x0).pow(2).mean().sqrt().item())
    assert errors[0] > errors[1] > errors[2] > errors[3]
    order = math.log2(errors[-2] / errors[-1])
    assert 0.7 < order < 1.5, errors


@pytest.mark.slow
def test_inverted_latents_become_standard_normal_as_S_grows(linear, bench, gen):
    """Exact ODE inversion maps data to N(0, I); plain inversion's latents shrink (std 0.94 at S = 100)."""
    mixture, model, _ = bench
    x0 = mixture.sample(4000, gen(6))
    gaps = [abs(ddim.invert(model, linear, x0, steps=S).std().item() - 1) for S in (100, 300, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01, gaps


def test_fixed_point_inversion_reaches_machine_precision(linear, bench, gen):
    """The exact inversion's round trip through the ordinary eta = 0 sampler is exact up to float64 rounding."""
    mixture, model, _ = bench
    x0 = mixture.sample(128, gen(8))
    for S in (50, 200):
        x_T = ddim.invert(model, linear, x0, steps=S, method="fixed-point", iterations=40, tol=1e-14)
        back = ddim.sample(model, linear, x_T, steps=S)
        assert (back - x0).abs().max().item() < 1e-9, S


def test_fixed_point_beats_plain_inversion_at_4x_calls(linear, bench, gen):
    mixture, model, _ = bench
    x0 = mixture.sample(256, gen(9))
    calls = []
    counted = lambda x, t: (calls.append(1), model(x, t))[1]  # noqa: E731
    errors = {}
    for method, iterations in (("ddim", 0), ("fixed-point", 3)):
        calls.clear()
        x_T = ddim.invert(counted, linear, x0, steps=50, method=method, iterations=iterations)
        errors[method] = ((ddim.sample(model, linear, x_T, steps=50) - x0).pow(2).mean().sqrt().item(), len(calls))
    assert errors["ddim"][1] == 50 and errors["fixed-point"][1] == 200
    assert errors["fixed-point"][0] < errors["ddim"][0] / 10, errors  # measured: 27x lower
