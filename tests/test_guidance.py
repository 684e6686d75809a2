"""Classifier-free guidance: the wrapper's maths, conditional training with label dropout, the CLI."""

import pytest
import torch

import ddim
from ddim.cli import main
from ddim.guidance import Guided
from ddim.models import Denoiser, build_model


def _net():
    torch.manual_seed(0)
    return Denoiser(build_model("tiny", num_classes=4)).eval()  # classes 0..2 + null class 3


def test_scale_one_is_the_conditional_model_and_zero_the_unconditional():
    net, x, t = _net(), torch.randn(5, 1, 8, 8), torch.full((5,), 500)
    y = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        cond, uncond = net(x, t, class_labels=y), net(x, t, class_labels=torch.full_like(y, 3))
        torch.testing.assert_close(Guided(net, y, 1.0, 3)(x, t), cond, rtol=0, atol=0)
        torch.testing.assert_close(Guided(net, y, 0.0, 3)(x, t), uncond, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(Guided(net, y, 3.0, 3)(x, t), uncond + 3 * (cond - uncond), rtol=1e-5, atol=1e-6)


def test_guidance_needs_an_unconditional_mode():
    import pytest

    with pytest.raises(ValueError, match="guidance needs a model trained with label dropout"):
        Guided(_net(), torch.zeros(2, dtype=torch.long), 2.0, None)


@pytest.mark.slow
def test_conditional_training_with_label_dropout_and_guided_sampling(tmp_path, capsys):
    out = tmp_path / "cond"
    code = main(["train", "--dataset", "digits", "--preset", "tiny", "--conditional", "--steps", "2", "--batch-size", "8",
                 "--sample-every", "100", "--checkpoint-every", "2", "--output", str(out), "--no-progress"])
    assert code == 0
    m = ddim.load(out)
    assert m.num_classes == 10 and m.null_class == 10
    assert m.model.net.config.num_class_embeds == 11
    code = main(["sample", str(out), "-n", "3", "--steps", "2", "--class", "7", "--guidance", "2.5", "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0 and (tmp_path / "s" / "grid.png").is_file()
    capsys.readouterr()
    code = main(["sample", "digits", "--guidance", "2", "--output", str(tmp_path / "u"), "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "ddim sample: error: guidance needs a class-conditional model (ddim train --conditional); this one has no classes"


def test_shipped_conditional_model_follows_its_labels():
    """Guided samples of the shipped conditional model are the requested digit for the shipped
    classifier far above chance (0.1); guidance raises that share."""
    from ddim.features import load_features
    from ddim.images import quantize

    m = ddim.load("digits-cond")
    assert m.num_classes == 10 and m.null_class == 10 and m.sample_shape == (1, 8, 8)
    net = load_features("digits")
    labels = torch.arange(40) % 10
    x_T = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    acc = {}
    for w in (1.0, 3.0):
        with torch.no_grad():
            x = ddim.sample(Guided(m.model, labels, w, m.null_class), m.schedule, x_T, steps=10, method="unipc", spacing="logsnr")
            acc[w] = float((net(quantize(x)).argmax(1) == labels).float().mean())
    assert acc[1.0] > 0.5 and acc[3.0] >= acc[1.0], acc


def test_bad_label_dropout_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--conditional", "--label-dropout", "1.5", "--output", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "ddim train: error: label_dropout (--label-dropout) must lie in [0, 1), got 1.5"
    assert not out.exists()
