"""``ddim explore``: the handlers behind the browser page (explore_page.py builds the page and serves it).

Each tab's button calls one method of ``Explorer`` with the values of the tab's controls and gets back
what the tab shows: pictures as RGB uint8 arrays, a matplotlib figure, Markdown. They are plain Python
(the tests call them directly); a control's bad value raises ``gradio.Error`` with one sentence that
says what is wrong and how to fix it, which the page shows instead of a traceback. A run is cancelled
by ``Explorer.stop`` (the page's Stop buttons): the next step of the run sees it and stops.

Needs the optional extra: ``pip install "ddim[explore]"`` (gradio).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local page that phones no one

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from .config import SPACINGS  # noqa: E402
from .generate import generate, image_seeds, noise, plan  # noqa: E402
from .images import to_pixels  # noqa: E402
from .interpolation import slerp  # noqa: E402
from .methods import METHODS  # noqa: E402
from .models import SHIPPED, LoadedModel, load  # noqa: E402
from .sampling import CallCounter, invert, sample  # noqa: E402

__all__ = ["Explorer", "Stopped", "picture", "sheet", "MAX_IMAGES", "MAX_STEPS", "MAX_COMPARE_IMAGES", "MAX_FRAMES", "SAMPLERS",
           "COMPARE_STEPS", "INVERT_SOURCES", "INTERPOLATE_SOURCES", "GUIDANCE_ROWS"]

# what one request may ask for: on a 2-core CPU the defaults answer in about a second
MAX_IMAGES = 64
MAX_STEPS = 1000          # and at most the model's T
MAX_COMPARE_IMAGES = 16
MAX_FRAMES = 16
MAX_ITERATIONS = 10
MAX_GUIDANCE = 20.0
TRAIL_COLUMNS = 10        # x0_hat strip: at most this many visited steps
TRAIL_IMAGES = 3          # ... of the first this many images
CELL = 96                 # pictures are upscaled (nearest) to about this many pixels a side

METHOD_CHOICES = ("auto", *METHODS)
SPACING_CHOICES = ("auto", *SPACINGS)
SAMPLERS = {"DDIM eta=0": ("ddim", 0.0), "DDIM eta=1": ("ddim", 1.0), "DDPM": ("ddpm", 0.0), "sigma-hat": ("sigma-hat", 0.0)}
COMPARE_DEFAULT = ("DDIM eta=0", "DDIM eta=1", "DDPM")
COMPARE_STEPS = (10, 20, 50, 100, 200, 500, 1000)
INVERT_SOURCES = ("test-set image", "my image (draw or upload)")
INTERPOLATE_SOURCES = ("two seeds", "two test-set images", "two uploaded images")
GUIDANCE_ROWS = (0.0, 1.0, 2.0, 4.0)  # the scales of the Guidance tab's comparison rows (plus the chosen one)
GUIDANCE_ROW_IMAGES = 8


class Stopped(Exception):
    """The run was stopped from the page."""


class _Error(gr.Error):
    """What the page shows for a control's bad value: the message alone, without a traceback on the server's console either."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message, title=title, print_exception=False)


# --------------------------------------------------------------------------- checks of the controls
def _number(value, name: str, expect: str) -> float:
    """A control's value as a float, else gr.Error: empty, or not a number (``expect``: "a number in [0, 1]")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Error(f"{name} is empty; enter {expect}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Error(f"{name} must be {expect}, got {value!r}") from None


def _whole(value, name: str, lo: int, hi: int, hint: str = "") -> int:
    """A control's value as an int in lo..hi, else gr.Error naming the control."""
    number = _number(value, name, f"a whole number in {lo}..{hi}")
    if isinstance(value, bool) or not number.is_integer() or not lo <= number <= hi:
        raise _Error(f"{name} must be a whole number in {lo}..{hi}, got {value}{hint}")
    return int(number)


def _real(value, name: str, lo: float, hi: float, meaning: str = "") -> float:
    number = _number(value, name, f"a number in [{lo:g}, {hi:g}]")
    if not lo <= number <= hi:  # also refuses NaN
        raise _Error(f"{name} must lie in [{lo:g}, {hi:g}]{meaning}, got {value}")
    return number


def _choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise _Error(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


def _seed(value, name: str = "Seed") -> int:
    return _whole(value, name, 0, 2**63 - 1)


@contextmanager
def _page_errors():
    """The library's ValueError / FileNotFoundError (already one sentence with a fix) as the page's gr.Error."""
    try:
        yield
    except gr.Error:  # already the page's message (gr.Error is a ValueError too)
        raise
    except (ValueError, FileNotFoundError) as err:
        raise _Error(str(err)) from None


# --------------------------------------------------------------------------- pictures
def _font(size: int = 15):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font shipped inside Pillow
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def sheet(cells: Tensor, rows: Sequence[str] | None = None, cols: Sequence[str] | None = None, scale: int | None = None,
          pad: int = 2, group: int = 0) -> np.ndarray:
    """Tile images ``cells`` [R, C, ch, H, W] in [-1, 1] into one RGB uint8 array, with optional row and column labels.

    ``group``: the columns come in groups of this many, set apart, and ``cols`` labels the groups.
    """
    from PIL import Image, ImageDraw

    R, C, ch, H, W = cells.shape
    scale = scale or max(1, CELL // max(H, W))
    pix = to_pixels(cells.reshape(R * C, ch, H, W)).permute(0, 2, 3, 1).numpy()
    pix = pix.repeat(scale, axis=1).repeat(scale, axis=2)
    pix = np.repeat(pix, 3, axis=-1) if ch == 1 else pix[..., :3]
    h, w = H * scale, W * scale
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> int:
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0]

    left = max((width(r) for r in rows), default=0) + 8 if rows else 0
    top = 18 if cols else 0
    gap = max(12, w // 4) if group else 0

    def x_of(c: int) -> int:  # the left edge of column c
        return left + pad + c * (w + pad) + (c // group) * gap if group else left + pad + c * (w + pad)

    out = np.full((top + R * (h + pad) + pad, x_of(C - 1) + w + pad, 3), 255, np.uint8)
    for i in range(R * C):
        r, c = divmod(i, C)
        y, x = top + pad + r * (h + pad), x_of(c)
        out[y:y + h, x:x + w] = pix[i]
    if rows or cols:
        img = Image.fromarray(out)
        draw = ImageDraw.Draw(img)
        for r, text in enumerate(rows or ()):
            draw.text((4, top + pad + r * (h + pad) + h // 2), text, fill=(40, 40, 40), font=font, anchor="lm")
        for c, text in enumerate(cols or ()):
            middle = (x_of(c * group) + x_of(c * group + group - 1) + w) // 2 if group else x_of(c) + w // 2
            draw.text((middle, top // 2 + 1), text, fill=(40, 40, 40), font=font, anchor="mm")
        out = np.asarray(img)
    return out


def picture(value, shape: Sequence[int], fit: bool = True) -> Tensor:
    """An image from the page (an ImageEditor value, an array, a PIL image or a file path) as [C, H, W] in [-1, 1] for a model of ``shape``.

    Grayscale models see light on dark, like their data: strokes drawn on an empty canvas are the ink
    (cropped to the strokes and centred, ``fit``); a picture with a light background (its border) is
    inverted. Then it is resized (area average) to the model's size.
    """
    from PIL import Image, ImageOps

    strokes = None
    if isinstance(value, dict):  # gradio's ImageEditor: background, layers (the brush strokes), composite
        layers = [np.asarray(a) for a in value.get("layers") or () if a is not None and np.asarray(a).ndim == 3 and np.asarray(a).shape[-1] == 4]
        background = value.get("background")
        if layers and (background is None or np.ptp(np.asarray(background)) == 0):  # drawn on an empty canvas
            strokes = np.max([a[..., 3] for a in layers], axis=0)
            if not strokes.any():
                raise _Error("the canvas is empty: draw a shape on it, or upload a picture (or choose a test-set image)")
        value = value.get("composite") if value.get("composite") is not None else background
    if value is None:
        raise _Error("there is no image yet: draw one on the canvas or upload a picture (or choose a test-set image)")
    if isinstance(value, (str, os.PathLike)):
        from .data import open_image

        with _page_errors():
            value = open_image(value)
    im = value if isinstance(value, Image.Image) else Image.fromarray(np.asarray(value).astype(np.uint8))
    c, h, w = shape
    if c == 1:
        if strokes is not None:
            gray = Image.fromarray(strokes.astype(np.uint8))
            if fit:
                gray = _centre(gray.crop(gray.getbbox()))
        else:
            gray = im.convert("L")
            a = np.asarray(gray)
            border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
            if np.median(border) > 127:  # dark ink on light paper: the data is light on dark
                gray = ImageOps.invert(gray)
        arr = np.asarray(gray.resize((w, h), Image.Resampling.BOX), dtype=np.float32)[None]
    else:
        rgb = im.convert("RGBA")
        back = Image.new("RGBA", rgb.size, (0, 0, 0, 255))
        arr = np.asarray(Image.alpha_composite(back, rgb).convert("RGB").resize((w, h), Image.Resampling.BOX), dtype=np.float32).transpose(2, 0, 1)
    if arr.max() - arr.min() < 8:
        raise _Error("the image is blank (one flat colour): draw a shape or upload a picture with something on it")
    return torch.from_numpy(arr / 127.5 - 1)


def _centre(gray, margin: float = 0.08):
    """A cropped drawing centred on a square canvas with a small margin (the data's objects fill their frame)."""
    from PIL import Image

    side = round(max(gray.size) * (1 + 2 * margin))
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(gray, ((side - gray.size[0]) // 2, (side - gray.size[1]) // 2))
    return canvas


def _histogram(latents: dict[str, Tensor]):
    """Histograms of latents against the N(0, 1) density they should follow (a matplotlib Figure, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.2), layout="tight")
    ax = fig.subplots()
    values = {name: z.double().flatten().cpu().numpy() for name, z in latents.items()}
    top = max(4.0, max(float(np.abs(v).max()) for v in values.values()))
    bins = np.linspace(-top, top, int(np.clip(2 * math.sqrt(min(len(v) for v in values.values())), 12, 40)) + 1)
    for (name, v), colour in zip(values.items(), ("tab:orange", "tab:blue")):
        ax.hist(v, bins=bins, density=True, alpha=0.5, color=colour, label=f"{name}: mean {v.mean():+.2f}, std {v.std():.2f}")
    grid = np.linspace(-top, top, 400)
    ax.plot(grid, np.exp(-grid**2 / 2) / math.sqrt(2 * math.pi), color="black", lw=1.5, label="N(0, 1)")
    ax.set_xlabel("value of x_T (per pixel)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _levels(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(mean |a - b|, RMSE) in 8-bit levels 0..255, after clipping and rounding both."""
    d = to_pixels(a).float() - to_pixels(b).float()
    return d.abs().mean().item(), d.pow(2).mean().sqrt().item()


def _even(n: int, k: int) -> list[int]:
    """At most k indices spread evenly over 0..n-1, first and last included."""
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(min(n, k))})


# --------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One batch drawn from a model: images in [-1, 1] (CPU float32) and what the run did."""

    images: Tensor
    method: str
    spacing: str
    steps: int
    calls: float                  # network evaluations per image (guidance other than 1: two per step)
    seconds: float
    trail: list[tuple[int, Tensor, Tensor]] = field(default_factory=list)  # (t, x_t, x0_hat) of the first images per visited step


@dataclass
class _Ticker:
    """Counts the steps of a request for the page's progress bar, and stops the run when its Stop button was pressed."""

    progress: Callable | None
    total: int
    stopped: Callable[[], bool]
    desc: str = "sampling"
    done: int = 0

    def __call__(self, *_args) -> None:
        if self.stopped():
            raise Stopped
        self.done += 1
        if self.progress is not None:
            self.progress((min(self.done, self.total), self.total), desc=self.desc, unit="steps")


class Explorer:
    """The page's state: the loaded models (by the name the page shows), their test sets, and the Stop requests."""

    def __init__(self, models: Sequence[str] | None = None, device: str | torch.device | None = "cpu") -> None:
        names = [str(n) for n in (models if models else SHIPPED)]
        self.models: dict[str, LoadedModel] = {}
        for name in names:
            m = load(name, device=device)
            if len(m.sample_shape) != 3:
                raise ValueError(f"ddim explore shows image models; {m.path} samples vectors of shape {tuple(m.sample_shape)} "
                                 "(use ddim.sample from Python for those)")
            self.models[name] = m
        self._test_sets: dict[str, Tensor] = {}
        self._stops: set[str] = set()
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def conditional(self) -> list[str]:
        """The models that take class labels and guidance."""
        return [name for name, m in self.models.items() if m.num_classes]

    # ----------------------------------------------------------------- plumbing
    def stop(self, request: gr.Request | None = None) -> None:
        """The Stop button: the session's running request stops at its next step."""
        key = getattr(request, "session_hash", None)
        if key is not None:
            with self._lock:
                self._stops.add(key)

    def _ticker(self, progress, request, total: int, desc: str) -> _Ticker:
        key = getattr(request, "session_hash", None)
        with self._lock:
            self._stops.discard(key)  # a Stop pressed before this request started is not for it

        def stopped() -> bool:
            return key is not None and key in self._stops

        return _Ticker(progress, total, stopped, desc)

    @contextmanager
    def _stoppable(self):
        try:
            yield
        except Stopped:
            raise _Error("stopped before the end; press the button again to start over", title="Stopped") from None

    def model(self, name) -> LoadedModel:
        if name not in self.models:
            raise _Error(f"unknown model {name!r}; choose one of {', '.join(self.models)}")
        return self.models[name]

    def _steps(self, value, m: LoadedModel, name: str = "Steps") -> int:
        return _whole(value, name, 1, min(MAX_STEPS, len(m.schedule)))

    def _images(self, value, most: int = MAX_IMAGES) -> int:
        return _whole(value, "Images", 1, most, f"; more images take longer, at most {most} per request")

    def _draw(self, m: LoadedModel, seeds: list[int], tick: Callable, *, steps: int, eta: float = 0.0, method: str = "auto",
              spacing: str = "auto", label: int | None = None, guidance: float | None = None, keep: int = 0) -> Run:
        """``ddim.generate`` for these seeds, each step reported to ``tick``; ``keep``: record x_t and x0_hat of the first images."""
        trail: list[tuple[int, Tensor, Tensor]] = []
        state: list[Tensor | None] = [None]  # x_t of the first images at the level the next step starts from

        def callback(i: int, t: int, x: Tensor, x0: Tensor) -> None:
            if keep:
                before = noise(m.sample_shape, seeds[:keep])[0] if state[0] is None else state[0]
                trail.append((t, before.float().cpu(), x0[:keep].float().cpu()))
                state[0] = x[:keep]
            tick()

        with _page_errors():
            r = generate(m, len(seeds), seeds=seeds, steps=steps, eta=eta, method=method, spacing=spacing, class_label=label,
                         guidance=guidance, batch_size=max(1, len(seeds)), callback=callback)
        return Run(r.images, r.choice.method, r.choice.spacing, r.choice.steps, r.calls, r.seconds, trail)

    def _denoiser(self, m: LoadedModel):
        """The model as model(x_t, t): a class-conditional one in its unconditional mode (its null class)."""
        if not m.num_classes:
            return m.model
        if m.null_class is None:
            raise _Error(f"{m.path.name} is class-conditional without an unconditional mode (no label dropout); inversion here needs one")
        null = torch.tensor([m.null_class], device=next(m.model.parameters()).device)
        return lambda x, t: m.model(x, t, class_labels=null.expand(len(x)))

    def _test_set(self, name: str) -> Tensor:
        m = self.model(name)
        if name not in self._test_sets:
            from .data import load_dataset

            dataset = m.config.get("train", {}).get("dataset")
            if not dataset:
                raise _Error(f"{m.path} does not say which dataset it was trained on, so it has no test set; use your own image instead")
            with _page_errors():
                data = load_dataset(dataset, split="test")
            if tuple(data.sample_shape) != tuple(m.sample_shape):
                raise _Error(f"the {data.name} images are {tuple(data.sample_shape)}, but {name} expects {tuple(m.sample_shape)}")
            self._test_sets[name] = data.data
        return self._test_sets[name]

    def _test_image(self, name: str, index, control: str = "Test-set image") -> Tensor:
        data = self._test_set(name)
        return data[_whole(index, control, 0, len(data) - 1)]

    def _invert(self, m: LoadedModel, x0: Tensor, tick: Callable, *, steps: int, method: str, iterations: int = 3) -> tuple[Tensor, int]:
        """x0 [B, C, H, W] -> latents x_T and the model calls per image it took."""
        counter = CallCounter(self._denoiser(m))
        with torch.inference_mode(), _page_errors():
            z = invert(counter, m.schedule, x0.to(next(m.model.parameters()).device), steps=steps, method=method, iterations=iterations,
                       prediction=m.prediction, callback=lambda *a: tick())
        return z.float().cpu(), counter.calls

    def _decode(self, m: LoadedModel, z: Tensor, tick: Callable, *, steps: int) -> Tensor:
        """Latents -> images with the deterministic eta = 0 sampler on the inversion's grid."""
        with torch.inference_mode(), _page_errors():
            x = sample(self._denoiser(m), m.schedule, z.to(next(m.model.parameters()).device), steps=steps, eta=0.0,
                       prediction=m.prediction, callback=lambda *a: tick())
        return x.float().cpu()

    # ----------------------------------------------------------------- Sample
    def sample(self, model, method, steps, eta, spacing, seed, n, progress=gr.Progress(), request: gr.Request | None = None):
        """The Sample tab: (image grid, x_t / x0_hat strip of the first images, Markdown about the run)."""
        m = self.model(model)
        method = _choice(method, "method", METHOD_CHOICES)
        spacing = _choice(spacing, "spacing", SPACING_CHOICES)
        steps = self._steps(steps, m)
        eta = _real(eta, "eta", 0.0, 1.0, " (0 = deterministic DDIM, 1 = DDPM-like)")
        if eta != 0 and method not in ("auto", "ddim"):
            raise _Error(f"eta applies to the ddim method only ({method} fixes its own noise); set eta to 0 or choose method ddim")
        n = self._images(n)
        with _page_errors():
            seeds = image_seeds(n, _seed(seed))
            total = plan(m, steps=steps, eta=eta, method=method, spacing=spacing).steps
        tick = self._ticker(progress, request, total, "sampling")
        with self._stoppable():
            run = self._draw(m, seeds, tick, steps=steps, eta=eta, method=method, spacing=spacing, keep=min(n, TRAIL_IMAGES))
        grid = sheet(run.images[None] if n == 1 else _square(run.images))
        cols = _even(len(run.trail), TRAIL_COLUMNS)
        k = len(run.trail[0][1])
        cells = torch.stack([torch.stack([run.trail[j][part][i] for j in cols]) for i in range(k) for part in (1, 2)])
        rows = [f"{name} {i + 1}" for i in range(k) for name in ("x_t", "x0_hat")]
        strip = sheet(cells, rows, [f"t={run.trail[j][0]}" for j in cols])
        return grid, strip, self._sample_info(m, run, n, method, spacing, steps)

    @staticmethod
    def _sample_info(m: LoadedModel, run: Run, n: int, method: str, spacing: str, steps: int) -> str:
        what = f"**{run.method}** on the **{run.spacing}** grid, {run.steps} steps"
        if method == "auto":
            what += f" (auto: the method measured best for {steps} model calls)"
        elif spacing == "auto":
            what += " (auto grid: the DDIM paper's uniform one)"
        labels = f" Class labels 0..{m.num_classes - 1} in turn (the Guidance tab picks one)." if m.num_classes else ""
        return (f"{what}. **{run.calls:g} model calls** per image; **{run.seconds:.2f} s** for {n} image{'s' * (n > 1)} "
                f"({1000 * run.seconds / n:.0f} ms per image).{labels}\n\n"
                f"The strip shows, for the first images, the state x_t at some of the {run.steps} visited steps and the model's "
                "estimate x0_hat of the final image made there: x0_hat settles long before the noise is gone.")

    # ----------------------------------------------------------------- DDIM vs DDPM
    def compare(self, model, steps, samplers, seed, n, progress=gr.Progress(), request: gr.Request | None = None):
        """The DDIM vs DDPM tab: (one row of images per sampler and S, the same seeds in every row; Markdown table of distances)."""
        m = self.model(model)
        T = min(MAX_STEPS, len(m.schedule))
        if not steps:
            raise _Error("choose at least one number of steps S")
        S = sorted({_whole(s, "S", 1, T) for s in steps})
        if not samplers:
            raise _Error(f"choose at least one sampler: {', '.join(SAMPLERS)}")
        for name in samplers:
            _choice(name, "sampler", list(SAMPLERS))
        samplers = [name for name in SAMPLERS if name in samplers]  # the page's order
        n = self._images(n, MAX_COMPARE_IMAGES)
        with _page_errors():
            seeds = image_seeds(n, _seed(seed))
        tick = self._ticker(progress, request, sum(S) * len(samplers), "DDIM vs DDPM")
        runs: dict[tuple[str, int], Run] = {}
        with self._stoppable():
            for name in samplers:
                method, eta = SAMPLERS[name]
                for s in S:
                    runs[name, s] = self._draw(m, seeds, tick, steps=s, eta=eta, method=method, spacing="uniform")
        cells = torch.stack([torch.cat([runs[name, s].images for name in samplers]) for s in S])  # a row per S, a group per sampler
        image = sheet(cells, [f"S={s}" for s in S], samplers, scale=max(1, 64 // max(m.sample_shape[1:])), group=n)
        return image, self._compare_table(runs, samplers, S, n)

    @staticmethod
    def _compare_table(runs: dict[tuple[str, int], Run], samplers: list[str], S: list[int], n: int) -> str:
        top = S[-1]
        lines = [f"Mean pixel distance (8-bit levels, 0..255) of each row to the same sampler's S={top} row, over the {n} images:", "",
                 "| S | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
        for s in S:
            cells = [f"{_levels(runs[name, s].images, runs[name, top].images)[0]:.1f}" for name in samplers]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        seconds = sum(r.seconds for r in runs.values())
        lines += ["", f"{len(runs)} runs, {sum(r.calls for r in runs.values()):g} model calls per image in all, {seconds:.2f} s. "
                  "DDIM with eta=0 is deterministic: the same x_T gives nearly the same image at any S (the consistency of the DDIM "
                  "paper, sec. 5.2), so its distances stay small; eta=1 and DDPM draw fresh noise at every step and land elsewhere "
                  "whenever S changes."]
        if "DDIM eta=1" in samplers and "DDPM" in samplers:
            most = max((to_pixels(runs["DDIM eta=1", s].images).int() - to_pixels(runs["DDPM", s].images).int()).abs().max().item() for s in S)
            lines += ["", f"DDIM eta=1 and DDPM differ by at most {most} levels in any pixel: on any grid, eta=1 is the DDPM posterior "
                      "of the respaced chain (DDIM eq. 16), one process under two names."]
        return "\n".join(lines)

    # ----------------------------------------------------------------- Invert
    def invert(self, model, source, drawing, index, steps, iterations, progress=gr.Progress(), request: gr.Request | None = None):
        """The Invert tab: (input | reconstructions | latents picture, histogram figure, Markdown table)."""
        m = self.model(model)
        source = _choice(source, "source", INVERT_SOURCES)
        steps = self._steps(steps, m)
        iterations = _whole(iterations, "Fixed-point iterations", 0, MAX_ITERATIONS, " (3 is plenty on the shipped models)")
        x0 = (self._test_image(model, index) if source == INVERT_SOURCES[0] else picture(drawing, m.sample_shape))[None]
        tick = self._ticker(progress, request, steps * (1 + (1 + iterations) + 2), "inverting")
        rows = {}
        with self._stoppable():
            for method, its in (("ddim", 0), ("fixed-point", iterations)):
                t0 = time.perf_counter()
                z, calls = self._invert(m, x0, tick, steps=steps, method=method, iterations=its)
                back = self._decode(m, z, tick, steps=steps)
                rows[method] = (z, back, calls, time.perf_counter() - t0)
        (z1, b1, *_), (z2, b2, *_) = rows["ddim"], rows["fixed-point"]
        cells = torch.stack([x0[0], b1[0], b2[0], (z1[0] / 3).clamp(-1, 1), (z2[0] / 3).clamp(-1, 1)])[None]
        image = sheet(cells, cols=["input", "plain", "fixed-point", "x_T plain", "x_T fixed-point"])
        figure = _histogram({"plain": z1, "fixed-point": z2})
        lines = [f"{steps} steps on the uniform grid; decoded with the ordinary eta=0 sampler on the same grid ({steps} more model calls).", "",
                 "| inversion | model calls | reconstruction RMSE (0..255) | x_T mean | x_T std | seconds |", "|---|---|---|---|---|---|"]
        for method, (z, back, calls, seconds) in rows.items():
            rmse = _levels(back, x0)[1]
            lines.append(f"| {method} | {calls} | {rmse:.2f} | {z.mean().item():+.2f} | {z.std().item():.2f} | {seconds:.2f} |")
        lines += ["", "Plain inversion takes eps at the wrong point and drifts; fixed-point inversion solves for the x_T from which "
                  "the sampler lands back on the input. The latents (shown divided by 3) should look like N(0, 1) noise."]
        return image, figure, "\n".join(lines)

    # ----------------------------------------------------------------- Interpolate
    def interpolate(self, model, source, seed_a, seed_b, index_a, index_b, image_a, image_b, frames, steps,
                    progress=gr.Progress(), request: gr.Request | None = None):
        """The Interpolate tab: (a strip decoded along slerp between two latents, Markdown)."""
        m = self.model(model)
        source = _choice(source, "source", INTERPOLATE_SOURCES)
        frames = _whole(frames, "Frames", 2, MAX_FRAMES)
        steps = self._steps(steps, m)
        x0 = None
        if source == INTERPOLATE_SOURCES[0]:
            with _page_errors():
                z, _ = noise(m.sample_shape, image_seeds(2, seeds=[_seed(seed_a, "Seed A"), _seed(seed_b, "Seed B")]))
        elif source == INTERPOLATE_SOURCES[1]:
            x0 = torch.stack([self._test_image(model, index_a, "Test-set image A"), self._test_image(model, index_b, "Test-set image B")])
        else:
            if image_a is None or image_b is None:
                raise _Error("upload two images (A and B), or choose two seeds or two test-set images")
            x0 = torch.stack([picture(image_a, m.sample_shape, fit=False), picture(image_b, m.sample_shape, fit=False)])
        calls = 4 * steps if x0 is not None else 0
        tick = self._ticker(progress, request, calls + steps, "interpolating")
        with self._stoppable():
            if x0 is not None:
                z, _ = self._invert(m, x0, tick, steps=steps, method="fixed-point")
            alphas = torch.linspace(0, 1, frames)
            strip = self._decode(m, slerp(z[0], z[1], alphas), tick, steps=steps)
        rows = [strip]
        labels = ["slerp"] if x0 is None else ["slerp", "inputs"]
        if x0 is not None:  # the inputs under the ends of the strip (white in between)
            ends = torch.ones_like(strip)
            ends[0], ends[-1] = x0[0], x0[1]
            rows.append(ends)
        image = sheet(torch.stack(rows), labels, [f"{a:.2f}" for a in alphas.tolist()])
        u, v = z[0].double().flatten(), z[1].double().flatten()
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (u @ v / (u.norm() * v.norm())).item()))))
        where = "the two seeds' noise" if x0 is None else "the fixed-point inversions of the two images"
        return image, (f"Spherical interpolation (DDIM paper sec. 5.3) between {where}, decoded with eta=0 in {steps} steps. "
                       f"The latents are {angle:.0f} degrees apart with norms {u.norm():.1f} and {v.norm():.1f} "
                       f"(sqrt(D) = {math.sqrt(u.numel()):.1f}): slerp keeps every frame at that norm, where a straight line "
                       "would pass through latents too short to be typical noise.")

    # ----------------------------------------------------------------- Guidance
    def guidance(self, model, class_label, scale, seed, n, steps, progress=gr.Progress(), request: gr.Request | None = None):
        """The Guidance tab: (grid at the chosen scale, the first seeds at several scales, Markdown)."""
        if not self.conditional:
            raise _Error("no class-conditional model is loaded; start the page with one, e.g. ddim explore digits-cond")
        if model not in self.conditional:
            raise _Error(f"guidance needs a class-conditional model; choose one of {', '.join(self.conditional)}")
        m = self.model(model)
        label = _whole(class_label, "Class", 0, m.num_classes - 1)
        scale = _real(scale, "Guidance scale", 0.0, MAX_GUIDANCE, " (0 = unconditional, 1 = the conditional model alone)")
        if scale != 1 and m.null_class is None:
            raise _Error(f"{model} was trained without label dropout, so it has no unconditional mode; guidance scale 1 is all it takes")
        steps = self._steps(steps, m, "Model calls")
        n = self._images(n)
        with _page_errors():
            seeds = image_seeds(n, _seed(seed))
            per_run = plan(m, steps=steps, class_label=label, guidance=scale).steps
        scales = sorted(set(GUIDANCE_ROWS) | {scale}) if m.null_class is not None else [1.0]
        k = min(n, GUIDANCE_ROW_IMAGES)
        tick = self._ticker(progress, request, per_run * (1 + len(scales)), "guidance")
        with self._stoppable():
            run = self._draw(m, seeds, tick, steps=steps, label=label, guidance=scale)
            rows = [self._draw(m, seeds[:k], tick, steps=steps, label=label, guidance=w).images for w in scales]
        names = {0.0: "w=0 (unconditional)", 1.0: "w=1 (conditional)"}
        strip = sheet(torch.stack(rows), [names.get(w, f"w={w:g}") for w in scales])
        info = (f"Class {label} at guidance scale w={scale:g}: eps = eps_uncond + w (eps_cond - eps_uncond) (classifier-free guidance, "
                f"Ho & Salimans 2022). **{run.method}** on the **{run.spacing}** grid, {run.steps} steps; **{run.calls:g} network "
                f"evaluations** per image (two per step when w is not 1); **{run.seconds:.2f} s** for {n} images. "
                f"Below, the first {k} seeds at several scales: w=0 ignores the class, larger w draws more typical, less varied images.")
        return sheet(run.images[None] if n == 1 else _square(run.images)), strip, info


def _square(images: Tensor) -> Tensor:
    """[N, ...] images as [rows, cols, ...] for a near-square grid (the last row padded with white)."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = torch.ones((rows * cols - n, *images.shape[1:]), dtype=images.dtype)
    return torch.cat([images, pad]).reshape(rows, cols, *images.shape[1:])
