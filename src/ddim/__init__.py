"""ddim: fast, trustworthy diffusion sampling (DDPM and DDIM, inversion), in PyTorch.

The public contract (DESIGN.md section 3)::

    sched = ddim.NoiseSchedule.linear(1000)
    ts = ddim.timesteps(1000, 50, spacing="uniform")
    x0 = ddim.sample(model, sched, x_T, steps=50, eta=0.0)
    x_T = ddim.invert(model, sched, x0, steps=50)
    m = ddim.load("digits")       # the shipped model: m.model, m.schedule, m.sample_shape, m.prediction
"""

from . import analytic, data, features, metrics
from .interpolation import slerp
from .models import SHIPPED, LoadedModel, load
from .prediction import PREDICTIONS
from .sampling import INVERSION_METHODS, METHODS, invert, sample
from .schedule import NoiseSchedule
from .timesteps import SPACINGS, timesteps

__version__ = "0.1.0"

__all__ = [
    "NoiseSchedule",
    "timesteps",
    "sample",
    "invert",
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
