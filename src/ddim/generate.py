"""Generating images from a loaded model: per-image seeds, batching, labels and guidance, timing.

The one home of generation for the CLI (``ddim sample``), ``ddim compare`` and training's sample grids:
image i starts from (and draws its per-step noise from) its own generator seeded ``seeds[i]``, so
results do not depend on the batch size or on which other images are drawn with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .models import LoadedModel
from .policy import Choice, resolve
from .sampling import CallCounter, check_eta, check_steps, sample

__all__ = ["generate", "Generated", "plan", "noise", "image_seeds", "check_request"]


@dataclass
class Generated:
    """Images in [-1, 1] (float32 on the CPU; a few pixels may lie outside before clipping) and what they cost."""

    images: Tensor
    choice: Choice          # the method, spacing and steps that ran (``auto`` resolved)
    seeds: list[int]
    seconds: float          # wall time of sampling, all images
    calls: float            # network evaluations per image, counted (guidance > 1 evaluates twice per call)
    eta: float = 0.0


def noise(shape: Sequence[int], seeds: Sequence[int]) -> tuple[Tensor, list[torch.Generator]]:
    """x_T for per-image seeds (one CPU generator each, left positioned for the image's step noise)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in gens]), gens


def image_seeds(n: int, seed: int = 0, seeds: Sequence[int] | None = None) -> list[int]:
    """The per-image seeds: ``seeds`` as given, or seed, seed + 1, ...; checked against what a torch generator takes."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of images must be at least 1, got {n!r}")
    seeds = [seed + i for i in range(n)] if seeds is None else [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} images")
    bad = [s for s in seeds if not -(2**63) <= s < 2**64]
    if bad:
        raise ValueError(f"seeds must lie in -2^63..2^64-1 (what a torch generator takes), got {bad[0]}")
    return seeds


def check_request(n: int, *, seed: int = 0, seeds: Sequence[int] | None = None, batch_size: int = 256, steps: int = 50, eta: float = 0.0,
                  method: str = "auto", spacing: str = "auto", guidance: float | None = None) -> list[int]:
    """The checks that need no model (run before loading one, so a typo answers at once); returns the per-image seeds."""
    from .methods import get_method
    from .timesteps import SPACINGS

    seeds = image_seeds(n, seed, seeds)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if method != "auto":
        get_method(method)
    if spacing not in ("auto", "optimized", *SPACINGS):
        raise ValueError(f"unknown spacing {spacing!r}; choose one of auto, optimized, {', '.join(SPACINGS)}")
    check_eta(eta, method)
    if guidance is not None:
        _check_guidance_scale(guidance)
    return seeds


def _check_guidance_scale(guidance: float) -> None:
    if not (math.isfinite(guidance) and guidance >= 0):
        raise ValueError(f"the guidance scale must be a finite number >= 0 (1 = no guidance), got {guidance}")


def plan(m: LoadedModel, *, steps: int = 50, eta: float = 0.0, method: str = "auto", spacing: str = "auto",
         class_label: int | None = None, guidance: float | None = None) -> Choice:
    """Validate the sampler settings against the model and resolve 'auto' / 'optimized' (nothing runs)."""
    eta = check_eta(eta, method)
    steps = check_steps(steps, len(m.schedule))
    if class_label is not None:
        if not m.num_classes:
            raise ValueError("a class label needs a class-conditional model; this one has no classes")
        if not 0 <= class_label < m.num_classes:
            raise ValueError(f"the class label must lie in 0..{m.num_classes - 1}, got {class_label}")
    if guidance is not None:
        if not m.num_classes:
            raise ValueError("guidance needs a class-conditional model (ddim train --conditional); this one has no classes")
        _check_guidance_scale(guidance)
        if guidance != 1 and m.null_class is None:
            raise ValueError("guidance needs a model trained with label dropout; this one has no unconditional mode")
    choice = resolve(method, spacing, steps, eta, folder=m.path)
    if choice.steps == 1 and choice.timesteps is None:
        _check_one_step(m, choice)
    return choice


def _check_one_step(m: LoadedModel, choice: Choice) -> None:
    """One step is an image only if it starts from the noisiest level and the model predicts x0 (or v) there."""
    from .timesteps import timesteps

    T = len(m.schedule)
    t = int(timesteps(T, 1, choice.spacing, m.schedule.alphas_cumprod)[0])
    if t < T // 2:
        raise ValueError(f"one step on the {choice.spacing!r} grid visits only t = {t} and returns the noise almost unchanged; "
                         "use spacing 'trailing' (it starts at t = T - 1) or more steps")
    if m.prediction == "eps":
        scale = m.schedule.alpha_bar(t) ** 0.5
        raise ValueError(f"one step cannot make an image with this eps-prediction model: its x0 estimate at t = {t} divides the "
                         f"model's error by sqrt(alpha-bar) = {scale:.2g}; use at least 2 steps")


def generate(
    m: LoadedModel,
    n: int,
    *,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    batch_size: int = 256,
    steps: int = 50,
    eta: float = 0.0,
    method: str = "auto",
    spacing: str = "auto",
    class_label: int | None = None,
    guidance: float | None = None,
    device: str | torch.device | None = None,
    on_step: Callable[[int], None] | None = None,
    first: int = 0,
    callback: Callable[[int, int, Tensor, Tensor], None] | None = None,
) -> Generated:
    """Draw ``n`` images: image i from seed ``seeds[i]`` (default ``seed + i``), in batches of ``batch_size``.

    ``method`` / ``spacing`` take "auto" (policy.py; with a fitted grid in the model folder where one
    measured best) and "optimized" (the folder's grids.json). A class-conditional model gets
    ``class_label`` for every image, or labels 0, 1, 2, ... in turn; ``guidance`` is the classifier-free
    guidance scale. ``on_step(k)`` is called after every step with the batch size k (progress bars).
    ``first``: the images are numbers first .. first + n - 1 of a larger set (a shard): image j gets seed
    ``seed + j`` and, on a conditional model without ``class_label``, label ``j % classes``.
    ``callback(i, t, x_t, x0_hat)``: ``ddim.sample``'s callback, after every step of every batch (the batch's tensors).
    """
    from .guidance import Guided

    seeds = check_request(n, seed=seed + first, seeds=seeds, batch_size=batch_size, steps=steps, eta=eta, method=method, spacing=spacing, guidance=guidance)
    choice = plan(m, steps=steps, eta=eta, method=method, spacing=spacing, class_label=class_label, guidance=guidance)
    device = torch.device(device) if device is not None else next(m.model.parameters()).device
    model_dtype = next(m.model.parameters()).dtype  # x_T in the network's dtype (float16 / bfloat16 on CUDA); the sampler's state stays float32
    counter = CallCounter(m.model)
    out, wall = [], 0.0
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        x_T, gens = noise(m.sample_shape, [seeds[i] for i in idx])
        model = counter
        if m.num_classes:
            labels = torch.tensor([class_label if class_label is not None else (first + i) % m.num_classes for i in idx], device=device)
            model = Guided(counter, labels, 1.0 if guidance is None else guidance, m.null_class)
        t0 = time.perf_counter()
        with torch.inference_mode():
            x0 = sample(model, m.schedule, x_T.to(device, model_dtype), steps=choice.steps, eta=eta, spacing=choice.spacing if choice.timesteps is None else "uniform",
                        method=choice.method, timesteps=choice.timesteps, prediction=m.prediction, generator=gens,
                        callback=_step_callback(callback, on_step, len(idx)))
        if x0.device.type == "cuda":
            torch.cuda.synchronize()
        wall += time.perf_counter() - t0
        out.append(x0.float().cpu())
    return Generated(torch.cat(out), choice, seeds, wall, counter.images / n, float(eta))


def _step_callback(callback, on_step, k: int):
    """``sample``'s per-step callback: the caller's ``callback``, then ``on_step(k)`` (k: the batch's images); None if neither."""
    if callback is None and on_step is None:
        return None

    def step(i: int, t: int, x: Tensor, x0: Tensor) -> None:
        if callback is not None:
            callback(i, t, x, x0)
        if on_step is not None:
            on_step(k)

    return step
