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


def __getattr__(name: str):
    """``ddim.pipelines`` (diffusers schedulers and pipeline inversion) and ``ddim.testing`` load on first use."""
    if name in ("pipelines", "testing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ddim' has no attribute {name!r}")

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
