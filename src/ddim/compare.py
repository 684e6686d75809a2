"""``ddim compare``: sample a model over a grid of step counts and samplers, measure, report.

For every seed, sampler (DDIM eta values, ``sigma-hat``, ``ddpm``) and step count S, one *cell*
samples ``num_images`` images; image i of seed s starts from the noise of generator seed
``s * 1_000_000 + i`` (its per-step noise too), so every cell of a seed starts from the same
x_T and differences between cells are not sampling noise in x_T. Each cell's images (8-bit) and
timing are saved in ``OUTPUT/cells/``; a repeated or interrupted run reuses every cell whose
settings match. Metrics are recomputed from the saved images on every run (they are cheap):

    FD-<net>    Frechet distance between feature Gaussians of samples and of the real data
    KID-<net>   unbiased kernel distance (x 1e3 in tables), expectation 0 for a perfect model
    precision / recall   k-NN manifold estimates (k = 3)
    s/image, calls/image wall time of sampling and model evaluations per image

Outputs: results.csv (one row per cell and seed), report.md (tables in the DDIM paper's
layout, rows = sampler, columns = S, mean and spread over seeds), metrics_vs_steps.png,
fd_vs_time.png and consistency.png (one x_T per column, decoded with eta = 0 at every S).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .compare_report import plot_metrics, write_csv, write_report
from .config import CompareConfig
from .features import FeatureNet
from .images import from_pixels, to_pixels
from .metrics import frechet_distance, gaussian_stats, reference_features, sample_metrics
from .sampling import check_eta

__all__ = ["CompareConfig", "compare", "parse_sampler", "SEED_STRIDE"]

SEED_STRIDE = 1_000_000  # image i of seed s uses generator seed s * SEED_STRIDE + i
AUTO_TEST_MIN = 1000  # a test split at least this large is the default reference (digits' 179 are too few)


def parse_sampler(spec: str) -> tuple[str, float, str]:
    """'0.5' -> DDIM with eta 0.5; 'sigma-hat' / 'ddpm' / 'ddim' -> that method. Returns (method, eta, label)."""
    from .methods import METHODS

    if spec in METHODS:
        return spec, 0.0, {"sigma-hat": "σ̂", "ddpm": "DDPM", "ddim": "0.0"}.get(spec, spec)
    try:
        eta = float(spec)
    except ValueError:
        raise ValueError(f"sampler {spec!r} is neither a DDIM eta (a number in [0, 1]) nor a method ({', '.join(METHODS)})") from None
    eta = check_eta(eta, "ddim")
    return "ddim", eta, f"{eta:.1f}" if round(eta, 1) == eta else f"{eta:g}"


def _fingerprint(path: Path) -> str:
    import hashlib

    files = sorted(path.glob("unet/*.safetensors")) or sorted(path.glob("unet/*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _sample_cell(m, method: str, eta: float, steps: int, spacing: str, n: int, seed: int, batch_size: int, device, bar) -> tuple[np.ndarray, float, float]:
    """One cell: 8-bit images [n, C, H, W], seconds per image, network evaluations per image."""
    from .generate import generate

    r = generate(m, n, seeds=[seed * SEED_STRIDE + i for i in range(n)], batch_size=batch_size, steps=steps, eta=eta, method=method,
                 spacing=spacing, device=device, on_step=bar.update if bar is not None else None)
    return to_pixels(r.images).numpy(), r.seconds / n, r.calls


def _cell_name(method: str, eta: float, steps: int, seed: int) -> str:
    tag = method if method != "ddim" else f"eta{eta:g}"
    return f"{tag}-S{steps}-seed{seed}"


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    return f"{cpu}; {os.cpu_count()} cores; {dev}; torch {torch.__version__}; Python {sys.version.split()[0]}"


def compare(cfg: CompareConfig, progress: bool = True, log=print) -> Path:
    """Run (or resume) the grid and write every output; returns the output folder."""
    from .features import features_for_dataset, load_features
    from .files import ensure_writable_dir
    from .models import load

    samplers = [parse_sampler(s) for s in cfg.samplers]
    if len({(m, e) for m, e, _ in samplers}) != len(samplers):
        raise ValueError(f"the same sampler is listed twice in {list(cfg.samplers)}")
    if not cfg.steps or not samplers or not cfg.seeds:
        raise ValueError("give at least one step count, one sampler and one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds repeat: {list(cfg.seeds)}")
    if cfg.num_images < 4:
        raise ValueError(f"--num-images must be at least 4 (metrics need a few samples), got {cfg.num_images}")
    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    m = load(cfg.model, device=cfg.device)
    device = str(next(m.model.parameters()).device)
    from .generate import image_seeds, plan

    for seed in cfg.seeds:
        image_seeds(cfg.num_images, seeds=[seed * SEED_STRIDE + i for i in range(cfg.num_images)])

    for method, eta, _ in samplers:  # every cell's settings, before the first is sampled
        for steps in cfg.steps:
            plan(m, steps=steps, eta=eta, method=method, spacing=cfg.spacing)
    if m.num_classes:
        raise ValueError("ddim compare measures unconditional models; this one is class-conditional")
    dataset = cfg.dataset or m.config.get("train", {}).get("dataset") or str(m.config.get("dataset", "")).removesuffix("-train") or None
    if not dataset:
        raise ValueError(f"{m.path} does not say which dataset it was trained on; pass --dataset")
    net: FeatureNet = load_features(cfg.features) if cfg.features else features_for_dataset(dataset)
    if tuple(net.image_shape) != tuple(m.sample_shape):
        raise ValueError(f"feature network {net.name!r} takes images {tuple(net.image_shape)} but the model makes {tuple(m.sample_shape)}")
    split = reference_split(dataset, cfg.reference_split)
    inception = None
    if cfg.inception:
        from .features import inception_features

        inception = inception_features  # fails early, before sampling, if unavailable
        from .data import load_dataset

        ref_inception = gaussian_stats(inception(load_dataset(dataset, split=split).data, device=device))

    out = Path(cfg.output)
    ensure_writable_dir(out / "cells")
    real = reference_features(dataset, net, split, cfg.cache_dir)
    mu_r, cov_r = gaussian_stats(real)
    model_fp = _fingerprint(m.path)

    grid = [(seed, spec, steps) for seed in cfg.seeds for spec in samplers for steps in sorted(cfg.steps)]
    meta_of, cached = {}, {}  # per cell: its settings, and its saved images if they match them (read once)
    for seed, (method, eta, _label), steps in grid:
        key = (seed, method, eta, steps)
        meta_of[key] = dict(model=model_fp, method=method, eta=eta, steps=steps, spacing=cfg.spacing, num_images=cfg.num_images, seed=seed, seed_stride=SEED_STRIDE)
        cached[key] = _cached(out / "cells" / f"{_cell_name(method, eta, steps, seed)}.npz", meta_of[key])
    todo = sum(steps * cfg.num_images for (_s, _m, _e, steps), cell in cached.items() if cell is None)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo, desc="compare", unit="img-step", unit_scale=True, dynamic_ncols=True)

    rows, sampled, reused = [], 0, 0
    for seed, (method, eta, label), steps in grid:
        meta, cell = meta_of[(seed, method, eta, steps)], cached[(seed, method, eta, steps)]
        path = out / "cells" / f"{_cell_name(method, eta, steps, seed)}.npz"
        if cell is None:
            if bar is not None:
                bar.set_description(f"compare {label} S={steps} seed={seed}")
            pixels, sec, calls = _sample_cell(m, method, eta, steps, cfg.spacing, cfg.num_images, seed, cfg.batch_size, device, bar)
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, images=pixels, seconds_per_image=sec, calls_per_image=calls, meta=json.dumps(meta, sort_keys=True), device=_machine(device))
            tmp.replace(path)
            sampled += 1
        else:
            pixels, sec, calls = cell
            reused += 1
        images = from_pixels(pixels)
        row = dict(sampler=label, method=method, eta=eta, steps=steps, spacing=cfg.spacing, seed=seed, num_images=cfg.num_images,
                   **sample_metrics(net.embed(images), real, (mu_r, cov_r)), seconds_per_image=sec, calls_per_image=calls)
        if inception is not None:
            mu_i, cov_i = gaussian_stats(inception(images, device=device))
            row["inception_fid"] = frechet_distance(mu_i, cov_i, *ref_inception)
        rows.append(row)
    if bar is not None:
        bar.close()

    baseline = _real_baseline(dataset, net, real, mu_r, cov_r, split, cfg.num_images)
    write_csv(rows, out / "results.csv")
    consistency = _consistency(m, cfg, out, samplers, device)
    plot_metrics(rows, net.name, out)
    info = dict(machine=_machine(device), model=str(cfg.model), model_path=str(m.path), model_fingerprint=model_fp, params=m.num_parameters,
                dataset=dataset, split=split, features=net, reference=len(real), baseline=baseline, consistency=consistency,
                seed_stride=SEED_STRIDE)
    write_report(rows, cfg, info, out / "report.md")
    (out / "config.json").write_text(json.dumps({k: v for k, v in asdict(cfg).items()}, indent=2) + "\n")
    log(f"{sampled} cells sampled, {reused} reused; wrote {out / 'report.md'}")
    return out


def _cached(path: Path, meta: dict):
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            if json.loads(str(f["meta"])) != json.loads(json.dumps(meta, sort_keys=True)):
                return None
            return f["images"], float(f["seconds_per_image"]), float(f["calls_per_image"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged or truncated cell is sampled again


def reference_split(dataset: str, choice: str) -> str:
    """'train' or 'test' as given; 'auto' -> the test split when it holds at least AUTO_TEST_MIN images."""
    if choice != "auto":
        return choice
    from .data import load_dataset

    try:
        return "test" if len(load_dataset(dataset, split="test")) >= AUTO_TEST_MIN else "train"
    except (ValueError, FileNotFoundError):
        return "train"


def _real_baseline(dataset: str, net: FeatureNet, real: np.ndarray, mu_r, cov_r, split: str, n: int) -> dict | None:
    """The metrics of ``n`` real images of the other split (a fixed random draw; as many as a cell's
    samples, so FD carries the same small-sample bias) against the reference: what a perfect model scores."""
    from .data import load_dataset

    other = "test" if split == "train" else "train"
    try:
        held = load_dataset(dataset, split=other).data
    except (ValueError, FileNotFoundError):
        return None
    if len(held) > n:
        held = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[:n]]
    if len(held) < 4:
        return None
    return dict(split=other, num_images=len(held), **sample_metrics(net.embed(held), real, (mu_r, cov_r)))


def _consistency(m, cfg: CompareConfig, out: Path, samplers, device) -> str | None:
    """Row per S, column per latent: the first ``cfg.consistency`` images of seed ``cfg.seeds[0]``
    decoded with eta = 0 (taken from the eta = 0 cells, or sampled here if eta = 0 is not in the grid)."""
    from .images import save_grid

    k = min(cfg.consistency, cfg.num_images)
    if k < 1:
        return None
    seed, rows = cfg.seeds[0], []
    for steps in sorted(cfg.steps):
        path = out / "cells" / f"{_cell_name('ddim', 0.0, steps, seed)}.npz"
        if ("ddim", 0.0) in {(mm, e) for mm, e, _ in samplers} and path.is_file():
            with np.load(path) as f:
                rows.append(from_pixels(f["images"][:k]))
        else:
            pixels, _, _ = _sample_cell(m, "ddim", 0.0, steps, cfg.spacing, k, seed, cfg.batch_size, device, None)
            rows.append(from_pixels(pixels))
    save_grid(torch.cat(rows), out / "consistency.png", nrow=k)
    return "consistency.png"


