"""The DDPM trainer, on Hugging Face accelerate (one CPU, one GPU, or many processes).

Objective: DDPM's simplified loss (Ho et al. 2020, eq. 14) on the chosen parameterisation,
|| target - net(x_t, t) ||^2 with x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t ~ U{0..T-1}.

Randomness is counter-based: the batch, timesteps and noise of step k on process r come from a
generator seeded by (seed, k, r). A resumed run therefore continues exactly as if never stopped
(model, EMA and optimizer come from the checkpoint; the random stream is a function of the step).

Output folder layout::

    OUTPUT/model_index.json, unet/, scheduler/, ddim_config.json   the EMA model (diffusers layout)
    OUTPUT/train_config.json    the config, used by --resume
    OUTPUT/log.csv              step, loss, lr, steps/s, images/s, elapsed wall seconds
    OUTPUT/samples/step-N.png   periodic sample grids from the EMA model
    OUTPUT/checkpoints/step-N/  accelerate state (model, optimizer, EMA, RNG); 'latest' names the newest
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from .config import RESUMABLE, TrainConfig
from .data import Dataset, load_dataset
from .files import ensure_writable_dir
from .models import build_model, save_model
from .prediction import eps_x0_to, network_output
from .schedule import NoiseSchedule

__all__ = ["TrainConfig", "train", "default_preset", "load_train_config", "RESUMABLE"]

def default_preset(data: Dataset) -> str:
    if not data.is_image:
        return "mlp"
    c, h, _ = data.sample_shape
    if h <= 8:
        return "digits"
    return "fashion" if c == 1 and h <= 28 else "cifar"


@dataclass
class _Run:
    """What a run derives from its config: the data, the network preset and classes, the schedule."""

    cfg: TrainConfig
    data: Dataset
    preset: str
    num_classes: int | None
    null_class: int | None  # the extra "no label" class of a model trained with label dropout (guidance)
    schedule: NoiseSchedule

    @classmethod
    def of(cls, cfg: TrainConfig) -> _Run:
        data = load_dataset(cfg.dataset, image_size=cfg.image_size, channels=cfg.channels, seed=cfg.seed)
        if cfg.conditional and data.labels is None:
            raise ValueError(f"--conditional needs labels, and {data.name} has none")
        num_classes = data.num_classes if cfg.conditional else None
        null_class = num_classes if num_classes and cfg.label_dropout > 0 else None
        schedule = getattr(NoiseSchedule, cfg.schedule)(cfg.T)
        return cls(cfg, data, cfg.preset or default_preset(data), num_classes, null_class, schedule)

    def build_network(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every process
        classes = None if not self.num_classes else self.num_classes + (self.null_class is not None)
        return build_model(self.preset, sample_shape=self.data.sample_shape, num_classes=classes)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Train (or resume) a DDPM per ``cfg``; return the output folder, which is a loadable model folder."""
    from accelerate import Accelerator
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    out = Path(cfg.output)
    if resume:
        cfg = _resume_config(out, cfg)
    cfg.validate()
    # without an accelerator, cpu=True lets several launched processes form a gloo (MULTI_CPU) group
    cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    acc = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum, cpu=cpu)
    if not resume:
        _check_output(out, overwrite)
    run = _Run.of(cfg)  # the data set and network load before anything is written
    net = run.build_network()
    if acc.is_main_process and not resume:
        _prepare_output(out, overwrite)
    acc.wait_for_everyone()
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True).to(acc.device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net, opt = acc.prepare(net, opt)
    acc.register_for_checkpointing(ema)
    start = _restore(acc, out) if resume else 0
    if acc.is_main_process:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    logger = _CsvLog(out / "log.csv", start) if acc.is_main_process else None
    x_all = run.data.data.to(acc.device)
    y_all = run.data.labels.to(acc.device) if run.num_classes else None
    bar = None
    if progress and acc.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"training {run.preset} on {run.data.name}", unit="step", dynamic_ncols=True)
    losses, tick, tick_step = [], time.perf_counter(), start
    for step in range(start, cfg.steps):
        for group in opt.param_groups:  # linear warm-up, then constant
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
        for micro in range(cfg.grad_accum):
            losses.append(_micro_step(acc, net, opt, run, x_all, y_all, step, micro))
        ema.update_parameters(acc.unwrap_model(net))
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            mean_loss = acc.gather(torch.stack(losses).mean().reshape(1)).mean().item()
            rate = (done - tick_step) / (time.perf_counter() - tick)
            images = rate * cfg.batch_size * cfg.grad_accum * acc.num_processes
            if logger:
                logger.write(done, mean_loss, opt.param_groups[0]["lr"], rate, images)
            if bar:
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{images:.0f}")
            losses, tick, tick_step = [], time.perf_counter(), done
        if bar:
            bar.update(1)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save_checkpoint(acc, out, done, cfg.keep_checkpoints)
            if acc.is_main_process:
                _save_model_folder(out, ema.module, run, done)
        if acc.is_main_process and cfg.sample_every and (done % cfg.sample_every == 0 or done == cfg.steps):
            _sample_grid(ema.module, run, out, out / "samples" / f"step-{done:07d}.png")
        if done == tick_step:  # keep saving and sampling out of the measured training rate
            tick = time.perf_counter()
    if bar:
        bar.close()
    acc.wait_for_everyone()
    acc.end_training()
    return out


def _micro_step(acc, net: nn.Module, opt, run: _Run, x_all: torch.Tensor, y_all: torch.Tensor | None, step: int, micro: int) -> torch.Tensor:
    """One micro-batch of DDPM's simplified loss (eq. 14): draw it from the counter-based stream, step the optimizer
    when the accumulation is complete; returns the (detached) loss."""
    cfg = run.cfg
    g = torch.Generator().manual_seed(_stream(cfg.seed, step, micro, acc.process_index))
    idx = torch.randint(len(x_all), (cfg.batch_size,), generator=g)
    t = torch.randint(cfg.T, (cfg.batch_size,), generator=g).to(acc.device)
    x0 = x_all[idx.to(acc.device)]
    noise = torch.randn(x0.shape, generator=g).to(acc.device)
    if cfg.flip and run.data.is_image:
        flip = (torch.rand(cfg.batch_size, generator=g) < 0.5).to(acc.device)
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    x_t = run.schedule.add_noise(x0, t, noise)
    target = eps_x0_to(noise, x0, run.schedule.alpha_bar_at(t, x0), cfg.prediction)
    labels = y_all[idx.to(acc.device)] if run.num_classes else None
    if run.null_class is not None:
        drop = (torch.rand(cfg.batch_size, generator=g) < cfg.label_dropout).to(acc.device)
        labels = torch.where(drop, torch.full_like(labels, run.null_class), labels)
    with acc.accumulate(net):
        with acc.autocast():
            pred = network_output(net(x_t, t, class_labels=labels) if run.num_classes else net(x_t, t))
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        acc.backward(loss)
        if acc.sync_gradients and cfg.grad_clip > 0:
            acc.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss.detach()


def _restore(acc, out: Path) -> int:
    """Load the latest checkpoint into the prepared objects; returns its step."""
    ckpt = _latest_checkpoint(out)
    acc.load_state(str(ckpt))
    return json.loads((ckpt / "step.json").read_text())["step"]


def _stream(seed: int, step: int, micro: int, rank: int) -> int:
    """A 63-bit seed for (seed, step, micro-batch, process): the counter-based random stream."""
    h = (seed * 1_000_003 + step) * 1_000_033 + micro * 7_919 + rank * 104_729
    return h % (2**63 - 1)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; give a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} is not empty; pass --resume to continue it or --overwrite to replace it")


def _prepare_output(out: Path, overwrite: bool) -> None:
    _check_output(out, overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    ensure_writable_dir(out)


def load_train_config(out: str | Path) -> TrainConfig:
    """The saved config of the run in ``out`` (its train_config.json)."""
    out = Path(out)
    saved = out / "train_config.json"
    if not saved.is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: no train_config.json (start a run there without --resume)")
    try:
        old = json.loads(saved.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{saved} is not valid JSON ({err}); the run cannot be resumed") from None
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in old.items() if k in known})
    cfg.output = str(out)
    return cfg


def _resume_config(out: Path, cfg: TrainConfig) -> TrainConfig:
    """A resumed run keeps its saved settings; only ``cfg.steps`` (``RESUMABLE``) may extend it."""
    merged = load_train_config(out)
    merged.steps = cfg.steps
    _latest_checkpoint(out)
    return merged


def _latest_checkpoint(out: Path) -> Path:
    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"no checkpoint in {out}/checkpoints to resume from")
    ckpt = out / "checkpoints" / pointer.read_text().strip()
    if not (ckpt / "step.json").is_file():
        raise ValueError(f"checkpoint {ckpt} is incomplete (no step.json)")
    return ckpt


def _save_checkpoint(acc, out: Path, step: int, keep: int) -> None:
    """Write accelerate state to a temporary folder, rename it into place, then move the 'latest' pointer.

    Each move is an atomic rename, so a crash at any point leaves the previous checkpoint and
    pointer intact (a half-written folder ends in .tmp and is ignored).
    """
    root = out / "checkpoints"
    name = f"step-{step:07d}"
    tmp = root / f"{name}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / "step.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(root / name, ignore_errors=True)
        tmp.rename(root / name)
        pointer_tmp = root / "latest.tmp"
        pointer_tmp.write_text(name)
        pointer_tmp.replace(root / "latest")
        old = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
        for p in old[:-keep] if keep > 0 else []:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()


def _save_model_folder(out: Path, net: nn.Module, run: _Run, step: int) -> None:
    extra = {"train": asdict(run.cfg), "dataset": run.data.name, "preset": run.preset, "num_classes": run.num_classes,
             "null_class": run.null_class, "trained_steps": step}
    save_model(out, net, run.schedule, run.cfg.prediction, extra)


@torch.no_grad()
def _sample_grid(net: nn.Module, run: _Run, out: Path, path: Path) -> None:
    """A grid of the model's samples (a scatter plot for 2-D data): DDIM, ``sample_steps`` uniform steps, fixed seeds."""
    from .generate import generate
    from .images import save_grid, save_scatter
    from .models import Denoiser, LoadedModel

    cfg, data = run.cfg, run.data
    was_training = net.training
    net.eval()
    m = LoadedModel(Denoiser(net), run.schedule, data.sample_shape, cfg.prediction, out, num_classes=run.num_classes, null_class=run.null_class)
    n = cfg.grid_size if data.is_image else 2000
    x0 = generate(m, n, seed=cfg.seed + 12345, batch_size=n, steps=cfg.sample_steps, method="ddim", spacing="uniform").images
    if data.is_image:
        save_grid(x0, path, nrow=int(n**0.5))
    else:
        save_scatter(x0, path, reference=data.data[:2000], title=path.stem)
    net.train(was_training)


class _CsvLog:
    COLUMNS = ("step", "loss", "lr", "steps_per_s", "images_per_s", "elapsed_s")

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.t0, self.offset = path, time.perf_counter(), 0.0
        rows = []
        if path.is_file() and start > 0:  # keep what was logged up to the resumed step
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
            self.offset = float(rows[-1].get("elapsed_s") or 0) if rows else 0.0
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.COLUMNS)
            w.writeheader()
            w.writerows(rows)

    def write(self, step: int, loss: float, lr: float, rate: float, images: float) -> None:
        with open(self.path, "a", newline="") as f:
            elapsed = self.offset + time.perf_counter() - self.t0
            csv.writer(f).writerow([step, f"{loss:.6f}", f"{lr:.3g}", f"{rate:.3f}", f"{images:.1f}", f"{elapsed:.1f}"])
