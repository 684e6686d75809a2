"""Networks (diffusers ``UNet2DModel`` presets, a small MLP for 2-D data) and model folders.

A model folder is a diffusers pipeline folder, so ``DDPMPipeline.from_pretrained(folder)`` and
``DDIMPipeline.from_pretrained(folder)`` load it::

    folder/model_index.json
    folder/unet/config.json + diffusion_pytorch_model.safetensors
    folder/scheduler/scheduler_config.json
    folder/ddim_config.json      (ours: exact schedule, prediction type, training config; optional)

``load(name_or_path)`` reads our folders and any such folder made elsewhere, e.g. a local copy
of google/ddpm-cifar10-32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .prediction import check_prediction, network_output
from .schedule import NoiseSchedule

__all__ = ["PRESETS", "SHIPPED", "build_model", "save_model", "load", "LoadedModel", "MLPDenoiser", "Denoiser", "resolve_device"]

SHIPPED = ("digits", "digits-cond", "fashion-mnist")
_PRED_TO_DIFFUSERS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
_PRED_FROM_DIFFUSERS = {v: k for k, v in _PRED_TO_DIFFUSERS.items()}
_BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid"}


def _unet(size: int, channels: int, widths: tuple[int, ...], attention: tuple[bool, ...], layers: int, groups: int) -> dict:
    return dict(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=widths,
        layers_per_block=layers, norm_num_groups=groups,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
    )


# image presets: UNet2DModel configs; sizes must halve cleanly once per extra level
PRESETS: dict[str, dict[str, Any]] = {
    "digits": _unet(8, 1, (32, 64, 64), (False, True, False), 1, 16),      # 8x8 gray
    "mnist": _unet(28, 1, (32, 64, 128), (False, False, True), 1, 16),     # 28x28 gray
    # 28x28 gray, sized for a CPU budget (docs/fashion-mnist-model.md): attention only in the 7x7 mid block
    "fashion": _unet(28, 1, (32, 64, 64), (False, False, False), 1, 16),
    "cifar": _unet(32, 3, (64, 128, 128, 128), (False, True, False, False), 2, 32),
    "tiny": _unet(8, 1, (8, 16), (False, False), 1, 4),                    # tests
    "mlp": dict(hidden=256, depth=4, time_dim=64),                         # 2-D toy data
}


class MLPDenoiser(nn.Module):
    """A residual MLP with a sinusoidal time embedding, for vectors [B, D] (2-D toy sets)."""

    def __init__(self, dim: int = 2, hidden: int = 256, depth: int = 4, time_dim: int = 64, num_class_embeds: int | None = None):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden, depth=depth, time_dim=time_dim, num_class_embeds=num_class_embeds)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.classes = nn.Embedding(num_class_embeds, hidden) if num_class_embeds else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        emb = self.time(get_timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.config["time_dim"]).to(x.dtype))
        if self.classes is not None and class_labels is not None:
            emb = emb + self.classes(class_labels)
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def unet2d_class() -> type[nn.Module]:
    """diffusers' ``UNet2DModel``, imported without the packages around it where that works (about 1 s less on a CPU).

    ``diffusers.models.unets`` imports every UNet of diffusers, and its 2-D blocks pull in the whole
    ``diffusers.models.transformers`` package, though UNet2DModel needs two of its modules. While the one module
    loads, those two packages are stood in for by empty ones; they are then dropped, so a later ``import
    diffusers.models.unets`` runs their real ``__init__`` and reuses this very class. Any failure falls back to the
    plain import.
    """
    import importlib
    import sys
    import types

    if "diffusers.models.unets" in sys.modules:
        from diffusers import UNet2DModel

        return UNet2DModel
    try:
        import diffusers.models as models
    except Exception:  # let the plain import below raise the real error
        models = None
    stand_ins = []
    try:
        if models is None:
            raise ImportError("diffusers.models")
        for name in ("unets", "transformers"):
            full = f"{models.__name__}.{name}"
            if full not in sys.modules:
                stand_in = types.ModuleType(full)
                stand_in.__path__ = [str(Path(models.__path__[0]) / name)]
                sys.modules[full] = stand_in
                stand_ins.append(full)
        return importlib.import_module("diffusers.models.unets.unet_2d").UNet2DModel
    except Exception:
        pass
    finally:
        for full in stand_ins:
            sys.modules.pop(full, None)
    from diffusers import UNet2DModel

    return UNet2DModel


def build_model(preset: str, *, sample_shape: tuple[int, ...] | None = None, num_classes: int | None = None) -> nn.Module:
    """A fresh network for ``preset``; ``sample_shape`` adapts size/channels, ``num_classes`` adds labels."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = dict(PRESETS[preset])
    if preset == "mlp":
        dim = sample_shape[0] if sample_shape else 2
        return MLPDenoiser(dim=dim, num_class_embeds=num_classes, **config)
    UNet2DModel = unet2d_class()
    if sample_shape is not None:
        if len(sample_shape) != 3 or sample_shape[1] != sample_shape[2]:
            raise ValueError(f"image presets need square images [C, H, W], got {sample_shape}")
        config.update(in_channels=sample_shape[0], out_channels=sample_shape[0], sample_size=sample_shape[1])
        levels = len(config["block_out_channels"]) - 1
        if sample_shape[1] % (2**levels):
            raise ValueError(f"preset {preset!r} halves the image {levels} times; size {sample_shape[1]} is not divisible by {2**levels}")
    if num_classes:
        config["num_class_embeds"] = num_classes
    return UNet2DModel(**config)


# --------------------------------------------------------------------------- folders
def _diffusers_scheduler_config(schedule: NoiseSchedule, prediction: str) -> dict:
    cfg = dict(schedule.config)
    out: dict[str, Any] = dict(num_train_timesteps=len(schedule), prediction_type=_PRED_TO_DIFFUSERS[prediction], clip_sample=False)
    kind = cfg.get("kind")
    if kind in _BETA_SCHEDULES and kind != "cosine" and cfg.get("width", 6.0) == 6.0:
        out.update(beta_schedule=_BETA_SCHEDULES[kind], beta_start=cfg["beta_start"], beta_end=cfg["beta_end"])
    elif kind == "cosine" and cfg.get("s") == 0.008 and cfg.get("max_beta") == 0.999:
        out.update(beta_schedule="squaredcos_cap_v2")
    else:
        out.update(trained_betas=schedule.betas.tolist())
    out["rescale_betas_zero_snr"] = bool(cfg.get("zero_terminal_snr")) and "trained_betas" not in out
    return out


def schedule_from_diffusers(cfg: dict) -> NoiseSchedule:
    """The noise schedule a diffusers scheduler config describes (betas, beta_schedule, zero terminal SNR)."""
    T = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None:
        schedule = NoiseSchedule.from_betas(cfg["trained_betas"])
    else:
        kind = cfg.get("beta_schedule", "linear")
        start, end = cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02)
        if kind == "linear":
            schedule = NoiseSchedule.linear(T, start, end)
        elif kind == "scaled_linear":
            schedule = NoiseSchedule.scaled_linear(T, start, end)
        elif kind == "squaredcos_cap_v2":
            schedule = NoiseSchedule.cosine(T)
        elif kind == "sigmoid":
            schedule = NoiseSchedule.sigmoid(T, start, end)
        else:
            raise ValueError(f"unsupported beta_schedule {kind!r} in the scheduler config")
    return schedule.rescale_zero_terminal_snr() if cfg.get("rescale_betas_zero_snr") else schedule


def save_model(folder: str | Path, net: nn.Module, schedule: NoiseSchedule, prediction: str = "eps", extra: dict | None = None) -> Path:
    """Write ``net`` and its schedule as a diffusers pipeline folder (safetensors), plus ddim_config.json."""
    from diffusers import DDPMPipeline, DDPMScheduler

    folder = Path(folder)
    check_prediction(prediction)
    scheduler = DDPMScheduler(**_diffusers_scheduler_config(schedule, prediction))
    if isinstance(net, MLPDenoiser):
        from safetensors.torch import save_file

        (folder / "unet").mkdir(parents=True, exist_ok=True)
        (folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "MLPDenoiser", **net.config}, indent=2))
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "unet" / "diffusion_pytorch_model.safetensors")
        scheduler.save_pretrained(folder / "scheduler")
        index = {"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["ddim.models", "MLPDenoiser"]}
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    else:
        DDPMPipeline(unet=net, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)
    config = {"schedule": schedule.config, "prediction": prediction, **(extra or {})}
    (folder / "ddim_config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder


class Denoiser(nn.Module):
    """Wraps a network as ``model(x_t, t) -> Tensor`` (unwrapping ``.sample``); optional class labels."""

    def __init__(self, net: nn.Module, class_labels: Tensor | None = None) -> None:
        super().__init__()
        self.net, self.class_labels = net, class_labels

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        labels = class_labels if class_labels is not None else self.class_labels
        return network_output(self.net(x, t, class_labels=labels) if labels is not None else self.net(x, t))


@dataclass
class LoadedModel:
    """A model folder, ready to sample: ``model(x_t, t)``, its schedule, shape and prediction type."""

    model: Denoiser
    schedule: NoiseSchedule
    sample_shape: tuple[int, ...]
    prediction: str
    path: Path
    config: dict = field(default_factory=dict)
    num_classes: int | None = None
    null_class: int | None = None  # the "no label" class of a model trained with label dropout (guidance)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore the file from the original model folder") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _load_weights(path: Path, read):
    """Run ``read()``; a damaged or truncated weights file becomes one line that names it."""
    try:
        return read()
    except Exception as err:  # torch, diffusers and safetensors (SafetensorError) each raise their own kind
        if not isinstance(err, (OSError, ValueError, RuntimeError)) and type(err).__name__ != "SafetensorError":
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"cannot read the model's weights {path} ({reason}); the file is damaged or truncated: "
                         "copy it again from the original model folder (or retrain)") from None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """A usable torch device: ``None`` -> cuda if available, else cpu; a ValueError for unknown or absent ones."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no usable GPU"
            raise ValueError(f"device {device!r} is not available here (torch {torch.__version__}: {build}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


def shipped_path(name: str) -> Path:
    """Folder of a model shipped inside the package."""
    return Path(str(resources.files("ddim") / "pretrained" / name))


def shipped_name(folder: str | Path) -> str | None:
    """The name of the shipped model whose folder ``folder`` is, or None for any other folder."""
    try:
        resolved = Path(folder).resolve()
    except OSError:
        return None
    return next((name for name in SHIPPED if shipped_path(name).resolve() == resolved), None)


def load(name_or_path: str | Path = "digits", device: str | torch.device | None = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a shipped model by name (``ddim.SHIPPED``) or a diffusers-layout model folder (``device`` None: cuda if available)."""
    device = resolve_device(device)
    path = shipped_path(str(name_or_path)) if str(name_or_path) in SHIPPED else Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model folder at {path}; give a folder with model_index.json or one of: {', '.join(SHIPPED)}")
    if not path.is_dir() or not (path / "unet" / "config.json").is_file():
        raise ValueError(f"{path} is not a model folder: expected unet/config.json and scheduler/scheduler_config.json in it")
    if (path / "model_index.json").is_file():
        _read_json(path / "model_index.json")  # diffusers reads it: a damaged one must not pass silently
    ours = _read_json(path / "ddim_config.json") if (path / "ddim_config.json").is_file() else {}
    sched_file = path / "scheduler" / "scheduler_config.json"
    sched_cfg = _read_json(sched_file) if sched_file.is_file() else {}
    if "schedule" in ours:
        schedule = NoiseSchedule.from_config(ours["schedule"])
    elif sched_cfg:
        schedule = schedule_from_diffusers(sched_cfg)
    else:
        raise ValueError(f"{path} has no scheduler/scheduler_config.json, so its noise schedule is unknown")
    prediction = ours.get("prediction") or _PRED_FROM_DIFFUSERS.get(sched_cfg.get("prediction_type", "epsilon"))
    if prediction is None:
        raise ValueError(f"unsupported prediction_type {sched_cfg.get('prediction_type')!r} in {sched_file}")
    net_cfg = _read_json(path / "unet" / "config.json")
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file() and not (path / "unet" / "diffusion_pytorch_model.bin").is_file():
        raise FileNotFoundError(f"the model's weights {weights} are missing; copy the whole model folder again (or retrain it)")
    if net_cfg.get("_class_name") == "MLPDenoiser":
        from safetensors.torch import load_file

        args = {k: v for k, v in net_cfg.items() if not k.startswith("_")}
        net = MLPDenoiser(**args)
        _load_weights(weights, lambda: net.load_state_dict(load_file(weights)))
        shape: tuple[int, ...] = (args["dim"],)
        classes = args.get("num_class_embeds")
    else:
        net = _load_weights(weights, lambda: unet2d_class().from_pretrained(path / "unet"))
        size = net.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        shape, classes = (net.config.in_channels, h, w), net.config.num_class_embeds
    model = Denoiser(net).to(device=device, dtype=dtype).eval().requires_grad_(False)
    classes = ours.get("num_classes", classes)
    return LoadedModel(model, schedule, shape, prediction, path, ours, classes, ours.get("null_class"))

