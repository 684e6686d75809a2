"""Our samplers and inversion inside diffusers pipelines.

- ``Scheduler``: a diffusers scheduler that runs any entry of ``ddim.METHODS`` on any entry of
  ``ddim.SPACINGS`` (or ``method="auto"``), reading betas, schedule and prediction type from the
  pipeline's own scheduler config::

      pipe.scheduler = ddim.pipelines.Scheduler.from_config(pipe.scheduler.config, method="unipc3", spacing="auto")

  Each ``step`` call does what one iteration of ``ddim.sample`` does with the same stepper, so a
  pipeline and ``ddim.sample`` give the same images for the same x_T and grid. Heun (2 model calls
  per step) lists each inner level twice in ``timesteps``, and ``order`` is 2, as diffusers' Heun does.
- ``invert(pipe, image, prompt, steps, guidance_scale, method)``: the latents from which ``pipe``
  with our eta = 0 DDIM scheduler regenerates ``image`` (encoded by the pipeline's VAE where it has
  one), under the same classifier-free guidance mix the pipeline samples with. It builds that guided
  model and calls ``ddim.invert``: one implementation.

The difference from diffusers' DDIMScheduler: after the last visited step ours always lands on
alpha-bar = 1 (x0_hat), like ``ddim.sample``; diffusers' does so only with ``set_alpha_to_one=True``
(Stable Diffusion's configs say False: its last step stops at alpha-bar of step 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

from .methods import METHODS
from .models import _PRED_FROM_DIFFUSERS, schedule_from_diffusers
from .policy import AUTO, resolve
from .prediction import network_output, to_eps_x0
from .sampling import _randn, as_dtype, check_eta, check_generator
from .sampling import invert as _invert
from .schedule import _math_dtype
from .timesteps import SPACINGS, check_timesteps
from .timesteps import timesteps as make_timesteps

__all__ = ["Scheduler", "SchedulerOutput", "invert", "GuidedUNet"]


@dataclass
class SchedulerOutput(BaseOutput):
    """What ``Scheduler.step`` returns: the next sample and the x0_hat the step used (None on Heun's inner call)."""

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


class _NeedsModel(Exception):
    """Raised inside a stepper's ``evaluate``: the step needs the model at a point only the pipeline can evaluate."""

    def __init__(self, z: Tensor) -> None:
        self.z = z


class Scheduler(SchedulerMixin, ConfigMixin):
    """A diffusers scheduler running ``method`` (``ddim.METHODS`` or "auto") on ``spacing`` (``ddim.SPACINGS`` or "auto").

    With ``method="auto"`` ``num_inference_steps`` counts model calls (``ddim.sample``'s rule). ``eta``
    applies to "ddim"; a non-zero ``eta`` passed to ``step`` by a pipeline (``pipe(..., eta=0.5)``)
    takes precedence over the configured one. Config keys of other diffusers schedulers are accepted
    and ignored, so ``from_config(pipe.scheduler.config, ...)`` works from any of them.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        rescale_betas_zero_snr: bool = False,
        method: str = "ddim",
        spacing: str = "uniform",
        eta: float = 0.0,
    ) -> None:
        if method != AUTO and method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of auto, {', '.join(METHODS)}")
        if spacing not in (AUTO, *SPACINGS):
            raise ValueError(f"unknown spacing {spacing!r}; choose one of auto, {', '.join(SPACINGS)}")
        if prediction_type not in _PRED_FROM_DIFFUSERS:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected one of {', '.join(_PRED_FROM_DIFFUSERS)}")
        check_eta(eta, method)
        self.schedule = schedule_from_diffusers(dict(self.config))
        self.prediction = _PRED_FROM_DIFFUSERS[prediction_type]
        self.alphas_cumprod = self.schedule.alphas_cumprod.float()
        self.init_noise_sigma = 1.0
        self.order = METHODS[method].calls_per_step if method in METHODS else 1
        self.method = method if method in METHODS else "ddim"
        self.num_inference_steps: int | None = None
        self.levels: list[int] = []  # the visited grid, noisiest first
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1)
        self._begin_index: int | None = None
        self._reset()

    # ------------------------------------------------------------------ grid
    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: list[int] | None = None) -> None:
        """The grid for ``num_inference_steps`` (model calls with method "auto"), or an explicit decreasing ``timesteps``."""
        T = self.config.num_train_timesteps
        method = self.config.method
        if timesteps is not None:
            levels = check_timesteps(timesteps, T).tolist()
            method = resolve(method, "uniform", len(levels), self.config.eta).method
        else:
            if num_inference_steps is None:
                raise ValueError("set_timesteps needs num_inference_steps or timesteps")
            choice = resolve(method, self.config.spacing, int(num_inference_steps), self.config.eta)
            method = choice.method
            grid = choice.timesteps or make_timesteps(T, choice.steps, choice.spacing, self.schedule.alphas_cumprod)
            levels = [int(t) for t in grid]
        self.method, self.levels = method, levels
        self.order = METHODS[method].calls_per_step
        self.num_inference_steps = len(levels)
        calls = [levels[0]]
        for t in levels[1:]:  # a 2-call method evaluates each inner level twice: after its predictor and as the next start
            calls += [t] * self.order
        self.timesteps = torch.tensor(calls, dtype=torch.long, device=device)
        self._begin_index = None
        self._reset()

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at entry ``begin_index`` of ``timesteps`` (img2img with ``strength`` < 1); a multistep method starts afresh there."""
        self._begin_index = int(begin_index)
        self._reset()

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    @property
    def step_index(self) -> int | None:
        return self._index

    def _reset(self) -> None:
        self._index: int | None = None
        self._stepper = None
        self._pending: tuple | None = None  # Heun: (x, eps, x0, ab_t, ab_prev) waiting for the model at the predictor

    def scale_model_input(self, sample: Tensor, timestep: int | Tensor | None = None) -> Tensor:
        """Unchanged: a variance-preserving model takes x_t as it is."""
        return sample

    def _level(self, index: int) -> tuple[int, int]:
        """(t, t_prev) of the step that entry ``index`` of ``timesteps`` belongs to."""
        i = index // self.order  # entries: t_0, then each later level once per call of a step (Heun: inner + start)
        t = self.levels[i]
        return t, (self.levels[i + 1] if i + 1 < len(self.levels) else -1)

    # ------------------------------------------------------------------ the step
    def step(self, model_output: Tensor, timestep: int | Tensor, sample: Tensor, eta: float | None = None,
             generator: torch.Generator | list[torch.Generator] | None = None, return_dict: bool = True,
             **unused: Any) -> SchedulerOutput | tuple:
        """One model call's worth of ``ddim.sample``: the method's step from ``timestep`` (or Heun's inner half-step)."""
        if not self.levels:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        if self._index is None:
            self._index = self._begin_index if self._begin_index is not None else self._find(timestep)
        if self._index >= len(self.timesteps):
            raise ValueError(f"step() called {self._index + 1} times for a grid of {len(self.timesteps)} model calls; call set_timesteps again")
        eta = float(eta) if eta else float(self.config.eta)
        if self._stepper is None:
            # the steps left from here: a pipeline may begin partway down the grid
            self._stepper = METHODS[self.method].start(check_eta(eta, self.method), len(self.levels) - self._index)
        check_generator(generator)
        x_in = sample
        out = network_output(model_output)
        if self._pending is not None:  # Heun's second call: the model at the predictor, level t_prev
            x, eps, x0, ab_t, ab_prev = self._pending
            self._pending = None
            inner, _ = to_eps_x0(as_dtype(out, x.dtype), as_dtype(x_in, x.dtype), ab_prev, self.prediction)
            mean, std = self._stepper.step(x, eps, x0, ab_t, ab_prev, lambda z: inner)
        else:
            t, t_prev = self._level(self._index)
            ab_t, ab_prev = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_prev)
            x = as_dtype(sample, _math_dtype(sample))
            eps, x0 = to_eps_x0(as_dtype(out, x.dtype), x, ab_t, self.prediction)

            def evaluate(z: Tensor):
                raise _NeedsModel(z)

            try:
                mean, std = self._stepper.step(x, eps, x0, ab_t, ab_prev, evaluate)
            except _NeedsModel as need:  # hand the predictor back; the pipeline calls the model there next
                self._pending = (x, eps, x0, ab_t, ab_prev)
                self._index += 1
                z = as_dtype(need.z, sample.dtype)
                return SchedulerOutput(z, None) if return_dict else (z,)
        if std > 0:
            mean = mean + std * _randn(mean, generator)
        self._index += 1
        prev = as_dtype(mean, sample.dtype)
        x0_out = None if self._pending else as_dtype(x0, sample.dtype)
        return SchedulerOutput(prev, x0_out) if return_dict else (prev,)

    def _find(self, timestep: int | Tensor) -> int:
        t = int(timestep)
        hits = (self.timesteps == t).nonzero().flatten().tolist()
        if not hits:
            raise ValueError(f"timestep {t} is not on this scheduler's grid {self.levels}")
        return hits[0]

    # ------------------------------------------------------------------ forward process
    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor | int) -> Tensor:
        """x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise (per-sample ``timesteps``)."""
        t = torch.as_tensor(timesteps, device=original_samples.device).long().reshape(-1)
        ab = self.alphas_cumprod.to(original_samples.device, original_samples.dtype)[t]
        ab = ab.reshape((-1,) + (1,) * (original_samples.dim() - 1))
        return ab.sqrt() * original_samples + (1 - ab).sqrt() * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps


# --------------------------------------------------------------------------- inversion in a pipeline
class GuidedUNet(torch.nn.Module):
    """A pipeline's UNet with its conditioning and classifier-free guidance, as ``model(x, t)``.

    The same mix as Stable Diffusion's pipelines: with ``guidance_scale > 1`` one batched call on
    [uncond, cond] and ``uncond + w (cond - uncond)``; otherwise the conditional call alone.
    """

    def __init__(self, unet: torch.nn.Module, cond: Tensor | None = None, uncond: Tensor | None = None, guidance_scale: float = 1.0):
        super().__init__()
        self.unet, self.cond, self.uncond, self.scale = unet, cond, uncond, float(guidance_scale)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.cond is None:
            return network_output(self.unet(x, t))
        if self.scale > 1:
            both = network_output(self.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([self.uncond, self.cond])))
            uncond, cond = both.chunk(2)
            return uncond + self.scale * (cond - uncond)
        return network_output(self.unet(x, t, encoder_hidden_states=self.cond))


def invert(
    pipe: Any,
    image: Any,
    prompt: str | list[str] = "",
    steps: int = 50,
    guidance_scale: float = 1.0,
    method: str = "fixed-point",
    negative_prompt: str | list[str] | None = None,
    *,
    spacing: str | None = None,
    progress: bool = False,
    **invert_options: Any,
) -> Tensor:
    """The latents x_T from which ``pipe(prompt, latents=x_T, num_inference_steps=steps, guidance_scale=...)`` with our
    eta = 0 DDIM scheduler regenerates ``image``.

    ``image``: a PIL image, a list of them, a numpy array [H, W, C] / [B, H, W, C] in [0, 1], or a tensor
    [B, C, H, W] in [0, 1] or [-1, 1]. A latent pipeline encodes it with its VAE (the posterior mean
    times ``scaling_factor``); a pixel pipeline (DDPMPipeline, DDIMPipeline) inverts the pixels.
    ``method``: one of ``ddim.INVERSION_METHODS`` ("ddim" = plain inversion); ``spacing`` defaults to the
    pipeline's scheduler's when it is ours, else "uniform"; other keyword arguments (``iterations``,
    ``tol``, ...) go to ``ddim.invert``.
    """
    unet, scheduler = getattr(pipe, "unet", None), getattr(pipe, "scheduler", None)
    if unet is None or scheduler is None:
        raise ValueError(f"{type(pipe).__name__} has no {'unet' if unet is None else 'scheduler'}; invert needs a pipeline with a UNet and a scheduler")
    config = dict(scheduler.config)
    if config.get("prediction_type", "epsilon") not in _PRED_FROM_DIFFUSERS:
        raise ValueError(f"unsupported prediction_type {config['prediction_type']!r} in the pipeline's scheduler")
    prediction = _PRED_FROM_DIFFUSERS[config.get("prediction_type", "epsilon")]
    schedule = schedule_from_diffusers(config)
    if spacing is None:
        spacing = config.get("spacing", "uniform") if isinstance(scheduler, Scheduler) else "uniform"
    if isinstance(scheduler, Scheduler) and (config.get("method") != "ddim" or config.get("eta")):
        import warnings

        warnings.warn(f"the pipeline samples with method={config.get('method')!r}, eta={config.get('eta')}: the latents regenerate the image only "
                      "under DDIM with eta = 0; set pipe.scheduler = Scheduler.from_config(pipe.scheduler.config, method='ddim')", stacklevel=2)
    x0 = _encode(pipe, image)
    model = GuidedUNet(unet)
    if getattr(pipe, "text_encoder", None) is not None:
        model = GuidedUNet(unet, *_embed(pipe, prompt, negative_prompt, len(x0), guidance_scale), guidance_scale)
    elif prompt or negative_prompt or guidance_scale != 1.0:
        raise ValueError(f"{type(pipe).__name__} has no text encoder: leave prompt, negative_prompt and guidance_scale at their defaults")
    with torch.no_grad():
        return _invert(model, schedule, x0, steps, spacing=spacing, prediction=prediction, method=method, progress=progress, **invert_options)


def _encode(pipe: Any, image: Any) -> Tensor:
    """``image`` in the pipeline's model space: VAE latents [B, c, h, w], or pixels in [-1, 1]."""
    from diffusers.image_processor import VaeImageProcessor

    unet, vae = pipe.unet, getattr(pipe, "vae", None)
    scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
    processor = VaeImageProcessor(vae_scale_factor=scale, do_resize=False)
    try:
        if isinstance(image, Tensor) and image.dim() == 4 and image.min() < 0:
            pixels = image  # already in [-1, 1], the model's range
        else:
            pixels = processor.preprocess(image)
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"cannot read image ({str(err).splitlines()[0][:200]}); give a PIL image, a numpy array [H, W, C] in [0, 1] "
                         "or a tensor [B, C, H, W]") from None
    device = next(unet.parameters()).device
    dtype = (vae if vae is not None else unet).dtype
    pixels = pixels.to(device, dtype)
    H, W = pixels.shape[-2:]
    if vae is None:
        size = unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if (H, W) != size or pixels.shape[1] != unet.config.in_channels:
            raise ValueError(f"the image is {pixels.shape[1]}x{H}x{W} but this pipeline's UNet takes {unet.config.in_channels}x{size[0]}x{size[1]}; "
                             "resize the image to the model's size")
        return pixels
    if H % scale or W % scale or pixels.shape[1] != vae.config.in_channels:
        raise ValueError(f"the image is {pixels.shape[1]}x{H}x{W}; this pipeline's VAE needs {vae.config.in_channels} channels and a height and "
                         f"width divisible by {scale}")
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def _embed(pipe: Any, prompt, negative_prompt, batch: int, guidance_scale: float) -> tuple[Tensor, Tensor | None]:
    """(cond, uncond) text embeddings for ``batch`` images, as the pipeline itself makes them."""
    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if isinstance(value, list) and len(value) != batch:
            raise ValueError(f"got {len(value)} entries in {name} for {batch} images; give one string, or one per image")
    if isinstance(prompt, list):
        per_prompt = 1
    else:
        prompt, per_prompt = [prompt], batch
    if negative_prompt is not None and not isinstance(negative_prompt, list):
        negative_prompt = [negative_prompt] * len(prompt)
    guided = guidance_scale > 1
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
    device = next(pipe.unet.parameters()).device
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(prompt, device, per_prompt, guided, negative_prompt)[:2]
    return cond, (uncond if guided else None)
