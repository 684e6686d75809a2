"""Peers' original sampler code, driven on our test beds (benchmark-only; never imported by the library).

- k-diffusion (crowsonkb/k-diffusion, PyPI ``k-diffusion``): its package ``__init__`` imports training
  and evaluation code (torchvision, kornia, CLIP, wandb, ...) whose PyPI builds pull a CUDA torch. The
  samplers live in ``k_diffusion/sampling.py`` and ``external.py``, which need only torch, scipy,
  torchdiffeq and torchsde, so we load those two files unchanged from the installed package, as a
  namespace without the package ``__init__``. Install without dependencies:

      pip install --no-deps k-diffusion torchdiffeq torchsde trampoline

  Where torchvision is absent, ``k_diffusion/utils.py`` (imported by sampling.py for ``append_dims``)
  gets an empty stand-in module for its unused ``torchvision.transforms.functional`` import.
- diffusers: the DPM-Solver++ and UniPC schedulers there are ports by the methods' authors.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import torch


def kdiffusion():
    """(k_diffusion.sampling, k_diffusion.external) from the installed package, loaded without its __init__."""
    if not hasattr(sys.modules.get("k_diffusion"), "_ddim_namespace"):
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("k-diffusion is not installed: pip install --no-deps k-diffusion torchdiffeq torchsde trampoline")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        package._ddim_namespace = True
        sys.modules["k_diffusion"] = package
        stubs = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
        try:
            importlib.import_module("torchvision.transforms.functional")
            stubs = ()
        except ImportError:
            for name in stubs:
                sys.modules[name] = types.ModuleType(name)
            sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
            sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
        try:
            importlib.import_module("k_diffusion.utils")
        finally:
            for name in stubs:  # only utils.py's import needed it; others (diffusers) probe for the real one
                del sys.modules[name]
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


def k_sample(sampler: str, model, sched, x_T: torch.Tensor, timesteps: torch.Tensor | None = None, n: int | None = None):
    """Run k-diffusion's ``sample_<sampler>`` on an eps model(x, t) through its own DiscreteEpsDDPMDenoiser.

    The sigma grid is either ours (``timesteps``: integer training steps, sigma = sqrt((1 - ab) / ab), then 0)
    or k-diffusion's own time-uniform ``get_sigmas(n)``. x_T ~ N(0, I) in our variance-preserving space is
    sigma_max * x_T in k-diffusion's, and its result is x_0 in both.
    """
    ks, ke = kdiffusion()
    ab = sched.alphas_cumprod.to(x_T.dtype)
    denoiser = ke.DiscreteEpsDDPMDenoiser(model, ab, quantize=True)
    if timesteps is not None:
        sigmas = ks.append_zero(((1 - ab[timesteps]) / ab[timesteps]).sqrt())
    else:
        sigmas = denoiser.get_sigmas(n)
    x = x_T * (1 + sigmas[0] ** 2).sqrt()  # x_T at sigma_max in the VE space: x / alpha with alpha = 1 / sqrt(1 + sigma^2)
    return getattr(ks, f"sample_{sampler}")(denoiser, x, sigmas, disable=True)
