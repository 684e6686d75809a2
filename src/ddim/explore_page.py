"""``ddim explore``: the browser page (gradio Blocks) over the handlers in explore.py, and its server.

Five tabs, each a column of controls, a Run and a Stop button, and what the run shows. Every run goes
through gradio's queue, one at a time (they share the CPU); Stop cancels the queued or running request
(``cancels=``) and the running one stops at its next step (``Explorer.stop``). The page loads nothing
from the internet: system fonts, no analytics, no share link unless asked.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import gradio as gr

from .explore import (
    COMPARE_DEFAULT,
    COMPARE_STEPS,
    INTERPOLATE_SOURCES,
    INVERT_SOURCES,
    MAX_COMPARE_IMAGES,
    MAX_FRAMES,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_ITERATIONS,
    METHOD_CHOICES,
    SAMPLERS,
    SPACING_CHOICES,
    Explorer,
)

__all__ = ["build_page", "serve", "launch", "free_port", "THEME", "CSS"]

# system fonts only: the page renders offline and fetches no web fonts
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"])
CSS = ".pixels img { image-rendering: pixelated; }"


def _picture(caption: str, elem_id: str) -> gr.Image:
    """An output picture (PNG, drawn pixelated) under a one-line caption (a label would cover the picture's own column labels)."""
    gr.Markdown(f"**{caption}**")
    return gr.Image(label=caption, show_label=False, format="png", interactive=False, elem_id=elem_id, elem_classes="pixels",
                    buttons=[])  # no buttons over the picture's labels (right-click saves it)


def _buttons(name: str, elem: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(name, variant="primary", elem_id=f"{elem}-run")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{elem}-stop")
    return run, stop


def _wire(ex: Explorer, run: gr.Button, stop: gr.Button, fn, inputs: list, outputs: list) -> None:
    """Run -> fn through the queue (one model run at a time across tabs); Stop -> cancel it."""
    event = run.click(fn, inputs, outputs, concurrency_id="model", concurrency_limit=1)
    stop.click(ex.stop, None, None, cancels=[event], queue=False)


def build_page(ex: Explorer) -> gr.Blocks:
    """The page: Sample, DDIM vs DDPM, Invert, Interpolate, Guidance."""
    names = ex.names
    with gr.Blocks(title="ddim explore", analytics_enabled=False) as page:
        gr.Markdown("# ddim explore\nDDIM at work on small diffusion models: sample, compare with DDPM, invert, interpolate, guide. "
                    f"Models: {', '.join(names)}. Every run shows its model calls and time; Stop ends a run early.")
        with gr.Tab("Sample", id="sample"):
            gr.Markdown("Draw images from noise x_T. `auto` picks the method and grid that measured best for the budget of model "
                        "calls; `ddim` with eta=0 is the deterministic DDIM sampler, eta=1 is DDPM-like.")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    method = gr.Dropdown(list(METHOD_CHOICES), value="auto", label="Method")
                    steps = gr.Number(20, precision=0, label="Steps S (model calls per image when the method is auto)", elem_id="sample-steps")
                    eta = gr.Slider(0, 1, value=0, step=0.05, label="eta (ddim only: 0 = deterministic, 1 = DDPM-like)")
                    spacing = gr.Dropdown(list(SPACING_CHOICES), value="auto", label="Spacing (the timestep grid)")
                    seed = gr.Number(0, precision=0, label="Seed (image i uses seed + i)")
                    n = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Images", elem_id="sample-images")
                    run, stop = _buttons("Sample", "sample")
                with gr.Column(scale=2):
                    grid = _picture("Samples", "sample-grid")
                    info = gr.Markdown(elem_id="sample-info")
                    trail = _picture("Along the trajectory: the state x_t and the model's estimate x0_hat", "sample-trail")
            _wire(ex, run, stop, ex.sample, [model, method, steps, eta, spacing, seed, n], [grid, trail, info])

        with gr.Tab("DDIM vs DDPM", id="compare"):
            gr.Markdown("The same seeds (the same x_T) in every row. With eta=0 DDIM is deterministic and gives nearly the same image "
                        "at any number of steps S; eta=1 and DDPM draw fresh noise at each step, so every S gives other images.")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    steps = gr.CheckboxGroup([str(s) for s in COMPARE_STEPS], value=["10", "20", "50"], label="Steps S",
                                             elem_id="compare-steps")
                    samplers = gr.CheckboxGroup(list(SAMPLERS), value=list(COMPARE_DEFAULT), label="Samplers", elem_id="compare-samplers")
                    seed = gr.Number(0, precision=0, label="Seed (image i uses seed + i)")
                    n = gr.Slider(1, MAX_COMPARE_IMAGES, value=4, step=1, label="Images per row", elem_id="compare-images")
                    run, stop = _buttons("Compare", "compare")
                with gr.Column(scale=2):
                    image = _picture("One row per S, one group per sampler", "compare-grid")
                    table = gr.Markdown(elem_id="compare-info")
            _wire(ex, run, stop, ex.compare, [model, steps, samplers, seed, n], [image, table])

        with gr.Tab("Invert", id="invert"):
            gr.Markdown("Run DDIM backwards: image -> latent x_T -> image. Plain inversion (one model call per step) drifts; "
                        "fixed-point inversion solves each step exactly. Take an image of the model's test set, or draw one with the "
                        "brush (or upload a picture): it becomes light on dark, like the training data, at the model's size.")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    source = gr.Radio(list(INVERT_SOURCES), value=INVERT_SOURCES[0], label="Input", elem_id="invert-source")
                    index = gr.Number(0, precision=0, label="Test-set image (its index in the test split)")
                    drawing = gr.ImageEditor(label="Your image: draw or upload (resized to the model's size)", sources=("upload", "clipboard"),
                                             type="numpy", image_mode="RGBA", canvas_size=(224, 224), fixed_canvas=True, layers=False,
                                             transforms=(), brush=gr.Brush(default_size=28, colors=["#000000"], color_mode="fixed"),
                                             height=340, elem_id="invert-drawing")
                    steps = gr.Number(20, precision=0, label="Steps S", elem_id="invert-steps")
                    iterations = gr.Slider(0, MAX_ITERATIONS, value=3, step=1, label="Fixed-point iterations per step")
                    run, stop = _buttons("Invert", "invert")
                with gr.Column(scale=2):
                    image = _picture("Input, reconstructions, latents", "invert-grid")
                    table = gr.Markdown(elem_id="invert-info")
                    plot = gr.Plot(label="Latent values against N(0, 1)", elem_id="invert-plot")
            _wire(ex, run, stop, ex.invert, [model, source, drawing, index, steps, iterations], [image, plot, table])

        with gr.Tab("Interpolate", id="interpolate"):
            gr.Markdown("Spherical interpolation (slerp) between two latents, decoded with eta=0: between two seeds' noise, or "
                        "between two images inverted first (fixed-point inversion).")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    source = gr.Radio(list(INTERPOLATE_SOURCES), value=INTERPOLATE_SOURCES[0], label="End points", elem_id="interpolate-source")
                    with gr.Row():
                        seed_a = gr.Number(0, precision=0, label="Seed A")
                        seed_b = gr.Number(1, precision=0, label="Seed B")
                    with gr.Row():
                        index_a = gr.Number(0, precision=0, label="Test-set image A")
                        index_b = gr.Number(1, precision=0, label="Test-set image B")
                    with gr.Row():
                        image_a = gr.Image(label="Image A", sources=["upload", "clipboard"], type="numpy", image_mode=None, height=160)
                        image_b = gr.Image(label="Image B", sources=["upload", "clipboard"], type="numpy", image_mode=None, height=160)
                    frames = gr.Slider(2, MAX_FRAMES, value=9, step=1, label="Frames (ends included)", elem_id="interpolate-frames")
                    steps = gr.Number(20, precision=0, label="Steps S", elem_id="interpolate-steps")
                    run, stop = _buttons("Interpolate", "interpolate")
                with gr.Column(scale=2):
                    image = _picture("Frames along slerp(z_A, z_B, alpha)", "interpolate-grid")
                    info = gr.Markdown(elem_id="interpolate-info")
            _wire(ex, run, stop, ex.interpolate, [model, source, seed_a, seed_b, index_a, index_b, image_a, image_b, frames, steps],
                  [image, info])

        with gr.Tab("Guidance", id="guidance"):
            conditional = ex.conditional
            if not conditional:
                gr.Markdown("No class-conditional model is loaded. Start the page with one to try classifier-free guidance: "
                            "`ddim explore digits-cond`.")
            else:
                gr.Markdown("Classifier-free guidance on a class-conditional model: eps = eps_uncond + w (eps_cond - eps_uncond). "
                            "w=0 is the unconditional model, w=1 the conditional one; larger w trades variety for typical images.")
                first = ex.model(conditional[0])
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        model = gr.Dropdown(conditional, value=conditional[0], label="Model (class-conditional)")
                        label = gr.Dropdown([str(c) for c in range(first.num_classes)], value="3", label="Class", elem_id="guidance-class")
                        scale = gr.Slider(0, MAX_GUIDANCE, value=2, step=0.5, label="Guidance scale w", elem_id="guidance-scale")
                        seed = gr.Number(0, precision=0, label="Seed (image i uses seed + i)")
                        n = gr.Slider(1, MAX_IMAGES, value=16, step=1, label="Images", elem_id="guidance-images")
                        steps = gr.Number(20, precision=0, label="Model calls per image (method auto; two network evaluations each when w is not 1)")
                        run, stop = _buttons("Generate", "guidance")
                    with gr.Column(scale=2):
                        grid = _picture("Samples of the class", "guidance-grid")
                        info = gr.Markdown(elem_id="guidance-info")
                        strip = _picture("The first seeds at several guidance scales", "guidance-scales")
                model.change(lambda name: gr.Dropdown(choices=[str(c) for c in range(ex.model(name).num_classes)], value="0"), model, label)
                _wire(ex, run, stop, ex.guidance, [model, label, scale, seed, n, steps], [grid, strip, info])
    return page


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve(page: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True,
          quiet: bool = False) -> gr.Blocks:
    """Serve ``page`` on host:port (port 0: any free one) through gradio's queue; ``block``: until Ctrl-C, else in a thread."""
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port or free_port(host), share=share, prevent_thread_lock=not block, quiet=quiet,
                show_error=True, ssr_mode=False, inbrowser=False, theme=THEME, css=CSS)
    return page


def launch(models: Sequence[str] | None = None, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           device: str | None = "cpu", block: bool = True, quiet: bool = False) -> gr.Blocks:
    """``ddim explore``: load the models (default: the shipped ones), build the page and serve it."""
    return serve(build_page(Explorer(models, device=device)), host=host, port=port, share=share, block=block, quiet=quiet)
