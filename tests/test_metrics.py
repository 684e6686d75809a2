"""Sample-quality metrics: Frechet distance, KID, precision/recall, the feature network and its cache."""

import json

import numpy as np
import pytest
import torch

from ddim import features as F
from ddim.data import FASHION_MNIST_DIR, load_dataset
from ddim.metrics import frechet_distance, gaussian_stats, kernel_distance, precision_recall, reference_features


def test_frechet_distance_matches_the_closed_form_for_non_commuting_covariances():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    exact = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(exact, rel=1e-9)


def test_frechet_distance_of_samples_converges_to_the_gaussians_distance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200_000, 3)) * [1.0, 2.0, 0.5]
    y = rng.normal(size=(200_000, 3)) * [2.0, 2.0, 0.5] + [1.0, 0.0, 0.0]
    exact = 1.0 + (1 - 2) ** 2  # mean shift^2 + (sd1 - sd2)^2 on the first axis
    assert frechet_distance(*gaussian_stats(x), *gaussian_stats(y)) == pytest.approx(exact, abs=0.03)


def test_kid_is_unbiased_on_identically_distributed_sets_and_positive_otherwise():
    rng = np.random.default_rng(2)
    same, shifted, biased = [], [], []
    for _ in range(300):
        x, y = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
        same.append(kernel_distance(x, y)[0])
        shifted.append(kernel_distance(x, y + 0.5)[0])
        k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731  the biased V-statistic keeps the diagonals
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * se
    assert np.mean(biased) > 10 * se  # what the unbiased estimator removes
    assert np.mean(shifted) > 10 * se


def test_kid_subsets_and_errors():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=(80, 4))
    mean, sd = kernel_distance(x, y, subset_size=40, subsets=10)
    assert sd > 0 and np.isfinite(mean)
    assert kernel_distance(x, y)[1] == 0.0
    with pytest.raises(ValueError, match="feature sizes differ: 4 vs 3"):
        kernel_distance(x, y[:, :3])


def test_precision_and_recall_tell_realism_from_coverage():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(10, 5)) * 10
    real = centres[rng.integers(0, 10, 2000)] + rng.normal(size=(2000, 5))
    good = centres[rng.integers(0, 10, 2000)] + rng.normal(size=(2000, 5))
    dropped = centres[rng.integers(0, 3, 2000)] + rng.normal(size=(2000, 5))  # 3 of 10 modes
    far = good + 100
    p, r = precision_recall(real, good)
    assert p > 0.85 and r > 0.85
    p, r = precision_recall(real, dropped)
    assert p > 0.85 and r < 0.4
    assert precision_recall(real, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="needs more than 3 points in each set, got 2000 real and 3 fake"):
        precision_recall(real, good[:3])


def test_shipped_digits_classifier_reports_its_true_accuracy():
    net = F.load_features("digits")
    test = load_dataset("digits", split="test")
    acc = F.accuracy(net, test.data, test.labels)
    assert acc == pytest.approx(net.info["test_accuracy"], abs=1e-6)
    assert acc >= 0.97
    feats = net.embed(load_dataset("digits", split="train").data)
    assert feats.shape == (1618, 64) and feats.var(0).mean() == pytest.approx(1.0, rel=5e-3)  # 8-bit rounding moves it slightly


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_shipped_fashion_mnist_classifier_reports_its_true_accuracy():
    net = F.load_features("fashion-mnist")
    test = load_dataset("fashion-mnist", split="test")
    acc = F.accuracy(net, test.data, test.labels)  # 10,000 images neither the generator nor this network saw
    assert acc == pytest.approx(net.info["test_accuracy"], abs=1e-6)
    assert acc >= 0.88 and net.info["train_images"] == 60000 and net.image_shape == (1, 28, 28)


def test_feature_network_round_trip(tmp_path):
    torch.manual_seed(0)
    net = F.FeatureNet((1, 8, 8), num_classes=3, width=4, feature_dim=5, name="toy")
    net.feature_scale.fill_(0.5)
    F.save_features(net, tmp_path / "net", {"dataset": "toy"})
    back = F.load_features(tmp_path / "net")
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    np.testing.assert_array_equal(back.embed(x), net.embed(x))
    assert back.fingerprint == net.fingerprint and len(back.fingerprint) == 12
    assert json.loads((tmp_path / "net" / "config.json").read_text())["dataset"] == "toy"
    with pytest.raises(ValueError, match=r"feature network 'toy' takes images \(1, 8, 8\), got \(1, 4, 4\)"):
        back.embed(torch.zeros(2, 1, 4, 4))
    with pytest.raises(FileNotFoundError, match="no feature network at"):
        F.load_features(tmp_path / "missing")


def test_embedding_sees_the_saved_8_bit_image():
    net = F.load_features("digits")
    x = torch.rand(5, 1, 8, 8) * 3 - 1.5  # out of range, not on 8-bit levels
    np.testing.assert_array_equal(net.embed(x), net.embed(F.quantize(x)))


def test_no_feature_network_for_an_unknown_dataset():
    with pytest.raises(ValueError, match="no shipped feature network for dataset 'moons'.*ddim train-classifier --dataset moons"):
        F.features_for_dataset("moons")


def test_reference_features_are_cached_by_dataset_split_and_network(tmp_path, monkeypatch):
    net = F.load_features("digits")
    first = reference_features("digits", net, "test", cache_dir=tmp_path)
    files = list((tmp_path / "reference").glob("*.npz"))
    assert [f.name for f in files] == [f"digits-test-digits-{net.fingerprint}.npz"]
    monkeypatch.setattr("ddim.data.load_dataset", lambda *a, **k: pytest.fail("the cache was not used"))
    np.testing.assert_array_equal(reference_features("digits", net, "test", cache_dir=tmp_path), first)


def test_inception_fid_says_what_is_missing(monkeypatch, tmp_path):
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"needs the optional package pytorch-fid: pip install 'ddim\[fid\]'"):
            F.inception_features(torch.zeros(2, 1, 8, 8))
    else:
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        with pytest.raises(ValueError, match="needs the weights file .*pt_inception-2015-12-05-6726825d.pth; it is not on this machine"):
            F.inception_features(torch.zeros(2, 1, 8, 8))


def test_frechet_distance_of_gaussians_in_closed_form():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 ; commuting diagonal covariances: sum over dims
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[1.0]])) == pytest.approx(2.0)
    c1, c2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert frechet_distance(np.zeros(2), c1, np.ones(2), c2) == pytest.approx(2 + 1 + 4)
    r = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    c = r @ np.diag([1, 2, 3, 4, 5.0]) @ r.T
    assert frechet_distance(np.zeros(5), c, np.zeros(5), c) == pytest.approx(0.0, abs=1e-9)


def test_train_classifier_cli(tmp_path, capsys):
    from ddim.cli import main

    def run(args, capsys):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    out = tmp_path / "clf"
    code, stdout, err = run(["train-classifier", "--epochs", 1, "--output", out, "--no-progress"], capsys)
    assert code == 0, err
    assert "held-out accuracy" in stdout
    net = F.load_features(out)
    assert net.info["command"] == f"ddim train-classifier --epochs 1 --output {out} --no-progress"
    assert net.info["test_accuracy"] > 0.5  # one epoch is far above chance (0.1)
    code, _, err = run(["train-classifier", "--epochs", 1, "--output", out], capsys)
    assert code == 2 and "already exists; pass --overwrite" in err
