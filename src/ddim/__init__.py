"""ddim: fast, trustworthy diffusion sampling (DDPM and DDIM, inversion), in PyTorch.

The public contract (DESIGN.md section 3)::

    sched = ddim.NoiseSchedule.linear(1000)
    ts = ddim.timesteps(1000, 50, spacing="uniform")
    x0 = ddim.sample(model, sched, x_T, steps=50, eta=0.0)
    x0 = ddim.sample(model, sched, x_T, steps=10, method="auto", spacing="auto")   # the measured best for 10 model calls
    x_T = ddim.invert(model, sched, x0, steps=50)
    pipe.scheduler = ddim.pipelines.Scheduler.from_config(pipe.scheduler.config, method="unipc3")   # inside diffusers
    m = ddim.load("digits")       # the shipped model: m.model, m.schedule, m.sample_shape, m.prediction
    images = ddim.generate(m, 16, seed=0, steps=10).images   # per-image seeds, batching, labels
"""

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Everything loads on first use, so that ``import ddim`` (and the CLI's --help and argument errors) costs no torch import.
_HOMES = {
    "generate": "generate", "Generated": "generate", "slerp": "interpolation", "METHODS": "methods", "INVERSION_METHODS": "methods",
    "SHIPPED": "models", "LoadedModel": "models", "load": "models", "PREDICTIONS": "config", "invert": "sampling", "sample": "sampling",
    "NoiseSchedule": "schedule", "SPACINGS": "config", "timesteps": "timesteps",
}
_SUBMODULES = ("analytic", "data", "features", "metrics", "pipelines", "testing")


def __getattr__(name: str):
    import importlib

    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'ddim' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_SUBMODULES))


class _Package(types.ModuleType):
    """Importing the submodules ddim.generate and ddim.timesteps binds them on the package; keep the functions of those names instead."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("generate", "timesteps") and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from . import analytic, data, features, metrics, pipelines, testing  # noqa: F401
    from .config import PREDICTIONS, SPACINGS
    from .generate import Generated, generate
    from .interpolation import slerp
    from .methods import INVERSION_METHODS, METHODS
    from .models import SHIPPED, LoadedModel, load
    from .sampling import invert, sample
    from .schedule import NoiseSchedule
    from .timesteps import timesteps

__all__ = [
    "NoiseSchedule",
    "timesteps",
    "sample",
    "invert",
    "generate",
    "Generated",
    "METHODS",
    "SPACINGS",
    "INVERSION_METHODS",
    "PREDICTIONS",
    "load",
    "slerp",
    "LoadedModel",
    "SHIPPED",
    "analytic",
    "data",
    "metrics",
    "features",
    "__version__",
]
