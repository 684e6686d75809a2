"""ddim: fast, trustworthy diffusion sampling (DDPM and DDIM, inversion), in PyTorch.

The public contract (DESIGN.md section 3)::

    sched = ddim.NoiseSchedule.linear(1000)
    ts = ddim.timesteps(1000, 50, spacing="uniform")
    x0 = ddim.sample(model, sched, x_T, steps=50, eta=0.0)
    x0 = ddim.sample(model, sched, x_T, steps=10, method="auto", spacing="auto")   # the measured best for 10 model calls
    x_T = ddim.invert(model, sched, x0, steps=50)
    m = ddim.load("digits")       # the shipped model: m.model, m.schedule, m.sample_shape, m.prediction
    images = ddim.generate(m, 16, seed=0, steps=10).images   # per-image seeds, batching, labels
"""

from . import analytic, data, features, metrics
from .generate import Generated, generate
from .interpolation import slerp
from .methods import INVERSION_METHODS, METHODS
from .models import SHIPPED, LoadedModel, load
from .prediction import PREDICTIONS
from .sampling import invert, sample
from .schedule import NoiseSchedule
from .timesteps import SPACINGS, timesteps

__version__ = "0.1.0"

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
