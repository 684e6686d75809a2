"""The names the library accepts and the settings of ``ddim train`` and ``ddim compare``, without torch.

Nothing here imports torch, so the command line builds its parser, answers ``--help`` and rejects a bad
argument in a fraction of a second; the modules that do the work (timesteps.py, schedule.py,
prediction.py, training.py, compare.py) import these names from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SPACINGS", "SCHEDULE_KINDS", "PREDICTIONS", "check_prediction", "TrainConfig", "RESUMABLE",
           "CompareConfig", "DEFAULT_STEPS", "DEFAULT_SAMPLERS"]

# timestep grids (timesteps.py documents each)
SPACINGS: tuple[str, ...] = ("uniform", "quadratic", "linspace", "trailing", "logsnr", "karras", "time-quadratic",
                              "quadratic-open", "quadratic-0.9", "quadratic-top")
SCHEDULE_KINDS: tuple[str, ...] = ("linear", "scaled_linear", "cosine", "sigmoid")  # NoiseSchedule's named constructors
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v")


def check_prediction(prediction: str) -> str:
    """Return ``prediction`` if it is a known type, else raise a ValueError naming the choices."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    return prediction


# --------------------------------------------------------------------------- ddim train
RESUMABLE = ("steps",)  # the only setting a resumed run takes from outside; the rest is the run's own


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as train_config.json and inside the model folder."""

    dataset: str = "digits"
    output: str = "runs/digits"
    preset: str | None = None  # default: by dataset (digits, fashion, cifar, mlp)
    steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (accelerate)
    prediction: str = "eps"
    schedule: str = "linear"
    T: int = 1000
    flip: bool = False
    image_size: int | None = None
    channels: int | None = None
    conditional: bool = False
    label_dropout: float = 0.1  # conditional only: share of labels replaced by the null class (for guidance)
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000  # 0 = no sample grids (also none at the end)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    grid_size: int = 64
    sample_steps: int = 50

    def validate(self) -> TrainConfig:
        """Check every field; messages name the field and its ``ddim train`` flag."""
        check_prediction(self.prediction)
        for name in ("steps", "batch_size", "grad_accum", "T", "log_every", "checkpoint_every", "grid_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name, meaning in (("keep_checkpoints", "keep all"), ("sample_every", "no sample grids"), ("warmup", "no warm-up")):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be 0 ({meaning}) or more, got {getattr(self, name)}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"{_flag('image_size')} must be a positive number of pixels, got {self.image_size}")
        if not self.lr > 0:
            raise ValueError(f"{_flag('lr')} must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"{_flag('ema_decay')} must lie in [0, 1), got {self.ema_decay}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"{_flag('label_dropout')} must lie in [0, 1), got {self.label_dropout}")
        if not self.grad_clip >= 0:
            raise ValueError(f"{_flag('grad_clip')} must be 0 (off) or positive, got {self.grad_clip}")
        if self.schedule not in SCHEDULE_KINDS:
            raise ValueError(f"unknown {_flag('schedule')} {self.schedule!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"{_flag('mixed_precision')} must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 1 <= self.sample_steps <= self.T:
            raise ValueError(f"sample_steps must lie in 1..{self.T}")
        if not -(2**63) <= self.seed < 2**63:
            raise ValueError(f"{_flag('seed')} must lie in -2^63..2^63-1, got {self.seed}")
        return self


def _flag(name: str) -> str:
    """A TrainConfig field as users meet it: 'batch_size (--batch-size)'."""
    return f"{name} (--{name.replace('_', '-')})"


# --------------------------------------------------------------------------- ddim compare
DEFAULT_STEPS = (10, 20, 50, 100, 1000)
DEFAULT_SAMPLERS = ("0", "0.2", "0.5", "1", "sigma-hat")


@dataclass
class CompareConfig:
    model: str = "digits"
    steps: tuple[int, ...] = DEFAULT_STEPS
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS   # DDIM eta values or method names
    spacing: str = "uniform"
    num_images: int = 500
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 500
    output: str = "ddim-compare"
    features: str | None = None      # feature-network folder or shipped name; default: by the model's dataset
    dataset: str | None = None       # real data for the reference; default: the model's training dataset
    reference_split: str = "auto"    # "auto": the test split if it has >= AUTO_TEST_MIN images (data the model never saw), else train
    consistency: int = 8             # latents in consistency.png
    inception: bool = False
    device: str | None = None
    cache_dir: str | None = None
    command: str = ""                # the command line, for the report
