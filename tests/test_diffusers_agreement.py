"""Step-for-step agreement with diffusers' schedulers, the peer implementation, where their grids are right.

Deliberate differences (documented in docs/design-notes.md): our "uniform" grid equals diffusers'
"leading" spacing with steps_offset=0 and set_alpha_to_one=True; diffusers' DDPMScheduler adds
noise at a final step with t > 0 (trailing grids) while we never add noise on the step that
lands on x_0, so the DDPM comparison uses grids that end at t = 0.
"""

import pytest
import torch

import ddim

diffusers = pytest.importorskip("diffusers")

CONFIG = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False)


def ours(model, sched, x_T, **kwargs):
    traj = []
    ddim.sample(model, sched, x_T, callback=lambda i, t, x, x0: traj.append(x.clone()), **kwargs)
    return traj


@pytest.fixture(scope="module")
def setup(linear, gen):
    mixture = ddim.analytic.GaussianMixture.random(dim=16, modes=5, seed=11)
    model = mixture.denoiser(linear)
    return model, torch.randn(64, 16, generator=gen(0))


@pytest.mark.parametrize("steps", [10, 30, 50])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_ddimscheduler(linear, setup, steps, eta, gen):
    model, x_T = setup
    sched = diffusers.DDIMScheduler(**CONFIG, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == ddim.timesteps(1000, steps, "uniform").tolist()
    g, x, theirs = gen(7), x_T.clone(), []
    for i, t in enumerate(sched.timesteps):
        noise = torch.randn(x.shape, generator=g) if eta > 0 and i + 1 < steps else torch.zeros_like(x)
        x = sched.step(model(x, t.expand(len(x))), t, x, eta=eta, variance_noise=noise).prev_sample
        theirs.append(x)
    mine = ours(model, linear, x_T, steps=steps, eta=eta, generator=gen(7))
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [1000, 50])
@pytest.mark.parametrize("variance_type, method", [("fixed_small", "ddpm"), ("fixed_large", "sigma-hat")])
def test_ddpm_and_sigma_hat_match_ddpmscheduler(linear, setup, steps, variance_type, method, gen):
    model, x_T = setup
    sched = diffusers.DDPMScheduler(**CONFIG, variance_type=variance_type, timestep_spacing="leading")
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == ddim.timesteps(1000, steps, "uniform").tolist()
    g, x, theirs = gen(3), x_T.clone(), []
    for t in sched.timesteps:
        x = sched.step(model(x, t.expand(len(x))), t, x, generator=g).prev_sample
        theirs.append(x)
    mine = ours(model, linear, x_T, steps=steps, method=method, generator=gen(3))
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-4)


def test_grids_agree_with_diffusers_where_theirs_are_right():
    import numpy as np

    for S in range(2, 1001):
        lin = np.linspace(0, 999, S).round()[::-1].astype(np.int64)
        assert ddim.timesteps(1000, S, "linspace").tolist() == lin.tolist(), S
        trail = np.round(np.arange(1000, 0, -1000 / S)).astype(np.int64) - 1
        if len(trail) == S:  # equal except where T (S - i) / S is an exact tie (k + 1/2) that float rounding breaks
            mine = ddim.timesteps(1000, S, "trailing").numpy()
            tie = (2 * 1000 * (S - np.arange(S))) % (2 * S) == S
            assert (mine == trail)[~tie].all() and (abs(mine - trail) <= 1).all(), S


@pytest.mark.parametrize("steps", [10, 50])
def test_invert_matches_ddiminversescheduler(linear, setup, steps, gen):
    """For eps-prediction our plain inversion is diffusers' DDIMInverseScheduler step for step."""
    model, _ = setup
    x0 = ddim.analytic.GaussianMixture.random(dim=16, modes=5, seed=11).sample(64, gen(1)).float()
    sched = diffusers.DDIMInverseScheduler(**CONFIG, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == ddim.timesteps(1000, steps).flip(0).tolist()
    x, theirs = x0.clone(), []
    for t in sched.timesteps:
        x = sched.step(model(x, t.expand(len(x))), t, x).prev_sample
        theirs.append(x)
    mine = []
    ddim.invert(model, linear, x0, steps=steps, callback=lambda i, t, x, x_from: mine.append(x.clone()))
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [3, 5, 10, 20])
@pytest.mark.parametrize("spacing", ["logsnr", "quadratic"])
def test_dpmpp_2m_is_the_authors_dpm_solver_pp_2m(linear, setup, steps, spacing):
    """dpm++2m equals DPMSolverMultistepScheduler (order 2, dpmsolver++, to sigma 0) on the same grid, up to
    diffusers' float32 tables (measured 2e-5; k-diffusion's sample_dpmpp_2m, float64 throughout: 2e-13)."""
    model, x_T = setup
    tau = ddim.timesteps(1000, steps, spacing, linear.alphas_cumprod)
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=2,
                                                  algorithm_type="dpmsolver++", final_sigmas_type="zero")
    sched.set_timesteps(timesteps=tau.tolist())
    x = x_T.clone().double()
    for t in sched.timesteps:
        x = sched.step(model(x, torch.as_tensor(t).long().expand(len(x))), t, x).prev_sample
    torch.testing.assert_close(ddim.sample(model, linear, x_T.double(), method="dpm++2m", timesteps=tau), x, rtol=0, atol=1e-4)


@pytest.mark.parametrize("steps", [3, 5, 10, 20])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [2, 3])
def test_unipc_bh_is_the_authors_unipc(linear, setup, steps, variant, order):
    """unipc-bh* / unipc3-bh* equal UniPCMultistepScheduler (order 2 / 3, predict_x0, lower-order final, to sigma 0) step
    for step on its default grid, up to diffusers' float32 tables. Its last bh1 step returns NaN (B(h) = -inf times a
    zero higher-order term on the step to sigma = 0); ours returns the data prediction there, as its bh2 does."""
    model, x_T = setup
    sched = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
                                              solver_type=variant, final_sigmas_type="zero")
    sched.set_timesteps(steps)
    theirs, x = [], x_T.clone().double()
    for t in sched.timesteps:
        x = sched.step(model(x, torch.as_tensor(t).long().expand(len(x))), t, x).prev_sample
        theirs.append(x)
    name = f"unipc-{variant}" if order == 2 else f"unipc3-{variant}"
    mine = ours(model, linear, x_T.double(), method=name, timesteps=sched.timesteps.tolist())
    assert len(mine) == len(theirs) == steps
    for a, b in zip(mine[:-1], theirs[:-1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    if variant == "bh2":
        torch.testing.assert_close(mine[-1], theirs[-1], rtol=0, atol=1e-4)
    else:
        assert torch.isnan(theirs[-1]).all() and torch.isfinite(mine[-1]).all()
