"""The ``ddim`` command: train, sample, info. Each subcommand parses, builds a config, calls one function."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


GRID_IMAGES = 1024  # grid.png shows at most the first this many images


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _add_train(sub) -> None:
    from .config import SCHEDULE_KINDS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a DDPM on a dataset", description="Train a DDPM (eps/x0/v objective) with EMA, checkpoints and sample grids.")
    p.add_argument("--dataset", default=d.dataset, help="digits (default), fashion-mnist, moons, swissroll, 8gaussians, a folder of images or of MNIST IDX files")
    p.add_argument("--output", default=d.output, help=f"run folder; becomes a loadable model folder (default {d.output})")
    p.add_argument("--preset", default=None, help="network preset: digits, fashion, mnist, cifar, tiny, mlp (default: by dataset: digits for 8x8, fashion for 28x28 gray, cifar for larger, mlp for 2-D)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps in total (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step and process (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate after warm-up (default {d.lr})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"linear warm-up steps (default {d.warmup})")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help=f"EMA decay of the saved weights (default {d.ema_decay})")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"gradient norm clip, 0 = off (default {d.grad_clip})")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default=d.mixed_precision, help="autocast precision of the network (default no)")
    p.add_argument("--prediction", choices=("eps", "x0", "v"), default=d.prediction, help="what the network predicts (default eps)")
    p.add_argument("--schedule", choices=SCHEDULE_KINDS, default=d.schedule, help="noise schedule (default linear, DDPM's 1e-4..0.02)")
    p.add_argument("--T", type=int, default=d.T, help=f"training steps of the diffusion (default {d.T})")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--image-size", type=int, default=None, help="resize and center-crop folder images to this size")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grayscale, 3 = RGB (default: from the images)")
    p.add_argument("--conditional", action="store_true", help="class-conditional network (datasets with labels)")
    p.add_argument("--label-dropout", type=float, default=d.label_dropout, help=f"conditional: share of labels dropped to the null class, for guidance (default {d.label_dropout}; 0 = none)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of weights, batches and noise (default 0)")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps per line of log.csv")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help=f"steps between sample grids; 0 = none, not even at the end (default {d.sample_every})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help=f"newest checkpoints kept on disk, 0 = all (default {d.keep_checkpoints})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output from its latest checkpoint with its saved settings (to its own --steps, or a new --steps)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, parser=p)


def _add_sample(sub) -> None:
    from .config import SPACINGS
    from .methods import METHODS

    p = sub.add_parser("sample", help="generate images from a model", description="Sample a model with DDIM, DDPM or sigma-hat; writes grid.png, samples.npz and optionally one PNG per image.")
    p.add_argument("model", nargs="?", default="digits", help="model folder, or the shipped model's name (default: digits)")
    p.add_argument("-n", "--num-images", type=int, default=64, help="how many images (default 64)")
    p.add_argument("--steps", type=int, default=50, help="sampler steps S, 1..T; with --method auto, model calls per image (default 50)")
    p.add_argument("--method", choices=["auto", *METHODS], default="auto",
                   help="auto (default: the best measured for --steps model calls, see docs/solvers.md), or one of: "
                   + "; ".join(f"{name} (order {meth.order}" + (", stochastic" if meth.stochastic else "")
                               + (f", {meth.calls_per_step} calls/step" if meth.calls_per_step > 1 else "") + ")" for name, meth in METHODS.items()))
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity in [0, 1]; 0 = deterministic (default)")
    p.add_argument("--spacing", choices=["auto", *SPACINGS, "optimized"], default="auto",
                   help="timestep grid: auto (default: with --method auto, the method's best grid), uniform (the DDIM paper's), quadratic, linspace, "
                   "trailing, logsnr (even in log-SNR), karras (EDM, rho 7), optimized (fitted by ddim optimize-grid)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i, so results do not depend on --batch-size")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default 256)")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class label for a class-conditional model (default: 0, 1, 2, ... in turn)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale for a conditional model (1 = conditional model alone, the default)")
    p.add_argument("--output", default="ddim-samples", help="output folder (default ddim-samples)")
    p.add_argument("--individual", action="store_true", help="also write one PNG per image to OUTPUT/images/")
    p.add_argument("--shard-size", type=int, default=1000,
                   help="images per shard (default 1000): shards are written to OUTPUT/shards/ as they finish, a rerun with the same settings "
                        "resumes, and under accelerate launch each process takes every N-th shard")
    p.add_argument("--keep-shards", action="store_true", help="keep OUTPUT/shards/ after samples.npz is written")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--compile", nargs="?", const="default", default=None, choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile the network (optionally the mode); the first call's compile time is reported on its own line")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="the network's precision (default float32); float16 / bfloat16 on CUDA only, the sampler's maths stays float32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a model folder", description="Print what a model folder holds: network, size, schedule, training.")
    p.add_argument("model", nargs="?", default="digits", help="model folder or shipped name (default: digits)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def _add_inputs(p, what: str) -> None:
    p.add_argument("model", nargs="?", default="digits", help="model folder or shipped name (default: digits)")
    p.add_argument("--images", nargs="+", default=None, help=f"image files to {what} (size and channels of the model)")
    p.add_argument("--dataset", default=None, help=f"or {what} images of a dataset (e.g. digits)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="dataset split (default test: held out)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps S, 1..T (default 50)")
    p.add_argument("--spacing", default="uniform", help="timestep grid (default uniform)")
    p.add_argument("--method", default="ddim", help="inversion method: ddim (plain) or fixed-point (exact)")
    p.add_argument("--iterations", type=int, default=3, help="fixed-point iterations per step (default 3: 4x the plain calls)")
    p.add_argument("--output", default=f"ddim-{what}", help=f"output folder (default ddim-{what})")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_invert(sub) -> None:
    p = sub.add_parser("invert", help="encode images into latents x_T and reconstruct them",
                       description="DDIM inversion: images -> latents x_T (latents.npz) -> reconstructions (reconstruction.png); prints the error.")
    _add_inputs(p, "invert")
    p.add_argument("-n", "--num-images", type=int, default=16, help="how many dataset images (default 16)")
    p.set_defaults(func=cmd_invert)


def _add_interpolate(sub) -> None:
    p = sub.add_parser("interpolate", help="decode a spherical interpolation between two latents",
                       description="Interpolate between two images (inverted first) or two seeds with slerp on x_T; writes a PNG strip.")
    _add_inputs(p, "interpolate")
    p.add_argument("--seeds", type=int, nargs=2, default=None, help="or two seeds: interpolate between their noise latents")
    p.add_argument("--latents", default=None, help="or a latents.npz written by 'ddim invert' (uses --index to pick two)")
    p.add_argument("--index", type=int, nargs=2, default=(0, 1), help="which two dataset images (default 0 1)")
    p.add_argument("--frames", type=int, default=9, help="images in the strip, ends included (default 9)")
    p.set_defaults(func=cmd_interpolate)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="FD / KID / precision / recall of samples against a dataset",
                       description="Score a samples.npz, a ddim sample output folder, or a folder of PNGs with the same feature network, "
                                   "reference and metrics as ddim compare.")
    p.add_argument("samples", help="samples.npz (ddim sample), a compare cell .npz, a ddim sample output folder, or a folder of PNG images")
    p.add_argument("--dataset", required=True, help="the real data to compare with (e.g. digits, fashion-mnist)")
    p.add_argument("--features", default=None, help="feature network folder or shipped name (default: the one for --dataset)")
    p.add_argument("--reference-split", choices=("auto", "train", "test"), default="auto",
                   help="reference split (default auto: the test split where it is large enough, as ddim compare)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_score)


def cmd_score(args) -> int:
    from .score import score

    result = score(args.samples, args.dataset, features=args.features, reference_split=args.reference_split)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['num_images']} images vs {result['dataset']} {result['split']} split ({result['features']} features): "
              f"FD {result['fd']:.4g}  KID {result['kid']:.4g}  precision {result['precision']:.3f}  recall {result['recall']:.3f}")
    return 0


def _add_compare(sub) -> None:
    from .config import DEFAULT_SAMPLERS, DEFAULT_STEPS, SPACINGS, CompareConfig

    d = CompareConfig()
    p = sub.add_parser(
        "compare", help="measure a model over step counts and samplers (DDIM vs DDPM)",
        description="Sample a model at every step count S and sampler (DDIM eta values, sigma-hat, ddpm); measure FD, KID, "
        "precision/recall with a classifier trained on the data, and time; write report.md, results.csv, plots and a "
        "consistency figure. Cells already in OUTPUT/cells are reused.",
    )
    p.add_argument("model", nargs="?", default=d.model, help="model folder or shipped name (default: digits)")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="step counts S (default 10 20 50 100 1000)")
    p.add_argument("--eta", nargs="+", default=list(DEFAULT_SAMPLERS), metavar="ETA|METHOD",
                   help="DDIM eta values and/or methods sigma-hat, ddpm (default 0 0.2 0.5 1 sigma-hat)")
    p.add_argument("--spacing", choices=SPACINGS, default=d.spacing, help="timestep grid (default uniform)")
    p.add_argument("-n", "--num-images", type=int, default=d.num_images, help=f"images per cell and seed (default {d.num_images})")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help="one run of the grid per seed; tables show the spread (default 0)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per model call (default {d.batch_size})")
    p.add_argument("--features", default=None, help="feature network folder or shipped name (default: the one for the model's dataset)")
    p.add_argument("--dataset", default=None, help="real data for the reference statistics (default: the model's training set)")
    p.add_argument("--reference-split", choices=("auto", "train", "test"), default=d.reference_split,
                   help="split of the real data: auto (default) = the test split when it has at least 1,000 images (unseen data), else train")
    p.add_argument("--consistency", type=int, default=d.consistency, help=f"latents in consistency.png (default {d.consistency}; 0 = none)")
    p.add_argument("--inception", action="store_true", help="also Inception FID (needs pytorch-fid and its weights on this machine)")
    p.add_argument("--output", default=d.output, help=f"output folder; reused cells live in OUTPUT/cells (default {d.output})")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)


def _add_train_classifier(sub) -> None:
    p = sub.add_parser(
        "train-classifier", help="train the feature network used by ddim compare",
        description="Train a small CNN classifier on a labelled image dataset; its penultimate layer is the feature space of FD/KID.",
    )
    p.add_argument("--dataset", default="digits", help="labelled image dataset (default digits)")
    p.add_argument("--output", required=True, help="folder for config.json and model.safetensors")
    p.add_argument("--epochs", type=int, default=60, help="passes over the training split (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing network in --output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_classifier)


def _add_optimize_grid(sub) -> None:
    p = sub.add_parser(
        "optimize-grid", help="fit a step grid to a model, method and step count",
        description="Fit the timestep grid of a deterministic sampler to a model; saves it in MODEL/grids.json (for a shipped model: in "
        "the user cache, ~/.cache/ddim/grids/NAME), where 'ddim sample --spacing optimized' and '--method auto' (for the method auto "
        "picks at that budget, ddim.policy.RECOMMENDED) read it. --search coordinate (default) moves one level at a time to minimise the "
        "error against a fine reference solution on a batch of noise; --search family draws with each grid of a small family "
        "(polynomial in time, quadratic, logsnr, karras) and keeps the one with the lowest FD against the model's data set.",
    )
    p.add_argument("model", nargs="?", default="digits", help="model folder or shipped name (default: digits)")
    p.add_argument("--method", default="unipc", help="deterministic method (default unipc), or auto with --search family: search "
                   "method x grid over --methods for what 'ddim sample --method auto' draws with at each budget")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="--method auto: the methods to try (default: unipc3 unipc3-bh2 ipndm3)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="step counts to fit, e.g. 5 10 20 (model calls with --method auto)")
    p.add_argument("--images", type=int, default=128, help="noise samples in the fitting batch and in the check batch (default 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fitting batch; the check batch uses seed + 1")
    p.add_argument("--reference-steps", type=int, default=200, help="steps of the fine reference solution (default 200)")
    p.add_argument("--search", choices=("coordinate", "family"), default="coordinate",
                   help="coordinate: minimise the error against a reference solution (default); family: lowest FD on the data set")
    p.add_argument("--dataset", help="--search family: the data set to score against (default: the one the model was trained on)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_optimize_grid)


def _add_explore(sub) -> None:
    p = sub.add_parser("explore", help="a local web page that shows DDIM at work (needs ddim[explore])",
                       description="Start a local Gradio page with tabs to sample, compare DDIM with DDPM, invert, interpolate and guide "
                       "the given models; serves http://127.0.0.1:PORT until Ctrl-C. Needs: pip install 'ddim[explore]'.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model folders or shipped names (default: digits, digits-cond, fashion-mnist)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default; it sends the page through Gradio's servers)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.set_defaults(func=cmd_explore)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ddim")
    except PackageNotFoundError:  # running from a source tree that was never installed
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddim", description="Diffusion models: train DDPMs, sample them with DDIM/DDPM, inspect model folders.")
    parser.add_argument("--version", action="version", version=f"ddim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,invert,interpolate,info,compare,score,train-classifier,optimize-grid,explore}")
    _add_train(sub)
    _add_sample(sub)
    _add_invert(sub)
    _add_interpolate(sub)
    _add_info(sub)
    _add_compare(sub)
    _add_score(sub)
    _add_train_classifier(sub)
    _add_optimize_grid(sub)
    _add_explore(sub)
    for command in sub.choices.values():
        command.add_argument("--threads", type=_threads, default=None,
                             help="CPU threads for torch (default: torch's choice, which honours OMP_NUM_THREADS); on a busy machine fewer can be "
                                  "faster (docs/benchmarks/cpu-settings.md)")
    return parser


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be a positive integer, got {text!r}")
    return n


# --------------------------------------------------------------------------- commands
def _given(args) -> list[str]:
    """The destinations of the options written on the command line (not left at their defaults)."""
    given = []
    for action in args.parser._actions:
        if any(tok == opt or tok.startswith(opt + "=") for opt in action.option_strings for tok in args.argv):
            given.append(action.dest)
    return given


def cmd_train(args) -> int:
    import dataclasses

    from .training import RESUMABLE, TrainConfig, load_train_config, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if args.resume:
        cfg = load_train_config(args.output)
        saved = Path(args.output) / "train_config.json"
        for dest in _given(args):
            if dest in fields and dest not in RESUMABLE and dest != "output" and getattr(args, dest) != getattr(cfg, dest):
                flag = "--" + dest.replace("_", "-")
                raise CliError(f"{flag} {getattr(args, dest)} conflicts with the run's saved {getattr(cfg, dest)} ({saved}): a resumed run "
                               f"keeps its settings; drop {flag}, or start a new run in another --output")
        if "steps" in _given(args):
            cfg.steps = args.steps
    else:
        cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    out = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model folder: {out}")
    return 0


def _check_output(folder: Path, names: list[str], overwrite: bool) -> None:
    taken = [n for n in names if (folder / n).exists()]
    if taken and not overwrite:
        raise CliError(f"{folder / taken[0]} already exists; pass --overwrite or choose another --output")
    from .files import ensure_writable_dir

    ensure_writable_dir(folder)


def _processes(device: str | None):
    """(rank, world size, barrier, device): one process, or the group ``accelerate launch`` started."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, (lambda: None), device
    import torch
    from accelerate import PartialState

    # without an accelerator (or with --device cpu), cpu=True lets the launched processes form a gloo group
    state = PartialState(cpu=device == "cpu" or not (torch.cuda.is_available() or torch.backends.mps.is_available()))
    # accelerate says "cpu:0"; a model moved to cpu:0 computes a batch of one differently (float32 rounding) from one on "cpu"
    own = "cpu" if state.device.type == "cpu" else state.device
    return state.process_index, state.num_processes, state.wait_for_everyone, (device or own)


def _compile(m, mode: str, batch: int, quiet: bool = False) -> None:
    """torch.compile ``m.model`` in place and make its first call (one batch of zeros) so the compile time shows apart from sampling."""
    import time

    import torch

    start = time.perf_counter()
    m.model = torch.compile(m.model, mode=None if mode == "default" else mode)
    param = next(m.model.parameters())
    x = torch.zeros((batch, *m.sample_shape), device=param.device, dtype=param.dtype)
    t = torch.full((batch,), len(m.schedule) - 1, device=param.device)
    extra = {"class_labels": torch.zeros(batch, dtype=torch.long, device=param.device)} if m.num_classes else {}
    with torch.inference_mode():
        m.model(x, t, **extra)
    if not quiet:
        print(f"torch.compile ({mode}): {time.perf_counter() - start:.1f} s for the first call (batch {batch}); "
              "another batch size or guidance's doubled batch compiles again", file=sys.stderr)


def cmd_sample(args) -> int:
    import shutil

    import numpy as np
    import torch

    from .generate import check_request, generate, plan
    from .images import save_grid, save_png, save_scatter, to_uint8
    from .models import load
    from .timesteps import timesteps

    if args.num_images < 1:
        raise CliError(f"--num-images must be at least 1, got {args.num_images}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.shard_size < 1:
        raise CliError(f"--shard-size must be at least 1, got {args.shard_size}")
    sampler = dict(steps=args.steps, eta=args.eta, method=args.method, spacing=args.spacing)
    check_request(args.num_images, seed=args.seed, batch_size=args.batch_size, guidance=args.guidance, **sampler)  # before the model loads
    rank, world, barrier, device = _processes(args.device)
    from .models import resolve_device

    if args.dtype != "float32" and resolve_device(device).type == "cpu":
        raise CliError(f"--dtype {args.dtype} is refused on CPU: half-precision networks run slower than float32 there (bfloat16 measured "
                       "8-14x slower on an AVX2 CPU); use --dtype float32, or a CUDA device")
    m = load(args.model, device=device, dtype=getattr(torch, args.dtype))
    choice = plan(m, **sampler, class_label=args.class_label, guidance=args.guidance)  # every check before anything is written
    if args.compile:
        _compile(m, args.compile, min(args.batch_size, args.num_images), quiet=rank != 0)
    grid_steps = list(choice.timesteps or timesteps(len(m.schedule), choice.steps, choice.spacing, m.schedule.alphas_cumprod).tolist())
    out, n, size = Path(args.output), args.num_images, args.shard_size
    shards = out / "shards"
    _check_output(out, ["grid.png", "samples.npz"] + (["images"] if args.individual else []), args.overwrite)
    run = dict(model=str(m.path), num_images=n, seed=args.seed, method=choice.method, spacing=choice.spacing, timesteps=grid_steps, eta=args.eta,
               class_label=args.class_label, guidance=args.guidance, shard_size=size, batch_size=args.batch_size)
    if not args.overwrite and (shards / "run.json").is_file():
        try:
            saved = json.loads((shards / "run.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if saved != run:
            diff = sorted(k for k in run if saved is None or saved.get(k) != run[k])
            raise CliError(f"{shards} holds the shards of a different run (differs in: {', '.join(diff)}); pass the same settings to resume it, "
                           "or --overwrite, or another --output")
    barrier()
    if rank == 0:
        if args.overwrite and shards.exists():
            shutil.rmtree(shards)
        shards.mkdir(parents=True, exist_ok=True)
        (shards / "run.json").write_text(json.dumps(run, indent=1))
    barrier()
    count = -(-n // size)
    mine = [j for j in range(count) if j % world == rank and not (shards / f"{j:06d}.npz").is_file()]  # a rerun skips finished shards
    bar = None
    if not args.no_progress and rank == 0 and mine:
        from tqdm.auto import tqdm

        batches = sum(-(-(min(n, (j + 1) * size) - j * size) // args.batch_size) for j in mine)
        bar = tqdm(total=batches * choice.steps, desc=f"{choice.method} S={choice.steps} ({choice.spacing})", unit="step", dynamic_ncols=True)
    for j in mine:
        lo, hi = j * size, min(n, (j + 1) * size)
        result = generate(m, hi - lo, seed=args.seed, first=lo, batch_size=args.batch_size, **sampler, class_label=args.class_label,
                          guidance=args.guidance, on_step=(lambda k: bar.update(1)) if bar else None)
        tmp = shards / f".{j:06d}.rank{rank}.npz"
        np.savez(tmp, samples=result.images.numpy())
        os.replace(tmp, shards / f"{j:06d}.npz")  # atomic: a shard is there whole or not at all
    if bar:
        bar.close()
    barrier()
    if rank != 0:
        return 0
    x0 = torch.cat([torch.from_numpy(np.load(shards / f"{j:06d}.npz")["samples"]) for j in range(count)])
    np.savez_compressed(out / "samples.npz", samples=x0.numpy(), seed=args.seed, steps=choice.steps, eta=args.eta, method=choice.method,
                        spacing=choice.spacing, timesteps=np.array(grid_steps))
    if len(m.sample_shape) == 3:
        grid = save_grid(x0[:GRID_IMAGES], out / "grid.png")
        if args.overwrite:  # the replaced run's one-PNG-per-image files would sit stale beside the new samples.npz
            for stale in (out / "images").glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
                stale.unlink()
        if args.individual:
            for i, pix in enumerate(to_uint8(x0)):
                save_png(pix, out / "images" / f"{i:06d}.png")
    else:
        grid = save_scatter(x0, out / "grid.png", title=f"{choice.method} S={choice.steps}")
    if not args.keep_shards:
        shutil.rmtree(shards)
    print(grid)
    return 0


def _inputs(args, m, count: int, pick=None):
    """The images a command works on, from --images or --dataset, checked against the model."""
    import torch

    from .data import images_for_model, load_dataset

    if (args.images is None) == (args.dataset is None):
        raise CliError("give either --images FILE [FILE ...] or --dataset NAME")
    if args.images is not None:
        return images_for_model(args.images, m.sample_shape)
    data = load_dataset(args.dataset, split=args.split)
    if data.sample_shape != m.sample_shape:
        raise CliError(f"{data.name} images are {data.sample_shape}, but the model expects {m.sample_shape}")
    if pick is None and count > len(data):
        raise CliError(f"--num-images {count} is more than the {len(data)} images of {data.name}; ask for at most {len(data)}")
    idx = list(pick) if pick is not None else list(range(count))
    if max(idx) >= len(data) or min(idx) < 0:
        raise CliError(f"--index must lie in 0..{len(data) - 1}")
    return data.data[torch.tensor(idx)]


def _invert_args(args, m) -> dict:
    from .methods import INVERSION_METHODS
    from .sampling import check_steps
    from .timesteps import SPACINGS

    if len(m.sample_shape) != 3:
        raise CliError(f"ddim {args.command} works on image models; {m.path} samples vectors of shape {tuple(m.sample_shape)} "
                       "(use ddim.invert / ddim.slerp from Python for those)")
    if args.method not in INVERSION_METHODS:
        raise CliError(f"unknown --method {args.method!r}; choose one of {', '.join(INVERSION_METHODS)}")
    if args.spacing not in SPACINGS:
        raise CliError(f"unknown --spacing {args.spacing!r}; choose one of {', '.join(SPACINGS)}")
    if args.iterations < 0:
        raise CliError(f"--iterations must be 0 or more, got {args.iterations}")
    check_steps(args.steps, len(m.schedule))
    return dict(steps=args.steps, spacing=args.spacing, prediction=m.prediction, method=args.method, iterations=args.iterations)


def cmd_invert(args) -> int:
    import numpy as np
    import torch

    from .images import make_grid, save_png
    from .models import load
    from .sampling import invert, sample

    m = load(args.model)
    kwargs = _invert_args(args, m)
    if args.num_images < 1:
        raise CliError(f"--num-images must be at least 1, got {args.num_images}")
    x0 = _inputs(args, m, args.num_images)
    out = Path(args.output)
    _check_output(out, ["latents.npz", "reconstruction.png"], args.overwrite)
    with torch.no_grad():
        x_T = invert(m.model, m.schedule, x0, progress=not args.no_progress, **kwargs)
        back = sample(m.model, m.schedule, x_T, steps=args.steps, spacing=args.spacing, prediction=m.prediction, progress=not args.no_progress)
    mse = (((back.clamp(-1, 1) - x0) / 2) ** 2).mean().item()  # pixels in [0, 1], as the DDIM paper's Table 2
    np.savez_compressed(out / "latents.npz", latents=x_T.numpy(), inputs=x0.numpy(), steps=args.steps, spacing=args.spacing, method=args.method)
    png = save_png(make_grid(torch.cat([x0, back]), nrow=len(x0), scale=max(1, 64 // x0.shape[-1])), out / "reconstruction.png")
    print(f"per-dimension MSE of the reconstruction (pixels in [0, 1]): {mse:.3g}")
    print(png)
    return 0


def cmd_interpolate(args) -> int:
    import torch

    from .images import make_grid, save_png
    from .interpolation import slerp
    from .models import load
    from .sampling import invert, sample

    m = load(args.model)
    kwargs = _invert_args(args, m)
    if args.frames < 2:
        raise CliError(f"--frames must be at least 2, got {args.frames}")
    out = Path(args.output)
    sources = [args.seeds is not None, args.latents is not None, args.images is not None or args.dataset is not None]
    if sum(sources) > 1:
        raise CliError("give one source of the two end points: --seeds, --latents, or images (--images / --dataset)")
    z = x0 = None
    if args.seeds is not None:
        from .generate import image_seeds, noise

        z, _ = noise(m.sample_shape, image_seeds(2, seeds=args.seeds))
    elif args.latents is not None:
        z = _read_latents(Path(args.latents), m, args.index)
    else:
        x0 = _inputs(args, m, 2, pick=args.index)
        if len(x0) != 2:
            raise CliError(f"interpolation needs exactly two images, got {len(x0)}")
    _check_output(out, ["interpolation.png"], args.overwrite)  # every input checked: only now is anything written
    if z is None:
        with torch.no_grad():
            z = invert(m.model, m.schedule, x0, progress=not args.no_progress, **kwargs)
    path = slerp(z[0], z[1], torch.linspace(0, 1, args.frames))
    with torch.no_grad():
        frames = sample(m.model, m.schedule, path, steps=args.steps, spacing=args.spacing, prediction=m.prediction, progress=not args.no_progress)
    png = save_png(make_grid(frames, nrow=args.frames, scale=max(1, 64 // frames.shape[-1])), out / "interpolation.png")
    print(png)
    return 0


def _read_latents(path: Path, m, index):
    """Two latents from a latents.npz of 'ddim invert', checked against the model's sample shape."""
    import numpy as np
    import torch

    if not path.is_file():
        raise CliError(f"no latent file {path}")
    try:
        latents = np.load(path)["latents"]
    except (OSError, ValueError, KeyError) as err:
        raise CliError(f"{path} is not a latents.npz written by 'ddim invert' ({err})") from None
    if tuple(latents.shape[1:]) != tuple(m.sample_shape):
        raise CliError(f"latents in {path} have shape {tuple(latents.shape[1:])}, but this model samples {tuple(m.sample_shape)}")
    if not all(0 <= i < len(latents) for i in index):
        raise CliError(f"--index must lie in 0..{len(latents) - 1} for {path}")
    return torch.from_numpy(latents[list(index)]).float()


def cmd_info(args) -> int:
    from .models import load

    m = load(args.model)
    train = m.config.get("train", {})
    info = {
        "path": str(m.path),
        "network": type(m.model.net).__name__,
        "parameters": m.num_parameters,
        "sample_shape": list(m.sample_shape),
        "prediction": m.prediction,
        "schedule": m.schedule.name,
        "T": len(m.schedule),
        "classes": m.num_classes,
        "dataset": m.config.get("dataset"),
        "trained_steps": m.config.get("trained_steps"),
        "batch_size": train.get("batch_size"),
        "fitted_grids": _fitted_grids(m.path),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            if v is not None:
                print(f"{k:<{width}}  {v}")
    return 0


def _fitted_grids(folder) -> str | None:
    """'unipc S=5 8; auto calls=5': the fitted grids that --method auto / --spacing optimized read (ddim info)."""
    from .optimized_grid import adopted_grids

    return "; ".join(f"{method} {'calls' if method == 'auto' else 'S'}=" + " ".join(map(str, steps))
                     for method, steps in adopted_grids(folder).items()) or None


def cmd_compare(args) -> int:
    import shlex

    from .compare import CompareConfig, compare

    cfg = CompareConfig(
        model=args.model, steps=tuple(args.steps), samplers=tuple(args.eta), spacing=args.spacing, num_images=args.num_images,
        seeds=tuple(args.seeds), batch_size=args.batch_size, output=args.output, features=args.features, dataset=args.dataset,
        reference_split=args.reference_split, consistency=args.consistency, inception=args.inception, device=args.device,
        command="ddim " + shlex.join(args.argv),
    )
    compare(cfg, progress=not args.no_progress)
    return 0


def cmd_optimize_grid(args) -> int:
    import torch

    from .files import ensure_writable_dir
    from .methods import get_method
    from .models import load
    from .optimized_grid import AUTO_KEY, AUTO_METHODS, check_methods, grids_file, optimize_grid, pick_grid, save_grid
    from .policy import recommended
    from .timesteps import timesteps

    if args.method == "auto":
        if args.search != "family":
            raise CliError("--method auto searches method x grid by FD: add --search family")
        methods = args.methods or list(AUTO_METHODS)
    elif args.methods:
        raise CliError("--methods is for --method auto (a method x grid search); with one --method, leave it out")
    else:
        methods = [args.method]
    for name in methods:
        get_method(name)
    if args.images < 2:
        raise CliError(f"--images must be at least 2, got {args.images}")
    m = load(args.model)
    if m.num_classes:
        raise CliError("optimize-grid fits unconditional models; this one is class-conditional")
    for steps in args.steps:
        check_methods(methods, steps, len(m.schedule), args.reference_steps, equal_calls=args.method == "auto")
    if args.search == "family":
        score = _data_score(args.dataset or m.config.get("train", {}).get("dataset"), m.sample_shape, args.images)
    ensure_writable_dir(grids_file(m.path).parent)
    fit, check = (torch.randn(args.images, *m.sample_shape, generator=torch.Generator().manual_seed(args.seed + k)) for k in (0, 1))
    for steps in args.steps:
        if args.search == "family":
            method, table = recommended(steps)  # what auto draws with without a fitted grid, as the baseline
            if args.method != "auto":  # (its grid where auto picks this method, else logsnr)
                method, table = args.method, (table if method == args.method else "logsnr")
            r = pick_grid(m.model, m.schedule, steps, methods, fit, check, score, prediction=m.prediction, baseline_method=method,
                          baseline=timesteps(len(m.schedule), steps, table, m.schedule.alphas_cumprod).tolist(), progress=not args.no_progress)
            r["baseline_spacing"], r["command"] = table, "ddim " + " ".join(args.argv)
            path = save_grid(m.path, AUTO_KEY if args.method == "auto" else args.method, steps, r)
            best = min(r["fit_scores"], key=r["fit_scores"].get)
            base = f"{method} on {table}" if args.method == "auto" else f"the {table} grid"
            kept = f"kept {base} ({best} did not beat it by 5% on the check batch)" if r["choice"] != best else (
                f"kept {best}" + (f" ({base})" if (r["method"], r["grid"]) == (r["baseline_method"], r["baseline"]) else ""))
            print(f"{args.method} {'calls' if args.method == 'auto' else 'S'}={steps}: {kept}: {r['grid']}; FD on the fit batch "
                  f"{r['fit_scores'][best]:.4g} (family worst {max(r['fit_scores'].values()):.4g}), on the check batch {r['check_score']:.4g} "
                  f"vs {base}'s {r['baseline_check_score']:.4g}; saved in {path}")
            continue
        r = optimize_grid(m.model, m.schedule, steps, args.method, fit, check, prediction=m.prediction,
                          reference_steps=args.reference_steps, progress=not args.no_progress)
        r["command"] = "ddim " + " ".join(args.argv)
        path = save_grid(m.path, args.method, steps, r)
        print(f"{args.method} S={steps}: {r['grid']}; error vs reference, fit batch {r['fit_loss_logsnr']:.4g} -> {r['fit_loss']:.4g}, "
              f"check batch {r['check_loss_logsnr']:.4g} -> {r['check_loss']:.4g} (logsnr grid -> fitted); saved in {path}")
    return 0


def _data_score(dataset: str | None, shape, images: int):
    """samples -> FD against ``dataset``'s training split, with the data set's shipped feature network."""
    from .features import features_for_dataset
    from .metrics import frechet_distance, gaussian_stats, reference_features

    if not dataset:
        raise CliError("--search family scores grids by FD against a data set, and this model folder does not say which it was trained on; "
                       "pass --dataset NAME")
    if images < 16:
        raise CliError(f"--search family needs at least 16 --images for an FD, got {images}")
    try:
        net = features_for_dataset(dataset)
    except ValueError as err:
        raise CliError(str(err)) from None
    if tuple(net.image_shape) != tuple(shape):
        raise CliError(f"the feature network for {dataset!r} takes images {tuple(net.image_shape)}, the model draws {tuple(shape)}; "
                       "pass the --dataset the model was trained on")
    mu, cov = gaussian_stats(reference_features(dataset, net, "train"))
    return lambda x: frechet_distance(*gaussian_stats(net.embed(x)), mu, cov)


def cmd_train_classifier(args) -> int:
    import shlex

    from .features import save_features, train_classifier

    out = Path(args.output)
    _check_output(out, ["model.safetensors", "config.json"], args.overwrite)
    if args.epochs < 1:
        raise CliError(f"--epochs must be at least 1, got {args.epochs}")
    net, info = train_classifier(args.dataset, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    info["command"] = "ddim " + shlex.join(args.argv)
    save_features(net, out, info)
    print(f"held-out accuracy {info['test_accuracy']:.2%} ({info['test_images']} images), training accuracy {info['train_accuracy']:.2%}; wrote {out}")
    return 0


def cmd_explore(args) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must lie in 0..65535 (0: any free port), got {args.port}")
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise CliError(f"ddim explore needs gradio ({err}): pip install 'ddim[explore]'") from None
    from .explore_page import launch

    try:
        launch(args.models or None, host=args.host, port=args.port, share=args.share, device=args.device)
    except OSError as err:
        if "port" not in str(err).lower():
            raise
        raise CliError(f"cannot serve on {args.host}:{args.port} (taken?); pass another --port, or --port 0 for any free one") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (CliError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as err:
        print(f"ddim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
