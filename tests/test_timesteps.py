import numpy as np
import pytest
import torch

import ddim
from ddim.timesteps import power_grid, timesteps


@pytest.mark.parametrize("spacing", ddim.SPACINGS)
def test_every_grid_has_exactly_S_distinct_decreasing_in_range_steps(spacing):
    T = 1000
    ab = ddim.NoiseSchedule.linear(T).alphas_cumprod  # used by logsnr / karras only
    for S in range(1, T + 1):
        tau = ddim.timesteps(T, S, spacing, ab)
        assert tau.dtype == torch.long and tau.shape == (S,), (spacing, S)
        assert tau.min() >= 0 and tau.max() <= T - 1, (spacing, S)
        assert (tau[1:] < tau[:-1]).all(), (spacing, S)
    assert ddim.timesteps(T, T, spacing, ab).tolist() == list(range(T - 1, -1, -1))


@pytest.mark.parametrize("spacing", ddim.SPACINGS)
def test_small_T(spacing):
    for T in range(1, 12):
        ab = ddim.NoiseSchedule.linear(T).alphas_cumprod
        for S in range(1, T + 1):
            tau = ddim.timesteps(T, S, spacing, ab)
            assert len(set(tau.tolist())) == S and tau.min() >= 0 and tau.max() < T


def test_uniform_is_the_ddim_paper_range():
    for S in (1, 10, 20, 30, 50, 100, 333, 1000):
        assert ddim.timesteps(1000, S, "uniform").tolist() == list(range(0, 1000, 1000 // S))[:S][::-1]
    # the paper's range() gives 31 steps for S = 30; we give exactly 30
    assert len(range(0, 1000, 1000 // 30)) == 31 and len(ddim.timesteps(1000, 30)) == 30


def test_quadratic_is_the_papers_grid_without_repeats():
    paper = lambda S: [int(s) for s in np.linspace(0, np.sqrt(800), S) ** 2]  # noqa: E731
    for S in (10, 20):  # no repeats there: identical to the official grid
        assert ddim.timesteps(1000, S, "quadratic").tolist() == paper(S)[::-1]
    assert len(set(paper(50))) == 49  # the official grid wastes a model call at S = 50
    tau = ddim.timesteps(1000, 50, "quadratic")
    assert len(set(tau.tolist())) == 50 and tau[0] == 800


def test_quadratic_open_is_the_papers_grid_of_S_plus_1_steps_less_its_call_at_0():
    for S in (1, 2, 4, 5, 6, 8, 20):  # no collisions: exactly the paper's curve
        assert ddim.timesteps(1000, S, "quadratic-open").tolist() == ddim.timesteps(1000, S + 1, "quadratic").tolist()[:-1]
    assert ddim.timesteps(1000, 5, "quadratic-open").tolist() == [800, 512, 288, 128, 32]
    for S in (50, 200, 801, 1000):  # crowded near t = 0 (and above 0.8 T past 801): still S distinct, decreasing steps
        tau = ddim.timesteps(1000, S, "quadratic-open").tolist()
        assert len(tau) == S and all(a > b for a, b in zip(tau, tau[1:])) and tau[-1] >= 0 and tau[0] <= 999


def test_trailing_starts_at_T_minus_1_and_has_S_steps_where_diffusers_has_S_plus_1():
    for S in (61, 103, 121):
        diffusers_style = np.round(np.arange(1000, 0, -1000 / S)).astype(np.int64) - 1
        assert len(diffusers_style) == S + 1 and diffusers_style[-1] == -1
        tau = ddim.timesteps(1000, S, "trailing")
        assert len(tau) == S and tau[0] == 999 and tau[-1] >= 0


def test_linspace_visits_both_ends():
    assert ddim.timesteps(1000, 5, "linspace").tolist() == [999, 749, 500, 250, 0]
    assert ddim.timesteps(1000, 1, "linspace").tolist() == [999]


@pytest.mark.parametrize(
    "args, message",
    [
        ((1000, 0, "uniform"), r"steps must be an integer in 1\.\.1000"),
        ((1000, 1001, "uniform"), r"steps must be an integer in 1\.\.1000"),
        ((1000, 2.5, "uniform"), r"steps must be an integer"),
        ((0, 1, "uniform"), "T \\(training steps\\) must be a positive integer"),
        ((1000, 10, "leading"), "unknown spacing 'leading'; choose one of uniform, quadratic, linspace, trailing"),
    ],
)
def test_bad_grid_requests(args, message):
    with pytest.raises(ValueError, match=message):
        ddim.timesteps(*args)


def test_explicit_grid_validation():
    from ddim.timesteps import check_timesteps

    assert check_timesteps([9, 5, 0], 10).tolist() == [9, 5, 0]
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_timesteps([0, 5, 9], 10)
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_timesteps([5, 5, 0], 10)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.9"):
        check_timesteps([10, 0], 10)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.9"):
        check_timesteps([3, -1], 10)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear"])  # (cosine: its capped last betas put lambda(T-1) far out)
def test_logsnr_and_karras_follow_the_noise_level(kind):
    sched = getattr(ddim.NoiseSchedule, kind)(1000)
    lam = (0.5 * (sched.alphas_cumprod.log() - (-sched.alphas_cumprod).log1p())).numpy()
    for S in (10, 20):  # (at larger S, integer steps near t = 0 are coarser than the even lambda spacing)
        lg = ddim.timesteps(1000, S, "logsnr", sched.alphas_cumprod).numpy()
        kr = ddim.timesteps(1000, S, "karras", sched.alphas_cumprod).numpy()
        assert lg[0] == kr[0] == 999 and lg[-1] == kr[-1] == 0
        gaps = np.diff(lam[lg])  # even in lambda, up to rounding to integer steps
        assert gaps.max() < 1.6 * np.median(gaps) and gaps.min() > 0
        s_tilde = np.exp(-lam[kr]) ** (1 / 7)  # Karras: even in sigma^(1/rho)
        steps = np.diff(s_tilde)
        assert np.abs(steps - np.median(steps)).max() < 0.35 * abs(np.median(steps))


def test_schedule_spacings_default_to_the_linear_schedule():
    lin = ddim.NoiseSchedule.linear(1000).alphas_cumprod
    for spacing in ("logsnr", "karras"):
        assert ddim.timesteps(1000, 10, spacing).tolist() == ddim.timesteps(1000, 10, spacing, lin).tolist()
    cos = ddim.NoiseSchedule.cosine(1000).alphas_cumprod
    assert ddim.timesteps(1000, 10, "logsnr", cos).tolist() != ddim.timesteps(1000, 10, "logsnr").tolist()
    with pytest.raises(ValueError, match=r"alphas_cumprod has shape \(10,\), expected \(1000,\)"):
        ddim.timesteps(1000, 10, "logsnr", torch.ones(10) * 0.5)


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("open_end", [False, True])
def test_power_grid_starts_at_T_minus_1_with_S_distinct_steps(power, open_end):
    for S in (1, 2, 5, 15, 50, 1000):
        g = power_grid(1000, S, power, open_end)
        assert len(g) == S and g[0] == 999 and all(a > b for a, b in zip(g, g[1:])) and g[-1] >= 0
        if S > 1 and not open_end:
            assert g[-1] == 0
    assert power_grid(1000, 5, 2.0) == timesteps(1000, 5, "time-quadratic").tolist()
    assert power_grid(1000, 5, 1.0) == timesteps(1000, 5, "linspace").tolist()
    assert power_grid(1000, 5, 1.0, open_end=True) == [999, 799, 599, 400, 200]  # last call at (T - 1) / S
    assert power_grid(1000, 5, 3.0, open_end=True)[-1] == round(999 / 125)


def test_quadratic_0_9_is_time_quadratic_from_0_9_T():
    for S in (2, 5, 8, 10, 50, 900, 1000):
        assert timesteps(1000, S, "quadratic-0.9").tolist() == power_grid(1000, S, 2.0, start=0.9)
    # 0.9 * 999 * (i / 7)^2, rounded: between time-quadratic's start at 999 and the DDIM paper's at 800
    assert timesteps(1000, 8, "quadratic-0.9").tolist() == [899, 661, 459, 294, 165, 73, 18, 0]
    assert timesteps(1000, 8, "time-quadratic")[0] == 999 and timesteps(1000, 8, "quadratic")[0] == 800
    assert timesteps(1000, 1, "quadratic-0.9").tolist() == [999]  # one step starts from the noisiest level
    assert power_grid(1000, 4, 1.0, start=0.5) == [500, 333, 166, 0]


def test_quadratic_top_is_the_curve_from_0_8_T_with_its_first_call_at_T_minus_1():
    for S in (2, 5, 11, 12, 50, 900, 1000):
        g = timesteps(1000, S, "quadratic-top").tolist()
        assert g == power_grid(1000, S, 2.0, start=0.8, top=True)
        assert g[0] == 999 and g[1:] == power_grid(1000, S, 2.0, start=0.8)[1:]  # only the first level moves
    # 0.8 * 999 * (i / 11)^2, rounded, below the first level: a long first step 999 -> 660
    assert timesteps(1000, 12, "quadratic-top").tolist() == [999, 660, 535, 423, 324, 238, 165, 106, 59, 26, 7, 0]
    assert timesteps(1000, 1, "quadratic-top").tolist() == [999]
    assert power_grid(10, 10, 2.0, start=0.8, top=True) == list(range(9, -1, -1))  # every step: still S distinct ones
    assert power_grid(1000, 5, 2.0, top=True) == power_grid(1000, 5, 2.0)  # from T - 1 already: nothing to move


def test_power_grid_bad_input():
    with pytest.raises(ValueError, match=r"steps must be an integer in 1\.\.1000 \(the model's training steps\), got 0"):
        power_grid(1000, 0, 2.0)
    with pytest.raises(ValueError, match="power must be positive, got -1"):
        power_grid(1000, 5, -1)
    with pytest.raises(ValueError, match=r"start must be a fraction of T - 1 in \(0, 1\], got 1\.5"):
        power_grid(1000, 5, 2.0, start=1.5)
