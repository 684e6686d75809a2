import pytest
import torch

import ddim


@pytest.fixture(scope="session")
def linear():
    return ddim.NoiseSchedule.linear(1000)


@pytest.fixture(scope="session")
def mixture():
    return ddim.analytic.GaussianMixture.random(dim=6, modes=4, seed=3)


@pytest.fixture(scope="session")
def gen():
    """gen(seed) -> a CPU torch.Generator seeded with ``seed``."""
    return lambda seed=0: torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session", autouse=True)
def _private_user_cache(tmp_path_factory):
    """The suite's own $DDIM_CACHE, so grids a user fitted (``ddim optimize-grid`` on a shipped model writes them to the
    user cache, and ``auto`` reads them) cannot change what a test sees. Cached reference features are shared with the
    real cache (a link), since they depend only on the data and the feature network. The benchmark scripts' cache of
common limits is private to the suite too."""
    import os

    from ddim.files import cache_dir

    real = cache_dir()
    private = tmp_path_factory.mktemp("ddim-cache")
    (real / "reference").mkdir(parents=True, exist_ok=True)
    (private / "reference").symlink_to(real / "reference", target_is_directory=True)
    before = {name: os.environ.get(name) for name in ("DDIM_CACHE", "DDIM_LIMIT_CACHE")}
    os.environ["DDIM_CACHE"] = str(private)
    os.environ["DDIM_LIMIT_CACHE"] = str(private / "limits")  # the benchmarks' cache of common limits (grid_sweep.py)
    yield private
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
