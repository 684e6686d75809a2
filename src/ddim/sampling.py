"""The sampling loop over a grid (``sample``), its inverse (``invert``), and model evaluation (``predict``).

Each visited level costs one model call (``predict``: the network's output as (eps_hat, x0_hat));
the method's stepper (methods.py, steps.py, solvers.py) then takes the step to the next visited
level, ``ab_t -> ab_prev`` (alpha-bar 1 after the last one), and the loop adds the step's fresh
noise. With ``method="auto"`` (policy.py) ``steps`` counts model calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .methods import INVERSION_METHODS, METHODS
from .policy import AUTO, resolve
from .prediction import check_prediction, eps_from_x0, network_output, to_eps_x0
from .schedule import NoiseSchedule, _math_dtype
from .steps import ddim_step
from .timesteps import check_timesteps
from .timesteps import timesteps as make_timesteps

__all__ = ["METHODS", "INVERSION_METHODS", "sample", "invert", "predict", "CallCounter", "check_steps", "check_eta", "check_batch", "check_generator"]

Model = Callable[[Tensor, Tensor], Any]
Generator = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, int, Tensor, Tensor], None]


class CallCounter:
    """Wraps a model and counts its calls and the images (batch rows) it evaluated."""

    def __init__(self, model: Model) -> None:
        self.model, self.calls, self.images = model, 0, 0

    def __call__(self, x: Tensor, t: Tensor, *args, **kwargs):
        self.calls += 1
        self.images += len(x)
        return self.model(x, t, *args, **kwargs)


def check_batch(x: Tensor, name: str = "x_T") -> Tensor:
    """``x`` if it is a finite floating-point tensor with a batch dimension [B, ...], else a ValueError saying what to pass."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped [B, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float32, or float64 / float16 / bfloat16), got {x.dtype}")
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be batched, [B, ...] with B >= 1 (e.g. x[None] for one sample), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_generator(generator: Generator) -> Generator:
    """None, one torch.Generator, or a sequence of them (one per image), else a ValueError."""
    ok = generator is None or isinstance(generator, torch.Generator) or (
        isinstance(generator, Sequence) and not isinstance(generator, str) and all(isinstance(g, torch.Generator) for g in generator))
    if not ok:
        raise ValueError(f"generator must be None, a torch.Generator, or a list of them (one per image), got {type(generator).__name__}; "
                         "for a seed pass torch.Generator().manual_seed(seed)")
    return generator


def check_steps(steps: int, T: int) -> int:
    """``steps`` if it is an integer in 1..T, else a ValueError saying so."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in 1..{T} (the model's training steps), got {steps!r}")
    return steps


def check_eta(eta: float, method: str) -> float:
    """``eta`` if it lies in [0, 1] and ``method`` takes it, else a ValueError saying why."""
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number in [0, 1], got {eta!r}") from None
    if not 0.0 <= eta <= 1.0:  # also refuses NaN
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    if eta != 0 and method not in (AUTO, "ddim"):
        raise ValueError(f"eta applies to method='ddim' only; method={method!r} fixes its own noise")
    return eta


# --------------------------------------------------------------------------- model evaluation
def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)`` without the call when it would change nothing (a no-op ``to`` costs about a microsecond a step)."""
    return x if x.dtype == dtype else x.to(dtype)


def predict(
    model: Model,
    x: Tensor,
    t: int,
    ab_t: float,
    prediction: str = "eps",
    *,
    model_dtype: torch.dtype | None = None,
    clip_x0: float | None = None,
    dynamic_threshold: float | None = None,
    eps_only: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Call ``model(x, t)`` and return (eps_hat, x0_hat) in x's dtype; optional x0 clipping re-derives eps.

    ``eps_only``: the caller needs eps_hat only; x0_hat is then None where computing it can be skipped."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    x_in = x if model_dtype is None else as_dtype(x, model_dtype)
    try:
        out = network_output(model(x_in, t_batch))
    except RuntimeError as err:  # a shape, dtype or device the network does not take
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ValueError(f"the model failed on x of shape {tuple(x_in.shape)}, {x_in.dtype}, on {x_in.device} ({first}); give x_T batched "
                         "like the model's input [B, *sample_shape], in the model's dtype and on its device") from err
    if not isinstance(out, Tensor) or out.shape != x.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return a tensor shaped like its input {tuple(x.shape)}, got {shape}")
    if not math.isfinite(out.sum(dtype=torch.float64 if out.dtype == torch.float64 else torch.float32).item()):  # NaN and inf survive a sum
        raise ValueError(f"the model returned NaN or inf at step t={t}: its weights may be damaged (a corrupted weights file), "
                         "or a half-precision model overflowed; check the model with finite inputs")
    out = as_dtype(out, x.dtype)
    if eps_only and prediction == "eps" and clip_x0 is None and dynamic_threshold is None:
        return out, None
    eps, x0 = to_eps_x0(out, x, ab_t, prediction)
    if clip_x0 is None and dynamic_threshold is None:
        return eps, x0
    if dynamic_threshold is not None:  # Saharia et al. 2022 (Imagen), sec. 2.3
        flat = x0.abs().reshape(x0.shape[0], -1)
        s = torch.quantile(flat, dynamic_threshold, dim=1).clamp(min=1.0)
        s = s.reshape((-1,) + (1,) * (x0.dim() - 1))
        x0 = torch.maximum(torch.minimum(x0, s), -s) / s
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    return eps_from_x0(x0, x, ab_t), x0


def _randn(like: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise shaped like ``like``; one generator per image makes it batch-size independent."""
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else like.device
        return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
    if len(generator) != like.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {like.shape[0]}; give one per image")
    rows = [torch.randn(like.shape[1:], generator=g, device=g.device, dtype=like.dtype) for g in generator]
    return torch.stack(rows).to(like.device)


def _given_grid(timesteps, steps: int | None, T: int) -> Tensor:
    tau = check_timesteps(timesteps, T)
    if steps is not None and steps != len(tau):
        raise ValueError(f"steps={steps} disagrees with the {len(tau)} given timesteps; pass one of them")
    return tau


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


# --------------------------------------------------------------------------- public samplers
def sample(
    model: Model,
    schedule: NoiseSchedule,
    x_T: Tensor,
    steps: int | None = None,
    eta: float = 0.0,
    spacing: str = "uniform",
    method: str = "ddim",
    prediction: str = "eps",
    generator: Generator = None,
    *,
    timesteps: Sequence[int] | Tensor | None = None,
    clip_x0: float | None = None,
    dynamic_threshold: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """Run the reverse process from noise ``x_T`` over a grid of ``steps`` and return x_0.

    ``method`` is one of ``ddim.METHODS`` or "auto" (then ``steps`` counts model calls and the measured
    best method for that budget is used, policy.py); ``spacing`` one of ``ddim.SPACINGS`` or "auto".
    ``eta`` (DDIM eq. 16) applies to "ddim" only. ``steps`` defaults to 50; ``timesteps`` replaces
    ``steps``/``spacing`` with an explicit decreasing grid. ``callback(i, t, x_prev, x0_hat)`` is called after every step. The result
    has x_T's device and dtype; the state is kept in float32 (float64 when x_T is float64), the model
    gets x_T's dtype.
    """
    T = len(schedule)
    check_batch(x_T)
    check_generator(generator)
    eta = check_eta(eta, method)
    if timesteps is not None:
        tau = _given_grid(timesteps, steps, T)
        method = resolve(method, "uniform", len(tau), eta).method
    else:
        choice = resolve(method, spacing, check_steps(50 if steps is None else steps, T), eta)
        method = choice.method
        tau = make_timesteps(T, choice.steps, choice.spacing, schedule.alphas_cumprod)
    check_prediction(prediction)
    _check_options(clip_x0, dynamic_threshold)
    x = x_T.to(_math_dtype(x_T))
    options = dict(model_dtype=x_T.dtype, clip_x0=clip_x0, dynamic_threshold=dynamic_threshold)
    stepper = METHODS[method].start(eta, len(tau))
    levels = [int(t) for t in tau] + [-1]  # Python ints: indexing a tensor costs microseconds per step
    for i in _progress(range(len(tau)), progress, f"{method} sampling"):
        t, t_prev = levels[i], levels[i + 1]
        ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        eps, x0 = predict(model, x, t, ab_t, prediction, **options)
        x, std = stepper.step(x, eps, x0, ab_t, ab_prev,
                              lambda z, t_prev=t_prev, ab_prev=ab_prev: predict(model, z, t_prev, ab_prev, prediction, eps_only=True, **options)[0])
        if std > 0:
            x = x + std * _randn(x, generator)
        if callback is not None:
            callback(i, t, x, x0)
    return x.to(x_T.dtype)


def invert(
    model: Model,
    schedule: NoiseSchedule,
    x0: Tensor,
    steps: int | None = None,
    spacing: str = "uniform",
    prediction: str = "eps",
    method: str = "ddim",
    *,
    timesteps: Sequence[int] | Tensor | None = None,
    iterations: int = 3,
    tol: float = 0.0,
    depth: int = 5,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode data ``x0`` into a latent x_T by running the eta = 0 step towards noise over the reversed grid.

    ``sample(model, schedule, invert(...), steps, eta=0, spacing)`` decodes it again.

    - "ddim": plain inversion. The exact inverse of the sampler's step from z (level t) to x
      needs eps(z, t) at the unknown z; plain inversion uses eps(x, t) instead, so its round
      trip error shrinks only at first order in the step size. One model call per step.
    - "fixed-point": solves z = G(z), G(z) = the eta = 0 map from x to level t with eps(z, t),
      i.e. the z from which the sampler's own step lands exactly on x. 1 + ``iterations`` model
      calls per step: G at x (the plain step), then at ``iterations`` Anderson-accelerated
      iterates (type II, the last ``depth`` residual differences, per image); the step returns
      the Anderson update computed from the last evaluation. Stops early once every image's
      residual RMS falls below ``tol`` (0: never).

    ``callback(i, t, x_t, x_from)`` per step: the new latent at level t and the point it came from.
    """
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown inversion method {method!r}; choose one of {', '.join(INVERSION_METHODS)}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (the Anderson history) must be a positive integer, got {depth!r}")
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"tol must be a number >= 0 (0: never stop early), got {tol!r}") from None
    if not tol >= 0 or math.isinf(tol):  # also refuses NaN
        raise ValueError(f"tol must be a finite number >= 0 (0: never stop early), got {tol}")
    check_prediction(prediction)
    check_batch(x0, "x0")
    T = len(schedule)
    if timesteps is not None:
        tau = _given_grid(timesteps, steps, T)
    else:
        tau = make_timesteps(T, check_steps(50 if steps is None else steps, T), spacing, schedule.alphas_cumprod)
    ascending = tau.flip(0)
    x = x0.to(_math_dtype(x0))
    ab_prev = 1.0  # the level x is at: the sampler's step goes from level t to prev, inversion back up
    calls = 1 + iterations if method == "fixed-point" else 1
    for i in _progress(range(len(ascending)), progress, f"{method} inversion"):
        t = int(ascending[i])
        ab_t = schedule.alpha_bar(t)

        def G(z: Tensor) -> Tensor:  # noqa: N802 - the fixed-point map; x, ab_t, ab_prev of this step
            eps, _ = predict(model, z, t, ab_t, prediction, model_dtype=x0.dtype)
            return _ddim_up(x, eps, ab_prev, ab_t)

        z = _anderson(G, x, calls, tol, depth)  # one call: G(x), the plain DDIM inversion step
        if callback is not None:
            callback(i, t, z, x)
        x, ab_prev = z, ab_t
    return x.to(x0.dtype)


def _ddim_up(x: Tensor, eps: Tensor, ab_prev: float, ab_t: float) -> Tensor:
    """The eta = 0 DDIM map of x at level ab_prev up to level ab_t with a given eps: sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps."""
    return ddim_step((x - math.sqrt(1 - ab_prev) * eps) / math.sqrt(ab_prev), eps, ab_t)


def _anderson(G: Callable[[Tensor], Tensor], z: Tensor, calls: int, tol: float = 0.0, depth: int = 5) -> Tensor:
    """Anderson-accelerated fixed-point iteration z <- G(z) from ``z``, per sample; ``calls`` calls of G.

    Type II Anderson mixing with the last ``depth`` differences of iterates and residuals
    f = G(z) - z: the next iterate is z + f minus the combination of past steps whose residual
    differences best cancel f (a small least-squares problem per image, in float64). On a
    linear map this is GMRES on the iterates, so it also converges where the plain iteration
    does not contract, which is what classifier-free guidance does at the low-noise steps.
    The first call evaluates G at the starting point, so ``calls=1`` returns G(z), the plain
    step. The answer is the update computed from the last evaluation (it costs no call and
    is typically several times closer than the last evaluated iterate); safeguard, per image:
    where the last evaluation's residual is not the smallest measured, the iterate with the
    smallest measured residual is returned instead. The residual |G(z) - z| is sqrt(ab_t / ab_from)
    times the error of the sampler's step from z.
    """
    dims = tuple(range(1, z.dim()))
    shape = (-1,) + (1,) * (z.dim() - 1)
    zs: list[Tensor] = []
    fs: list[Tensor] = []
    best = best_r = last_is_best = None
    for _ in range(calls):
        f = G(z) - z
        r = f.pow(2).mean(dims)
        if best is None:
            best, best_r, last_is_best = z, r, torch.ones_like(r, dtype=torch.bool)
        else:
            last_is_best = r <= best_r
            best, best_r = torch.where(last_is_best.reshape(shape), z, best), torch.where(last_is_best, r, best_r)
        zs, fs = (zs + [z])[-(depth + 1):], (fs + [f])[-(depth + 1):]
        z = z + f if len(zs) == 1 else _anderson_update(zs, fs)
        if tol > 0 and best_r.max().sqrt().item() < tol:
            break
    return torch.where(last_is_best.reshape(shape), z, best)


def _anderson_update(zs: list[Tensor], fs: list[Tensor]) -> Tensor:
    """z_k + f_k - sum_j gamma_j (dz_j + df_j), gamma = argmin |f_k - sum_j gamma_j df_j| per sample.

    Normal equations in float64 on unit-norm columns with a ridge of 1e-13 (relative), so a repeated
    iterate (df_j = 0) or nearly parallel differences give a finite, near-minimal-norm answer.
    """
    B = zs[-1].shape[0]
    dz = torch.stack([(b - a).reshape(B, -1) for a, b in zip(zs, zs[1:])], -1).double()  # [B, D, n]
    df = torch.stack([(b - a).reshape(B, -1) for a, b in zip(fs, fs[1:])], -1).double()
    f = fs[-1].reshape(B, -1, 1).double()
    norms = df.norm(dim=1, keepdim=True)  # [B, 1, n]
    norms = torch.where(norms > 0, norms, torch.ones_like(norms))
    q = df / norms
    gram = q.transpose(1, 2) @ q
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gamma = torch.linalg.solve(gram + 1e-13 * eye, q.transpose(1, 2) @ f) / norms.transpose(1, 2)
    step = (f - (dz + df) @ gamma).reshape(zs[-1].shape)
    return zs[-1] + step.to(zs[-1].dtype)


def _check_options(clip_x0: float | None, dynamic_threshold: float | None) -> None:
    if clip_x0 is not None and not clip_x0 > 0:
        raise ValueError(f"clip_x0 must be a positive bound (e.g. 1.0 for pixels in [-1, 1]), got {clip_x0}")
    if dynamic_threshold is not None and not 0 < dynamic_threshold < 1:
        raise ValueError(f"dynamic_threshold is a quantile in (0, 1) (Imagen uses 0.995), got {dynamic_threshold}")
