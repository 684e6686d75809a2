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
