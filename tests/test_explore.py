"""ddim explore: the page's handlers called directly, the CLI, and one real click path per tab in headless Chromium.

The handler tests need gradio (``pip install -e ".[explore]"``) and skip without it. The browser test
(slow) also needs selenium and Debian's chromium + chromium-driver; it saves a screenshot of every tab
under pytest's tmp_path, or under $DDIM_EXPLORE_SCREENSHOTS, which is how docs/explore*.png are made:

    DDIM_EXPLORE_SCREENSHOTS=docs OMP_NUM_THREADS=1 pytest tests/test_explore.py -m slow
"""

import functools
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddim.cli import main

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def gr():
    return pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def ex(gr):
    from ddim.explore import Explorer

    return Explorer(["digits", "digits-cond"])


def message(gr, fn, *args, **kwargs) -> str:
    """The text of the gr.Error that fn(*args) raises (what the page shows)."""
    with pytest.raises(gr.Error) as err:
        fn(*args, **kwargs)
    return err.value.message


def rgb(image, height=None, width=None) -> None:
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert height is None or image.shape[0] == height
    assert width is None or image.shape[1] == width
    assert image.min() < 60 and image.max() > 200  # dark pixels and white margins: a picture, not a flat fill


# --------------------------------------------------------------------------- Sample
def test_sample_gives_a_grid_a_trajectory_strip_and_what_it_cost(ex):
    grid, strip, info = ex.sample("digits", "ddim", 6, 0.0, "uniform", 0, 4)
    rgb(grid, 2 * (96 + 2) + 2, 2 * (96 + 2) + 2)  # 2 x 2 images of 8 x 8 pixels upscaled 12 times, 2-pixel gaps
    rgb(strip, 18 + 6 * (96 + 2) + 2)  # column labels, then x_t and x0_hat rows for the first 3 images
    assert "**ddim** on the **uniform** grid, 6 steps" in info and "**6 model calls** per image" in info and "for 4 images" in info


def test_sample_draws_what_ddim_generate_draws(ex):
    """The page shows exactly the images of `ddim sample` / ddim.generate for the same settings (image i from seed + i)."""
    import ddim
    from ddim.explore import _Ticker

    m = ex.model("digits")
    run = ex._draw(m, [5, 6, 7], _Ticker(None, 0, lambda: False), steps=8, method="dpm++2m", spacing="logsnr")
    assert torch.equal(run.images, ddim.generate(m, 3, seed=5, steps=8, method="dpm++2m", spacing="logsnr").images)
    assert run.calls == 8 and len(run.trail) == 0


def test_sample_auto_reads_steps_as_model_calls(ex):
    _, _, info = ex.sample("digits", "auto", 5, 0.0, "auto", 0, 1)
    assert "(auto: the method measured best for 5 model calls)" in info and "**5 model calls** per image" in info


def test_sample_refuses_bad_controls_with_a_message(gr, ex):
    good = dict(model="digits", method="ddim", steps=5, eta=0.0, spacing="uniform", seed=0, n=2)
    cases = [
        (dict(model="nope"), "unknown model 'nope'; choose one of digits, digits-cond"),
        (dict(method="euler"), "unknown method 'euler'; choose one of auto, " + ", ".join(__import__("ddim").METHODS)),
        (dict(spacing="log"), "unknown spacing 'log'; choose one of auto, " + ", ".join(__import__("ddim").SPACINGS)),
        (dict(steps=0), "Steps must be a whole number in 1..1000, got 0"),
        (dict(steps=2.5), "Steps must be a whole number in 1..1000, got 2.5"),
        (dict(steps=None), "Steps is empty; enter a whole number in 1..1000"),
        (dict(method="auto", steps=1001), "Steps must be a whole number in 1..1000, got 1001"),
        (dict(eta=1.5), "eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got 1.5"),
        (dict(method="ddpm", eta=0.5), "eta applies to the ddim method only (ddpm fixes its own noise); set eta to 0 or choose method ddim"),
        (dict(n=65), "Images must be a whole number in 1..64, got 65; more images take longer, at most 64 per request"),
        (dict(seed=-1), "Seed must be a whole number in 0..9223372036854775807, got -1"),
        (dict(steps=1), "one step on the 'uniform' grid visits only t = 0 and returns the noise almost unchanged; use spacing 'trailing' "
                        "(it starts at t = T - 1) or more steps"),  # the library's own check, shown as it is
    ]
    for change, expected in cases:
        assert message(gr, ex.sample, **{**good, **change}) == expected


def test_stop_ends_the_running_request_of_its_session_only(gr, ex):
    session = SimpleNamespace(session_hash="abc")
    calls = []

    def progress(fraction, desc=None, unit=None):  # gr.Progress's signature; pressing Stop after the first step
        calls.append(fraction)
        ex.stop(session)

    assert message(gr, ex.sample, "digits", "ddim", 50, 0.0, "uniform", 0, 2, progress=progress, request=session) == (
        "stopped before the end; press the button again to start over")
    assert calls == [(1, 50)]
    ex.stop(session)  # a Stop pressed while nothing runs does not stop the next request
    other = SimpleNamespace(session_hash="xyz")
    ex.sample("digits", "ddim", 3, 0.0, "uniform", 0, 1, progress=lambda *a, **k: ex.stop(other), request=session)


# --------------------------------------------------------------------------- DDIM vs DDPM
def test_compare_shows_ddim_eta0_consistent_across_steps_and_ddpm_not(ex):
    image, table = ex.compare("digits", ["10", "5"], ["DDPM", "DDIM eta=0", "DDIM eta=1"], 0, 3)
    rgb(image, 18 + 2 * (64 + 2) + 2)  # column labels and one row per S, cells of 64 pixels
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:-1]] for line in table.splitlines() if line.startswith("| 5 ")}
    eta0, eta1, ddpm = rows["5"]  # the page's order: DDIM eta=0, DDIM eta=1, DDPM; distances to each sampler's S=10 row
    assert "| S | DDIM eta=0 | DDIM eta=1 | DDPM |" in table
    assert eta0 < 15 < eta1 and eta1 == ddpm
    assert "DDIM eta=1 and DDPM differ by at most 0 levels in any pixel" in table


def test_compare_refuses_bad_controls_with_a_message(gr, ex):
    assert message(gr, ex.compare, "digits", [], ["DDPM"], 0, 2) == "choose at least one number of steps S"
    assert message(gr, ex.compare, "digits", ["0"], ["DDPM"], 0, 2) == "S must be a whole number in 1..1000, got 0"
    assert message(gr, ex.compare, "digits", ["10"], [], 0, 2) == "choose at least one sampler: DDIM eta=0, DDIM eta=1, DDPM, sigma-hat"
    assert message(gr, ex.compare, "digits", ["10"], ["DDIM eta=2"], 0, 2) == (
        "unknown sampler 'DDIM eta=2'; choose one of DDIM eta=0, DDIM eta=1, DDPM, sigma-hat")
    assert message(gr, ex.compare, "digits", ["10"], ["DDPM"], 0, 17) == (
        "Images must be a whole number in 1..16, got 17; more images take longer, at most 16 per request")


# --------------------------------------------------------------------------- Invert
def test_invert_a_test_image_fixed_point_reconstructs_it_better_than_plain(ex):
    from matplotlib.figure import Figure

    image, figure, table = ex.invert("digits", "test-set image", None, 3, 10, 3)
    rgb(image, 18 + 96 + 4, 5 * (96 + 2) + 2)  # input, two reconstructions, two latents
    assert isinstance(figure, Figure) and figure.axes[0].get_xlabel() == "value of x_T (per pixel)"
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table.splitlines() if line.startswith("| ddim") or line.startswith("| fixed")}
    assert int(rows["ddim"][0]) == 10 and int(rows["fixed-point"][0]) == 40  # model calls: 1 and 1 + 3 per step
    assert float(rows["fixed-point"][1]) < float(rows["ddim"][1])  # RMSE in 8-bit levels


def test_invert_takes_a_drawing_on_the_conditional_model(ex):
    stroke = np.zeros((224, 224, 4), np.uint8)
    stroke[40:190, 100:125] = (0, 0, 0, 255)  # a black "1" on the editor's layer
    drawing = {"background": np.full((224, 224, 4), 255, np.uint8), "layers": [stroke], "composite": None}
    image, _, table = ex.invert("digits-cond", "my image (draw or upload)", drawing, 0, 5, 1)  # its unconditional mode
    rgb(image)
    assert "| fixed-point | 10 |" in table


def test_invert_refuses_bad_controls_with_a_message(gr, ex):
    assert message(gr, ex.invert, "digits", "test-set image", None, 179, 10, 3) == "Test-set image must be a whole number in 0..178, got 179"
    assert message(gr, ex.invert, "digits", "my image (draw or upload)", None, 0, 10, 3) == (
        "there is no image yet: draw one on the canvas or upload a picture (or choose a test-set image)")
    empty = {"background": np.full((64, 64, 4), 255, np.uint8), "layers": [np.zeros((64, 64, 4), np.uint8)], "composite": None}
    assert message(gr, ex.invert, "digits", "my image (draw or upload)", empty, 0, 10, 3) == (
        "the canvas is empty: draw a shape on it, or upload a picture (or choose a test-set image)")
    assert message(gr, ex.invert, "digits", "test-set image", None, 0, 10, 11) == (
        "Fixed-point iterations must be a whole number in 0..10, got 11 (3 is plenty on the shipped models)")
    assert message(gr, ex.invert, "digits", "a file", None, 0, 10, 3) == (
        "unknown source 'a file'; choose one of test-set image, my image (draw or upload)")


def test_picture_makes_light_on_dark_images_at_the_models_size(gr):
    from ddim.explore import picture

    stroke = np.zeros((80, 80, 4), np.uint8)
    stroke[10:70, 30:50, 3] = 255  # strokes on an empty canvas: cropped, centred, light
    drawn = picture({"background": np.full((80, 80, 4), 255, np.uint8), "layers": [stroke], "composite": None}, (1, 8, 8))
    assert drawn.shape == (1, 8, 8) and drawn.max() > 0.5 and drawn[0, :, 0].max() == -1  # the stroke in the middle, black borders
    paper = np.full((40, 40, 3), 250, np.uint8)
    paper[5:35, 15:25] = 10  # dark ink on light paper is inverted
    assert picture(paper, (1, 8, 8))[0, 4, 4] > 0.5 and picture(paper, (1, 8, 8))[0, 0, 0] < -0.9
    assert message(gr, picture, np.full((40, 40), 128, np.uint8), (1, 8, 8)) == (
        "the image is blank (one flat colour): draw a shape or upload a picture with something on it")


# --------------------------------------------------------------------------- Interpolate
def test_interpolate_between_seeds_decodes_slerp_of_their_noise(ex):
    import ddim
    from ddim.explore import sheet
    from ddim.generate import noise

    image, info = ex.interpolate("digits", "two seeds", 3, 7, 0, 1, None, None, 5, 10)
    rgb(image, 18 + 96 + 4)
    assert "between the two seeds' noise" in info and "sqrt(D) = 8.0" in info
    m = ex.model("digits")
    z, _ = noise(m.sample_shape, [3, 7])
    with torch.no_grad():
        frames = ddim.sample(m.model, m.schedule, ddim.slerp(z[0], z[1], torch.linspace(0, 1, 5)), steps=10)
    assert np.array_equal(image, sheet(frames[None], ["slerp"], ["0.00", "0.25", "0.50", "0.75", "1.00"]))
    seed_3 = ddim.generate(m, 1, seed=3, steps=10, method="ddim", spacing="uniform").images[0]  # the ends are the seeds' own images
    assert torch.allclose(frames[0], seed_3, atol=1e-4)


def test_interpolate_between_test_images_and_uploads(ex):
    image, info = ex.interpolate("digits", "two test-set images", 0, 0, 0, 1, None, None, 3, 5)
    rgb(image, 18 + 2 * (96 + 2) + 2)  # the slerp row and the inputs row
    a = np.zeros((8, 8), np.uint8)
    a[1:7, 3:5] = 255
    image, info = ex.interpolate("digits", "two uploaded images", 0, 0, 0, 0, a, a.T.copy(), 3, 5)
    assert "fixed-point inversions of the two images" in info


def test_interpolate_refuses_bad_controls_with_a_message(gr, ex):
    assert message(gr, ex.interpolate, "digits", "two seeds", 0, 1, 0, 1, None, None, 1, 10) == "Frames must be a whole number in 2..16, got 1"
    assert message(gr, ex.interpolate, "digits", "two seeds", None, 1, 0, 1, None, None, 5, 10) == (
        "Seed A is empty; enter a whole number in 0..9223372036854775807")
    assert message(gr, ex.interpolate, "digits", "two uploaded images", 0, 1, 0, 1, None, None, 5, 10) == (
        "upload two images (A and B), or choose two seeds or two test-set images")
    assert message(gr, ex.interpolate, "digits", "two test-set images", 0, 1, 0, 500, None, None, 5, 10) == (
        "Test-set image B must be a whole number in 0..178, got 500")


# --------------------------------------------------------------------------- Guidance
def test_guidance_draws_the_class_and_a_row_per_scale(ex):
    grid, strip, info = ex.guidance("digits-cond", "7", 3.0, 0, 4, 6)
    rgb(grid, 2 * (96 + 2) + 2)
    rgb(strip, 5 * (96 + 2) + 2, None)  # w = 0, 1, 2, 3, 4 for the first 4 seeds
    assert "Class 7 at guidance scale w=3" in info and "**12 network evaluations** per image" in info


def test_guidance_refuses_bad_controls_with_a_message(gr, ex):
    assert message(gr, ex.guidance, "digits", "3", 2.0, 0, 4, 6) == "guidance needs a class-conditional model; choose one of digits-cond"
    assert message(gr, ex.guidance, "digits-cond", "10", 2.0, 0, 4, 6) == "Class must be a whole number in 0..9, got 10"
    assert message(gr, ex.guidance, "digits-cond", "3", -1, 0, 4, 6) == (
        "Guidance scale must lie in [0, 20] (0 = unconditional, 1 = the conditional model alone), got -1")
    from ddim.explore import Explorer

    assert message(gr, Explorer(["digits"]).guidance, "digits", "3", 2.0, 0, 4, 6) == (
        "no class-conditional model is loaded; start the page with one, e.g. ddim explore digits-cond")


# --------------------------------------------------------------------------- CLI
def test_cli_explore_refuses_bad_arguments_before_starting(capsys, monkeypatch):
    assert main(["explore", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "ddim explore: error: --port must lie in 0..65535 (0: any free port), got 70000"
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the extra were not installed
    assert main(["explore"]) == 2
    assert "ddim explore: error: ddim explore needs gradio (" in capsys.readouterr().err
    monkeypatch.undo()
    pytest.importorskip("gradio")
    assert main(["explore", "no/such/model"]) == 2
    assert "ddim explore: error: no model folder at no/such/model" in capsys.readouterr().err


def test_cli_explore_help_needs_neither_torch_nor_gradio():
    probe = ("import sys\nfrom ddim.cli import main\ntry:\n    main(['explore', '--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'gradio') if m in sys.modules]\nassert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "usage: ddim explore [-h]" in r.stdout and "--share" in r.stdout


# --------------------------------------------------------------------------- the page in a browser
class Browser:
    """Headless Debian Chromium driven by selenium, allowed to reach 127.0.0.1 only (the page must render offline)."""

    def __init__(self, url: str, profile: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                     "--window-size=1280,1000", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
            opts.add_argument(flag)
        self.d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)  # no selenium-manager download
        self.d.get(url)
        self.wait(lambda: self.d.find_elements("id", "sample-run"), 60)

    def wait(self, until, timeout: float = 60):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(lambda _: until())

    def css(self, selector: str):
        return self.d.find_elements("css selector", selector)

    def tab(self, name: str, elem: str) -> None:
        next(b for b in self.css("button[role=tab]") if b.text.strip() == name).click()
        self.wait(lambda: self.css(f"#{elem}-run") and self.css(f"#{elem}-run")[0].is_displayed())

    def type(self, elem_id: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.css(f"#{elem_id} input")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text, Keys.TAB)

    def pick(self, elem_id: str, value: str) -> None:
        """Choose ``value`` in a dropdown: type it, take the match."""
        from selenium.webdriver.common.keys import Keys

        box = self.css(f"#{elem_id} input")[0]
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value)
        option = f'li[role=option][aria-label="{value}"]'
        self.wait(lambda: self.css(option) and self.css(option)[0].is_displayed())
        self.css(option)[0].click()

    def choose(self, elem_id: str, label: str) -> None:
        next(x for x in self.css(f"#{elem_id} label") if x.text.strip() == label).click()

    def run(self, name: str, timeout: float = 60) -> str:
        """Click the tab's button and wait for its picture; returns the text under it."""
        old = {img.get_attribute("src") for img in self.css(f"#{name}-grid img")}
        self.css(f"#{name}-run")[0].click()
        self.wait(lambda: any(img.get_attribute("src") not in old and img.get_attribute("complete") for img in self.css(f"#{name}-grid img")),
                  timeout)
        self.wait(lambda: not self.css(".progress-text, .eta-bar"), timeout)  # the progress bar is gone: every output is in
        return self.css(f"#{name}-info")[0].text

    def toast(self) -> str:
        """The text of the error message that pops up, once it is there (then closed)."""
        texts = self.wait(lambda: [t.get_attribute("textContent").strip() for t in self.css(".toast-message-text")], 30)
        for close in self.css(".toast-close"):
            close.click()
        return " ".join(texts)

    def screenshot(self, path: Path, docs: bool) -> None:
        """The whole page (not only the window) as PNG; for docs/ in 256 colours, which keeps the files small."""
        from PIL import Image

        height = self.d.execute_script("return document.documentElement.scrollHeight")
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
        try:
            time.sleep(0.3)
            self.d.save_screenshot(str(path))
        finally:
            self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        if docs:
            Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)

    def external_requests(self) -> list[str]:
        names = self.d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        return [n for n in names if not n.startswith(("http://127.0.0.1", "data:", "blob:"))]

    def quit(self) -> None:
        self.d.quit()


@pytest.mark.slow
def test_the_page_in_a_browser_one_click_path_per_tab(gr, tmp_path):
    pytest.importorskip("selenium")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from ddim.explore import Explorer
    from ddim.explore_page import build_page, free_port, serve

    shots = Path(os.environ.get("DDIM_EXPLORE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    docs = "DDIM_EXPLORE_SCREENSHOTS" in os.environ
    ex = Explorer(["digits", "digits-cond"])
    ended = []
    sample = ex.sample

    @functools.wraps(sample)  # gradio finds the handler's progress and request parameters through it
    def recorded(*args, **kwargs):  # the Sample handler, noting how each request ended (for the Stop check)
        try:
            out = sample(*args, **kwargs)
        except Exception as err:
            ended.append((time.perf_counter(), getattr(err, "message", repr(err))))
            raise
        ended.append((time.perf_counter(), "done"))
        return out

    ex.sample = recorded
    page = serve(build_page(ex), port=free_port(), block=False, quiet=True)
    b = None
    try:
        b = Browser(page.local_url, tmp_path / "chromium-profile")
        assert b.d.execute_script("return document.fonts.status") == "loaded"

        # Sample: 10 steps of auto, then a bad value shows the handler's message, not a traceback
        b.type("sample-steps", "10")
        b.type("sample-images", "16")
        info = b.run("sample")
        assert "**" not in info and "10 model calls per image" in info and "for 16 images" in info
        assert b.css("#sample-trail img")
        b.screenshot(shots / ("explore.png" if docs else "sample.png"), docs)
        b.type("sample-steps", "0")
        b.css("#sample-run")[0].click()
        assert "Steps must be a whole number in 1..1000, got 0" in b.toast()

        # Stop: a long request (1000 steps x 64 images) is cut short at a sampler step, and the page answers the next one
        b.type("sample-steps", "1000")
        b.type("sample-images", "64")
        b.css("#sample-run")[0].click()
        b.wait(lambda: b.css(".progress-text, .eta-bar"), 30)
        time.sleep(1.0)
        before = len(ended)
        b.css("#sample-stop")[0].click()
        b.wait(lambda: len(ended) > before, 30)
        assert ended[-1][1] == "stopped before the end; press the button again to start over"  # cut short, not run to the end
        b.type("sample-steps", "5")
        b.type("sample-images", "4")
        assert "5 model calls per image" in b.run("sample")

        b.tab("DDIM vs DDPM", "compare")
        table = b.run("compare")  # the defaults: S = 10, 20, 50, 4 images per row
        assert "S=50 row" in table and "DDIM eta=1 and DDPM differ by at most 0 levels" in table
        b.screenshot(shots / "explore-compare.png", docs)

        b.tab("Invert", "invert")
        from selenium.webdriver.common.action_chains import ActionChains

        b.css("#invert-drawing button[aria-label=Brush]")[0].click()
        canvas = b.css("#invert-drawing canvas")[-1]
        strokes = ActionChains(b.d).move_to_element_with_offset(canvas, -30, -70).click_and_hold()
        for _ in range(7):
            strokes.move_by_offset(8, 0)
        for _ in range(14):
            strokes.move_by_offset(-4, 10)  # a 7
        strokes.release().perform()
        b.choose("invert-source", "my image (draw or upload)")
        table = b.run("invert")
        assert "fixed-point" in table and b.css("#invert-plot img, #invert-plot canvas, #invert-plot svg")
        b.screenshot(shots / "explore-invert.png", docs)

        b.tab("Interpolate", "interpolate")
        b.choose("interpolate-source", "two test-set images")
        b.type("interpolate-frames", "7")
        assert "fixed-point inversions of the two images" in b.run("interpolate")
        b.screenshot(shots / "explore-interpolate.png", docs)

        b.tab("Guidance", "guidance")
        b.pick("guidance-class", "0")
        b.type("guidance-images", "8")
        assert "Class 0 at guidance scale w=2" in b.run("guidance")
        assert b.css("#guidance-scales img")
        b.screenshot(shots / "explore-guidance.png", docs)

        assert b.external_requests() == []  # everything came from the local server: the page works offline
    finally:
        if b is not None:
            b.quit()
        page.close()
    assert len(list(shots.glob("*.png"))) >= 5
