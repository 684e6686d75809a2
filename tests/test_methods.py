"""The method registry, the auto policy and the generation helper: one home each, and each tells the truth."""

import dataclasses
import math

import pytest
import torch

import ddim
from ddim.methods import METHODS, Method
from ddim.policy import RECOMMENDED, recommended, resolve
from ddim.sampling import CallCounter
from ddim.steps import DDIMStep


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_the_registry_states_what_sampling_costs(linear, mixture, gen, name, steps):
    """Method.calls(steps) is the number of model calls sample() makes, counted."""
    counter = CallCounter(mixture.denoiser(linear))
    ddim.sample(counter, linear, torch.randn(4, 6, generator=gen(0), dtype=torch.float64), steps=steps, method=name, generator=gen(1))
    assert counter.calls == METHODS[name].calls(steps)
    assert METHODS[name].steps_for(METHODS[name].calls(steps)) == steps


@pytest.mark.parametrize("name", list(METHODS))
def test_the_registry_says_which_methods_draw_noise(linear, mixture, gen, name):
    x_T = torch.randn(4, 6, generator=gen(0), dtype=torch.float64)
    run = lambda seed: ddim.sample(mixture.denoiser(linear), linear, x_T, steps=6, method=name, generator=gen(seed))  # noqa: E731
    assert (not torch.equal(run(1), run(2))) == METHODS[name].is_stochastic()
    assert METHODS["ddim"].is_stochastic(eta=0.5) and not METHODS["ddim"].is_stochastic()


def test_a_new_method_is_one_registry_entry(linear, mixture, gen, monkeypatch, tmp_path, capsys):
    """Adding a method = its stepper + one entry: sample(), the grid fitter's checks and the CLI take it with no other edit."""
    from ddim.cli import build_parser

    monkeypatch.setitem(METHODS, "ddim-copy", Method("ddim-copy", "DDIM under another name (test)", DDIMStep))
    x_T = torch.randn(4, 6, generator=gen(0), dtype=torch.float64)
    model = mixture.denoiser(linear)
    torch.testing.assert_close(ddim.sample(model, linear, x_T, steps=5, method="ddim-copy"), ddim.sample(model, linear, x_T, steps=5), rtol=0, atol=0)
    args = build_parser().parse_args(["sample", "--method", "ddim-copy"])
    assert args.method == "ddim-copy"


def test_unknown_method_lists_the_registry(linear):
    with pytest.raises(ValueError, match=r"unknown method 'fast'; choose one of ddim, ddpm, sigma-hat, dpm\+\+2m"):
        ddim.sample(lambda x, t: x, linear, torch.zeros(1, 2), method="fast")


# --------------------------------------------------------------------------- the auto policy
@pytest.mark.parametrize("calls", [1, 3, 5, 6, 7, 8, 10, 12, 50])
def test_auto_in_the_library_is_the_measured_table(linear, mixture, gen, calls):
    model = mixture.denoiser(linear)
    x_T = torch.randn(8, 6, generator=gen(0), dtype=torch.float64)
    method, spacing = recommended(calls)
    counter = CallCounter(model)
    auto = ddim.sample(counter, linear, x_T, steps=calls, method="auto", spacing="auto")
    torch.testing.assert_close(auto, ddim.sample(model, linear, x_T, steps=calls, method=method, spacing=spacing), rtol=0, atol=0)
    assert counter.calls == calls  # steps counts model calls under auto


def test_auto_resolution_rules(tmp_path):
    assert resolve("auto", "auto", 10) == resolve("auto", "auto", 10, folder=tmp_path)  # a folder without grids.json: the table
    assert (resolve("auto", "auto", 10).method, resolve("auto", "auto", 20).method) == ("ipndm3", RECOMMENDED[-1][1])
    c = resolve("auto", "auto", 20, eta=0.5)
    assert (c.method, c.spacing) == ("ddim", "uniform")  # eta applies to ddim only
    assert resolve("auto", "karras", 20).spacing == "karras"  # an explicit spacing is kept
    c = resolve("heun", "auto", 20)
    assert (c.method, c.spacing, c.steps) == ("heun", "uniform", 20)  # an explicit method keeps its steps; the paper's grid
    with pytest.raises(ValueError, match="spacing 'optimized' reads a grid fitted to a model folder"):
        resolve("unipc", "optimized", 5)


def test_auto_uses_a_grid_fitted_to_the_model_folder_for_the_method_it_picks(tmp_path):
    from ddim.optimized_grid import save_grid

    method, _ = recommended(5)
    save_grid(tmp_path, method, 5, {"grid": [999, 600, 300, 100, 0]})
    save_grid(tmp_path, "ddim", 6, {"grid": [999, 700, 500, 300, 100, 0]})  # not the method auto picks at 6 calls
    choice = resolve("auto", "auto", 5, folder=tmp_path)
    assert (choice.method, choice.spacing, choice.timesteps) == (method, "optimized", (999, 600, 300, 100, 0))
    assert resolve("auto", "auto", 6, folder=tmp_path).spacing == recommended(6)[1]
    assert resolve("auto", "quadratic", 5, folder=tmp_path).spacing == "quadratic"  # an explicit spacing wins


# --------------------------------------------------------------------------- generation
def test_generate_does_not_depend_on_the_batch_size_and_counts_calls():
    m = ddim.load("digits")
    a = ddim.generate(m, 5, seed=3, batch_size=2, steps=4, method="ddim", spacing="uniform")
    b = ddim.generate(m, 5, seed=3, batch_size=5, steps=4, method="ddim", spacing="uniform")
    torch.testing.assert_close(a.images, b.images, rtol=1e-5, atol=1e-5)
    assert a.seeds == [3, 4, 5, 6, 7] and a.calls == 4 and a.choice.method == "ddim"
    one = ddim.generate(m, 1, seeds=[5], steps=4, method="ddim", spacing="uniform")
    torch.testing.assert_close(one.images[0], a.images[2], rtol=1e-5, atol=1e-5)  # image i depends on its own seed only


def test_generate_labels_and_guidance_of_a_conditional_model():
    m = ddim.load("digits-cond")
    guided = ddim.generate(m, 2, steps=3, guidance=2.0, class_label=4)
    assert guided.calls == 2 * guided.choice.steps  # the conditional and unconditional halves of every call
    for kwargs, message in [
        (dict(guidance=math.nan), r"the guidance scale must be a finite number >= 0 \(1 = no guidance\), got nan"),
        (dict(class_label=10), r"the class label must lie in 0..9, got 10"),
    ]:
        with pytest.raises(ValueError, match=message):
            ddim.generate(m, 2, steps=3, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "the number of images must be at least 1, got 0"),
    (dict(n=2, seeds=[1]), "got 1 seeds for 2 images"),
    (dict(n=1, seed=2**64), r"seeds must lie in -2\^63..2\^64-1"),
    (dict(n=1, batch_size=0), "the batch size must be at least 1, got 0"),
    (dict(n=1, steps=0), r"steps must be a positive integer, got 0"),
    (dict(n=1, steps=1001), r"steps must be an integer in 1..1000 \(the model.s training steps\), got 1001"),
    (dict(n=1, eta=float("nan")), r"eta must lie in \[0, 1\]"),
])
def test_generate_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ddim.generate(ddim.load("digits"), **kwargs)


def test_methods_are_frozen_records():
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["ddim"].order = 2
    assert str(METHODS["ddim"]).startswith("generalized DDIM step")
