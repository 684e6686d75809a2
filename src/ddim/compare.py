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

import csv
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .features import FeatureNet
from .metrics import frechet_distance, gaussian_stats, kernel_distance, precision_recall, reference_features

__all__ = ["CompareConfig", "compare", "parse_sampler", "SEED_STRIDE"]

SEED_STRIDE = 1_000_000  # image i of seed s uses generator seed s * SEED_STRIDE + i
DEFAULT_STEPS = (10, 20, 50, 100, 1000)
DEFAULT_SAMPLERS = ("0", "0.2", "0.5", "1", "sigma-hat")
AUTO_TEST_MIN = 1000  # a test split at least this large is the default reference (digits' 179 are too few)


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
    extra: dict = field(default_factory=dict)


def parse_sampler(spec: str) -> tuple[str, float, str]:
    """'0.5' -> DDIM with eta 0.5; 'sigma-hat' / 'ddpm' / 'ddim' -> that method. Returns (method, eta, label)."""
    from .sampling import METHODS

    if spec in METHODS:
        return spec, 0.0, {"sigma-hat": "σ̂", "ddpm": "DDPM", "ddim": "0.0"}.get(spec, spec)
    try:
        eta = float(spec)
    except ValueError:
        raise ValueError(f"sampler {spec!r} is neither a DDIM eta (a number in [0, 1]) nor a method ({', '.join(METHODS)})") from None
    if not 0 <= eta <= 1 or not math.isfinite(eta):
        raise ValueError(f"DDIM eta must lie in [0, 1], got {spec}")
    return "ddim", eta, f"{eta:.1f}" if round(eta, 1) == eta else f"{eta:g}"


def _fingerprint(path: Path) -> str:
    import hashlib

    files = sorted(path.glob("unet/*.safetensors")) or sorted(path.glob("unet/*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


class _Counter:
    """Wraps a model; counts images evaluated."""

    def __init__(self, model):
        self.model, self.images = model, 0

    def __call__(self, x, t):
        self.images += len(x)
        return self.model(x, t)


def _sample_cell(m, method: str, eta: float, steps: int, spacing: str, n: int, seed: int, batch_size: int, device, bar) -> tuple[np.ndarray, float, float]:
    from .sampling import sample

    counter = _Counter(m.model)
    out, wall = [], 0.0
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        gens = [torch.Generator().manual_seed(seed * SEED_STRIDE + i) for i in idx]
        x_T = torch.stack([torch.randn(m.sample_shape, generator=g) for g in gens]).to(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            x0 = sample(counter, m.schedule, x_T, steps=steps, eta=eta, spacing=spacing, method=method, prediction=m.prediction,
                        generator=gens, callback=(lambda *a, k=len(idx): bar.update(k)) if bar is not None else None)
        if device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        wall += time.perf_counter() - t0
        out.append(((x0.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    return np.concatenate(out), wall / n, counter.images / n


def _to_model_space(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float() / 127.5 - 1


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
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    m = load(cfg.model, device=device)
    T = len(m.schedule)
    bad = [s for s in cfg.steps if not 1 <= s <= T]
    if bad:
        raise ValueError(f"step counts must lie in 1..{T} (this model's training steps), got {bad}")
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
        images = _to_model_space(pixels)
        feats = net.embed(images)
        mu, cov = gaussian_stats(feats)
        kid, _ = kernel_distance(feats, real)
        prec, rec = precision_recall(real, feats)
        row = dict(sampler=label, method=method, eta=eta, steps=steps, spacing=cfg.spacing, seed=seed, num_images=cfg.num_images,
                   fd=frechet_distance(mu, cov, mu_r, cov_r), kid=kid, precision=prec, recall=rec, seconds_per_image=sec, calls_per_image=calls)
        if inception is not None:
            mu_i, cov_i = gaussian_stats(inception(images, device=device))
            row["inception_fid"] = frechet_distance(mu_i, cov_i, *ref_inception)
        rows.append(row)
    if bar is not None:
        bar.close()

    baseline = _real_baseline(dataset, net, real, mu_r, cov_r, split, cfg.num_images)
    _write_csv(rows, out / "results.csv")
    consistency = _consistency(m, cfg, out, samplers, device)
    _plots(rows, net.name, out)
    info = dict(machine=_machine(device), model=str(cfg.model), model_path=str(m.path), model_fingerprint=model_fp, params=m.num_parameters,
                dataset=dataset, split=split, features=net, reference=len(real), baseline=baseline, consistency=consistency)
    (out / "report.md").write_text(_report(rows, cfg, info))
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
    except (OSError, ValueError, KeyError):
        return None  # a damaged cell is sampled again


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
    feats = net.embed(held)
    mu, cov = gaussian_stats(feats)
    prec, rec = precision_recall(real, feats)
    return dict(split=other, num_images=len(held), fd=frechet_distance(mu, cov, mu_r, cov_r), kid=kernel_distance(feats, real)[0], precision=prec, recall=rec)


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()})


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
                rows.append(_to_model_space(f["images"][:k]))
        else:
            pixels, _, _ = _sample_cell(m, "ddim", 0.0, steps, cfg.spacing, k, seed, cfg.batch_size, device, None)
            rows.append(_to_model_space(pixels))
    save_grid(torch.cat(rows), out / "consistency.png", nrow=k)
    return "consistency.png"


def _mean_spread(rows: list[dict], key: str) -> dict:
    """(sampler, steps) -> (mean, half-range over seeds)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["sampler"], r["steps"]), []).append(r[key])
    return {g: (float(np.mean(v)), (max(v) - min(v)) / 2) for g, v in groups.items()}


def _plots(rows: list[dict], name: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["sampler"] for r in rows))
    metrics = [("fd", f"FD-{name}"), ("kid", f"KID-{name}"), ("precision", "precision"), ("recall", "recall")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (key, title) in zip(axes.flat, metrics):
        stats = _mean_spread(rows, key)
        for lab in labels:
            s = sorted(st for (lb, st) in stats if lb == lab)
            ax.errorbar(s, [stats[(lab, x)][0] for x in s], yerr=[stats[(lab, x)][1] for x in s], marker="o", capsize=3, label=f"eta={lab}" if lab[0].isdigit() else lab)
        ax.set_xscale("log")
        if key in ("fd",):
            ax.set_yscale("log")
        ax.set_xlabel("steps S (model calls per image)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_vs_steps.png", dpi=110)
    plt.close(fig)

    fd, sec = _mean_spread(rows, "fd"), _mean_spread(rows, "seconds_per_image")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for lab in labels:
        s = sorted(st for (lb, st) in fd if lb == lab)
        ax.plot([sec[(lab, x)][0] for x in s], [fd[(lab, x)][0] for x in s], marker="o", label=f"eta={lab}" if lab[0].isdigit() else lab)
        for x in s:
            ax.annotate(str(x), (sec[(lab, x)][0], fd[(lab, x)][0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time per image (s), labels = S")
    ax.set_ylabel(f"FD-{name}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fd_vs_time.png", dpi=110)
    plt.close(fig)


def _table(rows: list[dict], key: str, fmt: str, scale: float = 1.0) -> str:
    stats = _mean_spread(rows, key)
    labels = list(dict.fromkeys(r["sampler"] for r in rows))
    steps = sorted({r["steps"] for r in rows})
    multi = len({r["seed"] for r in rows}) > 1
    lines = ["| eta \\ S | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for lab in labels:
        cells = []
        for s in steps:
            mean, spread = stats[(lab, s)]
            cells.append(format(mean * scale, fmt) + (f" ± {format(spread * scale, fmt)}" if multi else ""))
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(rows: list[dict], cfg: CompareConfig, info: dict) -> str:
    net: FeatureNet = info["features"]
    acc = getattr(net, "info", {}).get("test_accuracy")
    seeds = sorted({r["seed"] for r in rows})
    spread = " Each entry is the mean over seeds ± half the spread between them." if len(seeds) > 1 else ""
    name = net.name
    parts = [
        f"# ddim compare: {cfg.model}",
        "",
        f"Generated by `{cfg.command or 'ddim compare'}` on {datetime.date.today().isoformat()}.",
        "",
        f"- machine: {info['machine']}",
        f"- model: `{info['model_path']}` ({info['params']:,} parameters, weights sha256 {info['model_fingerprint']}…)",
        f"- samples: {cfg.num_images} per cell and seed, seeds {', '.join(map(str, seeds))} (image i of seed s starts from "
        f"generator seed s·{SEED_STRIDE:,} + i; all cells of a seed share their x_T); spacing `{cfg.spacing}`",
        f"- features: `{name}` classifier (sha256 {net.fingerprint}…"
        + (f", {acc:.1%} accuracy on the held-out split" if acc is not None else "") + ")",
        f"- reference: {info['reference']} real images, `{info['dataset']}` {info['split']} split"
        + (" (held out: neither the model nor the feature network trained on it)" if info["split"] == "test" else " (the model's own training data)"),
        "",
        f"Rows: DDIM eta (0.0 = deterministic DDIM, 1.0 = DDPM's posterior variance) and σ̂ (DDPM's larger 'fixed large' variance); columns: steps S.{spread}",
        "",
        f"## FD-{name} (lower is better)",
        "",
        _table(rows, "fd", ".3g"),
        "",
        f"## KID-{name} × 10³ (lower is better; unbiased, 0 = indistinguishable)",
        "",
        _table(rows, "kid", ".3g", 1e3),
        "",
        "## Precision (realism, higher is better)",
        "",
        _table(rows, "precision", ".3f"),
        "",
        "## Recall (coverage, higher is better)",
        "",
        _table(rows, "recall", ".3f"),
        "",
        "## Milliseconds of sampling per image",
        "",
        _table(rows, "seconds_per_image", ".3g", 1e3),
        "",
    ]
    if "inception_fid" in rows[0]:
        parts += ["## Inception FID (pytorch-fid weights)", "", _table(rows, "inception_fid", ".3g"), ""]
    b = info["baseline"]
    if b:
        parts += [
            "## Real data against the same reference",
            "",
            f"{b['num_images']} real images of the `{b['split']}` split (a fixed random draw"
            + (", as many as a cell's samples" if b["num_images"] == cfg.num_images else "")
            + f") against the reference: FD-{name} {b['fd']:.3g}, KID×10³ {b['kid'] * 1e3:.3g}, precision {b['precision']:.3f}, "
            f"recall {b['recall']:.3f}. This is what a perfect model would score; FD is biased upwards at small sample counts, so "
            f"read the cells against this row, not against 0.",
            "",
        ]
    parts += ["## Plots", "", "![metrics vs steps](metrics_vs_steps.png)", "", "![FD vs wall time](fd_vs_time.png)", ""]
    if info["consistency"]:
        parts += [
            "## Consistency (eta = 0)",
            "",
            f"Each column is one x_T, each row a step count ({', '.join(map(str, sorted(cfg.steps)))} from the top), decoded with deterministic DDIM.",
            "",
            f"![consistency]({info['consistency']})",
            "",
        ]
    parts += ["Per-cell, per-seed numbers: [results.csv](results.csv).", ""]
    return "\n".join(parts)
