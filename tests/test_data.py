import gzip
import struct

import numpy as np
import pytest
import torch

from ddim.data import FASHION_MNIST_DIR, load_dataset, read_idx


def write_idx(path, array, magic=None):
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else (0x800 | array.ndim)
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    (gzip.open if str(path).endswith(".gz") else open)(path, "wb").write(raw)


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4, 9])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))  # plain, not gzipped
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", [5, 6, 7])
    return tmp_path


def test_digits_default():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert len(train) + len(test) == 1797 and train.sample_shape == (1, 8, 8)
    assert train.data.min() == -1 and train.data.max() == 1 and train.num_classes == 10
    assert train.labels.shape == (len(train),)


def test_idx_folder_gz_and_plain(idx_folder):
    train = load_dataset(str(idx_folder))
    assert train.data.shape == (6, 1, 28, 28) and train.labels.tolist() == [0, 1, 2, 3, 4, 9]
    assert -1 <= train.data.min() and train.data.max() <= 1
    test = load_dataset(f"idx:{idx_folder}", split="test")
    assert test.data.shape == (3, 1, 28, 28) and test.labels.tolist() == [5, 6, 7]
    pixel = read_idx(idx_folder / "train-images-idx3-ubyte.gz")[0, 0, 0]
    assert train.data[0, 0, 0, 0].item() == pytest.approx(pixel / 255 * 2 - 1, abs=1e-6)


def test_idx_wrong_magic(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4)), magic=0x00000903)
    with pytest.raises(ValueError, match="not an MNIST-format IDX file of bytes: magic number 0x00000903, expected 0x00000803"):
        load_dataset(str(tmp_path))


def test_idx_truncated_and_mismatched_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset(str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", [1, 2])
    with pytest.raises(ValueError, match="has 2 labels for 3 images"):
        load_dataset(str(tmp_path))


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian():
    d = load_dataset("fashion-mnist", split="test")
    assert d.data.shape == (10000, 1, 28, 28) and d.num_classes == 10


def write_pngs(folder, sizes, mode="RGB"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(sizes):
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(folder / f"img{i}.png")


def test_image_folder_rgb_gray_and_resize(tmp_path):
    write_pngs(tmp_path / "rgb" / "sub", [(16, 16)] * 3)
    rgb = load_dataset(str(tmp_path / "rgb"))
    assert rgb.data.shape == (3, 3, 16, 16) and -1 <= rgb.data.min() and rgb.data.max() <= 1
    write_pngs(tmp_path / "gray", [(12, 12)] * 2, mode="L")
    assert load_dataset(f"images:{tmp_path / 'gray'}").data.shape == (2, 1, 12, 12)
    assert load_dataset(str(tmp_path / "rgb"), channels=1).data.shape == (3, 1, 16, 16)
    write_pngs(tmp_path / "mixed", [(16, 16), (20, 12)])
    with pytest.raises(ValueError, match=r"different sizes \(16x16, 20x12, \.\.\.\); pass an image size"):
        load_dataset(str(tmp_path / "mixed"))
    assert load_dataset(str(tmp_path / "mixed"), image_size=8).data.shape == (2, 3, 8, 8)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        load_dataset(str(tmp_path / "bad"))
    with pytest.raises(FileNotFoundError, match="not a known name"):
        load_dataset(str(tmp_path / "missing"))


@pytest.mark.parametrize("name", ["moons", "swissroll", "8gaussians"])
def test_toy_sets(name):
    d = load_dataset(name, num_points=500)
    assert d.data.shape == (500, 2) and torch.isfinite(d.data).all() and 0.5 < d.data.std() < 1.5
